"""Training speed of deep_mnist on this machine: time to 99.2 % test accuracy, images/s.

Run: ``python bench/train_speed.py`` (``make bench``). Prints, for the ``fast`` recipe:
seconds of training until the test accuracy first reaches the target (checked every
``--check-every`` steps; the checks themselves are not counted), training images/s, the
final test accuracy and the process's peak memory; then images/s of the ``seed`` recipe
(the TensorFlow tutorial's: batch 50, Adam 1e-4) over a short run.
"""

from __future__ import annotations

import argparse
import os
import resource
import tempfile
import time

# As `cnnscope train`: OpenMP threads sleep while they wait (set before torch loads).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch

from cnnscope.analysis.evaluation import evaluate
from cnnscope.data import load_mnist
from cnnscope.train import Callback, TrainConfig, TrainState, choose_threads, fit


class _TimeToTarget(Callback):
    def __init__(self, data, target: float, every: int) -> None:
        self.data, self.target, self.every = data, target, every
        self.excluded = 0.0
        self.reached: tuple[float, int, float] | None = None
        self.t0 = 0.0
        self.history: list[tuple[int, float, float]] = []

    def on_train_begin(self, state: TrainState) -> None:
        self.t0 = time.perf_counter()

    def elapsed(self) -> float:
        return time.perf_counter() - self.t0 - self.excluded

    def on_step_end(self, state: TrainState) -> None:
        if state.step % self.every and state.step != state.total_steps:
            return
        t = self.elapsed()
        start = time.perf_counter()
        acc = evaluate(state.model, self.data.test_images, self.data.test_labels).accuracy
        self.excluded += time.perf_counter() - start
        self.history.append((state.step, t, acc))
        if self.reached is None and acc >= self.target:
            self.reached = (t, state.step, acc)


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--target", type=float, default=0.992, help="test accuracy to reach")
    p.add_argument("--check-every", type=int, default=100, help="steps between test checks")
    p.add_argument(
        "--threads", type=int, default=0, help="torch threads; 0 = auto, as `cnnscope train`"
    )
    p.add_argument("--seed", type=int, default=0, help="the fast run's seed")
    p.add_argument("--seed-steps", type=int, default=300, help="steps of the seed recipe to time")
    args = p.parse_args()

    torch.set_num_threads(choose_threads(args.threads))
    data = load_mnist()
    print(
        f"load average {os.getloadavg()[0]:.2f}; threads: {torch.get_num_threads()}  "
        f"torch {torch.__version__}"
    )
    with tempfile.TemporaryDirectory() as tmp:
        config = TrainConfig.from_recipe("fast", run_dir=f"{tmp}/fast", seed=args.seed)
        timer = _TimeToTarget(data, args.target, args.check_every)
        result = fit(config, [timer], data=data)
        train_seconds = timer.elapsed()
        images = result.steps * config.batch_size
        for step, t, acc in timer.history:
            print(f"  step {step:5d}  {t:6.1f} s  test {acc:.4f}")
        if timer.reached:
            t, step, acc = timer.reached
            print(f"fast: {t:.1f} s to test accuracy >= {args.target:.1%} (step {step}, {acc:.2%})")
        else:
            print(f"fast: never reached {args.target:.1%}")
        print(
            f"fast: {images / train_seconds:.0f} training images/s over the whole run "
            f"({result.steps} steps, {train_seconds:.1f} s incl. validation, checkpoints, "
            f"snapshots); final test accuracy {result.metrics['test_accuracy']:.2%}"
        )
        seed_cfg = TrainConfig.from_recipe(
            "seed", run_dir=f"{tmp}/seed", steps=args.seed_steps, snapshot_size=0
        )
        start = time.perf_counter()
        seed = fit(seed_cfg, data=data)
        seed_seconds = seed.seconds
        print(
            f"seed: {seed.steps * seed_cfg.batch_size / seed_seconds:.0f} training images/s "
            f"(batch {seed_cfg.batch_size}, {seed.steps} steps; "
            f"{time.perf_counter() - start:.0f} s with evaluation); 20,000 steps would take "
            f"{20_000 * seed_seconds / seed.steps / 60:.0f} min"
        )
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"load average at the end: {os.getloadavg()[0]:.2f}")
    print(f"peak memory (max RSS): {peak_mib:.0f} MiB")


if __name__ == "__main__":
    main()
