"""How ``cnnscope serve`` runs the app: uvicorn with limits uvicorn does not set itself.

uvicorn times out idle keep-alive connections but not a client that opens a connection
and sends its request headers slowly, or never (slowloris): each such connection is held
forever. :class:`HeaderTimeout` closes a connection whose request line and headers have
not all arrived within ``HEADER_TIMEOUT_S`` of its first byte (or of the connection), or
whose body has not all arrived within ``BODY_TIMEOUT_S`` of its headers.

``serve --workers N`` runs N processes (:func:`run_workers`), each handed its share of the
connections by the one that accepts them (:mod:`.workers`): each builds its own app with
:func:`app_from_env` from the same :class:`Settings`, so the Host and Origin checks and
every setting hold in each; the disk caches (predictions, feature images, unit indexes)
are shared, keyed by the weights' fingerprint.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import inspect
import json
import os
import signal
import socket
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

if TYPE_CHECKING:
    import uvicorn
    from fastapi import FastAPI

__all__ = [
    "BODY_TIMEOUT_S",
    "HEADER_TIMEOUT_S",
    "HeaderTimeout",
    "ModelSpec",
    "Settings",
    "app_from_env",
    "run_workers",
    "uvicorn_options",
    "worker_config",
]

HEADER_TIMEOUT_S = 10.0  # as Apache's RequestReadTimeout (header=20-40) and Go's ReadHeaderTimeout
# A body (a drawing, at most MAX_BODY_BYTES) that stops half way held its connection, one of
# a worker's MAX_CONNECTIONS, forever; Apache's RequestReadTimeout body=20,MinRate=500.
BODY_TIMEOUT_S = 30.0
# uvicorn answers 503 beyond this many open connections and tasks, per process: a class of
# 64 drawers (one connection each, several while a page loads) with room to spare.
MAX_CONNECTIONS = 256
SETTINGS_ENV = "CNNSCOPE_SERVE_SETTINGS"  # how run_workers hands Settings to each worker
GRACEFUL_SHUTDOWN_S = 2
# uvicorn's supervisor kills a worker that does not answer its ping within this many
# seconds (5 by default). A worker starting on a busy machine imports torch and loads the
# models for longer than that without letting its ping thread run: killed, restarted and
# killed again, it never served (seen with 2 workers at a load average of 8 on 2 cores).
WORKER_HEALTHCHECK_S = 60


class HeaderTimeout(HttpToolsProtocol):
    """uvicorn's httptools protocol, closing connections whose headers or body take too
    long to arrive."""

    header_timeout_s = HEADER_TIMEOUT_S
    body_timeout_s = BODY_TIMEOUT_S

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._header_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        _no_delay(transport)
        super().connection_made(transport)
        self._arm()

    def data_received(self, data: bytes) -> None:
        if self._header_timer is None and (self.cycle is None or self.cycle.response_complete):
            self._arm()  # the first bytes of the next request on a kept-alive connection
        super().data_received(data)

    def on_headers_complete(self) -> None:
        self._arm(self.body_timeout_s)  # the body has its own time to arrive
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._disarm()
        super().on_message_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _arm(self, seconds: float | None = None) -> None:
        self._disarm()
        limit = self.header_timeout_s if seconds is None else seconds
        self._header_timer = self.loop.call_later(limit, self._timed_out)

    def _disarm(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _timed_out(self) -> None:
        self._header_timer = None
        if not self.transport.is_closing():
            self.transport.close()


def _no_delay(transport: asyncio.BaseTransport) -> None:
    """Send small writes at once (TCP_NODELAY). asyncio sets it only on sockets created
    with ``proto=IPPROTO_TCP``, and a socket bound by ``serve`` (proto 0) is not one: a
    response's headers and body, two writes, then met the client's delayed ACK and every
    answer took 40 ms more than it should on Linux."""
    sock = transport.get_extra_info("socket")
    if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def uvicorn_options() -> dict[str, Any]:
    """Keyword arguments for ``uvicorn.run(app, host=..., port=..., **uvicorn_options())``."""
    return {
        "http": HeaderTimeout,
        "timeout_keep_alive": 5,
        "limit_concurrency": MAX_CONNECTIONS,
        # Ctrl-C waits this long for open requests, then cancels them: an event stream (the
        # Train tab's) never ends by itself, and must not hold the server up.
        "timeout_graceful_shutdown": GRACEFUL_SHUTDOWN_S,
    }


@dataclass(frozen=True)
class ModelSpec:
    """One model to serve: what ``served_models`` takes (``serve``'s ``ModelChoice``)."""

    model: str | None = None  # a built-in's name, path/file.py:Class or package.module:Class
    weights: str | None = None
    normalize: tuple[float, float] | None = None
    input_size: tuple[int, int] | None = None

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> ModelSpec:
        """Back from JSON, where the pairs became lists."""
        norm, size = d.get("normalize"), d.get("input_size")
        return cls(
            model=d.get("model"),
            weights=d.get("weights"),
            normalize=(float(norm[0]), float(norm[1])) if norm is not None else None,
            input_size=(int(size[0]), int(size[1])) if size is not None else None,
        )


@dataclass
class Settings:
    """Everything a worker process needs to build the same app as ``serve`` would."""

    models: list[ModelSpec]  # in order: the first is the default
    data_dir: str | None = None
    allowed_hosts: list[str] = field(default_factory=list)
    threads: int = 1  # torch threads per process
    runs_dir: str | None = None  # runs are listed and served in every worker
    training: bool = False  # never with several workers (cli.serve.training_policy)
    training_off: str = ""


def freeze_heap() -> None:
    """Put everything alive now (torch, the models, the app: all of it lives as long as the
    process) out of the garbage collector's sight, once ``serve`` has loaded it.

    Python's full collection walks every tracked object; with torch and the models loaded,
    one took 286 ms, in the middle of a 64-drawer load, and every request in flight
    waited for it (p99 of /api/predict 414 ms; 197 ms with the heap frozen). Frozen, a
    full collection walks only what was made since. As Instagram's servers do
    (``gc.freeze``, Python ≥ 3.7). No collection first: it would take 150–300 ms while
    the socket already listens, in front of the page's first request; the little garbage
    of start-up stays (``gc.freeze`` itself takes microseconds)."""
    gc.freeze()


def build_app(settings: Settings) -> FastAPI:
    """The app of :class:`Settings`: the models loaded, ``create_app`` wired."""
    import torch

    from .app import create_app
    from .state import served_models

    torch.set_num_threads(settings.threads)
    models = served_models(settings.models)
    app = create_app(
        models,
        data_dir=settings.data_dir,
        allowed_hosts=settings.allowed_hosts,
        runs_dir=Path(settings.runs_dir) if settings.runs_dir else None,
        training=settings.training,
        training_off=settings.training_off,
    )
    freeze_heap()  # a worker process: everything it serves with is loaded
    return app


def app_from_env() -> FastAPI:
    """uvicorn's app factory in each worker process: the settings ``run_workers`` left."""
    raw = os.environ.get(SETTINGS_ENV)
    if raw is None:
        raise RuntimeError(f"{SETTINGS_ENV} is not set: start workers with run_workers()")
    fields = json.loads(raw)
    fields["models"] = [ModelSpec.from_json(m) for m in fields["models"]]
    return build_app(Settings(**fields))


def run_workers(sock: socket.socket, settings: Settings, workers: int) -> None:
    """Serve on ``sock`` with ``workers`` processes; returns when the server is stopped
    (Ctrl-C, SIGTERM).

    This process accepts every connection and hands it to the worker holding the fewest
    (:class:`.workers.Balancer`), and starts again any worker that dies. Where sockets
    cannot be passed between processes, uvicorn's supervisor runs the workers on the shared
    socket instead (each takes whatever connections it accepts first).
    """
    from . import workers as balancing

    os.environ[SETTINGS_ENV] = json.dumps(asdict(settings))  # inherited by the workers
    if not balancing.supported():
        from uvicorn.supervisors import Multiprocess

        Multiprocess(worker_config(workers), sockets=[sock]).run()
        return
    balancer = balancing.Balancer(sock, workers, balancing.serve_handed)
    received: list[int] = []

    def stop(signum: int, _frame: Any) -> None:
        received.append(signum)
        balancer.stop()

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        balancer.run()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    # Ended as one process would: Ctrl-C as KeyboardInterrupt ("interrupted", 130), a
    # SIGTERM by that signal once the workers have stopped (as uvicorn re-raises it).
    if received and received[0] == signal.SIGINT:
        raise KeyboardInterrupt
    if received:
        signal.raise_signal(received[0])


def worker_config(workers: int) -> uvicorn.Config:
    """uvicorn's configuration for ``workers`` processes building their app from the env."""
    import uvicorn

    options = uvicorn_options()
    if "timeout_worker_healthcheck" in inspect.signature(uvicorn.Config).parameters:
        options["timeout_worker_healthcheck"] = WORKER_HEALTHCHECK_S  # uvicorn ≥ 0.37
    return uvicorn.Config(
        f"{__name__}:app_from_env", factory=True, workers=workers, log_level="warning", **options
    )
