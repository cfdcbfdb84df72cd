"""Feature visualization speed and quality of the shipped deep_mnist on this machine.

Run: ``python bench/features_speed.py``. Prints the time to render every conv1 and conv2
channel and the 10 logits (106 images) and every fc1 unit (1,024) at default settings;
then, for the 10 class images of each method, the target class's probability under
deep_mnist (which made them) and under the shipped lenet5 (trained on its own), and how
many of the 10 lenet5 classifies as the intended digit.
"""

from __future__ import annotations

import time

import numpy as np
import torch

import cnnscope
from cnnscope.analysis.features import RenderConfig, layer_images


def _judge(model, images: np.ndarray) -> tuple[np.ndarray, int]:  # type: ignore[no-untyped-def]
    with torch.no_grad():
        p = torch.softmax(model(torch.from_numpy(images)[:, None]), 1).numpy()
    return p[np.arange(10), np.arange(10)], int((p.argmax(1) == np.arange(10)).sum())


def main() -> None:
    model, _ = cnnscope.load_model("deep_mnist")
    judge, _ = cnnscope.load_model("lenet5")
    print(f"threads: {torch.get_num_threads()}")
    t0 = time.perf_counter()
    for stage in ("conv1", "conv2", "logits"):
        layer_images(model, stage)
    print(f"regularized, conv1 + conv2 + logits (106 images): {time.perf_counter() - t0:.1f} s")
    t0 = time.perf_counter()
    layer_images(model, "fc1")
    print(f"regularized, all 1,024 fc1 units: {time.perf_counter() - t0:.1f} s")
    for name, cfg in (("plain", RenderConfig.plain()), ("regularized", RenderConfig())):
        t0 = time.perf_counter()
        images = layer_images(model, "logits", config=cfg)
        seconds = time.perf_counter() - t0
        own, _ = _judge(model, images)
        other, hits = _judge(judge, images)
        print(
            f"{name:<11} class images ({seconds:.1f} s): p(target) under deep_mnist "
            f"mean {own.mean():.3f}; under lenet5 mean {other.mean():.3f}, "
            f"recognised {hits}/10 ({', '.join(f'{v:.2f}' for v in other)})"
        )


if __name__ == "__main__":
    main()
