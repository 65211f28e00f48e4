//! DHEN: stacked layers `Y = LayerNorm(Ensemble_i Interaction_i(X) + ShortCut(X))` over the list of field
//! embeddings X (m × d), then an MLP head on the flattened list.
//! Modules (each m × d → m × d): `linear` (u = Wᵀ·X mixes the list), `dcn` (a DCN cross on the flattened
//! list, `x0 ⊙ (W x + b)`, reshaped back; the algorithms page's `W·(X Xᵀ)` does not give m × d, so the
//! cross of the DCN student is used), `self_attention` (one single-head transformer encoder layer, then a
//! list mix), `dot` (DLRM pairwise dot products → ReLU layer → projection to m × d).
//! Ensemble `sum` keeps the list length (shortcut = identity); `concat` stacks the module outputs along the
//! list (k·m entries) with a learned projection of X as shortcut. LayerNorm is over each embedding (d).
use tch::{nn, Kind, Tensor};

use super::embedding::to_vec;
use super::layers::{linear, Dense, Head, Mlp};
use super::student::{Student, StudentConfig};
use crate::config::{DhenFusion, DhenModule, InvalidKey};
use crate::onnx::builder::{attr_float, attr_int, attr_ints};
use crate::onnx::{GraphBuilder, InputRank};

const LN_EPS: f64 = 1e-5;

/// A list mix: `u = Wᵀ X` (W: m_in × m_out), i.e. a linear map over the list dimension.
struct ListMix {
    w: Tensor,
}

impl ListMix {
    fn new(vs: nn::Path, m_in: i64, m_out: i64) -> Self {
        let std = (2.0 / (m_in + m_out) as f64).sqrt();
        Self { w: vs.var("w", &[m_in, m_out], nn::Init::Randn { mean: 0.0, stdev: std }) }
    }
    fn forward(&self, x: &Tensor) -> Tensor {
        x.transpose(1, 2).matmul(&self.w).transpose(1, 2)
    }
    fn emit(&self, g: &mut GraphBuilder, x: &str) -> String {
        let s = self.w.size();
        let w = g.initializer_f32("mix", &[s[0], s[1]], &to_vec(&self.w));
        let t = g.op("Transpose", &[x], vec![attr_ints("perm", &[0, 2, 1])]);
        let y = g.op("MatMul", &[&t, &w], vec![]);
        g.op("Transpose", &[&y], vec![attr_ints("perm", &[0, 2, 1])])
    }
}

struct Ln {
    ln: nn::LayerNorm,
}

impl Ln {
    fn new(vs: nn::Path, d: i64) -> Self {
        Self { ln: nn::layer_norm(vs, vec![d], nn::LayerNormConfig { eps: LN_EPS, ..Default::default() }) }
    }
    fn emit(&self, g: &mut GraphBuilder, x: &str) -> String {
        let d = self.ln.ws.as_ref().expect("affine").size()[0];
        let scale = g.initializer_f32("ln_scale", &[d], &to_vec(self.ln.ws.as_ref().expect("affine")));
        let bias = g.initializer_f32("ln_bias", &[d], &to_vec(self.ln.bs.as_ref().expect("affine")));
        g.op(
            "LayerNormalization",
            &[x, &scale, &bias],
            vec![attr_int("axis", -1), attr_float("epsilon", LN_EPS as f32)],
        )
    }
}

// A handful of modules per student, built once: the size gap between variants costs nothing worth boxing.
#[allow(clippy::large_enum_variant)]
enum Module {
    Linear(ListMix),
    Dcn {
        cross: Dense,
        m: i64,
        d: i64,
    },
    SelfAttention {
        q: Dense,
        k: Dense,
        v: Dense,
        o: Dense,
        ln1: Ln,
        ff1: Dense,
        ff2: Dense,
        ln2: Ln,
        mix: ListMix,
        d: i64,
    },
    Dot {
        pairs: Vec<i64>,
        pairs_t: Tensor,
        hidden: Dense,
        proj: Dense,
        m: i64,
        d: i64,
    },
}

impl Module {
    fn new(kind: DhenModule, vs: nn::Path, m: i64, d: i64) -> Self {
        let lin = |p: nn::Path, i, o, relu| Dense { linear: linear(p, i, o), bn: None, dropout: 0.0, relu };
        match kind {
            DhenModule::Linear => Module::Linear(ListMix::new(vs, m, m)),
            DhenModule::Dcn => Module::Dcn { cross: lin(&vs / "cross", m * d, m * d, false), m, d },
            DhenModule::SelfAttention => Module::SelfAttention {
                q: lin(&vs / "q", d, d, false),
                k: lin(&vs / "k", d, d, false),
                v: lin(&vs / "v", d, d, false),
                o: lin(&vs / "o", d, d, false),
                ln1: Ln::new(&vs / "ln1", d),
                ff1: lin(&vs / "ff1", d, 2 * d, true),
                ff2: lin(&vs / "ff2", 2 * d, d, false),
                ln2: Ln::new(&vs / "ln2", d),
                mix: ListMix::new(&vs / "mix", m, m),
                d,
            },
            DhenModule::Dot => {
                let pairs: Vec<i64> = (0..m).flat_map(|i| (i + 1..m).map(move |j| i * m + j)).collect();
                let pairs_t = Tensor::from_slice(&pairs).to_device(vs.device());
                let p = pairs.len() as i64;
                Module::Dot {
                    hidden: lin(&vs / "hidden", p, 64, true),
                    proj: lin(&vs / "proj", 64, m * d, false),
                    pairs,
                    pairs_t,
                    m,
                    d,
                }
            }
        }
    }

    fn forward(&self, x: &Tensor) -> Tensor {
        match self {
            Module::Linear(mix) => mix.forward(x),
            Module::Dcn { cross, m, d } => {
                let flat = x.flatten(1, -1);
                (&flat * cross.forward(&flat, false)).view([-1, *m, *d])
            }
            Module::SelfAttention { q, k, v, o, ln1, ff1, ff2, ln2, mix, d } => {
                let scores = q.forward(x, false).matmul(&k.forward(x, false).transpose(1, 2)) / (*d as f64).sqrt();
                let att = scores.softmax(-1, Kind::Float).matmul(&v.forward(x, false));
                let x1 = (x + o.forward(&att, false)).apply(&ln1.ln);
                let x2 = (&x1 + ff2.forward(&ff1.forward(&x1, false), false)).apply(&ln2.ln);
                mix.forward(&x2)
            }
            Module::Dot { pairs_t, hidden, proj, m, d, .. } => {
                let dots = x.bmm(&x.transpose(1, 2)).flatten(1, -1).index_select(1, pairs_t);
                proj.forward(&hidden.forward(&dots, false), false).view([-1, *m, *d])
            }
        }
    }

    fn emit(&self, g: &mut GraphBuilder, x: &str) -> String {
        match self {
            Module::Linear(mix) => mix.emit(g, x),
            Module::Dcn { cross, m, d } => {
                let flat = g.op("Flatten", &[x], vec![attr_int("axis", 1)]);
                let wx = cross.emit(g, &flat);
                let prod = g.op("Mul", &[&flat, &wx], vec![]);
                reshape(g, &prod, *m, *d)
            }
            Module::SelfAttention { q, k, v, o, ln1, ff1, ff2, ln2, mix, d } => {
                let (qx, kx, vx) = (dense3(g, q, x), dense3(g, k, x), dense3(g, v, x));
                let kt = g.op("Transpose", &[&kx], vec![attr_ints("perm", &[0, 2, 1])]);
                let s = g.op("MatMul", &[&qx, &kt], vec![]);
                let scale = g.initializer_f32("scale", &[], &[1.0 / (*d as f32).sqrt()]);
                let s = g.op("Mul", &[&s, &scale], vec![]);
                let a = g.op("Softmax", &[&s], vec![attr_int("axis", -1)]);
                let att = g.op("MatMul", &[&a, &vx], vec![]);
                let ox = dense3(g, o, &att);
                let r1 = g.op("Add", &[x, &ox], vec![]);
                let x1 = ln1.emit(g, &r1);
                let f = dense3(g, ff1, &x1);
                let f = dense3(g, ff2, &f);
                let r2 = g.op("Add", &[&x1, &f], vec![]);
                let x2 = ln2.emit(g, &r2);
                mix.emit(g, &x2)
            }
            Module::Dot { pairs, hidden, proj, m, d, .. } => {
                let t = g.op("Transpose", &[x], vec![attr_ints("perm", &[0, 2, 1])]);
                let gram = g.op("MatMul", &[x, &t], vec![]);
                let flat = g.op("Flatten", &[&gram], vec![attr_int("axis", 1)]);
                let idx = g.initializer_i64("pairs", &[pairs.len() as i64], pairs);
                let dots = g.op("Gather", &[&flat, &idx], vec![attr_int("axis", 1)]);
                let h = hidden.emit(g, &dots);
                let p = proj.emit(g, &h);
                reshape(g, &p, *m, *d)
            }
        }
    }

    fn weights(&self) -> Vec<Tensor> {
        match self {
            Module::Linear(mix) => vec![mix.w.detach()],
            Module::Dcn { cross, .. } => vec![cross.weight()],
            Module::SelfAttention { q, k, v, o, ff1, ff2, mix, .. } => {
                let mut w: Vec<Tensor> = [q, k, v, o, ff1, ff2].iter().map(|l| l.weight()).collect();
                w.push(mix.w.detach());
                w
            }
            Module::Dot { hidden, proj, .. } => vec![hidden.weight(), proj.weight()],
        }
    }
}

/// A dense layer applied to the last axis of a B × m × k tensor.
fn dense3(g: &mut GraphBuilder, layer: &Dense, x: &str) -> String {
    layer.emit_ranked(g, x, InputRank::Any)
}

fn reshape(g: &mut GraphBuilder, x: &str, m: i64, d: i64) -> String {
    let shape = g.initializer_i64("shape", &[3], &[-1, m, d]);
    g.op("Reshape", &[x, &shape], vec![])
}

struct Layer {
    modules: Vec<Module>,
    shortcut: Option<ListMix>,
    ln: Ln,
    concat: bool,
}

pub struct DhenStudent {
    layers: Vec<Layer>,
    mlp: Mlp,
    head: Head,
}

impl DhenStudent {
    pub fn new(vs: nn::Path, fields: i64, dim: i64, cfg: &StudentConfig) -> Result<Self, InvalidKey> {
        if cfg.dhen_modules.is_empty() {
            return Err(InvalidKey::new("dhen_modules", "[]", "a dhen student needs at least one module"));
        }
        let concat = cfg.dhen_ensemble == DhenFusion::Concat;
        let mut m = fields;
        let mut layers = Vec::new();
        for i in 0..cfg.dhen_layers {
            let p = &vs / "layer" / i;
            let modules = cfg
                .dhen_modules
                .iter()
                .enumerate()
                .map(|(j, &kind)| Module::new(kind, &p / format!("{kind}_{j}"), m, dim))
                .collect::<Vec<_>>();
            let out = if concat { m * modules.len() as i64 } else { m };
            let shortcut = (out != m).then(|| ListMix::new(&p / "shortcut", m, out));
            layers.push(Layer { modules, shortcut, ln: Ln::new(&p / "ln", dim), concat });
            m = out;
        }
        let mlp = Mlp::new(&vs / "mlp", m * dim, &cfg.hidden_units, cfg.batch_norm, cfg.dropout);
        let head = Head::new(&vs / "head", mlp.out_dim);
        Ok(Self { layers, mlp, head })
    }
}

impl Student for DhenStudent {
    fn kind(&self) -> &'static str {
        "dhen"
    }
    fn hidden(&self, emb: &Tensor, train: bool) -> Tensor {
        let mut x = emb.shallow_clone();
        for l in &self.layers {
            let outs: Vec<Tensor> = l.modules.iter().map(|m| m.forward(&x)).collect();
            let mixed =
                if l.concat { Tensor::cat(&outs, 1) } else { outs.into_iter().reduce(|a, b| a + b).expect("a module") };
            let short = l.shortcut.as_ref().map_or_else(|| x.shallow_clone(), |s| s.forward(&x));
            x = (mixed + short).apply(&l.ln.ln);
        }
        self.mlp.forward(&x.flatten(1, -1), train)
    }
    fn hidden_dim(&self) -> i64 {
        self.mlp.out_dim
    }
    fn head(&self) -> &Dense {
        &self.head.0
    }
    fn emit_hidden(&self, g: &mut GraphBuilder, emb: &str) -> String {
        let mut x = emb.to_string();
        for l in &self.layers {
            let outs: Vec<String> = l.modules.iter().map(|m| m.emit(g, &x)).collect();
            let mixed = if l.concat {
                let refs: Vec<&str> = outs.iter().map(String::as_str).collect();
                g.op("Concat", &refs, vec![attr_int("axis", 1)])
            } else {
                outs.iter().skip(1).fold(outs[0].clone(), |acc, o| g.op("Add", &[&acc, o], vec![]))
            };
            let short = l.shortcut.as_ref().map_or_else(|| x.clone(), |s| s.emit(g, &x));
            let sum = g.op("Add", &[&mixed, &short], vec![]);
            x = l.ln.emit(g, &sum);
        }
        let flat = g.op("Flatten", &[&x], vec![attr_int("axis", 1)]);
        self.mlp.emit(g, &flat)
    }
    fn linear_weights(&self) -> Vec<Tensor> {
        let mut w: Vec<Tensor> = self.layers.iter().flat_map(|l| l.modules.iter().flat_map(Module::weights)).collect();
        w.extend(self.mlp.weights());
        w.push(self.head.0.weight());
        w
    }
}
