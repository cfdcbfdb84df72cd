"""A learned model of MNIST digits: the ``prior`` method draws units' images through it.

A small variational autoencoder (Kingma & Welling 2014) trained on the MNIST training
set; only its decoder ships (``store.prior_weights()``, float16, under 1 MB). The
``prior`` method optimises a latent code ``z`` so that ``decoder(z)`` excites a unit,
with a light penalty ``½·w·|z|²`` keeping ``z`` where the training digits lie (Nguyen et
al. 2016 do this with a GAN's generator): the image is always digit-like, so it is the
most natural-looking and the least literal of the methods.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from torch import nn

from ...data import MNIST, to_float
from ...store import prior_weights

__all__ = ["Decoder", "PriorConfig", "load_decoder", "save_decoder", "train_prior"]


@dataclass(frozen=True)
class PriorConfig:
    """Settings of the prior's training (``scripts/train_prior.py`` maps its flags here)."""

    latent: int = 16  # size of the code z; 8–32 is typical for MNIST
    hidden: int = 400  # width of the one hidden layer of encoder and decoder
    epochs: int = 12  # passes over the 55,000 training digits (≈ 8 s each on one core)
    batch: int = 128
    lr: float = 1e-3
    beta: float = 1.0  # weight of the KL term: < 1 sharper digits, a looser prior
    seed: int = 0


class Decoder(nn.Module):
    """z (N, latent) → digits (N, 1, 28, 28) in (0, 1)."""

    def __init__(self, latent: int = 16, hidden: int = 400) -> None:
        super().__init__()
        self.latent = latent
        self.net = nn.Sequential(
            nn.Linear(latent, hidden), nn.ReLU(), nn.Linear(hidden, 784), nn.Sigmoid()
        )

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.net(z).view(-1, 1, 28, 28)
        return out

    def sketch(self, z: torch.Tensor) -> torch.Tensor:
        """The digits of ``z`` before the sigmoid (N, 1, 28, 28): logits of ink."""
        out: torch.Tensor = self.net[:-1](z).view(-1, 1, 28, 28)
        return out

    def draw(self, z: torch.Tensor, crisp: torch.Tensor | float = 1.0) -> torch.Tensor:
        """The digits of ``z``, strokes ``crisp`` (≥ 1, per image) times sharper-edged."""
        return torch.sigmoid(self.sketch(z) * crisp)


class _Encoder(nn.Module):
    """digits (N, 1, 28, 28) → mean and log-variance of q(z | x), each (N, latent)."""

    def __init__(self, latent: int, hidden: int) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(784, hidden), nn.ReLU())
        self.head = nn.Linear(hidden, 2 * latent)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mu, logvar = self.head(self.body(x)).chunk(2, dim=1)
        return mu, logvar


def train_prior(
    data: MNIST,
    config: PriorConfig | None = None,
    progress: Callable[[int, int, float], None] | None = None,
) -> Decoder:
    """Train a VAE on ``data``'s training digits and return its decoder.

    ``progress(epoch, epochs, loss)`` is called after each epoch (loss: per digit, nats).
    """
    cfg = config or PriorConfig()
    torch.manual_seed(cfg.seed)
    enc, dec = _Encoder(cfg.latent, cfg.hidden), Decoder(cfg.latent, cfg.hidden)
    opt = torch.optim.Adam([*enc.parameters(), *dec.parameters()], lr=cfg.lr)
    x_all = to_float(data.train_images)  # (N, 1, 28, 28)
    g = torch.Generator().manual_seed(cfg.seed)
    for epoch in range(cfg.epochs):
        order = torch.randperm(len(x_all), generator=g)
        total = 0.0
        for i in range(0, len(order), cfg.batch):
            x = x_all[order[i : i + cfg.batch]]
            mu, logvar = enc(x)
            z = mu + torch.randn_like(mu) * (0.5 * logvar).exp()  # reparameterization
            recon = F.binary_cross_entropy(dec(z), x, reduction="sum")
            kl = -0.5 * (1 + logvar - mu**2 - logvar.exp()).sum()
            loss = (recon + cfg.beta * kl) / len(x)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(x)
        if progress:
            progress(epoch + 1, cfg.epochs, total / len(x_all))
    return dec.eval()


def save_decoder(decoder: Decoder, path: Path, config: PriorConfig) -> None:
    """float16 weights; the settings ride in the header (``latent`` and ``hidden`` rebuild it)."""
    tensors = {k: v.detach().half().contiguous() for k, v in decoder.state_dict().items()}
    save_file(tensors, str(path), metadata={"prior": json.dumps(asdict(config))})


def load_decoder(path: Path | None = None) -> Decoder:
    """The decoder from ``path`` (default: the shipped one); cached per path."""
    return _load(str(path or prior_weights()))


@lru_cache(maxsize=2)
def _load(path: str) -> Decoder:
    try:
        with safe_open(path, "pt") as f:
            settings = json.loads((f.metadata() or {})["prior"])
        tensors = load_file(path)
        dec = Decoder(int(settings["latent"]), int(settings["hidden"]))
        dec.load_state_dict({k: v.float() for k, v in tensors.items()})
    except FileNotFoundError:
        raise ValueError(
            f"{path}: the prior's decoder is missing; make it with scripts/train_prior.py"
        ) from None
    except Exception as e:
        raise ValueError(
            f"{path}: not a cnnscope prior decoder ({type(e).__name__}); "
            "make it again with scripts/train_prior.py"
        ) from None
    for p in dec.parameters():
        p.requires_grad_(False)
    return dec.eval()
