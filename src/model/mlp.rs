//! MLP (DNN) student: flattened field embeddings through hidden layers.
use tch::{nn, Tensor};

use super::layers::{Dense, Head, Mlp};
use super::student::{Student, StudentConfig};
use crate::onnx::builder::attr_int;
use crate::onnx::GraphBuilder;

pub struct MlpStudent {
    mlp: Mlp,
    head: Head,
}

impl MlpStudent {
    pub fn new(vs: nn::Path, fields: i64, dim: i64, cfg: &StudentConfig) -> Self {
        let mlp = Mlp::new(&vs / "mlp", fields * dim, &cfg.hidden_units, cfg.batch_norm, cfg.dropout);
        let head = Head::new(&vs / "head", mlp.out_dim);
        Self { mlp, head }
    }
}

impl Student for MlpStudent {
    fn kind(&self) -> &'static str {
        "mlp"
    }
    fn hidden(&self, emb: &Tensor, train: bool) -> Tensor {
        self.mlp.forward(&emb.flatten(1, -1), train)
    }
    fn hidden_dim(&self) -> i64 {
        self.mlp.out_dim
    }
    fn head(&self) -> &Dense {
        &self.head.0
    }
    fn emit_hidden(&self, g: &mut GraphBuilder, emb: &str) -> String {
        let flat = g.op("Flatten", &[emb], vec![attr_int("axis", 1)]);
        self.mlp.emit(g, &flat)
    }
    fn flat_mlp(&self) -> Option<&Mlp> {
        Some(&self.mlp)
    }
    fn linear_weights(&self) -> Vec<Tensor> {
        let mut w = self.mlp.weights();
        w.push(self.head.0.weight());
        w
    }
}
