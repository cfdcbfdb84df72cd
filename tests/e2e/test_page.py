"""The page in a real browser: Debian's Chromium driven by Playwright, against uvicorn."""

from __future__ import annotations

import contextlib
import itertools
import math
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

import cnnscope
from cnnscope.server.app import ServedModel, create_app
from tests.support.live import serving

pytestmark = pytest.mark.browser

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"


@pytest.fixture(scope="module")
def server_url(mnist) -> Iterator[str]:
    models = [ServedModel(n, *cnnscope.load_model(n), "shipped") for n in cnnscope.bundled_models()]
    models.sort(key=lambda m: m.id != "deep_mnist")
    with serving(create_app(models, data=mnist, seed=0)) as url:
        yield url


@pytest.fixture
def page(browser, server_url, errors):
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.goto(server_url)
    page.wait_for_selector("body[data-ready='1']", timeout=15_000)
    yield page
    context.close()
    assert not errors, errors


_IDLE = "document.body.dataset.idle === 'true'"
# How many pixels of a canvas are brighter than dark grey.
_LIT_PIXELS = """(selector) => {
    const c = document.querySelector(selector);
    const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
    let n = 0;
    for (let i = 0; i < d.length; i += 4) if (d[i] + d[i + 1] + d[i + 2] > 120) n++;
    return n;
}"""


def _draw(page, points: list[tuple[float, float]]) -> None:
    box = page.locator("#pad").bounding_box()
    x0, y0 = box["x"], box["y"]
    page.mouse.move(x0 + points[0][0], y0 + points[0][1])
    page.mouse.down()
    for (ax, ay), (bx, by) in itertools.pairwise(points):
        for t in range(1, 11):
            page.mouse.move(x0 + ax + (bx - ax) * t / 10, y0 + ay + (by - ay) * t / 10)
    page.mouse.up()


def _idle(page, timeout: float = 30_000) -> None:
    """Wait until no request of the page is in flight or scheduled."""
    page.wait_for_function(_IDLE, timeout=timeout)


def _pixels(page, selector: str) -> list[int]:
    """The RGBA bytes of a canvas."""
    return page.evaluate(
        """(s) => { const c = document.querySelector(s);
            return Array.from(c.getContext('2d').getImageData(0, 0, c.width, c.height).data); }""",
        selector,
    )


def _predicted(page) -> str:
    return page.locator(".bar.top span").first.inner_text()


def test_draw_a_seven_and_watch(page) -> None:
    _draw(page, [(70, 60), (210, 60), (150, 160), (120, 240)])  # a 7: bar, then diagonal
    _idle(page)  # the last throttled request after mouse-up, answered
    assert _predicted(page) == "7"
    # Every stage of the compact view is painted (non-black pixels in its canvas).
    for stage in ("conv1", "pool1", "conv2", "pool2", "fc1", "logits"):
        assert page.evaluate(_LIT_PIXELS, f'canvas.grid[data-stage="{stage}"]') > 0, stage
    assert page.evaluate(_LIT_PIXELS, "#seen") > 0
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "draw-seven.png"), full_page=True)
    render_ms = page.evaluate("window.cnnscope.lastRenderMs")
    (ARTIFACTS / "render-ms.txt").write_text(f"{render_ms:.2f}\n")


def test_the_brush_follows_the_drawings_size(page) -> None:
    """Issue 13: a digit drawn small with the fixed 22-px brush filled its loops (24 % read
    right at 30 px); the brush is now 0.15 × the drawing's size, 4–22 px, as it is drawn."""
    box = page.locator("#pad").bounding_box()
    k = box["width"] / 280  # canvas pixels → CSS pixels
    seven = [(120, 120), (160, 120), (145, 145), (135, 165)]  # a 7 about 45 px tall
    _draw(page, [(x * k, y * k) for x, y in seven])
    _idle(page)
    brush = float(page.get_attribute("#pad", "data-brush"))
    assert 4 <= brush <= 0.15 * 45 + 0.5
    assert _predicted(page) == "7"
    page.click("#clear")
    _draw(page, [(70 * k, 60 * k), (210 * k, 60 * k), (150 * k, 160 * k), (120 * k, 240 * k)])
    assert float(page.get_attribute("#pad", "data-brush")) == 22  # full size: as before


def test_pipeline_view_scales_hover_and_detail(page) -> None:
    _draw(page, [(140, 40), (140, 250)])  # a 1
    _idle(page)
    assert _predicted(page) == "1"
    page.select_option("#view", "pipeline")
    for stage in ("relu1", "relu2"):
        assert page.locator(f'figure[data-stage="{stage}"]').count() == 1
    page.select_option("#scale", "global")
    assert page.locator('figure[data-stage="conv1"] .legend .lo').inner_text().startswith("-")
    grid = page.locator('canvas.grid[data-stage="conv1"]')
    box = grid.bounding_box()
    page.mouse.move(box["x"] + 5, box["y"] + 5)
    assert "conv1 channel 0" in page.locator("#tooltip").inner_text()
    page.mouse.click(box["x"] + 5, box["y"] + 5)
    page.wait_for_selector("#detail-filter-fig:not([hidden])")
    assert "conv1 filter 0" in page.locator("#detail-filter-caption").inner_text()
    # The channel links to its preferred input (shipped) and the digits that excite it.
    page.wait_for_selector("#detail-pref-fig:not([hidden])")
    assert "conv1:0's preferred input" in page.locator("#detail-pref-caption").inner_text()
    page.wait_for_function("document.querySelectorAll('#detail-top figure').length === 9")


def test_random_digit_clear_and_model_switch(page) -> None:
    page.click("#random")
    page.wait_for_function("document.querySelector('#digit-note').textContent.includes('label')")
    _idle(page)
    label = page.locator("#digit-note").inner_text().rsplit(" ", 1)[1]
    assert _predicted(page) == label  # the app's seeded picks are digits the model gets right
    options = page.locator("#model option").all_inner_texts()
    if len(options) > 1:
        page.select_option("#model", index=1)
        page.wait_for_function(
            "document.querySelector('#status').textContent.startsWith(document.querySelector('#model').value)"
        )
    page.click("#clear")
    assert page.locator(".bar").count() == 0
    assert page.locator("#status").inner_text() == "draw a digit"


def test_confusion_cell_opens_digits_then_draw_view(page) -> None:
    page.click("button.tab[data-view='eval-view']")
    page.wait_for_selector("#confusion td", timeout=60_000)  # first evaluation: seconds
    assert "test accuracy 99.28" in page.locator("#eval-summary").inner_text()
    assert page.locator("#per-class tr").count() == 11
    # The most populated off-diagonal cell.
    cell = page.evaluate(
        """() => [...document.querySelectorAll('#confusion td')]
            .filter((td) => td.dataset.true !== td.dataset.pred)
            .map((td) => [Number(td.textContent || 0), td.dataset.true, td.dataset.pred])
            .sort((a, b) => b[0] - a[0])[0]"""
    )
    count, true, pred = cell
    page.click(f"#confusion td[data-true='{true}'][data-pred='{pred}']")
    page.wait_for_function(f"document.querySelectorAll('#cell-gallery figure').length === {count}")
    assert f"predicted as {pred}" in page.locator("#cell-title").inner_text()
    page.locator("#cell-gallery figure").first.click()
    page.wait_for_selector("#draw-view:not([hidden])")
    _idle(page)
    assert f"label {true}" in page.locator("#digit-note").inner_text()
    assert _predicted(page) == str(pred)  # the same mistake, now with its activations
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "mistake-in-draw-view.png"), full_page=True)


def test_attribution_live_and_on_demand(page) -> None:
    page.select_option("#attr-method", "gradcam")
    _draw(page, [(140, 40), (140, 250)])  # a 1
    page.wait_for_function("document.querySelector('#attr-note').textContent.startsWith('gradcam')")
    _idle(page)  # the first answer may be for half a stroke; the last one is for the 1
    assert page.evaluate(_LIT_PIXELS, "#attr") > 0
    assert "class 1" in page.locator("#attr-note").inner_text()
    page.select_option("#attr-target", "7")
    page.wait_for_function("document.querySelector('#attr-note').textContent.includes('class 7')")
    page.select_option("#attr-method", "ig")  # slow: computed on demand, right away once
    page.wait_for_function(
        "document.querySelector('#attr-note').textContent.startsWith('ig for class 7')"
    )
    assert "baseline: black image" in page.locator("#attr-note").inner_text()
    assert page.locator("#attr-compute").is_visible()


def test_embedding_view_play_hover_and_open(page) -> None:
    page.click("button.tab[data-view='embed-view']")
    page.wait_for_function("document.querySelector('#embed-label').textContent.startsWith('step')")
    assert page.evaluate(_LIT_PIXELS, "#scatter") > 1000
    assert "10-NN accuracy" in page.locator("#embed-metrics").inner_text()
    assert page.evaluate(_LIT_PIXELS, "#class-weights") > 0
    # Slider to the first snapshot: the untrained network's 9.9 % subset accuracy.
    page.locator("#embed-frame").fill("0")
    page.wait_for_function(
        "document.querySelector('#embed-label').textContent.startsWith('step 0 ')"
    )
    assert "accuracy 9.9 %" in page.locator("#embed-label").inner_text()
    page.click("#embed-play")
    page.wait_for_function(  # playing moves on through the snapshots
        "!document.querySelector('#embed-label').textContent.startsWith('step 0 ')", timeout=5000
    )
    # Hover the densest point: the digit and its labels appear; click opens the draw view.
    page.locator("#embed-frame").fill("0")
    page.wait_for_selector("#scatter:not([data-moving])")
    # The lit pixel nearest the canvas centre, spiralling outwards.
    target = page.evaluate(
        """() => {
            const v = document.querySelector('#scatter'), r = v.getBoundingClientRect();
            const d = v.getContext('2d').getImageData(0, 0, v.width, v.height).data;
            for (let rad = 0; rad < v.width / 2; rad += 2)
              for (let a = 0; a < 6.28; a += 0.2) {
                const px = Math.round(v.width / 2 + rad * Math.cos(a));
                const py = Math.round(v.height / 2 + rad * Math.sin(a));
                const o = (py * v.width + px) * 4;
                if (d[o] + d[o + 1] + d[o + 2] > 150 && d[o + 3] > 0)
                  return [r.left + px * r.width / v.width, r.top + py * r.height / v.height];
              }
            return null; }"""
    )
    assert target is not None
    page.mouse.move(*target)
    page.wait_for_function("document.querySelector('#hover-text').textContent.startsWith('test #')")
    text = page.locator("#hover-text").inner_text()
    label = text.split("true ")[1].split(",")[0]
    page.mouse.click(*target)
    page.wait_for_selector("#draw-view:not([hidden])")
    _idle(page)
    assert f"label {label}" in page.locator("#digit-note").inner_text()


def test_features_view_gallery_and_top_examples(page) -> None:
    page.click("button.tab[data-view='feat-view']")
    page.select_option("#feat-stage", "logits")
    page.wait_for_function(
        "document.querySelectorAll('#feat-gallery figure').length === 10", timeout=60_000
    )
    assert page.evaluate(_LIT_PIXELS, "#feat-gallery canvas") > 0
    page.locator("#feat-gallery figure").nth(3).click()
    # On first use the class images are judged meanwhile (judges trained, 10,000 test
    # digits scored): on a busy machine the top digits share the CPU with that.
    page.wait_for_function(
        "document.querySelectorAll('#feat-top figure').length === 9", timeout=60_000
    )
    # The digits that excite logit 3 most are 3s.
    captions = page.locator("#feat-top figcaption").all_inner_texts()
    assert sum("(3)" in c for c in captions) >= 8
    # The class images' score from outside the model, and the methods as the server lists them.
    page.wait_for_function(
        "document.querySelector('#feat-check').textContent.includes('logistic')", timeout=60_000
    )
    assert "excite their class" in page.inner_text("#feat-check")
    health = page.evaluate("fetch('api/health').then((r) => r.json())")
    options = page.eval_on_selector_all("#feat-method option", "os => os.map((o) => o.value)")
    assert options == [f["id"] for f in health["features"]] and "prior" in options
    trade = {f["id"]: f["trade"] for f in health["features"]}["regularized"]
    assert page.inner_text("#feat-trade") == f"regularized: {trade}."


# The stages the page rebuilt itself from the sent ones, with the index of the digit shown.
_DERIVED = """() => {
    const { result, drawing } = window.cnnscope.state;
    const out = {};
    for (const d of result.res.derived) {
        const maps = result.stages[d.name].maps.map((m) => Array.from(m));
        out[d.name] = { source: d.source, op: d.op, maps };
    }
    return { model: result.model, index: drawing.source.index, derived: out };
}"""


def test_page_relu_and_pooling_equal_pytorchs(page, mnist) -> None:
    """The page's ReLU and 2×2 max-pool of the uint8 conv maps match PyTorch's own stages."""
    from cnnscope.analysis.activations import record

    checked = 0
    for model_id in page.locator("#model option").evaluate_all("(os) => os.map((o) => o.value)"):
        page.select_option("#model", model_id)
        page.click("#random")
        _idle(page)
        got = page.evaluate(_DERIVED)
        assert got["model"] == model_id
        model, _ = cnnscope.load_model(model_id)
        x = mnist.test_images[got["index"]].float().div(255).view(1, 1, 28, 28)
        want = {k: v[0].numpy() for k, v in record(model, x).items()}
        for name, d in got["derived"].items():
            # The page's maps come from the quantised conv maps: each value is within half a
            # step, (max - min) / 255 / 2 of its channel, and ReLU and max-pool keep that bound.
            sent = d["source"]
            while sent in got["derived"]:
                sent = got["derived"][sent]["source"]
            conv = want[sent]
            step = (conv.max(axis=(1, 2)) - conv.min(axis=(1, 2))) / 255
            page_maps = np.array(d["maps"]).reshape(want[name].shape)
            error = np.abs(page_maps - want[name]).max(axis=(1, 2))
            assert (error <= step / 2 + 1e-4).all(), (model_id, name, error.max())
            checked += 1
    assert checked >= 8  # relu1, pool1 (and relu2, pool2) of every served model


SEVEN = [(70, 60), (210, 60), (150, 160), (120, 240)]
ONE = [(140, 40), (140, 250)]
_GRIDS = "document.querySelectorAll('#stages canvas.grid').length"


def _stages_lit(page) -> dict[str, int]:
    """Each stage grid of the draw view and how many of its pixels are lit."""
    names = page.locator("#stages canvas.grid").evaluate_all(
        "(cs) => cs.map((c) => c.dataset.stage)"
    )
    return {n: page.evaluate(_LIT_PIXELS, f'canvas.grid[data-stage="{n}"]') for n in names}


def test_clear_then_draw_brings_the_maps_back(page) -> None:
    _draw(page, SEVEN)
    _idle(page)
    before = _pixels(page, 'canvas.grid[data-stage="conv1"]')
    page.click("#clear")
    _idle(page)
    assert page.evaluate(_GRIDS) == 0
    assert page.locator("[data-panel=probabilities] .bar").count() == 0
    assert page.locator("#status").inner_text() == "draw a digit"
    _draw(page, ONE)
    _idle(page)
    assert _predicted(page) == "1"
    lit = _stages_lit(page)
    assert set(lit) == {"conv1", "pool1", "conv2", "pool2", "fc1", "logits"}, lit
    assert all(lit.values()), lit
    assert _pixels(page, 'canvas.grid[data-stage="conv1"]') != before  # a 1 now, not the 7


def test_undo_to_empty_then_draw(page) -> None:
    _draw(page, ONE)
    _idle(page)
    assert page.evaluate(_GRIDS) > 0
    page.click("#undo")  # the only stroke: the pad is empty again
    _idle(page)
    assert page.evaluate(_GRIDS) == 0
    assert page.locator("#status").inner_text() == "draw a digit"
    _draw(page, SEVEN)
    _idle(page)
    assert _predicted(page) == "7"
    assert all(_stages_lit(page).values())


def test_an_answer_for_a_cleared_drawing_is_not_shown(page) -> None:
    held = []
    page.route("**/api/predict", lambda route: held.append(route))  # every answer held back
    with page.expect_request("**/api/predict"):
        _draw(page, SEVEN)
    assert held
    page.click("#clear")
    for route in held:  # the answers now arrive, after Clear
        _release(route)
    _idle(page)
    assert page.evaluate(_GRIDS) == 0
    assert page.locator("[data-panel=probabilities] .bar").count() == 0
    assert page.locator("#status").inner_text() == "draw a digit"


def _release(route) -> None:
    """Let a held request through; the page may have aborted it meanwhile."""
    from playwright.sync_api import Error as PlaywrightError

    with contextlib.suppress(PlaywrightError):
        route.continue_()


_ORANGE = """(panel) => [...document.querySelectorAll(panel + ' canvas')].reduce((n, c) => {
    const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
    for (let i = 0; i < d.length; i += 4)
        if (d[i] > 200 && d[i + 1] > 120 && d[i + 1] < 200 && d[i + 2] < 80) n++;
    return n; }, 0)"""


def _captions(answer: list[dict]) -> list[str]:
    return [f"#{t['index']} ({t['label']}) {t['score']:.2f}" for t in answer]


def test_top_examples_show_the_unit_clicked_last(page, server_url) -> None:
    page.click("button.tab[data-view='feat-view']")
    page.select_option("#feat-stage", "conv2")
    page.wait_for_function("document.querySelectorAll('#feat-gallery figure').length === 64")
    # Dead units are drawn as dead, and agree with `cnnscope unused` (relu2: channel 23).
    dead = page.locator("#feat-gallery figure.dead")
    assert dead.count() == 1 and dead.get_attribute("data-unit") == "23"
    assert "1 dead" in page.inner_text("#feat-status")
    held = []

    def hold_first(route) -> None:
        if held:
            route.continue_()
        else:
            held.append(route)

    page.route("**/api/top-examples/**", hold_first)
    with page.expect_request("**/api/top-examples/**"):
        page.locator("#feat-gallery figure").nth(3).click()  # A: its answer is held back
    page.locator("#feat-gallery figure").nth(5).click()  # B, answered at once
    panel = page.locator("#feat-view [data-panel=top-examples]")
    page.wait_for_selector("#feat-top[data-unit='5'] figure", timeout=60_000)
    assert held and held[0].request.url.endswith("/conv2/3"), held
    _release(held[0])  # A's answer lands last
    _idle(page)
    assert (panel.get_attribute("data-stage"), panel.get_attribute("data-unit")) == ("conv2", "5")
    want = page.request.get(f"{server_url}api/top-examples/deep_mnist/conv2/5").json()
    assert panel.locator("figcaption").all_inner_texts() == _captions(want)
    assert page.evaluate(_ORANGE, "#feat-top") > 0  # conv units: receptive-field boxes
    # fc units see the whole image: no boxes.
    page.select_option("#feat-stage", "fc1")
    page.wait_for_function("document.querySelectorAll('#feat-gallery figure').length === 1024")
    page.locator("#feat-gallery figure").nth(7).click()
    page.wait_for_selector("#feat-top[data-unit='7'][data-stage='fc1']", timeout=60_000)
    assert panel.locator("figure").count() == 9
    assert page.evaluate(_ORANGE, "#feat-top") == 0


def test_a_busy_server_is_retried_not_an_error(page, errors) -> None:
    busy = []

    def first_busy(route) -> None:
        if busy:
            route.continue_()
        else:
            busy.append(route.request.url)
            route.fulfill(status=503, headers={"Retry-After": "1"}, json={"detail": "busy"})

    page.route("**/api/predict", first_busy)
    _draw(page, ONE)
    _idle(page)
    assert busy
    assert _predicted(page) == "1"
    assert not page.locator("#status").inner_text().startswith("error")
    errors[:] = [e for e in errors if "503" not in e]  # the browser logs the 503 itself


def test_a_failed_attribution_keeps_the_prediction(page, errors) -> None:
    def refuse_explain(route) -> None:
        if '"explain"' in (route.request.post_data or ""):
            route.fulfill(status=400, json={"detail": "no layer for gradcam"})
        else:
            route.continue_()

    page.route("**/api/predict", refuse_explain)
    page.select_option("#attr-method", "gradcam")
    _draw(page, ONE)
    _idle(page)
    assert _predicted(page) == "1"  # predicted again, without the attribution
    assert all(_stages_lit(page).values())
    assert page.locator("#attr-note").inner_text() == "error: no layer for gradcam"
    assert not page.locator("#status").inner_text().startswith("error")
    errors[:] = [e for e in errors if "400" not in e]  # the browser logs the 400 itself


@pytest.mark.slow  # an evaluation and top examples of every model: about a minute
def test_every_model_through_every_tab(page, errors, server_url) -> None:
    """Each served model in each view: no console error, no failed request of the page."""
    failed: list[str] = []
    foreign: list[str] = []
    page.on("response", lambda r: failed.append(f"{r.status} {r.url}") if r.status >= 400 else None)
    page.on(
        "request",
        lambda r: None if r.url.startswith((server_url, "data:")) else foreign.append(r.url),
    )
    models = page.evaluate("window.cnnscope.state.models")
    assert "single_conv" in [m["id"] for m in models]
    for info in models:
        model = info["id"]
        page.click("button.tab[data-view='draw-view']")
        page.select_option("#model", model)
        page.click("#clear")
        _draw(page, SEVEN)
        _idle(page)
        assert page.locator("#status").inner_text().startswith(f"{model}: "), model
        lit = _stages_lit(page)
        shown = [s["name"] for s in info["stages"] if s["kind"] != "act" or not s["parent"]]
        assert list(lit) == shown and all(lit.values()), (model, lit)
        for method in ("saliency", "occlusion"):
            page.select_option("#attr-method", method)
            _idle(page)
            assert page.locator("#attr-note").inner_text().startswith(f"{method} for class"), model
        page.select_option("#attr-method", "")
        # A conv channel and an fc unit open with their top examples.
        for stage in ("conv1", "fc1"):
            page.locator(f'canvas.grid[data-stage="{stage}"]').click(position={"x": 2, "y": 2})
            page.wait_for_selector(f"#detail-top[data-stage='{stage}']", timeout=60_000)
            _idle(page)
            assert page.locator("#detail-top figure").count() == 9, (model, stage)
            assert (page.evaluate(_ORANGE, "#detail-top") > 0) == (stage == "conv1"), (model, stage)
            page.keyboard.press("Escape")
            page.wait_for_selector("#detail:not([open])", state="attached")
        page.click("button.tab[data-view='eval-view']")
        _idle(page, timeout=120_000)
        assert page.locator("#eval-summary").inner_text().startswith(f"{model}: test accuracy")
        page.click("#confusion td[data-true='3'][data-pred='3']")
        _idle(page)
        assert page.locator("#cell-gallery figure").count() > 0, model
        page.click("button.tab[data-view='embed-view']")
        _idle(page, timeout=120_000)
        if info.get("embedding", True) and page.locator("#embed-label").inner_text() == "":
            # No snapshots shipped, and a server without ModelInfo.embedding: the page asked.
            assert f"404 {server_url}api/embedding/{model}" in failed, model
            failed.remove(f"404 {server_url}api/embedding/{model}")
            errors[:] = [e for e in errors if "404" not in e]
        else:
            assert page.locator("#embed-label").inner_text().startswith("step") or (
                "no training snapshots" in page.locator("#embed-metrics").inner_text()
            ), model
        page.click("button.tab[data-view='feat-view']")
        _idle(page)
        assert page.locator("#feat-status").inner_text(), model
        if page.locator("#feat-gallery figure").count():
            page.locator("#feat-gallery figure").first.click()
            page.wait_for_selector("#feat-top[data-unit='0']", timeout=60_000)
    _idle(page)
    assert not failed, failed
    assert not foreign, foreign  # offline: nothing but the page's own server


def _random_digit(page) -> int:
    """Put a (seeded) random test digit on the pad; its test-set index."""
    page.click("#random")
    page.wait_for_function("document.querySelector('#digit-note').textContent.includes('label')")
    _idle(page)
    return int(page.locator("#digit-note").inner_text().split("#")[1].split(",")[0])


def test_arithmetic_of_a_conv1_position_is_the_models(page, mnist) -> None:
    """A click on a conv1 map explains its value; the value is the model's own forward pass."""
    from cnnscope.analysis.activations import record

    index = _random_digit(page)
    grid = page.locator('canvas.grid[data-stage="conv1"]')
    box = grid.bounding_box()
    layout = grid.evaluate("(c) => c._layout")
    # Channel 5 (row 0, column 5 of the tiles), position (row 14, column 12) of its map.
    cx = (5 * (layout["tw"] + layout["gap"]) + 12 + 0.5) * box["width"] / layout["width"]
    cy = (14 + 0.5) * box["height"] / layout["height"]
    # Whole pixels: the browser's click coordinates are integers.
    page.mouse.click(round(box["x"] + cx), round(box["y"] + cy))
    panel = page.locator('[data-panel="arithmetic"][data-channel]')
    panel.wait_for(timeout=15_000)
    assert (panel.get_attribute("data-stage"), panel.get_attribute("data-channel")) == (
        "conv1",
        "5",
    )
    assert (panel.get_attribute("data-y"), panel.get_attribute("data-x")) == ("14", "12")
    model, _ = cnnscope.load_model("deep_mnist")
    x = mnist.test_images[index].float().div(255).view(1, 1, 28, 28)
    want = record(model, x)
    got = float(panel.locator("[data-value]").get_attribute("data-value"))
    assert abs(got - float(want["conv1"][0, 5, 14, 12])) < 1e-5
    # The patch, kernel and products of conv1's single input channel, the ReLU, the pool.
    assert panel.locator("table.numbers").count() == 4  # input, kernel, products, pool window
    assert panel.locator("table.numbers td.won").count() == 1
    assert "ReLU" in panel.inner_text() and "pool1" in panel.inner_text()
    # The enlarged map outlines the place explained.
    big = page.locator("#detail-map").bounding_box()
    mark = page.locator("#detail-marker").bounding_box()
    assert abs(mark["x"] + mark["width"] / 2 - (big["x"] + big["width"] * 12.5 / 28)) < 2
    assert (
        abs(mark["y"] + mark["height"] / 2 - (big["y"] + big["height"] * 14.5 / 28)) < 2
    )  # a cell: 5 px
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "arithmetic.png"))
    # A click on the enlarged map explains another position of the same channel.
    page.mouse.click(math.ceil(big["x"] + 1), math.floor(big["y"] + big["height"] - 2))
    page.wait_for_selector('[data-panel="arithmetic"][data-y="27"][data-x="0"]')
    got = float(panel.locator("[data-value]").get_attribute("data-value"))
    assert abs(got - float(want["conv1"][0, 5, 27, 0])) < 1e-5
    # rows 28, 29 and columns −2, −1 of rows 25…27 are padding zeros
    assert page.locator("table.numbers td.pad").count() == 2 * 5 + 3 * 2
    page.keyboard.press("Escape")


def test_arithmetic_of_conv2_fc1_and_logits(page) -> None:
    _draw(page, SEVEN)
    _idle(page)
    for stage, expect in (
        ("conv2", "32 input channels"),
        ("fc1", "largest of 3136"),
        ("logits", "softmax"),
    ):
        page.locator(f'canvas.grid[data-stage="{stage}"]').click(position={"x": 3, "y": 3})
        page.wait_for_selector(f'[data-panel="arithmetic"][data-stage="{stage}"]', timeout=15_000)
        assert expect in page.locator('[data-panel="arithmetic"]').inner_text()
        page.keyboard.press("Escape")


def test_arithmetic_of_the_best_models_batchnorm(page) -> None:
    """best: conv → BatchNorm → ReLU; the panel spells out the BatchNorm step between the
    conv's sum and the ReLU, and the ReLU takes the normalised value."""
    page.select_option("#model", "best")
    _draw(page, SEVEN)
    _idle(page)
    assert page.locator("#status").inner_text().startswith("best: ")
    page.locator('canvas.grid[data-stage="conv2"]').click(position={"x": 3, "y": 3})
    page.wait_for_selector('[data-panel="arithmetic"][data-stage="conv2"]', timeout=15_000)
    text = page.locator('[data-panel="arithmetic"]').inner_text()
    assert "BatchNorm2d (bn2)" in text and "ReLU (relu2)" in text
    assert text.index("BatchNorm2d (bn2)") < text.index("ReLU (relu2)")
    page.keyboard.press("Escape")


def test_words_on_every_panel_labelled_logits_and_legends(page) -> None:
    _draw(page, SEVEN)
    _idle(page)
    for panel in ("input", "probabilities", "attribution", "stages"):
        assert page.locator(f'[data-panel="{panel}"] .what').first.inner_text().strip(), panel
    figures = page.locator("#stages figure[data-stage]")
    assert figures.count() == 6
    for i in range(figures.count()):
        fig = figures.nth(i)
        assert fig.locator(".what").inner_text().strip(), fig.get_attribute("data-stage")
        assert fig.locator(".legend .hi").inner_text().strip()  # a colour bar with values
    # The logits strip: the digits 0…9, each under its own square.
    grid = page.locator('canvas.grid[data-stage="logits"]').bounding_box()
    labels = page.locator('figure[data-stage="logits"] .classes span')
    assert labels.all_inner_texts() == [str(k) for k in range(10)]
    for k in range(10):
        box = labels.nth(k).bounding_box()
        centre = box["x"] + box["width"] / 2
        assert (
            grid["x"] + grid["width"] * k / 10 <= centre <= grid["x"] + grid["width"] * (k + 1) / 10
        )
    # The global scale leaves the logits out: their range would turn every map black.
    page.select_option("#scale", "global")
    conv1_hi = float(page.locator('figure[data-stage="conv1"] .legend .hi').inner_text())
    logits_hi = float(page.locator('figure[data-stage="logits"] .legend .hi').inner_text())
    assert conv1_hi < logits_hi
    assert page.evaluate(_LIT_PIXELS, 'canvas.grid[data-stage="conv1"]') > 100
    # Saliency has no sign: its caption and legend say grey → red, not blue.
    page.select_option("#attr-method", "saliency")
    _idle(page)
    page.wait_for_selector(".attr-legend:not([hidden])")
    assert "no sign" in page.locator("#attr-note").inner_text()
    assert "blue" not in page.locator("#attr-note").inner_text()
    assert page.locator(".attr-legend .lo").inner_text() == "0"
    page.select_option("#attr-method", "gradxinput")
    _idle(page)
    page.wait_for_function("document.querySelector('#attr-note').textContent.includes('blue')")
    assert page.locator(".attr-legend .lo").inner_text().startswith("lowers")


def test_first_visit_guide_is_skippable_and_remembered(page, server_url) -> None:
    # Never shown to a driven browser unless asked for.
    assert not page.locator("#guide").evaluate("(d) => d.open")
    page.goto(server_url + "?guide=1")
    page.wait_for_selector("body[data-ready='1']")
    assert page.locator("#guide").evaluate("(d) => d.open")
    page.click("#guide button[value='skip']")
    assert not page.locator("#guide").evaluate("(d) => d.open")
    assert page.evaluate("localStorage.getItem('cnnscope.guide')") == "seen"
    page.click("#guide-open")  # the "?" brings it back
    assert page.locator("#guide").evaluate("(d) => d.open")
    page.click("#guide-done")


def _in_view(page, selector: str, width: int, height: int) -> bool:
    box = page.locator(selector).first.bounding_box()
    assert box is not None, selector
    return (
        box["x"] >= 0
        and box["y"] >= 0
        and box["x"] + box["width"] <= width
        and box["y"] + box["height"] <= height
    )


def test_laptop_layout_shows_every_layer_without_scrolling(browser, server_url, errors) -> None:
    context = browser.new_context(viewport={"width": 1440, "height": 900})
    page = context.new_page()
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(server_url)
    page.wait_for_selector("body[data-ready='1']")
    _draw(page, SEVEN)
    _idle(page)
    page.select_option("#attr-method", "saliency")
    _idle(page)
    shown = ["#pad", "#seen", "#bars", '[data-panel="attribution"]', "#attr"]
    grids = [
        f'canvas.grid[data-stage="{s}"]'
        for s in ("conv1", "pool1", "conv2", "pool2", "fc1", "logits")
    ]
    for selector in shown + grids:
        assert _in_view(page, selector, 1440, 900), selector
    assert page.evaluate("document.documentElement.scrollWidth") <= 1440
    # conv → ReLU → pool: each layer's three stages side by side, in one row.
    page.select_option("#view", "pipeline")
    for layer in (("conv1", "relu1", "pool1"), ("conv2", "relu2", "pool2")):
        boxes = [page.locator(f'canvas.grid[data-stage="{s}"]').bounding_box() for s in layer]
        assert len({round(b["y"]) for b in boxes}) == 1, layer
        assert boxes[0]["x"] + boxes[0]["width"] <= boxes[1]["x"] < boxes[2]["x"]
        for s in layer:
            assert _in_view(page, f'canvas.grid[data-stage="{s}"]', 1440, 900), s
    context.close()


def test_phone_layout_nothing_overflows_and_tooltips_close(browser, server_url, errors) -> None:
    context = browser.new_context(
        viewport={"width": 390, "height": 844}, has_touch=True, is_mobile=True
    )
    page = context.new_page()
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(server_url)
    page.wait_for_selector("body[data-ready='1']")
    page.click("#random")
    _idle(page)
    page.wait_for_selector('canvas.grid[data-stage="conv1"]')
    width = "Math.max(document.documentElement.scrollWidth, document.body.scrollWidth)"
    assert page.evaluate(width) <= 390
    for view in ("arch-view", "embed-view", "eval-view", "feat-view"):
        page.click(f"button.tab[data-view='{view}']")
        page.wait_for_function(_IDLE, timeout=120_000)
        assert page.evaluate(width) <= 390, view
    page.click("button.tab[data-view='draw-view']")
    page.wait_for_function(_IDLE, timeout=120_000)  # back on the draw view, maps drawn
    grid = page.locator('canvas.grid[data-stage="pool1"]')
    grid.wait_for(state="visible")
    grid.scroll_into_view_if_needed()
    # What a tap on a map delivers first: the mouse move that shows the tooltip. A scroll
    # closes the tooltip (as it should), and on a loaded machine the page may still be
    # scrolling into place: move again until the page has settled and it shows.
    deadline = time.monotonic() + 15
    while not page.locator("#tooltip").is_visible():
        assert time.monotonic() < deadline, "the tooltip never showed"
        box = grid.bounding_box()
        grid.dispatch_event("mousemove", {"clientX": box["x"] + 4, "clientY": box["y"] + 4})
        page.wait_for_timeout(100)
    page.locator("h1").tap()  # a tap elsewhere closes it
    page.locator("#tooltip").wait_for(state="hidden", timeout=10_000)
    # A tap on a map opens it (and how its number is computed) without leaving a tooltip.
    grid.tap(position={"x": 4, "y": 4})
    page.wait_for_selector('[data-panel="arithmetic"][data-stage="conv1"]')
    assert page.locator("#tooltip").is_hidden()
    assert page.evaluate(width) <= 390
    page.locator("#detail .close").tap()
    context.close()


def test_architecture_diagram_counts_thumbnails_and_jumps(page) -> None:
    _draw(page, SEVEN)
    _idle(page)
    page.click("button.tab[data-view='arch-view']")
    panel = page.locator('[data-panel="architecture"]')
    panel.wait_for()
    model, _ = cnnscope.load_model("deep_mnist")
    from cnnscope.models import stage_infos

    infos = stage_infos(model)
    boxes = panel.locator(".arch-box")
    assert boxes.evaluate_all("(bs) => bs.map((b) => b.dataset.stage)") == ["input", *infos]
    assert boxes.evaluate_all("(bs) => bs.map((b) => b.dataset.kind)")[1:] == [
        i.kind for i in infos.values()
    ]
    _idle(page)
    page.wait_for_function("document.querySelector('#arch-status').textContent === ''")
    counts = boxes.evaluate_all("(bs) => bs.slice(1).map((b) => Number(b.dataset.params))")
    want = [sum(p.numel() for p in model.get_submodule(n).parameters()) for n in infos]
    assert counts == want
    assert "3,274,634 parameters in all" in panel.inner_text()
    for name in ("input", "conv1", "pool2", "logits"):
        assert page.evaluate(_LIT_PIXELS, f'.arch-box[data-stage="{name}"] canvas.thumb') > 0, name
    # A box leads to its stage in the draw view; an activation opens the pipeline view.
    page.click('.arch-box[data-stage="fc1"]')
    assert page.locator("#draw-view").is_visible()
    page.click("button.tab[data-view='arch-view']")
    page.click('.arch-box[data-stage="relu2"]')
    page.wait_for_selector('#stages figure[data-stage="relu2"].flash')
    assert page.locator("#view").input_value() == "pipeline"
    box = page.locator('#stages figure[data-stage="relu2"]').bounding_box()
    assert 0 <= box["y"] < page.viewport_size["height"]


def test_slow_operations_show_progress(page) -> None:
    """Evaluation, embedding, features and top examples each say they are working."""
    held: list = []
    page.route("**/api/evaluation/**", lambda route: held.append(route))
    page.route("**/api/embedding/**", lambda route: held.append(route))
    page.route("**/api/features/**", lambda route: held.append(route))
    page.route("**/api/top-examples/**", lambda route: held.append(route))
    for tab, node, words in (
        ("eval-view", "#eval-summary", "evaluating deep_mnist"),
        ("embed-view", "#embed-metrics", "laying out"),
        ("feat-view", "#feat-status", "preferred images"),
    ):
        page.click(f"button.tab[data-view='{tab}']")
        progress = page.locator(f"{node}[data-progress]")
        progress.wait_for()
        assert words in progress.inner_text() and progress.is_visible()
        page.wait_for_function("document.body.dataset.idle === 'false'")
        _release(held.pop())
        page.wait_for_selector(f"{node}:not([data-progress])", timeout=120_000)
    page.wait_for_function(
        "document.querySelectorAll('#feat-gallery figure').length > 0", timeout=120_000
    )
    page.locator("#feat-gallery figure").nth(2).click()
    note = page.locator("#feat-top [data-progress]")
    note.wait_for()
    assert "likes most" in note.inner_text()
    page.wait_for_timeout(1100)  # the seconds so far
    assert note.inner_text().endswith(" 1 s")
    _release(held.pop())
    page.wait_for_selector("#feat-top figure", timeout=60_000)
    assert page.locator("[data-progress]").count() == 0
    page.unroute_all()


def test_the_drawing_is_sent_as_a_grey_png_that_decodes_as_the_canvas_does(page) -> None:
    # One channel instead of RGBA: 0.4 ms of server CPU to decode instead of 1.0 ms, and
    # the server must see exactly the image the browser's own PNG of the pad gives.
    import base64
    import json

    from cnnscope.decode import decode_png

    sent: list[str] = []
    page.on(
        "request",
        lambda r: sent.append(json.loads(r.post_data)["png"]) if "api/predict" in r.url else None,
    )
    _draw(page, [(70, 60), (210, 60), (150, 160), (120, 240)])
    _idle(page)
    assert sent
    grey, rgba = page.evaluate(
        """async () => {
            const { greyPNG } = await import('./codec.js');
            const pad = document.querySelector('#pad');
            return [await greyPNG(pad), pad.toDataURL('image/png')];
        }"""
    )
    raw = [base64.b64decode(u.split(",", 1)[1]) for u in (sent[-1], grey, rgba)]
    assert [r[25] for r in raw] == [0, 0, 6]  # PNG colour type: grey, grey, RGBA
    assert raw[0] == raw[1]  # the last request is the pad as it is now
    assert np.array_equal(decode_png(raw[1]), decode_png(raw[2]))
    assert decode_png(raw[1]).max() == 1.0  # strokes were drawn
