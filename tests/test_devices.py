"""--device: one place resolves it; a device the machine lacks is a one-line error."""

from __future__ import annotations

import pytest
import torch

from cnnscope.cli import main
from cnnscope.devices import available_devices, resolve_device


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
