"""The one error type of the data package (its own module, so every reader can raise it)."""

from __future__ import annotations

__all__ = ["DataError"]


class DataError(RuntimeError):
    """The data could not be found or failed a check; the message says how to fix it."""
