//! FINAL (FinalNet), as the KDEF reference builds it: a field gate appends gated copies of the embeddings
//! (`[E, E ⊙ (Wᵀ E + b)]`, 2F fields, W = 0 and b = 1 at start), then FinalLinear blocks:
//! `z = W x + b` split into halves (h2, h1) → `[h2, h1 ⊙ h2]` → batch norm → ReLU → dropout; a linear head.
use tch::{nn, nn::ModuleT, Tensor};

use super::embedding::to_vec;
use super::layers::{linear, Dense, Head};
use super::student::{Student, StudentConfig};
use crate::config::InvalidKey;
use crate::onnx::builder::{attr_int, attr_ints};
use crate::onnx::{DenseWeights, GraphBuilder, InputRank};

/// PyTorch's batch-norm epsilon.
const BN_EPS: f64 = 1e-5;

struct FinalBlock {
    linear: nn::Linear,
    bn: Option<nn::BatchNorm>,
}

impl FinalBlock {
    fn forward(&self, x: &Tensor, train: bool) -> Tensor {
        let z = factorize(&x.apply(&self.linear));
        match &self.bn {
            Some(bn) => bn.forward_t(&z, train),
            None => z,
        }
    }

    /// Eval-mode batch norm as `x · s + c` (it follows a product, so it cannot fold into the linear layer).
    fn bn_affine(bn: &nn::BatchNorm) -> (Tensor, Tensor) {
        let s = bn.ws.as_ref().expect("affine").detach() / (bn.running_var.detach() + BN_EPS).sqrt();
        let c = bn.bs.as_ref().expect("affine").detach() - bn.running_mean.detach() * &s;
        (s, c)
    }

    fn emit(&self, g: &mut GraphBuilder, x: &str) -> String {
        let (out, inp) = (self.linear.ws.size()[0], self.linear.ws.size()[1]);
        let (weight, bias) = (to_vec(&self.linear.ws), to_vec(self.linear.bs.as_ref().expect("bias")));
        let z = g.dense(x, &DenseWeights { weight: &weight, bias: Some(&bias), out, inp }, InputRank::Two);
        let split = g.initializer_i64("halves", &[2], &[out / 2, out / 2]);
        let (h2, h1) = (g.fresh("h2"), g.fresh("h1"));
        g.op_multi("Split", &[&z, &split], &[&h2, &h1], vec![attr_int("axis", 1)]);
        let prod = g.op("Mul", &[&h1, &h2], vec![]);
        let mut y = g.op("Concat", &[&h2, &prod], vec![attr_int("axis", 1)]);
        if let Some(bn) = &self.bn {
            let (s, c) = Self::bn_affine(bn);
            let s = g.initializer_f32("final_bn_scale", &[out], &to_vec(&s));
            let c = g.initializer_f32("final_bn_shift", &[out], &to_vec(&c));
            let scaled = g.op("Mul", &[&y, &s], vec![]);
            y = g.op("Add", &[&scaled, &c], vec![]);
        }
        g.op("Relu", &[&y], vec![])
    }
}

pub struct FinalStudent {
    gate: nn::Linear,
    blocks: Vec<FinalBlock>,
    dropout: f64,
    head: Head,
    out_dim: i64,
}

impl FinalStudent {
    pub fn new(vs: nn::Path, fields: i64, dim: i64, cfg: &StudentConfig) -> Result<Self, InvalidKey> {
        if let Some(odd) = cfg.hidden_units.iter().find(|&&h| h % 2 != 0) {
            return Err(InvalidKey::new("hidden_units", odd, "final students need even widths (halves multiply)"));
        }
        let gate_cfg =
            nn::LinearConfig { ws_init: nn::Init::Const(0.0), bs_init: Some(nn::Init::Const(1.0)), bias: true };
        let gate = nn::linear(&vs / "gate", fields, fields, gate_cfg);
        let mut d = 2 * fields * dim;
        let mut blocks = Vec::new();
        let bn_cfg = nn::BatchNormConfig { eps: BN_EPS, ..Default::default() };
        for (i, &h) in cfg.hidden_units.iter().enumerate() {
            let p = &vs / "block" / i;
            let bn = cfg.batch_norm.then(|| nn::batch_norm1d(&p / "bn", h, bn_cfg));
            blocks.push(FinalBlock { linear: linear(&p / "linear", d, h), bn });
            d = h;
        }
        let head = Head::new(&vs / "head", d);
        Ok(Self { gate, blocks, dropout: cfg.dropout, head, out_dim: d })
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
        let gates = emb.transpose(1, 2).apply(&self.gate).transpose(1, 2);
        let mut x = Tensor::cat(&[emb.shallow_clone(), emb * gates], 1).flatten(1, -1);
        for block in &self.blocks {
            x = block.forward(&x, train).relu();
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
        let gates = g.op("Transpose", &[&mixed], vec![attr_ints("perm", &[0, 2, 1])]);
        let gated = g.op("Mul", &[emb, &gates], vec![]);
        let both = g.op("Concat", &[emb, &gated], vec![attr_int("axis", 1)]);
        let mut x = g.op("Flatten", &[&both], vec![attr_int("axis", 1)]);
        for block in &self.blocks {
            x = block.emit(g, &x);
        }
        x
    }
    fn linear_weights(&self) -> Vec<Tensor> {
        let mut w = vec![self.gate.ws.detach()];
        w.extend(self.blocks.iter().map(|b| b.linear.ws.detach()));
        w.push(self.head.0.weight());
        w
    }
}
