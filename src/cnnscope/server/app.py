"""``create_app(models)`` → the FastAPI app: routers, middleware, state and the static page.

Responses are compact: each activation map travels as uint8 between its own min and max
(:mod:`.encoding`), and stages the page can compute (a ReLU of a sent conv, a 2×2 max-pool
of that ReLU) are named in ``derived`` instead of being sent again.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles
from fastapi_offline import FastAPIOffline
from starlette.middleware.gzip import GZipMiddleware

from .. import __version__, store
from .._extras import MissingExtra
from ..data import MNIST
from . import background
from .middleware import (
    GZIP_LEVEL,
    GZIP_MIN_BYTES,
    MAX_BODY_BYTES,
    BodyLimit,
    LocalOnly,
    ServerTiming,
)
from .routes import ROUTERS
from .runs import Runs
from .state import AppState, ServedModel, served_models

__all__ = ["MAX_BODY_BYTES", "ServedModel", "create_app", "served_models"]

STATIC_DIR = Path(__file__).parent / "static"


def create_app(
    models: list[ServedModel],
    *,
    data: MNIST | None = None,
    data_dir: str | None = None,
    seed: int | None = None,
    allowed_hosts: Sequence[str] = (),
    runs_dir: Path | None = None,
    training: bool = False,
    training_off: str = "this server was made without training (create_app(training=True))",
) -> FastAPI:
    """Build the app serving ``models`` (the first is the default).

    Parameters
    ----------
    models
        Loaded models; build each with ``ServedModel(id, model, meta, source)``.
    data, data_dir
        MNIST for the "random test digit" button; loaded on first use when not given.
    seed
        Seed of the random test digits (tests); ``None`` draws a fresh sequence.
    allowed_hosts
        Host names accepted besides the loopback ones (``serve --host``, ``--allowed-host``);
        ``"*"`` accepts any. Requests naming another host get 400 (DNS rebinding).
    runs_dir
        The training runs folder (default: ``store.runs_dir()``); its runs are listed and
        each one with a checkpoint is served as ``run:<id>``.
    training, training_off
        Whether the page may start, stop and resume runs; if not, the reason its 403 gives.
    """
    state = AppState(models, data=data, data_dir=data_dir, seed=seed)
    runs = Runs(
        state,
        runs_dir if runs_dir is not None else store.runs_dir(),
        training=training,
        why_off=training_off,
        data_dir=data_dir,
    )

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        indexing = background.start(state)  # the top-examples indexes: no click waits
        yield
        runs.close()  # running trainings save their step and stop
        state.shutdown()  # Ctrl-C: drop queued work, stop renders
        background.finish(indexing)

    # FastAPIOffline serves /docs' Swagger UI from package files, not a CDN.
    app = FastAPIOffline(
        title="cnnscope",
        version=__version__,
        description="Draw a digit; see every layer of a CNN respond.",
        debug=False,
        lifespan=lifespan,
    )
    app.state.cnnscope = state
    app.state.runs = runs
    app.add_middleware(GZipMiddleware, minimum_size=GZIP_MIN_BYTES, compresslevel=GZIP_LEVEL)
    app.add_exception_handler(RequestValidationError, _validation_error)  # type: ignore[arg-type]
    app.add_exception_handler(MissingExtra, _missing_extra)  # type: ignore[arg-type]
    app.add_middleware(BodyLimit, limit=MAX_BODY_BYTES)
    # Before anything reads the body: a foreign Host or Origin costs the server nothing.
    app.add_middleware(LocalOnly, allowed_hosts=tuple(allowed_hosts))
    app.add_middleware(ServerTiming)  # added last = outermost: times everything
    for router in ROUTERS:
        app.include_router(router)
    app.mount("/", StaticFiles(directory=STATIC_DIR, html=True), name="static")
    return app


async def _missing_extra(_request: Request, exc: MissingExtra) -> JSONResponse:
    # A view whose optional package is not installed: say which extra brings it.
    return JSONResponse({"detail": str(exc)}, status_code=501)


async def _validation_error(_request: Request, exc: RequestValidationError) -> JSONResponse:
    # FastAPI's default echoes the offending input, which fails to render when it is NaN
    # or Infinity (a 500); say where and what instead.
    errors = [
        {"loc": list(e.get("loc", ())), "msg": e.get("msg", ""), "type": e.get("type", "")}
        for e in exc.errors()
    ]
    summary = "; ".join(
        f"{'.'.join(str(p) for p in e['loc'][1:]) or 'body'}: {e['msg']}" for e in errors[:5]
    )
    return JSONResponse({"detail": summary, "errors": errors[:20]}, status_code=422)
