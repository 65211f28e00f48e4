//! ECN (exponential cross network): `x ← x ⊙ (H + b) + x` with `H = [W x, (W x) ⊙ ReLU(LN(W x))]`, W mapping
//! D → D/2, so each layer doubles the interaction order; dropout after each layer; a linear head.
use tch::{nn, Tensor};

use super::embedding::to_vec;
use super::layers::{Dense, Head};
use super::{Student, StudentConfig};
use crate::onnx::builder::{attr_float, attr_int};
use crate::onnx::GraphBuilder;

const LN_EPS: f64 = 1e-5;

struct CrossLayer {
    w: Tensor,
    b: Tensor,
    ln: nn::LayerNorm,
}

pub struct EcnStudent {
    layers: Vec<CrossLayer>,
    dropout: f64,
    head: Head,
    width: i64,
}

impl EcnStudent {
    pub fn new(vs: nn::Path, fields: i64, dim: i64, cfg: &StudentConfig) -> Result<Self, String> {
        let width = fields * dim;
        if width % 2 != 0 {
            return Err(format!("ecn: fields × embedding_dim must be even, got {width}"));
        }
        let std = (2.0 / (width + width / 2) as f64).sqrt();
        let layers = (0..cfg.cross_layers)
            .map(|i| {
                let p = &vs / "cross" / i;
                CrossLayer {
                    w: p.var("w", &[width / 2, width], nn::Init::Randn { mean: 0.0, stdev: std }),
                    b: p.var("b", &[width], nn::Init::Const(0.0)),
                    ln: nn::layer_norm(
                        &p / "ln",
                        vec![width / 2],
                        nn::LayerNormConfig { eps: LN_EPS, ..Default::default() },
                    ),
                }
            })
            .collect();
        Ok(Self { layers, dropout: cfg.dropout, head: Head::new(&vs / "head", width), width })
    }
}

impl Student for EcnStudent {
    fn kind(&self) -> &'static str {
        "ecn"
    }
    fn hidden(&self, emb: &Tensor, train: bool) -> Tensor {
        let mut x = emb.flatten(1, -1);
        for l in &self.layers {
            let h = x.matmul(&l.w.tr());
            let g = &h * h.apply(&l.ln).relu();
            let big_h = Tensor::cat(&[h, g], 1);
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
            let wt = g.initializer_f32("ecn_wt", &[self.width, self.width / 2], &to_vec(&l.w.tr()));
            let h = g.op("MatMul", &[&x, &wt], vec![]);
            let scale = g.initializer_f32("ln_scale", &[self.width / 2], &to_vec(l.ln.ws.as_ref().expect("affine")));
            let bias = g.initializer_f32("ln_bias", &[self.width / 2], &to_vec(l.ln.bs.as_ref().expect("affine")));
            let ln = g.op(
                "LayerNormalization",
                &[&h, &scale, &bias],
                vec![attr_int("axis", -1), attr_float("epsilon", LN_EPS as f32)],
            );
            let r = g.op("Relu", &[&ln], vec![]);
            let gg = g.op("Mul", &[&h, &r], vec![]);
            let big_h = g.op("Concat", &[&h, &gg], vec![attr_int("axis", 1)]);
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
