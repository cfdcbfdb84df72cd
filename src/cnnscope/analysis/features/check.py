"""Are the preferred class images recognisable, and faithful? Judges that never saw the model say.

A class image can excite its logit while looking like nothing (the tutorials' complaint);
a prior can draw a fine digit while ignoring the network. So each class image of a method
is scored two ways: by independent judges trained on MNIST *pixels* (multinomial logistic
regression and 5-nearest neighbours: never the model being explained), and by how strongly
it excites its own **logit** (before the softmax) compared with the test digits of that
class: its percentile among them. An image is *faithful* when its logit beats 99 % of
them (the issue's "excites its own logit more than 99 % of the test digits of that class").
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

from ..._io import atomic_write
from ...data import MNIST, to_float
from ...models import StagedModel
from ...store import best_effort, judges_cache
from .methods import config_for
from .render import RenderConfig, layer_images

__all__ = ["FAITHFUL", "CheckResult", "Judges", "check_class_images", "judge_images"]

FAITHFUL = 0.99  # a class image out-excites this fraction of its class's test digits

_FRAME = np.ones((28, 28), bool)
_FRAME[4:24, 4:24] = False  # MNIST keeps this 4-px frame around its 20×20 box empty


class Judges:
    """Classifiers of raw MNIST pixels: logistic regression and 5-NN on ``n`` training digits.

    The logistic regression trains in about 3 s (L-BFGS) and is cached per data set in the
    user cache (``store.judges_cache``); the kNN needs no training. ``cache=False`` always
    trains. A test-only data set (the MNIST test set inside the package) lends its test
    digits instead (``self.split`` says which): still digits the explained model never
    drew, though the faithfulness percentile is measured on the same digits.
    """

    def __init__(self, data: MNIST, n: int = 20_000, seed: int = 0, cache: bool = True) -> None:
        g = torch.Generator().manual_seed(seed)
        self.split = "train" if len(data.train_images) else "test"
        images, labels = data.split(self.split)
        n = min(n, len(images))
        idx = torch.randperm(len(images), generator=g)[:n]
        self.x = to_float(images[idx]).flatten(1)  # (n, 784)
        self.y = labels[idx].long()
        path = judges_cache(data.checksum, f"{self.split}-n{n}-s{seed}")
        try:
            if not cache:
                raise FileNotFoundError
            stored = load_file(str(path))
            self.w, self.b = stored["w"], stored["b"]
            if self.w.shape != (784, 10) or self.b.shape != (10,):
                raise ValueError("wrong shapes")
        except Exception:  # absent or unreadable: train again (a few seconds)
            self.w, self.b = self._train()
            if cache:
                best_effort(
                    lambda: atomic_write(
                        path, lambda tmp: save_file({"w": self.w, "b": self.b}, str(tmp))
                    )
                )

    def _train(self) -> tuple[torch.Tensor, torch.Tensor]:
        w = torch.zeros(784, 10, requires_grad=True)
        b = torch.zeros(10, requires_grad=True)
        opt = torch.optim.LBFGS([w, b], max_iter=200, line_search_fn="strong_wolfe")

        def loss() -> torch.Tensor:
            opt.zero_grad()
            value = F.cross_entropy(self.x @ w + b, self.y) + 1e-4 * (w**2).sum()
            value.backward()
            return value

        opt.step(loss)
        return w.detach().contiguous(), b.detach().contiguous()

    def logistic(self, images: np.ndarray) -> np.ndarray:
        """(N, 28, 28) in [0, 1] → (N,) predicted classes."""
        x = torch.from_numpy(images.reshape(len(images), -1)).float()
        return (x @ self.w + self.b).argmax(1).numpy()

    def knn(self, images: np.ndarray, k: int = 5) -> np.ndarray:
        x = torch.from_numpy(images.reshape(len(images), -1)).float()
        nearest = torch.cdist(x, self.x).topk(k, largest=False).indices  # (N, k)
        votes = F.one_hot(self.y[nearest], 10).sum(1)
        return votes.argmax(1).numpy()


@dataclass
class CheckResult:
    """One model's class images of one method, judged."""

    method: str
    recognised: dict[str, int]  # judge → how many of the 10 class images it names right
    mean: float  # mean pixel (MNIST's test digits: 0.13)
    frame: float  # mean pixel in the 4-px frame (MNIST: 0.005)
    percentile: list[float]  # per class: fraction of that class's test digits it out-excites
    images: np.ndarray = field(repr=False)  # (10, 28, 28)

    @property
    def faithful(self) -> int:
        """Class images exciting their logit more than 99 % of their class's test digits."""
        return sum(p >= FAITHFUL for p in self.percentile)

    def sentence(self) -> str:
        """The score in words, as the Features tab and ``features --check`` state it."""
        n = len(self.percentile)
        worst = min(self.percentile) * 100
        return (
            f"recognised {self.recognised['logistic']}/{n} by an independent logistic "
            f"regression on MNIST pixels, {self.recognised['knn']}/{n} by 5-NN; "
            f"{self.faithful}/{n} excite their class's logit more than 99 % of its real "
            f"test digits do (lowest: {worst:.1f} %)"
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "recognised": dict(self.recognised),
            "faithful": self.faithful,
            "percentile": [round(p, 4) for p in self.percentile],
            "mean": round(self.mean, 4),
            "frame": round(self.frame, 4),
            "sentence": self.sentence(),
        }


@torch.no_grad()
def _percentiles(model: StagedModel, images: np.ndarray, data: MNIST) -> list[float]:
    model.eval()
    test = torch.cat([model(to_float(c)) for c in data.test_images.split(1000)])  # logits
    own = model(torch.from_numpy(images).float().unsqueeze(1))
    labels = data.test_labels
    k = len(images)
    return [float((test[labels == c, c] < own[c, c]).double().mean()) for c in range(k)]


def judge_images(
    model: StagedModel, images: np.ndarray, data: MNIST, judges: Judges, method: str
) -> CheckResult:
    """Judge 10 class images (10, 28, 28) in [0, 1] already rendered (shipped, cached)."""
    images = np.asarray(images, np.float32)
    classes = np.arange(len(images))
    return CheckResult(
        method=method,
        recognised={
            "logistic": int((judges.logistic(images) == classes).sum()),
            "knn": int((judges.knn(images) == classes).sum()),
        },
        mean=float(images.mean()),
        frame=float(images[:, _FRAME].mean()),
        percentile=_percentiles(model, images, data),
        images=images,
    )


def check_class_images(
    model: StagedModel,
    data: MNIST,
    judges: Judges,
    methods: Sequence[str] | dict[str, RenderConfig] = ("plain", "regularized"),
) -> list[CheckResult]:
    """Render the 10 class images (``logits``) with each method and judge them.

    ``methods``: method names (their default settings) or ``{label: RenderConfig}``.
    """
    configs = methods if isinstance(methods, dict) else {m: config_for(m) for m in methods}
    out = []
    for name, cfg in configs.items():
        images = layer_images(model, "logits", config=cfg)
        out.append(judge_images(model, images, data, judges, name))
    return out
