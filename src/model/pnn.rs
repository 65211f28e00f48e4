//! PNN (IPNN): the inner products of every field pair, next to the flattened embeddings, through an MLP.
use tch::{nn, Kind, Tensor};

use super::layers::{Dense, Head, Mlp};
use super::student::{Student, StudentConfig};
use crate::onnx::builder::{attr_int, attr_ints};
use crate::onnx::GraphBuilder;

pub struct PnnStudent {
    mlp: Mlp,
    head: Head,
    /// Flat indices i·F + j of the pairs i < j in the F × F product matrix.
    pairs: Vec<i64>,
    pairs_t: Tensor,
}

impl PnnStudent {
    pub fn new(vs: nn::Path, fields: i64, dim: i64, cfg: &StudentConfig) -> Self {
        let pairs: Vec<i64> = (0..fields).flat_map(|i| (i + 1..fields).map(move |j| i * fields + j)).collect();
        let mlp =
            Mlp::new(&vs / "mlp", fields * dim + pairs.len() as i64, &cfg.hidden_units, cfg.batch_norm, cfg.dropout);
        let head = Head::new(&vs / "head", mlp.out_dim);
        let pairs_t = Tensor::from_slice(&pairs).to_device(vs.device());
        Self { mlp, head, pairs, pairs_t }
    }
}

impl Student for PnnStudent {
    fn kind(&self) -> &'static str {
        "pnn"
    }
    fn hidden(&self, emb: &Tensor, train: bool) -> Tensor {
        let products = emb.bmm(&emb.transpose(1, 2)).flatten(1, -1).index_select(1, &self.pairs_t);
        let x = Tensor::cat(&[emb.flatten(1, -1), products.to_kind(Kind::Float)], 1);
        self.mlp.forward(&x, train)
    }
    fn hidden_dim(&self) -> i64 {
        self.mlp.out_dim
    }
    fn head(&self) -> &Dense {
        &self.head.0
    }
    fn emit_hidden(&self, g: &mut GraphBuilder, emb: &str) -> String {
        let t = g.op("Transpose", &[emb], vec![attr_ints("perm", &[0, 2, 1])]);
        let gram = g.op("MatMul", &[emb, &t], vec![]);
        let flat_gram = g.op("Flatten", &[&gram], vec![attr_int("axis", 1)]);
        let idx = g.initializer_i64("pairs", &[self.pairs.len() as i64], &self.pairs);
        let products = g.op("Gather", &[&flat_gram, &idx], vec![attr_int("axis", 1)]);
        let flat = g.op("Flatten", &[emb], vec![attr_int("axis", 1)]);
        let x = g.op("Concat", &[&flat, &products], vec![attr_int("axis", 1)]);
        self.mlp.emit(g, &x)
    }
    fn linear_weights(&self) -> Vec<Tensor> {
        let mut w = self.mlp.weights();
        w.push(self.head.0.weight());
        w
    }
}
