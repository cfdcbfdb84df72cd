"""The ``cnnscope`` command: a thin layer of flags over the Python API.

Every subcommand calls public functions and prints what they return; errors that a user
can fix (missing data, a corrupt checkpoint, an unknown name) end with one line on stderr
and exit status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from . import __version__
from .train import Callback

# Help for each TrainConfig field that the train command exposes as a flag.
_TRAIN_FLAGS: dict[str, str] = {
    "model": "architecture (deep_mnist, hvass, single_conv, lenet5)",
    "epochs": "passes over the training set (ignored when --steps > 0)",
    "steps": "total optimizer steps; 0 = epochs × steps per epoch",
    "batch_size": "images per step",
    "optimizer": "adam, adamw or sgd",
    "lr": "peak learning rate",
    "schedule": "onecycle or constant",
    "weight_decay": "weight decay (decoupled for adamw)",
    "label_smoothing": "label smoothing of the cross-entropy, 0–1",
    "dropout": "dropout before the last layer; default: the architecture's",
    "seed": "random seed for weights, shuffling and dropout",
    "train_limit": "train on the first N images only; 0 = all 55,000",
    "run_dir": "folder for weights, state, metrics, TensorBoard and snapshots",
    "log_every": "steps between metric lines",
    "snapshot_size": "test images in the embedding snapshots; 0 = none",
}


class _Failure(Exception):
    """A user-fixable error: printed as one line, exit status 2."""


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help()
        return 2
    from .checkpoints import CheckpointError
    from .data import DataError

    try:
        return int(args.func(args) or 0)
    except (DataError, CheckpointError, ValueError, FileNotFoundError, _Failure) as e:
        print(f"cnnscope {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="cnnscope",
        description="Train a CNN on MNIST and see what it learned.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--version", action="version", version=f"cnnscope {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    def command(name: str, help_: str) -> argparse.ArgumentParser:
        return sub.add_parser(
            name,
            help=help_,
            description=help_,
            formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        )

    m = command("models", "list the architectures with parameter counts and stage shapes")
    m.add_argument("--json", action="store_true", help="print JSON")
    m.set_defaults(func=_cmd_models)

    d = command("data", "find the data, verify its checksums and show the splits")
    d.add_argument("--data-dir", help="folder with the four IDX .gz files")
    d.add_argument("--json", action="store_true", help="print JSON")
    d.set_defaults(func=_cmd_data)

    t = command("train", "train a model (progress bar, checkpoints, metrics, snapshots)")
    t.add_argument(
        "--recipe",
        default="fast",
        choices=["fast", "seed"],
        help="fast: tuned for CPU; seed: the TensorFlow tutorial's",
    )
    _add_config_flags(t)
    t.add_argument("--data-dir", help="folder with the four IDX .gz files")
    t.add_argument("--resume", action="store_true", help="continue from RUN_DIR/state.safetensors")
    t.add_argument(
        "--dry-run", action="store_true", help="a seconds-long smoke run: 20 steps on 1,000 images"
    )
    t.add_argument("--json", action="store_true", help="print the final metrics as JSON")
    t.set_defaults(func=_cmd_train)

    e = command("evaluate", "test accuracy and per-class accuracy on the 10,000 test images")
    _add_model_flags(e)
    e.add_argument("--data-dir", help="folder with the four IDX .gz files")
    e.add_argument("--json", action="store_true", help="print JSON")
    e.add_argument("--out", help="write confusion.png, mistakes.png and evaluation.json here")
    e.add_argument("--no-cache", action="store_true", help="recompute the predictions")
    e.set_defaults(func=_cmd_evaluate)

    x = command("explain", "attribution maps: which pixels made the network decide")
    src = x.add_mutually_exclusive_group(required=True)
    src.add_argument("--image", help="an image file (a drawing, a scan: preprocessed MNIST-style)")
    src.add_argument("--test-index", type=int, help="an MNIST test image, 0–9999")
    from .analysis.attribution import METHODS

    x.add_argument("--method", default="all", choices=[*METHODS, "all"], help="attribution method")
    x.add_argument("--target", type=int, help="class to explain, 0–9; default: the predicted one")
    x.add_argument("--layer", default="conv2", help="stage for gradcam")
    _add_model_flags(x)
    x.add_argument("--data-dir", help="folder with the four IDX .gz files")
    x.add_argument("--out", required=True, help="folder for attribution.png and attribution.json")
    x.set_defaults(func=_cmd_explain)
    b = command("embed", "2-D embeddings of training snapshots: PNG per snapshot, GIF, JSON")
    where = b.add_mutually_exclusive_group()
    where.add_argument("--run", help="a run folder made by cnnscope train")
    where.add_argument("--model", default="deep_mnist", help="a shipped model's snapshots")
    b.add_argument("--layer", default="fc1", choices=["fc1", "logits"], help="representation")
    b.add_argument("--method", default="tsne", choices=["tsne", "pca", "umap"], help="embedding")
    b.add_argument(
        "--independent",
        action="store_true",
        help="embed each snapshot on its own instead of from the previous one",
    )
    b.add_argument("--perplexity", type=float, default=30.0, help="t-SNE perplexity")
    b.add_argument("--out", required=True, help="folder for frames, embedding.gif, embedding.json")
    b.add_argument("--tensorboard", help="also write TensorBoard projector files here")
    b.add_argument("--data-dir", help="MNIST folder (digit sprites for the projector)")
    b.set_defaults(func=_cmd_embed)

    f = command("features", "activation maximization: the image each unit of a layer likes most")
    f.add_argument("--layer", required=True, help="stage: conv1, conv2, fc1, logits, prob, …")
    f.add_argument("--method", default="regularized", choices=["regularized", "plain"])
    f.add_argument("--units", help="e.g. 0-15 or 3,5,9; default: all")
    f.add_argument("--steps", type=int, help="optimisation steps (regularized 80, plain 100)")
    f.add_argument("--variants", type=int, default=1, help="images per unit (diverse)")
    f.add_argument("--fourier", action="store_true", help="decorrelated Fourier parameterization")
    for flag, what in (
        ("jitter", "random translation"),
        ("transforms", "scale and rotation"),
        ("blur", "blur between steps"),
        ("penalties", "L2 and TV penalties"),
    ):
        f.add_argument(f"--no-{flag}", action="store_true", help=f"switch off {what}")
    f.add_argument(
        "--diversity",
        type=float,
        help="push a unit's variants apart (default 1.0 when --variants > 1)",
    )
    f.add_argument(
        "--compare",
        metavar="UNIT",
        help="instead: one unit (e.g. logits:3) with each regularizer on and off",
    )
    f.add_argument("--seed", type=int, default=0)
    _add_model_flags(f)
    f.add_argument("--out", required=True, help="folder for the PNG grid and JSON")
    f.set_defaults(func=_cmd_features)

    fl = command("filters", "a conv layer's learned kernels as images")
    fl.add_argument("--layer", default="conv1", help="a conv stage")
    _add_model_flags(fl)
    fl.add_argument("--out", required=True, help="folder for filters-LAYER.png and .json")
    fl.set_defaults(func=_cmd_filters)

    te = command("top-examples", "the test images that excite one unit most")
    te.add_argument("--layer", required=True, help="stage, e.g. conv2, relu2, fc1, logits")
    te.add_argument("--unit", type=int, required=True, help="channel or unit index")
    te.add_argument("-k", type=int, default=9, help="how many images")
    _add_model_flags(te)
    te.add_argument("--data-dir", help="folder with the four IDX .gz files")
    te.add_argument("--out", required=True, help="folder for the PNG and JSON")
    te.set_defaults(func=_cmd_top_examples)

    un = command("unused", "channels and units that (almost) never fire on the test set")
    un.add_argument("--layers", help="comma-separated stages; default: every ReLU, pool and fc")
    un.add_argument(
        "--threshold",
        type=float,
        default=1e-3,
        help="unused if its largest mean activation < threshold × the layer's largest",
    )
    _add_model_flags(un)
    un.add_argument("--data-dir", help="folder with the four IDX .gz files")
    un.add_argument("--json", action="store_true", help="print JSON")
    un.set_defaults(func=_cmd_unused)

    s = command("serve", "the web app: draw a digit and watch every layer respond")
    _add_model_flags(s)
    s.add_argument(
        "--host",
        default="127.0.0.1",
        help="interface to bind; anything but loopback exposes the app",
    )
    s.add_argument("--port", type=int, default=8000, help="TCP port")
    s.add_argument("--open", action="store_true", help="open the page in a browser")
    s.add_argument("--data-dir", help="MNIST folder for the random test digits")
    s.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads per forward pass; one image gains nothing from more",
    )
    s.set_defaults(func=_cmd_serve)
    return p


def _add_model_flags(p: argparse.ArgumentParser) -> None:
    g = p.add_mutually_exclusive_group()
    g.add_argument("--model", default="deep_mnist", help="shipped weights of this architecture")
    g.add_argument("--weights", help="a .safetensors file written by cnnscope train")


def _add_config_flags(p: argparse.ArgumentParser) -> None:
    from .train import RECIPES, TrainConfig

    for f in dataclasses.fields(TrainConfig):
        if f.name not in _TRAIN_FLAGS:
            continue
        default = f.default
        kind: Any = {"float | None": float}.get(str(f.type), type(default))
        if f.name in RECIPES["fast"]:
            shown = ", ".join(f"{r}: {v.get(f.name, default)}" for r, v in RECIPES.items())
        else:
            shown = f"{default}"
        choices = {"optimizer": ["adam", "adamw", "sgd"], "schedule": ["onecycle", "constant"]}
        p.add_argument(
            "--" + f.name.replace("_", "-"),
            type=kind,
            choices=choices.get(f.name),
            default=argparse.SUPPRESS,
            help=f"{_TRAIN_FLAGS[f.name]} ({shown})",
        )


def _cmd_models(args: argparse.Namespace) -> int:
    from .analysis.activations import describe
    from .checkpoints import bundled_models, bundled_path, read_metadata
    from .models import MODELS

    shipped = set(bundled_models())
    rows = []
    for name in MODELS:
        info = describe(name)
        if name in shipped:
            metrics = read_metadata(bundled_path(name)).get("metrics", {})
            info["shipped_test_accuracy"] = metrics.get("test_accuracy")
        rows.append(info)
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    for info in rows:
        acc = info.get("shipped_test_accuracy")
        shipped_note = f"shipped weights: {acc:.2%} test accuracy" if acc else "no shipped weights"
        print(f"{info['name']:<12} {info['parameters']:>10,} parameters   {shipped_note}")
        print(f"  {info['description']}")
        print("  " + "  ".join(f"{k} {'×'.join(map(str, v))}" for k, v in info["stages"].items()))
    return 0


def _cmd_data(args: argparse.Namespace) -> int:
    from .data import load_mnist

    data = load_mnist(args.data_dir, download=True)
    info = {
        "source": str(data.source),
        "sha256": data.checksum,
        "train": len(data.train_images),
        "validation": len(data.validation_images),
        "test": len(data.test_images),
    }
    if args.json:
        print(json.dumps(info, indent=2))
    else:
        print(f"data: {info['source']} (checksums verified)")
        sizes = "  ".join(f"{k} {info[k]:,}" for k in ("train", "validation", "test"))
        print(f"splits: {sizes}")
        print(f"content sha256: {info['sha256']}")
    return 0


def _cmd_train(args: argparse.Namespace) -> int:
    from .train import TrainConfig, fit

    overrides = {name: getattr(args, name) for name in _TRAIN_FLAGS if hasattr(args, name)}
    if args.data_dir:
        overrides["data_dir"] = args.data_dir
    if args.dry_run:
        overrides = {
            "steps": 20,
            "train_limit": 1000,
            "snapshot_size": 100,
            "log_every": 5,
            **overrides,
        }
    config = TrainConfig.from_recipe(args.recipe, **overrides)
    progress = _ProgressBar()
    try:
        result = fit(config, [progress], resume=args.resume)
    except KeyboardInterrupt:
        progress.close()
        print(
            f"\ninterrupted at step {progress.step}; the state is saved. Continue with:\n"
            f"  cnnscope train --resume --run-dir {config.run_dir} (and the same settings)",
            file=sys.stderr,
        )
        return 130
    progress.close()
    if args.json:
        print(json.dumps({"weights": str(result.weights), **result.metrics}, indent=2))
    else:
        m = result.metrics
        print(
            f"{config.model}: test accuracy {m['test_accuracy']:.2%}, validation "
            f"{m['validation_accuracy']:.2%}, {result.steps} steps in {result.seconds:.0f} s"
        )
        print(f"weights: {result.weights}")
    return 0


class _ProgressBar(Callback):
    """A tqdm bar over optimizer steps: loss, batch accuracy, last validation accuracy."""

    def __init__(self) -> None:
        self._bar: Any = None
        self.step = 0

    def on_train_begin(self, state: Any) -> None:
        from tqdm import tqdm

        self.step = state.step
        self._bar = tqdm(
            total=state.total_steps,
            initial=state.step,
            unit="step",
            mininterval=0.5,
            desc=state.config.model,
            dynamic_ncols=True,
        )

    def on_step_end(self, state: Any) -> None:
        self._bar.update(state.step - self.step)
        self.step = state.step
        if "accuracy" in state.logs:
            postfix = {"loss": f"{state.logs['loss']:.3f}", "acc": f"{state.logs['accuracy']:.3f}"}
            if "val_accuracy" in state.logs:
                postfix["val"] = f"{state.logs['val_accuracy']:.4f}"
            self._bar.set_postfix(postfix, refresh=False)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from pathlib import Path

    from . import load_model
    from .analysis.evaluation import report, untrained_accuracy
    from .data import load_mnist

    model, meta = load_model(args.weights or args.model)
    data = load_mnist(args.data_dir)
    rep = report(model, data.test_images, data.test_labels, cache=not args.no_cache)
    seed = int(meta.get("train_config", {}).get("seed", 0))
    rep.extra = {
        "model": meta.get("model"),
        "weights": args.weights or f"shipped:{args.model}",
        "untrained_accuracy": untrained_accuracy(model, data.test_images, data.test_labels, seed),
    }
    summary = rep.as_dict()
    if args.out:
        from .plots import confusion_figure, mistakes_figure

        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        confusion_figure(rep).savefig(out / "confusion.png", dpi=120)
        mistakes = rep.mistakes()
        mistakes_figure(
            mistakes[:64],
            data.test_images.numpy(),
            title=f"{len(mistakes)} misclassified test digits; the 64 most confident",
        ).savefig(out / "mistakes.png", dpi=120)
        full = rep.as_dict(mistakes=len(mistakes))
        (out / "evaluation.json").write_text(json.dumps(full, indent=1) + "\n")
    if args.json:
        print(json.dumps(summary, indent=2))
        return 0
    print(
        f"{summary['model']} ({summary['weights']}): test accuracy {rep.accuracy:.2%} on "
        f"{len(rep.labels):,} images ({summary['errors']} errors), cross-entropy "
        f"{rep.cross_entropy:.4f}; untrained {summary['untrained_accuracy']:.2%}"
    )
    print("digit  precision  recall     F1  support")
    m = rep.metrics
    for k in range(len(m["recall"])):
        print(
            f"  {k}    {m['precision'][k]:8.2%} {m['recall'][k]:8.2%} {m['f1'][k]:8.2%} "
            f"{m['support'][k]:7d}"
        )
    took = "from cache" if rep.cached else f"in {rep.seconds:.2f} s"
    print(f"predictions {took}" + (f"; wrote {args.out}" if args.out else ""))
    return 0


def _cmd_explain(args: argparse.Namespace) -> int:
    from pathlib import Path

    import numpy as np

    from . import load_model
    from .analysis.attribution import METHODS, Explainer
    from .plots import attribution_figure

    model, _ = load_model(args.weights or args.model)
    if args.image:
        image = _read_image(Path(args.image))
        source = args.image
    else:
        from .data import load_mnist

        data = load_mnist(args.data_dir)
        if not 0 <= args.test_index < len(data.test_images):
            raise _Failure(f"--test-index {args.test_index} outside 0–{len(data.test_images) - 1}")
        image = data.test_images[args.test_index].numpy().astype(np.float32) / 255.0
        source = f"test image {args.test_index} (label {int(data.test_labels[args.test_index])})"
    if args.target is not None and not 0 <= args.target <= 9:
        raise _Failure(f"--target {args.target} outside 0–9")
    methods = list(METHODS) if args.method == "all" else [args.method]
    results = [Explainer(model, m, layer=args.layer)(image, args.target) for m in methods]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    attribution_figure(image, results).savefig(out / "attribution.png", dpi=120)
    payload = {
        "source": source,
        "input": image.round(4).tolist(),
        "probabilities": results[0].probabilities,
        "attributions": [
            {
                "method": r.method,
                "target": r.target,
                "details": r.details,
                "map": r.map.round(6).tolist(),
            }
            for r in results
        ],
    }
    (out / "attribution.json").write_text(json.dumps(payload) + "\n")
    probs = results[0].probabilities
    print(
        f"{source}: predicted {int(np.argmax(probs))} (p={max(probs):.3f}); "
        f"explained class {results[0].target} with {', '.join(methods)}; wrote {out}"
    )
    return 0


def _read_image(path: Path) -> Any:
    """An image file → (28, 28) float in [0, 1], white ink on black, MNIST-style."""
    import numpy as np
    from PIL import Image, UnidentifiedImageError

    from .preprocess import to_mnist

    try:
        with Image.open(path) as img:
            gray = np.asarray(img.convert("L"), dtype=np.float32) / 255.0
    except (OSError, UnidentifiedImageError) as e:
        raise _Failure(f"{path}: not a readable image ({e})") from e
    if gray.mean() > 0.5:  # dark ink on light paper: flip to MNIST's white on black
        gray = 1.0 - gray
    return gray if gray.shape == (28, 28) else to_mnist(gray)


def _cmd_embed(args: argparse.Namespace) -> int:
    import io

    import matplotlib.pyplot as plt
    import numpy as np
    from PIL import Image

    from . import load_model
    from .analysis.embedding import embed_snapshots
    from .analysis.snapshots import load_snapshots, shipped_snapshots
    from .plots import class_points_figure, embedding_figure

    if args.run:
        source = Path(args.run) / "snapshots"
        if not (source / "index.json").exists():
            raise _Failure(
                f"{args.run} has no snapshots/ (it holds: "
                f"{', '.join(sorted(p.name for p in Path(args.run).glob('*'))) or 'nothing'}). "
                "Snapshots are written by cnnscope train unless --snapshot-size 0."
            )
        model_ref = str(Path(args.run) / "model.safetensors")
    else:
        source = shipped_snapshots(args.model)
        model_ref = args.model
    snaps = load_snapshots(source)
    model, _ = load_model(model_ref)
    n = len(snaps.steps)
    series, payload = embed_snapshots(
        snaps,
        model,
        stage=args.layer,
        method=args.method,
        aligned=not args.independent,
        perplexity=args.perplexity,
        callback=lambda i, total: print(
            f"\rembedding snapshot {i}/{total}", end="", file=sys.stderr, flush=True
        ),
    )
    print(file=sys.stderr)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    frames_png = []
    for i, frame in enumerate(payload["frames"]):
        coords = np.asarray(frame["coords"])
        title = (
            f"step {frame['step']} (epoch {frame['epoch']:.2f}): subset accuracy "
            f"{frame['subset_accuracy']:.1%}, 2-D kNN {frame['knn_2d']:.1%}"
        )
        fig = embedding_figure(coords, series.labels, title, limits=18)
        path = out / f"frame-{i:02d}-step-{frame['step']:06d}.png"
        fig.savefig(path, dpi=90)
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=70)
        frames_png.append(Image.open(buf).convert("P", palette=Image.Palette.ADAPTIVE))
        plt.close(fig)
    frames_png[0].save(
        out / "embedding.gif", save_all=True, append_images=frames_png[1:], duration=900, loop=0
    )
    class_points_figure(payload["classes"]).savefig(out / "class-vectors.png", dpi=100)
    (out / "embedding.json").write_text(json.dumps(payload) + "\n")
    if args.tensorboard:
        _projector(args, snaps, Path(args.tensorboard))
    for f in payload["frames"]:
        print(
            f"step {f['step']:6d}: kNN {f['knn_original']:.3f} ({args.layer}) / "
            f"{f['knn_2d']:.3f} (2-D), trustworthiness {f['trustworthiness']:.3f}"
        )
    mode = "independent" if args.independent else "aligned"
    print(
        f"{n} snapshots embedded ({args.method}, {mode}) in {series.seconds:.1f} s; "
        f"mean displacement between frames {series.displacement:.3f}; wrote {out}"
    )
    return 0


def _projector(args: argparse.Namespace, snaps: Any, folder: Path) -> None:
    """TensorBoard projector files: each snapshot's vectors, labels, a sprite of the digits."""
    import torch
    from torch.utils.tensorboard import SummaryWriter

    from .data import load_mnist

    data = load_mnist(args.data_dir)
    idx = torch.as_tensor(snaps.indices)
    sprites = data.test_images[idx].unsqueeze(1).float() / 255.0  # (N, 1, 28, 28)
    labels = [str(int(v)) for v in snaps.labels]
    with SummaryWriter(str(folder)) as writer:
        for step, vectors in zip(snaps.steps, snaps.stages[args.layer], strict=True):
            writer.add_embedding(
                torch.as_tensor(vectors),
                metadata=labels,
                label_img=sprites,
                global_step=step,
                tag=args.layer,
            )


def _parse_units(text: str | None) -> list[int] | None:
    if not text:
        return None
    units: list[int] = []
    for part in text.split(","):
        lo, _, hi = part.partition("-")
        if not lo.strip().isdigit() or (hi and not hi.strip().isdigit()):
            raise _Failure(f"--units {text!r}: use ranges and lists such as 0-15 or 3,5,9")
        units.extend(range(int(lo), int(hi) + 1) if hi else [int(lo)])
    return units


def _cmd_features(args: argparse.Namespace) -> int:
    import time

    import numpy as np

    from . import load_model
    from .analysis.features import RenderConfig, layer_images, with_overrides
    from .plots import image_grid_figure

    model, _ = load_model(args.weights or args.model)
    if args.compare:
        return _compare(args, model)
    base = RenderConfig.plain() if args.method == "plain" else RenderConfig()
    if args.diversity is None and args.variants > 1:
        args.diversity = 1.0
    cfg = with_overrides(
        base,
        steps=args.steps,
        variants=args.variants,
        seed=args.seed,
        fourier=args.fourier or None,
        jitter=0 if args.no_jitter else None,
        scale=0.0 if args.no_transforms else None,
        rotate=0.0 if args.no_transforms else None,
        blur_every=0 if args.no_blur else None,
        l2=0.0 if args.no_penalties else None,
        tv=0.0 if args.no_penalties else None,
        diversity=args.diversity,
    )
    units = _parse_units(args.units)
    t0 = time.perf_counter()
    images = layer_images(model, args.layer, units, cfg)
    seconds = time.perf_counter() - t0
    units = units if units is not None else list(range(len(images) // cfg.variants))
    titles = [f"{args.layer}:{u}" for u in units for _ in range(cfg.variants)]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = f"features-{args.layer}-{args.method}"
    image_grid_figure(
        images, titles, columns=16, title=f"{args.layer}, {args.method}: {len(units)} units"
    ).savefig(out / f"{stem}.png", dpi=110)
    payload = {
        "layer": args.layer,
        "method": args.method,
        "units": units,
        "config": dataclasses.asdict(cfg),
        "seconds": round(seconds, 2),
        "images": (np.round(images * 255).astype(np.uint8)).tolist(),
    }
    (out / f"{stem}.json").write_text(json.dumps(payload) + "\n")
    print(f"{len(images)} images for {args.layer} ({args.method}) in {seconds:.1f} s; wrote {out}")
    return 0


def _compare(args: argparse.Namespace, model: Any) -> int:
    import numpy as np

    from .analysis.features import compare_regularizers
    from .plots import image_grid_figure

    images = compare_regularizers(model, args.compare)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = f"compare-{args.compare.replace(':', '-')}"
    image_grid_figure(
        np.stack(list(images.values())),
        list(images),
        columns=len(images),
        title=f"{args.compare}: each regularizer on and off",
    ).savefig(out / f"{stem}.png", dpi=120)
    pixels = {k: np.round(v * 255).astype(np.uint8).tolist() for k, v in images.items()}
    (out / f"{stem}.json").write_text(json.dumps(pixels) + "\n")
    print(f"{args.compare}: {len(images)} variants; wrote {out / (stem + '.png')}")
    return 0


def _cmd_filters(args: argparse.Namespace) -> int:
    from . import load_model
    from .analysis.features import filters
    from .plots import image_grid_figure

    model, _ = load_model(args.weights or args.model)
    w = filters(model, args.layer)  # (out, in, kH, kW)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if w.shape[1] == 1:
        images, titles, cols = w[:, 0], [str(i) for i in range(len(w))], 16
    else:  # one row per output channel, one column per input channel
        images, titles, cols = w.reshape(-1, *w.shape[2:]), None, w.shape[1]
    image_grid_figure(
        images,
        titles,
        columns=cols,
        signed=True,
        title=f"{args.layer} kernels {w.shape}: blue < 0 < red",
    ).savefig(out / f"filters-{args.layer}.png", dpi=110)
    (out / f"filters-{args.layer}.json").write_text(
        json.dumps({"layer": args.layer, "shape": list(w.shape), "weights": w.round(6).tolist()})
    )
    print(
        f"{args.layer}: {w.shape[0]} filters of {w.shape[1]}×{w.shape[2]}×{w.shape[3]}; wrote {out}"
    )
    return 0


def _cmd_top_examples(args: argparse.Namespace) -> int:
    from . import load_model
    from .analysis.features import top_examples
    from .data import load_mnist
    from .plots import image_grid_figure

    model, _ = load_model(args.weights or args.model)
    data = load_mnist(args.data_dir)
    top = top_examples(model, data.test_images, args.layer, args.unit, k=args.k)
    images = data.test_images[[t.index for t in top]].numpy()
    titles = [f"#{t.index} ({int(data.test_labels[t.index])}) {t.score:.2f}" for t in top]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = f"top-{args.layer}-{args.unit}"
    image_grid_figure(
        images,
        titles,
        columns=3,
        boxes=[t.field for t in top],
        title=f"{args.layer}:{args.unit}: the test images it likes most",
    ).savefig(out / f"{stem}.png", dpi=110)
    (out / f"{stem}.json").write_text(json.dumps([t.__dict__ for t in top], indent=1) + "\n")
    print(
        f"{args.layer}:{args.unit}: test images {', '.join(str(t.index) for t in top)}; wrote {out}"
    )
    return 0


def _cmd_unused(args: argparse.Namespace) -> int:
    from . import load_model
    from .analysis.features import unused_channels
    from .data import load_mnist

    model, _ = load_model(args.weights or args.model)
    data = load_mnist(args.data_dir)
    if args.layers:
        layers = [s.strip() for s in args.layers.split(",")]
    else:
        layers = [s for s in model.stage_names if not s.startswith("conv") and s != "logits"]
    results = []
    for layer in layers:
        results.append(unused_channels(model, data.test_images, layer, args.threshold))
    if args.json:
        print(
            json.dumps(
                [{k: v for k, v in r.items() if k != "max_per_unit"} for r in results], indent=1
            )
        )
        return 0
    for r in results:
        listed = ", ".join(map(str, r["unused"][:20])) + (" …" if len(r["unused"]) > 20 else "")
        print(
            f"{r['stage']:<7} {len(r['unused']):4d} of {r['units']:4d} unused"
            + (f": {listed}" if r["unused"] else "")
        )
    return 0


def _cmd_serve(args: argparse.Namespace) -> int:
    import threading
    import webbrowser

    import torch
    import uvicorn

    from .checkpoints import bundled_models
    from .server.app import create_app, served_models

    torch.set_num_threads(max(1, args.threads))
    shipped = bundled_models()
    if args.weights:
        names = shipped
    else:
        if args.model not in shipped:
            from .checkpoints import bundled_path

            bundled_path(args.model)  # raises the error that says how to get weights
        names = [args.model] + [n for n in shipped if n != args.model]
    models = served_models(names, [args.weights] if args.weights else [])
    app = create_app(models, data_dir=args.data_dir)
    url = f"http://{'127.0.0.1' if args.host in ('0.0.0.0', '::') else args.host}:{args.port}/"
    if args.host not in ("127.0.0.1", "localhost", "::1"):
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


if __name__ == "__main__":
    raise SystemExit(main())
