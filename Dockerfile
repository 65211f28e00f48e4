# syntax=docker/dockerfile:1
# ensemble-serve images. Targets: `cpu` (default), `cuda`, `train`.
#   docker build -t ensemble-serve:cpu .
#   docker build --target cuda -t ensemble-serve:cuda .
#   docker build --target train -t ensemble-serve:train .
# Native libraries come from PyPI wheels (onnxruntime, onnxruntime-gpu, torch), as in scripts/setup.
# scripts/check-dockerfile lints this file and runs every RUN step on the host into a temporary root
# (outputs go under ${DOCKER_ROOT:-}/, which is / in a real build), then serves from that root.

ARG RUST_VERSION=1.95
ARG ORT_VERSION=1.31.1

# ---- build the serving-only binary (no libtorch) ----
FROM rust:${RUST_VERSION}-slim-bookworm AS builder
WORKDIR /src
COPY . .
RUN cargo build --release --locked --no-default-features --bin serve \
 && install -D -m 0755 "${CARGO_TARGET_DIR:-target}/release/serve" "${DOCKER_ROOT:-}/out/serve"

# ---- ONNX Runtime's shared libraries from the PyPI wheels ----
FROM python:3.11-slim-bookworm AS ort-cpu
ARG ORT_VERSION
WORKDIR /src
COPY scripts/docker/fetch-ort scripts/docker/fetch-ort
RUN scripts/docker/fetch-ort onnxruntime "${ORT_VERSION}"

FROM python:3.11-slim-bookworm AS ort-gpu
ARG ORT_VERSION
WORKDIR /src
COPY scripts/docker/fetch-ort scripts/docker/fetch-ort
RUN scripts/docker/fetch-ort onnxruntime-gpu "${ORT_VERSION}"

# ---- CPU runtime: no shell tools needed; `serve health` is the probe ----
FROM debian:bookworm-slim AS cpu
COPY --from=builder /out/serve /usr/local/bin/serve
COPY --from=ort-cpu /out/ort/ /opt/onnxruntime/
COPY --chown=10001:10001 models /srv/models
COPY config/server.toml /srv/config/server.toml
WORKDIR /srv
ENV ORT_DYLIB_PATH=/opt/onnxruntime/libonnxruntime.so.1.31.1 \
    SERVE_CONFIG=/srv/config/server.toml \
    SERVE_BIND=0.0.0.0:8080 \
    SERVE_GRPC_BIND=0.0.0.0:8081 \
    SERVE_MODELS_DIR=/srv/models \
    SERVE_LOG_FORMAT=json
USER 10001:10001
VOLUME ["/srv/models"]
EXPOSE 8080 8081
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 CMD ["serve", "health", "--url", "http://127.0.0.1:8080/readyz"]
ENTRYPOINT ["serve"]
CMD ["run"]

# ---- CUDA runtime (CUDA 13 + cuDNN 9 for onnxruntime-gpu's CUDA execution provider) ----
FROM nvidia/cuda:13.0.1-cudnn-runtime-ubuntu24.04 AS cuda
COPY --from=builder /out/serve /usr/local/bin/serve
COPY --from=ort-gpu /out/ort/ /opt/onnxruntime/
COPY --chown=10001:10001 models /srv/models
COPY config/server.toml /srv/config/server.toml
WORKDIR /srv
ENV ORT_DYLIB_PATH=/opt/onnxruntime/libonnxruntime.so.1.31.1 \
    SERVE_CONFIG=/srv/config/server.toml \
    SERVE_BIND=0.0.0.0:8080 \
    SERVE_GRPC_BIND=0.0.0.0:8081 \
    SERVE_MODELS_DIR=/srv/models \
    SERVE_EXECUTION_PROVIDER=cuda \
    SERVE_LOG_FORMAT=json
USER 10001:10001
VOLUME ["/srv/models"]
EXPOSE 8080 8081
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 CMD ["serve", "health", "--url", "http://127.0.0.1:8080/readyz"]
ENTRYPOINT ["serve"]
CMD ["run"]

# ---- training image: the full binary with libtorch (CPU) ----
FROM rust:${RUST_VERSION}-slim-bookworm AS train
# Debian bookworm's versions, pinned: torch-sys compiles C++; scripts/setup --native-only needs Python with
# pip, and unzip; curves.png needs a TTF font.
RUN apt-get update \
 && apt-get install -y --no-install-recommends g++=4:12.2.0-3 python3-pip=23.0.1+dfsg-1 unzip=6.0-28 fonts-dejavu-core=2.37-6 \
 && apt-get clean \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN scripts/setup --native-only \
 && . "${XDG_CACHE_HOME:-$HOME/.cache}/ensemble-serve/env.sh" \
 && cargo build --release --locked --bin serve \
 && install -D -m 0755 "$CARGO_TARGET_DIR/release/serve" "${DOCKER_ROOT:-}/usr/local/bin/serve"
ENTRYPOINT ["serve", "train"]

# default target
FROM cpu
