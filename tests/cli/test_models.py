"""`cnnscope models`."""

from __future__ import annotations

import json

from cnnscope.cli import main


def test_models_json(capsys) -> None:
    assert main(["models", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["name"] for r in rows] == ["deep_mnist", "hvass", "single_conv", "lenet5", "best"]
    deep = rows[0]
    assert deep["stages"]["pool2"] == [64, 7, 7] and deep["parameters"] == 3_274_634
    assert deep["shipped_test_accuracy"] >= 0.992
