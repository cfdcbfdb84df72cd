"""The built sdist and wheel: what they hold, and the wheel installed offline beside torch.

Building takes ~10 s and the install test 30–90 s, so every test that builds is marked
slow; they need ``build`` (the [dev] extra) and no network.
"""

from __future__ import annotations

import email
import os
import re
import subprocess
import sys
import tarfile
import zipfile
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "src" / "cnnscope"

# Run from the unpacked sdist: quick, and reading the shipped weights and data/mnist.
SDIST_TESTS = ("tests/test_data.py", "tests/test_checkpoints.py")
FAST = "not slow and not browser"

# A proxy that refuses every connection: any attempt to reach the network fails at once.
_DEAD_PROXY = {"HTTP_PROXY": "http://127.0.0.1:9", "HTTPS_PROXY": "http://127.0.0.1:9"}
# Import names of what the extras bring; none of them may be in a base install.
OPTIONAL_MODULES = ("openTSNE", "sklearn", "umap", "tensorboard", "onnx", "onnxruntime")
OPTIONAL_DISTS = ("opentsne", "scikit-learn", "umap-learn", "tensorboard", "onnx")


@pytest.fixture(scope="session")
def dists(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(sdist, wheel) built from this tree; the wheel is built from the sdist, as pip would."""
    out = tmp_path_factory.mktemp("dist")
    subprocess.run(
        [sys.executable, "-m", "build", "--no-isolation", "--outdir", str(out), str(REPO)],
        check=True,
        capture_output=True,
        env=_clean_env(),
    )
    return next(out.glob("cnnscope-*.tar.gz")), next(out.glob("cnnscope-*.whl"))


def _clean_env(**extra: str) -> dict[str, str]:
    """This process's environment without PYTHONPATH and pip's settings: nothing leaks in."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k != "PYTHONPATH" and not k.startswith(("PIP_", "VIRTUAL_ENV"))
    }
    return {**env, "PIP_CONFIG_FILE": os.devnull, "PIP_DISABLE_PIP_VERSION_CHECK": "1", **extra}


def _wheel_metadata(wheel: Path) -> email.message.Message:
    with zipfile.ZipFile(wheel) as z:
        name = next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))
        return email.message_from_bytes(z.read(name))


def _package_files() -> Iterator[str]:
    """Every file of the package in the source tree, as a path inside the wheel."""
    for path in sorted(PACKAGE.rglob("*")):
        if path.is_file() and "__pycache__" not in path.parts:
            yield path.relative_to(PACKAGE.parent).as_posix()


@pytest.mark.slow
def test_wheel_holds_the_whole_package(dists: tuple[Path, Path]) -> None:
    with zipfile.ZipFile(dists[1]) as z:
        names = set(z.namelist())
    missing = [f for f in _package_files() if f not in names]
    assert not missing, f"not in the wheel: {missing}"
    for needed in (
        "cnnscope/py.typed",
        "cnnscope/weights/deep_mnist.safetensors",
        "cnnscope/data/mnist/t10k-images-idx3-ubyte.gz",  # the bundled MNIST test set
        "cnnscope/data/mnist/t10k-labels-idx1-ubyte.gz",
    ):
        assert needed in names
    # Only the test set: the 11 MB training set stays out of the wheel.
    assert not any(n.startswith("cnnscope/data/mnist/train-") for n in names)
    assert any(n.startswith("cnnscope/server/static/") for n in names)
    assert not any(n.startswith(("tests/", "data/")) for n in names)


@pytest.mark.slow
def test_wheel_metadata_declares_extras_and_licence(dists: tuple[Path, Path]) -> None:
    meta = _wheel_metadata(dists[1])
    assert meta["License-Expression"] == "MIT"
    extras = set(meta.get_all("Provides-Extra") or [])
    assert {"tsne", "umap", "tensorboard", "onnx", "all", "dev"} <= extras
    base = [r for r in meta.get_all("Requires-Dist") or [] if "extra ==" not in r]
    names = {re.split(r"[\s<>=!~;\[]", r, maxsplit=1)[0].lower() for r in base}
    assert not names & set(OPTIONAL_DISTS), f"base requirements pull {names & set(OPTIONAL_DISTS)}"
    torch = next(r for r in base if r.lower().startswith("torch"))
    assert "==" not in torch, (
        f"the package pins torch ({torch}); the pin belongs in constraints.txt"
    )


@pytest.mark.slow
def test_sdist_holds_the_tests_and_their_data(dists: tuple[Path, Path]) -> None:
    with tarfile.open(dists[0]) as t:
        names = {n.split("/", 1)[1] for n in t.getnames() if "/" in n}
    tests = {p.relative_to(REPO).as_posix() for p in (REPO / "tests").rglob("*.py")}
    assert tests <= names, f"not in the sdist: {sorted(tests - names)}"
    for needed in ("tests/conftest.py", "data/mnist/SHA256SUMS", "LICENSE", "CHANGELOG.md"):
        assert needed in names


@pytest.mark.slow
def test_sdist_tests_run(dists: tuple[Path, Path], tmp_path: Path) -> None:
    """The fast tests of two modules pass from an unpacked sdist (its conftest, its data)."""
    with tarfile.open(dists[0]) as t:
        t.extractall(tmp_path, filter="data")
    root = next(tmp_path.glob("cnnscope-*"))
    env = _clean_env(PYTHONPATH="src", XDG_CACHE_HOME=str(tmp_path / "cache"))
    where = subprocess.run(
        [sys.executable, "-c", "import cnnscope; print(cnnscope.__file__)"],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert Path(where.stdout.strip()).is_relative_to(root), "tests would not run the sdist's code"
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-m", FAST, *SDIST_TESTS],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert re.search(r"\d+ passed", run.stdout)


def _base_closure(wheel: Path) -> list[metadata.Distribution]:
    """The installed distributions that satisfy the wheel's base requirements, transitively.

    Taken from the environment running the tests (which has torch's CPU build), so the
    fresh venv gets exactly what a base install needs and nothing else.
    """
    todo = [r for r in _wheel_metadata(wheel).get_all("Requires-Dist") or []]
    seen: dict[str, metadata.Distribution] = {}
    while todo:
        req = todo.pop()
        name, _, marker = req.partition(";")
        if marker.strip() and not _marker_holds(marker):
            continue
        key = re.split(r"[\s<>=!~\[(]", name.strip(), maxsplit=1)[0]
        norm = re.sub(r"[-_.]+", "-", key).lower()
        if norm in seen:
            continue
        dist = metadata.distribution(key)
        seen[norm] = dist
        todo.extend(dist.requires or [])
    return list(seen.values())


def _marker_holds(marker: str) -> bool:
    """Whether an environment marker holds here; requirements of extras never do."""
    if "extra" in marker:
        return False
    from packaging.markers import Marker

    return Marker(marker).evaluate()


def _link_into(dist: metadata.Distribution, site: Path) -> None:
    """Symlink a distribution's top-level files and folders (its dist-info included)."""
    root = Path(str(dist.locate_file("")))
    tops = {Path(f).parts[0] for f in dist.files or [] if not str(f).startswith("..")}
    for top in tops:
        if not (site / top).exists():
            (site / top).symlink_to(root / top)


def _torch_fingerprint(python: Path) -> str:
    code = (
        "import hashlib, importlib.metadata as m, torch; d = m.distribution('torch'); "
        "print(torch.__version__, torch.__file__, "
        "hashlib.sha256(d.read_text('RECORD').encode()).hexdigest())"
    )
    return subprocess.run(
        [str(python), "-c", code], capture_output=True, text=True, check=True, env=_clean_env()
    ).stdout.strip()


@pytest.mark.slow
def test_wheel_installs_offline_beside_torch(dists: tuple[Path, Path], tmp_path: Path) -> None:
    """pip installs the wheel with no index into a venv that has torch; cnnscope runs there.

    The venv holds the CPU torch of this environment and the rest of the base closure
    (symlinked, as a pre-filled venv would hold them). pip runs with ``--no-index``, its
    config ignored and a dead proxy set, so any attempt to fetch or replace a package
    fails the test.
    """
    wheel = dists[1]
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    site = next((venv / "lib").glob("python3*/site-packages"))
    for dist in _base_closure(wheel):
        _link_into(dist, site)
    before = _torch_fingerprint(python)
    offline = _clean_env(**_DEAD_PROXY)
    pip = [sys.executable, "-m", "pip", "--python", str(python)]
    offline_install = ["install", "--no-index", "--no-compile", "--find-links", str(wheel.parent)]
    install = subprocess.run(
        [*pip, *offline_install, "cnnscope"],
        capture_output=True,
        text=True,
        env=offline,
    )
    assert install.returncode == 0, install.stdout + install.stderr
    check = subprocess.run([*pip, "check"], capture_output=True, text=True, env=offline)
    assert check.returncode == 0, check.stdout + check.stderr
    assert _torch_fingerprint(python) == before, "installing cnnscope changed torch"

    env = _clean_env(XDG_CACHE_HOME=str(tmp_path / "cache"))
    env.pop("CNNSCOPE_DATA", None)  # no data folder anywhere: only what the wheel holds
    run = dict(capture_output=True, text=True, env=env, cwd=tmp_path)
    found = subprocess.run(
        [
            str(python),
            "-c",
            "import cnnscope, importlib.util as u, sys; print(cnnscope.__file__);"
            f"print([m for m in {OPTIONAL_MODULES!r} if u.find_spec(m)])",
        ],
        check=True,
        **run,
    ).stdout.splitlines()
    assert Path(found[0]).is_relative_to(site), f"cnnscope imported from {found[0]}"
    assert found[1] == "[]", f"the base install has optional packages: {found[1]}"

    helped = subprocess.run([str(python), "-m", "cnnscope", "--help"], **run)
    assert helped.returncode == 0 and "evaluate" in helped.stdout, helped.stderr
    # Evaluation with no data folder and no network: the test set inside the wheel.
    cli = str(venv / "bin" / "cnnscope")
    evaluated = subprocess.run([cli, "evaluate"], **run)
    assert evaluated.returncode == 0, evaluated.stderr[-3000:]
    assert "99." in evaluated.stdout and "10,000 images" in evaluated.stdout, evaluated.stdout
    assert not (tmp_path / "cache" / "cnnscope" / "mnist").exists(), "it tried to download"
    described = subprocess.run([cli, "data"], **{**run, "env": {**env, **_DEAD_PROXY}})
    assert described.returncode == 0 and "test set only" in described.stdout, described.stderr
    # Training needs the training set: one line that says where to put it.
    trained = subprocess.run(
        [cli, "train", "--dry-run", "--run-dir", str(tmp_path / "run")],
        **{**run, "env": {**env, **_DEAD_PROXY}},
    )
    assert trained.returncode == 2, trained.stdout + trained.stderr
    assert "MNIST training set not found" in trained.stderr and "--data-dir" in trained.stderr
    assert len(trained.stderr.strip().splitlines()) == 1, trained.stderr

    # A view whose extra is missing names the extra to install.
    embed = subprocess.run(
        [str(python), "-c", "from cnnscope.analysis.embedding import Embedder; Embedder()"], **run
    )
    assert embed.returncode != 0
    assert "MissingExtra" in embed.stderr and "pip install 'cnnscope[tsne]'" in embed.stderr


def test_readme_links_resolve_and_images_read_without_loading() -> None:
    """Relative links point at files the sdist carries; images have alt text to read.

    On a package index relative links cannot load (no repository URL to make them
    absolute), so each image's alt text must say what the picture shows.
    """
    text = (REPO / "README.md").read_text()
    for _, target in re.findall(r"!?\[([^\]]*)\]\(([^)\s]+)\)", text):
        if re.match(r"[a-z]+:|#", target):
            continue
        assert (REPO / target).exists(), f"README links to a missing file: {target}"
    for alt, _ in re.findall(r"!\[([^\]]*)\]\(([^)\s]+)\)", text):
        assert len(alt.split()) >= 5, f"an image's alt text is too short to stand in: {alt!r}"


def test_cli_reference_covers_every_command() -> None:
    """The docs' CLI page (docs/_hooks/cli_reference.py) shows every command's flags."""
    import importlib.util

    from cnnscope.cli import COMMANDS

    spec = importlib.util.spec_from_file_location(
        "cli_reference", REPO / "docs" / "_hooks" / "cli_reference.py"
    )
    assert spec is not None and spec.loader is not None
    hook = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(hook)
    page = hook.on_page_markdown(f"# CLI\n\n{hook.MARKER}\n", page=None)
    assert hook.MARKER not in page
    for name in COMMANDS:
        assert f"## cnnscope {name}\n" in page
        assert f"usage: cnnscope {name}" in page
    assert "--data-dir" in page  # a command's own flags, not only the list of commands
