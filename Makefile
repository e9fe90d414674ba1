# Two front-door commands (see README):  make samples   |   make test
PY       ?= python3
VENV     := .venv
BIN      := $(VENV)/bin
# From the locks only: exact versions, hashes checked, wheels only, nothing resolved, two pip
# processes at once. The indexes come from the machine's pip configuration (PyTorch's CPU
# build among them).
LOCKED   := $(BIN)/python scripts/install_lock.py
RUNTIME  := $(VENV)/.installed-runtime
DEV      := $(VENV)/.installed-dev

.PHONY: setup setup-dev samples test test-latest lock lint bench browser clean

setup: $(RUNTIME)
setup-dev: $(DEV)

# Runtime only: what `excnet` needs (the Ray, test and benchmark extras come with setup-dev).
$(RUNTIME): requirements.lock pyproject.toml
	@[ -x $(BIN)/python ] || $(PY) -m venv $(VENV)
	$(LOCKED) requirements.lock
	$(BIN)/pip install -q --disable-pip-version-check --no-deps --no-build-isolation -e .
	@touch $@

$(DEV): $(RUNTIME) requirements-ray.lock requirements-dev.lock
	$(LOCKED) requirements-ray.lock requirements-dev.lock
	@touch $@

samples: setup
	$(BIN)/excnet restore examples -o out/samples
	@echo "restored samples are in out/samples/"

# Debian's chromium drives the browser test (Playwright must not download a browser).
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium; }

lint: setup-dev
	$(BIN)/ruff check src tests benchmarks scripts

test: setup-dev browser lint
	$(BIN)/pytest

# The newest releases within pyproject.toml's ranges, in a venv of their own: the suite, then
# which packages moved against the lock and how far the restored samples moved.
test-latest: browser
	rm -rf .venv-latest
	$(PY) -m venv .venv-latest
	.venv-latest/bin/pip install -q --disable-pip-version-check -e ".[dev,ray]"
	.venv-latest/bin/ruff check src tests benchmarks scripts
	.venv-latest/bin/pytest
	$(MAKE) samples
	.venv-latest/bin/excnet restore examples -o out/samples-latest
	.venv-latest/bin/python scripts/compare_latest.py out/samples out/samples-latest

# Re-resolve the locks from pyproject.toml's ranges in a clean environment, then run the suite
# on a venv made from them.
lock:
	$(PY) scripts/lock.py
	rm -rf $(VENV)
	$(MAKE) test

bench: setup-dev
	$(BIN)/python benchmarks/speed.py

clean:
	rm -rf $(VENV) .venv-latest out test-artifacts
