"""``cnnscope serve``: the web app on localhost, like netron or TensorBoard."""

from __future__ import annotations

import argparse
import sys

from ._common import add_data_flag, add_model_flags

HELP = "the web app: draw a digit and watch every layer respond"

_LOOPBACK = ("127.0.0.1", "localhost", "::1")


def add(p: argparse.ArgumentParser) -> None:
    add_model_flags(p)
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
    p.add_argument("--port", type=int, default=8000, help="TCP port")
    p.add_argument("--open", action="store_true", help="open the page in a browser")
    add_data_flag(p, "MNIST folder for the random test digits")
    p.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads per forward pass; one image gains nothing from more",
    )


def _model_names(args: argparse.Namespace) -> list[str]:
    """The shipped models to serve, --model first; raises how to get weights if it has none."""
    from ..checkpoints import bundled_models, bundled_path

    shipped = bundled_models()
    if args.weights:
        return shipped
    if args.model not in shipped:
        bundled_path(args.model)  # raises the error that says how to get weights
    return [args.model] + [n for n in shipped if n != args.model]


def run(args: argparse.Namespace) -> int:
    import threading
    import webbrowser

    import torch
    import uvicorn

    from .. import __version__
    from ..server.app import create_app, served_models

    torch.set_num_threads(max(1, args.threads))
    models = served_models(_model_names(args), [args.weights] if args.weights else [])
    app = create_app(models, data_dir=args.data_dir, allowed_hosts=[args.host, *args.allowed_host])
    url = f"http://{'127.0.0.1' if args.host in ('0.0.0.0', '::') else args.host}:{args.port}/"
    if args.host not in _LOOPBACK:
        print(
            f"warning: binding {args.host} makes the app reachable from other machines; "
            "it has no authentication.",
            file=sys.stderr,
        )
    print(f"cnnscope {__version__}: serving {', '.join(m.id for m in models)} at {url}", flush=True)
    if args.open:
        threading.Timer(1.0, webbrowser.open, args=(url,)).start()
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    return 0
