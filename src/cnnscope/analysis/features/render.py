"""The render loop: optimise images so that an objective scores high.

Three methods. ``plain`` is the old tutorials' gradient ascent, exactly: start from uniform
noise in [0.45, 0.55], step by ``gradient / (std(gradient) + 1e-8)``, clip to [0, 1].
``regularized`` runs Adam on a parameterization (:mod:`.params`) through random transforms
(:mod:`.transforms`) with L1, frame and total-variation penalties, then settles for a few
steps without transforms (so the image excites its unit fully); each regularizer can be
switched off (:func:`compare_regularizers` shows what each contributes). ``prior``
optimises the latent code of a learned model of MNIST digits (:mod:`.prior`), then settles
with its pixels free to move a little off the decoder's drawing.

Class images start ``restarts`` times from different noise and keep the start that
excites the unit most: a render can end in a poor local optimum (a weak, odd digit).
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import json
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any, Self

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ...devices import fused_step_runs, native_bf16
from ...models import StagedModel, logits_stage, stage_infos
from ...models.builtin import LinearReLU
from ..activations import forward_until
from .objectives import Objective, Outputs, channels, check_units, parse, stage_size
from .params import FourierParam, SigmoidParam
from .transforms import random_transform

__all__ = ["RenderConfig", "compare_regularizers", "layer_images", "render", "with_overrides"]


@dataclass(frozen=True)
class RenderConfig:
    """Settings of a render. Defaults are the ``regularized`` method's, tuned for 28×28.

    ``RenderConfig.plain()`` gives the tutorials' method.
    """

    method: str = "regularized"  # "regularized", "plain" or "prior"
    steps: int = 100  # optimisation steps; 64–256 is typical; the time grows with them linearly
    lr: float = 0.1  # Adam's step size on the parameterization (regularized only)
    jitter: int = 2  # random translation, pixels, each step (0 = off)
    scale: float = 0.1  # random scale in [1 − s, 1 + s] (0 = off)
    rotate: float = 10.0  # random rotation, degrees, ± (0 = off)
    blur_every: int = 4  # blur the image every N steps (0 = off)
    blur_sigma: float = 0.5  # pixels
    # On MNIST's terms: sparse ink (L1) on a dark field whose 4-px frame stays empty, as
    # MNIST's digits sit in a 20×20 box (frame mean 0.02–0.03, was 0.45: grey everywhere).
    l2: float = 0.0  # weight of the mean squared pixel value
    tv: float = 0.03  # weight of total variation: smooth strokes, no speckle
    l1: float = 0.02  # weight of the mean pixel value: sparse ink on a dark field
    frame: float = 50.0  # weight of ink in the 4-px frame MNIST keeps empty around its 20×20 box
    start_lo: float = 0.02  # the noisy start's pixel range: dark, as MNIST's background;
    start_hi: float = 0.3  # silent units still get a gradient through ``redirect``
    fourier: bool = False  # decorrelated (Fourier) parameterization instead of pixels
    redirect: float = 0.1  # ReLU gradient leak over the first half of the steps (0 = off)
    # The last ``settle`` fraction of the steps sees the image as it is (no jitter, scale,
    # rotation, blur): the robust phase finds the shape, this one makes it excite the unit
    # fully: class images then out-excite 99 % of their class's test digits (0–4 of 10
    # without it, 10 of 10 with it on three of the four shipped models).
    settle: float = 0.3
    # Starts per class image (logits, prob): each unit's image is the one, of this many
    # renders from different noise, that excites the unit most; a start that ends in a poor
    # optimum (a weak, odd digit) is dropped. k× the time: seconds for 10 class images,
    # so other layers (fc1: 1,024 units) keep one start. 1 = off.
    restarts: int = 3
    diversity: float = 0.0  # > 0 pushes apart the variants of one unit (see ``variants``)
    variants: int = 1  # images per unit
    # ``prior`` only: the weight of ½·|z|² keeping the latent code where the training
    # digits lie (0 = free: strong but stranger images; 1 = the VAE's own prior). Its
    # ``settle`` steps let each pixel move off the decoder's drawing (L1, frame and TV as
    # ``regularized``): a decoder cannot draw every digit a network likes best (hvass's 6
    # reached the 96th percentile of its class without it, the 99.7th with it).
    prior: float = 0.05
    # ``prior`` only: strokes may be drawn up to this many times crisper than the decoder
    # draws them (a VAE's digits are blurred; a per-image gain on its pre-sigmoid output)
    crisp: float = 1.0
    # The forward and backward passes in bfloat16 where the hardware computes it natively
    # (a CPU with AMX, a GPU with bf16): "auto". All 1,024 fc1 images of deep_mnist 2–3×
    # faster on this project's 2-core Xeon, each image correlating > 0.99 with its fp32
    # render (bench/features_speed.py). "fp32" everywhere, or "bf16" forced.
    precision: str = "auto"
    seed: int = 0

    @classmethod
    def through_prior(cls, steps: int = 100, seed: int = 0) -> RenderConfig:
        """The ``prior`` method: optimise a latent code of the digit model (:mod:`.prior`)."""
        return cls(method="prior", steps=steps, lr=0.1, crisp=4.0, seed=seed)

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
            l1=0.0,
            frame=0.0,
            tv=0.0,
            redirect=0.0,
            settle=0.0,
            restarts=1,
            seed=seed,
        )

    def digest(self) -> str:
        """A short hash of every setting: the key of cached images."""
        text = json.dumps(asdict(self), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:12]

    def validate(self) -> None:
        checks = [
            (
                self.method in ("plain", "regularized", "prior"),
                "method must be 'plain', 'regularized' or 'prior'",
            ),
            (self.prior >= 0, "prior must be ≥ 0"),
            (1 <= self.crisp <= 10, "crisp must be in [1, 10]"),
            (1 <= self.steps <= 5000, "steps must be in 1–5000"),
            (0 <= self.settle <= 1, "settle must be a fraction of the steps, in [0, 1]"),
            (1 <= self.variants <= 16, "variants must be in 1–16"),
            (1 <= self.restarts <= 16, "restarts must be in 1–16"),
            (0 <= self.jitter <= 8, "jitter must be in 0–8 pixels"),
            (0 <= self.scale < 0.5, "scale must be in [0, 0.5)"),
            (0 <= self.rotate <= 45, "rotate must be in 0–45 degrees"),
            (self.lr > 0, "lr must be > 0"),
            (0 < self.start_lo < self.start_hi < 1, "start range must lie inside (0, 1)"),
            (self.l1 >= 0 and self.frame >= 0, "l1 and frame must be ≥ 0"),
            (0 <= self.diversity < float("inf"), "diversity must be a finite number ≥ 0"),
            (0 <= self.redirect <= 1, "redirect must be in [0, 1]"),
            (self.precision in ("auto", "fp32", "bf16"), "precision must be auto, fp32 or bf16"),
        ]
        errors = [msg for ok, msg in checks if not ok]
        if errors:
            raise ValueError("invalid RenderConfig: " + "; ".join(errors))


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
        With ``config.restarts`` > 1 each unit starts that many times, in one batch, and
        keeps the image that scores highest; the first start is the one without restarts.

    Returns
    -------
    np.ndarray
        (n · variants, H, W) float32 in [0, 1] (the model's input size, 28×28 for the
        built-ins); variants of one unit are consecutive.
    """
    cfg = config or RenderConfig()
    cfg.validate()
    g = torch.Generator().manual_seed(cfg.seed)
    device = next(model.parameters()).device
    keys = list(range(n)) if keys is None else list(keys)
    tries = cfg.restarts
    # Restarts run as one batch of ``tries`` blocks of n units, each unit's variants
    # consecutive inside a block; the objective scores each block as it would score one.
    size = n * cfg.variants  # one start of every unit
    objective = _repeat(_expand(objective, cfg.variants), size, tries)
    n *= tries
    # Each image's start from its own generator: independent of batch composition; the
    # first restart's seeds are those of a render without restarts.
    seeds = [
        cfg.seed * 1_000_003 + k * 97 + v + r * 10_000_019
        for r in range(tries)
        for k in keys
        for v in range(cfg.variants)
    ]
    start = torch.stack(
        [torch.rand(*model.input_shape, generator=torch.Generator().manual_seed(s)) for s in seeds]
    ).to(device)  # (tries·total, C, H, W) uniform [0, 1), on the model's device
    bf16 = cfg.precision == "bf16" or (cfg.precision == "auto" and native_bf16(device))
    with _frozen(model, bf16) as work:
        if cfg.method == "plain":
            out = _render_plain(work, objective, start, cfg, progress)
        elif cfg.method == "prior":
            out = _render_prior(work, objective, seeds, cfg, progress)
        else:
            out = _render_regularized(work, objective, n, len(seeds), start, cfg, g, progress)
        if tries > 1:  # judged by the model itself, in its own precision
            out = _best_of(model, objective, out, tries)
    return out


@contextlib.contextmanager
def _frozen(model: StagedModel, bf16: bool) -> Iterator[StagedModel]:
    """The model to render with: in eval mode, its weights out of autograd (input
    gradients only: a third less work per step), restored after.

    ``bf16``: a private copy in bfloat16, its 4-D weights channels-last, which makes
    every map channels-last (oneDNN's fast layout; NCHW max pooling was 14× slower
    forward) and casts no weight per step (autocast would cast fc1's 3.2 M each time).
    """
    if bf16:
        work = copy.deepcopy(model).eval()
        stage_infos(work)  # traced (and cached) in float32, as the model takes its input
        work = work.to(torch.bfloat16)
        for p in work.parameters():
            p.requires_grad_(False)
            if p.dim() == 4:  # conv kernels: the layout oneDNN picks maps by
                p.data = _channels_last(p.data)
        with _ChannelsLastGrads(work):
            yield work
        return
    was_training = model.training
    grads = [p.requires_grad for p in model.parameters()]
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    try:
        yield model
    finally:
        for p, flag in zip(model.parameters(), grads, strict=True):
            p.requires_grad_(flag)
        model.train(was_training)


def _channels_last(t: torch.Tensor) -> torch.Tensor:
    """A copy of 4-D ``t`` with channels-last strides, even where C = 1.

    ``.contiguous(memory_format=torch.channels_last)`` returns a one-channel tensor
    unchanged (its NCHW strides pass as channels-last), which oneDNN then reads as NCHW:
    conv1 of a grey image gave NCHW maps, and every layer after it paid a conversion
    (23 % of a render step went to copies).
    """
    return torch.empty_like(t, memory_format=torch.channels_last).copy_(t)


def _channels_last_grad(grad: torch.Tensor) -> torch.Tensor:
    return grad.contiguous(memory_format=torch.channels_last)


class _ForwardHooks:
    """``_hook`` on each of ``modules`` while in a ``with`` block, released after."""

    modules: list[nn.Module]

    def _hook(self, module: nn.Module, inputs: Any, out: Any) -> Any:
        raise NotImplementedError

    def _active(self) -> bool:
        return True

    def __enter__(self) -> Self:
        self.handles = (
            [m.register_forward_hook(self._hook) for m in self.modules] if self._active() else []
        )
        return self

    def __exit__(self, *_exc: object) -> None:
        for h in self.handles:
            h.remove()
        self.handles.clear()


class _ChannelsLastGrads(_ForwardHooks):
    """Every 4-D map's gradient channels-last, as the map itself is; hooks released.

    A map that a model flattens (pool2 → fc1) gets its gradient back as the flat
    gradient's NCHW view, and max pooling's backward with an NCHW gradient and a
    channels-last input took 5–8 ms where one conversion and the channels-last kernel
    take 1.2 (deep_mnist, 128 images, one thread).
    """

    def __init__(self, model: nn.Module) -> None:
        self.modules = [m for m in model.modules() if not any(m.children())]

    def _hook(self, _module: nn.Module, _inputs: Any, out: Any) -> Any:
        # A hook on the tensor, not a new output: a model of your own may change its
        # maps in place (relu_, +=), which a custom Function's view would refuse.
        if isinstance(out, torch.Tensor) and out.dim() == 4 and out.requires_grad:
            out.register_hook(_channels_last_grad)
        return None


def _forward(model: StagedModel, x: torch.Tensor, objective: Objective) -> torch.Tensor:
    """The objective's scores (B,) in float32 for images ``x`` (B, C, H, W) float32,
    fed in the model's own dtype and channels-last when its weights are (see _frozen)."""
    dtype = next(model.parameters()).dtype
    if dtype != x.dtype:
        x = x.to(dtype, memory_format=torch.channels_last)  # (B, C, H, W), strides (HWC, 1, WC, C)
    outputs = forward_until(model, x, objective.stages)
    return objective({k: v.float() for k, v in outputs.items()})


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


def _repeat(objective: Objective, size: int, tries: int) -> Objective:
    """Score ``tries`` consecutive blocks of ``size`` batch elements, each as one batch."""
    if tries == 1:
        return objective

    def fn(outputs: Outputs) -> torch.Tensor:
        return torch.cat(
            [
                objective({k: v[r * size : (r + 1) * size] for k, v in outputs.items()})
                for r in range(tries)
            ]
        )

    return Objective(fn, objective.stages, objective.name)


@torch.no_grad()
def _best_of(
    model: StagedModel, objective: Objective, images: np.ndarray, tries: int
) -> np.ndarray:
    """Of ``tries`` blocks of images (tries·m, [C,] H, W), each element's highest-scoring one."""
    x = torch.from_numpy(images)
    x = (x.unsqueeze(1) if x.dim() == 3 else x).to(next(model.parameters()).device)
    score = objective(forward_until(model, x, objective.stages)).view(tries, -1)  # (tries, m)
    best = score.argmax(0).cpu().numpy()  # (m,)
    m = len(best)
    kept: np.ndarray = images.reshape(tries, m, *images.shape[1:])[best, np.arange(m)]
    return kept


def _render_plain(
    model: StagedModel,
    objective: Objective,
    start: torch.Tensor,
    cfg: RenderConfig,
    progress: Callable[[int, int], None] | None,
) -> np.ndarray:
    x = 0.45 + 0.1 * start  # uniform in [0.45, 0.55], as the tutorials started
    for i in range(cfg.steps):
        x.requires_grad_(True)
        score = _forward(model, x, objective)
        (grad,) = torch.autograd.grad(score.sum(), x)
        with torch.no_grad():
            std = grad.flatten(1).std(dim=1).view(-1, 1, 1, 1)
            x = (x + grad / (std + 1e-8)).clamp(0.0, 1.0)
        if progress:
            progress(i + 1, cfg.steps)
    return x.detach().squeeze(1).cpu().numpy()


def _render_prior(
    model: StagedModel,
    objective: Objective,
    seeds: Sequence[int],
    cfg: RenderConfig,
    progress: Callable[[int, int], None] | None,
) -> np.ndarray:
    """Adam on latent codes z: maximise the objective of decoder(z) − prior·½|z|².

    The last ``settle`` fraction of the steps also moves a per-pixel offset before the
    sigmoid (zero until then), under the L1, frame and TV penalties of ``regularized``:
    the digit the decoder drew, touched up until it excites the unit fully.
    """
    from .prior import load_decoder

    if tuple(model.input_shape) != (1, 28, 28):
        raise ValueError(
            f"the prior draws 28×28 grey digits; this model takes {tuple(model.input_shape)}: "
            "use regularized or plain"
        )
    decoder = load_decoder()
    device = next(model.parameters()).device
    # Each code starts from its own generator, as the pixel methods' noise does.
    z = torch.stack(
        [torch.randn(decoder.latent, generator=torch.Generator().manual_seed(s)) for s in seeds]
    ).requires_grad_(True)  # (total, latent)
    gain = torch.zeros(len(z), 1, 1, 1, requires_grad=True)  # → crispness in [1, crisp]
    offset = torch.zeros(len(z), 1, 28, 28, requires_grad=True)  # moved while settling only
    frame = _frame(28, 28)

    def image() -> torch.Tensor:
        crisp = 1 + (cfg.crisp - 1) * torch.sigmoid(gain - 2.0)
        return torch.sigmoid(decoder.sketch(z) * crisp + offset).to(device)  # (total, 1, 28, 28)

    opt = torch.optim.Adam([z, gain], lr=cfg.lr)
    touch = torch.optim.Adam([offset], lr=cfg.lr)
    still_from = cfg.steps - round(cfg.settle * cfg.steps)  # the settle phase's first step
    for i in range(cfg.steps):
        settling = i >= still_from
        x = image()
        score = _forward(model, x, objective)
        loss = -score.sum() + cfg.prior * 0.5 * (z**2).sum()
        if settling:
            loss = loss + _penalties(x, cfg, frame.to(device))
        opt.zero_grad(set_to_none=True)
        touch.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if settling:
            touch.step()
        if progress:
            progress(i + 1, cfg.steps)
    with torch.no_grad():
        return image().squeeze(1).cpu().numpy()


def _penalties(x: torch.Tensor, cfg: RenderConfig, frame: torch.Tensor) -> torch.Tensor:
    """L2, L1, frame ink and total variation of images ``x`` (N, C, H, W), as ``cfg`` weighs
    them; each a per-image mean, summed: a unit's image does not depend on its batch."""
    total = len(x)
    loss = x.new_zeros(())
    if cfg.l2:
        loss = loss + cfg.l2 * total * (x**2).mean()
    if cfg.l1:
        loss = loss + cfg.l1 * total * x.mean()
    if cfg.frame:
        loss = loss + cfg.frame * (x * frame).sum() / frame.sum()
    if cfg.tv:
        tv = (x[..., 1:, :] - x[..., :-1, :]).abs().mean() + (
            x[..., :, 1:] - x[..., :, :-1]
        ).abs().mean()
        loss = loss + cfg.tv * total * tv
    return loss


@torch.no_grad()
def _penalty_grad(x: torch.Tensor, cfg: RenderConfig, frame: torch.Tensor) -> torch.Tensor:
    """The gradient of :func:`_penalties` with respect to ``x`` (N, C, H, W), in closed
    form: the render needs no penalty's value, and a graph of slices, ``abs`` and means
    cost more than the model's ReLUs (tests check it against autograd)."""
    per = x[0].numel()  # each penalty is a per-image mean, summed over images
    grad = (frame * (cfg.frame / frame.sum()) + cfg.l1 / per).expand_as(x).clone()
    if cfg.l2:
        grad.add_(x, alpha=2 * cfg.l2 / per)
    if cfg.tv:  # |x[i+1] − x[i]| pulls x[i+1] by its sign and x[i] against it
        h, w = x.shape[-2:]  # means over N·C·(H−1)·W and N·C·H·(W−1) differences
        dy = (x[..., 1:, :] - x[..., :-1, :]).sign_().mul_(cfg.tv / (per - per // h))
        dx = (x[..., :, 1:] - x[..., :, :-1]).sign_().mul_(cfg.tv / (per - per // w))
        grad[..., 1:, :] += dy
        grad[..., :-1, :] -= dy
        grad[..., :, 1:] += dx
        grad[..., :, :-1] -= dx
    return grad


def _frame(h: int, w: int) -> torch.Tensor:
    """1 on the border, 0 inside: MNIST fits digits in the central 20×20 of 28×28, so a
    border of 4/28 of each side stays dark (scaled for other input sizes)."""
    frame = torch.ones(h, w)
    bh, bw = round(h * 4 / 28), round(w * 4 / 28)
    frame[bh : h - bh, bw : w - bw] = 0
    return frame


def _leaked(grad: torch.Tensor, out: torch.Tensor, leak: float) -> torch.Tensor:
    """grad · (1[out > 0] + leak): the redirected ReLU's gradient, in two passes."""
    # leaky_relu's backward gives grad where out > 0, grad·slope elsewhere, in one pass.
    passed: torch.Tensor = torch.ops.aten.leaky_relu_backward(grad, out, leak / (1 + leak), True)
    return passed.mul_(1 + leak)


class _LeakyReLU(torch.autograd.Function):
    """A ReLU's output ``out`` of ``pre``; backward: the gradient times (1 where it
    fires) + ``leak``. Replaces ``out + leak·(pre − pre.detach())``, which computed the
    same gradient with four more full-size tensors per ReLU and step."""

    @staticmethod
    def forward(ctx: Any, pre: torch.Tensor, out: torch.Tensor, leak: float) -> torch.Tensor:
        ctx.save_for_backward(out)
        ctx.leak = leak
        return out.view_as(out)  # the value the ReLU computed: no second pass

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None, None]:
        (out,) = ctx.saved_tensors
        return _leaked(grad, out, ctx.leak), None, None


class _LeakyLinearReLU(torch.autograd.Function):
    """A frozen :class:`LinearReLU`'s output ``out`` of input ``x``, its gradient leaked as
    :class:`_LeakyReLU`'s: x's gradient is (grad · (1[out > 0] + leak)) @ W. No second
    matrix product forward; the weights get no gradient (callers check they need none)."""

    @staticmethod
    def forward(
        ctx: Any, x: torch.Tensor, out: torch.Tensor, weight: torch.Tensor, leak: float
    ) -> torch.Tensor:
        ctx.save_for_backward(out, weight)
        ctx.leak = leak
        return out.view_as(out)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None, None, None]:
        out, weight = ctx.saved_tensors
        pre_grad = _leaked(grad, out, ctx.leak)  # (B, out_features)
        return pre_grad @ weight.to(pre_grad.dtype), None, None, None


class _RedirectedReLUs(_ForwardHooks):
    """Let a silent ReLU pass a small gradient (Lucid's "redirected ReLU"), hooks released.

    A unit whose ReLU is at zero for the starting image has no gradient, so plain ascent
    leaves its image flat grey although the unit fires on real digits. With ``leak`` > 0
    each ReLU's output keeps its value but gains ``leak`` × the gradient of its input.
    """

    def __init__(self, model: StagedModel, leak: float) -> None:
        self.leak = leak
        self.modules = [m for m in model.modules() if isinstance(m, nn.ReLU | LinearReLU)]

    def _hook(self, module: nn.Module, inputs: Any, out: torch.Tensor) -> torch.Tensor:
        pre = inputs[0]
        redirected: torch.Tensor
        if not isinstance(module, LinearReLU):
            redirected = _LeakyReLU.apply(pre, out.detach(), self.leak)  # type: ignore[no-untyped-call]
        elif module.weight.requires_grad:  # a model being trained: the plain, slower way
            pre = F.linear(pre, module.weight, module.bias)
            redirected = out + self.leak * (pre - pre.detach())
        else:
            redirected = _LeakyLinearReLU.apply(  # type: ignore[no-untyped-call]
                pre, out.detach(), module.weight, self.leak
            )
        return redirected

    def _active(self) -> bool:
        return self.leak > 0


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
    # Noisy mid-grey start (pixels ≈ 0.2–0.8): every ReLU unit fires somewhere, so every
    # objective has a gradient (a dark start leaves many units dead at zero).
    lo, span = cfg.start_lo, cfg.start_hi - cfg.start_lo
    shape = tuple(model.input_shape)
    if cfg.fourier:
        param: FourierParam | SigmoidParam = FourierParam(total, g, shape, start.device)
    else:
        param = SigmoidParam(lo + span * start)
    frame = _frame(*shape[-2:]).to(start.device)
    # One kernel, not seven, where torch has it (not torch 2.3's CPU build).
    fused = fused_step_runs(torch.optim.Adam, start.device.type)
    opt = torch.optim.Adam(param.params, lr=cfg.lr, fused=fused)

    redirect = _RedirectedReLUs(model, cfg.redirect)
    still_from = cfg.steps - round(cfg.settle * cfg.steps)  # the settle phase's first step
    for i in range(cfg.steps):
        x = param.image()
        settling = i >= still_from
        seen = x if settling else random_transform(x, cfg, g)
        with redirect if i < cfg.steps // 2 else contextlib.nullcontext():
            score = _forward(model, seen, objective)
        loss = -score.sum()
        if cfg.diversity and cfg.variants > 1:
            v = x.view(n, cfg.variants, -1)
            v = F.normalize(v - v.mean(-1, keepdim=True), dim=-1)
            sim = v @ v.transpose(1, 2)  # (n, variants, variants) cosine similarity
            off = sim.sum() - sim.diagonal(dim1=1, dim2=2).sum()
            loss = loss + cfg.diversity * off / (cfg.variants - 1)
        opt.zero_grad(set_to_none=True)
        # The penalties' gradient joins the objective's at x: one backward pass.
        torch.autograd.backward([loss, x], [torch.ones_like(loss), _penalty_grad(x, cfg, frame)])
        opt.step()
        blur_now = cfg.blur_every and (i + 1) % cfg.blur_every == 0 and not settling
        blur_now = blur_now and i + 1 < cfg.steps
        if isinstance(param, SigmoidParam) and blur_now:
            param.blur(cfg.blur_sigma)
        if progress:
            progress(i + 1, cfg.steps)
    with torch.no_grad():
        return param.image().squeeze(1).cpu().numpy()


def layer_images(
    model: StagedModel,
    stage: str,
    units: Sequence[int] | None = None,
    config: RenderConfig | None = None,
    batch: int = 128,
    progress: Callable[[int, int], None] | None = None,
) -> np.ndarray:
    """One image per unit of ``stage`` (all of them by default), in batches of ``batch``.

    deep_mnist's 1,024 fc1 images took the same time at 128, 256 and 512 a batch on this
    project's 2-core machine (18.4, 19.1, 18.2 s); 128 holds the least memory (~0.1 GB).

    A channel of a map is scored by its mean over every position: its preferred input is
    a texture over the whole field, so the frame prior (where a *digit* sits) is off there.
    Only the class images (``logits``, ``prob``) take ``config.restarts``: other layers
    have up to 100× as many units, and one start each. The class images render in float32
    unless ``config.precision`` is ``"bf16"``: ``"auto"``'s speed is for the big layers.
    """
    units = list(range(stage_size(model, stage))) if units is None else list(units)
    check_units(model, stage, units)
    cfg = config or RenderConfig()
    if stage != "prob" and stage_infos(model)[stage].spatial:
        cfg = replace(cfg, frame=0.0)
    if stage not in ("prob", logits_stage(model)):
        cfg = replace(cfg, restarts=1)
    elif cfg.precision == "auto":  # ten images: float32, the precision their judges and
        cfg = replace(cfg, precision="fp32")  # faithfulness were measured in (bf16: 9/10)
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
        "no L1": replace(base, l1=0.0),
        "no frame": replace(base, frame=0.0),
        "no TV": replace(base, tv=0.0),
        "none (Adam only)": replace(
            base, jitter=0, scale=0.0, rotate=0.0, blur_every=0, l2=0.0, l1=0.0, frame=0.0, tv=0.0
        ),
        "Fourier": replace(base, fourier=True),
        "plain (tutorial)": RenderConfig.plain(seed=base.seed),
    }
    return {name: render(model, objective, 1, cfg)[0] for name, cfg in variants.items()}
