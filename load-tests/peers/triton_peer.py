"""Peer (b): NVIDIA Triton Inference Server through PyTriton (the PyPI package `nvidia-pytriton`, which bundles
`tritonserver`), serving the same artifact with Triton's dynamic batcher. Models `ensemble` and `student` (the
manifest's best student) take one BYTES input of shape [-1, 1] per field (raw values, encoded in Python exactly
as ensemble-serve encodes them) and answer `probability` [-1, 1] FP32, over KServe v2 HTTP and gRPC.

    python triton_peer.py --models-dir models --model default --http-port 8002 --grpc-port 8003
"""
import argparse
import os
import signal
import sysconfig

import numpy as np
from pytriton.decorators import batch
from pytriton.model_config import DynamicBatcher, ModelConfig, Tensor
from pytriton.triton import Triton, TritonConfig

from ctr_artifact import Artifact

# Requests carry at most 1,024 candidates (DeepRecSys's largest); the batcher may merge several up to this.
MAX_BATCH_ROWS = 1024


def infer_func(artifact, tier):
    @batch
    def infer(**inputs):
        n = next(iter(inputs.values())).shape[0]
        columns = {name: [v.decode() if isinstance(v, bytes) else v for v in col.reshape(-1)]
                   for name, col in inputs.items()}
        probability = artifact.run(tier, artifact.encode_columns(columns, n))
        return {"probability": probability.reshape(-1, 1).astype(np.float32)}

    return infer


def use_own_libpython():
    """Triton's Python stub links libpython3.X.so from the loader path; this interpreter's own copy goes first,
    or a system libpython of another patch release meets this interpreter's standard library (on Debian 12 with
    a pyenv Python that fails in multiprocessing.resource_tracker)."""
    libdir = sysconfig.get_config_var("LIBDIR")
    if sysconfig.get_config_var("Py_ENABLE_SHARED") and libdir:
        os.environ["LD_LIBRARY_PATH"] = os.pathsep.join(filter(None, [libdir, os.environ.get("LD_LIBRARY_PATH")]))


def main():
    use_own_libpython()
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models-dir", default="models")
    p.add_argument("--model", default="default")
    p.add_argument("--http-port", type=int, default=8002)
    p.add_argument("--grpc-port", type=int, default=8003)
    p.add_argument("--metrics-port", type=int, default=8004)
    a = p.parse_args()
    artifact = Artifact(a.models_dir, a.model)
    config = TritonConfig(http_address="127.0.0.1", http_port=a.http_port, grpc_address="127.0.0.1",
                          grpc_port=a.grpc_port, metrics_port=a.metrics_port, log_verbose=0)
    inputs = [Tensor(name=f.name, dtype=bytes, shape=(1,)) for f in artifact.fields]
    outputs = [Tensor(name="probability", dtype=np.float32, shape=(1,))]
    with Triton(config=config) as triton:
        for tier in artifact.tiers:
            triton.bind(model_name=tier, infer_func=infer_func(artifact, tier), inputs=inputs, outputs=outputs,
                        config=ModelConfig(max_batch_size=MAX_BATCH_ROWS, batcher=DynamicBatcher()), strict=False)
        signal.signal(signal.SIGTERM, lambda *_: triton.stop())
        triton.serve()


if __name__ == "__main__":
    main()
