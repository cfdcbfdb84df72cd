"""One forward pass → every named stage's output.

Forward hooks are owned by :class:`StageRecorder`, a context manager that removes them on
exit, also when the forward pass raises, so a model is never left with stray hooks.
"""

from __future__ import annotations

from types import TracebackType
from typing import Any

import torch
from torch import nn

from ..models import (
    StagedModel,
    count_parameters,
    get_spec,
    logits_stage,
    resolve_stage,
    stage_infos,
)

__all__ = [
    "StageRecorder",
    "describe",
    "forward_until",
    "record",
    "stage_shapes",
]


class StageRecorder:
    """Record the outputs of named stages during forward passes.

    Parameters
    ----------
    model
        A :class:`~cnnscope.models.StagedModel`.
    stages
        Stage names to record; ``None`` records all of ``model.stage_names``. An unknown
        name raises ``ValueError`` listing the valid ones.
    detach
        Store detached tensors (the default). ``False`` keeps them in the autograd graph,
        for objectives that differentiate a stage (feature visualization, Grad-CAM).

    Notes
    -----
    A module that one forward pass calls twice (a shared ReLU, a residual block's) is
    recorded at its first call, as :func:`~cnnscope.models.stage_infos` describes it.

    Examples
    --------
    >>> with StageRecorder(model, ["conv1", "fc1"]) as rec:
    ...     logits = model(x)
    >>> rec.outputs["conv1"].shape  # (N, 32, 28, 28)
    """

    def __init__(
        self, model: StagedModel, stages: list[str] | None = None, *, detach: bool = True
    ) -> None:
        names = list(model.stage_names if stages is None else stages)
        self._model = model
        self._modules = {name: resolve_stage(model, name) for name in names}
        self._detach = detach
        self._handles: list[torch.utils.hooks.RemovableHandle] = []
        self._seen: set[str] = set()  # stages recorded in the current forward pass
        self.outputs: dict[str, torch.Tensor] = {}

    def __enter__(self) -> StageRecorder:
        try:
            self._handles.append(self._model.register_forward_pre_hook(self._new_pass))
            for name, module in self._modules.items():
                self._handles.append(module.register_forward_hook(self._hook(name)))
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def _new_pass(self, _module: nn.Module, _inputs: Any) -> None:
        self._seen.clear()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    def _hook(self, name: str) -> Any:
        def hook(_module: nn.Module, _inputs: Any, output: torch.Tensor) -> None:
            if name in self._seen:
                return
            self._seen.add(name)
            self.outputs[name] = output.detach() if self._detach else output

        return hook


@torch.no_grad()
def record(
    model: StagedModel, images: torch.Tensor, stages: list[str] | None = None
) -> dict[str, torch.Tensor]:
    """Run ``images`` (N, C, H, W) through ``model`` in eval mode; return every stage.

    The result maps stage names to tensors in forward order; the last stage
    (:func:`~cnnscope.models.logits_stage`) is always there and holds the model's output.
    """
    was_training = model.training
    model.eval()
    try:
        with StageRecorder(model, stages) as rec:
            logits = model(images)
    finally:
        model.train(was_training)
    return {**rec.outputs, logits_stage(model): logits}


def stage_shapes(model: StagedModel) -> dict[str, tuple[int, ...]]:
    """Each stage's output shape for one image, without the batch dimension."""
    return {name: info.shape for name, info in stage_infos(model).items()}


def describe(name: str) -> dict[str, Any]:
    """Name, description, options, parameter count and stage shapes of an architecture."""
    spec = get_spec(name)
    model = spec.build()
    return {
        "name": name,
        "description": spec.description,
        "config": dict(spec.defaults),
        "parameters": count_parameters(model),
        "stages": {k: list(v) for k, v in stage_shapes(model).items()},
    }


class _Stop(Exception):
    """Raised by a hook once the last needed stage is computed: the rest is not run."""


def forward_until(model: StagedModel, x: torch.Tensor, stages: set[str]) -> dict[str, torch.Tensor]:
    """Run ``model`` only as far as the last stage in ``stages``; return those outputs.

    Outputs stay in the autograd graph (feature visualization differentiates them); the
    logits stage's entry holds the model's output when the pass runs to the end.
    """
    for name in stages:
        resolve_stage(model, name)  # unknown stages list the valid ones
    order = [s for s in model.stage_names if s in stages]
    if not order:
        raise ValueError("forward_until needs at least one stage")
    last = order[-1]
    final = logits_stage(model)
    recorder = StageRecorder(model, order, detach=False)

    def stop(_m: Any, _i: Any, _o: Any) -> None:
        if last != final:
            raise _Stop

    with recorder:
        handle = model.get_submodule(last).register_forward_hook(stop)
        try:
            out = model(x)
            recorder.outputs[final] = out
        except _Stop:
            pass
        finally:
            handle.remove()
    return recorder.outputs
