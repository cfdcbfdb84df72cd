"""Browser tests: one headless Debian Chromium per module, and the page-error list.

Per module, not per session: Playwright's sync API keeps an event loop running on the
main thread while it is open, and later tests that call ``asyncio.run`` then fail."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.chromium import EXECUTABLE, launch


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    if not Path(EXECUTABLE).exists():
        if os.environ.get("CI"):
            raise RuntimeError(f"{EXECUTABLE} missing: .ci/run installs Debian's chromium")
        pytest.skip(f"{EXECUTABLE} not installed (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = launch(p)
        yield b
        b.close()


@pytest.fixture
def errors() -> list[str]:
    """Console errors and uncaught exceptions of the page; none may be left at the end.

    A test that provokes an expected failed request removes its console line itself.
    """
    return []
