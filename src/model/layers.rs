//! Dense layers: each holds its tch forward pass and its ONNX emission side by side.
//! Eval-mode emission folds batch norm into the preceding linear layer and drops dropout; the builder's
//! precision picks fp32 or int8 weights.
use tch::{nn, nn::ModuleT, Tensor};

use super::embedding::to_vec;
use crate::onnx::{DenseWeights, GraphBuilder, InputRank};

/// Xavier-normal weights, zero bias (FuxiCTR's initialisation).
pub fn linear(vs: nn::Path, inp: i64, out: i64) -> nn::Linear {
    let std = (2.0 / (inp + out) as f64).sqrt();
    let cfg = nn::LinearConfig {
        ws_init: nn::Init::Randn { mean: 0.0, stdev: std },
        bs_init: Some(nn::Init::Const(0.0)),
        bias: true,
    };
    nn::linear(vs, inp, out, cfg)
}

/// tch's `BatchNormConfig::default().eps` (its config field is private).
const BN_EPS: f64 = 1e-5;

/// `Linear → [BatchNorm] → ReLU → [Dropout]`, FuxiCTR's MLP_Block hidden layer.
pub struct Dense {
    pub linear: nn::Linear,
    pub bn: Option<nn::BatchNorm>,
    pub dropout: f64,
    pub relu: bool,
}

impl Dense {
    pub fn new(vs: nn::Path, inp: i64, out: i64, batch_norm: bool, dropout: f64, relu: bool) -> Self {
        let bn_cfg = nn::BatchNormConfig { eps: BN_EPS, ..Default::default() };
        let bn = batch_norm.then(|| nn::batch_norm1d(&vs / "bn", out, bn_cfg));
        Self { linear: linear(&vs / "linear", inp, out), bn, dropout, relu }
    }

    pub fn forward(&self, xs: &Tensor, train: bool) -> Tensor {
        let mut h = xs.apply(&self.linear);
        if let Some(bn) = &self.bn {
            h = bn.forward_t(&h, train);
        }
        if self.relu {
            h = h.relu();
        }
        if self.dropout > 0.0 {
            super::dropout::dropout(&h, self.dropout, train)
        } else {
            h
        }
    }

    /// Folded weights: W' = diag(s)·W, b' = s·(b − μ) + β with s = γ/√(σ²+ε).
    pub fn folded(&self) -> (Tensor, Tensor) {
        let w = self.linear.ws.detach();
        let b = self.linear.bs.as_ref().expect("bias").detach();
        match &self.bn {
            None => (w, b),
            Some(bn) => {
                let s = bn.ws.as_ref().expect("affine").detach() / (bn.running_var.detach() + BN_EPS).sqrt();
                let b2 = (b - bn.running_mean.detach()) * &s + bn.bs.as_ref().expect("affine").detach();
                (w * s.unsqueeze(1), b2)
            }
        }
    }

    /// `input` [B, in] → [B, out].
    pub fn emit(&self, g: &mut GraphBuilder, input: &str) -> String {
        self.emit_ranked(g, input, InputRank::Two)
    }

    /// `input` [B, …, in] → [B, …, out] (Gemm for rank 2, MatMul + Add past it).
    pub fn emit_ranked(&self, g: &mut GraphBuilder, input: &str, rank: InputRank) -> String {
        let (w, b) = self.folded();
        let (weight, bias) = (to_vec(&w), to_vec(&b));
        let dense = DenseWeights { weight: &weight, bias: Some(&bias), out: w.size()[0], inp: w.size()[1] };
        let y = g.dense(input, &dense, rank);
        if self.relu {
            g.op("Relu", &[&y], vec![])
        } else {
            y
        }
    }

    /// The linear weight, for knowledge abundance.
    pub fn weight(&self) -> Tensor {
        self.linear.ws.detach()
    }
}

/// A stack of hidden `Dense` layers.
pub struct Mlp {
    pub layers: Vec<Dense>,
    pub out_dim: i64,
}

impl Mlp {
    pub fn new(vs: nn::Path, inp: i64, hidden: &[i64], batch_norm: bool, dropout: f64) -> Self {
        let mut layers = Vec::new();
        let mut d = inp;
        for (i, &h) in hidden.iter().enumerate() {
            layers.push(Dense::new(&vs / i, d, h, batch_norm, dropout, true));
            d = h;
        }
        Self { layers, out_dim: d }
    }
    pub fn forward(&self, xs: &Tensor, train: bool) -> Tensor {
        self.layers.iter().fold(xs.shallow_clone(), |h, l| l.forward(&h, train))
    }
    pub fn emit(&self, g: &mut GraphBuilder, input: &str) -> String {
        self.emit_from(g, input, 0)
    }
    /// Layers `start..` from `input`, the output of layer `start - 1` (computed elsewhere, e.g. fused).
    pub fn emit_from(&self, g: &mut GraphBuilder, input: &str, start: usize) -> String {
        self.layers[start..].iter().fold(input.to_string(), |h, l| l.emit(g, &h))
    }
    pub fn weights(&self) -> Vec<Tensor> {
        self.layers.iter().map(Dense::weight).collect()
    }
}

/// A plain linear head to one logit.
pub struct Head(pub Dense);

impl Head {
    pub fn new(vs: nn::Path, inp: i64) -> Self {
        Self(Dense::new(vs, inp, 1, false, 0.0, false))
    }
}
