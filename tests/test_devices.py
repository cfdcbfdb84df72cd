"""--device: one place resolves it; a device the machine lacks is a one-line error."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from cnnscope import devices
from cnnscope.cli import main
from cnnscope.devices import available_devices, native_bf16, resolve_device


def test_cpu_and_auto() -> None:
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type == available_devices()[0]
    assert available_devices()[-1] == "cpu"


def test_auto_prefers_cuda(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_device("auto").type == "cuda"


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_an_absent_device_names_what_there_is(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(ValueError, match=r"--device cuda: not available.*available: .*cpu"):
        resolve_device("cuda")
    assert main(["evaluate", "--model", "lenet5", "--device", "cuda"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "not available on this machine" in err


@pytest.mark.parametrize("name", ["tpu", "cpu:0", "cuda:x", ""])
def test_unknown_names(name: str) -> None:
    with pytest.raises(ValueError, match="not a device"):
        resolve_device(name)


@pytest.mark.parametrize(
    ("flags", "native"),
    [
        ("fpu avx2 avx512f avx512bw", False),  # AVX-512 without BF16: emulated
        ("fpu avx512f avx512_bf16", True),  # e.g. AMD Zen 4
        ("fpu amx_bf16 amx_tile", True),  # Intel Sapphire Rapids on
    ],
)
def test_native_bf16_reads_the_cpu_flags(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, flags: str, native: bool
) -> None:
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(f"processor\t: 0\nmodel name\t: x\nflags\t\t: {flags}\n\n")
    assert devices._cpu_flags(cpuinfo) == frozenset(flags.split())
    monkeypatch.setattr(devices, "_cpu_flags", lambda: frozenset(flags.split()))
    assert native_bf16(torch.device("cpu")) is native
    assert native_bf16(torch.device("mps")) is False


def test_no_cpuinfo_means_no_flags(tmp_path: Path) -> None:
    assert devices._cpu_flags(tmp_path / "absent") == frozenset()
