"""``serve --workers N``: one process accepts every connection, N processes serve them.

With one listening socket shared by N uvicorn workers, the kernel wakes every worker for
each new connection and the first to call ``accept`` takes it; asyncio then takes every
connection waiting, up to its backlog. Connections that arrive together, as a classroom's
do, pile into one worker: 64 connections opened at once split 1/63, 4/60 and 13/51 in
three of eight tries (2 workers), and the crowded worker answered its drawers 4× slower
than the other (p95 of /api/predict 257 ms with half the machine idle at times).

So the supervisor accepts them itself and hands each to the worker holding the fewest
open connections, passing the socket over a Unix socket pair (``SCM_RIGHTS``), as Node's
``cluster`` module does by default and Envoy's ``exact_balance`` does between threads. A
worker says when each connection closes, so the counts stay true. Every worker serves the
app of :func:`.serving.app_from_env` with uvicorn, on connections it did not accept.

The supervisor restarts a worker that dies; a worker whose supervisor is gone stops. On a
platform without ``socket.send_fds`` (Windows), :func:`.serving.run_workers` uses uvicorn's
own supervisor and its shared socket instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import os
import selectors
import signal
import socket
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import uvicorn

__all__ = ["Balancer", "least_loaded", "supported"]

READY, CLOSED, HANDED = b"R", b"x", b"c"  # worker → supervisor; supervisor → worker (+ fd)
STOP_S = 8.0  # a worker stopping gets this long (its graceful shutdown is 2 s) before a kill
RESTART_DELAY_S = 1.0  # a worker that died before it was ready is started again after this


def supported() -> bool:
    """Whether this platform can pass sockets between processes (POSIX, Python ≥ 3.9)."""
    return hasattr(socket, "send_fds") and hasattr(socket, "AF_UNIX")


def least_loaded(open_counts: list[int | None], start: int = 0) -> int | None:
    """The index of the fewest open connections among ready workers (``None``: not ready),
    ties broken from ``start`` on (round robin among equals); ``None`` when none is ready."""
    best: int | None = None
    n = len(open_counts)
    for k in range(n):
        i = (start + k) % n
        c = open_counts[i]
        if c is not None and (best is None or c < open_counts[best]):  # type: ignore[operator]
            best = i
    return best


@dataclass
class _Worker:
    """One worker process, its end of the socket pair, and the connections it holds."""

    process: Any  # multiprocessing.Process
    channel: socket.socket
    started: float = field(default_factory=time.monotonic)
    ready: bool = False
    open: int = 0


class Balancer:
    """Accept on ``sock`` and hand each connection to the least-loaded of ``workers``
    processes, each running ``target(channel)``; :meth:`run` until :meth:`stop`.

    Parameters
    ----------
    sock
        The listening socket (``serve`` binds it).
    workers
        Worker processes; each is restarted if it dies.
    target
        A module-level function run in each (spawned) worker with its end of the socket
        pair: it sends ``READY`` once it serves, ``CLOSED`` for each connection that ends,
        and receives one byte with one socket for each connection it should serve.
    """

    def __init__(
        self, sock: socket.socket, workers: int, target: Callable[[socket.socket], None]
    ) -> None:
        if workers < 1:
            raise ValueError(f"workers must be ≥ 1, got {workers}")
        self.sock, self.n, self.target = sock, workers, target
        self._ctx = multiprocessing.get_context("spawn")  # torch is loaded: never fork
        self._workers: list[_Worker | None] = [None] * workers
        self._restart_at: list[float] = [0.0] * workers
        self._sel = selectors.DefaultSelector()
        self._next = 0  # round robin among equally loaded workers
        self._stopping = False
        self._listening = False
        self.handed = 0  # connections handed over so far

    # --- the supervisor's loop ----------------------------------------------------------

    def run(self) -> None:
        """Start the workers, then accept and hand over until :meth:`stop` (or a signal
        handler that calls it); stop the workers on the way out."""
        self.sock.setblocking(False)
        try:
            for i in range(self.n):
                self._start(i)
            while not self._stopping:
                for key, _ in self._sel.select(0.25):
                    if key.data is None:
                        self._accept()
                    else:
                        self._hear(key.data)
                self._restart_due()
                # Accept only once every worker serves (or has had its chance): the first
                # one ready would otherwise take every connection of a class that arrives
                # while the others load, and keep them.
                if not self._listening and self._all_started():
                    self._sel.register(self.sock, selectors.EVENT_READ, None)
                    self._listening = True
        finally:
            self._stop_workers()
            self._sel.close()

    def stop(self) -> None:
        """Stop accepting; :meth:`run` stops the workers and returns."""
        self._stopping = True

    def open_counts(self) -> list[int | None]:
        """Open connections per worker (``None``: not ready)."""
        return [w.open if w is not None and w.ready else None for w in self._workers]

    def _all_started(self) -> bool:
        return all(
            w is not None and (w.ready or time.monotonic() - w.started > 60) for w in self._workers
        )

    def _start(self, i: int) -> None:
        parent_end, child_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        process = self._ctx.Process(
            target=self.target, args=(child_end,), name=f"cnnscope-worker-{i}", daemon=False
        )
        process.start()  # the child's end was duplicated for it as the arguments were sent
        child_end.close()  # so its exit reads as EOF here
        parent_end.setblocking(False)
        self._workers[i] = _Worker(process, parent_end)
        self._sel.register(parent_end, selectors.EVENT_READ, i)

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError:  # out of file descriptors, or a connection reset while queued
                time.sleep(0.01)
                return
            with conn:  # the worker has its own copy once handed over
                self._hand(conn)

    def _hand(self, conn: socket.socket) -> None:
        """Give ``conn`` to the least-loaded ready worker; if none can take it, it closes."""
        counts = self.open_counts()
        while (i := least_loaded(counts, self._next)) is not None:
            w = self._workers[i]
            assert w is not None
            try:
                socket.send_fds(w.channel, [HANDED], [conn.fileno()])
            except OSError:  # the worker just died: try another one
                counts[i] = None
                continue
            w.open += 1
            self.handed += 1
            self._next = (i + 1) % self.n
            return

    def _hear(self, i: int) -> None:
        """Read what worker ``i`` says: ready, connections closed, or gone (EOF)."""
        w = self._workers[i]
        if w is None:
            return
        try:
            data = w.channel.recv(4096)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self._lost(i)
            return
        if READY in data:
            w.ready = True
        w.open = max(0, w.open - data.count(CLOSED))

    def _lost(self, i: int) -> None:
        w = self._workers[i]
        assert w is not None
        self._sel.unregister(w.channel)
        w.channel.close()
        w.process.join(1.0)
        if not self._stopping:
            print(
                f"cnnscope: worker {i} (pid {w.process.pid}) stopped "
                f"(exit code {w.process.exitcode}); starting another",
                file=sys.stderr,
                flush=True,
            )
        self._workers[i] = None
        self._restart_at[i] = time.monotonic() + (0.0 if w.ready else RESTART_DELAY_S)

    def _restart_due(self) -> None:
        if self._stopping:
            return
        now = time.monotonic()
        for i, w in enumerate(self._workers):
            if w is not None and not w.process.is_alive():
                self._lost(i)  # also one that died before it took its end: no EOF came
            elif w is None and now >= self._restart_at[i]:
                self._start(i)

    def _stop_workers(self) -> None:
        live = [w for w in self._workers if w is not None]
        for w in live:
            if w.process.is_alive():
                with contextlib.suppress(OSError):
                    os.kill(w.process.pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_S
        for w in live:
            w.process.join(max(0.0, deadline - time.monotonic()))
            if w.process.is_alive():
                w.process.kill()
                w.process.join(1.0)
            w.channel.close()


# --- a worker ---------------------------------------------------------------------------


def serve_handed(channel: socket.socket) -> None:
    """A worker of ``serve --workers``: uvicorn serving :func:`.serving.app_from_env` on the
    connections the supervisor hands over on ``channel``."""
    from .serving import app_from_env, uvicorn_options

    config = uvicorn.Config(app_from_env, factory=True, log_level="warning", **uvicorn_options())
    HandedServer(config, channel).run()


class HandedServer(uvicorn.Server):
    """uvicorn's server without a listening socket of its own: it serves the connections
    received on ``channel`` (one byte and one socket each) and says when each one ends."""

    def __init__(self, config: uvicorn.Config, channel: socket.socket) -> None:
        super().__init__(config)
        self.channel = channel
        self._factory: Callable[[], asyncio.Protocol] | None = None

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=[])  # the app's lifespan and state; no socket
        if self.should_exit or not self.started:
            return
        config, state, app_state = self.config, self.server_state, self.lifespan.state
        counted = _counted(config.http_protocol_class, self.channel)

        def factory() -> asyncio.Protocol:
            protocol: asyncio.Protocol = counted(
                config=config, server_state=state, app_state=app_state
            )
            return protocol

        self._factory = factory
        loop = asyncio.get_running_loop()
        self.channel.setblocking(False)
        loop.add_reader(self.channel.fileno(), self._receive, loop)
        self.channel.send(READY)

    def _receive(self, loop: asyncio.AbstractEventLoop) -> None:
        while True:
            try:
                data, fds, _flags, _addr = socket.recv_fds(self.channel, 1, 1)
            except BlockingIOError:
                return
            except OSError:
                data, fds = b"", []
            if not data and not fds:  # the supervisor is gone: stop serving
                loop.remove_reader(self.channel.fileno())
                self.should_exit = True
                return
            for fd in fds:
                conn = socket.socket(fileno=fd)
                if self.should_exit or self._factory is None:
                    conn.close()
                    self._closed()
                    continue
                loop.create_task(self._connect(loop, conn))

    async def _connect(self, loop: asyncio.AbstractEventLoop, conn: socket.socket) -> None:
        assert self._factory is not None
        try:
            await loop.connect_accepted_socket(self._factory, conn)
        except OSError:  # reset before it was served
            conn.close()
            self._closed()

    def _closed(self) -> None:
        with contextlib.suppress(OSError):
            self.channel.send(CLOSED)

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        with contextlib.suppress(ValueError, OSError):
            asyncio.get_running_loop().remove_reader(self.channel.fileno())
        await super().shutdown(sockets=sockets)


def _counted(protocol: type[Any], channel: socket.socket) -> type[Any]:
    """``protocol`` (uvicorn's HTTP protocol class) telling the supervisor of each
    connection that ends, so that its counts of open connections stay true."""

    class Counted(protocol):  # type: ignore[misc]
        def connection_lost(self, exc: Exception | None) -> None:
            super().connection_lost(exc)
            with contextlib.suppress(OSError):
                channel.send(CLOSED)

    return Counted
