//! What every student shares: its hyper-parameters and the trait that pairs its tch forward pass with its
//! ONNX emission.
use tch::Tensor;

use super::layers;
use crate::config::{DhenFusion, DhenModule};
use crate::onnx::GraphBuilder;

/// Hyper-parameters shared by the students.
#[derive(Debug, Clone)]
pub struct StudentConfig {
    /// DHEN: interaction modules per layer (linear, dcn, self_attention, dot).
    pub dhen_modules: Vec<DhenModule>,
    /// DHEN: stacked layers.
    pub dhen_layers: i64,
    /// DHEN: how a layer combines its modules.
    pub dhen_ensemble: DhenFusion,
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
    /// The MLP over the flattened embeddings that is this student's whole representation, if it is one
    /// (the ensemble graph can then fuse its first layer with other students').
    fn flat_mlp(&self) -> Option<&layers::Mlp> {
        None
    }

    fn logit(&self, emb: &Tensor, train: bool) -> Tensor {
        self.head().forward(&self.hidden(emb, train), train)
    }
    fn emit_logit(&self, g: &mut GraphBuilder, emb: &str) -> String {
        let h = self.emit_hidden(g, emb);
        self.head().emit(g, &h)
    }
}

impl Default for StudentConfig {
    fn default() -> Self {
        Self {
            dhen_modules: vec![DhenModule::SelfAttention, DhenModule::Linear],
            dhen_layers: 2,
            dhen_ensemble: DhenFusion::Sum,
            hidden_units: vec![400, 400, 400],
            batch_norm: true,
            dropout: 0.1,
            cross_layers: 3,
        }
    }
}
