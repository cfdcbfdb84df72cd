"""A server killed mid-run (``kill -9``) and started again: the run resumes and ends where
an uninterrupted run with the same seed ends, weight for weight."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from safetensors.torch import load_file

STEPS = 150


class _Server:
    """``cnnscope serve`` on a free port, in a process of its own."""

    def __init__(self, runs_dir: Path) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "cnnscope", "serve", "--model", "hvass", "--port", "0",
             "--runs-dir", str(runs_dir)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )  # fmt: skip
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        match = re.search(r"at (http://\S+)", line)
        assert match, line
        self.url = match.group(1)

    def call(self, path: str, body: dict | None = None) -> dict:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(
            self.url + path, data=data, headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(req, timeout=30) as r:
            result: dict = json.loads(r.read())
            return result

    def wait(self, run_id: str, until, timeout: float = 240.0) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            detail = self.call(f"api/runs/{run_id}")
            if until(detail):
                return detail
            time.sleep(0.3)
        raise AssertionError(f"run {run_id}: {detail}")

    def close(self) -> None:
        self.proc.send_signal(signal.SIGINT)
        self.proc.wait(timeout=30)
        assert self.proc.stdout is not None
        self.proc.stdout.close()


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return (
        Path(f"/proc/{pid}/status").exists() and "zombie" in Path(f"/proc/{pid}/status").read_text()
    )


@pytest.mark.slow
def test_kill_9_mid_run_then_resume_ends_as_uninterrupted(tmp_path: Path) -> None:
    runs_dir = tmp_path / "runs"
    server = _Server(runs_dir)
    try:
        killed = server.call("api/runs", {"model": "hvass", "steps": STEPS, "seed": 7})["id"]
        server.wait(killed, lambda d: d["step"] >= 40)
        pid = json.loads((runs_dir / killed / "run.json").read_text())["pid"]
    finally:
        server.proc.kill()  # kill -9: no shutdown, no lifespan, nothing saved by the server
        server.proc.wait()
        assert server.proc.stdout is not None
        server.proc.stdout.close()
    # The training process dies with its server (it saves its last step on the way out).
    deadline = time.monotonic() + 30
    while not _gone(pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _gone(pid)

    server = _Server(runs_dir)
    try:
        listed = {r["id"]: r for r in server.call("api/runs")}
        assert listed[killed]["status"] == "stopped"
        assert STEPS > listed[killed]["step"] >= 40
        server.call(f"api/runs/{killed}/resume", {})
        done = server.wait(killed, lambda d: d["status"] in ("done", "failed"))
        assert done["status"] == "done" and done["step"] == STEPS

        whole = server.call("api/runs", {"model": "hvass", "steps": STEPS, "seed": 7})["id"]
        done_whole = server.wait(whole, lambda d: d["status"] in ("done", "failed"))
        assert done_whole["status"] == "done"
    finally:
        server.close()

    final = [m for m in done["metrics"] if m["split"] in ("validation", "test")][-2:]
    final_whole = [m for m in done_whole["metrics"] if m["split"] in ("validation", "test")][-2:]
    assert final == final_whole
    a = load_file(str(runs_dir / killed / "model.safetensors"))
    b = load_file(str(runs_dir / whole / "model.safetensors"))
    assert a.keys() == b.keys()
    assert all(a[k].equal(b[k]) for k in a)


@pytest.mark.slow
def test_ctrl_c_with_an_open_event_stream_ends_the_server_and_stops_the_run(
    tmp_path: Path,
) -> None:
    runs_dir = tmp_path / "runs"
    server = _Server(runs_dir)
    run_id = server.call("api/runs", {"model": "hvass", "steps": 5000, "seed": 0})["id"]
    server.wait(run_id, lambda d: d["status"] == "running" and d["step"] >= 10)
    stream = urllib.request.urlopen(server.url + f"api/runs/{run_id}/events", timeout=30)
    assert stream.readline().startswith(b"retry:")  # the stream is open
    t0 = time.monotonic()
    server.proc.send_signal(signal.SIGINT)
    server.proc.wait(timeout=30)
    assert time.monotonic() - t0 < 20  # the stream does not hold the server up
    stream.close()
    assert server.proc.stdout is not None
    server.proc.stdout.close()
    pid = json.loads((runs_dir / run_id / "run.json").read_text())["pid"]
    assert _gone(pid)
    assert (runs_dir / run_id / "state.safetensors").exists()  # saved on the way out: resumable
