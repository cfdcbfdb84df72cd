"""README and docs screenshots: docs/screenshot.png, arithmetic, architecture, evaluation,
embedding, features, phone, train.

    python scripts/screenshot.py          # every shot; needs Debian's chromium
    python scripts/screenshot.py train    # only docs/train.png (or: draw, phone)

Starts `cnnscope serve` on a free port with a temporary runs folder, draws a 7 with the
mouse, waits for the answer. For docs/train.png it starts a short hvass run from the Train
tab, shoots it mid-run once the curves and the first filter strip are drawn, then stops it.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from playwright.sync_api import sync_playwright

# The repository root: test-only helpers (tests/support) are not part of the package.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.support.chromium import launch

DOCS = Path(__file__).resolve().parents[1] / "docs"
SEVEN = [(70, 60), (210, 60), (150, 160), (120, 240)]
IDLE = "document.body.dataset.idle === 'true'"  # no request in flight or scheduled


def main(shots: list[str]) -> None:
    shots = shots or ["draw", "phone", "train"]
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    runs = tempfile.TemporaryDirectory(prefix="cnnscope-runs-")
    # `python -m cnnscope`: the cnnscope this interpreter imports (PYTHONPATH=src included).
    server = subprocess.Popen(
        [sys.executable, "-m", "cnnscope", "serve", "--port", str(port), "--runs-dir", runs.name],
        stdout=subprocess.DEVNULL,
    )
    try:
        for _ in range(300):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.1)
        with sync_playwright() as p:
            browser = launch(p)
            for shot, name, viewport, scale in (
                ("draw", "screenshot.png", {"width": 1440, "height": 900}, 1),
                ("phone", "phone.png", {"width": 390, "height": 844}, 2),
            ):
                if shot not in shots:
                    continue
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
            if "train" in shots:
                shoot_train(browser, port)
            browser.close()
    finally:
        server.terminate()
        server.wait(timeout=30)
        runs.cleanup()


def shoot_train(browser, port: int) -> None:
    """docs/train.png: the Train tab mid-run (hvass, 600 steps), then Stop."""
    page = browser.new_page(viewport={"width": 1440, "height": 900})
    page.goto(f"http://127.0.0.1:{port}/")
    page.wait_for_selector("body[data-ready='1']")
    page.click("button.tab[data-view='train-view']")
    page.wait_for_selector("#train-model option[value='hvass']", state="attached")
    page.select_option("#train-model", "hvass")
    page.fill("#train-length", "600")
    page.fill("#train-seed", "0")
    page.click("#train-start")
    page.wait_for_selector("#train-status[data-status='running']", timeout=60_000)
    # Past the second checkpoint (every 100 steps from the page): two validation points,
    # a curve of several points and the first conv layer's filter strip.
    page.wait_for_function(
        "Number(document.querySelector('#train-acc').dataset.points) >= 2", timeout=300_000
    )
    page.wait_for_function(
        "Number(document.querySelector('#train-loss').dataset.points) >= 5", timeout=60_000
    )
    page.wait_for_function(
        "document.querySelectorAll('#train-filters canvas').length > 0", timeout=60_000
    )
    page.wait_for_timeout(500)  # the next progress event fills steps/s and the time left
    page.screenshot(
        path=str(DOCS / "train.png"), clip={"x": 0, "y": 0, "width": 1440, "height": 540}
    )
    page.click("#train-stop")
    page.wait_for_selector("#train-status[data-status='stopped']", timeout=60_000)
    page.close()


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
    main(sys.argv[1:])
