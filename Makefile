# The two commands a new user needs: `make serve` and `make test`. Both run scripts/setup first (idempotent,
# installs ONNX Runtime, libtorch and a Python venv into ~/.cache/ensemble-serve, never into the clone).
SHELL := /bin/bash
CACHE := $(or $(ENSEMBLE_SERVE_CACHE),$(or $(XDG_CACHE_HOME),$(HOME)/.cache)/ensemble-serve)
ENV := source $(CACHE)/env.sh

.PHONY: setup serve test docker-check build bench

setup:
	@scripts/setup

## Set up, then start the server on the shipped default model.
serve: setup
	@$(ENV) && cargo run --release --bin serve -- run

## Set up, then run every test (real data from ../shared/data or $$CTR_DATA_DIR), then the Dockerfile check.
test: setup
	@$(ENV) && cargo test --release
	@$(MAKE) --no-print-directory docker-check

## hadolint, then every Dockerfile RUN step on this machine into a temporary root (the serving-only binary is
## built there, in its own target dir, and must link no libtorch); the cpu and cuda roots serve a real request.
docker-check: setup
	@$(ENV) && scripts/check-dockerfile

build: setup
	@$(ENV) && cargo build --release

bench: setup
	@$(ENV) && cargo bench --bench features --bench serving
