"""Models of another input size in the page: 32×32 (3 classes) and 20×24 (4 classes)
served beside lenet5; the drawing and the test digits are fitted to each model's H×W."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from cnnscope.cli._common import ModelChoice
from cnnscope.models import load_foreign
from cnnscope.server.app import create_app, served_models
from tests.e2e.test_page import SEVEN, _draw, _idle, _stages_lit
from tests.support.live import serving

pytestmark = pytest.mark.browser

FILE = Path(__file__).parents[1] / "models" / "other_sizes.py"


@pytest.fixture(scope="module")
def sized_url(mnist, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    folder = tmp_path_factory.mktemp("sizes")
    choices = []
    for name in ("Wide32", "Tall20x24"):
        torch.manual_seed(0)
        torch.save(load_foreign(f"{FILE}:{name}").net.state_dict(), folder / f"{name}.pt")
        choices.append(ModelChoice(f"{FILE}:{name}", str(folder / f"{name}.pt")))
    models = served_models([*choices, ModelChoice("lenet5")])
    with serving(create_app(models, data=mnist, seed=0)) as url:
        yield url


def _seen_size(page) -> list[int]:
    return page.evaluate(
        "(() => { const c = document.querySelector('#seen'); return [c.height, c.width]; })()"
    )


def _switch(page, model: str) -> None:
    page.select_option("#model", model)
    page.wait_for_function(f"document.querySelector('#status').textContent.startsWith('{model}: ')")
    _idle(page)


def test_draw_on_models_of_other_sizes(browser, sized_url) -> None:
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    errors: list[str] = []
    failed: list[str] = []
    sent: list[dict[str, object]] = []  # /api/predict bodies, to see pixels vs png
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("response", lambda r: failed.append(f"{r.status} {r.url}") if r.status >= 400 else None)
    page.on(
        "request",
        lambda r: sent.append(json.loads(r.post_data or "{}")) if "api/predict" in r.url else None,
    )
    page.goto(sized_url)
    page.wait_for_selector("body[data-ready='1']", timeout=15_000)
    assert page.locator("#model").input_value() == "Wide32"
    info = {m["id"]: m for m in page.evaluate("window.cnnscope.state.models")}
    assert info["Wide32"]["input_shape"] == [1, 32, 32]

    _draw(page, SEVEN)
    _idle(page)
    assert page.locator("#status").inner_text().startswith("Wide32: ")
    assert page.locator(".bar").count() == 3  # its three classes
    assert _seen_size(page) == [32, 32]
    lit = _stages_lit(page)
    assert {"conv1", "pool1", "conv2", "pool2", "fc"} <= set(lit) and all(lit.values()), lit
    assert "centred in 32×32" in page.locator("#seen-what").inner_text()
    page.select_option("#attr-method", "saliency")
    _idle(page)
    assert page.locator("#attr-note").inner_text().startswith("saliency for class")
    size = page.evaluate(
        "(() => { const c = document.querySelector('#attr'); return [c.height, c.width]; })()"
    )
    assert size == [32, 32]

    _switch(page, "Tall20x24")  # the same drawing, fitted to 20 rows × 24 columns
    assert page.locator(".bar").count() == 4
    assert _seen_size(page) == [20, 24]
    assert all(_stages_lit(page).values())

    # A test digit is 28×28 (MNIST): sent as pixels to lenet5, as a PNG to the others.
    _switch(page, "lenet5")
    sent.clear()
    page.click("#random")
    page.wait_for_function("document.querySelector('#digit-note').textContent.includes('label')")
    _idle(page)
    assert sent and all("pixels" in b and len(b["pixels"]) == 784 for b in sent)
    sent.clear()
    _switch(page, "Wide32")
    assert sent and all("png" in b and "pixels" not in b for b in sent)
    assert _seen_size(page) == [32, 32] and all(_stages_lit(page).values())

    page.click("button.tab[data-view='arch-view']")
    _idle(page)
    box = page.locator(".arch-box[data-stage='input']")
    assert box.locator(".shape").inner_text() == "1×32×32"
    page.wait_for_function(
        "document.querySelector('#arch-total').textContent.includes('parameters')"
    )
    assert "the boxes count" not in page.locator("#arch-total").inner_text()  # counts agree
    context.close()
    assert not errors, errors
    assert not failed, failed
