//! `serve eval`: scores a data split through every ONNX graph of an artifact with ONNX Runtime (what the
//! server runs) and reports AUC, logloss and gAUC per graph beside the figures the manifest recorded at
//! training time — the check before promoting a model, or on a new day of data.
use std::path::{Path, PathBuf};
use std::time::Instant;

use comfy_table::{presets::UTF8_FULL_CONDENSED, Table};
use ort::environment::Environment;
use serde::Serialize;

use crate::artifact::{Artifact, ArtifactError, GraphEntry, InputSchema, Metric};
use crate::data::encode::{encode_file, SplitStats};
use crate::data::DataError;
use crate::data::Split;
use crate::features::{DatasetSpec, Encoder};
use crate::metrics::{auc, gauc, logloss};
use crate::runtime::GraphSession;

#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    #[error(transparent)]
    Artifact(#[from] ArtifactError),
    #[error(transparent)]
    Data(#[from] DataError),
    #[error("{graph}: {error}")]
    Runtime { graph: String, error: ort::Error },
    #[error("dataset spec '{spec}' does not match the model's encoder: {reason}")]
    Mismatch { spec: String, reason: String },
    #[error("{split}: no rows to evaluate (every line skipped or the file is empty)")]
    NoRows { split: String },
}

pub struct EvalOptions {
    pub part: Split,
    /// Rows per ONNX Runtime call.
    pub batch_rows: usize,
    pub intra_threads: usize,
    pub progress: bool,
    /// The split's file was replaced, so the manifest's figures are for other rows.
    pub other_file: bool,
}

/// One graph's scores on the split.
#[derive(Debug, Serialize)]
pub struct GraphScore {
    /// As the server names it: `ensemble` or `student:<k>`.
    pub graph: String,
    pub file: String,
    pub auc: Option<f64>,
    pub logloss: f64,
    pub gauc: Option<f64>,
    /// What the manifest recorded for this split at training time (none for a replaced file or train).
    pub recorded: Option<Metric>,
    /// Rows scored per second of ONNX Runtime time.
    pub rows_per_second: f64,
}

#[derive(Debug, Serialize)]
pub struct EvalReport {
    pub model: String,
    pub version: String,
    pub dataset: String,
    pub split: String,
    pub file: PathBuf,
    pub rows: u64,
    pub skipped_lines: u64,
    pub first_skipped: Vec<String>,
    pub label_mean: f64,
    pub best_student: usize,
    pub graphs: Vec<GraphScore>,
}

/// Encodes the split with the artifact's encoder, scores it in batches with every graph, and measures.
pub fn evaluate(
    env: &Environment,
    artifact: &Artifact,
    spec: &DatasetSpec,
    opts: &EvalOptions,
) -> Result<EvalReport, EvalError> {
    check_fields(spec, &artifact.encoder)?;
    let m = &artifact.manifest;
    let files: Vec<&str> = m.graphs.iter().map(|g| g.file.as_str()).collect();
    let graphs = GraphSet { dir: &artifact.dir, files: &files, inputs: &m.inputs, encoder: &artifact.encoder };
    let scored = score_split(env, &graphs, spec, opts)?;
    let labels = &scored.labels;
    let scores = scored
        .probs
        .iter()
        .zip(&scored.seconds)
        .zip(&m.graphs)
        .map(|((probs, seconds), g)| GraphScore {
            graph: g.tier_label().unwrap_or_else(|| g.file.clone()),
            file: g.file.clone(),
            auc: auc(probs, labels),
            logloss: logloss(probs, labels),
            gauc: scored.groups.as_ref().and_then(|groups| gauc(probs, labels, groups)),
            recorded: recorded(g, opts),
            rows_per_second: labels.len() as f64 / seconds.max(1e-9),
        })
        .collect();
    let file = opts.part.source(spec).map(|(p, _)| p.to_path_buf()).unwrap_or_default();
    Ok(EvalReport {
        model: m.name.clone(),
        version: m.version.clone(),
        dataset: spec.name.clone(),
        split: opts.part.name().into(),
        file,
        rows: labels.len() as u64,
        skipped_lines: scored.stats.rejects.count,
        first_skipped: scored.stats.rejects.first.clone(),
        label_mean: scored.stats.label_mean(),
        best_student: m.best_student,
        graphs: scores,
    })
}

/// Graph files in one directory that take the same inputs.
pub struct GraphSet<'a> {
    pub dir: &'a Path,
    pub files: &'a [&'a str],
    pub inputs: &'a InputSchema,
    pub encoder: &'a Encoder,
}

/// Every graph's probabilities on one split, in row order, with the labels (and groups, when the encoder
/// has a group field) and each graph's ONNX Runtime seconds.
pub struct SplitScores {
    pub labels: Vec<f32>,
    pub groups: Option<Vec<u32>>,
    pub probs: Vec<Vec<f32>>,
    pub seconds: Vec<f64>,
    pub stats: SplitStats,
}

/// Encodes `opts.part` of `spec` once and scores it in batches of `opts.batch_rows` with every graph.
pub fn score_split(
    env: &Environment,
    set: &GraphSet<'_>,
    spec: &DatasetSpec,
    opts: &EvalOptions,
) -> Result<SplitScores, EvalError> {
    let mut graphs = set
        .files
        .iter()
        .map(|file| {
            GraphSession::load(env, &set.dir.join(file), set.inputs, set.encoder, opts.intra_threads)
                .map(|s| GraphRun { file: file.to_string(), session: s, probs: Vec::new(), seconds: 0.0 })
                .map_err(|error| EvalError::Runtime { graph: file.to_string(), error })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let width = set.encoder.width();
    let group_slot = set.encoder.group_slot();
    let (mut batch, mut labels, mut groups) = (Vec::with_capacity(opts.batch_rows * width), Vec::new(), Vec::new());
    let mut failure = None;
    let stats = encode_file(spec, set.encoder, opts.part, opts.progress, |ids, label| {
        batch.extend_from_slice(ids);
        labels.push(label);
        groups.extend(group_slot.map(|s| ids[s]));
        if batch.len() >= opts.batch_rows * width {
            score_batch(&mut graphs, &mut batch, width, &mut failure)?;
        }
        Ok(())
    });
    // A graph's failure stopped the pass: report it, not the stop it caused.
    if let Some(e) = failure {
        return Err(e);
    }
    let stats = stats?;
    score_batch(&mut graphs, &mut batch, width, &mut failure)?;
    if let Some(e) = failure {
        return Err(e);
    }
    if labels.is_empty() {
        return Err(EvalError::NoRows { split: opts.part.name().into() });
    }
    let seconds = graphs.iter().map(|g| g.seconds).collect();
    Ok(SplitScores {
        labels,
        groups: group_slot.map(|_| groups),
        probs: graphs.into_iter().map(|g| g.probs).collect(),
        seconds,
        stats,
    })
}

struct GraphRun {
    file: String,
    session: GraphSession,
    probs: Vec<f32>,
    seconds: f64,
}

/// Runs the buffered rows through every graph and empties the buffer; an ORT error is kept in `failure`
/// and stops the encoding pass.
fn score_batch(
    graphs: &mut [GraphRun],
    batch: &mut Vec<u32>,
    width: usize,
    failure: &mut Option<EvalError>,
) -> Result<(), DataError> {
    if batch.is_empty() {
        return Ok(());
    }
    for run in graphs.iter_mut() {
        let start = Instant::now();
        match run.session.run(batch, width, "probability") {
            Ok((p, _)) => run.probs.extend_from_slice(&p),
            Err(error) => {
                let reason = format!("scoring with {} failed", run.file);
                *failure = Some(EvalError::Runtime { graph: run.file.clone(), error });
                return Err(DataError::Spec { reason });
            }
        }
        run.seconds += start.elapsed().as_secs_f64();
    }
    batch.clear();
    Ok(())
}

/// The encoder reads cell `i` as field `i`: the spec must list the encoder's fields, in its order.
pub fn check_fields(spec: &DatasetSpec, encoder: &Encoder) -> Result<(), EvalError> {
    let mismatch = |reason: String| EvalError::Mismatch { spec: spec.name.clone(), reason };
    let want: Vec<&str> = encoder.fields.iter().map(|f| f.spec.name.as_str()).collect();
    let have: Vec<&str> = spec.fields.iter().map(|f| f.name.as_str()).collect();
    if let Some(i) = (0..want.len().max(have.len())).find(|&i| want.get(i) != have.get(i)) {
        let at = |v: &[&str]| v.get(i).map_or("nothing".to_string(), |n| format!("'{n}'"));
        return Err(mismatch(format!("field {} is {} in the spec but {} in the model", i + 1, at(&have), at(&want))));
    }
    for (f, e) in spec.fields.iter().zip(&encoder.fields) {
        if f.kind != e.spec.kind {
            return Err(mismatch(format!("field '{}' has another kind in the spec than in the model", f.name)));
        }
    }
    Ok(())
}

fn recorded(g: &GraphEntry, opts: &EvalOptions) -> Option<Metric> {
    match (opts.part, opts.other_file) {
        (_, true) | (Split::Train, _) => None,
        (Split::Valid, false) => Some(g.valid.clone()),
        (Split::Test, false) => g.test.clone(),
    }
}

impl EvalReport {
    /// One table: a row per graph, the best student marked, recorded figures and their differences.
    pub fn render(&self) -> String {
        let mut t = Table::new();
        t.load_preset(UTF8_FULL_CONDENSED).set_header([
            "graph",
            "AUC",
            "recorded AUC",
            "Δ AUC",
            "logloss",
            "recorded logloss",
            "gAUC",
            "rows/s (ORT)",
        ]);
        let f = |v: Option<f64>| v.map_or("-".into(), |x| format!("{x:.6}"));
        for g in &self.graphs {
            let best = g.graph == format!("student:{}", self.best_student);
            let delta = g.auc.zip(g.recorded.as_ref().map(|r| r.auc)).map(|(a, r)| format!("{:+.1e}", a - r));
            t.add_row([
                if best { format!("{} (best)", g.graph) } else { g.graph.clone() },
                f(g.auc),
                f(g.recorded.as_ref().map(|r| r.auc)),
                delta.unwrap_or_else(|| "-".into()),
                format!("{:.6}", g.logloss),
                f(g.recorded.as_ref().map(|r| r.logloss)),
                f(g.gauc),
                format!("{:.0}", g.rows_per_second),
            ]);
        }
        let mut out = format!(
            "model {} version {} on {} {} ({}): {} rows, label mean {:.4}, {} lines skipped\n{t}\n",
            self.model,
            self.version,
            self.dataset,
            self.split,
            self.file.display(),
            self.rows,
            self.label_mean,
            self.skipped_lines
        );
        for line in &self.first_skipped {
            out.push_str(&format!("skipped: {line}\n"));
        }
        out
    }
}

/// `dir` itself when it holds a manifest, else its newest version directory (the server's rule).
pub fn artifact_dir(dir: &Path) -> Result<PathBuf, ArtifactError> {
    if dir.join("manifest.json").is_file() {
        return Ok(dir.to_path_buf());
    }
    let parent = dir.parent().unwrap_or(Path::new("."));
    let not_a_model = || ArtifactError::Invalid { path: dir.into(), reason: "not a model directory".into() };
    let name = dir.file_name().and_then(|n| n.to_str()).ok_or_else(not_a_model)?;
    crate::artifact::latest_version(parent, name)
}
