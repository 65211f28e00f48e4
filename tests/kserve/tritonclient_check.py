"""NVIDIA's own KServe v2 clients (`tritonclient.http` and `tritonclient.grpc`, default settings) against a
running ensemble-serve: liveness, readiness, server and model metadata, model config, and infer on real
frappe_ctr rows with [N, 1] and [N] BYTES inputs (HTTP: binary tensor data, the client's default, and JSON
tensors; gRPC: typed contents and raw_input_contents), unversioned and naming the version, compared bit for
bit with /v1/score; and an unknown model's error, which must print.

    python tritonclient_check.py --url 127.0.0.1:8080 --grpc-url 127.0.0.1:8081 --rows test.csv
Prints one line per check; exits non-zero at the first failure.
"""
import argparse
import csv
import json
import urllib.request

import numpy as np
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException


def check(name, ok, detail=""):
    print(f"{'ok ' if ok else 'FAIL'} {name}{': ' + detail if detail else ''}", flush=True)
    if not ok:
        raise SystemExit(1)


def v1_scores(url, rows):
    body = json.dumps({"instances": rows, "tier": "ensemble"}).encode()
    req = urllib.request.Request(f"http://{url}/v1/score", data=body, headers={"content-type": "application/json"})
    return np.array(json.load(urllib.request.urlopen(req))["probabilities"], dtype=np.float32)


def inputs_of(client, fields, rows, shape_n1, binary):
    """HTTP: binary tensor data or JSON; gRPC: raw_input_contents (the client's way) or typed contents."""
    out = []
    for f in fields:
        values = np.array([r[f].encode() for r in rows], dtype=np.object_)
        values = values.reshape(-1, 1) if shape_n1 else values
        t = client.InferInput(f, list(values.shape), "BYTES")
        if client is httpclient:
            t.set_data_from_numpy(values, binary_data=binary)
        elif binary:
            t.set_data_from_numpy(values)
        else:
            t._get_tensor().contents.bytes_contents.extend(values.reshape(-1).tolist())
        out.append(t)
    return out


def config_of(client, config):
    """tritonclient.grpc answers the config as a protobuf message; as_json gives the HTTP shape."""
    if client is grpcclient:
        from google.protobuf import json_format
        config = json_format.MessageToDict(config.config, preserving_proto_field_name=True)
        config["input"] = [{**i, "dims": [int(d) for d in i["dims"]]} for i in config["input"]]
    return config


def metadata_of(client, meta):
    if client is grpcclient:
        from google.protobuf import json_format
        return json_format.MessageToDict(meta, preserving_proto_field_name=True)
    return meta


def run_checks(client_module, url, fields_rows, model, want):
    kind = "http" if client_module is httpclient else "grpc"
    client = client_module.InferenceServerClient(url)
    check(f"{kind}: server live", client.is_server_live())
    check(f"{kind}: server ready", client.is_server_ready())
    check(f"{kind}: model ready", client.is_model_ready(model))
    meta = metadata_of(client_module, client.get_server_metadata())
    check(f"{kind}: server metadata", bool(meta.get("name")) and "version" in meta, json.dumps(meta))
    info = metadata_of(client_module, client.get_model_metadata(model))
    fields = [i["name"] for i in info["inputs"]]
    version = info["versions"][0]
    check(f"{kind}: model metadata", fields == fields_rows[0] and info["outputs"][0]["name"] == "probability",
          f"{len(fields)} inputs, version {version}")
    config = config_of(client_module, client.get_model_config(model))
    dims_match = all(i["dims"] == [1] for i in config["input"]) and int(config["max_batch_size"]) > 0
    check(f"{kind}: model config", dims_match, f"max_batch_size {config['max_batch_size']}")
    rows = fields_rows[1]
    encoding = ("binary", "JSON") if kind == "http" else ("raw_input_contents", "typed contents")
    cases = [(f"[N, 1] {encoding[0]}", True, True, ""), (f"[N] {encoding[0]}", False, True, ""),
             (f"[N, 1] {encoding[1]}", True, False, ""), (f"[N, 1] {encoding[0]}, version {version}", True, True, version)]
    for label, n1, binary, ver in cases:
        inputs = inputs_of(client_module, fields, rows, n1, binary)
        # The tier as a request parameter: budget routing could otherwise pick another graph than /v1's.
        result = client.infer(model, inputs, model_version=ver, parameters={"tier": "ensemble"})
        got = result.as_numpy("probability").reshape(-1)
        same = got.dtype == np.float32 and np.array_equal(got, want)
        check(f"{kind}: infer {label} = /v1/score", same, f"{len(got)} rows, max |diff| {np.abs(got - want).max():.1e}")
    try:
        client.infer("no-such-model", inputs_of(client_module, fields, rows[:1], True, True))
        check(f"{kind}: unknown model is an error", False)
    except InferenceServerException as e:
        text = str(e)
        check(f"{kind}: unknown model's error prints", "no-such-model" in text, text)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--url", required=True, help="HTTP host:port")
    p.add_argument("--grpc-url", required=True, help="gRPC host:port")
    p.add_argument("--rows", required=True)
    p.add_argument("--model", default="default")
    p.add_argument("--n", type=int, default=500)
    a = p.parse_args()
    fields = [i["name"] for i in httpclient.InferenceServerClient(a.url).get_model_metadata(a.model)["inputs"]]
    with open(a.rows) as f:
        rows = [{k: r[k] for k in fields} for _, r in zip(range(a.n), csv.DictReader(f))]
    want = v1_scores(a.url, rows)
    run_checks(httpclient, a.url, (fields, rows), a.model, want)
    run_checks(grpcclient, a.grpc_url, (fields, rows), a.model, want)


if __name__ == "__main__":
    main()
