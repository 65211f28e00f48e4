//! ECN (exponential cross network): `x ← x ⊙ (H + b) + x` with `H = [W x, (W x) ⊙ ReLU(LN(W x))]`, W mapping
//! D → D/2, so each layer doubles the interaction order; dropout after each layer; a linear head.
//! As in the reference, `W x` passes a one-channel batch norm (one mean/variance over the whole batch × D/2
//! block): without it `W x` of small embeddings stays near zero and the layer is a near-identity.
//! Also as in the reference, each field's first d/2 dimensions take `W x` and its last d/2 the gated copy.
use tch::{nn, nn::ModuleT, Tensor};

use super::embedding::to_vec;
use super::layers::{Dense, Head};
use super::student::{Student, StudentConfig};
use crate::config::InvalidKey;
use crate::onnx::builder::{attr_float, attr_int};
use crate::onnx::{DenseWeights, GraphBuilder, InputRank};

/// Layer-norm and batch-norm epsilon (PyTorch defaults).
const NORM_EPS: f64 = 1e-5;

struct CrossLayer {
    w: Tensor,
    b: Tensor,
    bn: Option<nn::BatchNorm>,
    ln: nn::LayerNorm,
}

impl CrossLayer {
    /// `W x`, through the scalar batch norm when configured: B × D → B × D/2.
    fn project(&self, x: &Tensor, train: bool) -> Tensor {
        let h = x.matmul(&self.w.tr());
        match &self.bn {
            Some(bn) => bn.forward_t(&h.unsqueeze(1), train).squeeze_dim(1),
            None => h,
        }
    }

    /// W and the shift c with `BN(W x) = (s·W) x + c` in eval mode, s = γ/√(σ²+ε), c = β − s·μ.
    fn folded(&self) -> (Tensor, Option<Tensor>) {
        let w = self.w.detach();
        match &self.bn {
            None => (w, None),
            Some(bn) => {
                let s = bn.ws.as_ref().expect("affine").detach() / (bn.running_var.detach() + NORM_EPS).sqrt();
                let c = bn.bs.as_ref().expect("affine").detach() - bn.running_mean.detach() * &s;
                (w * &s, Some(c.expand([self.w.size()[0]], false).contiguous()))
            }
        }
    }
}

pub struct EcnStudent {
    layers: Vec<CrossLayer>,
    dropout: f64,
    head: Head,
    fields: i64,
    dim: i64,
    width: i64,
}

impl EcnStudent {
    pub fn new(vs: nn::Path, fields: i64, dim: i64, cfg: &StudentConfig) -> Result<Self, InvalidKey> {
        let width = fields * dim;
        if dim % 2 != 0 {
            return Err(InvalidKey::new("embedding_dim", dim, "ecn students need an even embedding dimension"));
        }
        let std = (2.0 / (width + width / 2) as f64).sqrt();
        let layers = (0..cfg.cross_layers)
            .map(|i| {
                let p = &vs / "cross" / i;
                CrossLayer {
                    w: p.var("w", &[width / 2, width], nn::Init::Randn { mean: 0.0, stdev: std }),
                    b: p.var("b", &[width], nn::Init::Uniform { lo: 0.0, up: 1.0 }),
                    bn: cfg.batch_norm.then(|| {
                        nn::batch_norm1d(&p / "bn", 1, nn::BatchNormConfig { eps: NORM_EPS, ..Default::default() })
                    }),
                    ln: nn::layer_norm(
                        &p / "ln",
                        vec![width / 2],
                        nn::LayerNormConfig { eps: NORM_EPS, ..Default::default() },
                    ),
                }
            })
            .collect();
        Ok(Self { layers, dropout: cfg.dropout, head: Head::new(&vs / "head", width), fields, dim, width })
    }

    /// `[W x, gated]` (each B × F·d/2) laid out per field: field f's d/2 values of `W x`, then its d/2 gated ones.
    fn interleave(&self, h: &Tensor, gated: &Tensor) -> Tensor {
        let per_field = [-1, self.fields, self.dim / 2];
        Tensor::cat(&[h.view(per_field), gated.view(per_field)], 2).flatten(1, -1)
    }

    fn emit_interleave(&self, g: &mut GraphBuilder, h: &str, gated: &str) -> String {
        let per_field = g.initializer_i64("ecn_per_field", &[3], &[-1, self.fields, self.dim / 2]);
        let h = g.op("Reshape", &[h, &per_field], vec![]);
        let gated = g.op("Reshape", &[gated, &per_field], vec![]);
        let both = g.op("Concat", &[&h, &gated], vec![attr_int("axis", 2)]);
        g.op("Flatten", &[&both], vec![attr_int("axis", 1)])
    }
}

impl Student for EcnStudent {
    fn kind(&self) -> &'static str {
        "ecn"
    }
    fn hidden(&self, emb: &Tensor, train: bool) -> Tensor {
        let mut x = emb.flatten(1, -1);
        for l in &self.layers {
            let h = l.project(&x, train);
            let gated = &h * h.apply(&l.ln).relu();
            let big_h = self.interleave(&h, &gated);
            x = &x * (big_h + &l.b) + &x;
            if self.dropout > 0.0 {
                x = super::dropout::dropout(&x, self.dropout, train);
            }
        }
        x
    }
    fn hidden_dim(&self) -> i64 {
        self.width
    }
    fn head(&self) -> &Dense {
        &self.head.0
    }
    fn emit_hidden(&self, g: &mut GraphBuilder, emb: &str) -> String {
        let mut x = g.op("Flatten", &[emb], vec![attr_int("axis", 1)]);
        for l in &self.layers {
            let (w, shift) = l.folded();
            let (weight, shift) = (to_vec(&w), shift.as_ref().map(to_vec));
            let dense = DenseWeights { weight: &weight, bias: shift.as_deref(), out: self.width / 2, inp: self.width };
            let h = g.dense(&x, &dense, InputRank::Any);
            let scale = g.initializer_f32("ln_scale", &[self.width / 2], &to_vec(l.ln.ws.as_ref().expect("affine")));
            let bias = g.initializer_f32("ln_bias", &[self.width / 2], &to_vec(l.ln.bs.as_ref().expect("affine")));
            let ln = g.op(
                "LayerNormalization",
                &[&h, &scale, &bias],
                vec![attr_int("axis", -1), attr_float("epsilon", NORM_EPS as f32)],
            );
            let r = g.op("Relu", &[&ln], vec![]);
            let gg = g.op("Mul", &[&h, &r], vec![]);
            let big_h = self.emit_interleave(g, &h, &gg);
            let b = g.initializer_f32("ecn_b", &[self.width], &to_vec(&l.b));
            let hb = g.op("Add", &[&big_h, &b], vec![]);
            let prod = g.op("Mul", &[&x, &hb], vec![]);
            x = g.op("Add", &[&prod, &x], vec![]);
        }
        x
    }
    fn linear_weights(&self) -> Vec<Tensor> {
        let mut w: Vec<Tensor> = self.layers.iter().map(|l| l.w.detach()).collect();
        w.push(self.head.0.weight());
        w
    }
}
