from __future__ import annotations

import contextlib
import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from cnnscope.analysis.activations import forward_until
from cnnscope.analysis.features import (
    RenderConfig,
    channels,
    filters,
    layer_images,
    parse,
    render,
    top_examples,
    unused_channels,
    with_overrides,
)
from cnnscope.analysis.features.methods import config_for
from cnnscope.cli import main
from cnnscope.models import build_model
from cnnscope.models.builtin import LinearReLU

STILL = {"jitter": 0, "scale": 0.0, "rotate": 0.0, "blur_every": 0}  # deterministic


def _tiny(seed: int = 0):
    torch.manual_seed(seed)
    return build_model("deep_mnist", conv1=2, conv2=3, hidden=8).eval()


def _hooks(model: torch.nn.Module) -> int:
    return sum(len(m._forward_hooks) for m in model.modules())


@pytest.mark.parametrize("method", ["plain", "regularized"])
def test_hand_set_filter_image_has_its_sign_pattern(method: str) -> None:
    model = _tiny()
    w = torch.tensor(np.random.default_rng(1).choice([-1.0, 1.0], (5, 5)), dtype=torch.float32)
    with torch.no_grad():
        model.conv1.weight[0, 0] = w
        model.conv1.bias.zero_()
    base = RenderConfig.plain(steps=20) if method == "plain" else RenderConfig(steps=200, **STILL)
    image = render(model, parse("conv1:0:centre", model), 1, base)[0]
    patch = image[12:17, 12:17]  # the centre unit's 5×5 receptive field (SAME padding)
    agree = (np.sign(patch - patch.mean()) == w.numpy()).mean()
    assert agree >= 0.9, (agree, patch.round(2))


def test_plain_is_the_tutorial_update_rule() -> None:
    model = _tiny()
    cfg = RenderConfig.plain(steps=2, seed=3)
    got = render(model, channels("fc1", [4]), 1, cfg, keys=[4])[0]
    g = torch.Generator().manual_seed(3 * 1_000_003 + 4 * 97)
    x = 0.45 + 0.1 * torch.rand(1, 1, 28, 28, generator=g)
    for _ in range(2):
        x.requires_grad_(True)
        score = model.fc1(
            model.pool2(model.relu2(model.conv2(model.pool1(model.relu1(model.conv1(x)))))).flatten(
                1
            )
        )[0, 4]
        (grad,) = torch.autograd.grad(score, x)
        x = (x + grad / (grad.std() + 1e-8)).clamp(0, 1).detach()
    assert np.allclose(got, x[0, 0].numpy(), atol=1e-5)


@pytest.mark.parametrize("method", ["plain", "regularized"])
def test_batched_equals_one_at_a_time(method: str) -> None:
    model = _tiny()
    cfg = RenderConfig.plain(steps=10) if method == "plain" else RenderConfig(steps=10, **STILL)
    together = layer_images(model, "conv2", [0, 1, 2], cfg)
    alone = np.concatenate([layer_images(model, "conv2", [u], cfg) for u in (0, 1, 2)])
    assert together.shape == alone.shape == (3, 28, 28)
    assert np.allclose(together, alone, atol=1e-4)


@pytest.mark.parametrize("method", ["regularized", "prior"])
def test_restarts_keep_each_class_images_best_start(method: str) -> None:
    # A start can end in a poor optimum; of three, each unit keeps the one scoring highest.
    model = build_model("lenet5").eval() if method == "prior" else _tiny()
    torch.manual_seed(0)
    base = dataclasses.replace(RenderConfig(method=method, steps=8, **STILL), restarts=1)
    best = dataclasses.replace(base, restarts=3)
    units = list(range(10))

    def scores(images: np.ndarray) -> torch.Tensor:
        with torch.no_grad():
            out = forward_until(model, torch.from_numpy(images)[:, None], {"logits"})
        return out["logits"][units, units]

    one, three = (
        layer_images(model, "logits", units, base),
        layer_images(model, "logits", units, best),
    )
    assert (scores(three) >= scores(one) - 1e-4).all()
    assert (scores(three) > scores(one) + 1e-3).any()  # some unit found a better start
    # Block 0 of the restarts is the single start: units whose first start won are equal.
    same = [u for u in units if np.allclose(three[u], one[u], atol=1e-4)]
    assert same and len(same) < 10
    # Layers other than the class images keep one start.
    assert np.allclose(
        layer_images(model, "conv1", [0, 1], best),
        layer_images(model, "conv1", [0, 1], base),
        atol=1e-4,
    )
    with pytest.raises(ValueError, match="restarts"):
        RenderConfig(restarts=0).validate()


def test_hooks_released_and_weights_untouched_after_exception() -> None:
    model = _tiny()
    before = [p.clone() for p in model.parameters()]

    def boom(outputs):
        raise RuntimeError("objective failed")

    from cnnscope.analysis.features import Objective

    with pytest.raises(RuntimeError, match="objective failed"):
        render(model, Objective(boom, {"conv2"}, "boom"), 1, RenderConfig(steps=3))
    assert _hooks(model) == 0
    assert all(p.requires_grad for p in model.parameters())
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))


def test_forward_stops_at_the_needed_stage() -> None:
    model = _tiny()
    out = forward_until(model, torch.rand(2, 1, 28, 28), {"conv1"})
    assert set(out) == {"conv1"} and _hooks(model) == 0


def test_objectives_compose_and_parse() -> None:
    model = _tiny()
    outputs = forward_until(model, torch.rand(1, 1, 28, 28), {"logits"})
    a, b = parse("logits:3", model), parse("logits:8", model)
    assert torch.allclose(
        (a - 0.5 * b)(outputs), outputs["logits"][:, 3] - 0.5 * outputs["logits"][:, 8]
    )
    assert parse("conv2:1", model).stages == {"relu2"}  # a conv mean reads its ReLU
    assert parse("conv2:1:centre", model).stages == {"conv2"}
    with pytest.raises(ValueError, match="valid: conv1, relu1"):
        parse("conv9:1", model)
    with pytest.raises(ValueError, match="units 0–2"):
        parse("conv2:3", model)
    with pytest.raises(ValueError, match="STAGE:UNIT"):
        parse("conv2", model)
    with pytest.raises(ValueError, match="steps must be"):
        RenderConfig(steps=0).validate()


def test_filters_top_examples_and_unused(mnist) -> None:
    model = _tiny()
    assert filters(model, "conv2").shape == (3, 2, 5, 5)
    with pytest.raises(ValueError, match="stages with filters: conv1, conv2"):
        filters(model, "fc1")
    images = mnist.test_images[:200]
    top = top_examples(model, images, "conv2", 1, k=5)
    scores = [t.score for t in top]
    assert scores == sorted(scores, reverse=True) and len(top) == 5
    assert all(0 <= t.field[0] < t.field[2] <= 28 for t in top)
    with torch.no_grad():
        model.fc1.bias[5] = -1e4  # unit 5 can never fire
    report = unused_channels(model, images, "fc1")
    assert 5 in report["unused"] and report["units"] == 8


def test_features_cli(tmp_path: Path, capsys) -> None:
    out = tmp_path / "f"
    assert (
        main(
            [
                "features",
                "--layer",
                "conv1",
                "--units",
                "0-3",
                "--steps",
                "5",
                "--model",
                "lenet5",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    payload = json.loads((out / "features-conv1-regularized.json").read_text())
    assert payload["units"] == [0, 1, 2, 3] and np.array(payload["images"]).shape == (4, 28, 28)
    assert (out / "features-conv1-regularized.png").exists()
    assert main(["features", "--layer", "conv1", "--units", "a-b", "--out", str(out)]) == 2
    assert main(["features", "--layer", "conv1", "--steps", "0", "--out", str(out)]) == 2
    assert "steps must be" in capsys.readouterr().err
    assert main(["filters", "--layer", "conv2", "--model", "lenet5", "--out", str(out)]) == 0
    assert json.loads((out / "filters-conv2.json").read_text())["shape"] == [16, 6, 5, 5]


def test_compare_regularizers_cli(tmp_path: Path, capsys) -> None:
    out = tmp_path / "c"
    assert (
        main(
            [
                "features",
                "--layer",
                "logits",
                "--compare",
                "logits:3",
                "--model",
                "lenet5",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    images = json.loads((out / "compare-logits-3.json").read_text())
    assert {"all on", "no blur", "plain (tutorial)", "Fourier"} <= set(images)
    arrays = {k: np.array(v) for k, v in images.items()}
    assert all(a.shape == (28, 28) for a in arrays.values())
    assert not np.array_equal(arrays["all on"], arrays["no blur"])  # each switch matters
    assert (
        main(
            [
                "features",
                "--layer",
                "logits",
                "--compare",
                "logits:12",
                "--model",
                "lenet5",
                "--out",
                str(out),
            ]
        )
        == 2
    )
    assert "units 0–9" in capsys.readouterr().err


def test_diverse_variants_differ() -> None:
    model = _tiny()
    cfg = RenderConfig(steps=30, variants=3, diversity=1.0)
    images = render(model, channels("logits", [2]), 1, cfg)
    assert images.shape == (3, 28, 28)
    assert np.abs(images[0] - images[1]).mean() > 0.01


def test_unused_reads_conv_stages_after_their_activation(mnist) -> None:
    # conv1's pre-activation maps are mostly negative: read there, 27 of 32 shipped
    # channels looked "unused" while relu1 has none.
    model = _tiny()
    with torch.no_grad():
        model.conv1.bias[0] = -1e4  # channel 0 never fires; channel 1 does
    report = unused_channels(model, mnist.test_images[:100], "conv1")
    assert report["stage"] == "relu1" and report["unused"] == [0]


@pytest.mark.slow
def test_every_live_unit_fires_on_its_image(mnist) -> None:
    # A unit silent on the starting noise has no gradient: without the redirected ReLU
    # its image stays the start (flat grey after blur), although it fires on digits.
    import cnnscope
    from cnnscope.analysis.activations import record

    model, _ = cnnscope.load_model()
    units = list(range(32))
    live = set(units) - set(unused_channels(model, mnist.test_images[:2000], "fc1")["unused"])
    cfg = RenderConfig()  # the defaults, as the page and the shipped images use them

    def firing(config: RenderConfig) -> set[int]:
        x = torch.from_numpy(layer_images(model, "fc1", units, config)).unsqueeze(1)
        values = record(model, x, ["fc1"])["fc1"][torch.arange(len(units)), units]
        return {u for u, v in zip(units, values.tolist(), strict=True) if v > 0}

    assert not live <= firing(dataclasses.replace(cfg, redirect=0.0))
    assert live <= firing(cfg)
    assert not any(m._forward_hooks for m in model.modules())


def test_bad_stages_are_value_errors_listing_the_valid_ones(mnist) -> None:
    # Found from outside: IndexError and KeyError reached the server and the CLI.
    from cnnscope.analysis.features import unit_scores

    model = _tiny()
    for call in (
        lambda: unit_scores(model, mnist.test_images[:4], "conv9"),
        lambda: layer_images(model, "conv9"),
        lambda: forward_until(model, torch.zeros(1, 1, 28, 28), {"conv9"}),
    ):
        with pytest.raises(ValueError, match="valid: conv1, relu1"):
            call()
    with pytest.raises(ValueError, match="'prob' is only an objective"):
        top_examples(model, mnist.test_images[:4], "prob", 0)
    with pytest.raises(ValueError, match="diversity"):
        RenderConfig(diversity=float("nan")).validate()


def test_redirected_relu_gradient_equals_the_formula_it_replaced() -> None:
    """The one-function redirected ReLU gives exactly the gradient of
    out + leak·(pre − pre.detach()) (PyTorch as the oracle), for a ReLU module and for
    a frozen LinearReLU, and releases its hooks."""
    from cnnscope.analysis.features.render import _RedirectedReLUs

    model = _tiny(1)
    for p in model.parameters():
        p.requires_grad_(False)
    x = torch.rand(3, 1, 28, 28, generator=torch.Generator().manual_seed(0))

    def grad_of(redirect: bool) -> torch.Tensor:
        xi = x.clone().requires_grad_(True)
        ctx = _RedirectedReLUs(model, 0.1) if redirect else contextlib.nullcontext()
        with ctx:
            out = forward_until(model, xi, {"fc1"})["fc1"]
        out[:, :3].sum().backward()
        assert xi.grad is not None
        return xi.grad

    def formula_hook(module, inputs, out):  # type: ignore[no-untyped-def]
        pre = inputs[0]
        if isinstance(module, LinearReLU):
            pre = torch.nn.functional.linear(pre, module.weight, module.bias)
        return out + 0.1 * (pre - pre.detach())

    got = grad_of(True)
    assert _hooks(model) == 0
    relus = [m for m in model.modules() if isinstance(m, torch.nn.ReLU | LinearReLU)]
    handles = [m.register_forward_hook(formula_hook) for m in relus]
    try:
        want = grad_of(False)
    finally:
        for h in handles:
            h.remove()
    assert not torch.equal(want, grad_of(False))  # the leak changes the gradient
    assert torch.allclose(got, want, atol=1e-6, rtol=1e-5)


def test_bf16_render_matches_fp32_and_leaves_the_model_as_it_was() -> None:
    """precision="bf16" renders on a private bfloat16 copy: the caller's model keeps its
    dtype, mode, gradients and hooks; the images are the fp32 ones to within rounding."""
    torch.manual_seed(0)
    model = build_model("deep_mnist", conv1=8, conv2=8, hidden=32).train()
    cfg = RenderConfig(steps=30, **STILL)
    units = list(range(8))
    fp32 = layer_images(model, "fc1", units, dataclasses.replace(cfg, precision="fp32"))
    bf16 = layer_images(model, "fc1", units, dataclasses.replace(cfg, precision="bf16"))
    assert model.training and _hooks(model) == 0
    assert all(p.dtype == torch.float32 and p.requires_grad for p in model.parameters())
    assert bf16.dtype == np.float32 and bf16.shape == fp32.shape == (8, 28, 28)
    a = fp32.reshape(8, -1) - fp32.reshape(8, -1).mean(1, keepdims=True)
    b = bf16.reshape(8, -1) - bf16.reshape(8, -1).mean(1, keepdims=True)
    corr = (a * b).sum(1) / np.sqrt((a * a).sum(1) * (b * b).sum(1))
    assert np.median(corr) > 0.9 and corr.min() > 0.8, corr.round(3)  # seen: 0.96, 0.93
    assert not np.array_equal(fp32, bf16)  # it did run in bfloat16
    with pytest.raises(ValueError, match="precision must be auto, fp32 or bf16"):
        RenderConfig(precision="fp16").validate()


def test_class_images_render_in_float32_where_auto_would_pick_bf16(monkeypatch) -> None:
    """precision="auto" means bf16 on a CPU with AMX, but not for the ten class images:
    their judges and faithfulness were measured in float32 (bf16 lost one image). The big
    layers keep bf16."""
    import importlib

    render_mod = importlib.import_module("cnnscope.analysis.features.render")
    monkeypatch.setattr(render_mod, "native_bf16", lambda device: True)
    torch.manual_seed(0)
    model = build_model("deep_mnist", conv1=8, conv2=8, hidden=32).eval()
    cfg = RenderConfig(steps=10, restarts=1, **STILL)
    fp32, bf16 = (dataclasses.replace(cfg, precision=p) for p in ("fp32", "bf16"))
    auto = layer_images(model, "logits", range(3), cfg)
    assert np.array_equal(auto, layer_images(model, "logits", range(3), fp32))
    assert not np.array_equal(auto, layer_images(model, "logits", range(3), bf16))
    hidden = layer_images(model, "fc1", range(3), cfg)  # a big layer: bf16 under auto
    assert np.array_equal(hidden, layer_images(model, "fc1", range(3), bf16))


def test_bf16_render_keeps_a_grey_models_maps_channels_last() -> None:
    """A one-channel input's NCHW strides also pass as channels-last, so
    ``.contiguous(memory_format=channels_last)`` left it NCHW and oneDNN made conv1's maps
    NCHW: each step then converted them back and forth (a quarter of its time)."""
    from cnnscope.analysis.features import Objective
    from cnnscope.analysis.features.render import _forward, _frozen

    seen: dict[str, torch.Tensor] = {}

    def probe(outputs: dict[str, torch.Tensor]) -> torch.Tensor:
        seen.update(outputs)
        return outputs["conv2"].mean(dim=(1, 2, 3))

    stages = {"conv1", "relu1", "pool1", "conv2"}
    with _frozen(_tiny(), bf16=True) as work:
        _forward(work, torch.rand(2, 1, 28, 28), Objective(probe, stages, "probe"))
    assert set(seen) == stages
    for name, out in seen.items():
        cl = out.is_contiguous(memory_format=torch.channels_last) and not out.is_contiguous()
        assert cl, (name, out.stride())


def test_bf16_render_pools_backward_on_channels_last_gradients() -> None:
    """fc1 hands pool2 its gradient as an NCHW view of a flat one; max pooling's backward
    then ran 5–8× slower than on a channels-last gradient. Every pooling backward of a
    render gets a channels-last gradient, and the hooks that do it are released."""
    from torch.utils._python_dispatch import TorchDispatchMode

    from cnnscope.analysis.features.render import _forward, _frozen

    grads: list[torch.Tensor] = []

    class Spy(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
            if func is torch.ops.aten.max_pool2d_with_indices_backward.default:
                grads.append(args[0])
            return func(*args, **(kwargs or {}))

    with _frozen(_tiny(), bf16=True) as work:
        x = torch.rand(2, 1, 28, 28, requires_grad=True)
        score = _forward(work, x, channels("fc1", [0, 1]))
        with Spy():
            score.sum().backward()
    assert _hooks(work) == 0
    assert len(grads) == 2
    for g in grads:
        assert g.is_contiguous(memory_format=torch.channels_last) and not g.is_contiguous()


@pytest.mark.parametrize("shape", [(5, 1, 28, 28), (3, 3, 20, 24)])
def test_penalty_gradient_in_closed_form_equals_autograds(shape: tuple[int, ...]) -> None:
    """The render adds the penalties' gradient at the image instead of differentiating
    their graph; PyTorch's autograd of the penalties is the oracle."""
    from cnnscope.analysis.features.render import _frame, _penalties, _penalty_grad

    cfg = RenderConfig(l2=0.3, tv=0.05, l1=0.02, frame=50.0)
    x = torch.rand(*shape, dtype=torch.float64, requires_grad=True)
    frame = _frame(*shape[-2:]).double()
    _penalties(x, cfg, frame).backward()
    assert x.grad is not None
    assert torch.allclose(_penalty_grad(x.detach(), cfg, frame), x.grad, atol=1e-12)


def test_affine_grid_equals_torchs() -> None:
    from cnnscope.analysis.features.transforms import _affine_grid

    theta = torch.randn(4, 2, 3)
    want = torch.nn.functional.affine_grid(theta, [4, 1, 20, 24], align_corners=False)
    assert torch.allclose(_affine_grid(theta, 20, 24), want, atol=1e-6)


_IN_PLACE = """
import torch.nn.functional as F
from torch import nn


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 4, 3, padding=1)
        self.conv2 = nn.Conv2d(4, 4, 3, padding=1)
        self.fc = nn.Linear(4 * 28 * 28, 10)

    def forward(self, x):
        x = F.relu(self.conv1(x), inplace=True)  # in place, on a stage's output
        x = self.conv2(x)
        x += 0.1  # and again
        return self.fc(x.flatten(1))
"""


@pytest.mark.parametrize("precision", ["bf16", "fp32"])
def test_a_model_that_changes_its_maps_in_place_renders(tmp_path: Path, precision: str) -> None:
    # The bf16 path's channels-last gradients were a custom Function's view of each map,
    # and an in-place op on it raised (found on a model of one's own with F.relu_).
    from cnnscope.models import load_foreign

    (tmp_path / "net.py").write_text(_IN_PLACE)
    model = load_foreign(f"{tmp_path / 'net.py'}:Net")
    cfg = with_overrides(config_for("regularized"), steps=3, precision=precision)
    images = layer_images(model, "conv2", [0, 1], cfg)
    assert images.shape == (2, 28, 28) and np.isfinite(images).all()
