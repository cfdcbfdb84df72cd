"""`cnnscope serve`: binding, the URL once listening, a port in use, --open, warnings."""

from __future__ import annotations

import socket
import threading
import urllib.request

import pytest

from cnnscope.cli import main


@pytest.fixture
def served(monkeypatch: pytest.MonkeyPatch) -> list[dict]:
    """uvicorn's Server.run replaced: records its config, the socket it was handed, and
    whether the heap was frozen first (not frozen here: the test process lives on)."""
    import uvicorn

    from cnnscope.server import serving

    calls: list[dict] = []
    frozen: list[bool] = []

    def fake_run(self, sockets=None) -> None:
        (sock,) = sockets
        calls.append({"config": self.config, "sock": sock, "addr": sock.getsockname()})
        calls[-1]["frozen"] = bool(frozen)

    monkeypatch.setattr(uvicorn.Server, "run", fake_run)
    monkeypatch.setattr(serving, "freeze_heap", lambda: frozen.append(True))
    return calls


def _accepts(host: str, port: int) -> bool:
    with socket.create_connection((host, port), timeout=2):
        return True


def test_serve_binds_loopback_and_warns_otherwise(served, capsys) -> None:
    assert main(["serve", "--port", "0"]) == 0
    host, port = served[-1]["addr"]
    out = capsys.readouterr()
    assert host == "127.0.0.1" and port > 0
    assert f"http://127.0.0.1:{port}/" in out.out and "warning" not in out.err
    assert main(["serve", "--host", "0.0.0.0", "--port", "0", "--model", "lenet5"]) == 0
    out = capsys.readouterr()
    assert served[-1]["addr"][0] == "0.0.0.0" and "warning: binding 0.0.0.0" in out.err
    assert f"http://127.0.0.1:{served[-1]['addr'][1]}/" in out.out


def test_serve_uses_the_hardened_uvicorn_options(served, capsys) -> None:
    from cnnscope.server.serving import MAX_CONNECTIONS, HeaderTimeout

    assert main(["serve", "--port", "0", "--model", "lenet5"]) == 0
    config = served[-1]["config"]
    assert served[-1]["frozen"]  # no full collection walks torch and the models mid-load
    assert config.http is HeaderTimeout
    assert config.limit_concurrency == MAX_CONNECTIONS and config.timeout_keep_alive == 5


def test_serve_prints_and_opens_the_url_once_listening(served, monkeypatch, capsys) -> None:
    import webbrowser

    import uvicorn

    opened: list[tuple[str, bool]] = []
    done = threading.Event()
    expect_browser = True

    def fake_open(url: str, *args: object, **kwargs: object) -> bool:
        port = int(url.rsplit(":", 1)[1].strip("/"))
        printed = url in capsys.readouterr().out
        opened.append((url, printed and _accepts("127.0.0.1", port)))
        done.set()
        return True

    def serve_until_opened(self, sockets=None) -> None:
        served.append({"addr": sockets[0].getsockname()})
        if expect_browser:
            done.wait(10)  # the browser opens from a thread, while the server runs

    monkeypatch.setattr(webbrowser, "open", fake_open)
    monkeypatch.setattr(uvicorn.Server, "run", serve_until_opened)
    assert main(["serve", "--port", "0", "--model", "lenet5", "--open"]) == 0
    ((url, listening),) = opened
    assert listening, "the browser was opened before the URL was printed or the socket listened"
    assert url == f"http://127.0.0.1:{served[-1]['addr'][1]}/"
    opened.clear()
    expect_browser = False
    assert main(["serve", "--port", "0", "--model", "lenet5"]) == 0
    assert opened == []


def test_serve_port_in_use_is_one_line_with_a_suggestion(served, capsys) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        assert main(["serve", "--port", str(port), "--model", "lenet5"]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert f"port {port}" in err and f"--port {port + 1}" in err
    assert served == []


def test_serve_really_serves_the_page(monkeypatch, capsys) -> None:
    """A real uvicorn on a free port: the page answers, then the server stops."""
    import uvicorn

    real_run = uvicorn.Server.run
    answers: list[int] = []

    def run_and_stop(self, sockets=None) -> None:
        port = sockets[0].getsockname()[1]

        def client() -> None:
            try:
                for _ in range(200):  # wait on the server's own state, not a fixed sleep
                    if self.started:
                        break
                    threading.Event().wait(0.05)
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=10) as r:
                    answers.append(r.status)
            finally:
                self.should_exit = True

        threading.Thread(target=client, daemon=True).start()
        real_run(self, sockets=sockets)

    monkeypatch.setattr(uvicorn.Server, "run", run_and_stop)
    assert main(["serve", "--port", "0", "--model", "lenet5"]) == 0
    assert answers == [200]


def test_serve_without_shipped_weights_says_how(monkeypatch, capsys, tmp_path) -> None:
    from cnnscope import store

    monkeypatch.setattr(store, "SHIPPED_DIR", tmp_path)
    assert main(["serve", "--model", "hvass"]) == 2
    assert "cnnscope train --model hvass" in capsys.readouterr().err


def test_serve_passes_allowed_hosts(served, monkeypatch, capsys) -> None:
    from cnnscope.server import app as server_app

    seen: list[dict] = []
    real = server_app.create_app

    def spy(models, **kw):
        seen.append(kw)
        return real(models, **kw)

    monkeypatch.setattr(server_app, "create_app", spy)
    argv = ["serve", "--port", "0", "--model", "lenet5", "--allowed-host", "box.lan"]
    assert main([*argv, "--allowed-host", "a.b"]) == 0
    assert seen[-1]["allowed_hosts"] == ["127.0.0.1", "box.lan", "a.b"]
    assert main(["serve", "--port", "0", "--model", "lenet5"]) == 0
    assert seen[-1]["allowed_hosts"] == ["127.0.0.1"]


def test_serve_workers_hands_every_setting_to_the_worker_processes(
    served, monkeypatch, capsys, tmp_path
) -> None:
    from cnnscope.server import serving

    calls: list[tuple] = []
    monkeypatch.setattr(
        serving, "run_workers", lambda sock, *a: calls.append((sock.getsockname()[1], *a))
    )
    argv = ["serve", "--port", "0", "--model", "lenet5", "--workers", "2", "--threads", "1"]
    assert main([*argv, "--allowed-host", "class.example", "--runs-dir", str(tmp_path)]) == 0
    ((port, settings, workers),) = calls
    import dataclasses
    import json

    assert json.loads(json.dumps(dataclasses.asdict(settings)))["runs_dir"] == str(tmp_path)
    assert workers == 2 and not served  # the supervisor serves, not one in-process server
    assert settings.models[0] == serving.ModelSpec("lenet5")
    assert {m.model for m in settings.models[1:]} >= {"deep_mnist"}  # the other built-ins
    assert settings.allowed_hosts == ["127.0.0.1", "class.example"] and settings.threads == 1
    assert not settings.training and "--workers 1" in settings.training_off  # one trainer
    assert f"http://127.0.0.1:{port}/" in capsys.readouterr().out
    assert main(["serve", "--port", "0", "--workers", "0"]) == 2


def test_training_from_the_page_is_on_for_loopback_only_unless_allowed() -> None:
    from cnnscope.cli.serve import training_policy

    assert training_policy("127.0.0.1", False) == (True, "")
    assert training_policy("::1", False)[0]
    on, why = training_policy("0.0.0.0", False)
    assert not on and "0.0.0.0" in why and "--allow-training" in why
    assert training_policy("0.0.0.0", True) == (True, "")
