"""Your own model in the page: picked in the model menu, drawn on, every tab visited."""

from __future__ import annotations

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

SPEC = f"{Path(__file__).parents[1] / 'models' / 'unlike_ours.py'}:UnlikeOurs"


@pytest.fixture(scope="module")
def own_url(mnist, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    folder = tmp_path_factory.mktemp("own")
    torch.manual_seed(0)
    torch.save(load_foreign(SPEC).net.state_dict(), folder / "w.pt")
    models = served_models(
        [ModelChoice(SPEC, str(folder / "w.pt"), (0.1307, 0.3081)), ModelChoice("lenet5")]
    )
    with serving(create_app(models, data=mnist, seed=0)) as url:
        yield url


def test_own_model_is_the_default_and_every_tab_works(browser, own_url) -> None:
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    errors: list[str] = []
    failed: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("response", lambda r: failed.append(f"{r.status} {r.url}") if r.status >= 400 else None)
    page.goto(own_url)
    page.wait_for_selector("body[data-ready='1']", timeout=15_000)
    assert page.locator("#model").input_value() == "UnlikeOurs"
    info = page.evaluate("window.cnnscope.state.models")[0]
    _draw(page, SEVEN)
    _idle(page)
    assert page.locator("#status").inner_text().startswith("UnlikeOurs: ")
    lit = _stages_lit(page)
    assert "features.0" in lit and "head.fc" in lit, lit
    shown = [s["name"] for s in info["stages"] if s["kind"] != "act" or not s["parent"]]
    assert list(lit) == shown and all(lit.values()), lit
    page.select_option("#attr-method", "saliency")
    _idle(page)
    assert page.locator("#attr-note").inner_text().startswith("saliency for class")
    page.click("button.tab[data-view='eval-view']")
    _idle(page, timeout=120_000)
    assert page.locator("#eval-summary").inner_text().startswith("UnlikeOurs: test accuracy")
    page.click("button.tab[data-view='feat-view']")
    _idle(page)
    assert page.locator("#feat-status").inner_text()
    page.click("button.tab[data-view='embed-view']")
    _idle(page, timeout=60_000)
    page.click("button.tab[data-view='arch-view']")
    _idle(page)
    assert page.locator(".arch-box[data-stage='features.4.conv']").count() == 1
    context.close()
    assert not errors, errors
    assert not failed, failed
