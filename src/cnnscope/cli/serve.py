"""``cnnscope serve``: the web app on localhost, like netron or TensorBoard."""

from __future__ import annotations

import argparse
import errno
import socket
import sys
from pathlib import Path

from ._common import (
    ModelChoice,
    UserError,
    add_data_flag,
    add_model_flags,
    device,
    int_in,
    model_choices,
)

HELP = "the web app: draw a digit and watch every layer respond"

_LOOPBACK = ("127.0.0.1", "localhost", "::1")


def add(p: argparse.ArgumentParser) -> None:
    add_model_flags(p, many=True)
    p.add_argument(
        "--host",
        default="127.0.0.1",
        help="interface to bind; anything but loopback exposes the app",
    )
    p.add_argument(
        "--allowed-host",
        action="append",
        default=[],
        metavar="NAME",
        help="extra Host names the server accepts besides loopback names and --host (repeatable)",
    )
    p.add_argument(
        "--port", type=int_in(0, 65535), default=8000, help="TCP port; 0 picks a free one"
    )
    p.add_argument("--open", action="store_true", help="open the page once the server listens")
    add_data_flag(p, "MNIST folder for the random test digits")
    p.add_argument(
        "--device",
        default="cpu",
        help="cpu; the server computes on the CPU (one drawing takes milliseconds there)",
    )
    p.add_argument(
        "--runs-dir",
        type=Path,
        default=None,
        metavar="DIR",
        help="folder of the Train tab's runs (the user cache's cnnscope/runs if not given)",
    )
    p.add_argument(
        "--allow-training",
        action="store_true",
        help="let the page start training runs on a non-loopback --host (on for loopback)",
    )
    p.add_argument(
        "--threads",
        type=int_in(1, 256),
        default=1,
        help="torch threads per forward pass; one image gains nothing from more",
    )
    p.add_argument(
        "--workers",
        type=int_in(1, 64),
        default=1,
        help="server processes sharing the disk caches, each handed its share of the "
        "connections; about one per core (a classroom: --workers 2 on two cores)",
    )


def _model_choices(args: argparse.Namespace) -> list[ModelChoice]:
    """The models to serve: those named, in order, then the other shipped built-ins.

    A built-in named without weights must have shipped weights (the error says how to get
    them) and fails here, before anything listens.
    """
    from ..checkpoints import bundled_models, bundled_path
    from ..models import is_foreign_spec

    shipped = bundled_models()
    named = [c for c in model_choices(args) if c.model or c.weights]
    for c in named:
        if c.model and not c.weights and not is_foreign_spec(c.model) and c.model not in shipped:
            bundled_path(c.model)  # raises the error that says how to get weights
    if not named and "deep_mnist" not in shipped:
        bundled_path("deep_mnist")
    taken = {c.model for c in named if c.model and not c.weights}
    return [*named, *(ModelChoice(n) for n in shipped if n not in taken)]


def run(args: argparse.Namespace) -> int:
    import torch
    import uvicorn

    from .. import __version__
    from ..server.app import create_app, served_models
    from ..server.serving import freeze_heap, uvicorn_options

    torch.set_num_threads(args.threads)
    choices = _model_choices(args)  # a model without weights fails before anything listens
    if args.device != "auto" and device(args).type != "cpu":
        raise UserError(
            f"--device {args.device}: the server runs on the CPU for now (one drawing is "
            "~1 ms there); use --device cpu"
        )
    sock = bind(args.host, args.port)  # a port in use fails before the models load
    try:
        if args.host not in _LOOPBACK:
            print(
                f"warning: binding {args.host} makes the app reachable from other machines; "
                "it has no authentication.",
                file=sys.stderr,
            )
        models = served_models(choices)  # loaded here too: a bad file fails before workers
        training, training_off = training_policy(args.host, args.allow_training, args.workers)
        app = create_app(
            models,
            data_dir=args.data_dir,
            allowed_hosts=[args.host, *args.allowed_host],
            runs_dir=args.runs_dir,
            training=training,
            training_off=training_off,
        )
        url = _url(args.host, sock.getsockname()[1])
        # Printed only now: a browser pointed at the URL connects (the backlog holds it
        # until uvicorn accepts), it is never refused.
        served = ", ".join(m.id for m in models)
        processes = f" ({args.workers} worker processes)" if args.workers > 1 else ""
        print(f"cnnscope {__version__}: serving {served} at {url}{processes}", flush=True)
        if args.open:
            import threading
            import webbrowser

            # In a thread: a console browser would otherwise hold the server back until
            # it quits. The socket listens already, so the page's first request waits.
            threading.Thread(target=webbrowser.open, args=(url,), daemon=True).start()
        if args.workers > 1:
            from dataclasses import asdict

            from ..server.serving import ModelSpec, Settings, run_workers

            del app, models  # each worker loads its own
            settings = Settings(
                models=[ModelSpec(**asdict(c)) for c in choices],
                data_dir=args.data_dir,
                allowed_hosts=[args.host, *args.allowed_host],
                threads=args.threads,
                runs_dir=str(args.runs_dir) if args.runs_dir else None,
                training=training,
                training_off=training_off,
            )
            run_workers(sock, settings, args.workers)
            return 0
        config = uvicorn.Config(app, log_level="warning", **uvicorn_options())
        freeze_heap()
        uvicorn.Server(config).run(sockets=[sock])
    finally:
        sock.close()
    return 0


def training_policy(host: str, allow: bool, workers: int = 1) -> tuple[bool, str]:
    """Whether the page may train (on a loopback address, or with --allow-training, in one
    server process), and the reason it may not."""
    if workers > 1:
        # Each process would hold its own run manager: "one training at a time" needs one.
        return False, (
            f"the server runs {workers} processes (--workers), and each would train on its "
            "own; restart it with --workers 1 to train from the page"
        )
    if host in _LOOPBACK or allow:
        return True, ""
    return False, (
        f"the server binds {host}, not a loopback address, and anyone who reaches it could "
        "start runs; restart it with --allow-training to allow it"
    )


def bind(host: str, port: int) -> socket.socket:
    """A socket listening on ``host``:``port`` (0: a free port); a port in use: UserError."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    # As uvicorn does: a restart may rebind a port whose old connections linger in TIME_WAIT.
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
        sock.listen(2048)
    except OSError as e:
        sock.close()
        if e.errno == errno.EADDRINUSE:
            raise UserError(
                f"port {port} on {host} is in use by another program; try --port {port + 1}"
            ) from None
        raise UserError(f"cannot listen on {host}:{port}: {e.strerror or e}") from None
    sock.set_inheritable(True)
    return sock


def _url(host: str, port: int) -> str:
    """The address to open: loopback for a wildcard bind, brackets around IPv6."""
    shown = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(host, host)
    return f"http://[{shown}]:{port}/" if ":" in shown else f"http://{shown}:{port}/"
