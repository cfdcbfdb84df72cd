"""The page on a 4-class model of the shapes data set: four named bars, a 4×4 matrix."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from cnnscope.models import build_model
from cnnscope.server.app import ServedModel, create_app
from tests.e2e.test_page import _IDLE, ARTIFACTS
from tests.support.live import serving
from tests.support.shapes import NAMES, write_shapes

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def shapes_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A seeded lenet5 with 4 outputs (untrained: the page only has to show 4 classes)."""
    folder = write_shapes(tmp_path_factory.mktemp("page") / "shapes")
    model = build_model("lenet5", num_classes=4).eval()
    meta = {"classes": list(NAMES), "data": {"source": str(folder / "shapes.npz")}}
    app = create_app([ServedModel("shapes", model, meta, "test")], data_dir=str(folder), seed=0)
    with serving(app) as url:
        yield url


def test_four_named_bars_and_a_four_by_four_matrix(browser, shapes_url, errors) -> None:
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.goto(shapes_url)
    page.wait_for_selector("body[data-ready='1']", timeout=15_000)
    page.click("#random")
    page.wait_for_function("document.querySelector('#digit-note').textContent.includes('label')")
    page.wait_for_function(_IDLE, timeout=30_000)
    assert page.locator(".bar").count() == 4
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "four-named-bars.png"))
    assert page.locator(".bar .name").all_inner_texts() == list(NAMES)
    label = page.locator("#digit-note").inner_text().rsplit(" ", 1)[1]
    assert label in NAMES  # the test image's label, by name
    targets = page.locator("#attr-target option").all_inner_texts()
    assert targets == ["top class", *(f"{k}: {n}" for k, n in enumerate(NAMES))]

    page.click("button.tab[data-view='eval-view']")
    page.wait_for_selector("#confusion td", timeout=60_000)
    assert page.locator("#confusion td").count() == 16
    heads = page.locator("#confusion tr").first.locator("th").all_inner_texts()
    assert heads == ["", *NAMES]
    assert page.locator("#per-class tr").count() == 5
    assert page.locator("#per-class tr td:first-child").all_inner_texts() == list(NAMES)
    assert "in 80)" in page.locator("#eval-summary").inner_text()  # the shapes' test set
    # The fullest cell opens its images, titled by class names.
    count, true, pred = page.evaluate(
        """() => [...document.querySelectorAll('#confusion td')]
            .map((td) => [Number(td.textContent || 0), td.dataset.true, td.dataset.pred])
            .sort((a, b) => b[0] - a[0])[0]"""
    )
    page.click(f"#confusion td[data-true='{true}'][data-pred='{pred}']")
    page.wait_for_function(
        f"document.querySelectorAll('#cell-gallery figure').length === {min(count, 80)}"
    )
    title = page.locator("#cell-title").inner_text()
    assert title.startswith(f"{count} {NAMES[int(true)]}s"), title
    context.close()
    assert not errors, errors
