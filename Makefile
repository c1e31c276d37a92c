# mirror-guard: every command the README mentions.
SHELL := /bin/bash
CARGO ?= cargo
FUZZ_SECONDS ?= 60

.PHONY: run example test deps fmt lint bench bench-baseline bench-report fuzz ci clean

DEMO_DIR ?= target/demo
DEMO_PORT ?= 19003
MG := target/release/mirror-guard

## run: the main job: a home and an edge cluster mirroring both ways, the guard refusing (see README)
run:
	@scripts/deps.sh build
	$(CARGO) build --release -p mirror-guard
	@scripts/demo.sh $(MG) $(DEMO_DIR) $(DEMO_PORT)

## example: judge sample frames in-process (no cluster), printing each verdict
example:
	$(CARGO) run --quiet -p mg-guard --example judge

## test: format check, clippy with warnings denied, every test in the workspace
test: deps fmt lint
	$(CARGO) test --workspace --all-features
	# The SC's tests again, its metadata on a real etcd each test starts.
	MG_TEST_STORE=etcd $(CARGO) test -p mg-sc --all-features

## deps: install the Debian packages the build and tests need, if missing
deps:
	@scripts/deps.sh test

fmt:
	$(CARGO) fmt --all -- --check

lint:
	$(CARGO) clippy --workspace --all-targets -- -D warnings

# The verdict benchmark times paths a few nanoseconds long, and where the
# code lands in the cache lines shows: without this, the floor alone moved
# between 4.0 and 5.6 ns from one build of unrelated code to the next. So it
# is built with every function aligned to 64 bytes and every jump target to
# 32, which makes each timed loop's layout depend on its own code only (and
# sped all paths up alike, by about 7%). It builds in a target dir of its
# own, so these flags never force a rebuild of anything else; its results go
# with the others, to target/criterion.
ALIGNED_BENCH = CARGO_TARGET_DIR=target/aligned CRITERION_HOME=$(CURDIR)/target/criterion \
	RUSTFLAGS="-Cllvm-args=-align-all-functions=6 -Cllvm-args=-align-all-nofallthru-blocks=5"

## bench: criterion benchmarks of the hot path, the SPU process under load, then the ratio report
# The guard-off comparison runs the same code built with `bench-hooks`
# (which adds a hidden --bench-disable-guard); the production binary is
# rebuilt without it before anything else runs.
bench: deps
	$(CARGO) build --release -p mirror-guard --features bench-hooks
	cp target/release/mirror-guard target/release/mirror-guard-unguarded
	$(CARGO) build --release -p mirror-guard
	$(ALIGNED_BENCH) $(CARGO) bench --bench verdict
	$(CARGO) bench --bench roles --bench spu_produce --bench spu_load --bench mirroring --bench upgrade --bench control_scale
	python3 benches/report.py

# The last commit before the server reshape, for `spu_load` to measure
# beside this build in the same run. Built once, from a git worktree, into
# target/mirror-guard-before-reshape (about 3 minutes).
BASELINE_COMMIT ?= e4169a9
bench-baseline:
	test -d target/baseline-src || git worktree add --detach target/baseline-src $(BASELINE_COMMIT)
	cd target/baseline-src && CARGO_TARGET_DIR=$(CURDIR)/target/baseline $(CARGO) build --release -p mirror-guard
	cp target/baseline/release/mirror-guard target/mirror-guard-before-reshape

## bench-report: re-print the ratios of the last `make bench`
bench-report:
	python3 benches/report.py

## fuzz: run the decoder's fuzz target for FUZZ_SECONDS (installs cargo-fuzz if needed)
fuzz:
	command -v cargo-fuzz >/dev/null || $(CARGO) install cargo-fuzz --locked
	cd crates/wire/fuzz && mkdir -p corpus/produce_request && \
	  RUSTC_BOOTSTRAP=1 $(CARGO) fuzz run produce_request corpus/produce_request seeds -- \
	    -max_total_time=$(FUZZ_SECONDS)

## ci: what CI runs
ci:
	bash .ci/run

clean:
	$(CARGO) clean
