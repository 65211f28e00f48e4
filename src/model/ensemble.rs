//! An ensemble of students over field embeddings, the fusion that gives its output, and the ONNX
//! emission of the whole graph and of each student alone.
use tch::{nn, Kind, Tensor};

use super::build_student;
use super::embedding::{FieldEmbedding, FieldLayout};
use super::layers::Dense;
use super::student::{Student, StudentConfig};
use crate::config::{Framework, InvalidKey, StudentKind, TrainConfig};
use crate::onnx::builder::attr_int;
use crate::onnx::proto::tensor_proto::DataType;
use crate::onnx::{Dim, GraphBuilder, Precision, Range, WeightScale};

/// The ensemble's logit is a fused representation through a head (not a mean/sum of student logits).
fn fuses_representations(framework: Framework) -> bool {
    matches!(framework, Framework::Concat | Framework::Cetnet)
}

/// How a graph is emitted.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct GraphOptions {
    pub precision: Precision,
    /// How int8 weights are scaled.
    pub weight_scale: WeightScale,
    /// Int8 only: calibrated input ranges of the dense layers in emission order (`None`: dynamic).
    pub activation_ranges: Option<Vec<Range>>,
    /// Run the students' first dense layers over the shared embeddings as one MatMul (ensemble graph only).
    pub fuse_first_layers: bool,
    /// Store embedding tables 8-bit row-wise.
    pub rowwise_u8_embeddings: bool,
}

/// One forward pass: every student's logit and the ensemble's.
pub struct Outputs {
    /// B × K.
    pub student_logits: Tensor,
    /// B × 1.
    pub ensemble_logit: Tensor,
}

pub struct Ensemble {
    pub framework: Framework,
    /// One shared table, or one per student (CETNet's multi-embedding).
    pub embeddings: Vec<FieldEmbedding>,
    pub students: Vec<Box<dyn Student>>,
    /// Concat / CETNet: the head over the fused representation.
    pub fusion_head: Option<Dense>,
}

impl Ensemble {
    /// The ensemble a training config describes (framework, students, per-student dropout).
    pub fn from_config(vs: &nn::Path, cfg: &TrainConfig, layout: &FieldLayout) -> Result<Self, InvalidKey> {
        cfg.validate()?;
        let base = StudentConfig {
            hidden_units: cfg.hidden_units.clone(),
            batch_norm: cfg.batch_norm,
            dropout: cfg.dropout,
            cross_layers: cfg.cross_layers,
            dhen_modules: cfg.dhen_modules.clone(),
            dhen_layers: cfg.dhen_layers,
            dhen_ensemble: cfg.dhen_ensemble,
        };
        let per_student: Vec<StudentConfig> = (0..cfg.students.len())
            .map(|k| StudentConfig {
                dropout: cfg.student_dropouts.get(k).copied().unwrap_or(cfg.dropout),
                ..base.clone()
            })
            .collect();
        Self::new(vs, cfg.framework, &cfg.students, layout, cfg.embedding_dim, &per_student)
    }

    pub fn new(
        vs: &nn::Path,
        framework: Framework,
        kinds: &[StudentKind],
        layout: &FieldLayout,
        dim: i64,
        cfgs: &[StudentConfig],
    ) -> Result<Self, InvalidKey> {
        if kinds.is_empty() {
            return Err(InvalidKey::new("students", "[]", "at least one student is needed"));
        }
        if framework == Framework::Single && kinds.len() != 1 {
            return Err(InvalidKey::new("students", kinds.len(), "framework 'single' trains exactly one"));
        }
        let tables = if framework == Framework::Cetnet { kinds.len() } else { 1 };
        let embeddings =
            (0..tables).map(|t| FieldEmbedding::new(vs / format!("embedding_{t}"), layout.clone(), dim)).collect();
        let fields = layout.num_fields();
        let students = kinds
            .iter()
            .enumerate()
            .map(|(k, &kind)| build_student(kind, vs / format!("student_{k}"), fields, dim, &cfgs[k]))
            .collect::<Result<Vec<_>, _>>()?;
        let fusion_head = fuses_representations(framework).then(|| {
            let width: i64 = students.iter().map(|s| s.hidden_dim()).sum();
            Dense::new(vs / "fusion_head", width, 1, false, 0.0, false)
        });
        Ok(Self { framework, embeddings, students, fusion_head })
    }

    fn embedding_of(&self, k: usize) -> &FieldEmbedding {
        &self.embeddings[k.min(self.embeddings.len() - 1)]
    }

    pub fn forward(&self, ids: &Tensor, train: bool) -> Outputs {
        let shared = (self.embeddings.len() == 1).then(|| self.embeddings[0].forward(ids));
        let mut hiddens = Vec::with_capacity(self.students.len());
        let mut logits = Vec::with_capacity(self.students.len());
        for (k, s) in self.students.iter().enumerate() {
            let emb = shared.as_ref().map_or_else(|| self.embedding_of(k).forward(ids), Tensor::shallow_clone);
            let h = s.hidden(&emb, train);
            logits.push(s.head().forward(&h, train));
            hiddens.push(h);
        }
        let student_logits = Tensor::cat(&logits, 1);
        let ensemble_logit = match self.framework {
            Framework::Sum => student_logits.sum_dim_intlist([1i64].as_slice(), true, Kind::Float),
            Framework::Concat => self.fusion_head.as_ref().expect("head").forward(&Tensor::cat(&hiddens, 1), train),
            Framework::Cetnet => {
                let w = confidence_weights(&student_logits);
                let fused: Vec<Tensor> =
                    hiddens.iter().enumerate().map(|(k, h)| h * w.narrow(1, k as i64, 1)).collect();
                self.fusion_head.as_ref().expect("head").forward(&Tensor::cat(&fused, 1), train)
            }
            _ => student_logits.mean_dim([1i64].as_slice(), true, Kind::Float),
        };
        Outputs { student_logits, ensemble_logit }
    }

    /// (λ/2)·‖E‖² over every embedding table.
    pub fn l2(&self, lambda: f64) -> Tensor {
        self.embeddings.iter().map(|e| e.l2(lambda)).reduce(|a, b| a + b).expect("one table at least")
    }

    /// The whole ensemble as one graph: outputs `probability` [B,1] and `student_probabilities` [B,K].
    pub fn emit_ensemble(&self, name: &str, opts: &GraphOptions) -> GraphBuilder {
        let mut g = self.graph_with_inputs(name, opts);
        let (mut logits, mut hiddens) = (Vec::new(), Vec::new());
        let u8_tables = opts.rowwise_u8_embeddings;
        let shared = (self.embeddings.len() == 1).then(|| self.embeddings[0].emit(&mut g, "emb", u8_tables));
        let firsts = match (&shared, opts.fuse_first_layers) {
            (Some(emb), true) => super::fused::first_layers(&mut g, emb, &self.students),
            _ => vec![None; self.students.len()],
        };
        for (k, s) in self.students.iter().enumerate() {
            let emb =
                shared.clone().unwrap_or_else(|| self.embedding_of(k).emit(&mut g, &format!("emb{k}"), u8_tables));
            let h = match (&firsts[k], s.flat_mlp()) {
                (Some(first), Some(mlp)) => mlp.emit_from(&mut g, first, 1),
                _ => s.emit_hidden(&mut g, &emb),
            };
            logits.push(s.head().emit(&mut g, &h));
            hiddens.push(h);
        }
        let refs: Vec<&str> = logits.iter().map(String::as_str).collect();
        let all = if refs.len() == 1 { logits[0].clone() } else { g.op("Concat", &refs, vec![attr_int("axis", 1)]) };
        g.op_into("Sigmoid", &[&all], "student_probabilities", vec![]);
        let axes = g.initializer_i64("axes", &[1], &[1]);
        let fused = match self.framework {
            Framework::Sum => g.op("ReduceSum", &[&all, &axes], vec![attr_int("keepdims", 1)]),
            Framework::Concat | Framework::Cetnet => {
                let parts =
                    if self.framework == Framework::Cetnet { weighted(&mut g, &all, &hiddens) } else { hiddens };
                let refs: Vec<&str> = parts.iter().map(String::as_str).collect();
                let cat = g.op("Concat", &refs, vec![attr_int("axis", 1)]);
                self.fusion_head.as_ref().expect("head").emit(&mut g, &cat)
            }
            _ => g.op("ReduceMean", &[&all, &axes], vec![attr_int("keepdims", 1)]),
        };
        g.op_into("Sigmoid", &[&fused], "probability", vec![]);
        g.output("probability", DataType::Float, &[Dim::Batch, Dim::Fixed(1)]);
        g.output("student_probabilities", DataType::Float, &[Dim::Batch, Dim::Fixed(self.students.len() as i64)]);
        g
    }

    /// Student `k` alone, with its own embedding lookups: output `probability` [B,1].
    pub fn emit_student(&self, k: usize, name: &str, opts: &GraphOptions) -> GraphBuilder {
        let mut g = self.graph_with_inputs(name, opts);
        let emb = self.embedding_of(k).emit(&mut g, "emb", opts.rowwise_u8_embeddings);
        let logit = self.students[k].emit_logit(&mut g, &emb);
        g.op_into("Sigmoid", &[&logit], "probability", vec![]);
        g.output("probability", DataType::Float, &[Dim::Batch, Dim::Fixed(1)]);
        g
    }

    fn graph_with_inputs(&self, name: &str, opts: &GraphOptions) -> GraphBuilder {
        let layout = &self.embeddings[0].layout;
        let mut g = GraphBuilder::with_precision(name, opts.precision);
        g.set_weight_scale(opts.weight_scale);
        if let Some(ranges) = &opts.activation_ranges {
            g.set_activation_ranges(ranges.clone());
        }
        g.input("field_ids", DataType::Int64, &[Dim::Batch, Dim::Fixed(layout.scalar_offsets.len() as i64)]);
        for (seq, _, len, _) in &layout.sequences {
            g.input(&format!("seq_{seq}"), DataType::Int64, &[Dim::Batch, Dim::Fixed(*len)]);
        }
        g
    }
}

/// CETNet: w = softmax_k(−H(p_k)), detached (confidence = negative entropy of each student's prediction).
pub fn confidence_weights(student_logits: &Tensor) -> Tensor {
    let p = student_logits.detach().sigmoid().clamp(1e-7, 1.0 - 1e-7);
    let q: Tensor = 1.0 - &p;
    let neg_entropy = &p * p.log() + &q * q.log();
    neg_entropy.softmax(1, Kind::Float)
}

/// ONNX twin of [`confidence_weights`] applied to each student's hidden representation.
fn weighted(g: &mut GraphBuilder, logits: &str, hiddens: &[String]) -> Vec<String> {
    let p = g.op("Sigmoid", &[logits], vec![]);
    let lo = g.initializer_f32("lo", &[], &[1e-7]);
    let hi = g.initializer_f32("hi", &[], &[1.0 - 1e-7]);
    let p = g.op("Clip", &[&p, &lo, &hi], vec![]);
    let one = g.initializer_f32("one", &[], &[1.0]);
    let q = g.op("Sub", &[&one, &p], vec![]);
    let (lp, lq) = (g.op("Log", &[&p], vec![]), g.op("Log", &[&q], vec![]));
    let (a, b) = (g.op("Mul", &[&p, &lp], vec![]), g.op("Mul", &[&q, &lq], vec![]));
    let ne = g.op("Add", &[&a, &b], vec![]);
    let w = g.op("Softmax", &[&ne], vec![attr_int("axis", 1)]);
    hiddens
        .iter()
        .enumerate()
        .map(|(i, h)| {
            let start = g.initializer_i64("start", &[1], &[i as i64]);
            let end = g.initializer_i64("end", &[1], &[i as i64 + 1]);
            let axis = g.initializer_i64("axis", &[1], &[1]);
            let wk = g.op("Slice", &[&w, &start, &end, &axis], vec![]);
            g.op("Mul", &[h, &wk], vec![])
        })
        .collect()
}
