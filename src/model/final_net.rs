//! FINAL (FinalNet): a field gate (`2·σ` of a linear mix over fields) scales the embeddings, then FinalBlock
//! layers: `z = BN(W x + b)` split into halves (h2, h1) → `[h2, h1 ⊙ h2]` → ReLU → dropout.
use tch::{nn, Tensor};

use super::embedding::to_vec;
use super::layers::{linear, Dense, Head};
use super::{Student, StudentConfig};
use crate::onnx::builder::{attr_int, attr_ints};
use crate::onnx::GraphBuilder;

pub struct FinalStudent {
    gate: nn::Linear,
    layers: Vec<Dense>,
    dropout: f64,
    head: Head,
    out_dim: i64,
}

impl FinalStudent {
    pub fn new(vs: nn::Path, fields: i64, dim: i64, cfg: &StudentConfig) -> Result<Self, String> {
        if let Some(odd) = cfg.hidden_units.iter().find(|&&h| h % 2 != 0) {
            return Err(format!("final: hidden units must be even (halves multiply), got {odd}"));
        }
        let gate = linear(&vs / "gate", fields, fields);
        let mut d = fields * dim;
        let mut layers = Vec::new();
        for (i, &h) in cfg.hidden_units.iter().enumerate() {
            layers.push(Dense::new(&vs / "block" / i, d, h, cfg.batch_norm, 0.0, false));
            d = h;
        }
        let head = Head::new(&vs / "head", d);
        Ok(Self { gate, layers, dropout: cfg.dropout, head, out_dim: d })
    }
}

/// `[h2, h1 ⊙ h2]` where (h2, h1) are the first and second halves of z.
fn factorize(z: &Tensor) -> Tensor {
    let half = z.size()[1] / 2;
    let (h2, h1) = (z.narrow(1, 0, half), z.narrow(1, half, half));
    Tensor::cat(&[h2.shallow_clone(), h1 * h2], 1)
}

impl Student for FinalStudent {
    fn kind(&self) -> &'static str {
        "final"
    }
    fn hidden(&self, emb: &Tensor, train: bool) -> Tensor {
        let gates = emb.transpose(1, 2).apply(&self.gate).transpose(1, 2).sigmoid() * 2.0;
        let mut x = (emb * gates).flatten(1, -1);
        for layer in &self.layers {
            x = factorize(&layer.forward(&x, train)).relu();
            if self.dropout > 0.0 {
                x = super::dropout::dropout(&x, self.dropout, train);
            }
        }
        x
    }
    fn hidden_dim(&self) -> i64 {
        self.out_dim
    }
    fn head(&self) -> &Dense {
        &self.head.0
    }
    fn emit_hidden(&self, g: &mut GraphBuilder, emb: &str) -> String {
        let f = self.gate.ws.size()[0];
        let wt = g.initializer_f32("gate_wt", &[f, f], &to_vec(&self.gate.ws.tr()));
        let b = g.initializer_f32("gate_b", &[f], &to_vec(self.gate.bs.as_ref().expect("bias")));
        let t = g.op("Transpose", &[emb], vec![attr_ints("perm", &[0, 2, 1])]);
        let mixed = g.op("MatMul", &[&t, &wt], vec![]);
        let mixed = g.op("Add", &[&mixed, &b], vec![]);
        let back = g.op("Transpose", &[&mixed], vec![attr_ints("perm", &[0, 2, 1])]);
        let sig = g.op("Sigmoid", &[&back], vec![]);
        let two = g.initializer_f32("two", &[], &[2.0]);
        let gates = g.op("Mul", &[&sig, &two], vec![]);
        let gated = g.op("Mul", &[emb, &gates], vec![]);
        let mut x = g.op("Flatten", &[&gated], vec![attr_int("axis", 1)]);
        for layer in &self.layers {
            let z = layer.emit(g, &x);
            let half = layer.linear.ws.size()[0] / 2;
            let split = g.initializer_i64("halves", &[2], &[half, half]);
            let h2 = g.fresh("h2");
            let h1 = g.fresh("h1");
            g.op_multi("Split", &[&z, &split], &[&h2, &h1], vec![attr_int("axis", 1)]);
            let prod = g.op("Mul", &[&h1, &h2], vec![]);
            let cat = g.op("Concat", &[&h2, &prod], vec![attr_int("axis", 1)]);
            x = g.op("Relu", &[&cat], vec![]);
        }
        x
    }
    fn linear_weights(&self) -> Vec<Tensor> {
        let mut w = vec![self.gate.ws.detach()];
        w.extend(self.layers.iter().map(Dense::weight));
        w.push(self.head.0.weight());
        w
    }
}
