"""Which pixels made the network decide? Attribution maps for any input and target.

Build an :class:`Explainer` once, call it on many images (the pytorch-grad-cam habit).
Every method returns an (H, W) map in input space (the model's input size, 28×28 for the
built-ins); positive values push the target class's logit up. Methods (captum's
implementations):

========== ============================================================== ======
name       what                                                           speed
========== ============================================================== ======
saliency   |∂ logit / ∂ pixel| (Simonyan et al. 2014)                     fast
gradxinput ∂ logit / ∂ pixel × pixel                                      fast
gradcam    Grad-CAM on a conv stage, upsampled to H×W (Selvaraju 2017)    fast
ig         integrated gradients from a black image (Sundararajan 2017)    slower
smoothgrad saliency averaged over noisy copies (Smilkov et al. 2017)      slower
occlusion  logit drop when a 4×4 patch is blacked out, stride 2           slower
========== ============================================================== ======

The baseline of ``ig`` and ``occlusion`` is an all-black image: "no ink", MNIST's
background.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from captum.attr import (
    InputXGradient,
    IntegratedGradients,
    LayerAttribution,
    LayerGradCam,
    NoiseTunnel,
    Occlusion,
    Saliency,
)

from ..devices import device_of
from ..models import StagedModel, activation_stage, resolve_stage, stage_infos

__all__ = [
    "FAST_METHODS",
    "METHODS",
    "METHOD_NAMES",
    "Attribution",
    "Explainer",
    "default_cam_layer",
    "explain",
]

METHODS = ("saliency", "gradxinput", "gradcam", "ig", "smoothgrad", "occlusion")
FAST_METHODS = ("saliency", "gradxinput", "gradcam")  # cheap enough to run with every prediction
METHOD_NAMES = {  # what a person reads (the page's picker, figure titles)
    "saliency": "saliency",
    "gradxinput": "gradient × input",
    "gradcam": "Grad-CAM (last conv)",
    "ig": "integrated gradients",
    "smoothgrad": "SmoothGrad",
    "occlusion": "occlusion",
}
BASELINE = "black image (all zeros: no ink)"


@dataclass
class Attribution:
    """An (H, W) attribution map (the model's input size) and what made it."""

    map: np.ndarray
    method: str
    target: int
    probabilities: list[float]
    details: dict[str, Any] = field(default_factory=dict)


class Explainer:
    """Attribution maps of one model with one method.

    Parameters
    ----------
    model
        A cnnscope model; it is put in eval mode.
    method
        One of :data:`METHODS`.
    layer
        Stage for ``gradcam``; ``None`` (the default) takes the model's last conv stage,
        for coarse class regions; an earlier one (``"conv1"``) gives finer ones.
    steps
        Integration steps of ``ig``; 32–64 keep the completeness error under 1 %.
    samples, noise
        Noisy copies and their noise std (in pixel units, 0–1) for ``smoothgrad``;
        typical values 20–50 and 0.1–0.2.
    window, stride
        Occluding patch size and step for ``occlusion``.
    """

    def __init__(
        self,
        model: StagedModel,
        method: str = "saliency",
        *,
        layer: str | None = None,
        steps: int = 32,
        samples: int = 20,
        noise: float = 0.15,
        window: int = 4,
        stride: int = 2,
    ) -> None:
        if method not in METHODS:
            raise ValueError(f"unknown attribution method {method!r}; valid: {', '.join(METHODS)}")
        self.model = model.eval()
        self.method = method
        self.layer = layer or (default_cam_layer(model) if method == "gradcam" else "")
        self.options = {
            "steps": steps,
            "samples": samples,
            "noise": noise,
            "window": window,
            "stride": stride,
        }
        if method == "gradcam":
            # Grad-CAM weighs feature maps that are activations (≥ 0); on a pre-activation
            # conv stage the negative parts cancel and the map comes out empty.
            resolve_stage(model, self.layer)  # an unknown stage lists the valid ones
            self.layer = activation_stage(model, self.layer)
            module = resolve_stage(model, self.layer)
            if not stage_infos(model)[self.layer].spatial:
                spatial = [n for n, i in stage_infos(model).items() if i.spatial]
                raise ValueError(
                    f"gradcam needs a stage with maps, not {self.layer!r}; "
                    f"valid: {', '.join(spatial)}"
                )
            self._impl: Any = LayerGradCam(model, module)
        else:
            self._impl = {
                "saliency": lambda: Saliency(model),
                "gradxinput": lambda: InputXGradient(model),
                "ig": lambda: IntegratedGradients(model),
                "smoothgrad": lambda: NoiseTunnel(Saliency(model)),
                "occlusion": lambda: Occlusion(model),
            }[method]()

    def __call__(self, image: np.ndarray | torch.Tensor, target: int | None = None) -> Attribution:
        """Explain ``image`` ((H, W) or (1, C, H, W), values 0–1) for class ``target``.

        ``(H, W)`` is the model's ``input_shape`` (28×28 for the built-ins);
        ``target=None`` explains the predicted class.
        """
        shape = tuple(self.model.input_shape)  # (C, H, W)
        if isinstance(image, torch.Tensor):
            image = image.detach().cpu()
        array = np.asarray(image, dtype=np.float32)
        if array.size != int(np.prod(shape)):
            raise ValueError(
                f"image has {array.shape} values; this model takes {'×'.join(map(str, shape))}"
            )
        x = torch.as_tensor(array).reshape(1, *shape).to(device_of(self.model))
        if not torch.isfinite(x).all():
            raise ValueError("image has NaN or infinite values")
        with torch.no_grad():
            probs = torch.softmax(self.model(x), 1)[0]
        if target is None:
            target = int(probs.argmax())
        if not 0 <= target < probs.numel():
            raise ValueError(f"target {target} outside 0–{probs.numel() - 1}")
        attr, details = self._attribute(x.clone().requires_grad_(True), target)
        return Attribution(
            map=attr.detach()[0].sum(0).cpu().numpy().astype(np.float32),  # (H, W), channels summed
            method=self.method,
            target=target,
            probabilities=[float(p) for p in probs],
            details=details,
        )

    def _attribute(self, x: torch.Tensor, target: int) -> tuple[torch.Tensor, dict[str, Any]]:
        """The method's captum call: the (1, 1, H, W) map and what it was made with."""
        details: dict[str, Any] = {}
        o = self.options
        if self.method == "saliency":
            attr = self._impl.attribute(x, target=target, abs=True)
        elif self.method == "gradxinput":
            attr = self._impl.attribute(x, target=target)
        elif self.method == "gradcam":
            cam = self._impl.attribute(x, target=target, relu_attributions=True)
            size = tuple(x.shape[-2:])  # (H, W) of the input
            attr = LayerAttribution.interpolate(cam, size, interpolate_mode="bilinear")
            details["layer"] = self.layer
        elif self.method == "ig":
            attr, delta = self._impl.attribute(
                x,
                baselines=torch.zeros_like(x),
                target=target,
                n_steps=o["steps"],
                return_convergence_delta=True,
            )
            details.update(baseline=BASELINE, steps=o["steps"], completeness_error=float(delta))
        elif self.method == "smoothgrad":
            # Seeded so the same input gives the same map: the page must not flicker.
            with torch.random.fork_rng():
                torch.manual_seed(0)
                attr = self._impl.attribute(
                    x,
                    nt_type="smoothgrad",
                    nt_samples=o["samples"],
                    stdevs=o["noise"],
                    target=target,
                    abs=True,
                )
            details.update(samples=o["samples"], noise=o["noise"])
        else:
            w, s = o["window"], o["stride"]
            attr = self._impl.attribute(
                x,
                sliding_window_shapes=(x.shape[1], w, w),
                strides=(x.shape[1], s, s),
                baselines=0.0,
                target=target,
                perturbations_per_eval=64,
            )
            details.update(baseline=BASELINE, window=w, stride=s)
        return attr, details


def default_cam_layer(model: StagedModel) -> str:
    """The last conv stage: Grad-CAM's usual layer (coarse, class-specific regions)."""
    convs = [n for n, i in stage_infos(model).items() if i.kind == "conv"]
    if not convs:
        raise ValueError("the model has no conv stage for gradcam")
    return convs[-1]


def explain(
    model: StagedModel,
    image: np.ndarray | torch.Tensor,
    method: str = "saliency",
    target: int | None = None,
    **options: Any,
) -> Attribution:
    """One-off :class:`Explainer` call: ``explain(model, image, "ig", target=3)``."""
    return Explainer(model, method, **options)(image, target)
