"""The feature-visualization methods, listed once: what the CLI, the API and the page offer.

Each method has a name for people and a line saying what it trades; :func:`config_for`
gives its default :class:`RenderConfig`. The server serves this list (``/api/health``)
and the page builds its picker from it.
"""

from __future__ import annotations

from dataclasses import dataclass

from .render import RenderConfig

__all__ = ["METHODS", "Method", "config_for"]


@dataclass(frozen=True)
class Method:
    id: str
    name: str  # short, for a picker
    trade: str  # what it gives and what it costs, in one line


METHODS: dict[str, Method] = {
    m.id: m
    for m in (
        Method(
            "regularized",
            "regularized (dark, sparse, smooth: as MNIST)",
            "robust to jitter, scale and rotation, dark and sparse as MNIST, then settled "
            "until the unit fires fully: recognisable and faithful",
        ),
        Method(
            "prior",
            "prior (through a learned model of digits)",
            "the most natural-looking and the least literal: a digit drawn by a model of "
            "MNIST (a VAE's decoder), steered to excite the unit",
        ),
        Method(
            "plain",
            "plain gradient ascent (the old tutorials)",
            "the most literal: exactly what raises the unit, grey noise and all",
        ),
    )
}


def config_for(method: str, seed: int = 0) -> RenderConfig:
    """The default settings of ``method``; an unknown name lists the valid ones."""
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; valid: {', '.join(METHODS)}")
    if method == "plain":
        return RenderConfig.plain(seed=seed)
    if method == "prior":
        return RenderConfig.through_prior(seed=seed)
    return RenderConfig(method=method, seed=seed)
