"""Training speed of deep_mnist on this machine: time to 99.2 % test accuracy, images/s.

Run: ``python bench/train_speed.py`` (``make bench``). Prints, for the ``fast`` recipe and
each of ``--seeds`` (issue 18's goal: the median of three ≤ 60 s, all ≥ 99.2 % at the
end): seconds of training until the test accuracy first reaches the target (checked every
``--check-every`` steps; the checks themselves are not counted), the final test accuracy
and training images/s; then their median, the process's peak memory and the load average.
Last, images/s of the ``seed`` recipe (the TensorFlow tutorial's: batch 50, Adam 1e-4)
over a short run. ``--precision fp32`` / ``bf16`` overrides the recipe's precision;
``--device cuda`` trains on a GPU (the test checks run there too).
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import tempfile
import time

# As `cnnscope train`: OpenMP threads sleep while they wait (set before torch loads).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch

from cnnscope.analysis.evaluation import evaluate
from cnnscope.data import load_mnist
from cnnscope.devices import DEVICES, resolve_device
from cnnscope.train import PRECISIONS, Callback, TrainConfig, TrainState, choose_threads, fit


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
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="the fast runs' seeds")
    p.add_argument(
        "--precision", choices=PRECISIONS, default=None, help="default: the fast recipe's"
    )
    p.add_argument(
        "--seed-steps", type=int, default=300, help="steps of the seed recipe to time; 0: none"
    )
    p.add_argument("--history", action="store_true", help="print every test check")
    p.add_argument("--device", choices=DEVICES, default="cpu", help="where to train")
    args = p.parse_args()
    device = resolve_device(args.device)

    torch.set_num_threads(choose_threads(args.threads))
    data = load_mnist()
    loads = [os.getloadavg()[0]]
    overrides = {} if args.precision is None else {"precision": args.precision}
    print(
        f"load average {loads[0]:.2f}; threads: {torch.get_num_threads()}  "
        f"torch {torch.__version__}; device {device}"
        + (f" ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else "")
    )
    reached: list[float] = []
    finals: list[float] = []
    with tempfile.TemporaryDirectory() as tmp:
        for seed in args.seeds:
            config = TrainConfig.from_recipe(
                "fast", run_dir=f"{tmp}/fast{seed}", seed=seed, **overrides
            )
            timer = _TimeToTarget(data, args.target, args.check_every)
            result = fit(config, [timer], data=data, device=device)
            train_seconds = timer.elapsed()
            loads.append(os.getloadavg()[0])
            images = result.steps * config.batch_size
            final = result.metrics["test_accuracy"]
            finals.append(final)
            if args.history:
                for step, t, acc in timer.history:
                    print(f"  step {step:5d}  {t:6.1f} s  test {acc:.4f}")
            if timer.reached:
                t, step, acc = timer.reached
                reached.append(t)
                at = f"{t:5.1f} s to {args.target:.1%} (step {step}, {acc:.2%})"
            else:
                reached.append(float("inf"))
                at = f"never reached {args.target:.1%}"
            print(
                f"fast {config.precision} seed {seed}: {at}; final {final:.2%}; "
                f"{images / train_seconds:.0f} images/s over the run ({result.steps} steps, "
                f"{train_seconds:.1f} s incl. validation, checkpoints, snapshots); "
                f"load {loads[-1]:.1f}"
            )
        median = statistics.median(reached)
        print(
            f"fast: median time to {args.target:.1%} over seeds "
            f"{', '.join(map(str, args.seeds))}: {median:.1f} s (goal ≤ 60 s); final test "
            f"accuracies {' / '.join(f'{a:.2%}' for a in finals)} "
            f"({'all' if min(finals) >= args.target else 'NOT all'} ≥ {args.target:.1%})"
        )
        if args.seed_steps:
            seed_cfg = TrainConfig.from_recipe(
                "seed", run_dir=f"{tmp}/seed", steps=args.seed_steps, snapshot_size=0, **overrides
            )
            start = time.perf_counter()
            seed = fit(seed_cfg, data=data, device=device)
            seed_seconds = seed.seconds
            print(
                f"seed {seed_cfg.precision}: "
                f"{seed.steps * seed_cfg.batch_size / seed_seconds:.0f} training images/s "
                f"(batch {seed_cfg.batch_size}, {seed.steps} steps; "
                f"{time.perf_counter() - start:.0f} s with evaluation); 20,000 steps would take "
                f"{20_000 * seed_seconds / seed.steps / 60:.0f} min"
            )
    loads.append(os.getloadavg()[0])
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"load average (1 min) during the run: {min(loads):.2f}–{max(loads):.2f}")
    print(f"peak memory (max RSS): {peak_mib:.0f} MiB")


if __name__ == "__main__":
    main()
