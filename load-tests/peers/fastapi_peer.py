"""Peer (a): the server a Python team would write around the same artifact — FastAPI + uvicorn (uvloop,
httptools) + onnxruntime, one worker per server core. It speaks ensemble-serve's /v1 score request
(`instances`, or `context` + `candidates`; `tier` "ensemble" or "student") and answers `served_by` and
`probabilities`, so the load generator drives it unchanged. No budget routing: that is the product under test.

    python fastapi_peer.py --models-dir models --model default --port 8001 [--workers 1]
"""
import argparse
import os
import time

import orjson
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import Response

from ctr_artifact import Artifact


def build_app():
    artifact = Artifact(os.environ["PEER_MODELS_DIR"], os.environ["PEER_MODEL"])
    app = FastAPI()

    def answer(body, status=200):
        return Response(orjson.dumps(body), status_code=status, media_type="application/json")

    def error(status, message):
        return answer({"error": {"code": "invalid_request", "message": message}}, status)

    @app.get("/readyz")
    async def ready():
        return {"status": "ready"}

    # Async on purpose: with one worker per core, running ORT on the event loop avoids a thread hand-off.
    @app.post("/v1/models/{name}/score")
    @app.post("/v1/score")
    async def score(request: Request, name: str = ""):
        started = time.perf_counter()
        try:
            body = orjson.loads(await request.body())
        except orjson.JSONDecodeError as e:
            return error(400, f"invalid JSON: {e}")
        tier = body.get("tier") or "ensemble"
        if tier not in artifact.sessions:
            return error(422, f"unknown tier '{tier}' (this peer serves ensemble and student)")
        if "candidates" in body:
            context = body.get("context") or {}
            rows = [{**c, **context} for c in body["candidates"]]
        else:
            rows = body.get("instances") or []
        if not rows:
            return error(422, "no rows")
        try:
            feed = artifact.encode(rows)
        except KeyError as e:
            return error(422, f"field {e} is missing")
        t = time.perf_counter()
        probabilities = artifact.run(tier, feed)
        done = time.perf_counter()
        return answer({
            "served_by": tier,
            "probabilities": probabilities.tolist(),
            "server_time_us": round((done - started) * 1e6),
            "inference_time_us": round((done - t) * 1e6),
        })

    return app


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models-dir", default="models")
    p.add_argument("--model", default="default")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8001)
    p.add_argument("--workers", type=int, default=len(os.sched_getaffinity(0)))
    a = p.parse_args()
    os.environ["PEER_MODELS_DIR"] = os.path.abspath(a.models_dir)
    os.environ["PEER_MODEL"] = a.model
    uvicorn.run("fastapi_peer:build_app", factory=True, host=a.host, port=a.port, workers=a.workers,
                loop="uvloop", http="httptools", log_level="warning", access_log=False)


if __name__ == "__main__":
    main()
