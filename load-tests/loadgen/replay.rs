//! Real rows to replay: each row pre-serialised once as a JSON instance, request bodies assembled from
//! them in file order (cycling), and the offline ensemble scores of the same rows for the AUC check.
use std::path::Path;

use ensemble_serve::artifact::Artifact;
use ensemble_serve::data::instances::read_instances;
use ensemble_serve::features::DatasetSpec;
use ensemble_serve::runtime::GraphSession;

pub struct Replay {
    /// One serialised JSON object per row (request bodies are spliced from these).
    pub rows: Vec<String>,
    /// Ranking bodies: per row, its context fields and its other fields as serialised JSON objects.
    ranking: Option<(Vec<String>, Vec<String>)>,
    context_fields: Vec<String>,
    /// The same rows as objects, for the offline encoding.
    objects: Vec<serde_json::Map<String, serde_json::Value>>,
    pub labels: Vec<f32>,
    pub per_request: usize,
    /// KServe v2 bodies: each field's name (JSON-quoted) and whether it is a context field, and per row each
    /// field's value as a JSON string.
    v2_fields: Vec<(String, bool)>,
    v2_cells: Vec<Vec<String>>,
    /// The fields' names and values as text, for binary tensors.
    names: Vec<String>,
    texts: Vec<Vec<String>>,
}

impl Replay {
    pub fn load(
        spec_path: &Path,
        data_dir: &Path,
        split: ensemble_serve::data::Split,
        per_request: usize,
        context_fields: &[String],
    ) -> Result<Self, String> {
        let spec = DatasetSpec::load(spec_path, data_dir).map_err(|e| e.to_string())?;
        let inst = read_instances(&spec, split, None).map_err(|e| e.to_string())?;
        if inst.objects.is_empty() {
            return Err(format!("{}: the {split} split has no rows", spec_path.display()));
        }
        if let Some(f) = context_fields.iter().find(|f| !spec.fields.iter().any(|s| &&s.name == f)) {
            return Err(format!("context field '{f}' is not a field of {}", spec_path.display()));
        }
        let json = |o: &serde_json::Map<String, serde_json::Value>| serde_json::to_string(o).expect("JSON object");
        let rows = inst.objects.iter().map(json).collect();
        let part = |o: &serde_json::Map<String, serde_json::Value>, context: bool| {
            json(
                &o.iter()
                    .filter(|(k, _)| context_fields.contains(k) == context)
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect(),
            )
        };
        let ranking = (!context_fields.is_empty()).then(|| {
            (
                inst.objects.iter().map(|o| part(o, true)).collect(),
                inst.objects.iter().map(|o| part(o, false)).collect(),
            )
        });
        let ranking_off = ranking.is_none();
        let names: Vec<&str> = spec.fields.iter().map(|f| f.name.as_str()).collect();
        let texts: Vec<Vec<String>> =
            inst.objects.iter().map(|o| names.iter().map(|f| text(&o[*f])).collect()).collect();
        // The same texts as JSON strings: the elements of a BYTES tensor in a JSON body.
        let quote = |t: &String| serde_json::Value::from(t.as_str()).to_string();
        let v2_cells = texts.iter().map(|row| row.iter().map(quote).collect()).collect();
        let is_context = |f: &str| !ranking_off && context_fields.iter().any(|c| c == f);
        let v2_fields = names.iter().map(|f| (serde_json::Value::from(*f).to_string(), is_context(f))).collect();
        Ok(Self {
            rows,
            ranking,
            context_fields: context_fields.to_vec(),
            objects: inst.objects,
            labels: inst.labels,
            per_request,
            v2_fields,
            v2_cells,
            names: names.iter().map(|f| f.to_string()).collect(),
            texts,
        })
    }

    /// First row of request `i`; its rows are `first .. first + per_request` modulo the split.
    pub fn first_row(&self, i: u64) -> u32 {
        ((i as usize * self.per_request) % self.rows.len()) as u32
    }

    pub fn row(&self, first: u32, j: usize) -> usize {
        (first as usize + j) % self.rows.len()
    }

    /// Whether bodies are ranking requests (`context` + `candidates`).
    pub fn is_ranking(&self) -> bool {
        self.ranking.is_some()
    }

    /// `{"instances": [...], "tier": ..., "latency_budget_ms": ...}` with `n` rows from `first` on, or
    /// `{"context": {...}, "candidates": [...], ...}` for ranking replays.
    pub fn body(&self, first: u32, n: usize, tier: Option<&str>, budget_ms: f64) -> Vec<u8> {
        let mut b = String::with_capacity(64 + n * self.rows[0].len());
        let rows = match &self.ranking {
            Some((context, candidates)) => {
                b.push_str("{\"context\":");
                b.push_str(&context[first as usize]);
                b.push_str(",\"candidates\":[");
                candidates
            }
            None => {
                b.push_str("{\"instances\":[");
                &self.rows
            }
        };
        for j in 0..n {
            if j > 0 {
                b.push(',');
            }
            b.push_str(&rows[self.row(first, j)]);
        }
        b.push_str("],\"latency_budget_ms\":");
        b.push_str(&budget_ms.to_string());
        if let Some(t) = tier {
            b.push_str(",\"tier\":\"");
            b.push_str(t);
            b.push('"');
        }
        b.push('}');
        b.into_bytes()
    }

    /// A KServe v2 JSON body of the same rows: one BYTES input of shape [n, 1] per field, and the `tier`
    /// parameter when given. Ranking replays repeat the context's values on every row (Triton batches every
    /// input along one dimension).
    pub fn v2_body(&self, first: u32, n: usize, tier: Option<&str>) -> Vec<u8> {
        use std::fmt::Write as _;
        let mut b = String::with_capacity(64 + n * self.rows[0].len());
        b.push_str("{\"inputs\":[");
        for (f, (name, context)) in self.v2_fields.iter().enumerate() {
            let sep = if f > 0 { "," } else { "" };
            let _ = write!(b, "{sep}{{\"name\":{name},\"shape\":[{n},1],\"datatype\":\"BYTES\",\"data\":[");
            for j in 0..n {
                if j > 0 {
                    b.push(',');
                }
                b.push_str(&self.v2_cells[self.cell_row(*context, first, j)][f]);
            }
            b.push_str("]}");
        }
        b.push(']');
        if let Some(t) = tier {
            let _ = write!(b, ",\"parameters\":{{\"tier\":\"{t}\"}}");
        }
        b.push('}');
        b.into_bytes()
    }

    /// The same request with the binary tensor data extension (binary output asked for); returns the body
    /// and its JSON header's length. A ranking request's context fields go once, as shape [1, 1].
    pub fn v2_binary_body(&self, first: u32, n: usize, tier: &str) -> (Vec<u8>, usize) {
        let (inputs, raw) = self.grpc_inputs(first, n);
        let inputs: Vec<serde_json::Value> = inputs
            .iter()
            .zip(&raw)
            .map(|((name, rows), bytes)| {
                serde_json::json!({"name": name, "shape": [rows, 1], "datatype": "BYTES",
                                   "parameters": {"binary_data_size": bytes.len()}})
            })
            .collect();
        let header = serde_json::json!({"inputs": inputs, "parameters": {"tier": tier, "binary_data_output": true}});
        let mut body = serde_json::to_vec(&header).expect("JSON header");
        let len = body.len();
        body.extend(raw.concat());
        (body, len)
    }

    /// Binary tensors (name, rows, bytes: 4-byte little-endian length + text per element), one per field; a
    /// ranking request's context fields have one row (the protocol broadcasts it).
    pub fn grpc_inputs(&self, first: u32, n: usize) -> (Vec<(String, usize)>, Vec<Vec<u8>>) {
        let mut inputs = Vec::with_capacity(self.v2_fields.len());
        let mut raw = Vec::with_capacity(self.v2_fields.len());
        for (f, (name, (_, context))) in self.names.iter().zip(&self.v2_fields).enumerate() {
            let rows = if *context { 1 } else { n };
            let mut bytes = Vec::with_capacity(rows * 8);
            for j in 0..rows {
                let t = &self.texts[self.cell_row(*context, first, j)][f];
                bytes.extend((t.len() as u32).to_le_bytes());
                bytes.extend(t.as_bytes());
            }
            inputs.push((name.clone(), rows));
            raw.push(bytes);
        }
        (inputs, raw)
    }

    /// The row whose value a request's `j`-th row carries: its own, or (context fields) the request's first.
    fn cell_row(&self, context: bool, first: u32, j: usize) -> usize {
        if context {
            first as usize
        } else {
            self.row(first, j)
        }
    }

    /// The first `rows` replay rows (cycling), encoded: what the floors and the ideal server run.
    pub fn encoded(&self, enc: &ensemble_serve::features::Encoder, rows: usize) -> Result<Vec<u32>, String> {
        let width = enc.width();
        let mut ids = vec![0u32; rows * width];
        for (i, out) in ids.chunks_mut(width).enumerate() {
            let obj = &self.objects[i % self.objects.len()];
            enc.encode_json_object(obj, false, out).map_err(|e| format!("row {i}: {e}"))?;
        }
        Ok(ids)
    }

    /// Raw ONNX Runtime run time (median µs of 15 runs) of `graph` at each of `sizes` rows, on this process's
    /// core, from encoded replay rows: what the ideal server of the report spends.
    pub fn run_times(
        &self,
        artifact: &Artifact,
        env: &ort::environment::Environment,
        graph: &str,
        sizes: &[usize],
    ) -> Result<Vec<(usize, f64)>, String> {
        let enc = &artifact.encoder;
        let mut session = GraphSession::load(env, &artifact.dir.join(graph), &artifact.manifest.inputs, enc, 1)
            .map_err(|e| e.to_string())?;
        let width = enc.width();
        let ids = self.encoded(enc, sizes.iter().copied().max().unwrap_or(1))?;
        let mut points = Vec::new();
        for &n in sizes {
            let mut us: Vec<f64> = (0..18)
                .map(|_| {
                    let t = std::time::Instant::now();
                    session.run(&ids[..n * width], width, "probability").map(|_| t.elapsed().as_secs_f64() * 1e6)
                })
                .collect::<Result<_, _>>()
                .map_err(|e| e.to_string())?;
            us.drain(..3);
            us.sort_by(f64::total_cmp);
            points.push((n, us[us.len() / 2]));
        }
        Ok(points)
    }

    /// The ensemble's offline scores of a ranking request's merged rows: row `first`'s context fields with
    /// each candidate row's other fields, as the server sees them.
    pub fn merged_scores(&self, first: u32, n: usize, session: &mut GraphSession, artifact: &Artifact) -> Vec<f32> {
        let enc = &artifact.encoder;
        let width = enc.width();
        let context = &self.objects[first as usize];
        let mut ids = vec![0u32; n * width];
        for (j, out) in ids.chunks_mut(width).enumerate() {
            let mut row = self.objects[self.row(first, j)].clone();
            for (k, v) in context.iter().filter(|(k, _)| self.context_fields.contains(k)) {
                row.insert(k.clone(), v.clone());
            }
            enc.encode_json_object(&row, false, out).expect("replayed rows encode");
        }
        session.run(&ids, width, "probability").map(|(p, _)| p).unwrap_or_else(|_| vec![f32::NAN; n])
    }

    /// Every row scored offline by the artifact's ensemble graph in this process (ONNX Runtime on the CPU).
    pub fn offline_scores(&self, artifact: &Artifact, env: &ort::environment::Environment) -> Result<Vec<f32>, String> {
        let graph = artifact.manifest.ensemble().ok_or("no ensemble graph")?;
        let enc = &artifact.encoder;
        let mut session = GraphSession::load(env, &artifact.dir.join(&graph.file), &artifact.manifest.inputs, enc, 1)
            .map_err(|e| e.to_string())?;
        let width = enc.width();
        let mut scores = Vec::with_capacity(self.rows.len());
        for chunk in self.objects.chunks(1024) {
            let mut ids = vec![0u32; chunk.len() * width];
            for (i, obj) in chunk.iter().enumerate() {
                enc.encode_json_object(obj, false, &mut ids[i * width..(i + 1) * width])
                    .map_err(|e| format!("row {}: {e}", scores.len() + i))?;
            }
            let (p, _) = session.run(&ids, width, "probability").map_err(|e| e.to_string())?;
            scores.extend(p);
        }
        Ok(scores)
    }
}

/// A raw value's text (numbers by their decimal form, null as empty).
fn text(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Null => String::new(),
        other => other.to_string(),
    }
}
