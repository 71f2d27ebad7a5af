# decrappify: the two commands of the README, and their helpers.
#   make demo   install (CPU) and run the demo end to end
#   make test   install everything the tests need and run lint + the default test suite
#               (and the distributions' build + twine check); slow tests excluded
#   make test-slow    the slow tests (end to end, subprocesses, clean venvs); CI runs them too
#   make test-py312   the torch-free tests on Python 3.12 with the newest tifffile/zarr
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
TORCH ?= torch==2.13.0
PYTEST_ARGS ?=

# Python 3.12 for the second leg: on PATH, else the one pyenv keeps in the machine image
# (uv and pyenv cannot download interpreters here: only the package registries are reachable).
# (pyenv's shim is on PATH even where no 3.12 is selected: the first that runs is taken)
PY312 ?= $(shell for p in $$(command -v python3.12) $$(ls -d $(HOME)/.pyenv/versions/3.12*/bin/python3.12 2>/dev/null); do $$p -c pass 2>/dev/null && { echo $$p; break; }; done)
VENV312 ?= .venv312
# The tests of the modules that never import torch (the contract in pyproject.toml): no
# CPU build of torch for 3.12 is reachable, only a multi-GB CUDA one.
PURE_TESTS = tests/test_io_*.py tests/test_fuzz_read.py \
	tests/test_crappify_*.py tests/test_metrics_*.py tests/test_normalize.py \
	tests/test_sample.py tests/test_train_config.py tests/test_durations.py tests/test_module_sizes.py \
	tests/test_packaging.py tests/test_code_shape.py

.PHONY: demo test test-slow venv venv-test system-deps lint docs dist test-py312 clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# Core install: torch is named on the same command line so pip takes the CPU build on disk
# (a bare torch requirement would pull a multi-GB CUDA build). GPU users: see README.
$(VENV)/.core-installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet "$(TORCH)" -e .
	touch $@

$(VENV)/.test-installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet "$(TORCH)" -e ".[test]"
	touch $@ $(VENV)/.core-installed

venv: $(VENV)/.core-installed
venv-test: $(VENV)/.test-installed

# napari draws its canvas only under a real X server: Xvfb and the xcb libraries Qt needs.
system-deps:
	@if ! command -v Xvfb >/dev/null 2>&1 || ! ldconfig -p | grep -q libxcb-icccm.so.4 \
	    || ! ldconfig -p | grep -q libxcb-cursor.so.0; then \
	  echo "installing Xvfb and Qt's xcb libraries (apt-get)"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq \
	    xvfb xauth libxcb-icccm4 libxcb-keysyms1 libxcb-cursor0 libxkbcommon-x11-0 \
	    libxcb-image0 libxcb-render-util0 libxcb-xinerama0 libxcb-shape0 libxcb-randr0 \
	    libgl1 libegl1 libglx-mesa0 libgl1-mesa-dri libdbus-1-3 libfontconfig1 >/dev/null; \
	fi

demo: venv
	$(BIN)/decrappify demo

lint: venv-test
	$(BIN)/ruff format --check src tests benchmarks docs tools
	$(BIN)/ruff check src tests benchmarks docs tools
	$(BIN)/lint-imports
	$(BIN)/npe2 validate decrappify
	$(BIN)/python tools/module_sizes.py

test: system-deps venv-test lint docs dist
	$(BIN)/python -m pytest -m "not slow" $(PYTEST_ARGS)

# The tests marked slow (each over ~20 s: whole training runs, signals and file size
# limits in subprocesses, bioimage.io packages tested in a clean virtual environment).
test-slow: system-deps venv-test
	$(BIN)/python -m pytest -m slow $(PYTEST_ARGS)

# The sdist and wheel PyPI would get, checked by twine (metadata, README rendering).
dist: venv-test
	rm -rf dist
	$(BIN)/python -m build --outdir dist . >/dev/null
	$(BIN)/twine check --strict dist/*

$(VENV312)/.installed: pyproject.toml tools/requirements.py
	@test -n "$(PY312)" || { echo "error: no python3.12 found (set PY312=/path/to/python3.12)"; exit 1; }
	$(PY312) -m venv $(VENV312)
	$(BIN)/python tools/requirements.py --without torch > $(VENV312)/requirements.txt
	$(VENV312)/bin/python -m pip install --quiet --upgrade pip
	$(VENV312)/bin/python -m pip install --quiet -r $(VENV312)/requirements.txt "pytest>=8" "ome-zarr>=0.10"
	$(VENV312)/bin/python -m pip install --quiet --no-deps -e .
	touch $@

test-py312: venv-test $(VENV312)/.installed
	$(VENV312)/bin/python -m pip list 2>/dev/null | grep -iE '^(tifffile|zarr|numcodecs|imagecodecs) '
	$(VENV312)/bin/python -m pytest -m "not slow" -p no:cacheprovider $(PURE_TESTS)

docs: venv-test
	$(BIN)/mkdocs build --strict

clean:
	rm -rf $(VENV) $(VENV312) build dist src/*.egg-info .pytest_cache .ruff_cache decrappify-demo
