# Two front-door commands (see README):  make samples   |   make test
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed

.PHONY: setup samples test lint bench browser clean

setup: $(STAMP)

# CPU-only torch: constraints.txt keeps pip off the multi-GB CUDA build.
$(STAMP): pyproject.toml constraints.txt
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --disable-pip-version-check -c constraints.txt -e ".[dev,ray]"
	touch $(STAMP)

samples: setup
	$(BIN)/excnet restore examples -o out/samples
	@echo "restored samples are in out/samples/"

# Debian's chromium drives the browser test (Playwright must not download a browser).
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium; }

test: setup browser
	$(BIN)/ruff check src tests benchmarks scripts
	$(BIN)/pytest

bench: setup
	$(BIN)/python benchmarks/speed.py

clean:
	rm -rf $(VENV) out test-artifacts
