"""`cnnscope data`."""

from __future__ import annotations

import json

from cnnscope.cli import main


def test_data_command(capsys) -> None:
    assert main(["data", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert (info["train"], info["validation"], info["test"]) == (55_000, 5_000, 10_000)
