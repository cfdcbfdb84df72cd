"""``TrainConfig``: everything that defines a training run, and the named recipes."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

from ..models import get_spec, is_foreign_spec

# Far beyond any useful run (the seed recipe is ~18 epochs), and small enough that
# epochs × steps per epoch stays a finite integer: 1e308 epochs was a traceback.
MAX_EPOCHS = 10_000

# The training step's precisions: TrainConfig.precision's values, the CLI's choices.
PRECISIONS = ("auto", "fp32", "bf16")

__all__ = ["PRECISIONS", "RECIPES", "TrainConfig"]


@dataclass
class TrainConfig:
    """Everything that defines a training run. Defaults are the ``fast`` recipe.

    Use :meth:`from_recipe` for a named recipe with overrides.
    """

    model: str = "deep_mnist"  # architecture, one of cnnscope.models.MODELS
    recipe: str = "fast"  # label recorded with the weights; see RECIPES
    epochs: float = 1.5  # passes over the 55,000 training images (ignored if steps > 0)
    steps: int = 0  # total optimizer steps; 0 = epochs × steps per epoch
    batch_size: int = 128  # images per step
    optimizer: str = "adamw"  # "adam", "adamw" or "sgd" (Nesterov momentum 0.9)
    lr: float = 4e-3  # peak learning rate (the constant one for schedule="constant")
    schedule: str = "onecycle"  # "onecycle" (warm-up then cosine decay) or "constant"
    weight_decay: float = 5e-4  # decoupled for adamw; L2 for sgd; unused by adam
    label_smoothing: float = 0.1  # 0.1 is a typical value; 0 = plain cross-entropy
    dropout: float | None = None  # None = the architecture's default (0.5 for deep_mnist)
    seed: int = 0  # weights init, shuffling and dropout all derive from it
    train_limit: int = 0  # use only the first N training images (smoke tests); 0 = all
    data_dir: str | None = None  # None = the look-up order in cnnscope.data
    run_dir: str = "runs/deep_mnist"  # where the run's files go
    log_every: int = 50  # steps between metric lines and TensorBoard points
    checkpoint_every: int = 200  # steps between checkpoints (validation, weights, state); 0: epochs
    snapshot_steps: tuple[int, ...] = (0, 50, 100, 200, 500, 1000)  # plus every epoch end
    snapshot_size: int = 2000  # test images in the fixed embedding subset; 0 = none
    channels_last: bool = True  # ~1.4× faster convolutions on CPU (measured, bench/)
    # The training forward pass and loss: "fp32", or "bf16" under torch.autocast (weights,
    # optimizer and evaluation stay float32); "auto": bf16 where the device computes it
    # natively (cnnscope.devices.native_bf16: CPUs with AMX or AVX-512 BF16, recent GPUs),
    # else fp32. The weights record the one that ran.
    precision: str = "auto"
    augment: bool = False  # random affine per image: ±10°, ±2 px, ×0.9–1.1 (train/augment.py)

    @classmethod
    def from_recipe(cls, name: str, **overrides: Any) -> TrainConfig:
        """The config of recipe ``name`` ("fast", "seed" or "best") with ``overrides`` applied."""
        if name not in RECIPES:
            raise ValueError(f"unknown recipe {name!r}; valid: {', '.join(RECIPES)}")
        fields = {f.name for f in dataclasses.fields(cls)}
        unknown = set(overrides) - fields
        if unknown:
            raise ValueError(f"unknown config fields {sorted(unknown)}; valid: {sorted(fields)}")
        values = {**RECIPES[name], "recipe": name, **overrides}
        if "run_dir" not in overrides:
            model = str(values.get("model", cls.model))
            # your own model "path/net.py:Net" trains into runs/Net
            values["run_dir"] = (
                f"runs/{model.rpartition(':')[2] if is_foreign_spec(model) else model}"
            )
        return cls(**values)

    def total_steps(self, train_images: int) -> int:
        """Optimizer steps of a run over ``train_images`` images: ``steps``, else ``epochs``
        passes of whole batches (at least one step). The loop and the page's runs share it."""
        if self.steps:
            return self.steps
        per_epoch = train_images // max(1, min(self.batch_size, train_images))
        return max(1, round(self.epochs * per_epoch))

    def validate(self) -> None:
        if not is_foreign_spec(self.model):  # your own model is built by the caller
            get_spec(self.model)
        checks = [
            (self.batch_size >= 1, "batch_size must be ≥ 1"),
            (self.lr > 0, "lr must be > 0"),
            (self.steps >= 0, "steps must be ≥ 0"),
            (self.steps > 0 or self.epochs > 0, "epochs must be > 0 when steps is 0"),
            (self.epochs <= MAX_EPOCHS, f"epochs must be ≤ {MAX_EPOCHS:,}"),
            (self.optimizer in ("adam", "adamw", "sgd"), "optimizer: adam, adamw or sgd"),
            (self.schedule in ("onecycle", "constant"), "schedule: onecycle or constant"),
            (self.precision in PRECISIONS, f"precision: {', '.join(PRECISIONS)}"),
            (0 <= self.label_smoothing < 1, "label_smoothing must be in [0, 1)"),
            (self.dropout is None or 0 <= self.dropout < 1, "dropout must be in [0, 1)"),
            (self.train_limit >= 0, "train_limit must be ≥ 0"),
            (self.log_every >= 1, "log_every must be ≥ 1"),
            (self.checkpoint_every >= 0, "checkpoint_every must be ≥ 0"),
            (self.snapshot_size >= 0, "snapshot_size must be ≥ 0"),
            (self.seed >= 0, "seed must be ≥ 0"),
            (
                all(math.isfinite(v) for v in (self.lr, self.epochs, self.weight_decay)),
                "lr, epochs and weight_decay must be finite",
            ),
        ]
        errors = [msg for ok, msg in checks if not ok]
        if errors:
            raise ValueError("invalid TrainConfig: " + "; ".join(errors))


RECIPES: dict[str, dict[str, Any]] = {
    # Tuned for a 2-core CPU: fewest images to ≥ 99.2 %. A one-cycle schedule of 1.5
    # epochs peaking at 4e-3 with label smoothing 0.1 first reaches 99.2 % after 51,200
    # images (step 400; seed 1 at 2 threads: step 500) and ends at 99.26–99.37 % after
    # 82,000 (seeds 0 and 1, tested every 100 steps by bench/train_speed.py). The former
    # recipe (3 epochs at 3e-3, no smoothing) ran 165,000 images to end at 99.28 %.
    # precision "auto" is bf16 on a CPU with AMX (this machine): seeds 0 / 1 / 2 reach
    # 99.2 % at steps 400 / 500 / 400 and end at 99.38 / 99.32 / 99.39 % (fp32: 99.26–
    # 99.37 %), so bf16 costs no accuracy; its step (with the fused AdamW) trains 2.0× /
    # 2.6× the images/s of the former fp32 one at batch 50 / 128 (1 thread, CPU time,
    # load average 8–10).
    "fast": {
        "epochs": 1.5,
        "steps": 0,
        "batch_size": 128,
        "optimizer": "adamw",
        "lr": 4e-3,
        "schedule": "onecycle",
        "weight_decay": 5e-4,
        "label_smoothing": 0.1,
        "precision": "auto",
    },
    # "Deep MNIST for Experts" as written: Adam 1e-4, batch 50, 20,000 steps, dropout 0.5.
    # Its arithmetic is the step's, not the tutorial's: bf16 where the CPU computes it
    # natively ("auto"; weights and optimizer stay float32), 1.39× the TensorFlow app's
    # images/s at batch 50 here (bench/train_profile.py, quiet machine); fp32 ran 0.93×.
    # --precision fp32 trains in TensorFlow's float32.
    "seed": {
        "steps": 20_000,
        "batch_size": 50,
        "optimizer": "adam",
        "lr": 1e-4,
        "schedule": "constant",
        "weight_decay": 0.0,
        "label_smoothing": 0.0,
        "precision": "auto",
    },
    # The `best` model's: ≥ 99.6 % test accuracy in ≤ 20 minutes on a 2-core CPU (99.70 %,
    # validation 99.68 %, in 14.5 min at load average 7.5–12). Random affine augmentation
    # is what lifts a small CNN past 99.5 % (4 epochs: validation 99.44 %; 12: 99.68 %);
    # bf16 autocast at batch 256 trains 2.2× the images/s of fp32 at batch 128 on a CPU
    # with AMX (bench/best_model.py --speed); "auto" keeps fp32 where bf16 is not native.
    # Validation every epoch only.
    "best": {
        "epochs": 12,
        "steps": 0,
        "batch_size": 256,
        "optimizer": "adamw",
        "lr": 4e-3,
        "schedule": "onecycle",
        "weight_decay": 1e-2,
        "label_smoothing": 0.1,
        "augment": True,
        "precision": "auto",  # bf16 here (AMX): what the shipped run used
        "checkpoint_every": 0,
    },
}
