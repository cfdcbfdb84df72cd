"""`cnnscope peek`: each conv channel's conv → activation → pool maps, and the probabilities."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from cnnscope import load_model
from cnnscope.cli import main
from cnnscope.cli.peek import chains
from cnnscope.data import load_mnist
from cnnscope.models import stage_infos


def test_peek_maps_agree_with_the_model(tmp_path: Path, capsys) -> None:
    out = tmp_path / "p"
    assert main(["peek", "--test-index", "3", "--model", "lenet5", "--out", str(out)]) == 0
    payload = json.loads((out / "peek.json").read_text())
    assert payload["chains"] == {
        "conv1": ["conv1", "relu1", "pool1"],
        "conv2": ["conv2", "relu2", "pool2"],
    }
    # The probabilities are the model's own, for that test image.
    model, _ = load_model("lenet5")
    x = load_mnist().test_images[3].float()[None, None] / 255
    with torch.no_grad():
        expected = torch.softmax(model.eval()(x)[0], 0).numpy()
    np.testing.assert_allclose(payload["probabilities"], expected, atol=1e-5)
    assert payload["predicted"] == int(expected.argmax())
    # Each stage follows from the one before: ReLU, then 2×2 max pooling.
    stages = {k: torch.tensor(v["maps"]) for k, v in payload["stages"].items()}
    torch.testing.assert_close(stages["relu1"], stages["conv1"].clamp(min=0), atol=1e-5, rtol=0)
    pooled = F.max_pool2d(stages["relu2"][None], 2)[0]
    torch.testing.assert_close(stages["pool2"], pooled, atol=1e-5, rtol=0)
    assert payload["stages"]["pool1"]["kind"] == "pool"
    assert payload["stages"]["pool1"]["parent"] == "conv1"
    # One sheet per conv stage; six channels × three stages of 28×28 at scale 4.
    with Image.open(out / "peek-conv1.png") as sheet:
        assert sheet.width >= 3 * 28 * 4 and sheet.height >= 28 * 4
    assert {p.name for p in out.iterdir()} == {
        "peek-conv1.png",
        "peek-conv2.png",
        "probabilities.png",
        "peek.json",
    }
    text = capsys.readouterr().out
    assert "6 × conv1 → relu1 → pool1" in text and "16 × conv2 → relu2 → pool2" in text


def test_peek_an_image_file(tmp_path: Path, capsys) -> None:
    paper = np.full((120, 90), 255, np.uint8)
    paper[15:105, 40:50] = 0  # a 1, dark on light
    Image.fromarray(paper).save(tmp_path / "one.png")
    argv = ["peek", "--image", str(tmp_path / "one.png"), "--scale", "1", "--out", str(tmp_path)]
    assert main(argv) == 0
    assert json.loads((tmp_path / "peek.json").read_text())["predicted"] == 1
    assert "predicted 1" in capsys.readouterr().out


def test_chains_come_from_kinds_and_parents_not_names() -> None:
    """Renamed stages chain the same: only StageInfo's kind and parent are read."""
    model, _ = load_model("deep_mnist")
    infos = stage_infos(model)
    assert chains(infos) == {
        "conv1": ["conv1", "relu1", "pool1"],
        "conv2": ["conv2", "relu2", "pool2"],
    }
    from dataclasses import replace

    renamed = {f"s{i}": info for i, info in enumerate(infos.values())}
    old_to_new = {old: new for new, old in zip(renamed, infos, strict=True)}
    renamed = {
        k: replace(v, name=k, parent=old_to_new.get(v.parent) if v.parent else None)
        for k, v in renamed.items()
    }
    assert chains(renamed) == {"s0": ["s0", "s1", "s2"], "s3": ["s3", "s4", "s5"]}


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["peek", "--test-index", "10000"], "outside 0–9999"),
        (["peek", "--image", "missing.png"], "missing.png: no such image file"),
        (["peek", "--test-index", "1", "--scale", "0"], "--scale"),
    ],
)
def test_peek_errors(argv, message, tmp_path: Path, capsys, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert main([*argv, "--out", "o"]) == 2
    assert message in capsys.readouterr().err
