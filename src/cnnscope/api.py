"""The Python API: one object per model that reads like the command line.

>>> import cnnscope
>>> m = cnnscope.load("deep_mnist")                 # shipped weights
>>> m = cnnscope.load("net.py:Net", weights="net.pt", normalize=(0.1307, 0.3081))
>>> p = m.predict(image)                             # (classes,) probabilities
>>> acts = m.stages(image)                           # {stage name: tensor}
>>> imgs = m.features("conv2", units=[0, 1, 2])     # preferred inputs
>>> rep = m.evaluate()                               # the MNIST test set
>>> attr = m.explain(image, method="ig")             # an (H, W) attribution map
>>> m = cnnscope.load("best", device="cuda")         # or m.to("cuda"): any torch device

Images are (H, W) arrays in [0, 1], white ink on black, at the model's input size (28×28
for the built-ins); ``cnnscope.preprocess.to_mnist`` turns a drawing or a scan into one.
What a method returns is on the CPU (NumPy arrays, or tensors for :meth:`Model.stages`),
wherever the model runs.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from .checkpoints import open_model
from .models import StagedModel, StageInfo, num_classes, stage_infos

if TYPE_CHECKING:
    from .analysis.attribution import Attribution
    from .analysis.evaluation import Report

__all__ = ["Model", "load"]


class Model:
    """A loaded model (built-in or your own) and every view of it.

    Build one with :func:`load`. ``module`` is the underlying ``torch.nn.Module`` (a
    :class:`~cnnscope.models.StagedModel`), for anything the methods here do not cover.
    """

    def __init__(self, module: StagedModel, metadata: dict[str, Any], name: str) -> None:
        self.module = module.eval()
        self.metadata = metadata
        self.name = name

    def __repr__(self) -> str:
        shape = "×".join(map(str, self.input_shape))
        return (
            f"<cnnscope.Model {self.name}: input {shape}, {self.num_classes} classes, "
            f"{len(self.stage_names)} stages>"
        )

    @property
    def device(self) -> torch.device:
        """Where the model runs: the CPU unless :func:`load` or :meth:`to` chose another."""
        from .devices import device_of

        return device_of(self.module)

    def to(self, device: str | torch.device) -> Model:
        """Run the model on ``device`` (``"cpu"``, ``"cuda"``, ``"cuda:1"``, ``"mps"`` or
        ``"auto"``, as ``--device`` takes); returns the model itself.

        Examples
        --------
        >>> m.to("cuda").device
        device(type='cuda', index=0)
        """
        from .devices import resolve_device

        target = device if isinstance(device, torch.device) else resolve_device(device)
        self.module.to(target)
        return self

    @property
    def stage_names(self) -> tuple[str, ...]:
        """The stages in forward order; the last is the logits."""
        return tuple(self.module.stage_names)

    @property
    def info(self) -> dict[str, StageInfo]:
        """Each stage's :class:`~cnnscope.models.StageInfo` (kind, shape, receptive field)."""
        return dict(stage_infos(self.module))

    @property
    def input_shape(self) -> tuple[int, ...]:
        """One image as the model takes it, (C, H, W)."""
        return tuple(self.module.input_shape)

    @property
    def num_classes(self) -> int:
        """How many classes the model tells apart (the width of its logits)."""
        return num_classes(self.module)

    def _batch(self, image: Any) -> tuple[torch.Tensor, bool]:
        """``image`` as an (N, C, H, W) float tensor, and whether it was a single image."""
        array = np.asarray(image)
        if array.dtype == np.uint8:
            array = array / 255.0  # 0–255 grey levels, as MNIST's files store them
        x = torch.as_tensor(np.asarray(array, dtype=np.float32))
        c, h, w = self.input_shape
        if x.shape[-2:] != (h, w):
            raise ValueError(
                f"image is {tuple(x.shape)}; {self.name} takes {h}×{w} "
                f"(cnnscope.preprocess.to_mnist(image, ({h}, {w})) fits a drawing to it)"
            )
        single = x.dim() == 2 or (x.dim() == 3 and c > 1 and x.shape[0] == c)
        x = x.reshape(-1, c, h, w)
        if not torch.isfinite(x).all():
            raise ValueError("image has NaN or infinite values")
        lo, hi = (float(v) for v in torch.aminmax(x)) if x.numel() else (0.0, 0.0)
        if lo < 0 or hi > 1:  # 0–255 floats or a normalized image: every answer would be wrong
            raise ValueError(
                f"image values run from {lo:g} to {hi:g}; give floats in [0, 1] or uint8 "
                "grey levels 0–255 (a model trained on normalized images takes "
                "normalize=(mean, std) in cnnscope.load and still [0, 1] images)"
            )
        return x.to(self.device), single

    @torch.no_grad()
    def predict(self, image: Any) -> np.ndarray:
        """Class probabilities: ``(classes,)`` for one (H, W) image, ``(N, classes)`` for N.

        Examples
        --------
        >>> m.predict(image).argmax()
        7
        """
        x, single = self._batch(image)
        probs = torch.softmax(self.module(x), dim=1).cpu().numpy()
        return probs[0] if single else probs

    def stages(self, image: Any, names: Sequence[str] | None = None) -> dict[str, torch.Tensor]:
        """Every stage's output for one image (batch dimension removed), forward order.

        Examples
        --------
        >>> {k: tuple(v.shape) for k, v in m.stages(image).items()}["conv1"]
        (32, 28, 28)
        """
        from .analysis.activations import record

        x, _ = self._batch(image)
        out = record(self.module, x[:1], list(names) if names is not None else None)
        return {k: v[0].cpu() for k, v in out.items()}

    def features(
        self,
        stage: str,
        units: Sequence[int] | None = None,
        *,
        method: str = "regularized",
        steps: int | None = None,
        seed: int = 0,
    ) -> np.ndarray:
        """Preferred inputs: one (H, W) image per unit of ``stage`` (all units by default).

        ``stage="prob"`` renders each class's most probable input. ``method`` is one of
        :data:`cnnscope.analysis.features.methods.METHODS`: ``"regularized"`` (dark,
        sparse, robust to jitter: recognisable and faithful), ``"prior"`` (through a learned
        model of digits: the most natural-looking, the least literal) or ``"plain"`` (the
        tutorials' gradient ascent: the most literal). Rendering takes seconds per hundred
        units on a CPU.

        Examples
        --------
        >>> m.features("conv1", units=[0, 1]).shape
        (2, 28, 28)
        """
        from .analysis.features import layer_images, with_overrides
        from .analysis.features.methods import config_for

        config = with_overrides(config_for(method, seed=seed), steps=steps, seed=seed)
        return layer_images(self.module, stage, units, config)

    def evaluate(self, data_dir: str | os.PathLike[str] | None = None) -> Report:
        """Accuracy, per-class metrics, the confusion matrix and the mistakes on the test
        set the weights were trained on (MNIST by default; ``data_dir`` as ``cnnscope
        evaluate --data-dir``), the classes named as the data set names them.

        Examples
        --------
        >>> round(m.evaluate().accuracy, 3)
        0.992
        """
        from .analysis.evaluation import report
        from .data import class_names, load_for
        from .models import num_classes

        data = load_for(self.metadata, os.fspath(data_dir) if data_dir is not None else None)
        classes = class_names(self.metadata, num_classes(self.module), data)
        return report(self.module, data.test_images, data.test_labels, classes=classes)

    def explain(
        self, image: Any, method: str = "saliency", target: int | None = None, **options: Any
    ) -> Attribution:
        """An attribution map: which pixels pushed class ``target`` (default: predicted).

        ``method`` is one of ``cnnscope.analysis.attribution.METHODS`` (saliency,
        gradxinput, ig, smoothgrad, gradcam, occlusion); ``options`` go to its explainer
        (``layer="conv1"`` for gradcam, ``steps=64`` for ig...).

        Examples
        --------
        >>> a = m.explain(image, method="ig")
        >>> a.map.shape, a.target
        ((28, 28), 7)
        """
        from .analysis.attribution import Explainer

        x, _ = self._batch(image)
        return Explainer(self.module, method, **options)(x[:1], target)

    def export(self, path: str | os.PathLike[str], format: str = "onnx") -> Path:
        """Write the model as ONNX (needs ``cnnscope[onnx]``) or TorchScript."""
        from .export import export_model

        return export_model(self.module, format, path)


def load(
    model: str = "deep_mnist",
    weights: str | os.PathLike[str] | None = None,
    *,
    normalize: tuple[float, float] | None = None,
    input_size: tuple[int, int] | None = None,
    device: str | torch.device = "cpu",
) -> Model:
    """Load a built-in model or your own, as ``cnnscope --model … --weights …`` does.

    Parameters
    ----------
    model
        A built-in name (``deep_mnist``, ``hvass``, ``single_conv``, ``lenet5``,
        ``best``), a weights file written by ``cnnscope train`` for a built-in, or your
        own model as ``"path/to/file.py:Class"`` or ``"package.module:Class"`` (a class
        or a zero-argument factory).
    weights
        Built-in: a ``.safetensors`` file of that architecture (default: the shipped
        weights). Your own: ``.safetensors`` or a ``.pt``/``.pth`` state dict (read with
        ``torch.load(weights_only=True)``); none gives fresh weights.
    normalize
        ``(mean, std)`` your model was trained with, e.g. ``(0.1307, 0.3081)``; applied
        inside the model so that every method takes [0, 1] images.
    input_size
        ``(H, W)`` your model takes; default its ``input_shape`` attribute, else 28×28.
    device
        Where the model runs (``"cpu"``, ``"cuda"``, ``"mps"``, ``"auto"``…); see
        :meth:`Model.to`.

    Examples
    --------
    >>> m = cnnscope.load("examples/net.py:Net", weights="net.pt", normalize=(0.1307, 0.3081))
    >>> m.stage_names[:3]
    ('conv1', 'conv2', 'fc1')
    """
    text = os.fspath(model)
    path = Path(text)
    if weights is None and path.suffix == ".safetensors":
        module, meta = open_model(None, path)  # a trained built-in's file
        return Model(module, meta, path.stem).to(device)
    module, meta = open_model(text, weights, normalize=normalize, input_size=input_size)
    return Model(module, meta, text).to(device)
