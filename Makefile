# qkdnode: every target bootstraps .venv itself on a machine with python3 and g++.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
# Tests run on both cores; cocotb/Verilator builds are cached under .cache/ so a second run is fast.
JOBS   ?= 2

.PHONY: all venv test test-all demo docs bench clean

all: test

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@

venv: $(STAMP)

test: $(STAMP)
	$(BIN)/python -m pytest -n $(JOBS) -m "not slow" tests

test-all: $(STAMP)
	$(BIN)/python -m pytest -n $(JOBS) tests

demo: $(STAMP)
	$(BIN)/qkdnode demo

docs: $(STAMP)
	$(BIN)/qkdnode docs protocol --write docs/protocol.md

bench: $(STAMP)
	$(BIN)/qkdnode bench link --json

clean:
	rm -rf .cache build .pytest_cache
