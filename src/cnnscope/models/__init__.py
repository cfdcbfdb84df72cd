"""Models: the built-in architectures and what their stages are.

Every stage a person may look at is a submodule whose *output* is that stage, so a forward
hook on ``model.get_submodule(name)`` records it; ``model.stage_names`` lists them in
forward order and :func:`stage_infos` describes each (kind, shape, receptive field).
The built-ins declare their stages; your own model (:func:`load_foreign`) has them
discovered by tracing one forward pass, and the rest of cnnscope cannot tell the two apart.
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
from .foreign import (
    Adapted,
    ForeignModelError,
    build_foreign,
    is_foreign_spec,
    load_foreign,
    read_state_dict,
    state_mismatch,
)
from .stages import (
    KINDS,
    StageInfo,
    activation_stage,
    count_parameters,
    discover_stages,
    logits_stage,
    num_classes,
    representation_stage,
    resolve_stage,
    stage_infos,
)

__all__ = [
    "DEFAULT_MODEL",
    "INPUT_SHAPE",
    "KINDS",
    "MODELS",
    "NUM_CLASSES",
    "Adapted",
    "ForeignModelError",
    "ModelSpec",
    "StageInfo",
    "StagedModel",
    "activation_stage",
    "build_foreign",
    "build_model",
    "count_parameters",
    "discover_stages",
    "get_spec",
    "is_foreign_spec",
    "load_foreign",
    "logits_stage",
    "num_classes",
    "read_state_dict",
    "representation_stage",
    "resolve_stage",
    "stage_infos",
    "state_mismatch",
]
