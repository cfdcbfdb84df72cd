"""Your own model: any ``nn.Module`` from ``path/file.py:Class`` or ``package.module:Class``.

:func:`load_foreign` imports the class (or zero-argument factory), builds it, loads a
state dict (safetensors, or a ``.pt``/``.pth`` file read with
``torch.load(weights_only=True)``, nothing more permissive) and wraps it in
:class:`Adapted`: a :class:`~cnnscope.models.StagedModel` whose stages are found by
tracing one forward pass (:func:`~cnnscope.models.stages.discover_stages`) and named by
the model's own module names (``features.0``, ``head.fc``). Every view of cnnscope then
works on it as on a built-in.

Every failure the user can fix raises :class:`ForeignModelError`, one line that names the
file and the fix.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import inspect
import os
import pickle
import sys
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .builtin import INPUT_SHAPE, StagedModel
from .stages import discover_stages

__all__ = [
    "Adapted",
    "ForeignModelError",
    "build_foreign",
    "is_foreign_spec",
    "load_foreign",
    "read_state_dict",
    "state_mismatch",
]

WEIGHT_SUFFIXES = (".safetensors", ".pt", ".pth")


class ForeignModelError(ValueError):
    """Your model or its weights cannot be used; the message names the file and the fix."""


def is_foreign_spec(text: str) -> bool:
    """True for ``file.py:Class`` and ``pkg.module:Class``; False for a built-in name."""
    module, sep, attr = text.rpartition(":")
    return bool(sep and module and attr)


def _import_target(spec: str) -> tuple[Any, str]:
    """The object ``spec`` names and where it came from (for messages)."""
    where, _, attr = spec.rpartition(":")
    if where.endswith(".py") or os.sep in where or "/" in where:
        path = Path(where)
        if not path.is_file():
            raise ForeignModelError(
                f"{where}: no such Python file (from --model {spec}); give path/to/file.py:Class"
            )
        # A stable module name per file: re-loading the same file reuses it, two files
        # called net.py do not collide. Registered in sys.modules so dataclasses and
        # pickling-free introspection inside the user's file work.
        digest = hashlib.sha1(str(path.resolve()).encode()).hexdigest()[:10]
        name = f"_cnnscope_user_{path.stem}_{digest}"
        module_spec = importlib.util.spec_from_file_location(name, path)
        if module_spec is None or module_spec.loader is None:
            raise ForeignModelError(f"{where}: cannot be imported as a Python file")
        module = importlib.util.module_from_spec(module_spec)
        sys.modules[name] = module
        try:
            module_spec.loader.exec_module(module)
        except Exception as e:
            sys.modules.pop(name, None)
            raise ForeignModelError(
                f"{where}: importing it failed ({type(e).__name__}: {e}); fix the file "
                "or install what it imports"
            ) from e
        origin = where
    else:
        try:
            module = importlib.import_module(where)
        except ImportError as e:
            raise ForeignModelError(
                f"--model {spec}: cannot import module {where!r} ({e}); install the package, "
                "add its folder to PYTHONPATH, or give path/to/file.py:Class"
            ) from e
        except Exception as e:
            raise ForeignModelError(
                f"--model {spec}: importing {where!r} failed ({type(e).__name__}: {e})"
            ) from e
        origin = getattr(module, "__file__", None) or where
    try:
        target = getattr(module, attr)
    except AttributeError:
        found = sorted(
            n
            for n, v in vars(module).items()
            if inspect.isclass(v) and issubclass(v, nn.Module) and v.__module__ == module.__name__
        )
        raise ForeignModelError(
            f"{origin}: has no {attr!r}; its nn.Module classes: {', '.join(found) or 'none'}"
        ) from None
    return target, origin


def build_foreign(spec: str) -> nn.Module:
    """Import and build the model ``spec`` names (a class or a zero-argument factory)."""
    target, origin = _import_target(spec)
    attr = spec.rpartition(":")[2]
    if not callable(target):
        raise ForeignModelError(f"{origin}: {attr} is not a class or function")
    try:
        net = target()
    except TypeError as e:
        raise ForeignModelError(
            f"{origin}: {attr}() failed ({e}); cnnscope calls it with no arguments, so give "
            "its arguments defaults or point --model at a zero-argument factory function"
        ) from e
    except Exception as e:
        raise ForeignModelError(f"{origin}: {attr}() raised {type(e).__name__}: {e}") from e
    if not isinstance(net, nn.Module):
        raise ForeignModelError(
            f"{origin}: {attr}() returned a {type(net).__name__}, not a torch.nn.Module"
        )
    return net


def read_state_dict(path: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    """The tensors of a weights file: ``.safetensors``, or a ``.pt``/``.pth`` state dict.

    ``.pt``/``.pth`` files are read with ``torch.load(weights_only=True)``, which refuses
    anything but tensors and plain containers: no code in a weights file ever runs. A
    checkpoint dict holding the weights under ``state_dict`` or ``model_state_dict`` (as
    PyTorch Lightning and many tutorials write) is accepted too.
    """
    path = Path(path)
    if not path.is_file():
        raise ForeignModelError(f"{path}: no such weights file")
    suffix = path.suffix.lower()
    if suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return dict(load_file(str(path)))
        except (SafetensorError, OSError, ValueError) as e:
            raise ForeignModelError(
                f"{path}: not a readable safetensors file ({e}); save it again with "
                "safetensors.torch.save_file(model.state_dict(), ...)"
            ) from e
    if suffix not in (".pt", ".pth"):
        raise ForeignModelError(
            f"{path}: weights must be .safetensors, .pt or .pth (a state dict), not {suffix!r}"
        )
    try:
        with warnings.catch_warnings():  # e.g. an old pickle protocol: the error says it all
            warnings.simplefilter("ignore")
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        said = str(e).lower()  # torch names the refused class ("Unsupported global: …")
        if not any(word in said for word in ("global", "unsupported class", "allowlist")):
            raise ForeignModelError(
                f"{path}: not a readable PyTorch file; it is corrupt or not a state dict: "
                "save one with torch.save(model.state_dict(), path)"
            ) from e
        # Objects beyond tensors and plain containers. Not torch's text: it suggests
        # weights_only=False, which would run the file's code.
        raise ForeignModelError(
            f"{path}: holds Python objects, not just tensors, and cnnscope never unpickles "
            "them; save a state dict: torch.save(model.state_dict(), path), or safetensors"
        ) from e
    except Exception as e:  # not a torch file at all: a truncated zip, text, …
        raise ForeignModelError(
            f"{path}: not a readable PyTorch file ({type(e).__name__}); it is corrupt or "
            "not a state dict: save one with torch.save(model.state_dict(), path)"
        ) from e
    if isinstance(obj, Mapping):
        for key in ("state_dict", "model_state_dict"):
            if isinstance(obj.get(key), Mapping):
                obj = obj[key]
                break
    if not isinstance(obj, Mapping) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items()
    ):
        raise ForeignModelError(
            f"{path}: holds a {type(obj).__name__}, not a state dict of tensors; save it with "
            "torch.save(model.state_dict(), path)"
        )
    return dict(obj)


def state_mismatch(own: Mapping[str, tuple[int, ...]], found: Mapping[str, tuple[int, ...]]) -> str:
    """How the tensor shapes ``found`` in a file differ from a model's ``own`` ("" when they
    fit): missing and unexpected names, shape mismatches, at most five of each."""

    def few(names: list[str]) -> str:
        return ", ".join(names[:5]) + (f" (+{len(names) - 5} more)" if len(names) > 5 else "")

    missing = sorted(set(own) - set(found))
    extra = sorted(set(found) - set(own))
    wrong = [f"{k} {found[k]} vs {own[k]}" for k in own if k in found and found[k] != own[k]]
    return "; ".join(
        p
        for p in (
            missing and f"missing {few(missing)}",
            extra and f"unexpected {few(extra)}",
            wrong and f"shape mismatch {few(wrong)}",
        )
        if p
    )


def load_state(
    net: nn.Module, state: Mapping[str, torch.Tensor], path: str | os.PathLike[str]
) -> None:
    """Load ``state`` into ``net`` after checking names and shapes (one line if they differ)."""
    own = {k: tuple(v.shape) for k, v in net.state_dict().items()}
    details = state_mismatch(own, {k: tuple(v.shape) for k, v in state.items()})
    if details:
        raise ForeignModelError(
            f"{path}: weights do not fit {type(net).__name__}: {details}; pass the weights "
            "saved from this class (torch.save(model.state_dict(), ...))"
        )
    net.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in state.items()})


class Adapted(StagedModel):
    """A foreign ``nn.Module`` seen as a :class:`StagedModel`.

    Stages keep the model's own module names (``features.0``): ``get_submodule`` and
    hooks resolve them inside the wrapped net. Normalization, if any, is applied here, in
    ``forward``, so every view feeds [0, 1] white-on-black images as to the built-ins.

    Parameters
    ----------
    net
        The model: (N, C, H, W) floats → (N, classes) logits.
    spec
        Where it came from (``net.py:Net``): its ``arch``, written into saved weights.
    input_shape
        One image, (C, H, W); default: the model's ``input_shape`` attribute, else
        (1, 28, 28).
    normalize
        (mean, std) the model was trained with; images are ``(x - mean) / std`` before it.
    """

    def __init__(
        self,
        net: nn.Module,
        spec: str,
        *,
        input_shape: tuple[int, ...] | None = None,
        normalize: tuple[float, float] | None = None,
    ) -> None:
        super().__init__()
        self.net = net
        self.spec = spec
        self.arch = spec
        declared_shape: tuple[int, ...] = tuple(getattr(net, "input_shape", INPUT_SHAPE))
        self.input_shape = tuple(input_shape) if input_shape else declared_shape
        if normalize is not None and not normalize[1] > 0:
            raise ForeignModelError(f"--normalize {normalize}: the std must be above 0")
        self.normalize = normalize
        # A buffer too, so that the weights fingerprint (the key of every cache) changes
        # with the normalization and .to(device) carries it.
        mean, std = normalize or (0.0, 1.0)
        self.register_buffer("norm", torch.tensor([mean, std]), persistent=True)
        self._remember()
        self.tail = nn.Identity()  # the logits stage when no module's output is the output
        self._stages: dict[str, nn.Module] = {}
        declared = getattr(net, "stage_names", None)
        if declared:
            try:
                self._stages = {n: net.get_submodule(str(n)) for n in declared}
            except (AttributeError, TypeError) as e:
                raise ForeignModelError(
                    f"{spec}: stage_names lists a name that is not a submodule ({e}); list "
                    "names as model.named_modules() gives them, or drop stage_names to have "
                    "them found by tracing"
                ) from e
            self.stage_names = tuple(declared)
        else:
            try:
                self._stages = discover_stages(
                    net, self._prepare, self.input_shape, spec, self.tail
                )
            except ValueError as e:
                raise ForeignModelError(str(e)) from e
            self.stage_names = tuple(self._stages)

    def _prepare(self, x: torch.Tensor) -> torch.Tensor:
        if self.normalize is None:
            return x
        norm = self.get_buffer("norm")  # (2,): mean, std
        return (x - norm[0]) / norm[1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.tail(self.net(self._prepare(x)))  # (N, classes)
        return out

    def get_submodule(self, target: str) -> nn.Module:
        """A stage by the model's own name (``features.0``), else as ``nn.Module`` does."""
        if target in self._stages:
            return self._stages[target]
        return super().get_submodule(target)

    @property
    def description(self) -> str:
        """Your model's class and where it came from, for listings and the page."""
        norm = f", normalized {self.normalize[0]:g}/{self.normalize[1]:g}" if self.normalize else ""
        return f"your model {type(self.net).__name__} ({self.spec}{norm})"

    def header(self) -> dict[str, Any]:
        """What saved weights record about this model (never used to import code)."""
        return {
            "model": "foreign",
            "spec": self.spec,
            "class": type(self.net).__name__,
            "input_shape": list(self.input_shape),
            "normalize": list(self.normalize) if self.normalize else None,
        }

    def rebuild(self) -> Adapted:
        """A freshly initialised model of the same class, input and normalization."""
        return Adapted(
            build_foreign(self.spec), self.spec, input_shape=self.input_shape,
            normalize=self.normalize,
        )  # fmt: skip


def load_foreign(
    spec: str,
    weights: str | os.PathLike[str] | None = None,
    *,
    normalize: tuple[float, float] | None = None,
    input_shape: tuple[int, ...] | None = None,
    factory: Callable[[], nn.Module] | None = None,
) -> Adapted:
    """Build ``spec``'s model, load ``weights`` if given, and discover its stages.

    Examples
    --------
    >>> model = load_foreign("examples/net.py:Net", "net.safetensors", normalize=(0.1307, 0.3081))
    >>> model.stage_names[:2]
    ('features.0', 'features.1')
    """
    net = factory() if factory is not None else build_foreign(spec)
    if weights is not None:
        load_state(net, read_state_dict(weights), weights)
    net.eval()
    model = Adapted(net, spec, input_shape=input_shape, normalize=normalize)
    model.eval()
    return model
