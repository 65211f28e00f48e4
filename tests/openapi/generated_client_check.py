"""A client generated from the live /openapi.json by openapi-python-client, used as its users would: typed
v1 requests (instances and ranking), a KServe v2 infer, model metadata and a typed error. Its probabilities
must equal those of the same request sent as raw JSON. Prints one `ok <check>` line per check."""
import argparse
import csv
import json
import sys
import urllib.request

p = argparse.ArgumentParser()
p.add_argument("--url", required=True)
p.add_argument("--client-dir", required=True)
p.add_argument("--rows", required=True)
args = p.parse_args()
sys.path.insert(0, args.client_dir)

from ensemble_serve_client import Client  # noqa: E402
from ensemble_serve_client.api.kserve_v2 import infer_default, metadata_default  # noqa: E402
from ensemble_serve_client.api.v1 import score_named_default  # noqa: E402
from ensemble_serve_client.models import (  # noqa: E402
    DefaultInferRequest,
    DefaultInstancesRequest,
    DefaultRankingRequest,
    ErrorBody,
    InferResponse,
    ScoreResponse,
)

CONTEXT = ["user", "daytime", "weekday", "isweekend", "homework", "weather", "country", "city"]


def raw(path, body):
    req = urllib.request.Request(args.url + path, json.dumps(body).encode(), {"content-type": "application/json"})
    return json.loads(urllib.request.urlopen(req).read())


def check(name, cond, detail=""):
    if not cond:
        sys.exit(f"FAILED {name}: {detail}")
    print(f"ok {name}")


rows = [{k: v for k, v in r.items() if k != "label"} for r in list(csv.DictReader(open(args.rows)))[:200]]
client = Client(base_url=args.url)

body = {"instances": rows, "tier": "ensemble"}
typed = score_named_default.sync(client=client, body=DefaultInstancesRequest.from_dict(body))
check("v1 instances", isinstance(typed, ScoreResponse) and typed.probabilities == raw("/v1/score", body)["probabilities"])

ranking = {"context": {f: rows[0][f] for f in CONTEXT}, "candidates": [{"item": r["item"], "cost": r["cost"]} for r in rows]}
typed = score_named_default.sync(client=client, body=DefaultRankingRequest.from_dict(dict(ranking, tier="student")))
want = raw("/v1/score", dict(ranking, tier="student"))["probabilities"]
check("v1 context + candidates", isinstance(typed, ScoreResponse) and typed.probabilities == want)

fields = [i.name for i in metadata_default.sync(client=client).inputs]
check("v2 metadata", fields == list(rows[0].keys()), fields)

inputs = [{"name": f, "datatype": "BYTES", "shape": [len(rows), 1], "data": [r[f] for r in rows]} for f in fields]
v2 = infer_default.sync(client=client, body=DefaultInferRequest.from_dict({"inputs": inputs, "parameters": {"tier": "ensemble"}}))
want = raw("/v1/score", {"instances": rows, "tier": "ensemble"})["probabilities"]
check("v2 infer", isinstance(v2, InferResponse) and v2.outputs[0].data == want)

error = score_named_default.sync(client=client, body=DefaultInstancesRequest.from_dict(dict(body, tier="student:9")))
check("typed error", isinstance(error, ErrorBody) and error.error.code == "invalid_tier", error)
