"""Objectives: what a render maximises, addressed as ``"conv2:17"``, ``"fc1:512"``, ``"prob:3"``.

An :class:`Objective` scores each batch element from the recorded stage outputs and
composes with ``+``, ``-`` and scalar ``*``; :func:`parse` turns the shorthand into one, in
this one place, and lists the valid stages and units when it cannot.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F

from ...models import StagedModel, activation_stage, logits_stage, resolve_stage, stage_infos

__all__ = ["Objective", "Outputs", "channels", "check_units", "parse", "stage_size"]

Outputs = dict[str, torch.Tensor]


class Objective:
    """A score per batch element, computed from the recorded stage outputs.

    ``fn(outputs) -> (B,)``; ``stages`` names what must be recorded. Compose with
    ``+``, ``-`` and scalar ``*``.
    """

    def __init__(self, fn: Callable[[Outputs], torch.Tensor], stages: set[str], name: str) -> None:
        self.fn, self.stages, self.name = fn, stages, name

    def __call__(self, outputs: Outputs) -> torch.Tensor:
        return self.fn(outputs)

    def __add__(self, other: Objective) -> Objective:
        return Objective(
            lambda o: self(o) + other(o), self.stages | other.stages, f"{self.name} + {other.name}"
        )

    def __sub__(self, other: Objective) -> Objective:
        return self + (-1.0) * other

    def __mul__(self, k: float) -> Objective:
        return Objective(lambda o: k * self(o), self.stages, f"{k:g}·{self.name}")

    __rmul__ = __mul__

    def __neg__(self) -> Objective:
        return -1.0 * self


def channels(
    stage: str, units: Sequence[int], mode: str = "mean", model: StagedModel | None = None
) -> Objective:
    """Batch element ``b`` maximises unit ``units[b]`` of ``stage``.

    For a conv/ReLU/pool stage a unit is a channel, scored by its map's mean
    (``mode="mean"``) or its centre value (``"centre"``); for fc stages and logits a unit
    is one number. ``stage="prob"`` scores log-probabilities of classes.

    The mean of a pre-activation conv map is linear in the image, so maximising it only
    whitens or blackens everything; with ``model`` given, a conv stage's mean is read from
    its ReLU (as Lucid does); a conv whose activation is a function inside forward (no
    module, so no stage: PyTorch's MNIST example) has its map rectified here instead. The
    centre unit stays pre-activation: its best input is the filter's own pattern.
    """
    idx = torch.as_tensor(list(units))
    name = f"{stage}:{','.join(map(str, units)) if len(units) <= 4 else f'{len(units)} units'}"
    # "prob" reads the logits, wherever the model has them (the built-ins: "logits").
    logits = logits_stage(model) if model is not None else "logits"
    read = logits if stage == "prob" else stage
    rectify = False
    if model is not None and mode == "mean" and stage != "prob":
        read = activation_stage(model, read)
        infos = stage_infos(model)
        rectify = read in infos and infos[read].kind == "conv"  # no activation stage after it

    def fn(outputs: Outputs) -> torch.Tensor:
        values = F.log_softmax(outputs[read], dim=1) if stage == "prob" else outputs[read]
        if rectify:
            values = F.relu(values)
        b = torch.arange(len(idx))
        picked = values[b, idx]  # (B,) or (B, H, W)
        if picked.dim() == 3:
            if mode == "centre":
                return picked[:, picked.shape[1] // 2, picked.shape[2] // 2]
            return picked.mean(dim=(1, 2))
        return picked

    return Objective(fn, {read}, name)


def parse(spec: str, model: StagedModel | None = None) -> Objective:
    """``"conv2:17"``, ``"conv2:17:centre"``, ``"fc1:512"``, ``"logits:3"``, ``"prob:3"``.

    With ``model`` given, the stage and unit are checked and an error lists what is valid.
    """
    parts = spec.split(":")
    if len(parts) not in (2, 3) or not parts[1].lstrip("-").isdigit():
        raise ValueError(
            f"objective {spec!r} is not STAGE:UNIT[:centre], e.g. 'conv2:17', 'logits:3'"
        )
    stage, unit = parts[0], int(parts[1])
    mode = parts[2] if len(parts) == 3 else "mean"
    if mode not in ("mean", "centre"):
        raise ValueError(f"objective {spec!r}: mode must be 'mean' or 'centre', not {mode!r}")
    if model is not None:
        check_units(model, stage, [unit])
    return channels(stage, [unit], mode, model)


def stage_size(model: StagedModel, stage: str) -> int:
    """Number of units (channels for conv stages) of ``stage``; ``"prob"``: the classes."""
    if stage == "prob":
        return list(stage_infos(model).values())[-1].shape[0]
    resolve_stage(model, stage)  # unknown stages list the valid ones
    return stage_infos(model)[stage].shape[0]


def check_units(model: StagedModel, stage: str, units: Sequence[int]) -> None:
    n = stage_size(model, stage)
    bad = [u for u in units if not 0 <= u < n]
    if bad:
        raise ValueError(f"{stage} has units 0–{n - 1}; {bad[:5]} are outside")
