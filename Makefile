# decrappify: the two commands of the README, and their helpers.
#   make demo   install (CPU) and run the demo end to end
#   make test   install everything the tests need and run lint + the test suite
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
TORCH ?= torch==2.13.0
PYTEST_ARGS ?=

.PHONY: demo test venv venv-test system-deps lint docs clean

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

test: system-deps venv-test lint docs
	$(BIN)/python -m pytest $(PYTEST_ARGS)

docs: venv-test
	$(BIN)/mkdocs build --strict

clean:
	rm -rf $(VENV) build dist src/*.egg-info .pytest_cache .ruff_cache decrappify-demo
