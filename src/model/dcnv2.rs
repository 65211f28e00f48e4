//! DCNv2 (parallel): full-rank cross layers `x_{l+1} = x_0 ⊙ (W_l x_l + b_l) + x_l` beside an MLP, both on
//! the flattened embeddings; their outputs concatenated feed the head.
use tch::{nn, Tensor};

use super::layers::{linear, Dense, Head, Mlp};
use super::student::{Student, StudentConfig};
use crate::onnx::builder::attr_int;
use crate::onnx::GraphBuilder;

pub struct Dcnv2Student {
    cross: Vec<Dense>,
    mlp: Mlp,
    head: Head,
    width: i64,
}

impl Dcnv2Student {
    pub fn new(vs: nn::Path, fields: i64, dim: i64, cfg: &StudentConfig) -> Self {
        let width = fields * dim;
        let cross = (0..cfg.cross_layers)
            .map(|i| Dense { linear: linear(&vs / "cross" / i, width, width), bn: None, dropout: 0.0, relu: false })
            .collect();
        let mlp = Mlp::new(&vs / "mlp", width, &cfg.hidden_units, cfg.batch_norm, cfg.dropout);
        let head = Head::new(&vs / "head", width + mlp.out_dim);
        Self { cross, mlp, head, width }
    }
}

impl Student for Dcnv2Student {
    fn kind(&self) -> &'static str {
        "dcnv2"
    }
    fn hidden(&self, emb: &Tensor, train: bool) -> Tensor {
        let x0 = emb.flatten(1, -1);
        let crossed = self.cross.iter().fold(x0.shallow_clone(), |x, layer| &x0 * layer.forward(&x, train) + &x);
        Tensor::cat(&[crossed, self.mlp.forward(&x0, train)], 1)
    }
    fn hidden_dim(&self) -> i64 {
        self.width + self.mlp.out_dim
    }
    fn head(&self) -> &Dense {
        &self.head.0
    }
    fn emit_hidden(&self, g: &mut GraphBuilder, emb: &str) -> String {
        let x0 = g.op("Flatten", &[emb], vec![attr_int("axis", 1)]);
        let mut x = x0.clone();
        for layer in &self.cross {
            let wx = layer.emit(g, &x);
            let prod = g.op("Mul", &[&x0, &wx], vec![]);
            x = g.op("Add", &[&prod, &x], vec![]);
        }
        let deep = self.mlp.emit(g, &x0);
        g.op("Concat", &[&x, &deep], vec![attr_int("axis", 1)])
    }
    fn linear_weights(&self) -> Vec<Tensor> {
        let mut w: Vec<Tensor> = self.cross.iter().map(Dense::weight).collect();
        w.extend(self.mlp.weights());
        w.push(self.head.0.weight());
        w
    }
}
