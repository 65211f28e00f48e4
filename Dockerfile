# syntax=docker/dockerfile:1
# ensemble-serve images. Targets: `cpu` (default), `cuda`, `train`.
#   docker build -t ensemble-serve:cpu .
#   docker build --target cuda -t ensemble-serve:cuda .
# Native libraries come from PyPI wheels (onnxruntime, onnxruntime-gpu, torch), as in scripts/setup.

ARG RUST_VERSION=1.95
ARG ORT_VERSION=1.31.1

# ---- build the serving-only binary (no libtorch) ----
FROM rust:${RUST_VERSION}-slim-bookworm AS builder
WORKDIR /src
COPY . .
RUN cargo build --release --locked --no-default-features --bin serve \
 && cp target/release/serve /serve

# ---- fetch ONNX Runtime's shared library from the PyPI wheel ----
FROM python:3.11-slim-bookworm AS ort-cpu
ARG ORT_VERSION
RUN pip download --no-deps --only-binary=:all: "onnxruntime==${ORT_VERSION}" -d /wheels \
 && python -c "import glob,zipfile; z=zipfile.ZipFile(glob.glob('/wheels/onnxruntime-*.whl')[0]); open('/libonnxruntime.so','wb').write(z.read('onnxruntime/capi/libonnxruntime.so.${ORT_VERSION}'))"

FROM python:3.11-slim-bookworm AS ort-gpu
ARG ORT_VERSION
RUN pip download --no-deps --only-binary=:all: "onnxruntime-gpu==${ORT_VERSION}" -d /wheels \
 && mkdir /ort \
 && python -c "import glob,zipfile; z=zipfile.ZipFile(glob.glob('/wheels/onnxruntime_gpu-*.whl')[0]); [open('/ort/'+n.split('/')[-1],'wb').write(z.read(n)) for n in z.namelist() if n.startswith('onnxruntime/capi/libonnxruntime')]"

# ---- CPU runtime ----
FROM debian:bookworm-slim AS cpu
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates curl \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --home /srv serve
COPY --from=builder /serve /usr/local/bin/serve
COPY --from=ort-cpu /libonnxruntime.so /opt/onnxruntime/libonnxruntime.so
COPY --chown=serve:serve models /srv/models
COPY config/server.toml /srv/config/server.toml
WORKDIR /srv
ENV ORT_DYLIB_PATH=/opt/onnxruntime/libonnxruntime.so \
    SERVE_CONFIG=/srv/config/server.toml \
    SERVE_BIND=0.0.0.0:8080 \
    SERVE_MODELS_DIR=/srv/models
USER serve
VOLUME ["/srv/models"]
EXPOSE 8080
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=10s --timeout=2s --retries=3 CMD ["curl", "-fsS", "http://127.0.0.1:8080/readyz"]
ENTRYPOINT ["serve", "run"]

# ---- CUDA runtime (CUDA 13 + cuDNN 9 for onnxruntime-gpu's CUDA execution provider) ----
FROM nvidia/cuda:13.0.1-cudnn-runtime-ubuntu24.04 AS cuda
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates curl \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --home /srv serve
COPY --from=builder /serve /usr/local/bin/serve
COPY --from=ort-gpu /ort/ /opt/onnxruntime/
COPY --chown=serve:serve models /srv/models
COPY config/server.toml /srv/config/server.toml
WORKDIR /srv
ENV ORT_DYLIB_PATH=/opt/onnxruntime/libonnxruntime.so.1.31.1 \
    SERVE_CONFIG=/srv/config/server.toml \
    SERVE_BIND=0.0.0.0:8080 \
    SERVE_MODELS_DIR=/srv/models
USER serve
VOLUME ["/srv/models"]
EXPOSE 8080
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=10s --timeout=2s --retries=3 CMD ["curl", "-fsS", "http://127.0.0.1:8080/readyz"]
ENTRYPOINT ["serve", "run"]

# ---- training image: the full binary with libtorch (CPU) ----
FROM rust:${RUST_VERSION}-slim-bookworm AS train
RUN apt-get update && apt-get install -y --no-install-recommends python3 python3-pip python3-venv unzip \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN scripts/setup && . "$HOME/.cache/ensemble-serve/env.sh" && cargo build --release --locked --bin serve \
 && cp "$CARGO_TARGET_DIR/release/serve" /usr/local/bin/serve
ENTRYPOINT ["serve", "train"]

# default target
FROM cpu
