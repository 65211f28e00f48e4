# The two commands a new user needs: `make serve` and `make test`. Both run scripts/setup first (idempotent,
# installs ONNX Runtime, libtorch and, for tests, the Python venvs into ~/.cache/ensemble-serve, never into the clone).
SHELL := /bin/bash
CACHE := $(or $(ENSEMBLE_SERVE_CACHE),$(or $(XDG_CACHE_HOME),$(HOME)/.cache)/ensemble-serve)
ENV := source $(CACHE)/env.sh

.PHONY: setup serve test docker-check build bench load-tests

setup:
	@scripts/setup

## Set up what the server needs (ONNX Runtime and libtorch only), then start it on the shipped default model.
serve:
	@scripts/setup --native-only
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

## The load tests that compare this server with its peers and prove routing (server on core 1, generator on
## core 0; about 40 minutes): capacity against FastAPI + onnxruntime and Triton at 1 and 165 candidates,
## its protocols, the 2x ranking spike and the mixed-budget run. Results: load-tests/results/<scenario>/.
load-tests: setup
	@$(ENV) && cargo build --release --bins && L=$$CARGO_TARGET_DIR/release/loadgen && \
	for s in peers_single peers_ranking protocols_ranking; do $$L run load-tests/scenarios/$$s.toml --quiet || exit 1; done && \
	for s in ranking_spike_tol ranking_mixed_budgets; do $$L run load-tests/scenarios/$$s.toml --capacity 190 --quiet || exit 1; done
