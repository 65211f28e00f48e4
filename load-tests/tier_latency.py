# Per-tier latency of a running server: sequential requests with the tier forced, at batch 1 and 256.
# Usage: python3 load-tests/tier_latency.py http://127.0.0.1:8080 INSTANCES.json [N]  (INSTANCES: a JSON list of raw rows)
import json, sys, time, statistics, urllib.request
base = sys.argv[1]; inst = json.load(open(sys.argv[2])); n = int(sys.argv[3]) if len(sys.argv) > 3 else 200
def post(body):
    req = urllib.request.Request(base + "/v1/score", data=json.dumps(body).encode(), headers={"content-type": "application/json"})
    t = time.perf_counter(); r = json.load(urllib.request.urlopen(req)); return r, (time.perf_counter() - t) * 1e6
print("| tier | batch | inference µs p50 / p99 | server µs p50 / p99 | client round trip µs p50 |")
print("| --- | --- | --- | --- | --- |")
for tier in ["ensemble", "student:0", "student:1", "student:2"]:
    for b in [1, 256]:
        body = {"instances": inst[:b], "tier": tier, "latency_budget_ms": 10000}
        for _ in range(20): post(body)
        inf, srv, rt = [], [], []
        for _ in range(n):
            r, c = post(body); inf.append(r["inference_time_us"]); srv.append(r["server_time_us"]); rt.append(c)
        q = lambda v, p: sorted(v)[min(len(v) - 1, int(p * len(v)))]
        print(f"| {tier} | {b} | {q(inf,.5):.0f} / {q(inf,.99):.0f} | {q(srv,.5):.0f} / {q(srv,.99):.0f} | {q(rt,.5):.0f} |")
