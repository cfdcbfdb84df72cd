"""`cnnscope serve`: binding, warnings, missing weights."""

from __future__ import annotations

from cnnscope.cli import main


def test_serve_binds_loopback_and_warns_otherwise(monkeypatch, capsys) -> None:
    import uvicorn

    calls: list[dict] = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: calls.append(kw))
    assert main(["serve", "--port", "8123"]) == 0
    assert calls[-1]["host"] == "127.0.0.1" and calls[-1]["port"] == 8123
    out = capsys.readouterr()
    assert "http://127.0.0.1:8123/" in out.out and "warning" not in out.err
    assert main(["serve", "--host", "0.0.0.0", "--model", "lenet5"]) == 0
    err = capsys.readouterr().err
    assert calls[-1]["host"] == "0.0.0.0" and "warning: binding 0.0.0.0" in err


def test_serve_without_shipped_weights_says_how(monkeypatch, capsys, tmp_path) -> None:
    from cnnscope import store

    monkeypatch.setattr(store, "SHIPPED_DIR", tmp_path)
    assert main(["serve", "--model", "hvass"]) == 2
    assert "cnnscope train --model hvass" in capsys.readouterr().err


def test_serve_passes_allowed_hosts(monkeypatch, capsys) -> None:
    import uvicorn

    from cnnscope.server import app as server_app

    seen: list[dict] = []
    real = server_app.create_app

    def spy(models, **kw):
        seen.append(kw)
        return real(models, **kw)

    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: None)
    monkeypatch.setattr(server_app, "create_app", spy)
    argv = ["serve", "--model", "lenet5", "--allowed-host", "box.lan", "--allowed-host", "a.b"]
    assert main(argv) == 0
    assert seen[-1]["allowed_hosts"] == ["127.0.0.1", "box.lan", "a.b"]
    assert main(["serve", "--model", "lenet5"]) == 0
    assert seen[-1]["allowed_hosts"] == ["127.0.0.1"]
