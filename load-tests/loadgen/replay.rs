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
    /// The same rows as objects, for the offline encoding.
    objects: Vec<serde_json::Map<String, serde_json::Value>>,
    pub labels: Vec<f32>,
    pub per_request: usize,
}

impl Replay {
    pub fn load(spec_path: &Path, data_dir: &Path, split: &str, per_request: usize) -> Result<Self, String> {
        let spec = DatasetSpec::load(spec_path, data_dir).map_err(|e| e.to_string())?;
        let inst = read_instances(&spec, split, None).map_err(|e| e.to_string())?;
        if inst.objects.is_empty() {
            return Err(format!("{}: the {split} split has no rows", spec_path.display()));
        }
        let rows = inst.objects.iter().map(|o| serde_json::to_string(o).expect("JSON object")).collect();
        Ok(Self { rows, objects: inst.objects, labels: inst.labels, per_request })
    }

    /// First row of request `i`; its rows are `first .. first + per_request` modulo the split.
    pub fn first_row(&self, i: u64) -> u32 {
        ((i as usize * self.per_request) % self.rows.len()) as u32
    }

    pub fn row(&self, first: u32, j: usize) -> usize {
        (first as usize + j) % self.rows.len()
    }

    /// `{"instances": [...], "tier": ..., "latency_budget_ms": ...}` for request `i`.
    pub fn body(&self, first: u32, tier: Option<&str>, budget_ms: f64) -> Vec<u8> {
        let mut b = String::with_capacity(64 + self.per_request * self.rows[0].len());
        b.push_str("{\"instances\":[");
        for j in 0..self.per_request {
            if j > 0 {
                b.push(',');
            }
            b.push_str(&self.rows[self.row(first, j)]);
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
