"""User errors: one line on stderr, exit status 2, never a traceback.

The walk below gives every subcommand bad values (unknown model or stage, numbers out of
range, missing and corrupt files); a bug would show as a traceback or another status.
"""

from __future__ import annotations

import gzip
import json
import struct
import zlib
from pathlib import Path

import pytest
from safetensors.torch import save_file

from cnnscope.cli import COMMANDS, main
from cnnscope.models import build_model


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header claims ``width``×``height`` pixels and that holds none."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b"")


def crafted_weights(path: Path, **config: object) -> Path:
    """hvass's tensors under a header that claims other options."""
    model = build_model("hvass")
    header = {"model": "hvass", "config": {**model.config(), **config}, "version": "0.1.0"}
    tensors = {k: v.contiguous() for k, v in model.state_dict().items()}
    save_file(tensors, str(path), metadata={"cnnscope": json.dumps(header)})
    return path


def _own_model_files(folder: Path) -> None:
    """A small model of the user's (own.py) and broken weights and code for it."""
    import torch

    (folder / "own.py").write_text(
        "import torch\nfrom torch import nn\n\n"
        "class Own(nn.Module):\n"
        "    def __init__(self):\n"
        "        super().__init__()\n"
        "        self.conv = nn.Conv2d(1, 2, 5, stride=4)\n"
        "        self.fc = nn.Linear(2 * 6 * 6, 3)\n\n"
        "    def forward(self, x):\n"
        "        return self.fc(torch.relu(self.conv(x)).flatten(1))\n"
    )
    (folder / "broken.py").write_text("undefined_name + 1\n")
    torch.save({"conv.weight": torch.zeros(2, 1, 3, 3)}, folder / "other.pt")
    torch.save([torch.zeros(1)], folder / "list.pt")
    torch.save(torch.nn.Linear(2, 2), folder / "pickled.pt")  # a pickled module, not a dict
    from cnnscope.checkpoints import save_weights
    from cnnscope.models import load_foreign

    save_weights(load_foreign("own.py:Own"), folder / "own.safetensors")  # run in folder


@pytest.fixture
def bad_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A folder of broken inputs; the tests run inside it."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "corrupt.safetensors").write_bytes(b"\x00" * 64)
    crafted_weights(tmp_path / "huge.safetensors", hidden=10_000_000)
    crafted_weights(tmp_path / "typed.safetensors", hidden="many")
    (tmp_path / "bomb.png").write_bytes(_png_header_only(100_000, 100_000))  # past Pillow's
    (tmp_path / "big.png").write_bytes(_png_header_only(5000, 5000))  # past cnnscope's
    (tmp_path / "text.png").write_text("not an image\n")
    truncated = tmp_path / "truncated"
    truncated.mkdir()
    for name in (
        "train-images-idx3-ubyte.gz",
        "train-labels-idx1-ubyte.gz",
        "t10k-images-idx3-ubyte.gz",
        "t10k-labels-idx1-ubyte.gz",
    ):
        with gzip.open(truncated / name, "wb") as f:  # magic says 3 dims, one follows
            f.write(struct.pack(">II", 0x0803, 60000))
    (tmp_path / "empty_run").mkdir()
    (tmp_path / "bad_run" / "snapshots").mkdir(parents=True)
    (tmp_path / "bad_run" / "snapshots" / "index.json").write_text("{}")
    torn = tmp_path / "torn_run" / "snapshots"
    torn.mkdir(parents=True)
    index = {"snapshots": [{"file": "s0.safetensors", "step": 0}], "stages": ["fc1"]}
    (torn / "index.json").write_text(json.dumps(index))
    (torn / "s0.safetensors").write_bytes(b"\x00" * 50)
    _own_model_files(tmp_path)
    (tmp_path / "state_run").mkdir()
    (tmp_path / "state_run" / "state.safetensors").write_bytes(b"\x00" * 64)
    return tmp_path


M = ["--model", "lenet5"]
CASES: list[tuple[list[str], str]] = [
    (["models", "--bogus"], "unrecognized arguments"),
    (["data", "--data-dir", "nowhere"], "nowhere: no such folder or .npz file"),
    (["data", "--data-dir", "truncated"], "truncated"),
    (["train", "--model", "resnet", "--dry-run"], "valid: deep_mnist, hvass"),
    (["train", "--dry-run", "--data-dir", "nowhere"], "nowhere: no such folder or .npz file"),
    (["train", "--dry-run", *M, "--batch-size", "0"], "batch_size"),
    (["train", "--dry-run", *M, "--lr", "-1"], "lr"),
    (["train", "--dry-run", *M, "--lr", "fast"], "--lr"),
    (["train", "--dry-run", *M, "--label-smoothing", "2"], "label_smoothing"),
    (["train", "--dry-run", *M, "--lr", "inf"], "not a finite number"),
    (["train", "--dry-run", *M, "--epochs", "nan"], "not a finite number"),
    (["train", "--dry-run", *M, "--snapshot-size", "-1"], "--snapshot-size: -1 is below 0"),
    (["train", "--dry-run", *M, "--run-dir", "text.png"], "--run-dir text.png is a file"),
    (["train", "--dry-run", *M, "--run-dir", "state_run", "--resume"], "state_run"),
    (["evaluate", "--model", "nonesuch"], "neither a model name"),
    (["evaluate", "--weights", "nope.safetensors"], "no such weights file"),
    (["evaluate", "--weights", "corrupt.safetensors"], "corrupt.safetensors"),
    (["evaluate", "--weights", "huge.safetensors"], "huge.safetensors"),
    (["evaluate", "--weights", "typed.safetensors"], "typed.safetensors"),
    (["evaluate", *M, "--data-dir", "nowhere"], "nowhere: no such folder or .npz file"),
    (["explain", *M, "--test-index", "10000", "--out", "o"], "outside 0–9999"),
    (["explain", *M, "--test-index", "5", "--target", "10", "--out", "o"], "outside 0–9"),
    (["explain", *M, "--image", "missing.png", "--out", "o"], "missing.png"),
    (["explain", *M, "--image", "text.png", "--out", "o"], "not a readable image"),
    (["explain", *M, "--image", "bomb.png", "--out", "o"], "pixels"),
    (["explain", *M, "--image", "big.png", "--out", "o"], "big.png: image exceeds the limit"),
    (["explain", *M, "--test-index", "1", "--layer", "conv9", "--out", "o"], "conv9"),
    (["explain", *M, "--test-index", "1", "--method", "magic", "--out", "o"], "--method"),
    (["peek", *M, "--test-index", "10000", "--out", "o"], "outside 0–9999"),
    (["peek", *M, "--image", "missing.png", "--out", "o"], "missing.png: no such image file"),
    (["peek", *M, "--image", "text.png", "--out", "o"], "not a readable image"),
    (["peek", *M, "--image", "bomb.png", "--out", "o"], "pixels"),
    (["peek", *M, "--test-index", "1", "--scale", "99", "--out", "o"], "--scale"),
    (["peek", "--model", "nonesuch", "--test-index", "1", "--out", "o"], "nonesuch"),
    (["peek", *M, "--test-index", "1", "--out", "text.png"], "--out text.png is a file"),
    (["peek", *M, "--test-index", "1", "--image", "x.png", "--out", "o"], "not allowed with"),
    (["peek", *M, "--out", "o"], "one of the arguments --image --test-index is required"),
    (["embed", "--run", "empty_run", "--out", "o"], "no snapshots"),
    (["embed", "--run", "bad_run", "--out", "o"], "bad_run"),
    (["embed", "--run", "torn_run", "--out", "o"], "torn_run/snapshots: not a readable"),
    (["embed", "--model", "nonesuch", "--out", "o"], "nonesuch"),
    (["embed", "--perplexity", "0", "--out", "o"], "--perplexity"),
    (["features", *M, "--layer", "conv9", "--out", "o"], "unknown stage 'conv9'"),
    (["features", *M, "--layer", "conv1", "--units", "0-99", "--out", "o"], "outside"),
    (["features", *M, "--layer", "conv1", "--units", "a", "--out", "o"], "--units"),
    (["features", *M, "--layer", "conv1", "--units", "3-1", "--out", "o"], "runs backwards"),
    (["features", *M, "--layer", "conv1", "--diversity", "nan", "--out", "o"], "--diversity"),
    (["features", *M, "--layer", "conv1", "--steps", "0", "--out", "o"], "steps"),
    (["features", *M, "--layer", "conv1", "--variants", "99", "--out", "o"], "variants"),
    (["features", *M, "--layer", "conv1", "--compare", "conv9:1", "--out", "o"], "conv9"),
    (["filters", *M, "--layer", "fc1", "--out", "o"], "no filters"),
    (["filters", *M, "--layer", "conv9", "--out", "o"], "conv9"),
    (["filters", *M, "--out", "text.png"], "--out text.png is a file"),
    (["top-examples", *M, "--layer", "conv9", "--unit", "0", "--out", "o"], "conv9"),
    (["top-examples", *M, "--layer", "fc1", "--unit", "999", "--out", "o"], "outside"),
    (["top-examples", *M, "--layer", "prob", "--unit", "1", "--out", "o"], "unknown stage"),
    (["top-examples", *M, "--layer", "fc1", "--unit", "0", "-k", "0", "--out", "o"], "-k"),
    (["unused", *M, "--layers", "conv9"], "unknown stage 'conv9'"),
    (["unused", *M, "--threshold", "-1"], "--threshold"),
    (["unused", "--weights", "huge.safetensors"], "hidden=10000000"),
    (["unused", *M, "--weights", "huge.safetensors"], "are for 'hvass', not for 'lenet5'"),
    (["serve", "--model", "nonesuch"], "valid: deep_mnist"),
    (["serve", *M, "--port", "70000"], "--port"),
    (["serve", *M, "--port", "-1"], "--port"),
    (["serve", *M, "--host", "no.such.host.invalid", "--port", "0"], "cannot listen on"),
    (["serve", *M, "--threads", "0"], "--threads"),
    (["serve", "--weights", "corrupt.safetensors"], "corrupt.safetensors"),
    (["export", *M, "--format", "gif", "--out", "o.gif"], "invalid choice: 'gif'"),
    (["export", *M, "--out", "empty_run"], "empty_run is a folder"),
    (["export", "--model", "nope.py:Net", "--out", "o.onnx"], "nope.py: no such Python file"),
    (["models", "--model", "own.py:Nope"], "own.py: has no 'Nope'; its nn.Module classes: Own"),
    (["models", "--model", "broken.py:Net"], "broken.py: importing it failed (NameError"),
    (["models", "--model", "own.py:Own", "--weights", "pickled.pt"], "holds Python objects"),
    (["models", "--model", "own.py:Own", "--weights", "list.pt"], "holds a list"),
    (["models", "--model", "own.py:Own", "--weights", "other.pt"], "missing conv.bias, fc.bias"),
    (["models", "--model", "own.py:Own", "--normalize", "0.1,0"], "std must be above 0"),
    (["models", "--model", "own.py:Own", "--input-size", "3"], "--input-size: 3 outside"),
    (["models", "--model", "own.py:Own", "--input-size", "5"], "forward pass failed on a"),
    (["models", "--model", "own.py:Own", "--model", "lenet5"], "give one model, not 2"),
    (["evaluate", *M, "--normalize", "0.1,0.3"], "--normalize and --input-size are for your"),
    (["evaluate", "--weights", "own.safetensors"], "--model own.py:Own --weights"),
    (["train", "--dry-run", *M, "--device", "tpu"], "--device 'tpu': not a device"),
    (["completion", "fish"], "invalid choice: 'fish'"),
    (["completion"], "the following arguments are required: shell"),
]


def test_the_walk_covers_every_command() -> None:
    assert {argv[0] for argv, _ in CASES} == set(COMMANDS)


@pytest.mark.parametrize(("argv", "message"), CASES, ids=[" ".join(a) for a, _ in CASES])
def test_bad_values_are_one_line_exit_2(argv, message, bad_files, capsys) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert len(err.strip().splitlines()) == 1, err
    # argparse names the command too, except for unrecognized arguments (the top parser's).
    assert err.startswith(("cnnscope: error: ", f"cnnscope {argv[0]}: error: ")), err
    assert message in err, err


@pytest.fixture(autouse=True)
def _no_server(monkeypatch: pytest.MonkeyPatch) -> None:
    """A case that gets past validation must not serve forever."""
    import uvicorn

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("serve started a server instead of refusing its input")

    monkeypatch.setattr(uvicorn, "run", refuse)
    monkeypatch.setattr(uvicorn.Server, "run", refuse)
