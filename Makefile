# credgate: the two set-up commands are `make run` and `make test`.
SHELL := bash
CARGO ?= cargo

.PHONY: all build run test bench bench-micro reliability lint e2e k8s-bins down clean

all: build

## The Dockerfile runs this too: make build CARGO_FLAGS="--release --locked".
CARGO_FLAGS ?=
build:
	$(CARGO) build $(CARGO_FLAGS)

## The main job: a local control plane with credgate and a demo; Ctrl-C stops it.
run:
	scripts/run-demo

## Everything CI runs: lint, unit, component and end-to-end tests (benchmarks run once as smoke tests).
test: lint k8s-bins
	$(CARGO) build --examples --quiet
	set -o pipefail; $(CARGO) test --lib --bins --tests --benches --no-fail-fast 2>&1 | tee target/test-output.log
	@awk '/^test result:/ {p += $$4; f += $$6} END {printf "make test: %d passed, %d failed\n", p, f}' target/test-output.log

## The performance benchmark (issues 9 and 19): peers (no webhook, null webhook, credgate, Kyverno), API server profiles, ceiling, fixed rate, scale, criterion.
## Writes target/bench/results.json and results.txt. BENCH_SECS, BENCH_PAIRS, BENCH_SCALE, BENCH_DECISION_RUNS, BENCH_KYVERNO=0, BENCH_PROFILE=0, BENCH_ONLY=peers|profile|ceiling|scale tune it.
bench:
	scripts/bench.py

## Only the in-process figures: criterion, the index footprint and the decision latency.
bench-micro:
	$(CARGO) bench --bench decisions
	$(CARGO) run --release --quiet --example index_footprint
	$(CARGO) run --release --quiet --example decision_latency

## Reliability and security suite: bad input, fuzzing, the e2e suite at trace level with a secret-leak check.
reliability: k8s-bins
	scripts/reliability

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --all-targets --quiet -- -D warnings

## Build (once) or reuse the etcd / kube-apiserver / kube-controller-manager / kubectl binaries.
k8s-bins:
	scripts/k8s-bins >/dev/null
	scripts/helm-bin >/dev/null

e2e: k8s-bins
	$(CARGO) test --test 'e2e_*'

down:
	scripts/dev-cluster down

clean: down
	$(CARGO) clean
