"""Predictions and scores on a labelled split."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .data import to_float
from .models import NUM_CLASSES, StagedModel

__all__ = ["Evaluation", "evaluate", "predict"]


@torch.no_grad()
def predict(model: StagedModel, images: torch.Tensor, batch_size: int = 1000) -> torch.Tensor:
    """Logits (N, 10) for uint8 images (N, 28, 28), in eval mode, in batches."""
    was_training = model.training
    model.eval()
    try:
        chunks = [
            model(to_float(images[i : i + batch_size])) for i in range(0, len(images), batch_size)
        ]
    finally:
        model.train(was_training)
    return torch.cat(chunks) if chunks else torch.empty(0, NUM_CLASSES)


@dataclass(frozen=True)
class Evaluation:
    """Scores of a model on one split."""

    accuracy: float  # fraction correct, 0–1
    cross_entropy: float  # mean, nats
    per_class_accuracy: list[float]  # recall of each digit 0–9 (NaN where a class is absent)
    count: int

    def as_dict(self) -> dict[str, object]:
        return {
            "accuracy": self.accuracy,
            "cross_entropy": self.cross_entropy,
            "per_class_accuracy": self.per_class_accuracy,
            "count": self.count,
        }


def evaluate(
    model: StagedModel, images: torch.Tensor, labels: torch.Tensor, batch_size: int = 1000
) -> Evaluation:
    """Accuracy, mean cross-entropy and per-class accuracy of ``model`` on a split."""
    logits = predict(model, images, batch_size)
    correct = logits.argmax(1) == labels
    per_class = []
    for k in range(NUM_CLASSES):
        mask = labels == k
        per_class.append(float(correct[mask].float().mean()) if mask.any() else float("nan"))
    return Evaluation(
        accuracy=float(correct.float().mean()) if len(labels) else float("nan"),
        cross_entropy=float(F.cross_entropy(logits, labels)) if len(labels) else float("nan"),
        per_class_accuracy=per_class,
        count=len(labels),
    )
