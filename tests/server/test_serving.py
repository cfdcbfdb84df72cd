from __future__ import annotations

import http.client
import socket
import threading
import time

import pytest
import uvicorn

from cnnscope.models import build_model
from cnnscope.server.app import ServedModel, create_app
from cnnscope.server.serving import HeaderTimeout, uvicorn_options


class _QuickTimeout(HeaderTimeout):
    header_timeout_s = 1.0  # generous: a loaded machine may stall the loop for a while
    body_timeout_s = 2.0


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
        took = _closed_after(s, 6.0)
    assert took is not None and took < 5.0
    with socket.create_connection(("127.0.0.1", port)) as s:  # silent from the start
        assert _closed_after(s, 6.0) is not None


def test_a_body_that_stops_half_way_is_cut_off(port) -> None:
    """A request whose body stalls held its connection (one of a worker's 256) forever."""
    with socket.create_connection(("127.0.0.1", port)) as s:
        s.sendall(
            b"POST /api/predict HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b'Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{"pixels": ['
        )
        took = _closed_after(s, 8.0)
    assert took is not None and took < 6.0


def test_complete_requests_and_keep_alive_still_work(port) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    sockets = []
    for _ in range(2):
        conn.request("GET", "/api/health")
        r = conn.getresponse()
        assert r.status == 200 and r.read().startswith(b'{"status":"ok"')
        sockets.append(conn.sock)
        time.sleep(1.5)  # longer than the header timeout, shorter than keep-alive
    assert sockets[0] is sockets[1]  # the same connection, kept alive
    conn.close()


def test_each_worker_builds_the_same_app_from_the_settings(monkeypatch) -> None:
    """``serve --workers N``: every process gets the models, hosts and threads of ``serve``."""
    import json
    from dataclasses import asdict

    import torch
    from fastapi.testclient import TestClient

    from cnnscope.server import serving

    settings = serving.Settings(
        models=[serving.ModelSpec("lenet5")],
        allowed_hosts=["class.example"],
        threads=1,
    )
    monkeypatch.setenv(serving.SETTINGS_ENV, json.dumps(asdict(settings)))
    import gc

    gc.unfreeze()
    app = serving.app_from_env()
    frozen = gc.get_freeze_count()
    gc.unfreeze()  # this test process lives on
    assert frozen > 0  # what the worker serves with: out of the collector's sight
    assert torch.get_num_threads() == 1
    c = TestClient(app, base_url="http://class.example")
    health = c.get("/api/health").json()
    assert health["models"] == ["lenet5"]
    # A pair survives JSON as a pair: what serve's ModelChoice had, the worker gets.
    own = serving.ModelSpec("net.py:Net", "w.pt", normalize=(0.5, 0.25), input_size=(32, 32))
    assert serving.ModelSpec.from_json(json.loads(json.dumps(asdict(own)))) == own
    # The Host allow-list and the Origin check hold in each worker.
    assert TestClient(app, base_url="http://evil.example").get("/api/health").status_code == 400
    foreign = c.get("/api/health", headers={"Origin": "http://evil.example"})
    assert foreign.status_code in (200, 403)
    blocked = c.post(
        "/api/predict", json={"pixels": [0] * 784}, headers={"Origin": "http://evil.example"}
    )
    assert blocked.status_code == 403


def test_workers_get_time_to_start_on_a_busy_machine() -> None:
    """uvicorn kills a worker that misses a 5-s ping; one loading torch on a busy machine
    did, and was restarted forever. Older uvicorn (no such setting) pinged for 5 s."""
    import inspect

    from cnnscope.server import serving

    config = serving.worker_config(2)
    assert config.workers == 2 and config.factory and config.limit_concurrency
    if "timeout_worker_healthcheck" in inspect.signature(uvicorn.Config).parameters:
        assert config.timeout_worker_healthcheck == serving.WORKER_HEALTHCHECK_S >= 30


def test_app_from_env_without_settings_says_how_to_start(monkeypatch) -> None:
    from cnnscope.server import serving

    monkeypatch.delenv(serving.SETTINGS_ENV, raising=False)
    with pytest.raises(RuntimeError, match="run_workers"):
        serving.app_from_env()


def test_connections_on_serves_own_socket_send_without_delay(mnist) -> None:
    """``serve`` binds its socket itself (proto 0), where asyncio does not set TCP_NODELAY:
    each answer waited ~40 ms for the client's delayed ACK. HeaderTimeout sets it."""
    from cnnscope.cli.serve import bind

    app = create_app([ServedModel("tiny", build_model("lenet5"), {}, "test")], data=mnist)
    sock = bind("127.0.0.1", 0)
    assert sock.proto == 0  # the case asyncio leaves alone
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", **uvicorn_options()))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while not server.started:
            assert time.monotonic() < deadline
            time.sleep(0.02)
        conn = http.client.HTTPConnection("127.0.0.1", sock.getsockname()[1], timeout=10)
        conn.request("GET", "/api/health")
        assert conn.getresponse().read()
        (protocol,) = server.server_state.connections
        accepted = protocol.transport.get_extra_info("socket")
        assert accepted.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
        conn.close()
    finally:
        server.should_exit = True
        thread.join(5)
        sock.close()
