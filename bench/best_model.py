"""The `best` model: its accuracy, its training time, and the step speeds its recipe chose.

Run: ``python bench/best_model.py [--run runs/best] [--speed]``. Prints, from the shipped
weights (or a run folder made by ``cnnscope train --model best``): the test accuracy
re-measured on the 10,000 test images, the validation accuracy of the same (final)
weights and at each epoch, the training wall time and images/s. ``--speed`` adds the
training step's images/s for best at fp32 and bf16, batch 128 and 256, and for deep_mnist
at batch 128, alternating in one run (two rounds, 6 s each), with the load average: the
ratios are what to read on a shared machine.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from cnnscope.analysis.evaluation import evaluate
from cnnscope.checkpoints import load_weights
from cnnscope.data import load_mnist
from cnnscope.models import build_model, count_parameters
from cnnscope.store import shipped
from cnnscope.train.augment import random_affine


def _report(weights: Path, curves: Path) -> None:
    model, meta = load_weights(weights, expect="best")
    data = load_mnist()
    test = evaluate(model, data.test_images, data.test_labels)
    lines = [json.loads(line) for line in curves.read_text().splitlines()]
    val = [m for m in lines if m["split"] == "validation"]
    m, cfg = meta["metrics"], meta["train_config"]
    images = m["steps"] * cfg["batch_size"]
    print(f"best: {count_parameters(model):,} parameters, {weights.stat().st_size:,} bytes")
    print(
        f"test accuracy {test.accuracy:.2%} (recorded {m['test_accuracy']:.2%}); validation "
        f"{m['validation_accuracy']:.2%} (the final weights: no selection on test)"
    )
    print("validation by epoch: " + ", ".join(f"{v['accuracy']:.2%}" for v in val))
    print(
        f"trained {cfg['epochs']} epochs ({images:,} images, batch {cfg['batch_size']}, "
        f"{cfg['precision']}, augment={cfg['augment']}) in {m['train_seconds']:.0f} s "
        f"({m['train_seconds'] / 60:.1f} min, validations and snapshots included), "
        f"{images / m['train_seconds']:.0f} images/s, {meta.get('threads', '?')} threads"
    )


def _speed(name: str, batch: int, precision: str, seconds: float) -> float:
    """Training images/s of one step like the loop's (augmented, channels-last)."""
    torch.manual_seed(0)
    model = build_model(name).to(memory_format=torch.channels_last).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    x0 = torch.rand(batch, 1, 28, 28)
    y = torch.randint(0, 10, (batch,))
    g = torch.Generator().manual_seed(0)

    def step() -> None:
        x = random_affine(x0, g).contiguous(memory_format=torch.channels_last)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
            loss = F.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    for _ in range(2):
        step()
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        step()
        n += 1
    return n * batch / (time.perf_counter() - t0)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--run", type=Path, help="a run folder (default: the shipped weights)")
    p.add_argument("--speed", action="store_true", help="also time the training step")
    args = p.parse_args()
    if args.run:
        _report(args.run / "model.safetensors", args.run / "metrics.jsonl")
    else:
        _report(shipped("best", "safetensors"), shipped("best", "metrics.jsonl"))
    if not args.speed:
        return
    cases = [("best", 128, "fp32"), ("best", 128, "bf16"), ("best", 256, "fp32")]
    cases += [("best", 256, "bf16"), ("deep_mnist", 128, "fp32")]
    speeds: dict[tuple[str, int, str], list[float]] = {c: [] for c in cases}
    loads = []
    for _ in range(2):
        for case in cases:
            speeds[case].append(_speed(*case, seconds=6))
            loads.append(os.getloadavg()[0])
    base = max(speeds[("best", 128, "fp32")])
    for (name, batch, precision), v in speeds.items():
        print(
            f"{name:<10} batch {batch:3d} {precision}: {max(v):6.0f} images/s "
            f"({max(v) / base:.2f}× best at batch 128 fp32)"
        )
    print(f"{torch.get_num_threads()} threads, load average {min(loads):.1f}–{max(loads):.1f}")


if __name__ == "__main__":
    main()
