"""Feature visualization speed and quality of the shipped deep_mnist on this machine.

Run: ``python bench/features_speed.py [--fc1-only] [--batch N]``. Prints the time to
render every conv1 and conv2 channel and the 10 logits (106 images) and every fc1 unit
(1,024) at default settings, wall-clock and this process's CPU seconds (on a busy machine
the wall time mostly measures the neighbours); then, for the 10 class images of each
method, the target class's probability under deep_mnist (which made them) and under the
shipped lenet5 (trained on its own), and how many of the 10 lenet5 classifies as the
intended digit.
"""

from __future__ import annotations

import argparse
import resource
import time
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import torch

import cnnscope
from cnnscope.analysis.features import RenderConfig, layer_images


def _judge(model, images: np.ndarray) -> tuple[np.ndarray, int]:  # type: ignore[no-untyped-def]
    with torch.no_grad():
        p = torch.softmax(model(torch.from_numpy(images)[:, None]), 1).numpy()
    return p[np.arange(10), np.arange(10)], int((p.argmax(1) == np.arange(10)).sum())


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


@contextmanager
def _timed(what: str) -> Iterator[None]:
    t0, c0 = time.perf_counter(), _cpu()
    yield
    print(f"{what}: {time.perf_counter() - t0:.1f} s ({_cpu() - c0:.1f} s CPU)", flush=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--fc1-only", action="store_true", help="time the 1,024 fc1 images only")
    p.add_argument("--batch", type=int, default=128, help="units per batch (default: 128)")
    args = p.parse_args()
    model, _ = cnnscope.load_model("deep_mnist")
    judge, _ = cnnscope.load_model("lenet5")
    print(f"threads: {torch.get_num_threads()}")
    if not args.fc1_only:
        with _timed("regularized, conv1 + conv2 + logits (106 images)"):
            for stage in ("conv1", "conv2", "logits"):
                layer_images(model, stage, batch=args.batch)
    with _timed(f"regularized, all 1,024 fc1 units ({args.batch} a batch)"):
        layer_images(model, "fc1", batch=args.batch)
    if args.fc1_only:
        return
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
