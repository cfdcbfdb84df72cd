"""One ``APIRouter`` per area of the API; ``create_app`` includes them in this order."""

from . import arithmetic, compat, digits, embedding, evaluation, features, models, predict, runs

ROUTERS = [
    models.router,
    predict.router,
    digits.router,
    evaluation.router,
    embedding.router,
    features.router,
    arithmetic.router,
    runs.router,
    compat.router,
]

__all__ = ["ROUTERS"]
