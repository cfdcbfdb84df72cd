"""The ``prior`` method: a decoder of MNIST digits, and codes optimised through it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import cnnscope
from cnnscope.analysis.activations import forward_until
from cnnscope.analysis.features import RenderConfig, channels, config_for, render
from cnnscope.analysis.features.prior import (
    PriorConfig,
    load_decoder,
    save_decoder,
    train_prior,
)
from cnnscope.data import load_mnist
from cnnscope.store import prior_weights


def test_the_shipped_decoder_decodes_digit_like_images() -> None:
    assert prior_weights().stat().st_size < 1_000_000
    dec = load_decoder()
    with torch.no_grad():
        x = dec(torch.randn(8, dec.latent, generator=torch.Generator().manual_seed(0)))
    assert x.shape == (8, 1, 28, 28) and float(x.min()) >= 0 and float(x.max()) <= 1
    # MNIST-like: dark frame, ink in the middle.
    assert float(x[..., :3, :].mean()) < 0.05 and float(x[..., 8:20, 8:20].mean()) > 0.15


def test_train_save_load_round_trip(idx_dir: Path, tmp_path: Path) -> None:
    data = load_mnist(idx_dir, download=False, validation_size=20)
    cfg = PriorConfig(latent=4, hidden=16, epochs=2, batch=32)
    losses: list[float] = []
    dec = train_prior(data, cfg, lambda e, n, loss: losses.append(loss))
    assert len(losses) == 2 and losses[1] < losses[0]  # it learns
    path = tmp_path / "prior.safetensors"
    save_decoder(dec, path, cfg)
    again = load_decoder(path)
    z = torch.randn(3, 4, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert torch.allclose(again(z), dec(z), atol=2e-3)  # float16 on disk


def test_a_damaged_decoder_names_the_file_and_the_fix(tmp_path: Path) -> None:
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"garbage")
    with pytest.raises(ValueError, match=r"bad\.safetensors.*scripts/train_prior\.py"):
        load_decoder(bad)


def test_an_optimised_code_raises_the_target_logit() -> None:
    model, _ = cnnscope.load_model("lenet5")  # small and trained: its logits follow the ink
    objective = channels("logits", [3, 7])

    def logits(images: np.ndarray) -> torch.Tensor:
        out = forward_until(model, torch.from_numpy(images)[:, None], {"logits"})["logits"]
        return out[[0, 1], [3, 7]]

    cfg = replace_steps(config_for("prior"), 1)
    first = logits(render(model, objective, 2, cfg))
    later = logits(render(model, objective, 2, replace_steps(cfg, 40)))
    assert (later > first + 1.0).all(), (first, later)
    # Seeded: the same settings give the same images.
    assert np.array_equal(render(model, objective, 2, cfg), render(model, objective, 2, cfg))
    with pytest.raises(ValueError, match="prior must be"):
        RenderConfig(method="prior", prior=-1).validate()


def test_settling_moves_pixels_off_the_drawing_and_raises_the_logit() -> None:
    # A decoder cannot draw every digit a network likes best (hvass's 6 stayed at the 96th
    # percentile of its class): the settle steps let pixels move, a little.
    from dataclasses import replace

    model, _ = cnnscope.load_model("lenet5")
    objective = channels("logits", [3, 7])
    drawn = replace(config_for("prior"), steps=30, settle=0.0, restarts=1)
    touched = replace(drawn, settle=0.3)
    a, b = render(model, objective, 2, drawn), render(model, objective, 2, touched)
    with torch.no_grad():
        before, after = (
            forward_until(model, torch.from_numpy(x)[:, None], {"logits"})["logits"][[0, 1], [3, 7]]
            for x in (a, b)
        )
    assert (after > before + 0.1).all(), (before, after)
    assert 0.002 < np.abs(a - b).mean() < 0.1  # touched up, still the decoder's digit


def replace_steps(cfg: RenderConfig, steps: int) -> RenderConfig:
    from dataclasses import replace

    return replace(cfg, steps=steps)
