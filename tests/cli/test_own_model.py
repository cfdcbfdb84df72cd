"""Your own model through every command that takes --model: a .py file, weights as .pt
and as .safetensors, on small seeded data (quick settings)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from cnnscope.checkpoints import read_metadata
from cnnscope.cli import main
from cnnscope.models import load_foreign

SPEC = f"{Path(__file__).parents[1] / 'models' / 'unlike_ours.py'}:UnlikeOurs"
NORM = ["--normalize", "0.1307,0.3081"]


@pytest.fixture(scope="module")
def weights(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """UnlikeOurs's seeded weights, saved as a PyTorch state dict and as safetensors."""
    folder = tmp_path_factory.mktemp("own")
    torch.manual_seed(0)
    net = load_foreign(SPEC).net
    torch.save(net.state_dict(), folder / "w.pt")
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(folder / "w.st"))
    (folder / "w.st").rename(folder / "w.safetensors")
    return {"pt": folder / "w.pt", "safetensors": folder / "w.safetensors"}


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Small seeded IDX files: 5,000 validation images are held out of the training set."""
    from tests.conftest import make_idx_dir

    return make_idx_dir(tmp_path_factory.mktemp("data"), n_train=5_300, n_test=100)


def _json(capsys: pytest.CaptureFixture[str]) -> object:
    return json.loads(capsys.readouterr().out)


def test_models_prints_the_discovered_stages(capsys) -> None:
    assert main(["models", "--model", SPEC, *NORM, "--json"]) == 0
    out = _json(capsys)
    assert isinstance(out, dict)
    assert [s["name"] for s in out["stages"]][-3:] == ["head.fc1", "head.act", "head.fc"]
    assert out["classes"] == 10 and out["normalize"] == [0.1307, 0.3081]


@pytest.mark.parametrize("fmt", ["pt", "safetensors"])
def test_evaluate_with_both_weight_formats(fmt, weights, data: Path, capsys) -> None:
    argv = ["evaluate", "--model", SPEC, "--weights", str(weights[fmt]), *NORM]
    assert main([*argv, "--data-dir", str(data), "--json", "--device", "cpu"]) == 0
    out = _json(capsys)
    assert isinstance(out, dict) and out["weights"] == str(weights[fmt])
    assert len(out["confusion"]) == 10 and 0 <= out["accuracy"] <= 1


def test_explain_features_unused_top_examples(weights, data: Path, tmp_path: Path, capsys):
    own = ["--model", SPEC, "--weights", str(weights["pt"]), *NORM]
    data = ["--data-dir", str(data)]
    out = tmp_path / "out"
    explain = ["explain", *own, *data, "--test-index", "3", "--method", "gradcam"]
    assert main([*explain, "--out", str(out)]) == 0
    assert (out / "attribution.png").is_file()
    features = ["features", *own, "--layer", "features.4.act", "--units", "0-1", "--steps", "4"]
    assert main([*features, "--out", str(out)]) == 0
    assert (out / "features-features.4.act-regularized.png").is_file()
    assert main(["unused", *own, *data, "--layers", "head.fc1", "--json"]) == 0
    capsys.readouterr()
    top = ["top-examples", *own, *data, "--layer", "head.fc1", "--unit", "3", "-k", "2"]
    assert main([*top, "--out", str(out)]) == 0
    assert list(out.glob("top-*head.fc1*"))


def test_train_then_reload_then_embed(data: Path, tmp_path: Path, capsys) -> None:
    run = tmp_path / "run"
    argv = ["train", "--model", SPEC, *NORM, "--data-dir", str(data), "--run-dir", str(run)]
    quick = ["--steps", "6", "--batch-size", "16", "--log-every", "3", "--snapshot-size", "30"]
    assert main([*argv, *quick, "--json", "--device", "auto"]) == 0
    out = _json(capsys)
    assert isinstance(out, dict) and out["steps"] == 6
    meta = read_metadata(run / "model.safetensors")
    assert meta["model"] == "foreign" and meta["spec"] == SPEC
    assert meta["normalize"] == [0.1307, 0.3081]
    # The weights alone name the model but never import it: --model is required again.
    assert main(["evaluate", "--weights", str(run / "model.safetensors")]) == 2
    assert f"--model {SPEC} --weights" in capsys.readouterr().err
    evaluate = ["evaluate", "--model", SPEC, "--weights", str(run / "model.safetensors")]
    assert main([*evaluate, "--data-dir", str(data), "--json"]) == 0
    assert _json(capsys)["accuracy"] >= 0  # type: ignore[index]
    embed = ["embed", "--run", str(run), "--model", SPEC, "--method", "pca"]
    assert main([*embed, "--out", str(tmp_path / "embed")]) == 0
    assert json.loads((tmp_path / "embed" / "embedding.json").read_text())["frames"]


def test_two_models_pair_their_flags() -> None:
    import argparse

    from cnnscope.cli._common import add_model_flags, model_choices

    p = argparse.ArgumentParser()
    add_model_flags(p, many=True)
    first = ["--weights", "a.pt", "--model", "a.py:A", "--model", "lenet5"]
    last = ["--model", "b.py:B", "--normalize", "0.5,0.5", "--input-size", "32"]
    args = p.parse_args([*first, *last])
    got = [(c.model, c.weights, c.normalize, c.input_size) for c in model_choices(args)]
    assert got == [
        ("a.py:A", "a.pt", None, None),
        ("lenet5", None, None, None),
        ("b.py:B", None, (0.5, 0.5), (32, 32)),
    ]


def test_serve_lists_the_named_models_first(monkeypatch: pytest.MonkeyPatch) -> None:
    from cnnscope.checkpoints import bundled_models
    from cnnscope.cli import _parser
    from cnnscope.cli.serve import _model_choices

    args = _parser("serve").parse_args(["serve", "--model", SPEC, *NORM, "--model", "lenet5"])
    got = [c.model for c in _model_choices(args)]
    shipped = [n for n in bundled_models() if n != "lenet5"]
    assert got == [SPEC, "lenet5", *shipped]


@pytest.mark.filterwarnings("ignore:.*freshly initialised:RuntimeWarning")
def test_serve_takes_a_model_of_another_input_size(
    tmp_path: Path, capsys, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The page fits the drawing to the model's H×W, so serve no longer refuses 32×32."""
    import uvicorn

    (tmp_path / "wide.py").write_text(
        "from torch import nn\n\nclass Wide(nn.Sequential):\n    input_shape = (1, 32, 32)\n"
        "    def __init__(self):\n        super().__init__(nn.Flatten(), nn.Linear(1024, 3))\n"
    )
    monkeypatch.setattr(uvicorn.Server, "run", lambda self, sockets=None: None)  # no listening
    argv = ["serve", "--model", f"{tmp_path / 'wide.py'}:Wide", "--port", "0"]
    assert main(argv) == 0
    assert "serving Wide" in capsys.readouterr().out


def test_your_model_on_your_data(tmp_path: Path, capsys) -> None:
    """The two halves together: a 4-class factory trained and evaluated on a 4-class .npz
    with classes.txt; the weights record the class names."""
    from tests.support.shapes import NAMES, write_shapes

    data = write_shapes(tmp_path / "shapes")
    run = tmp_path / "run"
    spec = "tests.models.unlike_ours:four_classes"
    train = ["train", "--model", spec, "--data-dir", str(data), "--run-dir", str(run)]
    assert main([*train, "--steps", "60", "--batch-size", "32", "--snapshot-size", "0"]) == 0
    capsys.readouterr()
    evaluate = ["evaluate", "--model", spec, "--weights", str(run / "model.safetensors")]
    assert main([*evaluate, "--json"]) == 0  # the data set it was trained on, found again
    out = _json(capsys)
    assert isinstance(out, dict)
    assert len(out["confusion"]) == 4 and all(len(row) == 4 for row in out["confusion"])
    assert out["classes"] == list(NAMES)
    assert out["accuracy"] > 0.5  # chance is 0.25
    # explain --target takes the model's own classes: a name, or an index below 4
    weights = ["--weights", str(run / "model.safetensors"), "--test-index", "0"]
    explain = ["explain", "--model", spec, *weights, "--method", "saliency"]
    assert main([*explain, "--target", NAMES[3], "--out", str(tmp_path / "e")]) == 0
    attributions = json.loads((tmp_path / "e" / "attribution.json").read_text())
    assert attributions["attributions"][0]["target"] == 3
    capsys.readouterr()
    assert main([*explain, "--target", "4", "--out", str(tmp_path / "e")]) == 2
    assert "--target 4: outside 0–3 and not a class name" in capsys.readouterr().err


@pytest.mark.filterwarnings("default::RuntimeWarning")
def test_no_weights_is_a_warning(capsys) -> None:
    argv = ["export", "--model", SPEC, "--format", "torchscript", "--out", "/dev/null"]
    assert main(argv) == 0
    err = capsys.readouterr().err
    assert err.startswith("cnnscope export: warning: ") and "freshly initialised" in err


def test_train_seeds_your_own_models_fresh_weights(data: Path, tmp_path: Path, capsys) -> None:
    from cnnscope.checkpoints import open_model

    def trained(seed: int, name: str) -> dict[str, torch.Tensor]:
        run = tmp_path / name
        argv = ["train", "--model", SPEC, "--data-dir", str(data), "--run-dir", str(run)]
        quick = ["--steps", "1", "--batch-size", "8", "--snapshot-size", "0", "--json"]
        assert main([*argv, *quick, "--seed", str(seed), "--device", "cpu"]) == 0
        capsys.readouterr()
        model, _ = open_model(SPEC, run / "model.safetensors")
        return model.state_dict()

    a, b, c = trained(0, "a"), trained(0, "b"), trained(1, "c")
    assert all(torch.equal(a[k], b[k]) for k in a)  # --seed alone decides the start
    assert not torch.equal(a["net.head.fc.weight"], c["net.head.fc.weight"])
