"""Weights on disk: safetensors for tensors, JSON for what they are. Never pickle.

Two kinds of file:

* **Weights** (``NAME.safetensors`` + ``NAME.json``): what a user loads. The safetensors
  header names the architecture and its options, so the file alone can be rebuilt; the
  JSON beside it holds the rest (metrics, data checksum, cnnscope version, creation time,
  the training config) and the SHA-256 of the weights it describes.
* **Training state** (``state.safetensors``): model, optimizer and RNG tensors plus the
  scheduler and loop position as JSON in the header, everything ``--resume`` needs in one
  file.

Every write goes to a temporary file in the same folder and is renamed over the target,
so a crash mid-write leaves the previous file whole.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import math
import os
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from . import __version__
from ._io import atomic_write, atomic_write_text
from .models import (
    MODELS,
    Adapted,
    StagedModel,
    get_spec,
    is_foreign_spec,
    load_foreign,
    state_mismatch,
)
from .store import shipped

__all__ = [
    "CheckpointError",
    "bundled_models",
    "bundled_path",
    "load_training_state",
    "load_weights",
    "open_model",
    "read_metadata",
    "save_training_state",
    "save_weights",
]

_HEADER_KEY = "cnnscope"
# The built-in architectures' options are layer widths (int) and rates (float); a width
# beyond this is a crafted or damaged header, not a model (fc1 alone would need > 4 GB).
_MAX_WIDTH = 1 << 16
_FLOAT_DTYPES = ("F16", "BF16", "F32", "F64")
_INT_DTYPES = ("I64", "I32", "I16", "I8", "U8")  # only where the model's own is an integer
_FIX = "re-run `cnnscope train` or restore the file"


class CheckpointError(RuntimeError):
    """A checkpoint is missing, corrupt or for another architecture; the message says why."""


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _sidecar(path: Path) -> Path:
    return path.with_suffix(".json")


def _now() -> str:
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")


def save_weights(
    model: StagedModel,
    path: str | os.PathLike[str],
    metadata: dict[str, Any] | None = None,
    *,
    dtype: torch.dtype | None = None,
) -> Path:
    """Write ``model``'s weights to ``path`` (``.safetensors``) and metadata beside it.

    Parameters
    ----------
    model
        A model built by :func:`cnnscope.models.build_model`.
    path
        Target file; the JSON metadata goes to the same name with ``.json``.
    metadata
        Extra fields for the JSON (metrics, training config, data checksum…).
    dtype
        Store tensors in this dtype (``torch.float16`` halves the size); loading always
        returns float32.

    Returns
    -------
    Path
        The safetensors file.
    """
    path = Path(path)
    if path.suffix != ".safetensors":
        raise ValueError(f"{path}: weights files end in .safetensors")
    # Your own model's weights are saved under its own names (net.state_dict()), so that
    # `model.load_state_dict(safetensors.torch.load_file(path))` works in your code too.
    own = model.net if isinstance(model, Adapted) else model
    tensors = {
        # dtype applies to the floating-point tensors; counts (BatchNorm's batches) stay ints
        k: (v.detach().to(dtype) if dtype is not None and v.is_floating_point() else v.detach())
        .contiguous()
        .cpu()
        for k, v in own.state_dict().items()
    }
    header: dict[str, Any] = (
        {**model.header(), "version": __version__}
        if isinstance(model, Adapted)
        else {"model": model.arch, "config": model.config(), "version": __version__}
    )
    atomic_write(
        path,
        lambda tmp: save_file(tensors, str(tmp), metadata={_HEADER_KEY: json.dumps(header)}),
    )
    meta = {
        **header,
        "created_at": _now(),
        "dtype": str(
            next((t for t in tensors.values() if t.is_floating_point()), torch.empty(0)).dtype
        ).removeprefix("torch."),
        **(metadata or {}),
        "weights_file": path.name,
        "weights_sha256": _sha256(path),
    }
    atomic_write_text(_sidecar(path), json.dumps(meta, indent=2) + "\n")
    return path


def _read_header(path: Path) -> dict[str, Any]:
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            header = (f.metadata() or {}).get(_HEADER_KEY)
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(
            f"{path}: not a readable safetensors file ({e}). It is corrupt or truncated; "
            "re-run `cnnscope train` or restore the file."
        ) from e
    if header is None:
        raise CheckpointError(
            f"{path}: a safetensors file without cnnscope metadata; it was not written by "
            "cnnscope, so its architecture is unknown."
        )
    try:
        parsed = json.loads(header)
    except json.JSONDecodeError as e:
        raise CheckpointError(f"{path}: its cnnscope header is not JSON ({e}); {_FIX}.") from e
    if not isinstance(parsed, dict):
        raise CheckpointError(f"{path}: its cnnscope header is not a JSON object; {_FIX}.")
    return parsed


def _check_options(path: Path, arch: str, config: Any) -> dict[str, Any]:
    """The header's options, checked (names, types, ranges) before anything is built."""
    if not isinstance(config, dict):
        raise CheckpointError(f"{path}: header 'config' is not a JSON object; {_FIX}.")
    defaults = get_spec(arch).defaults
    problems = []
    for key, value in config.items():
        default = defaults.get(key)
        if key not in defaults:
            problems.append(f"unknown option {key!r} (valid: {', '.join(defaults) or 'none'})")
        elif isinstance(default, int) and not isinstance(default, bool):
            if type(value) is not int:
                problems.append(f"{key}={value!r} is not an integer")
            elif not 1 <= value <= _MAX_WIDTH:
                problems.append(f"{key}={value} outside 1–{_MAX_WIDTH}")
        elif isinstance(default, float):
            if type(value) not in (int, float) or not math.isfinite(value):
                problems.append(f"{key}={value!r} is not a number")
            elif not 0 <= value <= 1:
                problems.append(f"{key}={value} outside 0–1")
        elif type(value) is not type(default):
            problems.append(f"{key}={value!r} is not a {type(default).__name__}")
    if problems:
        raise CheckpointError(
            f"{path}: header options for {arch!r} are invalid: {'; '.join(problems)}; {_FIX}."
        )
    return config


def _check_tensors(path: Path, arch: str, config: dict[str, Any]) -> None:
    """The file's tensor names, shapes and dtypes against ``arch`` built on the meta device.

    Nothing is allocated: a meta model has shapes but no storage, and the file's tensors
    are read from its header only.
    """
    from safetensors import safe_open

    try:
        with torch.device("meta"):
            skeleton = get_spec(arch).build(**config)
    except (ValueError, TypeError, RuntimeError) as e:
        raise CheckpointError(f"{path}: header options do not build {arch!r} ({e}); {_FIX}.") from e
    try:
        with safe_open(str(path), framework="pt") as f:
            slices = {k: f.get_slice(k) for k in f.keys()}  # noqa: SIM118 - not a dict
            found = {k: tuple(s.get_shape()) for k, s in slices.items()}
            dtypes = {k: s.get_dtype() for k, s in slices.items()}
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(f"{path}: unreadable tensor index ({e}); {_FIX}.") from e
    own = skeleton.state_dict()
    # A count such as BatchNorm's num_batches_tracked is an integer; everything else floats.
    counts = {k for k, v in own.items() if not v.is_floating_point()}
    odd = sorted(
        k
        for k, dtype in dtypes.items()
        if dtype not in _FLOAT_DTYPES and not (k in counts and dtype in _INT_DTYPES)
    )
    if odd:
        raise CheckpointError(f"{path}: tensors {', '.join(odd)} are not floating point; {_FIX}.")
    expected = {k: tuple(v.shape) for k, v in own.items()}
    _check_shapes(path, arch, expected, found)


def _check_shapes(
    path: Path, arch: str, own: dict[str, tuple[int, ...]], found: dict[str, tuple[int, ...]]
) -> None:
    details = state_mismatch(own, found)
    if details:
        raise CheckpointError(
            f"{path}: tensors do not fit architecture {arch!r}: {details}. The file was not "
            f"written for this architecture or was altered; {_FIX}."
        )


def read_metadata(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The JSON metadata of a weights file (or just its header if the JSON is missing)."""
    path = Path(path)
    sidecar = _sidecar(path)
    if sidecar.exists():
        try:
            meta = json.loads(sidecar.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise CheckpointError(
                f"{sidecar}: invalid JSON ({e}). Delete it to fall back on the metadata "
                f"inside {path.name}, or restore it."
            ) from e
        if not isinstance(meta, dict):
            raise CheckpointError(
                f"{sidecar}: not a JSON object. Delete it to fall back on the metadata "
                f"inside {path.name}, or restore it."
            )
        return meta
    return _read_header(path)


def load_weights(
    path: str | os.PathLike[str], *, expect: str | None = None
) -> tuple[StagedModel, dict[str, Any]]:
    """Rebuild the model a weights file was made for and load its weights (float32, eval).

    The whole header is checked before anything is allocated: the options' names, types
    and ranges, then the file's tensor names and shapes against the architecture built on
    the ``meta`` device. A crafted or damaged file raises :class:`CheckpointError`.

    Parameters
    ----------
    path
        A ``.safetensors`` file written by :func:`save_weights`.
    expect
        If given, the architecture the caller wants; weights made for another one raise
        :class:`CheckpointError` naming both.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such weights file.")
    header = _read_header(path)
    arch = header.get("model")
    if arch == "foreign":
        spec = header.get("spec")
        raise CheckpointError(
            f"{path}: weights of your own model {spec!r}; load them with --model {spec} "
            f"--weights {path} (cnnscope never imports code named inside a weights file)."
        )
    if not isinstance(arch, str) or arch not in MODELS:
        raise CheckpointError(
            f"{path}: made for architecture {arch!r}, which this cnnscope "
            f"({__version__}) does not know; known: {', '.join(MODELS)}."
        )
    if expect is not None and arch != expect:
        raise CheckpointError(f"{path}: weights are for {arch!r}, not for {expect!r}.")
    meta = read_metadata(path)
    if meta.get("weights_sha256") not in (None, _sha256(path)):
        raise CheckpointError(
            f"{path}: its SHA-256 does not match {_sidecar(path).name}; the two files come "
            "from different saves (an interrupted copy?). Restore both from the same run."
        )
    config = _check_options(path, arch, header.get("config", {}))
    _check_tensors(path, arch, config)
    model = get_spec(arch).build(**config)
    try:
        state = load_file(str(path))
    except (SafetensorError, OSError) as e:
        raise CheckpointError(f"{path}: corrupt safetensors data ({e}).") from e
    _load_state(
        model, {k: v.float() if v.is_floating_point() else v for k, v in state.items()}, path
    )
    model.eval()
    return model, meta


def _foreign_defaults(path: Path) -> dict[str, Any]:
    """Input shape and normalization recorded by ``save_weights`` in a file of ours."""
    if path.suffix != ".safetensors":
        return {}
    try:
        header = _read_header(path)
    except CheckpointError:
        return {}  # a plain safetensors state dict: nothing recorded
    if header.get("model") != "foreign":
        return {}
    out: dict[str, Any] = {}
    shape, norm = header.get("input_shape"), header.get("normalize")
    if isinstance(shape, list) and len(shape) == 3 and all(type(v) is int for v in shape):
        out["input_shape"] = tuple(shape)
    if isinstance(norm, list) and len(norm) == 2 and all(type(v) in (int, float) for v in norm):
        out["normalize"] = (float(norm[0]), float(norm[1]))
    return out


def open_model(
    model: str | None = None,
    weights: str | os.PathLike[str] | None = None,
    *,
    normalize: tuple[float, float] | None = None,
    input_size: tuple[int, int] | None = None,
) -> tuple[StagedModel, dict[str, Any]]:
    """The one way to load a model: built-in or your own, with or without weights.

    Parameters
    ----------
    model
        A built-in name (``deep_mnist``), or your own model as ``path/to/file.py:Class``
        or ``package.module:Class`` (a class or a zero-argument factory). ``None`` with
        ``weights``: a weights file written by ``cnnscope train`` for a built-in.
    weights
        Built-in: a ``.safetensors`` file of that architecture (default: the shipped
        weights). Your own model: ``.safetensors`` or a ``.pt``/``.pth`` state dict
        (read with ``torch.load(weights_only=True)``); without it, fresh weights.
    normalize
        ``(mean, std)`` your model was trained with (PyTorch's MNIST example:
        ``(0.1307, 0.3081)``); cnnscope's views feed [0, 1] images and this is applied
        inside the model's forward. Default: what ``cnnscope train`` recorded, else none.
    input_size
        ``(H, W)`` of your model's input; default: its ``input_shape`` attribute, what
        ``cnnscope train`` recorded, else 28×28.

    Returns
    -------
    (model, metadata)
        In eval mode, on the CPU; metadata is the weights' JSON (``{}`` for fresh weights).
    """
    if model is not None and is_foreign_spec(model):
        path = Path(weights) if weights is not None else None
        recorded = _foreign_defaults(path) if path is not None else {}
        shape = (1, *input_size) if input_size is not None else recorded.get("input_shape")
        adapted = load_foreign(
            model,
            path,
            normalize=normalize if normalize is not None else recorded.get("normalize"),
            input_shape=shape,
        )
        meta: dict[str, Any] = {}
        if path is not None and path.suffix == ".safetensors" and _sidecar(path).is_file():
            meta = read_metadata(path)
        return adapted, {**meta, **adapted.header(), "weights_file": str(path) if path else None}
    if normalize is not None or input_size is not None:
        raise ValueError(
            "--normalize and --input-size are for your own model (--model file.py:Class); "
            "the built-in models take 28×28 images in [0, 1]"
        )
    if weights is not None:
        return load_weights(weights, expect=model)
    name = model or "deep_mnist"
    if name not in MODELS:
        raise ValueError(
            f"{name!r} is neither a model name ({', '.join(MODELS)}) nor your own model "
            "(path/to/file.py:Class or package.module:Class)"
        )
    return load_weights(bundled_path(name), expect=name)


def _load_state(model: nn.Module, state: dict[str, torch.Tensor], path: Path) -> None:
    own = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    arch = getattr(model, "arch", type(model).__name__)
    _check_shapes(path, arch, own, {k: tuple(v.shape) for k, v in state.items()})
    model.load_state_dict(state)


def save_training_state(
    path: str | os.PathLike[str],
    model: StagedModel,
    optimizer: torch.optim.Optimizer,
    info: dict[str, Any],
) -> Path:
    """Write everything needed to resume: model, optimizer, torch RNG, and ``info`` (JSON).

    ``info`` holds the loop position, the scheduler's state and the training config.
    """
    path = Path(path)
    tensors = {f"model/{k}": v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    opt = optimizer.state_dict()
    for idx, slots in opt["state"].items():
        for slot, value in slots.items():
            tensors[f"optim/{idx}/{slot}"] = torch.as_tensor(value).contiguous().cpu()
    tensors["rng/torch"] = torch.get_rng_state()
    header = {
        "model": model.arch,
        "config": model.config(),
        "version": __version__,
        "param_groups": opt["param_groups"],
        "info": info,
    }
    atomic_write(
        path, lambda tmp: save_file(tensors, str(tmp), metadata={_HEADER_KEY: json.dumps(header)})
    )
    return path


def read_training_config(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The training settings a state file was saved with (``TrainConfig``'s fields, as
    JSON), read from its header without loading a tensor."""
    path = Path(path)
    config = _read_header(path).get("info", {}).get("config")
    if not isinstance(config, dict):
        raise CheckpointError(f"{path}: its header holds no training settings; {_FIX}.")
    return config


def load_training_state(
    path: str | os.PathLike[str], model: StagedModel, optimizer: torch.optim.Optimizer
) -> dict[str, Any]:
    """Restore model, optimizer and RNG from ``path``; return the saved ``info``."""
    path = Path(path)
    header = _read_header(path)
    if header.get("model") != model.arch:
        raise CheckpointError(
            f"{path}: training state is for {header.get('model')!r}, not for {model.arch!r}."
        )
    try:
        tensors = load_file(str(path))
    except (SafetensorError, OSError) as e:
        raise CheckpointError(f"{path}: corrupt training state ({e}).") from e
    _load_state(model, {k[6:]: v for k, v in tensors.items() if k.startswith("model/")}, path)
    try:
        state: dict[int, dict[str, torch.Tensor]] = {}
        for key, value in tensors.items():
            if key.startswith("optim/"):
                _, idx, slot = key.split("/", 2)
                state.setdefault(int(idx), {})[slot] = value
        optimizer.load_state_dict({"state": state, "param_groups": header["param_groups"]})
        # Each slot laid out as its parameter (channels-last convolutions): the file holds
        # them contiguous, and a fused step reads a parameter and its slots as the same
        # flat memory, so a contiguous slot of a channels-last weight was a wrong update.
        for param, slots in optimizer.state.items():
            for slot, value in slots.items():
                if isinstance(value, torch.Tensor) and value.shape == param.shape:
                    slots[slot] = torch.empty_like(param, dtype=value.dtype).copy_(value)
        torch.set_rng_state(tensors["rng/torch"])
        return dict(header["info"])
    except (KeyError, TypeError, ValueError, RuntimeError) as e:
        raise CheckpointError(
            f"{path}: incomplete training state ({type(e).__name__}: {e}). Start a new "
            "--run-dir, or resume from a copy of the run made before the damage."
        ) from e


def bundled_path(name: str) -> Path:
    """The shipped weights file of architecture ``name``."""
    get_spec(name)  # unknown names list the valid ones
    path = shipped(name, "safetensors")
    if not path.is_file():
        raise CheckpointError(
            f"no weights for {name!r} ship with cnnscope (shipped: "
            f"{', '.join(bundled_models()) or 'none'}). Train them with "
            f"`cnnscope train --model {name}` and pass --weights runs/.../model.safetensors."
        )
    return path


def bundled_models() -> list[str]:
    """Names of the architectures whose trained weights ship in the package."""
    return [n for n in MODELS if shipped(n, "safetensors").is_file()]
