"""Units and the data: filters, the test digits a unit likes most, units that never fire."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ...data import to_float
from ...models import StagedModel, activation_stage, resolve_stage, stage_infos
from ..activations import forward_until
from .objectives import check_units

__all__ = [
    "TOP_K",
    "TopExample",
    "UnitIndex",
    "dead_units",
    "filters",
    "top_examples",
    "unit_index",
    "unit_scores",
    "unused_channels",
]

TOP_K = 64  # examples an index keeps per unit: the most the server's route asks for


def filters(model: StagedModel, stage: str) -> np.ndarray:
    """A conv stage's kernels, (out, in, kH, kW); conv1's are 5×5 images of what it detects."""
    module = resolve_stage(model, stage)
    if not isinstance(module, torch.nn.Conv2d):
        convs = [
            s for s in model.stage_names if isinstance(model.get_submodule(s), torch.nn.Conv2d)
        ]
        raise ValueError(f"{stage} has no filters; stages with filters: {', '.join(convs)}")
    return module.weight.detach().numpy().copy()


@torch.no_grad()
def unit_scores(
    model: StagedModel,
    images: torch.Tensor,
    stage: str,
    batch_size: int = 1000,
    progress: Callable[[int, int], None] | None = None,
) -> np.ndarray:
    """(N, units): each image's mean activation of each channel (or unit) of ``stage``.

    A conv stage is scored after a ReLU: callers pass a conv's activation stage
    (:func:`~cnnscope.models.activation_stage`), so a conv here is one whose activation
    is a function inside forward, not a stage. ``progress(done, total)`` is called after
    each batch with the images done so far.
    """
    out = []
    model.eval()
    resolve_stage(model, stage)  # an unknown stage lists the valid ones
    rectify = stage_infos(model)[stage].kind == "conv"
    for i in range(0, len(images), batch_size):
        o = forward_until(model, to_float(images[i : i + batch_size]), {stage})[stage]
        o = o.clamp(min=0) if rectify else o
        out.append((o.mean(dim=(2, 3)) if o.dim() == 4 else o).numpy())
        if progress is not None:
            progress(min(i + batch_size, len(images)), len(images))
    return np.concatenate(out)


@dataclass(frozen=True)
class TopExample:
    index: int  # test-set index
    score: float  # the unit's activation (channel mean, or the unit's value)
    peak: tuple[int, int] | None  # conv units: (row, col) of the strongest position, input pixels
    field: (
        tuple[int, int, int, int] | None
    )  # conv units: receptive field (top, left, bottom, right)


@dataclass(frozen=True)
class UnitIndex:
    """For every unit of some stages, the images that excite it most, best first.

    Built by :func:`unit_index` in one pass over the images (~7 s for deep_mnist's 10,000
    test digits, every stage), then any unit's top examples are a lookup. ``top[stage]``
    is (k, units) image indices, ``scores[stage]`` their scores, column ``u`` exactly the
    first k of a full scan's stable ranking of unit ``u``.
    """

    top: dict[str, np.ndarray]  # stage → (k, units) int64
    scores: dict[str, np.ndarray]  # stage → (k, units) float32

    @property
    def k(self) -> int:
        return min((t.shape[0] for t in self.top.values()), default=0)

    def save(self, path: Path) -> None:
        """Write as safetensors: ``top/STAGE`` and ``scores/STAGE`` tensors."""
        from safetensors.numpy import save_file

        arrays = {f"top/{s}": np.ascontiguousarray(t) for s, t in self.top.items()}
        arrays |= {f"scores/{s}": np.ascontiguousarray(v) for s, v in self.scores.items()}
        save_file(arrays, str(path))

    @classmethod
    def load(cls, path: Path) -> UnitIndex:
        """Read what :meth:`save` wrote; ``ValueError`` when the file is not such an index."""
        from safetensors.numpy import load_file

        arrays = load_file(str(path))
        top = {k.split("/", 1)[1]: v for k, v in arrays.items() if k.startswith("top/")}
        scores = {k.split("/", 1)[1]: v for k, v in arrays.items() if k.startswith("scores/")}
        if not top or top.keys() != scores.keys():
            raise ValueError(f"{path} is not a unit index")
        for name, t in top.items():
            if t.ndim != 2 or t.shape != scores[name].shape:
                raise ValueError(f"{path}: {name} has top {t.shape}, scores {scores[name].shape}")
        return cls(top, scores)


@torch.no_grad()
def unit_index(
    model: StagedModel,
    images: torch.Tensor,
    stages: Iterable[str],
    k: int = TOP_K,
    batch_size: int = 1000,
    progress: Callable[[int, int], None] | None = None,
) -> UnitIndex:
    """Each unit's ``k`` top images for every stage in ``stages``, from one pass.

    Scores are :func:`unit_scores`' (the same batches, so the same numbers), ranked as
    :func:`top_examples` ranks them. Holds (N, units) float32 per stage while it runs:
    ~52 MB for all of deep_mnist's stages over 10,000 images.
    """
    wanted = set(stages)
    for name in wanted:
        resolve_stage(model, name)  # an unknown stage lists the valid ones
    model.eval()
    parts: dict[str, list[np.ndarray]] = {name: [] for name in wanted}
    for i in range(0, len(images), batch_size):
        outs = forward_until(model, to_float(images[i : i + batch_size]), wanted)
        for name in wanted:
            o = outs[name]
            parts[name].append((o.mean(dim=(2, 3)) if o.dim() == 4 else o).numpy())
        if progress is not None:
            progress(min(i + batch_size, len(images)), len(images))
    top, scores = {}, {}
    for name, chunks in parts.items():
        s = np.concatenate(chunks)  # (N, units)
        order = np.argsort(-s, axis=0, kind="stable")[:k]  # (k, units)
        top[name] = order.astype(np.int64)
        scores[name] = np.take_along_axis(s, order, axis=0).astype(np.float32)
    return UnitIndex(top, scores)


@torch.no_grad()
def top_examples(
    model: StagedModel,
    images: torch.Tensor,
    stage: str,
    unit: int,
    k: int = 9,
    scores: np.ndarray | None = None,
    index: UnitIndex | None = None,
) -> list[TopExample]:
    """The ``k`` images that excite ``unit`` of ``stage`` most, with the receptive field of
    the strongest position for conv units (where in the digit the unit fired).

    ``index`` (from :func:`unit_index` on the same images) answers without a scan when it
    holds the stage and at least ``k`` examples; else ``scores``, else a full scan.
    """
    if stage == "prob":
        raise ValueError("top examples need a stage; 'prob' is only an objective (use logits)")
    check_units(model, stage, [unit])
    # A pre-activation conv channel's mean is mostly negative: the least negative images are
    # the ones with least ink, not the ones it detects. Rank by what fires: its ReLU.
    stage = activation_stage(model, stage)
    if index is not None and stage in index.top and index.top[stage].shape[0] >= k:
        best = index.top[stage][:k, unit]
        best_scores = index.scores[stage][:k, unit]
    else:
        s = unit_scores(model, images, stage) if scores is None else scores
        best = np.argsort(-s[:, unit], kind="stable")[:k]
        best_scores = s[best, unit]
    out = []
    info = stage_infos(model)[stage]
    size, stride = info.rf_size, info.rf_stride
    x = to_float(images[torch.as_tensor(best)])
    maps = forward_until(model.eval(), x, {stage})[stage]
    for j, i in enumerate(best):
        peak = field = None
        if maps.dim() == 4 and size is not None and stride is not None:
            m = maps[j, unit]
            r, c = divmod(int(m.argmax()), m.shape[1])
            # The unit's centre in input pixels, and its field clipped to the image.
            cy, cx = r * stride + stride // 2, c * stride + stride // 2
            half = size // 2
            field = (
                max(0, cy - half),
                max(0, cx - half),
                min(x.shape[-2], cy + half + 1),
                min(x.shape[-1], cx + half + 1),
            )
            peak = (cy, cx)
        out.append(TopExample(int(i), float(best_scores[j]), peak, field))
    return out


def dead_units(peak: np.ndarray, threshold: float = 1e-3) -> list[int]:
    """Units whose largest activation ``peak`` (units,) is below ``threshold`` × the
    stage's largest: the one rule of "dead" for ``unused`` and the Features view."""
    ceiling = float(peak.max()) if peak.size else 0.0
    return [int(u) for u in np.flatnonzero(peak <= threshold * max(ceiling, 1e-12))]


def unused_channels(
    model: StagedModel,
    images: torch.Tensor,
    stage: str,
    threshold: float = 1e-3,
    scores: np.ndarray | None = None,
) -> dict[str, Any]:
    """Channels (units) whose activation is (near) zero on every image: dead units.

    Measured where units fire: a conv stage is read after its activation (a negative
    pre-activation is silent too), as the feature images and top examples are. A unit
    counts as unused when its largest mean activation over ``images`` is below
    ``threshold`` times the stage's largest. ``"stage"`` in the result is the stage read.
    """
    stage = activation_stage(model, stage)
    s = unit_scores(model, images, stage) if scores is None else scores
    peak = s.max(axis=0)  # (units,)
    unused = dead_units(peak, threshold)
    return {
        "stage": stage,
        "units": len(peak),
        "unused": unused,
        "threshold": threshold,
        "max_per_unit": peak.round(6).tolist(),
    }
