//! The model artifact: `models/<name>/<version>/` with `manifest.json`, `ensemble.onnx`, `student_<k>.onnx`,
//! their int8 twins (`*.int8.onnx`) and the feature encoder. This is the whole contract between training and serving.
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::config::Framework;
use crate::features::{Encoder, FeatureError};
use crate::onnx::{ActivationScale, Precision, WeightScale};
use crate::run_summary::Scores;

pub const MANIFEST_FORMAT: &str = "ensemble-serve/model";
pub const MANIFEST_VERSION: u32 = 1;

#[derive(Debug, thiserror::Error)]
pub enum ArtifactError {
    #[error("{path}: {reason}")]
    Invalid { path: PathBuf, reason: String },
    #[error(transparent)]
    Encoder(#[from] FeatureError),
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Metric {
    pub auc: f64,
    pub logloss: f64,
}

impl From<Scores> for Metric {
    fn from(s: Scores) -> Self {
        Self { auc: s.auc, logloss: s.logloss }
    }
}

/// Batch sizes of the manifest's latency profile.
pub const PROFILE_BATCHES: [usize; 4] = [1, 8, 64, 256];

/// Median and p99 of in-process ONNX Runtime run time (µs) at one batch size.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LatencyPoint {
    pub batch_size: usize,
    pub median_us: f64,
    pub p99_us: f64,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum GraphKind {
    Ensemble,
    Student,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GraphEntry {
    pub file: String,
    pub kind: GraphKind,
    /// Student index (students only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub index: Option<usize>,
    /// Student type, or the framework for the ensemble.
    pub model_type: String,
    /// Dense-layer precision (manifests written before int8 tiers have fp32 graphs only).
    #[serde(default)]
    pub precision: Precision,
    /// An int8 graph's weight scaling.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub int8_weights: Option<WeightScale>,
    /// An int8 graph's activation scaling: `static` (calibrated ranges) or `dynamic` (per run).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub int8_activations: Option<ActivationScale>,
    /// Its embedding tables are stored 8-bit row-wise (`false`: fp32).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub u8_embeddings: bool,
    /// The students' first dense layers run as one MatMul (`serve export --fuse-first-layers`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub fused_first_layers: bool,
    pub parameters: u64,
    pub file_bytes: u64,
    /// blake3 of the file, checked at load.
    pub blake3: String,
    pub valid: Metric,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test: Option<Metric>,
    pub latency: Vec<LatencyPoint>,
}

/// A sequence input: `seq_<name>` of shape [batch, max_len].
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SequenceInput {
    pub field: String,
    pub input: String,
    pub max_len: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct InputSchema {
    /// Scalar fields in the column order of the `field_ids` input.
    pub field_ids: Vec<String>,
    pub sequences: Vec<SequenceInput>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Manifest {
    pub format: String,
    pub format_version: u32,
    pub name: String,
    pub version: String,
    pub created_at: String,
    pub git_commit: Option<String>,
    pub config_hash: String,
    pub dataset: String,
    pub framework: Framework,
    pub encoder: String,
    pub inputs: InputSchema,
    pub graphs: Vec<GraphEntry>,
    /// Index (into the students) of the one with the highest validation AUC.
    pub best_student: usize,
}

impl GraphEntry {
    /// The name routing and responses use: `ensemble` or `student:<k>`, with `:int8` for an int8 graph
    /// (`None`: a student without an index).
    pub fn tier_label(&self) -> Option<String> {
        let graph = match (self.kind, self.index) {
            (GraphKind::Ensemble, _) => "ensemble".to_string(),
            (GraphKind::Student, Some(k)) => format!("student:{k}"),
            (GraphKind::Student, None) => return None,
        };
        Some(match self.precision {
            Precision::Fp32 => graph,
            p => format!("{graph}:{p}"),
        })
    }
}

impl Manifest {
    /// The fp32 student graphs.
    pub fn students(&self) -> impl Iterator<Item = &GraphEntry> {
        self.graphs.iter().filter(|g| g.kind == GraphKind::Student && g.precision.is_fp32())
    }
    /// The fp32 ensemble graph.
    pub fn ensemble(&self) -> Option<&GraphEntry> {
        self.graphs.iter().find(|g| g.kind == GraphKind::Ensemble && g.precision.is_fp32())
    }
}

/// The input schema the encoder implies (what every graph must take).
pub fn input_schema(encoder: &Encoder) -> InputSchema {
    let mut order: Vec<usize> = (0..encoder.fields.len()).collect();
    order.sort_by_key(|&i| encoder.slots(i).start);
    let (mut field_ids, mut sequences) = (Vec::new(), Vec::new());
    for i in order {
        let f = &encoder.fields[i];
        match &f.spec.kind {
            crate::features::FieldKind::Sequence { max_len, .. } => sequences.push(SequenceInput {
                field: f.spec.name.clone(),
                input: format!("seq_{}", f.spec.name),
                max_len: *max_len,
            }),
            _ => field_ids.push(f.spec.name.clone()),
        }
    }
    InputSchema { field_ids, sequences }
}

/// The newest version directory under `models_dir/name`: the last, in lexicographic order, of those holding
/// a `manifest.json` (versions are UTC timestamps by default, so this is the latest).
pub fn latest_version(models_dir: &Path, name: &str) -> Result<PathBuf, ArtifactError> {
    let dir = models_dir.join(name);
    let invalid = |reason: String| ArtifactError::Invalid { path: dir.clone(), reason };
    let mut versions: Vec<PathBuf> = std::fs::read_dir(&dir)
        .map_err(|e| invalid(e.to_string()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.join("manifest.json").is_file())
        .collect();
    versions.sort();
    versions.pop().ok_or_else(|| invalid("no version directory with a manifest.json".into()))
}

/// Model names under `models_dir`: its visible subdirectories, sorted.
pub fn model_names(models_dir: &Path) -> Result<Vec<String>, ArtifactError> {
    let entries = std::fs::read_dir(models_dir)
        .map_err(|e| ArtifactError::Invalid { path: models_dir.to_path_buf(), reason: e.to_string() })?;
    let mut names: Vec<String> = entries
        .filter_map(|e| e.ok())
        .filter(|e| e.path().is_dir())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| !n.starts_with('.'))
        .collect();
    names.sort();
    Ok(names)
}

/// A loaded, checked artifact directory.
pub struct Artifact {
    pub dir: PathBuf,
    pub manifest: Manifest,
    pub encoder: Encoder,
}

impl Artifact {
    /// Reads the manifest and encoder and checks every graph file's presence, size and hash, and that the
    /// manifest's input schema is the one the encoder implies.
    pub fn load(dir: &Path) -> Result<Self, ArtifactError> {
        let mpath = dir.join("manifest.json");
        let invalid = |path: &Path, reason: String| ArtifactError::Invalid { path: path.to_path_buf(), reason };
        let bytes = std::fs::read(&mpath).map_err(|e| invalid(&mpath, e.to_string()))?;
        let manifest: Manifest = serde_json::from_slice(&bytes).map_err(|e| invalid(&mpath, e.to_string()))?;
        if manifest.format != MANIFEST_FORMAT || manifest.format_version != MANIFEST_VERSION {
            return Err(invalid(
                &mpath,
                format!(
                    "format '{}' v{} (this build reads '{MANIFEST_FORMAT}' v{MANIFEST_VERSION})",
                    manifest.format, manifest.format_version
                ),
            ));
        }
        let encoder = Encoder::load(&dir.join(&manifest.encoder))?;
        let implied = input_schema(&encoder);
        if implied != manifest.inputs {
            return Err(invalid(
                &mpath,
                format!("input schema {:?} does not match the encoder's {:?}", manifest.inputs, implied),
            ));
        }
        if manifest.ensemble().is_none() {
            return Err(invalid(&mpath, "no ensemble graph listed".into()));
        }
        if manifest.best_student >= manifest.students().count() {
            return Err(invalid(&mpath, format!("best_student {} is not a listed student", manifest.best_student)));
        }
        for g in &manifest.graphs {
            let path = dir.join(&g.file);
            let data = std::fs::read(&path).map_err(|e| invalid(&path, e.to_string()))?;
            if data.len() as u64 != g.file_bytes {
                return Err(invalid(
                    &path,
                    format!("{} bytes, manifest says {} (truncated or replaced)", data.len(), g.file_bytes),
                ));
            }
            let hash = blake3::hash(&data).to_hex().to_string();
            if hash != g.blake3 {
                return Err(invalid(&path, "content hash differs from the manifest's".into()));
            }
            check_graph_inputs(&path, &data, &manifest.inputs)?;
        }
        Ok(Self { dir: dir.to_path_buf(), manifest, encoder })
    }
}

/// The graph's declared inputs must be exactly `field_ids` [batch, F] and each `seq_<name>` [batch, max_len].
fn check_graph_inputs(path: &Path, bytes: &[u8], schema: &InputSchema) -> Result<(), ArtifactError> {
    use crate::onnx::proto::{tensor_shape_proto::dimension::Value, type_proto, ModelProto};
    use prost::Message;
    let invalid = |reason: String| ArtifactError::Invalid { path: path.into(), reason };
    let model = ModelProto::decode(bytes).map_err(|e| invalid(format!("not an ONNX model: {e}")))?;
    let graph = model.graph.ok_or_else(|| invalid("ONNX model without a graph".into()))?;
    let mut want: Vec<(String, i64)> = vec![("field_ids".into(), schema.field_ids.len() as i64)];
    want.extend(schema.sequences.iter().map(|s| (s.input.clone(), s.max_len as i64)));
    let got: Vec<(String, i64)> = graph
        .input
        .iter()
        .map(|vi| {
            let width = match vi.r#type.as_ref().and_then(|t| t.value.as_ref()) {
                Some(type_proto::Value::TensorType(t)) => t
                    .shape
                    .as_ref()
                    .and_then(|s| s.dim.get(1))
                    .and_then(|d| match d.value {
                        Some(Value::DimValue(v)) => Some(v),
                        _ => None,
                    })
                    .unwrap_or(-1),
                _ => -1,
            };
            (vi.name.clone().unwrap_or_default(), width)
        })
        .collect();
    if got != want {
        return Err(invalid(format!("graph inputs {got:?} do not match the manifest's schema {want:?} (name, width)")));
    }
    Ok(())
}
