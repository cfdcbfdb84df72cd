"""Models: the built-in architectures and what their stages are.

Every stage a person may look at is a submodule whose *output* is that stage, so a forward
hook on ``model.get_submodule(name)`` records it; ``model.stage_names`` lists them in
forward order and :func:`stage_infos` describes each (kind, shape, receptive field).
"""

from .builtin import (
    DEFAULT_MODEL,
    INPUT_SHAPE,
    MODELS,
    NUM_CLASSES,
    ModelSpec,
    StagedModel,
    build_model,
    get_spec,
)
from .stages import (
    KINDS,
    StageInfo,
    activation_stage,
    count_parameters,
    resolve_stage,
    stage_infos,
)

__all__ = [
    "DEFAULT_MODEL",
    "INPUT_SHAPE",
    "KINDS",
    "MODELS",
    "NUM_CLASSES",
    "ModelSpec",
    "StageInfo",
    "StagedModel",
    "activation_stage",
    "build_model",
    "count_parameters",
    "get_spec",
    "resolve_stage",
    "stage_infos",
]
