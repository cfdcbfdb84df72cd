"""`cnnscope explain`: test images, image files, bad values."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cnnscope.cli import main


def test_explain_test_index_and_image_file(tmp_path: Path, capsys) -> None:
    import numpy as np
    from PIL import Image

    out = tmp_path / "x"
    assert main(["explain", "--test-index", "0", "--method", "saliency", "--out", str(out)]) == 0
    payload = json.loads((out / "attribution.json").read_text())
    assert payload["attributions"][0]["method"] == "saliency"
    assert np.array(payload["attributions"][0]["map"]).shape == (28, 28)
    # A scan: dark ink on white paper, large. It is inverted and preprocessed.
    paper = np.full((200, 150), 255, np.uint8)
    paper[30:170, 70:80] = 0  # a 1
    Image.fromarray(paper).save(tmp_path / "one.png")
    assert (
        main(
            [
                "explain",
                "--image",
                str(tmp_path / "one.png"),
                "--method",
                "gradcam",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    assert "predicted 1" in capsys.readouterr().out
    assert (out / "attribution.png").exists()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["explain", "--test-index", "5", "--target", "10"], "outside 0–9"),
        (["explain", "--test-index", "10000"], "outside 0–9999"),
        (["explain", "--image", "missing.png"], "not a readable image"),
    ],
)
def test_explain_errors(argv, message, tmp_path: Path, capsys, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert main([*argv, "--out", "o"]) == 2
    assert message in capsys.readouterr().err
