"""How one number of a stage is computed, from the model's own weights and inputs.

``unit_arithmetic(model, image, stage, channel, y, x)`` runs one forward pass, takes the
real input of ``stage`` (the recorded output of the stage before it, or the image) and
the module's real weights, and spells out the value at ``(channel, y, x)``:

* a conv position: the input patch under the kernel (padding zeros included), the
  kernel, their element-wise products and sums (per input channel when there are
  several, with the largest single products), plus the bias = the pre-activation; then
  the normalisation that follows the conv (BatchNorm in eval mode: value × scale + shift),
  the activation, and which position of the pooling window won;
* a fully connected unit: its largest contributions (weight × input), the rest summed,
  plus the bias, then the unit's activation;
* the logits: the same for one class, and the softmax with its numbers.

Sums are done in float64 so the shown terms add up; ``value`` is the model's own
recorded float32 output, which the sum + bias equals to about 1e-6.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from ..models import StagedModel, stage_infos
from ..models.builtin import LinearReLU
from .activations import record

__all__ = ["ARITHMETIC_KINDS", "Arithmetic", "unit_arithmetic"]

ARITHMETIC_KINDS = ("conv", "fc", "logits")
TOP = 12  # contributions listed one by one; the rest are summed
PATCHES = 4  # input channels of a conv shown as full patches (those with the largest |sum|)


@dataclass
class Arithmetic:
    """The terms of one value. Lists are plain Python numbers (JSON-ready, see ``as_dict``).

    ``patches`` (conv): for up to ``PATCHES`` input channels, ``{"channel", "input",
    "kernel", "products", "sum"}`` with ``kH × kW`` nested lists. ``partials`` (conv): every
    input channel's sum, in channel order. ``top``: the largest terms by magnitude, each
    ``{"input", "weight", "product"}`` plus its place (``channel, dy, dx`` for a conv,
    ``index`` for a vector). ``rest``: the sum of the terms not in ``top``.
    """

    stage: str
    kind: str  # "conv" | "fc" | "logits"
    module: str
    channel: int
    y: int
    x: int
    input_stage: str  # the stage whose output is the input ("input" for the image)
    input_shape: list[int]
    sum: float  # all weight × input terms
    bias: float
    pre_activation: float  # sum + bias
    value: float  # the model's recorded output of the stage at (channel, y, x)
    terms: int  # how many weight × input terms the sum has
    kernel: list[int] = field(default_factory=list)  # (kH, kW)
    origin: list[int] = field(default_factory=list)  # input (row, col) of the patch's corner
    padding: list[int] = field(default_factory=list)
    stride: list[int] = field(default_factory=list)
    patches: list[dict[str, Any]] = field(default_factory=list)
    partials: list[float] = field(default_factory=list)
    top: list[dict[str, Any]] = field(default_factory=list)
    rest: float = 0.0
    norm: dict[str, Any] | None = None  # {"stage", "module", "scale", "shift", "value"}
    activation: dict[str, Any] | None = None  # {"stage", "module", "value"}
    pool: dict[str, Any] | None = None  # {"stage", "module", "y", "x", "window", ...}
    softmax: dict[str, Any] | None = None  # {"logits", "exp", "total", "probabilities"}

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _pair(v: Any) -> tuple[int, int]:
    return (int(v), int(v)) if isinstance(v, int) else (int(v[0]), int(v[1]))


def _top_terms(
    products: np.ndarray, inputs: np.ndarray, weights: np.ndarray, places: list[dict[str, int]]
) -> tuple[list[dict[str, Any]], float]:
    flat = products.ravel()
    order = np.argsort(-np.abs(flat), kind="stable")[:TOP]
    top = [
        {
            **places[i],
            "input": float(inputs.ravel()[i]),
            "weight": float(weights.ravel()[i]),
            "product": float(flat[i]),
        }
        for i in order
    ]
    return top, float(flat.sum() - flat[order].sum())


def unit_arithmetic(
    model: StagedModel, image: np.ndarray, stage: str, channel: int = 0, y: int = 0, x: int = 0
) -> Arithmetic:
    """The arithmetic of ``stage``'s value at ``(channel, y, x)`` for ``image`` (H, W).

    ``channel`` is the unit of a vector stage (``y`` and ``x`` are then 0). Raises
    ``ValueError`` naming the stage or position when it is not one this can explain.
    """
    infos = stage_infos(model)
    if stage not in infos or infos[stage].kind not in ARITHMETIC_KINDS:
        valid = [s.name for s in infos.values() if s.kind in ARITHMETIC_KINDS]
        raise ValueError(f"no arithmetic for stage {stage!r}; valid: {', '.join(valid)}")
    info = infos[stage]
    dims = (channel, y, x) if info.spatial else (channel,)
    for name, v, n in zip(("channel", "y", "x"), dims, info.shape, strict=False):
        if not 0 <= v < n:
            raise ValueError(f"{name} {v} is outside {stage}'s {n} (0 … {n - 1})")
    module = model.get_submodule(stage)
    names = list(infos)
    i = names.index(stage)
    tensor = torch.as_tensor(np.asarray(image, np.float32)).view(1, *model.input_shape)
    seen: list[torch.Tensor] = []  # what the module really received (its first call)
    handle = module.register_forward_pre_hook(lambda _m, a: seen.append(a[0].detach()))
    try:
        outputs = record(model, tensor)
    finally:
        handle.remove()
    received = seen[0]
    # Name where the input came from: the previous stage or the image when the values
    # match; else (a residual add, a normalization, a functional op between) this
    # stage's own input.
    source = f"{stage} input"
    prev = tensor if i == 0 else outputs[names[i - 1]]
    if prev.numel() == received.numel() and torch.equal(prev.flatten(), received.flatten()):
        source = names[i - 1] if i > 0 else "input"
    inp = received[0].double().numpy()  # (C, H, W) or (F,)
    value = float(outputs[stage][0][dims])
    if info.kind == "conv":
        if not isinstance(module, nn.Conv2d) or module.padding_mode != "zeros":
            raise ValueError(f"{stage} is a {type(module).__name__}: only zero-padded Conv2d")
        out = _conv(module, inp, channel, y, x)
    else:
        if not isinstance(module, nn.Linear):
            raise ValueError(f"{stage} is a {type(module).__name__}: only Linear layers")
        out = _linear(module, inp.ravel(), channel)
    result = Arithmetic(
        stage=stage,
        kind=info.kind,
        module=type(module).__name__,
        channel=channel,
        y=y,
        x=x,
        input_stage=source,
        input_shape=list(inp.shape),
        value=value,
        **out,
    )
    if info.kind == "conv":
        result.norm, result.activation, result.pool = _followers(
            model, outputs, stage, channel, y, x
        )
    elif isinstance(module, LinearReLU):  # the stage's output is after its own ReLU
        result.activation = {"stage": stage, "module": "ReLU", "value": value}
    if info.kind == "logits":
        logits = outputs[stage][0].double().numpy()
        exp = np.exp(logits)
        result.softmax = {
            "logits": logits.tolist(),
            "exp": exp.tolist(),
            "total": float(exp.sum()),
            "probabilities": (exp / exp.sum()).tolist(),
        }
    return result


def _conv(module: nn.Conv2d, inp: np.ndarray, channel: int, y: int, x: int) -> dict[str, Any]:
    """The terms of a conv's output at (channel, y, x); ``inp`` is its (C, H, W) input."""
    (kh, kw), (sh, sw), (dh, dw) = (
        _pair(module.kernel_size),
        _pair(module.stride),
        _pair(module.dilation),
    )
    if isinstance(module.padding, str):  # "same" / "valid": PyTorch pads (total − 1) // 2 first
        ph, pw = (
            ((dh * (kh - 1)) // 2, (dw * (kw - 1)) // 2) if module.padding == "same" else (0, 0)
        )
    else:
        ph, pw = _pair(module.padding)
    c, h, w = inp.shape
    per_group = module.in_channels // module.groups
    group = channel // (module.out_channels // module.groups)
    chans = np.arange(group * per_group, (group + 1) * per_group)
    padded = np.zeros((c, h + 2 * ph, w + 2 * pw))
    padded[:, ph : ph + h, pw : pw + w] = inp
    top, left = y * sh, x * sw  # in padded coordinates
    patch = padded[chans][
        :, top : top + dh * (kh - 1) + 1 : dh, left : left + dw * (kw - 1) + 1 : dw
    ]
    kernel = module.weight[channel].detach().double().numpy()  # (C / groups, kH, kW)
    products = patch * kernel
    partials = products.sum(axis=(1, 2))
    total = float(products.sum())
    bias = float(module.bias[channel].detach()) if module.bias is not None else 0.0
    shown = np.argsort(-np.abs(partials), kind="stable")[:PATCHES]
    patches = [
        {
            "channel": int(chans[k]),
            "input": patch[k].tolist(),
            "kernel": kernel[k].tolist(),
            "products": products[k].tolist(),
            "sum": float(partials[k]),
        }
        for k in shown
    ]
    places = [
        {"channel": int(chans[k]), "dy": int(a), "dx": int(b)}
        for k in range(len(chans))
        for a in range(kh)
        for b in range(kw)
    ]
    top_terms, rest = _top_terms(products, patch, kernel, places)
    return {
        "sum": total,
        "bias": bias,
        "pre_activation": total + bias,
        "terms": int(products.size),
        "kernel": [kh, kw],
        "origin": [top - ph, left - pw],
        "padding": [ph, pw],
        "stride": [sh, sw],
        "patches": patches,
        "partials": partials.tolist(),
        "top": top_terms,
        "rest": rest,
    }


def _linear(module: nn.Linear, inp: np.ndarray, unit: int) -> dict[str, Any]:
    """The terms of a fully connected unit; ``inp`` is its flattened input."""
    weights = module.weight[unit].detach().double().numpy()
    if weights.shape != inp.shape:
        raise ValueError(
            f"{module} expects {weights.shape[0]} inputs; the stage before gives {inp.size}"
        )
    products = weights * inp
    bias = float(module.bias[unit].detach()) if module.bias is not None else 0.0
    top, rest = _top_terms(products, inp, weights, [{"index": k} for k in range(inp.size)])
    total = float(products.sum())
    return {
        "sum": total,
        "bias": bias,
        "pre_activation": total + bias,
        "terms": int(products.size),
        "top": top,
        "rest": rest,
    }


def _followers(
    model: StagedModel, outputs: dict[str, torch.Tensor], conv: str, channel: int, y: int, x: int
) -> tuple[dict[str, Any] | None, dict[str, Any] | None, dict[str, Any] | None]:
    """The normalisation and the activation after ``conv`` at (y, x), and the pooling
    window holding (y, x)."""
    norm = activation = pool = None
    before = conv
    for info in stage_infos(model).values():
        if info.parent != conv:
            continue
        module = model.get_submodule(info.name)
        if info.kind == "norm" and norm is None:
            norm = {
                "stage": info.name,
                "module": type(module).__name__,
                **_norm_affine(module, channel),
                "value": float(outputs[info.name][0, channel, y, x]),
            }
        elif info.kind == "act" and activation is None:
            activation = {
                "stage": info.name,
                "module": type(module).__name__,
                "value": float(outputs[info.name][0, channel, y, x]),
            }
        elif info.kind == "pool" and pool is None and isinstance(module, nn.MaxPool2d):
            pool = _max_pool(
                module, info.name, outputs[before][0, channel], outputs[info.name][0, channel], y, x
            )
        before = info.name
    return norm, activation, pool


def _norm_affine(module: nn.Module, channel: int) -> dict[str, float | None]:
    """A BatchNorm's per-channel ``scale`` and ``shift`` in eval mode, where the value is
    input × scale + shift; ``None`` for a norm that depends on the whole map (GroupNorm…)."""
    if not isinstance(module, nn.BatchNorm2d) or module.training or module.running_var is None:
        return {"scale": None, "shift": None}
    var = float(module.running_var[channel])
    mean = float(module.running_mean[channel])  # type: ignore[index]
    gamma = float(module.weight[channel].detach()) if module.weight is not None else 1.0
    beta = float(module.bias[channel].detach()) if module.bias is not None else 0.0
    scale = gamma / (var + module.eps) ** 0.5
    return {"scale": scale, "shift": beta - mean * scale}


def _max_pool(
    module: nn.MaxPool2d, name: str, inp: torch.Tensor, out: torch.Tensor, y: int, x: int
) -> dict[str, Any] | None:
    """The (first) window of ``module`` that holds input (y, x), and its winner."""
    (kh, kw), (ph, pw), (dh, dw) = (
        _pair(module.kernel_size),
        _pair(module.padding),
        _pair(module.dilation),
    )
    sh, sw = _pair(module.stride if module.stride is not None else module.kernel_size)
    if (dh, dw) != (1, 1):
        return None
    # the first output row whose window reaches y: oy·sh − ph ≤ y < oy·sh − ph + kh
    oy = max(0, -((kh - 1 - y - ph) // sh)) if y + ph >= kh else 0
    ox = max(0, -((kw - 1 - x - pw) // sw)) if x + pw >= kw else 0
    if oy >= out.shape[0] or ox >= out.shape[1]:
        return None
    top, left = oy * sh - ph, ox * sw - pw
    rows = range(max(top, 0), min(top + kh, inp.shape[0]))
    cols = range(max(left, 0), min(left + kw, inp.shape[1]))
    window = inp[rows.start : rows.stop, cols.start : cols.stop]
    k = int(window.argmax())
    wy, wx = rows.start + k // window.shape[1], cols.start + k % window.shape[1]
    return {
        "stage": name,
        "module": type(module).__name__,
        "y": oy,
        "x": ox,
        "origin": [rows.start, cols.start],
        "window": window.double().tolist(),
        "winner": [wy, wx],
        "won": (wy, wx) == (y, x),
        "value": float(out[oy, ox]),
    }
