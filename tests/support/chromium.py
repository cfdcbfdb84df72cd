"""How cnnscope's browser tests, benchmark and screenshots start Debian's Chromium.

Headless, no sandbox (CI runs as root), and no background networking: the machines here
have no internet, and Chromium's own update and sync traffic only fails there.
"""

from __future__ import annotations

from typing import Any

EXECUTABLE = "/usr/bin/chromium"
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def launch(playwright: Any) -> Any:
    """A headless Chromium browser from a ``sync_playwright()`` context."""
    return playwright.chromium.launch(executable_path=EXECUTABLE, headless=True, args=ARGS)
