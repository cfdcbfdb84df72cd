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
        (["explain", "--image", "missing.png"], "missing.png: no such image file"),
        (["explain", "--image", "."], "no such image file"),
    ],
)
def test_explain_errors(argv, message, tmp_path: Path, capsys, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert main([*argv, "--out", "o"]) == 2
    assert message in capsys.readouterr().err


def test_explain_image_file_28x28_is_taken_as_is_or_inverted(tmp_path: Path, capsys) -> None:
    """A 28×28 test digit saved as PNG reads back as the same input, on either paper."""
    import numpy as np
    from PIL import Image

    from cnnscope.data import load_mnist

    digit = load_mnist().test_images[0].numpy()  # (28, 28) uint8, white ink on black
    Image.fromarray(digit).save(tmp_path / "white.png")
    Image.fromarray(255 - digit).save(tmp_path / "dark.png")
    inputs = {}
    for source in ("--test-index=0", f"--image={tmp_path / 'white.png'}"):
        out = tmp_path / source.split("=")[0].strip("-")
        assert main(["explain", source, "--method", "saliency", "--out", str(out)]) == 0
        inputs[source] = np.array(json.loads((out / "attribution.json").read_text())["input"])
    out = tmp_path / "dark"
    argv = ["explain", f"--image={tmp_path / 'dark.png'}", "--method", "saliency"]
    assert main([*argv, "--out", str(out)]) == 0
    dark = np.array(json.loads((out / "attribution.json").read_text())["input"])
    reference = inputs["--test-index=0"]
    assert np.array_equal(inputs[f"--image={tmp_path / 'white.png'}"], reference)
    np.testing.assert_allclose(dark, reference, atol=1e-3)


def test_gradcam_defaults_to_the_models_last_conv(tmp_path) -> None:
    # `--layer` defaulted to conv2, which single_conv lacks: every method failed.
    from cnnscope.cli import main

    argv = ["explain", "--model", "single_conv", "--test-index", "0", "--out", str(tmp_path)]
    assert main([*argv, "--method", "gradcam"]) == 0
    assert main([*argv, "--method", "saliency"]) == 0


def test_a_bold_digit_on_black_is_not_inverted(tmp_path) -> None:
    # The CLI had its own rule (mean > 0.5 → dark ink on paper): a bold white digit on a
    # black field was inverted. The drawing path's rule reads the border instead.
    import argparse

    import numpy as np
    from PIL import Image

    from cnnscope.cli._common import input_image

    bold = np.zeros((28, 28), np.uint8)
    bold[2:26, 3:25] = 255  # most of the field is ink, the border is black
    path = tmp_path / "bold.png"
    Image.fromarray(bold).save(path)
    image, _ = input_image(argparse.Namespace(image=str(path), test_index=None, data_dir=None))
    assert image[0, 0] == 0.0 and image[14, 14] == 1.0
    Image.fromarray(255 - bold).save(path)  # the same on white paper is inverted
    image, _ = input_image(argparse.Namespace(image=str(path), test_index=None, data_dir=None))
    assert image[0, 0] == 0.0 and image[14, 14] == 1.0


@pytest.mark.parametrize(("name", "size"), [("Wide32", (32, 32)), ("Tall20x24", (20, 24))])
def test_explain_and_peek_a_model_of_another_size(name, size, tmp_path: Path, capsys) -> None:
    """--image is fitted to the model's H×W; --test-index (28×28 MNIST) too, and says so."""
    import numpy as np
    import torch
    from PIL import Image

    from cnnscope.models import load_foreign

    spec = f"{Path(__file__).parents[1] / 'models' / 'other_sizes.py'}:{name}"
    torch.manual_seed(0)
    torch.save(load_foreign(spec).net.state_dict(), tmp_path / "w.pt")
    paper = np.full((200, 150), 255, np.uint8)
    paper[30:170, 70:80] = 0  # a 1, dark on white
    Image.fromarray(paper).save(tmp_path / "one.png")
    m = ["--model", spec, "--weights", str(tmp_path / "w.pt")]
    out = tmp_path / "x"
    argv = ["explain", *m, "--image", str(tmp_path / "one.png"), "--out", str(out)]
    assert main([*argv, "--method", "saliency"]) == 0
    payload = json.loads((out / "attribution.json").read_text())
    assert np.array(payload["input"]).shape == size
    assert np.array(payload["attributions"][0]["map"]).shape == size
    assert len(payload["probabilities"]) == {"Wide32": 3, "Tall20x24": 4}[name]
    assert main(["peek", *m, "--test-index", "0", "--out", str(out)]) == 0
    assert f"28×28 fitted to {size[0]}×{size[1]}" in capsys.readouterr().out
    peek = json.loads((out / "peek.json").read_text())
    assert np.array(peek["input"]).shape == size
    assert peek["stages"]["conv1"]["shape"] == [4, *size]
