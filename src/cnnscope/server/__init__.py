"""The local web app: ``create_app`` builds it, ``cnnscope serve`` runs it."""

from .app import ServedModel, create_app

__all__ = ["ServedModel", "create_app"]
