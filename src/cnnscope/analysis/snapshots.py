"""Representation snapshots: what the network makes of a fixed test subset, over training.

During training, at fixed steps and at every epoch end, the ``fc1`` and ``logits`` outputs
of a fixed subset of test images are stored (float16) so the embedding views can show the
classes separating. A run keeps one file per snapshot under ``RUN/snapshots/``; for
shipping, :func:`compact` packs them into one small file with ``fc1`` projected onto its
leading principal components.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from .._io import atomic_write, atomic_write_text
from ..data import to_float
from ..devices import device_of
from ..models import StagedModel, logits_stage, representation_stage
from ..store import shipped
from .activations import record

__all__ = [
    "SnapshotWriter",
    "Snapshots",
    "compact",
    "load_snapshots",
    "shipped_snapshots",
    "snapshot_subset",
]

# The roles stored in each snapshot file: "fc1" holds the model's representation stage
# (fc1 for the built-ins; see cnnscope.models.representation_stage), "logits" its logits.
STAGES = ("fc1", "logits")
_SUBSET_SEED = 20170101  # fixed across runs so every run's snapshots show the same digits


def snapshot_subset(n_test: int, size: int) -> torch.Tensor:
    """Sorted indices of the fixed test subset (the same for every run and seed)."""
    size = min(size, n_test)
    g = torch.Generator().manual_seed(_SUBSET_SEED)
    return torch.randperm(n_test, generator=g)[:size].sort().values


class SnapshotWriter:
    """Writes ``step-NNNNNN.safetensors`` files and keeps ``index.json`` up to date."""

    def __init__(
        self, folder: Path, subset: torch.Tensor, images: torch.Tensor, labels: torch.Tensor
    ) -> None:
        self.folder = folder
        self.subset = subset
        self.labels = labels[subset]
        self._x = to_float(images[subset])  # (S, 1, 28, 28)
        index_path = folder / "index.json"
        self._entries: dict[int, dict[str, Any]] = {}
        if index_path.exists():
            for entry in json.loads(index_path.read_text())["snapshots"]:
                self._entries[entry["step"]] = entry

    def write(self, model: StagedModel, step: int, epoch: float) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        rep, final = representation_stage(model), logits_stage(model)
        x = self._x.to(device_of(model))
        outputs = {k: v.cpu() for k, v in record(model, x, [rep]).items()}
        accuracy = float((outputs[final].argmax(1) == self.labels).float().mean())
        name = f"step-{step:06d}.safetensors"
        roles = {"fc1": outputs[rep].flatten(1), "logits": outputs[final]}
        tensors = {k: roles[k].half().contiguous() for k in STAGES}
        atomic_write(self.folder / name, lambda tmp: save_file(tensors, str(tmp)))
        self._entries[step] = {
            "step": step,
            "epoch": round(epoch, 4),
            "file": name,
            "subset_accuracy": accuracy,
        }
        index = {
            "indices": self.subset.tolist(),
            "labels": self.labels.tolist(),
            "stages": list(STAGES),
            "snapshots": [self._entries[k] for k in sorted(self._entries)],
        }
        atomic_write_text(self.folder / "index.json", json.dumps(index) + "\n")


@dataclass
class Snapshots:
    """Snapshots of one run, in step order.

    ``stages[name][i]`` is the (S, D) float32 array of stage ``name`` at ``steps[i]``.
    """

    indices: np.ndarray  # (S,) test-set indices of the subset
    labels: np.ndarray  # (S,) their labels
    steps: list[int]
    epochs: list[float]
    subset_accuracy: list[float]
    stages: dict[str, list[np.ndarray]]
    projection: str  # "none", or e.g. "pca50" when fc1 was compacted


def load_snapshots(path: str | os.PathLike[str]) -> Snapshots:
    """Read a run's ``snapshots/`` folder or a compact ``.safetensors`` file.

    A folder or file that is not what ``cnnscope train`` writes raises ``ValueError``
    naming it (``FileNotFoundError`` when there are no snapshots at all).
    """
    path = Path(path)
    try:
        return _load_snapshots(path)
    except (FileNotFoundError, IsADirectoryError):
        raise
    except (KeyError, TypeError, ValueError, OSError, SafetensorError) as e:
        raise ValueError(
            f"{path}: not a readable snapshots folder or file written by cnnscope train "
            f"({type(e).__name__}: {e}); train again or point at another run"
        ) from None


def _load_snapshots(path: Path) -> Snapshots:
    if path.is_dir():
        index_path = path / "index.json"
        if not index_path.exists():
            raise FileNotFoundError(
                f"{path}: no index.json, so no snapshots here. Train with snapshot_size > 0 "
                "(the default) to make them."
            )
        index = json.loads(index_path.read_text())
        entries = index["snapshots"]
        stages: dict[str, list[np.ndarray]] = {s: [] for s in index["stages"]}
        for entry in entries:
            with safe_open(str(path / entry["file"]), framework="np") as f:
                for s in stages:
                    stages[s].append(f.get_tensor(s).astype(np.float32))
        projection = "none"
    else:
        with safe_open(str(path), framework="np") as f:
            index = json.loads((f.metadata() or {})["index"])
            entries = index["snapshots"]
            stages = {
                s: [f.get_tensor(f"{e['step']}/{s}").astype(np.float32) for e in entries]
                for s in index["stages"]
            }
        projection = index.get("projection", "none")
    return Snapshots(
        indices=np.asarray(index["indices"]),
        labels=np.asarray(index["labels"]),
        steps=[e["step"] for e in entries],
        epochs=[e["epoch"] for e in entries],
        subset_accuracy=[e["subset_accuracy"] for e in entries],
        stages=stages,
        projection=projection,
    )


def shipped_snapshots(name: str) -> Path:
    """The snapshots file shipped with model ``name``; an error says how to make one."""
    path = shipped(name, "snapshots.safetensors")
    if not path.exists():
        raise FileNotFoundError(
            f"no snapshots ship with {name!r}. Make them: cnnscope train --model {name} "
            f"--run-dir runs/{name}, then use --run runs/{name}."
        )
    return path


def compact(folder: Path, out: Path, components: int = 50) -> Path:
    """Pack a run's snapshots into one file, ``fc1`` projected onto its top PCs (float16).

    Each snapshot is projected onto its *own* principal components: t-SNE and kNN depend
    only on distances, which the leading components keep (50 keep > 95 % of the variance
    of a trained fc1).
    """
    snaps = load_snapshots(folder)
    tensors: dict[str, torch.Tensor] = {}
    for i, step in enumerate(snaps.steps):
        for stage, arrays in snaps.stages.items():
            x = torch.from_numpy(arrays[i])
            if stage == "fc1" and x.shape[1] > components:
                centred = x - x.mean(0)
                _, _, v = torch.linalg.svd(centred, full_matrices=False)
                x = centred @ v[:components].T  # (S, components)
            tensors[f"{step}/{stage}"] = x.half().contiguous()
    index = {
        "indices": snaps.indices.tolist(),
        "labels": snaps.labels.tolist(),
        "stages": list(snaps.stages),
        "projection": f"pca{components}",
        "snapshots": [
            {"step": s, "epoch": e, "subset_accuracy": a}
            for s, e, a in zip(snaps.steps, snaps.epochs, snaps.subset_accuracy, strict=True)
        ],
    }
    atomic_write(
        out, lambda tmp: save_file(tensors, str(tmp), metadata={"index": json.dumps(index)})
    )
    return out
