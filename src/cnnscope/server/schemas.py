"""Request and response models: the API's contract (they become the OpenAPI schema)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from ..analysis.attribution import FAST_METHODS, METHODS

# A pixel of an MNIST-style image: white ink on black, 0 (black) … 1 (white), finite.
Pixel = Annotated[float, Field(ge=0.0, le=1.0, allow_inf_nan=False)]
# The 2017 TensorFlow demo's pixels: 0 (black) … 255 (white).
Pixel255 = Annotated[float, Field(ge=0.0, le=255.0, allow_inf_nan=False)]


# The attribution methods are listed once, in cnnscope.analysis.attribution.
if TYPE_CHECKING:
    Method = str
    FastMethod = str
else:
    Method = Literal[METHODS]
    FastMethod = Literal[FAST_METHODS]
# The most values ``pixels`` may hold: a 1,024×1,024 input (the route checks H×W exactly).
MAX_PIXELS = 1024 * 1024
# A class index; checked against the model's own number of classes by the route.
Digit = Annotated[int, Field(ge=0, le=999)]


class PredictRequest(BaseModel):
    """One drawing. Give exactly one of ``pixels`` and ``png``.

    * ``pixels``: H×W numbers, an image of the model's input size (``input_shape`` in
      ``/api/models``; 784 for 28×28) row by row, white ink on black, 0–1. Used as is
      unless ``preprocess`` is true (an MNIST test digit needs no preprocessing).
    * ``png``: the drawing canvas as a PNG, base64 (a ``data:image/png;base64,`` URL is
      fine), white ink on a black or transparent background, any size up to 1024×1024
      pixels (one megapixel; the page's canvas is 280×280).
      Always preprocessed MNIST-style: ink cropped, fitted in 20×20, centre of mass
      centred in 28×28 (for another input size, the box scaled to its shorter side).
    """

    model_config = ConfigDict(extra="forbid")

    pixels: list[Pixel] | None = Field(
        default=None,
        min_length=1,
        max_length=MAX_PIXELS,
        description="H×W values of the model's input size, row by row (checked by the route)",
    )
    png: str | None = Field(default=None, max_length=2_000_000)
    preprocess: bool | None = Field(
        default=None, description="default: false for pixels, true for png"
    )
    model: str | None = Field(default=None, description="model id; default: the server's")
    stages: Literal["all", "none"] = Field(
        default="all", description="'none' returns only the probabilities (faster)"
    )
    explain: FastMethod | None = Field(
        default=None, description="add this attribution map (fast methods only: ≤ 30 ms)"
    )
    target: Digit | None = Field(default=None, description="class to explain; default: top")

    @model_validator(mode="after")
    def _one_input(self) -> PredictRequest:
        if (self.pixels is None) == (self.png is None):
            raise ValueError("give exactly one of 'pixels' (H×W numbers) and 'png' (base64)")
        return self


class ExplainRequest(PredictRequest):
    """An attribution map on demand, any method. Same input fields as a prediction."""

    method: Method = "ig"
    layer: str | None = Field(
        default=None,
        max_length=200,
        description="stage for gradcam (a conv, activation or pooling stage of the model); "
        "default: its last conv stage",
    )


class EncodedStage(BaseModel):
    """A stage's values, each map quantised to uint8 between its own min and max.

    ``data`` is base64 of ``prod(shape)`` bytes in C order; map ``i`` (the first axis for
    conv stages, the whole vector otherwise) has value ``min[i] + q / 255 · (max[i] − min[i])``.
    """

    shape: list[int]
    min: list[float]
    max: list[float]
    data: str


class DerivedStage(BaseModel):
    """A stage the page computes from another instead of receiving it twice."""

    name: str
    source: str
    op: Literal["relu", "maxpool2"]
    shape: list[int]


class AttributionMap(BaseModel):
    method: str
    target: int
    map: EncodedStage = Field(description="(H, W); positive pushes the target's logit up")
    details: dict[str, object]


class ExplainResponse(BaseModel):
    model: str
    probabilities: list[float]
    input: EncodedStage
    attribution: AttributionMap
    server_ms: float


class PredictResponse(BaseModel):
    model: str
    predicted: int
    probabilities: list[float]
    logits: list[float]
    input: EncodedStage = Field(description="the H×W image the network saw")
    inverted: bool = Field(
        default=False, description="the input was dark ink on a bright background: inverted"
    )
    blank: bool = Field(
        default=False,
        description="nothing was drawn: the prediction is only what the network answers to "
        "an empty image",
    )
    stages: dict[str, EncodedStage] = Field(description="sent stages, in forward order")
    derived: list[DerivedStage] = Field(description="stages to compute from the sent ones")
    order: list[str] = Field(description="every stage name in forward order")
    attribution: AttributionMap | None = None
    server_ms: float


class EvaluationSummary(BaseModel):
    model: str
    classes: list[str] = Field(description="the K class names, in the matrix's order")
    data: str = Field(description="the test set evaluated on (a folder or .npz)")
    accuracy: float
    untrained_accuracy: float
    count: int
    errors: int
    confusion: list[list[int]] = Field(description="K×K; rows: true class, columns: predicted")
    precision: list[float]
    recall: list[float]
    f1: list[float]
    support: list[int]
    seconds: float = Field(description="time to predict the test set (0 if cached)")


class CellDigit(BaseModel):
    index: int
    label: int
    pred: int
    probabilities: list[float]
    pixels: str = Field(description="base64 of H×W uint8 values, row-major")
    size: list[int] = Field(default=[28, 28], description="(H, W) of the image")


class Cell(BaseModel):
    true: int
    pred: int
    count: int
    digits: list[CellDigit] = Field(description="least confident first, up to limit")


class EmbeddingFrame(BaseModel):
    step: int
    epoch: float
    subset_accuracy: float
    knn_original: float = Field(description="10-NN accuracy in the stage's own space")
    knn_2d: float = Field(description="10-NN accuracy in the 2-D layout")
    trustworthiness: float
    predictions: list[int] = Field(description="each point's predicted class at this step")
    coords: list[list[float]] = Field(description="(N, 2), scaled to an RMS radius of 10")


class Embedding(BaseModel):
    method: str
    stage: str
    aligned: bool
    indices: list[int] = Field(description="test-set index of each point")
    labels: list[int]
    settings: dict[str, object]
    seconds: float
    mean_displacement: float
    frames: list[EmbeddingFrame]
    classes: dict[str, list[list[float]]] = Field(
        description="2-D PCA of the 10 class weight vectors ('weights') and class means"
    )


class FeatureImages(BaseModel):
    model: str
    stage: str
    method: str
    status: Literal["ready", "running", "failed"]
    done: int = Field(description="units rendered so far")
    total: int
    images: str | None = Field(
        default=None,
        description="when ready: base64 of total × H × W uint8 (the model's input), unit by unit",
    )
    error: str | None = None
    dead: list[int] | None = Field(
        default=None,
        description="units that never fire on the test set (as `cnnscope unused` counts)",
    )


class TopExampleOut(BaseModel):
    index: int
    label: int
    score: float
    field: list[int] | None = Field(description="receptive field: top, left, bottom, right")
    pixels: str
    size: list[int] = Field(default=[28, 28], description="(H, W) of the image")


class StageInfo(BaseModel):
    """What a stage is (from ``cnnscope.models.stage_infos``); the page reads kinds here."""

    name: str
    kind: Literal["conv", "act", "pool", "norm", "fc", "logits", "other"]
    shape: list[int]
    module: str
    rf_size: int | None = None
    rf_stride: int | None = None
    parent: str | None = None


class ModelInfo(BaseModel):
    id: str
    arch: str
    description: str
    parameters: int
    input_shape: list[int] = Field(
        description="(C, H, W) of one input image: pixels holds H×W values, a png is fitted to H×W"
    )
    stages: list[StageInfo]
    metrics: dict[str, object]
    source: str
    embedding: bool = Field(description="training snapshots exist: the Embedding view works")
    classes: list[str] = Field(
        description="the name of each output, in order (K of them; '0'…'9' for MNIST)"
    )


class TestDigit(BaseModel):
    index: int
    label: int
    pixels: str = Field(description="base64 of H×W uint8 values, row-major")
    size: list[int] = Field(default=[28, 28], description="(H, W) of the image")
    name: str = Field(default="", description="the label's class name")


class FilterWeights(BaseModel):
    stage: str
    shape: list[int] = Field(description="(out channels, in channels, kH, kW)")
    scale: float = Field(description="values are (q − 127.5) / 127.5 · scale")
    data: str


class AttributionMethod(BaseModel):
    id: str
    name: str
    live: bool = Field(description="computed with every prediction (`explain` in /api/predict)")


class FeatureMethod(BaseModel):
    id: str
    name: str
    trade: str = Field(description="what the method gives and what it costs, in one line")


class FeatureCheck(BaseModel):
    """A method's 10 class images judged from outside the model (features --check)."""

    model: str
    method: str
    recognised: dict[str, int] = Field(
        description="judge (logistic, knn: trained on MNIST pixels) → class images named right"
    )
    faithful: int = Field(description="class images whose logit beats 99 % of their class's digits")
    percentile: list[float] = Field(
        description="per class: the fraction of its test digits the image's logit beats"
    )
    mean: float = Field(description="mean pixel (MNIST's test digits: 0.13)")
    frame: float = Field(description="mean pixel of the 4-px border (MNIST: 0.005)")
    sentence: str = Field(description="the score in words, as the Features tab shows it")


class Health(BaseModel):
    status: Literal["ok"]
    version: str
    models: list[str]
    default_model: str
    attribution: list[AttributionMethod] = Field(
        description="the attribution methods, in the order the page offers them"
    )
    features: list[FeatureMethod] = Field(
        default_factory=list,
        description="the feature-visualization methods, in the order the page offers them",
    )


class ArithmeticRequest(PredictRequest):
    """How one value is computed: a drawing (as for a prediction) and the value's place.

    ``stage`` is a conv, fully connected or logits stage; ``channel`` the map of a conv
    stage or the unit of a vector stage; ``y`` and ``x`` the position in a conv map (0 for
    vector stages). ``stages``, ``explain`` and ``target`` are ignored.
    """

    stage: str = Field(max_length=200)
    channel: int = Field(default=0, ge=0)
    y: int = Field(default=0, ge=0)
    x: int = Field(default=0, ge=0)


class ArithmeticResponse(BaseModel):
    """The terms of one value (see ``cnnscope.analysis.arithmetic.Arithmetic``)."""

    model: str
    stage: str
    kind: Literal["conv", "fc", "logits"]
    module: str
    channel: int
    y: int
    x: int
    input_stage: str = Field(description="the stage whose output is the input ('input': the image)")
    input_shape: list[int]
    sum: float = Field(description="the sum of every weight × input term")
    bias: float
    pre_activation: float = Field(description="sum + bias")
    value: float = Field(description="the model's own recorded output at this place")
    terms: int
    kernel: list[int]
    origin: list[int] = Field(description="input (row, col) of the patch's top-left corner")
    padding: list[int]
    stride: list[int]
    patches: list[dict[str, object]] = Field(
        description="up to 4 input channels: input, kernel, products (kH × kW), sum"
    )
    partials: list[float] = Field(description="conv: each input channel's sum")
    top: list[dict[str, object]] = Field(description="the largest weight × input terms")
    rest: float = Field(description="the sum of the terms not in top")
    norm: dict[str, object] | None = Field(
        default=None,
        description="conv: the normalisation before its activation (BatchNorm: value × "
        "scale + shift), {stage, module, scale, shift, value}",
    )
    activation: dict[str, object] | None
    pool: dict[str, object] | None
    softmax: dict[str, object] | None
    input: EncodedStage = Field(description="the H×W image the network saw")


# ---- training runs (routes/runs.py) -------------------------------------------------
class RunRequest(BaseModel):
    """A training run to start: a model, a recipe, its length and seed.

    Give ``steps`` or ``epochs`` (not both); neither means the recipe's own length.
    """

    model_config = ConfigDict(extra="forbid")

    model: str = Field(
        max_length=200,
        description="a built-in architecture, or the id of your own model this server serves "
        "(started with --model net.py:Net): /api/training lists them",
    )
    recipe: str = Field(default="fast", max_length=200, description="fast, seed or best")
    epochs: float | None = Field(default=None, gt=0, le=1000, allow_inf_nan=False)
    steps: int | None = Field(default=None, description="optimizer steps (capped)")
    seed: int = Field(default=0, ge=0, le=2**31 - 1)


class RunStarted(BaseModel):
    id: str
    model: str = Field(description="the model id the run is served as once it has a checkpoint")


class RunDeleted(BaseModel):
    id: str
    model: str = Field(description="the model id it was served as, now gone from the picker")


class RunSettings(BaseModel):
    model: str = Field(description="a built-in's name, or your own model's path/net.py:Net")
    recipe: str
    steps: int
    seed: int
    normalize: list[float] | None = Field(default=None, description="your own model's")
    input_size: list[int] | None = Field(default=None, description="your own model's (H, W)")


class RunProgress(BaseModel):
    status: Literal["queued", "running", "stopped", "done", "failed"]
    step: int
    total_steps: int
    steps_per_s: float | None = None
    images_per_s: float | None = None
    seconds_left: float | None = None


class RunInfo(BaseModel):
    id: str
    status: Literal["queued", "running", "stopped", "done", "failed"]
    step: int = Field(description="the last step with metrics")
    total_steps: int
    settings: RunSettings
    created: str
    model: str | None = Field(description="model id in /api/models; None before a checkpoint")
    checkpoint_step: int | None = Field(description="the step of the newest checkpoint")
    error: str | None = None


class RunDetail(RunInfo):
    config: dict[str, object] = Field(description="the TrainConfig it trains with")
    progress: RunProgress
    metrics: list[dict[str, object]] = Field(description="metrics.jsonl so far, in order")


class Training(BaseModel):
    """Whether this server trains from the page, what it trains, and its limits."""

    enabled: bool
    reason: str = Field(description="why training is off (empty when on)")
    models: list[str] = Field(description="what a run may train: built-ins, then your own")
    recipes: list[str]
    max_steps: int
    folder: str
