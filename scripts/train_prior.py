"""Train the ``prior`` method's model of MNIST digits and ship its decoder.

    python scripts/train_prior.py [--epochs 12] [--latent 16] [--threads 1] [--out PATH]

A small VAE on the 55,000 training digits (about 2 minutes on one core); the decoder is
written as float16 safetensors to ``cnnscope/weights/mnist_prior.safetensors``
(``store.prior_weights()``), where the ``prior`` method reads it.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from cnnscope.analysis.features.prior import PriorConfig, save_decoder, train_prior
from cnnscope.data import load_mnist
from cnnscope.store import prior_weights


def main() -> None:
    defaults = PriorConfig()
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, default=defaults.epochs, help="default %(default)s")
    p.add_argument("--latent", type=int, default=defaults.latent, help="default %(default)s")
    p.add_argument("--hidden", type=int, default=defaults.hidden, help="default %(default)s")
    p.add_argument("--beta", type=float, default=defaults.beta, help="default %(default)s")
    p.add_argument("--seed", type=int, default=defaults.seed, help="default %(default)s")
    p.add_argument("--threads", type=int, default=1, help="CPU threads (default 1)")
    p.add_argument("--data-dir", help="folder with the four IDX .gz files")
    p.add_argument("--out", type=Path, default=prior_weights(), help="default: the shipped file")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    cfg = PriorConfig(
        latent=args.latent, hidden=args.hidden, epochs=args.epochs, beta=args.beta, seed=args.seed
    )
    data = load_mnist(args.data_dir)
    t0 = time.perf_counter()

    def report(epoch: int, epochs: int, loss: float) -> None:
        print(f"epoch {epoch}/{epochs}: {loss:.1f} nats/digit, {time.perf_counter() - t0:.0f} s")

    decoder = train_prior(data, cfg, report)
    save_decoder(decoder, args.out, cfg)
    print(f"wrote {args.out} ({args.out.stat().st_size / 1e6:.2f} MB)")


if __name__ == "__main__":
    main()
