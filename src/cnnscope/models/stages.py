"""What each stage of a model is: kind, output shape, receptive field, the conv it follows.

Found by tracing one forward pass with hooks on the stage modules and reading each module's
type and hyper-parameters, so nothing anywhere reads a stage's kind out of its name. The
page receives the same facts in ``/api/models``.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any, Literal

import torch
from torch import nn

from ..devices import device_of

__all__ = [
    "KINDS",
    "StageInfo",
    "activation_stage",
    "count_parameters",
    "discover_stages",
    "logits_stage",
    "num_classes",
    "representation_stage",
    "resolve_stage",
    "stage_infos",
]

Kind = Literal["conv", "act", "pool", "norm", "fc", "logits", "other"]
KINDS: tuple[Kind, ...] = ("conv", "act", "pool", "norm", "fc", "logits", "other")

_ACTIVATIONS = (
    nn.ReLU,
    nn.ReLU6,
    nn.LeakyReLU,
    nn.ELU,
    nn.GELU,
    nn.SiLU,
    nn.Sigmoid,
    nn.Tanh,
    nn.Softplus,
    nn.Mish,
    nn.PReLU,
    nn.SELU,
    nn.CELU,
    nn.Hardswish,
    nn.Hardtanh,
    nn.Softmax,
    nn.LogSoftmax,
)
_POOLS = (
    nn.MaxPool2d,
    nn.AvgPool2d,
    nn.AdaptiveMaxPool2d,
    nn.AdaptiveAvgPool2d,
    nn.LPPool2d,
)
_NORMS = (nn.BatchNorm2d, nn.BatchNorm1d, nn.GroupNorm, nn.LayerNorm, nn.InstanceNorm2d)
# Leaf modules that are stages when discovered; others from torch.nn (Dropout, Identity,
# Upsample, ...) are skipped, and a model's own leaf modules are stages of kind "other".
_OF_INTEREST = (nn.Conv2d, nn.Linear, nn.Flatten, *_ACTIVATIONS, *_POOLS, *_NORMS)


@dataclass(frozen=True)
class StageInfo:
    """One stage a person may look at.

    ``rf_size`` and ``rf_stride`` give, for spatial stages, the side of the input square
    that one position sees and the input pixels between neighbouring positions; both are
    ``None`` where a unit sees the whole image (fully connected stages, adaptive pooling).
    ``parent`` names the conv stage that an ``act``, ``pool`` or ``norm`` stage follows.
    """

    name: str
    kind: Kind
    shape: tuple[int, ...]  # one image's output: (C, H, W) or (F,)
    module: str  # the module's class name, e.g. "Conv2d"
    rf_size: int | None = None
    rf_stride: int | None = None
    parent: str | None = None

    @property
    def spatial(self) -> bool:
        """True for stages with (C, H, W) maps."""
        return len(self.shape) == 3

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "shape": list(self.shape)}


def _kind(module: nn.Module, last: bool) -> Kind:
    if last:
        return "logits"
    if isinstance(module, nn.Conv2d):
        return "conv"
    if isinstance(module, _ACTIVATIONS):
        return "act"
    if isinstance(module, _POOLS):
        return "pool"
    if isinstance(module, _NORMS):
        return "norm"
    if isinstance(module, nn.Linear):
        return "fc"
    return "other"


def _pair(v: Any) -> int:
    return int(v if isinstance(v, int) else v[0])


def _window(module: nn.Module) -> tuple[int, int] | None:
    """(kernel, stride) of a conv or fixed-window pool; ``None`` if it sees everything."""
    if isinstance(module, nn.Conv2d):
        k = (_pair(module.kernel_size) - 1) * _pair(module.dilation) + 1
        return k, _pair(module.stride)
    if isinstance(module, nn.MaxPool2d | nn.AvgPool2d | nn.LPPool2d):
        k = _pair(module.kernel_size)
        return k, _pair(module.stride if module.stride is not None else k)
    return None


_CACHE: weakref.WeakKeyDictionary[nn.Module, dict[str, StageInfo]] = weakref.WeakKeyDictionary()


def stage_infos(model: nn.Module) -> dict[str, StageInfo]:
    """Every stage of ``model`` in forward order, traced once (shapes need no weights)."""
    if model in _CACHE:
        return _CACHE[model]
    names: tuple[str, ...] = model.stage_names  # type: ignore[assignment]
    shapes: dict[str, tuple[int, ...]] = {}
    order: list[str] = []

    def hook(name: str) -> Any:
        def record(_m: nn.Module, _i: Any, out: torch.Tensor) -> None:
            if name not in shapes:
                order.append(name)
                shapes[name] = tuple(out.shape[1:])

        return record

    handles = [model.get_submodule(n).register_forward_hook(hook(n)) for n in names]
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            # On the model's device: a model moved to a GPU traces there.
            model(torch.zeros(1, *model.input_shape, device=device_of(model)))  # type: ignore[misc]
    finally:
        model.train(was_training)
        for h in handles:
            h.remove()
    infos: dict[str, StageInfo] = {}
    size: int | None = 1
    stride: int | None = 1
    parent: str | None = None
    for i, name in enumerate(order):
        module = model.get_submodule(name)
        kind = _kind(module, last=i == len(order) - 1)
        spatial = len(shapes[name]) == 3
        window = _window(module)
        if window is not None and size is not None and stride is not None:
            size += (window[0] - 1) * stride
            stride *= window[1]
        elif kind in ("fc", "logits") or isinstance(module, _POOLS) or not spatial:
            size = stride = None  # adaptive pools, fc: every unit sees the whole image
        if kind == "conv":
            parent = name
        elif kind not in ("act", "pool", "norm"):
            parent = None
        infos[name] = StageInfo(
            name=name,
            kind=kind,
            shape=shapes[name],
            module=type(module).__name__,
            rf_size=size if spatial else None,
            rf_stride=stride if spatial else None,
            parent=parent if kind in ("act", "pool", "norm") else None,
        )
    _CACHE[model] = infos
    return infos


def _interesting(module: nn.Module) -> bool:
    if isinstance(module, _OF_INTEREST):
        return True
    return not type(module).__module__.startswith("torch.")  # the model's own leaf module


def discover_stages(
    net: nn.Module,
    prepare: Callable[[torch.Tensor], torch.Tensor],
    input_shape: tuple[int, ...],
    label: str,
    tail: nn.Module,
) -> dict[str, nn.Module]:
    """The stages of a model that does not declare them, traced in one forward pass.

    Every leaf module of interest (convolutions, activations, pooling, normalization,
    linear, flatten, the model's own leaf modules; not dropout or identity) is a stage,
    named by its module name (``features.0``, ``head.fc``), in the order forward first
    calls it: a module called twice (a shared ReLU, a residual block) is recorded at its
    first call. The last stage is the logits: the last module if its output *is* the
    model's output, else ``tail`` (an ``nn.Identity`` that
    :class:`~cnnscope.models.foreign.Adapted` applies to the output) named ``logits``
    (``output`` if that name is taken).

    In-place operations are switched off (``inplace=False``): an in-place ReLU would
    overwrite the conv output recorded just before it.
    """
    for m in net.modules():
        if isinstance(getattr(m, "inplace", None), bool):
            m.inplace = False  # type: ignore[assignment]
    names = {m: n for n, m in net.named_modules() if n}  # one name per module, the first
    order: list[str] = []
    outputs: dict[str, torch.Tensor] = {}

    def hook(name: str) -> Any:
        def record(_m: nn.Module, _i: Any, out: Any) -> None:
            if name not in outputs and isinstance(out, torch.Tensor) and out.dim() >= 2:
                order.append(name)
                outputs[name] = out

        return record

    leaves = [(n, m) for m, n in names.items() if not any(True for _ in m.children())]
    handles = [m.register_forward_hook(hook(n)) for n, m in leaves if _interesting(m)]
    was_training = net.training
    shape = (1, *input_shape)
    try:
        net.eval()
        with torch.no_grad():
            out = net(prepare(torch.zeros(shape)))
    except Exception as e:
        raise ValueError(
            f"{label}: its forward pass failed on a {shape} input ({type(e).__name__}: "
            f"{str(e).splitlines()[0] if str(e) else ''}); give the input size it expects "
            "with --input-size H,W (or an input_shape attribute on the model)"
        ) from e
    finally:
        net.train(was_training)
        for h in handles:
            h.remove()
    if not isinstance(out, torch.Tensor) or out.dim() != 2 or out.shape[0] != 1:
        got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ValueError(
            f"{label}: returns {got} for a {shape} input; cnnscope needs logits of shape "
            "(N, classes): make forward return one (N, classes) tensor"
        )
    if out.shape[1] < 2:
        raise ValueError(f"{label}: returns {tuple(out.shape)}; a classifier needs 2+ classes")
    stages = {n: net.get_submodule(n) for n in order}
    if not order or outputs[order[-1]] is not out:
        name = "logits" if "logits" not in stages else "output"
        stages[name] = tail
    return stages


def logits_stage(model: nn.Module) -> str:
    """The name of ``model``'s last stage, its logits (``"logits"``, ``"head.fc"``...)."""
    return next(reversed(stage_infos(model)))


def representation_stage(model: nn.Module) -> str:
    """The stage whose vectors the embedding views show: ``fc1`` where a model has one
    (the built-ins), else the last vector stage before the logits (else the logits)."""
    infos = list(stage_infos(model).values())
    names = [i.name for i in infos]
    if "fc1" in names and not infos[names.index("fc1")].spatial:
        return "fc1"
    vectors = [i.name for i in infos[:-1] if not i.spatial and i.kind in ("fc", "act", "norm")]
    return vectors[-1] if vectors else infos[-1].name


def num_classes(model: nn.Module) -> int:
    """How many classes ``model`` tells apart: the width of its logits stage."""
    return list(stage_infos(model).values())[-1].shape[0]


def resolve_stage(model: nn.Module, name: str) -> nn.Module:
    """The submodule whose output is stage ``name``; an unknown name lists the valid ones."""
    names: tuple[str, ...] = model.stage_names  # type: ignore[assignment]
    if name not in names:
        label = getattr(model, "arch", "") or type(model).__name__
        raise ValueError(f"unknown stage {name!r} for {label}; valid: {', '.join(names)}")
    return model.get_submodule(name)


def activation_stage(model: nn.Module, stage: str) -> str:
    """The stage that shows what ``stage`` *fires*: a conv stage's activation (or that of
    the conv a normalisation follows), else itself.

    A pre-activation conv map is signed and linear in its input, so its mean, its
    Grad-CAM weighting and its ranking of images all mislead (an empty map, a white or
    black image, the images with least ink); its activation's output does not. A
    normalised map (BatchNorm) is as signed as the conv's.
    """
    infos = stage_infos(model)
    if stage in infos and infos[stage].kind in ("conv", "norm"):
        conv = stage if infos[stage].kind == "conv" else infos[stage].parent
        for info in infos.values():
            if info.kind == "act" and info.parent == conv:
                return info.name
    return stage


def count_parameters(model: nn.Module) -> int:
    """Number of trainable numbers in ``model``."""
    return sum(p.numel() for p in model.parameters())
