//! Students (one file each) and the ensemble frameworks. Every layer type holds its tch forward pass and
//! its ONNX emission side by side, so the trained graph and the served graph cannot drift.
pub mod dcnv2;
pub mod dhen;
pub mod dropout;
pub mod ecn;
pub mod embedding;
pub mod ensemble;
pub mod final_net;
pub mod layers;
pub mod mlp;
pub mod pnn;

use tch::{nn, Tensor};

use crate::onnx::GraphBuilder;
pub use embedding::{FieldEmbedding, FieldLayout};
pub use ensemble::{Ensemble, Framework, Outputs};

/// Hyper-parameters shared by the students.
#[derive(Debug, Clone)]
pub struct StudentConfig {
    /// DHEN: interaction modules per layer (linear, dcn, self_attention, dot).
    pub dhen_modules: Vec<String>,
    /// DHEN: stacked layers.
    pub dhen_layers: i64,
    /// DHEN: how a layer combines its modules: sum or concat.
    pub dhen_ensemble: String,
    pub hidden_units: Vec<i64>,
    pub batch_norm: bool,
    pub dropout: f64,
    /// Cross layers of DCNv2 and ECN.
    pub cross_layers: i64,
}

/// A sub-network: field embeddings (B × F × d) → a representation → one logit.
pub trait Student {
    fn kind(&self) -> &'static str;
    /// B × F × d → B × `hidden_dim()`.
    fn hidden(&self, emb: &Tensor, train: bool) -> Tensor;
    fn hidden_dim(&self) -> i64;
    /// The student's own output layer.
    fn head(&self) -> &layers::Dense;
    /// The ONNX twin of [`Student::hidden`]: `emb` names a B × F × d value.
    fn emit_hidden(&self, g: &mut GraphBuilder, emb: &str) -> String;
    /// Weight matrices of its linear layers (for knowledge abundance).
    fn linear_weights(&self) -> Vec<Tensor>;

    fn logit(&self, emb: &Tensor, train: bool) -> Tensor {
        self.head().forward(&self.hidden(emb, train), train)
    }
    fn emit_logit(&self, g: &mut GraphBuilder, emb: &str) -> String {
        let h = self.emit_hidden(g, emb);
        self.head().emit(g, &h)
    }
}

/// Every student type `build_student` knows.
pub const STUDENT_TYPES: [&str; 6] = ["mlp", "dcnv2", "pnn", "final", "ecn", "dhen"];

impl Default for StudentConfig {
    fn default() -> Self {
        Self {
            dhen_modules: vec!["self_attention".into(), "linear".into()],
            dhen_layers: 2,
            dhen_ensemble: "sum".into(),
            hidden_units: vec![400, 400, 400],
            batch_norm: true,
            dropout: 0.1,
            cross_layers: 3,
        }
    }
}

/// The student registry: adding a type is one file and one line here.
pub fn build_student(
    kind: &str,
    vs: nn::Path,
    fields: i64,
    dim: i64,
    cfg: &StudentConfig,
) -> Result<Box<dyn Student>, String> {
    match kind {
        "mlp" => Ok(Box::new(mlp::MlpStudent::new(vs, fields, dim, cfg))),
        "dcnv2" => Ok(Box::new(dcnv2::Dcnv2Student::new(vs, fields, dim, cfg))),
        "pnn" => Ok(Box::new(pnn::PnnStudent::new(vs, fields, dim, cfg))),
        "final" => Ok(Box::new(final_net::FinalStudent::new(vs, fields, dim, cfg)?)),
        "ecn" => Ok(Box::new(ecn::EcnStudent::new(vs, fields, dim, cfg)?)),
        "dhen" => Ok(Box::new(dhen::DhenStudent::new(vs, fields, dim, cfg)?)),
        other => Err(format!("unknown student type '{other}' (known: {})", STUDENT_TYPES.join(", "))),
    }
}
