"""A cnnscope app served by a real uvicorn in a thread, for browser tests: one way, used by all."""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator
from typing import Any

import uvicorn


class _Server(uvicorn.Server):
    """A uvicorn server that says when it listens (``ready``), so nothing polls."""

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.ready = threading.Event()

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=sockets)
        self.ready.set()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def serving(app: Any, join_timeout: float = 30.0) -> Iterator[str]:
    """``app`` on a free 127.0.0.1 port until the block ends; yields its URL. The server's
    shutdown must finish within ``join_timeout`` seconds (a hung shutdown fails; the app
    itself gives its background indexing 10 s to stop, at its next batch)."""
    port = free_port()
    server = _Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    if not server.ready.wait(timeout=20):
        raise RuntimeError("server did not start")
    try:
        yield f"http://127.0.0.1:{port}/"
    finally:
        server.should_exit = True
        thread.join(timeout=join_timeout)
    assert not thread.is_alive(), "the server's shutdown hung"
