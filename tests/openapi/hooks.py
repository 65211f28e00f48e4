"""Schemathesis hooks: the two request rules the OpenAPI document states in prose because JSON Schema cannot
relate one part of a body to another. Applied to positive (schema-valid) cases only, so those are requests
the server must accept; negative cases go out as generated.

- /v1 ranking bodies: each field once, in the context or in every candidate.
- KServe v2 infer: every tensor has shape[0] == len(data), and all tensors share N rows (or 1).
"""
import itertools

import schemathesis


def _positive(case):
    meta = case.meta
    return meta is not None and meta.generation.mode.is_positive


def _model_fields(case):
    model = case.operation.definition.raw.get("x-model")
    if model is None:
        return None
    schemas = case.operation.schema.raw_schema["components"]["schemas"]
    prefix = "".join(c if c.isascii() and (c.isalnum() or c in "._-") else "_" for c in model)
    return list(schemas[f"{prefix}.PartialRow"]["properties"])


def _one_place_per_field(body, fields):
    context, candidates = body["context"], body["candidates"]
    for f in fields:
        if f not in context and all(f in c for c in candidates):
            continue
        if f not in context:
            context[f] = None  # null is every field's blank value
        for c in candidates:
            c.pop(f, None)


def _shared_rows(body, fields):
    inputs = [t for t in body["inputs"] if isinstance(t, dict)]
    mine = [t for t in inputs if t.get("name") in fields]
    longest = max((len(t["data"]) for t in mine), default=1)
    for t in mine:
        if len(t["data"]) > 1:
            t["data"] = list(itertools.islice(itertools.cycle(t["data"]), longest))
        t["shape"][0] = len(t["data"])
    for t in inputs:
        if t not in mine:  # a tensor naming no field: its data is not read, its shape still counts
            t["shape"][0] = 1 if t["shape"][0] == 1 else longest


@schemathesis.hook
def map_case(context, case):
    if not _positive(case) or not isinstance(case.body, dict):
        return case
    body = case.body
    fields = _model_fields(case)
    if fields is None:
        return case
    if "candidates" in body and "context" in body:
        _one_place_per_field(body, fields)
    if isinstance(body.get("inputs"), list):
        _shared_rows(body, fields)
    return case


@schemathesis.deserializer("application/octet-stream")
def binary_infer_answer(ctx, response):
    """A binary infer answer: its JSON header (validated against the document), after checking that the
    bytes behind it are exactly the output's `binary_data_size`."""
    import json

    length = int(response.headers["inference-header-content-length"][0])
    header = json.loads(response.content[:length])
    size = header["outputs"][0]["parameters"]["binary_data_size"]
    rows = header["outputs"][0]["shape"][0]
    if len(response.content) - length != size or size != 4 * rows:
        raise ValueError(f"{len(response.content) - length} bytes after the header; binary_data_size {size}, {rows} rows")
    return header
