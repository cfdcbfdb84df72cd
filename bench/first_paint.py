"""The page's first paint from a cold server, in Chromium, and what the views wait for.

Run: ``python bench/first_paint.py [--repeats 3]``. Each repeat starts ``cnnscope serve``
afresh (a cold process: models loaded, nothing computed or cached in memory), opens the
page in headless Chromium (Debian's, through Playwright, as the browser tests do) the
moment the URL is printed, and prints: the first contentful paint and the time until the
page says it is ready (``body[data-ready]``: models listed, the pad drawable), both from
the navigation's start; then the same page loaded again from the now warm server. With
``--views`` it also times, on the cold server, the first answer of the views that used to
wait: ``/api/evaluation/deep_mnist`` (cached on disk after the first run) and a top-examples
click (a lookup once the background index is ready; with ``--fresh-cache`` the index is
built while the page loads, and the click waits for that build).
"""

from __future__ import annotations

import argparse
import http.client
import statistics
import sys
import tempfile
import time
from pathlib import Path

# The repository root: test-only helpers (tests/support) are not part of the package.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.server import serve
from tests.support.chromium import launch

_PAINT = """() => {
  const fcp = performance.getEntriesByName('first-contentful-paint')[0];
  return fcp ? fcp.startTime : null;
}"""


def _get_ms(port: int, path: str) -> tuple[int, float]:
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    t0 = time.perf_counter()
    c.request("GET", path)
    r = c.getresponse()
    r.read()
    return r.status, (time.perf_counter() - t0) * 1000


def _load(page, url: str) -> tuple[float, float]:  # type: ignore[no-untyped-def]
    """(first contentful paint, ready) in ms from the navigation's start."""
    page.goto(url)
    page.wait_for_selector("body[data-ready='1']", timeout=60_000)
    ready = page.evaluate("() => performance.now()")
    fcp = page.evaluate(_PAINT)
    return float(fcp if fcp is not None else float("nan")), float(ready)


def main() -> None:
    from playwright.sync_api import sync_playwright

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--repeats", type=int, default=3, help="cold starts (3)")
    p.add_argument("--views", action="store_true", help="also time the slow views' answers")
    p.add_argument(
        "--fresh-cache",
        action="store_true",
        help="an empty disk cache: the server builds its indexes while the page loads",
    )
    args = p.parse_args()
    env = {}
    if args.fresh_cache:
        env["XDG_CACHE_HOME"] = tempfile.mkdtemp(prefix="cnnscope-bench-cache-")
    cold, warm = [], []
    with sync_playwright() as pw:
        browser = launch(pw)
        for r in range(args.repeats):
            # Up once it listens: the app is still being built when the page asks.
            with serve(env=env, ready="listening") as server:
                port = server.port
                url = server.url
                for into in (cold, warm):
                    page = browser.new_page(viewport={"width": 1440, "height": 900})
                    into.append(_load(page, url))
                    page.close()
                print(
                    f"start {r + 1}: cold server first paint {cold[-1][0]:.0f} ms, ready "
                    f"{cold[-1][1]:.0f} ms; warm {warm[-1][0]:.0f} / {warm[-1][1]:.0f} ms",
                    flush=True,
                )
                if args.views and r == 0:
                    status, ms = _get_ms(port, "/api/evaluation/deep_mnist")
                    _, ms2 = _get_ms(port, "/api/evaluation/deep_mnist")
                    print(f"evaluation: first {ms:.0f} ms ({status}), again {ms2:.1f} ms")
                    status, ms = _get_ms(port, "/api/top-examples/deep_mnist/fc1/7?k=9")
                    print(f"top examples, first click: {ms:.0f} ms ({status})")
                    status, ms = _get_ms(port, "/api/top-examples/deep_mnist/conv2/3?k=9")
                    print(f"top examples, another stage: {ms:.0f} ms ({status})")
        browser.close()
    fcp = statistics.median(c[0] for c in cold)
    ready = statistics.median(c[1] for c in cold)
    print(
        f"median of {args.repeats}: first paint {fcp:.0f} ms from a cold server "
        f"(warm {statistics.median(w[0] for w in warm):.0f} ms), page ready {ready:.0f} ms "
        f"(warm {statistics.median(w[1] for w in warm):.0f} ms)"
    )


if __name__ == "__main__":
    main()
