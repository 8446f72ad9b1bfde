# qkdnode: every target bootstraps .venv itself on a machine with python3 and g++.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
# Tests run on both cores; cocotb/Verilator builds are cached under .cache/ so a second run is fast.
JOBS   ?= 2

.PHONY: all venv test test-all hil-model hil-rtl demo demo-rtl docs bench bitstreams clean

all: test

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@

venv: $(STAMP)

# Unit, simulator and cocotb tests, then the HIL suite on the behavioural boards and on the RTL
# twin (its short subset). Slow runs (bitstreams, long statistics) are in test-all / bitstreams.
test: $(STAMP)
	$(BIN)/python -m pytest -n $(JOBS) -m "not slow" tests
	$(MAKE) hil-model hil-rtl

hil-model: $(STAMP)
	$(BIN)/python -m pytest -q hil/suite --target model

hil-rtl: $(STAMP)
	$(BIN)/python -m pytest -q hil/suite --target rtl

test-all: $(STAMP)
	$(BIN)/python -m pytest -n $(JOBS) tests

demo: $(STAMP)
	$(BIN)/qkdnode demo

# The demo with Bob's gateware in Verilator (his RTL twin): 0 km, 90 % detectors, 40-cycle slots,
# one block of n_Z = 50 000; builds the twin once, then some 20 CPU minutes (docs/operations.md).
demo-rtl: $(STAMP)
	$(BIN)/qkdnode demo --board rtl

docs: $(STAMP)
	$(BIN)/qkdnode docs protocol --write docs/protocol.md

bench: $(STAMP)
	$(BIN)/qkdnode bench link --json
	$(BIN)/qkdnode bench decode --json
	$(BIN)/qkdnode bench tagger --json

# Bitstreams for the iCEBreaker and ULX3S (YoWASP tools from the `fpga` extra) and Verilog for
# the Arty A7; reports (resources, Fmax, timing) land in build/BOARD-ROLE/report.json.
bitstreams: $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[fpga]'
	$(BIN)/python -m pytest -p no:xdist -m slow tests/gateware/test_boards.py

clean:
	rm -rf .cache build .pytest_cache
