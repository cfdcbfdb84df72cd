"""Feature visualization: the input each channel, unit or class likes to see.

Split as in Lucid/Lucent: :mod:`.objectives` (what to maximise), :mod:`.params`
(pixels or a decorrelated Fourier basis), :mod:`.transforms` (jitter, scale, rotation,
applied each step), :mod:`.render` (the loop) and :mod:`.units` (filters, top examples,
unused units); :mod:`.methods` lists the methods once; :mod:`.check` judges class images.
Two methods:

* ``plain``: the old tutorials' gradient ascent, exactly: start from uniform noise in
  [0.45, 0.55], step by ``gradient / (std(gradient) + 1e-8)``, clip to [0, 1].
* ``regularized``: Adam on a sigmoid-squashed parameterization with random jitter, scale
  and rotation every step, a blur between steps, L1, frame and total-variation penalties,
  then a few steps without transforms so the image excites its unit fully; tuned for
  28×28 grayscale digits; every regularizer can be switched off.

Objectives are addressed as ``"conv2:17"`` (mean of channel 17's map; ``"conv2:17:centre"``
for its centre unit), ``"fc1:512"``, ``"logits:3"`` or ``"prob:3"`` (log-probability of
class 3). They compose: ``parse("logits:3") - 0.5 * parse("logits:8")``.
"""

from .methods import METHODS, Method, config_for
from .objectives import Objective, channels, check_units, parse, stage_size
from .render import RenderConfig, compare_regularizers, layer_images, render, with_overrides
from .units import (
    TopExample,
    UnitIndex,
    dead_units,
    filters,
    top_examples,
    unit_index,
    unit_scores,
    unused_channels,
)

__all__ = [
    "METHODS",
    "Method",
    "Objective",
    "RenderConfig",
    "TopExample",
    "UnitIndex",
    "channels",
    "check_units",
    "compare_regularizers",
    "config_for",
    "dead_units",
    "filters",
    "layer_images",
    "parse",
    "render",
    "stage_size",
    "top_examples",
    "unit_index",
    "unit_scores",
    "unused_channels",
    "with_overrides",
]
