"""Where deep_mnist's training time goes: FLOPs per image, images/s, fraction of peak.

Run: ``python bench/train_profile.py`` (``make bench``). In one process, alternating
rounds so that a busy machine hurts every contender alike, it times

* ``peak``: a 1024×1024 matmul in float32 and in bfloat16, the cores' practical peak
  (GFLOP/s);
* ``cnnscope``: the training step of :func:`cnnscope.train.fit` (``_Run.step``: seeded
  shuffle, uint8 batch → float, channels-last, fused AdamW, one-cycle schedule, train
  metrics) in the ``fast`` recipe's precision, and in the other one (fp32 / bf16);
* ``plain``: a plain PyTorch loop of the same network (float32 data in memory, NCHW,
  Adam, ``loss.backward(); opt.step()``), as in pytorch/examples' mnist;
* ``tf``: the 2017 TensorFlow app (``../shared/seed000/seed_train.py``, batch 50, all
  cores) when its venv exists (``bash ../shared/seed000/setup.sh``);

at batch 50, 128 and every recipe's batch size, 1 and 2 torch threads, and prints a table
with the ratios and the load average. The TensorFlow app trains at batch 50 only: every
batch size is compared with its images/s (issue 18's goal: ≥ 1.3× at every batch size).
Torch's OpenMP threads sleep while they wait, as in ``cnnscope train``
(``OMP_WAIT_POLICY=PASSIVE`` unless the environment sets it). Beside images/s, each
row gives images per CPU-second of the process (all its threads), an A/B figure a busy
machine barely moves; ``--variants`` adds cnnscope's step with channels-last off and with
torch's unfused optimizer step (fp32 unfused is the step before issue 18). FLOPs count multiply-adds
×2 from the layer shapes; a training step is counted as 3× the forward pass (forward,
gradient of the input, gradient of the weights).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

# As `cnnscope train`: OpenMP threads sleep while they wait (set before torch loads).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch
import torch.nn.functional as F
from torch import nn

from cnnscope.data import load_mnist, to_float
from cnnscope.devices import native_bf16
from cnnscope.models import build_model
from cnnscope.train import RECIPES, TrainConfig, loop
from cnnscope.train.loop import _Run

SEED_DIR = Path(__file__).resolve().parents[1] / ".." / "shared" / "seed000"
TF_PYTHON = Path(os.environ.get("ANCHOR_VENV", Path.home() / ".venvs" / "seed000")) / "bin/python"


def forward_flops(model: nn.Module, input_shape: tuple[int, ...]) -> dict[str, int]:
    """FLOPs (2 × multiply-adds) of one image's forward pass, per conv/linear layer."""
    flops: dict[str, int] = {}
    hooks = []

    def count(name: str) -> Callable[[nn.Module, tuple[torch.Tensor, ...], torch.Tensor], None]:
        def hook(m: nn.Module, _inp: tuple[torch.Tensor, ...], out: torch.Tensor) -> None:
            if isinstance(m, nn.Conv2d):
                k = m.kernel_size[0] * m.kernel_size[1] * m.in_channels // m.groups
                flops[name] = 2 * out[0].numel() * k  # out: (1, C_out, H, W)
            elif isinstance(m, nn.Linear):
                flops[name] = 2 * m.in_features * m.out_features

        return hook

    for name, m in model.named_modules():
        if isinstance(m, nn.Conv2d | nn.Linear):
            hooks.append(m.register_forward_hook(count(name)))
    try:
        with torch.no_grad():
            model.eval()(torch.zeros(1, *input_shape))
    finally:
        for h in hooks:
            h.remove()
    return flops


def peak_gflops(tries: int = 8, dtype: torch.dtype = torch.float32) -> float:
    """GFLOP/s of a 1024×1024 matmul in ``dtype`` at the current thread count: the best of
    ``tries`` (a busy machine only ever lowers a try)."""
    a, b = torch.randn(1024, 1024, dtype=dtype), torch.randn(1024, 1024, dtype=dtype)
    a @ b
    best = 0.0
    for _ in range(tries):
        start = time.perf_counter()
        for _ in range(4):
            a @ b
        best = max(best, 4 * 2 * 1024**3 / (time.perf_counter() - start) / 1e9)
    return best


def _timed(steps: int, batch: int, one: Callable[[], None]) -> tuple[float, float]:
    """(images/s, images per CPU-second) of ``steps`` calls of ``one``. CPU seconds are
    the process's, all threads: a busy machine stretches the wall clock, not them."""
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(steps):
        one()
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return steps * batch / wall, steps * batch / cpu


def cnnscope_rate(
    data, batch: int, steps: int, tmp: str, fused: bool = True, **overrides
) -> tuple[float, float]:
    """images/s of cnnscope's own training step (no checkpoints, snapshots or logs);
    ``fused=False``: with torch's unfused optimizer step, as before it was fused."""
    config = TrainConfig.from_recipe(
        "fast", batch_size=batch, run_dir=f"{tmp}/c{batch}", snapshot_size=0, **overrides
    )
    fused_runs = loop._fused_runs
    if not fused:
        loop._fused_runs = lambda kind, device_type: False  # type: ignore[assignment]
    try:
        run = _Run(config, data, resume=False)
    finally:
        loop._fused_runs = fused_runs
    run.model.train()
    for _ in range(5):  # warm-up: oneDNN primitives, allocator
        run.step()
    rates = _timed(steps, batch, run.step)
    run.log.close()
    return rates


def plain_rate(x: torch.Tensor, y: torch.Tensor, batch: int, steps: int) -> tuple[float, float]:
    """images/s of a plain PyTorch loop of the same network, float32 NCHW data."""
    torch.manual_seed(0)
    model = build_model("deep_mnist").train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    perm = torch.randperm(len(x))

    i = 0

    def one() -> None:
        nonlocal i
        idx = perm[(i * batch) % (len(x) - batch) :][:batch]
        i += 1
        loss = F.cross_entropy(model(x[idx]), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()

    for _ in range(5):
        one()
    return _timed(steps, batch, one)


def tf_rate(steps: int) -> tuple[float, float] | None:
    """images/s of the 2017 TensorFlow app (batch 50, its own thread choice)."""
    if not TF_PYTHON.exists():
        return None
    out = subprocess.run(
        [
            str(TF_PYTHON),
            str(SEED_DIR / "seed_train.py"),
            *("--steps", str(steps + 20), "--out", f"{tempfile.mkdtemp()}/cnn_model"),
        ],
        capture_output=True,
        text=True,
        check=True,
        env={k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"},  # as shipped
    ).stdout
    line = json.loads(out.strip().splitlines()[-1])
    # images/s excludes its first 20 steps; CPU seconds are of all steps (its threads spin)
    return float(line["steady_images_per_s"]), line["steps"] * 50 / line["train_loop_cpu_s"]


def main() -> None:
    recipe_batches = {int(r.get("batch_size", TrainConfig.batch_size)) for r in RECIPES.values()}
    fast_precision = TrainConfig.from_recipe("fast").precision
    if fast_precision == "auto":  # as the loop resolves it
        fast_precision = "bf16" if native_bf16(torch.device("cpu")) else "fp32"
    other_precision = "fp32" if fast_precision == "bf16" else "bf16"
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--steps", type=int, default=60, help="timed steps per measurement")
    p.add_argument("--rounds", type=int, default=2, help="alternating rounds (median is shown)")
    p.add_argument("--batches", type=int, nargs="+", default=sorted({50, 128} | recipe_batches))
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    p.add_argument("--no-tf", action="store_true", help="skip the TensorFlow app")
    p.add_argument(
        "--variants",
        action="store_true",
        help="also time cnnscope with channels_last off, and with an unfused AdamW",
    )
    args = p.parse_args()

    model = build_model("deep_mnist")
    flops = forward_flops(model, (1, 28, 28))
    fwd = sum(flops.values())
    print("forward MFLOPs per image: " + ", ".join(f"{k} {v / 1e6:.2f}" for k, v in flops.items()))
    print(f"  total {fwd / 1e6:.1f} forward, {3 * fwd / 1e6:.1f} per trained image (3×)")

    data = load_mnist()
    x, y = to_float(data.train_images), data.train_labels
    results: dict[tuple[str, int, int], list[tuple[float, float]]] = {}
    loads = [os.getloadavg()[0]]
    tf_steps = max(args.steps, 100)
    mine, other = f"cnnscope {fast_precision}", f"cnnscope {other_precision}"
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(args.rounds):
            for threads in args.threads:
                torch.set_num_threads(threads)
                for name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
                    results.setdefault((f"peak GFLOP/s {name}", 0, threads), []).append(
                        (peak_gflops(dtype=dtype), 0.0)
                    )
                for batch in args.batches:
                    steps = max(10, args.steps * 50 // batch)
                    results.setdefault((mine, batch, threads), []).append(
                        cnnscope_rate(data, batch, steps, tmp)
                    )
                    results.setdefault((other, batch, threads), []).append(
                        cnnscope_rate(data, batch, steps, tmp, precision=other_precision)
                    )
                    if args.variants:
                        results.setdefault((f"{mine} NCHW", batch, threads), []).append(
                            cnnscope_rate(data, batch, steps, tmp, channels_last=False)
                        )
                        results.setdefault((f"{mine} unfused", batch, threads), []).append(
                            cnnscope_rate(data, batch, steps, tmp, fused=False)
                        )
                        results.setdefault(("cnnscope fp32 unfused", batch, threads), []).append(
                            cnnscope_rate(data, batch, steps, tmp, fused=False, precision="fp32")
                        )
                    results.setdefault(("plain PyTorch fp32", batch, threads), []).append(
                        plain_rate(x, y, batch, steps)
                    )
            if not args.no_tf and (rate := tf_rate(tf_steps)) is not None:
                results.setdefault(("TensorFlow 2017 app", 50, 0), []).append(rate)
            loads.append(os.getloadavg()[0])

    med = {k: statistics.median(wall for wall, _ in v) for k, v in results.items()}
    cpu_med = {k: statistics.median(cpu for _, cpu in v) for k, v in results.items()}
    tf = med.get(("TensorFlow 2017 app", 50, 0))
    print(
        f"\nload average (1 min) during the run: {min(loads):.2f}–{max(loads):.2f}; "
        f"torch {torch.__version__}; median of {args.rounds} rounds"
    )
    print(
        f"{'what':22s} {'batch':>5s} {'threads':>7s} {'images/s':>9s} {'% peak':>7s} "
        f"{'× plain':>8s} {'× TF':>6s} {'img/CPU-s':>10s}"
    )
    for (what, batch, threads), rate in med.items():
        if what.startswith("peak"):
            print(f"{what:22s} {'':>5s} {threads:7d} {rate:9.1f}")
            continue
        # each precision against its own matmul peak (the TF app: float32)
        peak = med.get((f"peak GFLOP/s {'bf16' if 'bf16' in what else 'fp32'}", 0, threads))
        frac = f"{100 * rate * 3 * fwd / 1e9 / peak:6.0f}%" if peak else ""
        plain = med.get(("plain PyTorch fp32", batch, threads))
        vs_plain = f"{rate / plain:8.2f}" if plain and not what.startswith("plain") else ""
        vs_tf = f"{rate / tf:6.2f}" if tf else ""
        shown = str(threads) if threads else "all"
        print(
            f"{what:22s} {batch:5d} {shown:>7s} {rate:9.0f} {frac:>7s} {vs_plain:>8s} "
            f"{vs_tf:>6s} {cpu_med[what, batch, threads]:10.0f}"
        )
    if tf:
        # The goal is met at a batch size when cnnscope's best thread count gets ≥ 1.3× TF.
        best = {
            b: max(r for (w, bb, _), r in med.items() if w == mine and bb == b)
            for b in args.batches
        }
        shown = ", ".join(f"batch {b} {r / tf:.2f}×" for b, r in best.items())
        met = all(r >= 1.3 * tf for r in best.values())
        print(
            f"goal ≥ 1.3× the TensorFlow app ({tf:.0f} images/s, batch 50) at every batch "
            f"size, {mine}'s best thread count: {shown}: {'met' if met else 'NOT met'}"
        )


if __name__ == "__main__":
    main()
