"""Feature visualization: the input each channel, unit or class likes to see.

Split as in Lucid/Lucent into an *objective* (what to maximise), a *parameterization*
(pixels or a decorrelated Fourier basis), *transforms* (jitter, scale, rotation, applied
each step) and a *render loop*. Two methods:

* ``plain``: the old tutorials' gradient ascent, exactly: start from uniform noise in
  [0.45, 0.55], step by ``gradient / (std(gradient) + 1e-8)``, clip to [0, 1].
* ``regularized``: Adam on a sigmoid-squashed parameterization with random jitter, scale
  and rotation every step, a blur between steps, and L2 and total-variation penalties,
  tuned for 28×28 grayscale digits; every regularizer can be switched off.

Objectives are addressed as ``"conv2:17"`` (mean of channel 17's map; ``"conv2:17:centre"``
for its centre unit), ``"fc1:512"``, ``"logits:3"`` or ``"prob:3"`` (log-probability of
class 3). They compose: ``parse("logits:3") - 0.5 * parse("logits:8")``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from .activations import StageRecorder
from .data import to_float
from .models import StagedModel, activation_stage, resolve_stage

__all__ = [
    "Objective",
    "RenderConfig",
    "channels",
    "filters",
    "parse",
    "render",
    "top_examples",
    "unused_channels",
]

Outputs = dict[str, torch.Tensor]


class Objective:
    """A score per batch element, computed from the recorded stage outputs.

    ``fn(outputs) -> (B,)``; ``stages`` names what must be recorded. Compose with
    ``+``, ``-`` and scalar ``*``.
    """

    def __init__(self, fn: Callable[[Outputs], torch.Tensor], stages: set[str], name: str) -> None:
        self.fn, self.stages, self.name = fn, stages, name

    def __call__(self, outputs: Outputs) -> torch.Tensor:
        return self.fn(outputs)

    def __add__(self, other: Objective) -> Objective:
        return Objective(
            lambda o: self(o) + other(o), self.stages | other.stages, f"{self.name} + {other.name}"
        )

    def __sub__(self, other: Objective) -> Objective:
        return self + (-1.0) * other

    def __mul__(self, k: float) -> Objective:
        return Objective(lambda o: k * self(o), self.stages, f"{k:g}·{self.name}")

    __rmul__ = __mul__

    def __neg__(self) -> Objective:
        return -1.0 * self


def channels(
    stage: str, units: Sequence[int], mode: str = "mean", model: StagedModel | None = None
) -> Objective:
    """Batch element ``b`` maximises unit ``units[b]`` of ``stage``.

    For a conv/ReLU/pool stage a unit is a channel, scored by its map's mean
    (``mode="mean"``) or its centre value (``"centre"``); for fc stages and logits a unit
    is one number. ``stage="prob"`` scores log-probabilities of classes.

    The mean of a pre-activation conv map is linear in the image, so maximising it only
    whitens or blackens everything; with ``model`` given, a conv stage's mean is read from
    its ReLU (as Lucid does). The centre unit stays pre-activation: its best input is the
    filter's own pattern.
    """
    idx = torch.as_tensor(list(units))
    name = f"{stage}:{','.join(map(str, units)) if len(units) <= 4 else f'{len(units)} units'}"
    read = "logits" if stage == "prob" else stage
    if model is not None and mode == "mean":
        read = activation_stage(model, read)

    def fn(outputs: Outputs) -> torch.Tensor:
        values = F.log_softmax(outputs["logits"], dim=1) if stage == "prob" else outputs[read]
        b = torch.arange(len(idx))
        picked = values[b, idx]  # (B,) or (B, H, W)
        if picked.dim() == 3:
            if mode == "centre":
                return picked[:, picked.shape[1] // 2, picked.shape[2] // 2]
            return picked.mean(dim=(1, 2))
        return picked

    return Objective(fn, {read}, name)


def parse(spec: str, model: StagedModel | None = None) -> Objective:
    """``"conv2:17"``, ``"conv2:17:centre"``, ``"fc1:512"``, ``"logits:3"``, ``"prob:3"``.

    With ``model`` given, the stage and unit are checked and an error lists what is valid.
    """
    parts = spec.split(":")
    if len(parts) not in (2, 3) or not parts[1].lstrip("-").isdigit():
        raise ValueError(
            f"objective {spec!r} is not STAGE:UNIT[:centre], e.g. 'conv2:17', 'logits:3'"
        )
    stage, unit = parts[0], int(parts[1])
    mode = parts[2] if len(parts) == 3 else "mean"
    if mode not in ("mean", "centre"):
        raise ValueError(f"objective {spec!r}: mode must be 'mean' or 'centre', not {mode!r}")
    if model is not None:
        check_units(model, stage, [unit])
    return channels(stage, [unit], mode, model)


def stage_size(model: StagedModel, stage: str) -> int:
    """Number of units (channels for conv stages) of ``stage``."""
    from .activations import stage_shapes

    shapes = stage_shapes(model)
    return shapes["logits" if stage == "prob" else stage][0]


def check_units(model: StagedModel, stage: str, units: Sequence[int]) -> None:
    if stage != "prob":
        resolve_stage(model, stage)  # unknown stages list the valid ones
    n = stage_size(model, stage)
    bad = [u for u in units if not 0 <= u < n]
    if bad:
        raise ValueError(f"{stage} has units 0–{n - 1}; {bad[:5]} are outside")


@dataclass(frozen=True)
class RenderConfig:
    """Settings of a render. Defaults are the ``regularized`` method's, tuned for 28×28.

    ``RenderConfig.plain()`` gives the tutorials' method.
    """

    method: str = "regularized"  # "regularized" or "plain"
    steps: int = 80  # optimisation steps; 64–256 is typical (80: all fc1 in 54 s here)
    lr: float = 0.05  # Adam's step size on the parameterization (regularized only)
    jitter: int = 2  # random translation, pixels, each step (0 = off)
    scale: float = 0.1  # random scale in [1 − s, 1 + s] (0 = off)
    rotate: float = 10.0  # random rotation, degrees, ± (0 = off)
    blur_every: int = 4  # blur the image every N steps (0 = off)
    blur_sigma: float = 0.5  # pixels
    l2: float = 0.02  # weight of the mean squared pixel value: dark backgrounds, as MNIST
    tv: float = 0.05  # weight of total variation: smooth strokes, no speckle
    fourier: bool = False  # decorrelated (Fourier) parameterization instead of pixels
    diversity: float = 0.0  # > 0 pushes apart the variants of one unit (see ``variants``)
    variants: int = 1  # images per unit
    seed: int = 0

    @classmethod
    def plain(cls, steps: int = 100, seed: int = 0) -> RenderConfig:
        """The old tutorials' gradient ascent: no regularizer at all."""
        return cls(
            method="plain",
            steps=steps,
            jitter=0,
            scale=0.0,
            rotate=0.0,
            blur_every=0,
            l2=0.0,
            tv=0.0,
            seed=seed,
        )

    def validate(self) -> None:
        checks = [
            (self.method in ("plain", "regularized"), "method must be 'plain' or 'regularized'"),
            (1 <= self.steps <= 5000, "steps must be in 1–5000"),
            (1 <= self.variants <= 16, "variants must be in 1–16"),
            (0 <= self.jitter <= 8, "jitter must be in 0–8 pixels"),
            (0 <= self.scale < 0.5, "scale must be in [0, 0.5)"),
            (0 <= self.rotate <= 45, "rotate must be in 0–45 degrees"),
            (self.lr > 0, "lr must be > 0"),
        ]
        errors = [msg for ok, msg in checks if not ok]
        if errors:
            raise ValueError("invalid RenderConfig: " + "; ".join(errors))


class _Stop(Exception):
    """Raised by a hook once the last needed stage is computed: the rest is not run."""


def _forward(model: StagedModel, x: torch.Tensor, stages: set[str]) -> Outputs:
    """Run ``model`` only as far as the last stage in ``stages``; return those outputs."""
    order = [s for s in model.stage_names if s in stages]
    last = order[-1]
    recorder = StageRecorder(model, order, detach=False)

    def stop(_m: Any, _i: Any, _o: Any) -> None:
        if last != "logits":
            raise _Stop

    with recorder:
        handle = model.get_submodule(last).register_forward_hook(stop)
        try:
            out = model(x)
            recorder.outputs["logits"] = out
        except _Stop:
            pass
        finally:
            handle.remove()
    return recorder.outputs


def _blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    r = max(1, math.ceil(2 * sigma))
    t = torch.arange(-r, r + 1, dtype=x.dtype)
    k = torch.exp(-(t**2) / (2 * sigma**2))
    k = k / k.sum()
    x = F.conv2d(F.pad(x, (r, r, 0, 0), mode="replicate"), k.view(1, 1, 1, -1))
    return F.conv2d(F.pad(x, (0, 0, r, r), mode="replicate"), k.view(1, 1, -1, 1))


def _transform(x: torch.Tensor, cfg: RenderConfig, g: torch.Generator) -> torch.Tensor:
    """Random jitter, scale and rotation, a different draw per image (robust features)."""
    n = x.shape[0]
    if cfg.jitter:
        dx, dy = torch.randint(-cfg.jitter, cfg.jitter + 1, (2,), generator=g).tolist()
        x = torch.roll(x, shifts=(dy, dx), dims=(2, 3))
    if cfg.scale or cfg.rotate:
        s = 1 + (torch.rand(n, generator=g) * 2 - 1) * cfg.scale
        a = (torch.rand(n, generator=g) * 2 - 1) * math.radians(cfg.rotate)
        theta = torch.zeros(n, 2, 3)
        theta[:, 0, 0], theta[:, 0, 1] = torch.cos(a) / s, -torch.sin(a) / s
        theta[:, 1, 0], theta[:, 1, 1] = torch.sin(a) / s, torch.cos(a) / s
        grid = F.affine_grid(theta, list(x.shape), align_corners=False)
        x = F.grid_sample(x, grid, padding_mode="zeros", align_corners=False)
    return x


class _Fourier:
    """Decorrelated parameterization: pixel = sigmoid(irfft(spectrum scaled by 1/f))."""

    def __init__(self, n: int, g: torch.Generator) -> None:
        fy = torch.fft.fftfreq(28)[:, None]
        fx = torch.fft.rfftfreq(28)[None, :]
        self.scale = 1.0 / torch.sqrt(fx**2 + fy**2).clamp(min=1.0 / 28)  # (28, 15)
        self.scale = self.scale / self.scale.max()
        self.param = (torch.randn(n, 1, 28, 15, 2, generator=g) * 0.01).requires_grad_(True)

    def image(self) -> torch.Tensor:
        spectrum = torch.view_as_complex(self.param) * self.scale
        return torch.sigmoid(torch.fft.irfft2(spectrum, s=(28, 28), norm="ortho") * 4.0 - 1.0)


def render(
    model: StagedModel,
    objective: Objective,
    n: int,
    config: RenderConfig | None = None,
    progress: Callable[[int, int], None] | None = None,
    keys: Sequence[int] | None = None,
) -> np.ndarray:
    """Optimise ``n`` images (the batch size of ``objective``) and return them.

    Parameters
    ----------
    model
        Any cnnscope model; its weights are not changed (gradients flow to the input only).
    objective
        Scores each of the ``n`` batch elements; see :func:`channels` and :func:`parse`.
    n
        Batch size: the number of units the objective scores.
    config
        :class:`RenderConfig`; ``RenderConfig.plain()`` is the tutorials' method.
    keys
        One integer per unit (its index, say) that seeds its starting image, so a unit's
        result does not depend on the batch it is in (with transforms off, exactly).

    Returns
    -------
    np.ndarray
        (n · variants, 28, 28) float32 in [0, 1]; variants of one unit are consecutive.
    """
    cfg = config or RenderConfig()
    cfg.validate()
    g = torch.Generator().manual_seed(cfg.seed)
    was_training = model.training
    model.eval()
    grads = [p.requires_grad for p in model.parameters()]
    for p in model.parameters():
        p.requires_grad_(False)  # input gradients only: a third less work per step
    total = n * cfg.variants
    keys = list(range(n)) if keys is None else list(keys)
    # Each image's start noise from its own generator: independent of batch composition.
    start = torch.stack(
        [
            torch.rand(
                1,
                28,
                28,
                generator=torch.Generator().manual_seed(cfg.seed * 1_000_003 + k * 97 + v),
            )
            for k in keys
            for v in range(cfg.variants)
        ]
    )  # (total, 1, 28, 28) uniform [0, 1)
    try:
        if cfg.method == "plain":
            out = _render_plain(model, objective, start, cfg, progress)
        else:
            out = _render_regularized(model, objective, n, total, start, cfg, g, progress)
    finally:
        for p, flag in zip(model.parameters(), grads, strict=True):
            p.requires_grad_(flag)
        model.train(was_training)
    return out


def _expand(objective: Objective, variants: int) -> Objective:
    """Score a batch where each unit's variants are consecutive: repeat the objective."""
    if variants == 1:
        return objective

    def fn(outputs: Outputs) -> torch.Tensor:
        # Evaluate per variant slice so batch element b·v + j scores unit b.
        chunks = []
        b = next(iter(outputs.values())).shape[0] // variants
        for j in range(variants):
            part = {k: v[j::variants] for k, v in outputs.items()}
            chunks.append(objective(part))
        return torch.stack(chunks, dim=1).reshape(b * variants)

    return Objective(fn, objective.stages, objective.name)


def _render_plain(
    model: StagedModel,
    objective: Objective,
    start: torch.Tensor,
    cfg: RenderConfig,
    progress: Callable[[int, int], None] | None,
) -> np.ndarray:
    objective = _expand(objective, cfg.variants)
    x = 0.45 + 0.1 * start  # uniform in [0.45, 0.55], as the tutorials started
    for i in range(cfg.steps):
        x.requires_grad_(True)
        score = objective(_forward(model, x, objective.stages))
        (grad,) = torch.autograd.grad(score.sum(), x)
        with torch.no_grad():
            std = grad.flatten(1).std(dim=1).view(-1, 1, 1, 1)
            x = (x + grad / (std + 1e-8)).clamp(0.0, 1.0)
        if progress:
            progress(i + 1, cfg.steps)
    return x.detach().squeeze(1).numpy()


def _render_regularized(
    model: StagedModel,
    objective: Objective,
    n: int,
    total: int,
    start: torch.Tensor,
    cfg: RenderConfig,
    g: torch.Generator,
    progress: Callable[[int, int], None] | None,
) -> np.ndarray:
    objective = _expand(objective, cfg.variants)
    fourier = _Fourier(total, g) if cfg.fourier else None
    # Noisy mid-grey start (pixels ≈ 0.2–0.8): every ReLU unit fires somewhere, so every
    # objective has a gradient (a dark start leaves many units dead at zero).
    pixels = torch.logit(0.2 + 0.6 * start).requires_grad_(True)
    params = [fourier.param] if fourier else [pixels]
    opt = torch.optim.Adam(params, lr=cfg.lr)

    def image() -> torch.Tensor:
        return fourier.image() if fourier else torch.sigmoid(pixels)

    for i in range(cfg.steps):
        x = image()
        score = objective(_forward(model, _transform(x, cfg, g), objective.stages))
        loss = -score.sum()
        if cfg.l2:
            loss = loss + cfg.l2 * total * (x**2).mean()
        if cfg.tv:
            tv = (x[..., 1:, :] - x[..., :-1, :]).abs().mean() + (
                x[..., :, 1:] - x[..., :, :-1]
            ).abs().mean()
            loss = loss + cfg.tv * total * tv
        if cfg.diversity and cfg.variants > 1:
            v = x.view(n, cfg.variants, -1)
            v = F.normalize(v - v.mean(-1, keepdim=True), dim=-1)
            sim = v @ v.transpose(1, 2)  # (n, variants, variants) cosine similarity
            off = sim.sum() - sim.diagonal(dim1=1, dim2=2).sum()
            loss = loss + cfg.diversity * off / (cfg.variants - 1)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if not fourier and cfg.blur_every and (i + 1) % cfg.blur_every == 0 and i + 1 < cfg.steps:
            with torch.no_grad():  # blur in image space, then back to the logit space
                blurred = _blur(torch.sigmoid(pixels), cfg.blur_sigma).clamp(1e-4, 1 - 1e-4)
                pixels.copy_(torch.logit(blurred))
        if progress:
            progress(i + 1, cfg.steps)
    with torch.no_grad():
        return image().squeeze(1).numpy()


def layer_images(
    model: StagedModel,
    stage: str,
    units: Sequence[int] | None = None,
    config: RenderConfig | None = None,
    batch: int = 128,
    progress: Callable[[int, int], None] | None = None,
) -> np.ndarray:
    """One image per unit of ``stage`` (all of them by default), in batches of ``batch``."""
    units = list(range(stage_size(model, stage))) if units is None else list(units)
    check_units(model, stage, units)
    cfg = config or RenderConfig()
    out = []
    for start in range(0, len(units), batch):
        part = units[start : start + batch]
        done = start

        def report(i: int, total: int, done: int = done, size: int = len(part)) -> None:
            if progress:
                progress(done + round(size * i / total), len(units))

        objective = channels(stage, part, model=model)
        out.append(render(model, objective, len(part), cfg, report, keys=part))
    return np.concatenate(out)


def filters(model: StagedModel, stage: str) -> np.ndarray:
    """A conv stage's kernels, (out, in, kH, kW); conv1's are 5×5 images of what it detects."""
    module = resolve_stage(model, stage)
    if not isinstance(module, torch.nn.Conv2d):
        convs = [
            s for s in model.stage_names if isinstance(model.get_submodule(s), torch.nn.Conv2d)
        ]
        raise ValueError(f"{stage} has no filters; stages with filters: {', '.join(convs)}")
    return module.weight.detach().numpy().copy()


@torch.no_grad()
def unit_scores(
    model: StagedModel, images: torch.Tensor, stage: str, batch_size: int = 1000
) -> np.ndarray:
    """(N, units): each image's mean activation of each channel (or unit) of ``stage``."""
    out = []
    model.eval()
    for i in range(0, len(images), batch_size):
        o = _forward(model, to_float(images[i : i + batch_size]), {stage})[stage]
        out.append((o.mean(dim=(2, 3)) if o.dim() == 4 else o).numpy())
    return np.concatenate(out)


@dataclass(frozen=True)
class TopExample:
    index: int  # test-set index
    score: float  # the unit's activation (channel mean, or the unit's value)
    peak: tuple[int, int] | None  # conv units: (row, col) of the strongest position, input pixels
    field: (
        tuple[int, int, int, int] | None
    )  # conv units: receptive field (top, left, bottom, right)


def _receptive_field(model: StagedModel, stage: str) -> tuple[int, int]:
    """(size, stride) of one unit of a conv/ReLU/pool stage, in input pixels."""
    size, stride = 1, 1
    for name in model.stage_names:
        m = model.get_submodule(name)
        if isinstance(m, torch.nn.Conv2d):
            k = m.kernel_size[0]
            size += (k - 1) * stride
        elif isinstance(m, torch.nn.MaxPool2d):
            k = m.kernel_size if isinstance(m.kernel_size, int) else m.kernel_size[0]
            size += (k - 1) * stride
            stride *= k
        if name == stage:
            break
    return size, stride


@torch.no_grad()
def top_examples(
    model: StagedModel,
    images: torch.Tensor,
    stage: str,
    unit: int,
    k: int = 9,
    scores: np.ndarray | None = None,
) -> list[TopExample]:
    """The ``k`` images that excite ``unit`` of ``stage`` most, with the receptive field of
    the strongest position for conv units (where in the digit the unit fired)."""
    check_units(model, stage, [unit])
    # A pre-activation conv channel's mean is mostly negative: the least negative images are
    # the ones with least ink, not the ones it detects. Rank by what fires: its ReLU.
    stage = activation_stage(model, stage)
    s = unit_scores(model, images, stage) if scores is None else scores
    best = np.argsort(-s[:, unit], kind="stable")[:k]
    out = []
    size, stride = _receptive_field(model, stage)
    x = to_float(images[torch.as_tensor(best)])
    maps = _forward(model.eval(), x, {stage})[stage]
    for j, i in enumerate(best):
        peak = field = None
        if maps.dim() == 4:
            m = maps[j, unit]
            r, c = divmod(int(m.argmax()), m.shape[1])
            # The unit's centre in input pixels, and its field clipped to the image.
            cy, cx = r * stride + stride // 2, c * stride + stride // 2
            half = size // 2
            field = (
                max(0, cy - half),
                max(0, cx - half),
                min(28, cy + half + 1),
                min(28, cx + half + 1),
            )
            peak = (cy, cx)
        out.append(TopExample(int(i), float(s[i, unit]), peak, field))
    return out


def unused_channels(
    model: StagedModel,
    images: torch.Tensor,
    stage: str,
    threshold: float = 1e-3,
    scores: np.ndarray | None = None,
) -> dict[str, Any]:
    """Channels (units) whose activation is (near) zero on every image.

    A unit counts as unused when its largest mean activation over ``images`` is below
    ``threshold`` times the stage's largest; for pre-activation conv stages use the ReLU
    stage (a negative pre-activation is silent too).
    """
    s = unit_scores(model, images, stage) if scores is None else scores
    peak = s.max(axis=0)  # (units,)
    ceiling = float(peak.max()) if peak.size else 0.0
    unused = [int(u) for u in np.flatnonzero(peak <= threshold * max(ceiling, 1e-12))]
    return {
        "stage": stage,
        "units": len(peak),
        "unused": unused,
        "threshold": threshold,
        "max_per_unit": peak.round(6).tolist(),
    }


def with_overrides(config: RenderConfig, **changes: Any) -> RenderConfig:
    """``config`` with some fields changed (the CLI's and API's flags)."""
    return replace(config, **{k: v for k, v in changes.items() if v is not None})


def compare_regularizers(
    model: StagedModel, spec: str, config: RenderConfig | None = None
) -> dict[str, np.ndarray]:
    """One unit's image with every regularizer on, each one off in turn, and plain.

    Returns ``{"all on": img, "no jitter": img, …, "plain": img}``, each (28, 28): the
    figure that shows what each regularizer contributes.
    """
    base = config or RenderConfig()
    objective = parse(spec, model)
    variants = {
        "all on": base,
        "no jitter": replace(base, jitter=0),
        "no scale/rotation": replace(base, scale=0.0, rotate=0.0),
        "no blur": replace(base, blur_every=0),
        "no L2": replace(base, l2=0.0),
        "no TV": replace(base, tv=0.0),
        "none (Adam only)": replace(
            base, jitter=0, scale=0.0, rotate=0.0, blur_every=0, l2=0.0, tv=0.0
        ),
        "Fourier": replace(base, fourier=True),
        "plain (tutorial)": RenderConfig.plain(seed=base.seed),
    }
    return {name: render(model, objective, 1, cfg)[0] for name, cfg in variants.items()}
