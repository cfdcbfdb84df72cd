"""The local web app: ``create_app`` builds it, ``cnnscope serve`` runs it."""

from .app import create_app
from .state import ServedModel, served_models

__all__ = ["ServedModel", "create_app", "served_models"]
