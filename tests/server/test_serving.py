from __future__ import annotations

import socket
import threading
import time

import pytest
import uvicorn

from cnnscope.models import build_model
from cnnscope.server.app import ServedModel, create_app
from cnnscope.server.serving import HeaderTimeout, uvicorn_options


class _QuickTimeout(HeaderTimeout):
    header_timeout_s = 0.5


@pytest.fixture(scope="module")
def port(mnist):
    app = create_app([ServedModel("tiny", build_model("lenet5"), {}, "test")], data=mnist)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        free = int(s.getsockname()[1])
    options = {**uvicorn_options(), "http": _QuickTimeout}
    config = uvicorn.Config(app, host="127.0.0.1", port=free, log_level="warning", **options)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    yield free
    server.should_exit = True
    thread.join(5)


def _closed_after(sock: socket.socket, limit: float) -> float | None:
    """Seconds until the server closes ``sock`` (reads nothing), or None within ``limit``."""
    sock.settimeout(limit)
    t0 = time.perf_counter()
    try:
        while sock.recv(1024):
            pass
    except TimeoutError:
        return None
    return time.perf_counter() - t0


def test_slow_headers_are_cut_off(port) -> None:
    """Issue 12 #8: a client that never finishes its headers no longer holds a connection."""
    with socket.create_connection(("127.0.0.1", port)) as s:
        s.sendall(b"GET /api/health HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # no blank line
        took = _closed_after(s, 3.0)
    assert took is not None and took < 2.0
    with socket.create_connection(("127.0.0.1", port)) as s:  # silent from the start
        assert _closed_after(s, 3.0) is not None


def test_complete_requests_and_keep_alive_still_work(port) -> None:
    with socket.create_connection(("127.0.0.1", port)) as s:
        for _ in range(2):
            s.sendall(b"GET /api/health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            s.settimeout(5)
            assert s.recv(65536).startswith(b"HTTP/1.1 200")
            time.sleep(0.7)  # longer than the header timeout, shorter than keep-alive
