# Every target creates or reuses .venv and installs what it needs (Debian packages included).
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.pagefs-installed
NATIVE := $(wildcard impl/*/_*_build.py impl/*/*.c impl/*/*.h)

.PHONY: fuzz programs virtiofsd-rust setup test test-all verify conformance bench bench-wire bench-guest bench-scaling bench-mount bench-frontend-cpu bench-report test-bench lint docs clean vm qemu11 test-vm

# One install at a time: two make targets started together must not both pip-install at once.
$(STAMP): pyproject.toml constraints.txt setup.py scripts/install-system-deps $(NATIVE)
	flock .install.lock sh -c 'scripts/install-system-deps && \
	  { test -x $(PY) || python3 -m venv $(VENV); } && \
	  $(PY) -m pip install -q --disable-pip-version-check -c constraints.txt -e ".[dev]"'
	touch $@

setup: $(STAMP)

## make test: the project's tests, less those marked slow (under ~10 minutes on 2 cores)
# pytest's exit 5 (no tests collected) judged nothing: it fails, saying so.
PYTEST_RUN = $(PY) -m pytest $(1); status=$$?; \
	if [ $$status -eq 5 ]; then echo 'no tests were collected: pytest $(1)'; fi; exit $$status

test: $(STAMP)
	$(call PYTEST_RUN,-m "not slow")

## make test-all: every test, slow ones included
test-all: $(STAMP)
	$(call PYTEST_RUN,)

## make verify: spec self-checks, CrossHair, z3 proofs and a quick conformance run, as one table
verify: $(STAMP)
	$(PY) -m pagefs.verify

## make conformance: the full conformance matrix; reports land in reports/
conformance: $(STAMP)
	$(PY) -m pagefs.conformance.cli matrix --out reports

## make vm: a test guest from Debian's packages (kernel, busybox) and pagefs's agent, built in
## ~/.cache/pagefs/vm (PAGEFS_VM_CACHE); QEMU is the system's qemu-system-x86
vm: $(STAMP)
	scripts/install-system-deps qemu-system-x86
	$(PY) -m pagefs.conformance.vm.image

## make qemu11: QEMU 11.1 (DAX windows over vhost-user) from Debian unstable, unpacked in
## ~/.cache/pagefs/qemu11 with a private apt configuration; nothing installed system-wide
qemu11: $(STAMP)
	$(PY) -m pagefs.conformance.vm.qemu11

## make test-vm: real guests (make vm, make qemu11) on pagefs-host, QEMU's virtiofsd and 9p:
## the step list with the exerciser, conformance of vm:*, DAX under QEMU 11.1; writes
## reports/vm.md and the vm:* columns of reports/matrix.md (12-23 min under TCG on 2 shared cores)
test-vm: vm qemu11
	$(PY) -m pagefs.conformance.vm.suite --out reports

## make bench: every benchmark, then reports/bench/README.md and its PNG charts (about 10 min
## on 2 loaded cores). Knobs: BENCH_RUNS (runs of each table, default 5), BENCH_OUT, and each
## command's own flags through BENCH_WIRE, BENCH_GUEST, BENCH_SCALING, BENCH_MOUNT. A command
## that fails does not stop the others; the report lists it as missing and make fails.
BENCH_OUT     ?= reports/bench
BENCH_RUNS    ?= 5
BENCH_WIRE    ?= --runs $(BENCH_RUNS) --calls 2000
BENCH_GUEST   ?= --runs $(BENCH_RUNS) --memory-runs 3 --sweep-runs 3
BENCH_SCALING ?= --runs $(BENCH_RUNS) --seconds 2
BENCH_MOUNT   ?= --runs $(BENCH_RUNS) --memory-runs 2
bench: $(STAMP) virtiofsd-rust
	mkdir -p $(BENCH_OUT) && rm -f $(BENCH_OUT)/bench-*.json
	start=$$(date +%s); status=0; \
	for part in bench-wire bench-guest bench-scaling bench-mount; do \
	  $(MAKE) --no-print-directory $$part || { status=1; echo "make bench: $$part failed"; }; \
	done; \
	$(PY) benchmarks/report.py $(BENCH_OUT) --seconds $$(( $$(date +%s) - start )) && \
	  exit $$status

## make bench-wire: request round trips, mapping set-up, CPU per request and idle CPU
bench-wire: $(STAMP)
	$(PY) benchmarks/wire.py $(BENCH_WIRE) --out $(BENCH_OUT)

## make bench-guest: memory of N guests, reads through the window and the READ paths
bench-guest: $(STAMP)
	$(PY) benchmarks/guest.py $(BENCH_GUEST) --out $(BENCH_OUT)

## make bench-scaling: aggregate GETATTR/s of 1, 2, 4 and 8 guests vs virtiofsd
bench-scaling: $(STAMP)
	$(PY) benchmarks/scaling.py $(BENCH_SCALING) --out $(BENCH_OUT)

## make bench-frontend-cpu: the guest's CPU per hot FUSE request; BASELINE_PY=another
## checkout's .venv/bin/python compares with that tree's client, run by run (not in make bench)
bench-frontend-cpu: $(STAMP)
	$(PY) benchmarks/frontend_cpu.py $(if $(BASELINE_PY),--baseline $(BASELINE_PY)) $(BENCH_FRONTEND_CPU)

## make bench-mount: reads, mmap, stat/open latency and SINGLE-COPY on pagefs-mount
bench-mount: $(STAMP) virtiofsd-rust
	nice $(PY) benchmarks/mount.py $(BENCH_MOUNT) --out $(BENCH_OUT)

## make test-bench: the benchmark machinery's tests, the slow end-to-end run of every command
## at the smallest scale included (~1 min; root, virtiofsd, bindfs)
test-bench: $(STAMP)
	$(call PYTEST_RUN,tests/benchmarks)

## make bench-report: redraw reports/bench/README.md and the charts from the last records
bench-report: $(STAMP)
	$(PY) benchmarks/report.py $(BENCH_OUT)

## make programs: sqlite, git, tar, compileall and the exerciser on every stack side by
## side, into reports/programs.md (slow): full scale (100,000 ops) on pagefs-mount, short
## elsewhere; PROGRAMS_LONG=all for full scale everywhere (over an hour on 2 cores)
PROGRAMS_LONG ?= pagefs-mount
programs: $(STAMP) virtiofsd-rust
	nice $(PY) -m pagefs.conformance.programs_report --out reports/programs.md \
	  $(if $(filter all,$(PROGRAMS_LONG)),--scale long,--long-stacks $(PROGRAMS_LONG))

## make virtiofsd-rust: Debian unstable's Rust virtiofsd, unpacked into ~/.cache/pagefs
virtiofsd-rust:
	scripts/install-virtiofsd-rust

## make lint: ruff, then mypy over every package, every function typed (scripts/typecheck)
## make fuzz: mutation fuzzing of pagefs-host's FUSE and vhost-user inputs (slow tier, root);
## FUZZ_MESSAGES (default 1000000) and FUZZ_SECONDS bound it; figures in reports/fuzz.json
FUZZ_MESSAGES ?= 1000000
FUZZ_SECONDS  ?= 3600
fuzz: $(STAMP)
	$(PY) -m pagefs.fuzz --messages $(FUZZ_MESSAGES) --seconds $(FUZZ_SECONDS) --report reports/fuzz.json

lint: $(STAMP)
	$(PY) -m ruff check .
	PY=$(PY) scripts/typecheck

## make docs: regenerate docs/SEMANTICS.md from the spec's docstrings
docs: $(STAMP)
	$(PY) -m pagefs.spec.document > docs/SEMANTICS.md

clean:
	rm -rf $(VENV) build *.egg-info impl/*/_*.so impl/*/*.abi3.so
