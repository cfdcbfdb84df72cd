"""``serve --workers N``: one process accepts, and every worker gets its share."""

from __future__ import annotations

import collections
import http.client
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from cnnscope.server import workers
from cnnscope.server.workers import Balancer, least_loaded
from tests.support.handed import hung_worker, mute_worker, pid_worker
from tests.support.sockets import holders, workers_of

pytestmark = pytest.mark.skipif(not workers.supported(), reason="no socket passing here")


def test_least_loaded_takes_the_fewest_and_takes_turns_among_equals() -> None:
    assert least_loaded([3, None, 1, 1]) == 2
    assert least_loaded([3, None, 1, 1], start=3) == 3  # a tie: the turn goes on from 3
    assert least_loaded([0, 0], start=1) == 1
    assert least_loaded([None, 5]) == 1  # a worker still starting takes nothing
    assert least_loaded([None, None]) is None


def _wait(condition, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


@contextmanager
def _running(n: int, target) -> Iterator[tuple[Balancer, int]]:
    """A balancer of ``n`` workers running ``target``, on a free port, stopped after."""
    sock = socket.create_server(("127.0.0.1", 0))
    balancer = Balancer(sock, n, target)
    thread = threading.Thread(target=balancer.run, daemon=True)
    thread.start()
    try:
        yield balancer, sock.getsockname()[1]
    finally:
        balancer.stop()
        thread.join(15)
        sock.close()
    assert not thread.is_alive()


@contextmanager
def _balanced(n: int) -> Iterator[tuple[Balancer, int]]:
    """``n`` pid workers, every one ready."""
    with _running(n, pid_worker) as (balancer, port):
        _wait(lambda: None not in balancer.open_counts())
        yield balancer, port


def _pids(port: int, n: int) -> list[int]:
    """Open ``n`` connections at once, then ask each which process serves it."""
    conns = [socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(n)]
    try:
        for c in conns:
            c.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        return [int(c.recv(4096).split(b"\r\n\r\n", 1)[1]) for c in conns]
    finally:
        for c in conns:
            c.close()


def test_connections_opened_together_are_shared_evenly() -> None:
    """With a shared socket, 64 connections opened at once went 1/63, 4/60, 13/51 between
    two uvicorn workers; handed over one by one, each worker gets half."""
    with _balanced(2) as (balancer, port):
        for _ in range(3):
            counts = collections.Counter(_pids(port, 20))
            assert sorted(counts.values()) == [10, 10]
            _wait(lambda: balancer.open_counts() == [0, 0])  # closes are counted
        assert balancer.handed == 60


def test_a_worker_that_dies_is_replaced_and_the_others_serve_meanwhile() -> None:
    with _balanced(2) as (balancer, port):
        first = set(_pids(port, 4))
        assert len(first) == 2
        victim = first.pop()
        os.kill(victim, signal.SIGKILL)
        _wait(lambda: None in balancer.open_counts())  # noticed
        assert set(_pids(port, 4)) <= {*first, *_restarted(balancer, victim)}
        _wait(lambda: None not in balancer.open_counts())  # a new one is ready
        _wait(lambda: balancer.open_counts() == [0, 0])  # the closes above are counted
        after = set(_pids(port, 4))
        assert len(after) == 2 and victim not in after


def _restarted(balancer: Balancer, old: int) -> set[int]:
    return {w.process.pid for w in balancer._workers if w is not None} - {old}


@pytest.mark.parametrize(
    ("target", "limits"),
    [
        (hung_worker, {"PING_S": 0.2, "HUNG_S": 1.0}),  # ready, then deadlocked
        (mute_worker, {"LOADING_S": 1.0, "RESTART_S": (0.1, 0.1)}),  # hung while it loads
    ],
)
def test_a_hung_worker_is_stopped_and_started_again(monkeypatch, target, limits) -> None:
    for name, value in limits.items():
        monkeypatch.setattr(workers, name, value)
    with _running(1, target) as (balancer, _):
        _wait(lambda: balancer._workers[0] is not None)
        first = balancer._workers[0].process
        _wait(lambda: not first.is_alive(), timeout=30)  # killed
        _wait(
            lambda: balancer._workers[0] is not None and balancer._workers[0].process is not first
        )


def test_connections_wait_while_no_worker_is_ready() -> None:
    """A connection that arrives before the workers are ready, or just as every worker
    died, waits (in the backlog or in the supervisor) and is answered by the next one
    ready; none is accepted only to be closed."""
    with _running(2, pid_worker) as (balancer, port):
        early = socket.create_connection(("127.0.0.1", port), timeout=60)
        with early:
            early.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            assert early.recv(4096).startswith(b"HTTP/1.1 200")
        for w in list(balancer._workers):
            assert w is not None
            os.kill(w.process.pid, signal.SIGKILL)
        _wait(lambda: balancer.open_counts() == [None, None])  # both noticed
        late = socket.create_connection(("127.0.0.1", port), timeout=60)
        with late:
            late.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            assert late.recv(4096).startswith(b"HTTP/1.1 200")


def test_stopping_stops_every_worker() -> None:
    with _balanced(2) as (_, port):
        pids = set(_pids(port, 2))
        assert len(pids) == 2
    for pid in pids:  # reaped by the balancer: gone, not zombies
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/net/tcp").exists(), reason="reads Linux /proc")
def test_serve_workers_share_a_class_evenly_and_answer_drawings() -> None:
    """The real ``cnnscope serve --workers 2``: 24 drawers connecting at once get 12 and
    12, every one is answered, and Ctrl-C (SIGINT to the terminal's whole process group)
    stops every process as one server would: "interrupted", 130, no worker's traceback."""
    cmd = [sys.executable, "-m", "cnnscope", "serve", "--port", "0", "--model", "lenet5"]
    proc = subprocess.Popen(
        [*cmd, "--workers", "2", "--threads", "1"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,  # its own process group, as a terminal's
    )
    children: list[int] = []
    conns: list[http.client.HTTPConnection] = []
    try:
        assert proc.stdout is not None and proc.stderr is not None
        banner = proc.stdout.readline()
        assert b"(2 worker processes)" in banner
        port = int(re.search(rb":(\d+)/", banner).group(1))
        # Waits in the backlog while the workers load.
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/health", timeout=180) as r:
            assert r.status == 200
        children = workers_of(proc.pid)
        assert len(children) == 2
        conns = [http.client.HTTPConnection("127.0.0.1", port, timeout=60) for _ in range(24)]
        for c in conns:
            c.connect()
        pixels = b'{"pixels": [' + b",".join([b"0.5"] * 784) + b"]}"
        for c in conns:
            c.request("POST", "/api/predict", pixels, {"Content-Type": "application/json"})
        assert [c.getresponse().status for c in conns] == [200] * 24
        held = holders(port, children)
        owners = [held[c.sock.getsockname()[1]] for c in conns]
        # 12 and 12, give or take a health check whose close is still on its way (a shared
        # socket gave 3 and 21)
        low, high = sorted(collections.Counter(owners).values())
        assert low + high == 24 and high - low <= 2
    finally:
        for c in conns:
            c.close()
        os.killpg(proc.pid, signal.SIGINT)
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 130 and b"interrupted" in err
    assert b"Traceback" not in err, err.decode(errors="replace")
    time.sleep(0.5)
    for pid in children:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
