"""``serve --workers N``: one process accepts every connection, N processes serve them.

With one listening socket shared by N uvicorn workers, the kernel wakes every worker for
each new connection and the first to call ``accept`` takes it; asyncio then takes every
connection waiting, up to its backlog. Connections that arrive together, as a classroom's
do, pile into one worker: 64 connections opened at once split 1/63, 4/60 and 13/51 in
three of eight tries (2 workers), and the crowded worker answered its drawers 4× slower
than the other (p95 of /api/predict 257 ms with half the machine idle at times).

So the supervisor accepts them itself and hands each to the worker holding the fewest
open connections, passing the socket over a Unix socket pair (``SCM_RIGHTS``). Node's
``cluster`` module hands connections from its primary in the same way (round robin), and
Envoy's ``exact_balance`` balances them between threads. A worker says when each
connection closes, so the counts stay true. Every worker serves the app of
:func:`.serving.app_from_env` with uvicorn, on connections it did not accept.

The supervisor restarts a worker that dies, or that has not answered a ping for a minute;
a worker whose supervisor is gone stops. On a platform without ``socket.send_fds``
(Windows), :func:`.serving.run_workers` uses uvicorn's own supervisor and its shared
socket instead.
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
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import uvicorn

__all__ = ["Balancer", "least_loaded", "supported"]

READY, CLOSED, PONG = b"R", b"x", b"o"  # worker → supervisor
HANDED, PING = b"c", b"p"  # supervisor → worker: a connection (with its socket), a ping
STOP_S = 8.0  # a worker stopping gets this long (its graceful shutdown is 2 s) before a kill
START_S = 60.0  # listening waits this long for every worker, then starts with those ready
PING_S = 10.0  # a ready worker is pinged this often …
HUNG_S = 60.0  # … and killed (then started again) when it has said nothing for this long
LOADING_S = 300.0  # a worker not ready after this long is hung in its start: killed too
RESTART_S = (1.0, 60.0)  # a worker that died before it was ready: delay, doubled, capped


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
    heard: float = field(default_factory=time.monotonic)  # when it last said anything
    pinged: float = 0.0
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
        Worker processes; each is restarted if it dies, or if it stops answering pings.
    target
        A module-level function run in each (spawned) worker with its end of the socket
        pair: it sends ``READY`` once it serves, ``CLOSED`` for each connection that ends
        and ``PONG`` for each ``PING``; it receives one ``HANDED`` byte with one socket
        for each connection it should serve.

    Connections wait in the listening socket's backlog while no worker is ready (at the
    start, until every worker is or ``START_S`` has passed), and one accepted just as
    every worker died waits for the next one ready: none is closed for want of a worker.
    """

    def __init__(
        self, sock: socket.socket, workers: int, target: Callable[[socket.socket], None]
    ) -> None:
        if workers < 1:
            raise ValueError(f"workers must be ≥ 1, got {workers}")
        self.sock, self.n, self.target = sock, workers, target
        self._ctx = multiprocessing.get_context("spawn")  # torch is loaded: never fork
        self._workers: list[_Worker | None] = [None] * workers
        self._restart_at = [0.0] * workers
        self._failures = [0] * workers  # deaths before READY in a row
        self._exited: list[Any] = []  # processes whose channel closed: reaped, or killed
        self._pending: deque[socket.socket] = deque()  # accepted, for the next worker ready
        self._sel = selectors.DefaultSelector()
        self._next = 0  # round robin among equally loaded workers
        self._stopping = False
        self._listening = False
        self._began = 0.0
        self.handed = 0  # connections handed over so far

    # --- the supervisor's loop ----------------------------------------------------------

    def run(self) -> None:
        """Start the workers, then accept and hand over until :meth:`stop` (or a signal
        handler that calls it); stop the workers on the way out."""
        self.sock.setblocking(False)
        self._began = time.monotonic()
        try:
            while not self._stopping:
                self._tend()
                self._listen(self._should_listen())
                for key, _ in self._sel.select(0.25):
                    if key.data is None:
                        self._accept()
                    else:
                        self._hear(key.data)
        finally:
            self._listen(False)
            for conn in self._pending:
                conn.close()
            self._stop_workers()
            self._sel.close()

    def stop(self) -> None:
        """Stop accepting; :meth:`run` stops the workers and returns."""
        self._stopping = True

    def open_counts(self) -> list[int | None]:
        """Open connections per worker (``None``: not ready)."""
        return [w.open if w is not None and w.ready else None for w in self._workers]

    def _should_listen(self) -> bool:
        """Accept while a worker is ready; at the start, only once every one is (the first
        one ready would otherwise take, and keep, every connection of a class that arrives
        while the others load) or ``START_S`` has passed."""
        ready = [w is not None and w.ready for w in self._workers]
        if not any(ready):
            return False
        return self._listening or all(ready) or time.monotonic() - self._began > START_S

    def _listen(self, on: bool) -> None:
        if on and not self._listening:
            self._sel.register(self.sock, selectors.EVENT_READ, None)
        elif not on and self._listening:
            self._sel.unregister(self.sock)
        self._listening = on

    def _tend(self) -> None:
        """Reap what exited, start what is due, ping the ready, kill the hung."""
        for p in list(self._exited):
            if not p.is_alive():
                p.join(0)
                self._exited.remove(p)
        now = time.monotonic()
        for i, w in enumerate(self._workers):
            if w is None:
                if not self._stopping and now >= self._restart_at[i]:
                    self._start(i)
            elif not w.process.is_alive():
                self._lost(i)  # also one that died before it took its end: no EOF came
            elif now - w.heard > (HUNG_S if w.ready else LOADING_S):
                what = "answered" if w.ready else "started serving"
                print(
                    f"cnnscope: worker {i} (pid {w.process.pid}) has not {what} for "
                    f"{now - w.heard:.0f} s; stopping it",
                    file=sys.stderr,
                    flush=True,
                )
                w.process.kill()
                self._lost(i)
            elif w.ready and now - max(w.heard, w.pinged) > PING_S:
                w.pinged = now
                with contextlib.suppress(OSError):  # a full channel: it is busy, or hung
                    w.channel.send(PING)

    def _start(self, i: int) -> None:
        try:
            parent_end, child_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        except OSError:  # out of file descriptors: try again later
            self._restart_at[i] = time.monotonic() + RESTART_S[0]
            return
        process = self._ctx.Process(
            target=self.target, args=(child_end,), name=f"cnnscope-worker-{i}", daemon=False
        )
        try:
            process.start()  # the child's end is duplicated for it as the arguments are sent
        except OSError:
            parent_end.close()
            self._restart_at[i] = time.monotonic() + RESTART_S[0]
            return
        finally:
            child_end.close()  # so the child's exit reads as EOF here
        parent_end.setblocking(False)
        self._workers[i] = _Worker(process, parent_end)
        self._sel.register(parent_end, selectors.EVENT_READ, i)

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except (ConnectionAbortedError, ConnectionResetError):
                continue  # a client gone while queued
            except OSError:  # out of file descriptors or memory: the backlog holds the rest
                time.sleep(0.01)
                return
            self._pending.append(conn)
            self._hand_pending()

    def _hand_pending(self) -> None:
        """Give each accepted connection to the least-loaded ready worker. One that none
        can take (every worker died at once) waits for the next one ready."""
        while self._pending:
            conn = self._pending[0]
            counts = self.open_counts()
            while (i := least_loaded(counts, self._next)) is not None:
                w = self._workers[i]
                assert w is not None
                try:
                    socket.send_fds(w.channel, [HANDED], [conn.fileno()])
                except OSError:  # dead, or its channel full: another one takes it
                    counts[i] = None
                    continue
                w.open += 1
                self.handed += 1
                self._next = (i + 1) % self.n
                break
            else:
                return
            self._pending.popleft().close()  # the worker has its own copy now

    def _hear(self, i: int) -> None:
        """Read what worker ``i`` says: ready, connections closed, pong, or gone (EOF)."""
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
        w.heard = time.monotonic()
        w.open = max(0, w.open - data.count(CLOSED))
        if READY in data:
            w.ready = True
            self._failures[i] = 0
            self._hand_pending()

    def _lost(self, i: int) -> None:
        """Worker ``i`` is gone (or going): forget it, and start another when due."""
        w = self._workers[i]
        assert w is not None
        self._sel.unregister(w.channel)
        w.channel.close()
        self._exited.append(w.process)  # reaped by _tend without waiting here
        self._workers[i] = None
        if w.ready:
            delay = 0.0
        else:  # dying on start-up: back off, so it does not take the others' CPU forever
            self._failures[i] += 1
            delay = min(RESTART_S[0] * 2 ** (self._failures[i] - 1), RESTART_S[1])
        self._restart_at[i] = time.monotonic() + delay
        if not self._stopping:
            print(
                f"cnnscope: worker {i} (pid {w.process.pid}) stopped; starting another"
                + (f" in {delay:.0f} s" if delay else ""),
                file=sys.stderr,
                flush=True,
            )

    def _stop_workers(self) -> None:
        live = [w.process for w in self._workers if w is not None] + self._exited
        for p in live:
            if p.is_alive():
                with contextlib.suppress(OSError):
                    os.kill(p.pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_S
        for p in live:
            p.join(max(0.0, deadline - time.monotonic()))
            if p.is_alive():
                p.kill()
                p.join(1.0)
        for w in self._workers:
            if w is not None:
                w.channel.close()


# --- a worker ---------------------------------------------------------------------------


def serve_handed(channel: socket.socket) -> None:
    """A worker of ``serve --workers``: uvicorn serving :func:`.serving.app_from_env` on the
    connections the supervisor hands over on ``channel``."""
    from .serving import app_from_env, uvicorn_options

    # Ctrl-C reaches every process of the terminal's group: the supervisor stops the
    # workers (SIGTERM), and a worker's own KeyboardInterrupt would only print tracebacks.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # No WebSocket: the app has no such route, and an upgraded connection would leave the
    # HTTP protocol without a connection_lost, so its close would never be counted.
    config = uvicorn.Config(
        app_from_env, factory=True, log_level="warning", ws="none", **uvicorn_options()
    )
    with contextlib.suppress(KeyboardInterrupt):
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
        try:
            self.channel.send(READY)
        except OSError:  # the supervisor stopped while this worker loaded
            self.should_exit = True

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
            if data == PING:
                self._say(PONG)
                continue
            if not fds:  # a connection whose socket did not arrive (no descriptor left)
                self._say(CLOSED)
                continue
            for fd in fds:
                conn = socket.socket(fileno=fd)
                if self.should_exit or self._factory is None:
                    conn.close()
                    self._say(CLOSED)
                    continue
                loop.create_task(self._connect(loop, conn))

    async def _connect(self, loop: asyncio.AbstractEventLoop, conn: socket.socket) -> None:
        assert self._factory is not None
        try:
            await loop.connect_accepted_socket(self._factory, conn)
        except OSError:  # reset before it was served
            conn.close()
            self._say(CLOSED)

    def _say(self, message: bytes) -> None:
        with contextlib.suppress(OSError):
            self.channel.send(message)

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        with contextlib.suppress(ValueError, OSError):
            asyncio.get_running_loop().remove_reader(self.channel.fileno())
        await super().shutdown(sockets=sockets)


def _counted(protocol: type[Any], channel: socket.socket) -> type[Any]:
    """``protocol`` (uvicorn's HTTP protocol class) telling the supervisor of each
    connection that ends, so that its counts of open connections stay true."""

    class Counted(protocol):  # type: ignore[misc]
        def connection_lost(self, exc: Exception | None) -> None:
            try:
                super().connection_lost(exc)
            finally:
                with contextlib.suppress(OSError):
                    channel.send(CLOSED)

    return Counted
