"""README screenshots: docs/screenshot.png, arithmetic, architecture, evaluation, embedding,
features, phone.

    python scripts/screenshot.py      # needs Debian's chromium

Starts `cnnscope serve` on a free port, draws a 7 with the mouse, waits for the answer.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

from playwright.sync_api import sync_playwright

# The repository root: test-only helpers (tests/support) are not part of the package.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.support.chromium import launch

DOCS = Path(__file__).resolve().parents[1] / "docs"
SEVEN = [(70, 60), (210, 60), (150, 160), (120, 240)]
IDLE = "document.body.dataset.idle === 'true'"  # no request in flight or scheduled


def main() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    exe = Path(sys.executable).with_name("cnnscope")
    server = subprocess.Popen([str(exe), "serve", "--port", str(port)], stdout=subprocess.DEVNULL)
    try:
        for _ in range(300):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.1)
        with sync_playwright() as p:
            browser = launch(p)
            for name, viewport, scale in (
                ("screenshot.png", {"width": 1440, "height": 900}, 1),
                ("phone.png", {"width": 390, "height": 844}, 2),
            ):
                page = browser.new_page(viewport=viewport, device_scale_factor=scale)
                page.goto(f"http://127.0.0.1:{port}/")
                page.wait_for_selector("body[data-ready='1']")
                box = page.locator("#pad").bounding_box()
                page.mouse.move(box["x"] + SEVEN[0][0], box["y"] + SEVEN[0][1])
                page.mouse.down()
                for x, y in SEVEN[1:]:
                    page.mouse.move(box["x"] + x, box["y"] + y, steps=12)
                page.mouse.up()
                page.wait_for_function(IDLE)  # the last stroke's answer is painted
                page.screenshot(path=str(DOCS / name), full_page=name == "phone.png")
                if name == "screenshot.png":
                    shoot_teaching(page)
                    page.select_option("#attr-method", "gradcam")
                    page.wait_for_function(
                        "document.querySelector('#attr-note').textContent.startsWith('gradcam')"
                    )
                    page.click("button.tab[data-view='eval-view']")
                    page.wait_for_selector("#confusion td", timeout=60_000)
                    page.click("#confusion td[data-true='9'][data-pred='4']")
                    page.wait_for_selector("#cell-gallery figure")
                    page.screenshot(path=str(DOCS / "evaluation.png"))
                    page.click("button.tab[data-view='embed-view']")
                    page.wait_for_function(
                        "document.querySelector('#embed-label').textContent.startsWith('step')"
                    )
                    page.locator("#embed-frame").fill("2")
                    page.wait_for_selector("#scatter:not([data-moving])")
                    page.screenshot(path=str(DOCS / "embedding.png"))
                    page.click("button.tab[data-view='feat-view']")
                    page.select_option("#feat-stage", "conv2")
                    page.wait_for_selector("#feat-gallery figure", timeout=60_000)
                    page.locator("#feat-gallery figure").nth(5).click()
                    page.wait_for_function(
                        "document.querySelectorAll('#feat-top figure').length === 9"
                    )
                    page.screenshot(path=str(DOCS / "features.png"))
                page.close()
            browser.close()
    finally:
        server.terminate()
        server.wait(timeout=10)


def shoot_teaching(page) -> None:
    """docs/arithmetic.png (how one conv1 value is computed) and docs/architecture.png."""
    grid = page.locator('canvas.grid[data-stage="conv1"]')
    box = grid.bounding_box()
    layout = grid.evaluate("(c) => c._layout")
    # conv1 map 5 where it responds most: ReLU lets it through, and the pooling window shows
    # whether its neighbours beat it.
    row, col = page.evaluate(
        """() => { const m = window.cnnscope.state.result.stages.conv1.maps[5];
            let k = 0; m.forEach((v, i) => { if (v > m[k]) k = i; });
            return [Math.floor(k / 28), k % 28]; }"""
    )
    x = (5 * (layout["tw"] + layout["gap"]) + col + 0.5) * box["width"] / layout["width"]
    y = (row + 0.5) * box["height"] / layout["height"]
    page.mouse.click(round(box["x"] + x), round(box["y"] + y))
    page.wait_for_selector('[data-panel="arithmetic"][data-channel]')
    page.locator('[data-panel="arithmetic"]').scroll_into_view_if_needed()
    page.locator("#arithmetic").screenshot(path=str(DOCS / "arithmetic.png"))
    page.keyboard.press("Escape")
    page.click("button.tab[data-view='arch-view']")
    page.wait_for_function("document.querySelector('#arch-status').textContent === ''")
    page.wait_for_function(IDLE)
    page.screenshot(path=str(DOCS / "architecture.png"))
    page.click("button.tab[data-view='draw-view']")


if __name__ == "__main__":
    main()
