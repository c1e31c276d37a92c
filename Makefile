# mirror-guard: every command the README mentions.
SHELL := /bin/bash
CARGO ?= cargo
FUZZ_SECONDS ?= 60

.PHONY: run test fmt lint bench bench-report fuzz ci clean

## run: the main job (for now: judge sample requests against a sample role table)
run:
	$(CARGO) run --quiet -p mg-guard --example judge

## test: format check, clippy with warnings denied, every test in the workspace
test: fmt lint
	$(CARGO) test --workspace --all-features

fmt:
	$(CARGO) fmt --all -- --check

lint:
	$(CARGO) clippy --workspace --all-targets -- -D warnings

## bench: criterion benchmarks of the hot path, then the ratio report
bench:
	$(CARGO) build --release -p mirror-guard
	$(CARGO) bench --bench verdict --bench roles --bench spu_produce
	python3 benches/report.py

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
