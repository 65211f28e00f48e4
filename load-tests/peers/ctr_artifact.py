"""A model artifact (models/<name>/<version>/) as the peers load it: the manifest, the fitted encoder and one
ONNX Runtime session per tier. Raw values are encoded exactly as ensemble-serve encodes them
(src/features/encoder.rs): ids 0 = padding, 1..n the kept tokens, n + 1 = OOV; numbers are looked up by their
decimal text; numeric fields are bucketed as floor(ln(v)^2) when v > 2; sequences are split, truncated and
padded with 0."""
import json
import math
import os

import numpy as np
import onnxruntime as ort


def latest_version(models_dir, name):
    root = os.path.join(models_dir, name)
    versions = sorted(v for v in os.listdir(root) if os.path.isfile(os.path.join(root, v, "manifest.json")))
    if not versions:
        raise SystemExit(f"no artifact under {root}")
    return os.path.join(root, versions[-1])


def _text(value):
    """A JSON value as the text the encoder looks up (Rust prints whole floats without '.0')."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e16:
        return str(int(value))
    return str(value)


def _bucket(text):
    text = text.strip()
    if not text:
        return None
    try:
        i = int(text)
        return int(math.floor(math.log(i) ** 2)) if i > 2 else i
    except ValueError:
        v = float(text)
        if not math.isfinite(v):
            raise ValueError(f"'{text}' is not a number")
        return int(math.floor(math.log(v) ** 2)) if v > 2 else int(v)


class Field:
    def __init__(self, entry):
        spec = entry["spec"]
        self.name = spec["name"]
        self.kind = spec["kind"]
        self.separator = spec.get("separator")
        self.max_len = spec.get("max_len", 1)
        tokens = entry.get("tokens", [])
        self.ids = {t: i + 1 for i, t in enumerate(tokens)}
        self.oov = len(tokens) + 1

    def encode(self, value):
        """One id (scalar fields) or a list of max_len ids (sequences)."""
        if self.kind == "sequence":
            tokens = value if isinstance(value, list) else [t for t in _text(value).split(self.separator) if t]
            ids = [self.ids.get(_text(t), self.oov) for t in tokens[: self.max_len]]
            return ids + [0] * (self.max_len - len(ids))
        text = _text(value)
        if self.kind == "numeric_bucket":
            b = _bucket(text)
            return self.ids.get("" if b is None else str(b), self.oov)
        return self.ids.get(text, self.oov)


class Artifact:
    def __init__(self, models_dir, name, threads=1):
        self.dir = latest_version(models_dir, name)
        with open(os.path.join(self.dir, "manifest.json")) as f:
            self.manifest = json.load(f)
        with open(os.path.join(self.dir, self.manifest["encoder"])) as f:
            self.fields = [Field(e) for e in json.load(f)["fields"]]
        self.scalars = [f for f in self.fields if f.kind != "sequence"]
        inputs = self.manifest["inputs"]["sequences"]
        self.sequences = [(s["input"], next(f for f in self.fields if f.name == s["field"])) for s in inputs]
        graphs = {g["file"]: g for g in self.manifest["graphs"]}
        best = f"student_{self.manifest['best_student']}.onnx"
        self.tiers = {"ensemble": "ensemble.onnx", "student": best}
        missing = [f for f in self.tiers.values() if f not in graphs]
        if missing:
            raise SystemExit(f"{self.dir}: manifest lists no {missing}")
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        self.sessions = {
            tier: ort.InferenceSession(os.path.join(self.dir, file), opts, providers=["CPUExecutionProvider"])
            for tier, file in self.tiers.items()
        }

    def encode(self, rows):
        """rows: a list of dicts of raw values → the graph's input feed. A missing field raises KeyError."""
        feed = {"field_ids": np.array([[f.encode(r[f.name]) for f in self.scalars] for r in rows], dtype=np.int64)}
        for input_name, f in self.sequences:
            feed[input_name] = np.array([f.encode(r[f.name]) for r in rows], dtype=np.int64)
        return feed

    def encode_columns(self, columns, n):
        """columns: field name → a sequence of n raw values (or one value broadcast over n rows)."""
        def values(f):
            col = columns[f.name]
            return [col[0]] * n if len(col) == 1 and n > 1 else col
        ids = np.empty((n, len(self.scalars)), dtype=np.int64)
        for j, f in enumerate(self.scalars):
            ids[:, j] = [f.encode(v) for v in values(f)]
        feed = {"field_ids": ids}
        for input_name, f in self.sequences:
            feed[input_name] = np.array([f.encode(v) for v in values(f)], dtype=np.int64)
        return feed

    def run(self, tier, feed):
        """Probabilities, one float per row."""
        (probability,) = self.sessions[tier].run(["probability"], feed)
        return probability.reshape(-1)
