"""Are the preferred class images recognisable? Judges that never saw the model say.

A class image can excite its logit while looking like nothing (the tutorials' complaint);
a prior can draw a fine digit while ignoring the network. So each class image of a method
is scored two ways: by independent judges trained on MNIST *pixels* (multinomial logistic
regression and 5-nearest neighbours: never the model being explained), and by how strongly
it excites its own logit compared with the test digits of that class (faithfulness).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from ...data import MNIST, to_float
from ...models import StagedModel
from .render import RenderConfig, layer_images

__all__ = ["CheckResult", "Judges", "check_class_images"]

_FRAME = np.ones((28, 28), bool)
_FRAME[4:24, 4:24] = False  # MNIST keeps this 4-px frame around its 20×20 box empty


class Judges:
    """Classifiers of raw MNIST pixels, trained once: logistic regression and 5-NN."""

    def __init__(self, data: MNIST, n: int = 20_000, seed: int = 0) -> None:
        g = torch.Generator().manual_seed(seed)
        idx = torch.randperm(len(data.train_images), generator=g)[:n]
        self.x = to_float(data.train_images[idx]).flatten(1)  # (n, 784)
        self.y = data.train_labels[idx].long()
        w = torch.zeros(784, 10, requires_grad=True)
        b = torch.zeros(10, requires_grad=True)
        opt = torch.optim.LBFGS([w, b], max_iter=200, line_search_fn="strong_wolfe")

        def loss() -> torch.Tensor:
            opt.zero_grad()
            value = F.cross_entropy(self.x @ w + b, self.y) + 1e-4 * (w**2).sum()
            value.backward()
            return value

        opt.step(loss)
        self.w, self.b = w.detach(), b.detach()

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
        return sum(p >= 0.99 for p in self.percentile)


@torch.no_grad()
def _percentiles(model: StagedModel, images: np.ndarray, data: MNIST) -> list[float]:
    model.eval()
    test = torch.cat([model(to_float(c)) for c in data.test_images.split(1000)])
    own = model(torch.from_numpy(images).unsqueeze(1))
    labels = data.test_labels
    return [float((test[labels == k, k] < own[k, k]).float().mean()) for k in range(10)]


def check_class_images(
    model: StagedModel,
    data: MNIST,
    judges: Judges,
    methods: dict[str, RenderConfig] | None = None,
) -> list[CheckResult]:
    """Render the 10 class images (``logits``) with each method and judge them."""
    methods = methods or {"plain": RenderConfig.plain(), "regularized": RenderConfig()}
    out = []
    for name, cfg in methods.items():
        images = layer_images(model, "logits", config=cfg)
        classes = np.arange(10)
        out.append(
            CheckResult(
                method=name,
                recognised={
                    "logistic": int((judges.logistic(images) == classes).sum()),
                    "knn": int((judges.knn(images) == classes).sum()),
                },
                mean=float(images.mean()),
                frame=float(images[:, _FRAME].mean()),
                percentile=_percentiles(model, images, data),
                images=images,
            )
        )
    return out
