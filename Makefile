# The two commands a new user needs: `make serve` and `make test`. Both run scripts/setup first (idempotent,
# installs ONNX Runtime, libtorch and a Python venv into ~/.cache/ensemble-serve, never into the clone).
SHELL := /bin/bash
CACHE := $(or $(ENSEMBLE_SERVE_CACHE),$(or $(XDG_CACHE_HOME),$(HOME)/.cache)/ensemble-serve)
ENV := source $(CACHE)/env.sh

.PHONY: setup serve test build serving-binary bench

setup:
	@scripts/setup

## Set up, then start the server on the shipped default model.
serve: setup
	@$(ENV) && cargo run --release --bin serve -- run

## Set up, then run every test (real data from ../shared/data or $$CTR_DATA_DIR).
test: setup
	@$(ENV) && cargo test --release
	@$(MAKE) --no-print-directory serving-binary

## The serving-only binary (no libtorch), as the Docker image builds it, copied to target/serving/serve; fails
## if libtorch is linked. The full binary is rebuilt afterwards so target/release/serve can still train.
serving-binary: setup
	@$(ENV) && cargo build --release --no-default-features --bin serve \
	  && mkdir -p "$$CARGO_TARGET_DIR/serving" && cp "$$CARGO_TARGET_DIR/release/serve" "$$CARGO_TARGET_DIR/serving/serve" \
	  && scripts/check-serving-binary "$$CARGO_TARGET_DIR/serving/serve" \
	  && cargo build --release --bin serve

build: setup
	@$(ENV) && cargo build --release

bench: setup
	@$(ENV) && cargo bench
