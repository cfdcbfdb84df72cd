"""mkdocs hook: the command-line reference, generated from the argparse parsers.

``docs/cli.md`` holds the marker ``<!-- cli-reference -->``; this hook replaces it with
``cnnscope --help`` and ``cnnscope COMMAND --help`` for every command registered in
``cnnscope.cli.COMMANDS``, so the page cannot drift from the flags.
"""

from __future__ import annotations

import contextlib
import io
import os
import sys
from pathlib import Path
from typing import Any

MARKER = "<!-- cli-reference -->"
SRC = Path(__file__).resolve().parents[2] / "src"


def _help(argv: list[str]) -> str:
    from cnnscope.cli import main

    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.suppress(SystemExit):
        main([*argv, "--help"])
    return out.getvalue().rstrip()


def reference() -> str:
    """Markdown: the top-level help, then one section per command."""
    if str(SRC) not in sys.path:
        sys.path.insert(0, str(SRC))
    from cnnscope.cli import COMMANDS

    columns = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = "100"  # argparse wraps to the terminal: fix it for stable pages
    try:
        parts = ["```text", _help([]), "```"]
        for name in COMMANDS:
            parts += ["", f"## cnnscope {name}", "", "```text", _help([name]), "```"]
    finally:
        if columns is None:
            del os.environ["COLUMNS"]
        else:
            os.environ["COLUMNS"] = columns
    return "\n".join(parts)


def on_page_markdown(markdown: str, page: Any, **_: Any) -> str:
    if MARKER not in markdown:
        return markdown
    return markdown.replace(MARKER, reference())
