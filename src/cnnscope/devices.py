"""Where tensors run: ``--device auto|cpu|cuda|mps`` resolved in one place.

``auto`` picks CUDA when a GPU is visible, then Apple's MPS, else the CPU. Asking for a
device this machine lacks is a user error (one line naming what is available), never a
crash deep inside a forward pass.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path

import torch

__all__ = [
    "DEVICES",
    "available_devices",
    "device_of",
    "fused_step_runs",
    "native_bf16",
    "resolve_device",
]

DEVICES = ("auto", "cpu", "cuda", "mps")


def _mps() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


def available_devices() -> list[str]:
    """The device kinds this machine can run on, best first (``cpu`` always last)."""
    return [
        *(["cuda"] if torch.cuda.is_available() else []),
        *(["mps"] if _mps() else []),
        "cpu",
    ]


def resolve_device(name: str = "auto") -> torch.device:
    """The ``torch.device`` for ``name`` (``auto``, ``cpu``, ``cuda``, ``cuda:1``, ``mps``).

    Raises
    ------
    ValueError
        An unknown name, or a device this machine does not have; the message lists the
        ones it has.

    Examples
    --------
    >>> resolve_device("cpu")
    device(type='cpu')
    """
    kind, _, index = name.partition(":")
    if kind not in DEVICES or (index and (kind != "cuda" or not index.isdigit())):
        raise ValueError(f"--device {name!r}: not a device; valid: {', '.join(DEVICES)}")
    have = available_devices()
    if kind == "auto":
        return torch.device(have[0])
    if kind not in have:
        raise ValueError(
            f"--device {name}: not available on this machine (available: {', '.join(have)}); "
            "use --device auto or cpu"
        )
    if index and int(index) >= torch.cuda.device_count():
        raise ValueError(
            f"--device {name}: this machine has {torch.cuda.device_count()} CUDA device(s)"
        )
    return torch.device(name)


def device_of(module: torch.nn.Module) -> torch.device:
    """Where ``module`` runs: its first parameter's device (the CPU if it has none).
    Inputs follow it, and what cnnscope returns comes back to the CPU."""
    first = next(iter(module.parameters()), None)
    return first.device if first is not None else torch.device("cpu")


@functools.cache
def fused_step_runs(kind: Callable[..., torch.optim.Optimizer], device_type: str) -> bool:
    """Whether torch's fused step of optimizer ``kind`` runs on ``device_type``. On the
    CPU it does since torch 2.4; torch 2.3 refuses fused Adam when it is built and fails
    fused SGD's first step, so a step on a 2-element parameter decides."""
    p = torch.nn.Parameter(torch.zeros(2, device=device_type))
    p.grad = torch.ones_like(p)
    try:
        kind([p], lr=0.1, fused=True).step()
    except RuntimeError:  # NotImplementedError too, its subclass
        return False
    return True


@functools.cache
def _cpu_flags(cpuinfo: Path = Path("/proc/cpuinfo")) -> frozenset[str]:
    """The CPU's feature flags as Linux lists them; none elsewhere."""
    try:
        text = cpuinfo.read_text()
    except OSError:
        return frozenset()
    for line in text.splitlines():
        if line.startswith("flags"):
            return frozenset(line.partition(":")[2].split())
    return frozenset()


def native_bf16(device: torch.device) -> bool:
    """Whether ``device`` computes in bfloat16 natively, so that bf16 training pays: a CUDA
    GPU that supports it, or an x86 CPU with AMX or AVX-512 BF16 (Intel since Sapphire
    Rapids, AMD since Zen 4). Elsewhere bfloat16 is emulated and slower than float32."""
    if device.type == "cuda":
        return bool(torch.cuda.is_bf16_supported())
    if device.type == "cpu":
        return bool(_cpu_flags() & {"amx_bf16", "avx512_bf16"})
    return False
