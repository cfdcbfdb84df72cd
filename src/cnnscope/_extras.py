"""Optional dependencies: one place that says which extra installs what.

The base install runs the page, predict, features, evaluate and explain. The rest is in
extras (``pip install 'cnnscope[tsne]'``); a view that needs one imports it through
:func:`require`, so a missing package becomes one sentence naming the extra to install.
"""

from __future__ import annotations

import importlib
from types import ModuleType

__all__ = ["EXTRAS", "MissingExtra", "require"]

# Extra → what it enables. The packages themselves are listed once, in pyproject.toml.
EXTRAS: dict[str, str] = {
    "tsne": "t-SNE and PCA embeddings (openTSNE, scikit-learn, SciPy)",
    "umap": "UMAP embeddings (umap-learn)",
    "tensorboard": "TensorBoard event files while training and the embedding projector",
    "onnx": "ONNX export and ONNX Runtime inference",
}


class MissingExtra(ImportError):
    """An optional package is not installed; the message names the extra that installs it."""

    def __init__(self, module: str, extra: str, needed_for: str | None = None) -> None:
        what = needed_for or EXTRAS.get(extra, f"the {extra!r} extra")
        super().__init__(
            f"{what} needs the optional package {module!r}, which is not installed: "
            f"pip install 'cnnscope[{extra}]'",
            name=module,
        )
        self.module, self.extra = module, extra


def require(module: str, extra: str, needed_for: str | None = None) -> ModuleType:
    """Import ``module``, or raise :class:`MissingExtra` naming ``extra``.

    Parameters
    ----------
    module
        The dotted module to import, e.g. ``"sklearn.decomposition"``.
    extra
        The cnnscope extra that installs it: a key of :data:`EXTRAS`.
    needed_for
        What the caller was doing, for the message (default: the extra's description).

    Examples
    --------
    >>> PCA = require("sklearn.decomposition", "tsne").PCA
    """
    if extra not in EXTRAS:
        raise ValueError(f"unknown extra {extra!r}; valid: {', '.join(EXTRAS)}")
    try:
        return importlib.import_module(module)
    except ImportError as e:
        top = module.partition(".")[0]
        # Only the optional package itself being absent is "install the extra"; an import
        # error inside an installed package is a broken installation, shown as it is.
        if e.name is not None and e.name.partition(".")[0] != top:
            raise
        raise MissingExtra(top, extra, needed_for) from e
