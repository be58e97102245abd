# credgate: the two set-up commands are `make run` and `make test`.
SHELL := bash
CARGO ?= cargo

.PHONY: all build run test lint unit e2e k8s-bins down clean

all: build

build:
	$(CARGO) build

## The main job: a local control plane with credgate and a demo; Ctrl-C stops it.
run:
	scripts/run-demo

## Everything CI runs: lint, unit, component and end-to-end tests.
test: lint k8s-bins
	$(CARGO) test --all-targets --no-fail-fast

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --all-targets --quiet -- -D warnings

## Build (once) or reuse the etcd / kube-apiserver / kube-controller-manager / kubectl binaries.
k8s-bins:
	scripts/k8s-bins >/dev/null

e2e: k8s-bins
	$(CARGO) test --test 'e2e_*'

down:
	scripts/dev-cluster down

clean: down
	$(CARGO) clean
