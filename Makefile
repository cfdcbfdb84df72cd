# cnnscope's commands. `make run` and `make test` set everything up on a fresh machine.
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip --disable-pip-version-check -q
HOST   ?= 127.0.0.1
PORT   ?= 8000

.PHONY: setup run test test-fast test-lowest check lint bench fuzz dist docs clean

setup: $(VENV)/.installed

# torch first, pinned by constraints.txt: the CPU build lies on disk; letting another
# package resolve torch would pull a multi-GB CUDA build.
$(VENV)/.installed: pyproject.toml constraints.txt
	python3 -m venv $(VENV)
	$(PIP) install -c constraints.txt torch
	$(PIP) install -c constraints.txt -e '.[dev]'
	touch $@

run: setup  ## the web app on the shipped deep_mnist weights
	$(VENV)/bin/cnnscope serve --host $(HOST) --port $(PORT)

lint: setup
	$(VENV)/bin/ruff check src tests bench
	$(VENV)/bin/ruff format --check src tests bench
	$(VENV)/bin/mypy

test: lint  ## lint, type-check, then every test (browser tests included)
	$(PY) -m pytest

test-fast: setup  ## the inner loop: lint, then every test not marked slow or browser (~30 s)
	$(VENV)/bin/ruff check src tests bench
	$(PY) -m pytest -q -m "not slow and not browser"

# Every >= in pyproject.toml, tested: a second venv with each base dependency at the lowest
# version claimed (torch 2.3 from PyPI is a CUDA build: ~3 GB to fetch, 5 GB installed,
# run on the CPU). Test tools at versions those floors allow: starlette 0.36's TestClient
# needs httpx < 0.28 and cannot address [::1] (a test-client limit; the server is
# uvicorn's). Third-party deprecation warnings stay warnings here.
LOWEST ?= .venv-lowest
test-lowest:  ## the fast tests at the lowest version of every dependency (~5 min)
	python3 -m venv $(LOWEST)
	python3 scripts/lowest_constraints.py > $(LOWEST)/constraints.txt
	$(LOWEST)/bin/pip install --disable-pip-version-check -q -c $(LOWEST)/constraints.txt \
		-e . pytest 'httpx<0.28' scikit-learn openTSNE tensorboard
	$(LOWEST)/bin/pip list 2>/dev/null | grep -iE '^(torch|numpy|fastapi|captum|scipy) '
	$(LOWEST)/bin/python -m pytest -q -p no:cacheprovider -m "not slow and not browser" \
		-o filterwarnings=default --ignore=tests/server/test_fuzz.py \
		--deselect 'tests/server/test_middleware.py::test_host_allow_list[http://[::1]:8000-allowed2-200]'

check: test

fuzz: setup  ## schemathesis over the OpenAPI schema: ≥ 5,000 cases, 0 server errors (~3 min)
	CNNSCOPE_FUZZ_EXAMPLES=300 CNNSCOPE_FUZZ_AT_LEAST=5000 $(PY) -m pytest -q -s tests/server/test_fuzz.py

bench: setup  ## every benchmark in bench/ but install_size.py (network), ~30 minutes on 2 cores
	$(PY) bench/train_speed.py
	$(PY) bench/train_profile.py
	$(PY) bench/best_model.py --speed
	$(PY) bench/predict_latency.py
	$(PY) bench/serve_many.py $(if $(BASELINE),--baseline $(BASELINE))  # BASELINE=DIR: another checkout
	$(PY) bench/first_paint.py --views
	$(PY) bench/eval_speed.py
	$(PY) bench/embedding_speed.py
	$(PY) bench/features_speed.py
	$(PY) bench/growth.py
	$(PY) bench/cli_startup.py
	$(PY) bench/server_load.py
	$(PY) bench/drawing_path.py --models all
	$(PY) bench/features_check.py

# Offline-safe: --no-isolation builds with the venv's setuptools ([dev] pins its floor), so
# neither target fetches anything.
dist: setup  ## sdist + wheel in dist/, checked by twine (the sdist carries tests/ and data/)
	rm -rf dist
	$(PY) -m build --no-isolation --outdir dist .
	$(VENV)/bin/twine check --strict dist/*

docs: setup  ## the documentation site into build/site, strict: a warning or broken link fails
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache build dist
