"""The Train tab in a real browser: start hvass, watch it learn, stop, resume, open the run."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

import cnnscope
from cnnscope.server.app import ServedModel, create_app
from tests.support.live import serving

pytestmark = [pytest.mark.browser, pytest.mark.slow]

STEPS = 300


@pytest.fixture(scope="module")
def server_url(mnist, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    models = [ServedModel("hvass", *cnnscope.load_model("hvass"), "shipped")]
    app = create_app(
        models, data=mnist, seed=0, runs_dir=tmp_path_factory.mktemp("runs"), training=True
    )
    with serving(app) as url:
        yield url


def _number(page, selector: str, key: str) -> float:
    """A number the page writes on an element's dataset (``data-points``, ``data-step``…)."""
    return float(page.evaluate(f"document.querySelector('{selector}').dataset.{key}") or 0)


def _at_least(page, selector: str, key: str, n: float, timeout: float = 90_000) -> None:
    page.wait_for_function(
        f"Number(document.querySelector('{selector}').dataset.{key}) >= {n}", timeout=timeout
    )


def test_train_watch_stop_resume_open(browser, server_url: str, errors: list[str]) -> None:
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    try:
        page = context.new_page()
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("response", lambda r: errors.append(r.url) if r.status >= 400 else None)
        page.goto(server_url)
        page.wait_for_selector("body[data-ready='1']", timeout=15_000)

        page.click("button.tab[data-view='train-view']")
        page.wait_for_selector("#train-model option[value='hvass']", state="attached")
        page.select_option("#train-model", "hvass")
        page.fill("#train-length", str(STEPS))
        page.fill("#train-seed", "0")
        page.click("#train-start")

        # The curve advances while it runs; the embedding gains frames; filters appear.
        page.wait_for_selector("#train-status[data-status='running']", timeout=60_000)
        _at_least(page, "#train-loss", "points", 3)
        _at_least(page, "#scatter", "frames", 2)
        frames_before = _number(page, "#scatter", "frames")
        page.click("#train-stop")
        page.wait_for_selector("#train-status[data-status='stopped']", timeout=30_000)
        stopped_at = _number(page, "#train-status", "step")
        assert 0 < stopped_at < STEPS
        points_stopped = _number(page, "#train-loss", "points")

        page.click("#train-resume")
        page.wait_for_selector("#train-status[data-status='done']", timeout=180_000)
        assert _number(page, "#train-status", "step") == STEPS
        assert _number(page, "#train-loss", "points") > points_stopped
        assert _number(page, "#train-acc", "points") >= 1
        _at_least(page, "#scatter", "frames", frames_before + 1)
        page.wait_for_function("document.querySelectorAll('#train-filters canvas').length === 16")
        # The class images follow the checkpoints: the last one's, one per class.
        page.wait_for_function(
            f"document.querySelector('#train-classes').dataset.step === '{STEPS}'", timeout=60_000
        )
        assert page.locator("#train-classes canvas").count() == 10

        # The run is in the picker; picked, the drawing is answered by the run's weights.
        run_id = page.evaluate("document.querySelector('#train-runs li').dataset.run")
        model = f"run:{run_id}"
        page.wait_for_selector(f"#model option[value='{model}']", state="attached")
        page.select_option("#model", model)
        page.click("button.tab[data-view='draw-view']")
        page.click("#random")
        page.wait_for_function(
            f"window.cnnscope.state.result?.res.model === '{model}'", timeout=30_000
        )
        ours = page.evaluate("window.cnnscope.state.result.res.logits")
        body = page.evaluate(
            "({pixels: Array.from(window.cnnscope.state.drawing.source.pixels, (v) => v / 255)})"
        )
        ask = """async ([body, model]) => {
            const r = await fetch('api/predict', {method: 'POST',
                headers: {'Content-Type': 'application/json'},
                body: JSON.stringify({...body, model, stages: 'none'})});
            return (await r.json()).logits;
        }"""
        assert ours == page.evaluate(ask, [body, model])
        assert ours != page.evaluate(ask, [body, "hvass"])  # the shipped hvass differs

        # Deleted (after a confirm): gone from the runs, and from the picker, which falls
        # back to the default model.
        page.click("button.tab[data-view='train-view']")
        page.once("dialog", lambda d: d.accept())
        page.click("#train-delete")
        page.wait_for_function("document.querySelectorAll('#train-runs li').length === 0")
        page.wait_for_selector(f"#model option[value='{model}']", state="detached")
        assert page.evaluate("document.querySelector('#model').value") == "hvass"
        assert page.locator("#train-delete").is_disabled()
    finally:
        context.close()
    assert not errors, errors


def test_train_tab_fits_a_phone(browser, server_url: str) -> None:
    context = browser.new_context(
        viewport={"width": 390, "height": 844}, has_touch=True, is_mobile=True
    )
    page = context.new_page()
    page.goto(server_url)
    page.wait_for_selector("body[data-ready='1']")
    page.click("button.tab[data-view='train-view']")
    page.wait_for_selector("#train-model option", state="attached")
    width = "Math.max(document.documentElement.scrollWidth, document.body.scrollWidth)"
    assert page.evaluate(width) <= 390
    assert page.locator("#train-start").is_visible()
    context.close()
