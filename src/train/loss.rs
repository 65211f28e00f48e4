//! Training objectives of every framework, exactly as `shared/design/algorithms.md` states them.
use tch::{Kind, Reduction, Tensor};

use crate::model::{Framework, Outputs};

/// Loss weights that only some frameworks use.
#[derive(Debug, Clone, Copy)]
pub struct LossConfig {
    /// CETNet's weight on the symmetric-KL collaborative loss.
    pub cetnet_alpha: f64,
}

/// The batch loss (without the embedding L2 term). `y`: B × 1 labels in {0, 1}.
pub fn loss(framework: Framework, out: &Outputs, y: &Tensor, cfg: LossConfig) -> Tensor {
    let z = &out.student_logits;
    let k = z.size()[1];
    let bce_teacher = || out.ensemble_logit.binary_cross_entropy_with_logits::<Tensor>(y, None, None, Reduction::Mean);
    let p = z.sigmoid();
    match framework {
        Framework::Single | Framework::Mean | Framework::Sum | Framework::Concat => bce_teacher(),
        Framework::Kd => {
            let lambda = (-exam_scores(&p, y)).softmax(0, Kind::Float);
            bce_teacher() + (lambda * teacher_mse(&p, &out.ensemble_logit)).sum(Kind::Float)
        }
        Framework::Dml => {
            let peer = peer_mse(&p).sum_dim_intlist([1i64].as_slice(), false, Kind::Float) / k as f64;
            student_bce(z, y).sum(Kind::Float) + peer.sum(Kind::Float)
        }
        Framework::Kdef | Framework::KdefNoExam => {
            let (lambda, mu) = if framework == Framework::Kdef {
                let s = exam_scores(&p, y);
                ((-&s).softmax(0, Kind::Float), peer_weights(&s))
            } else {
                (Tensor::ones([k], (Kind::Float, z.device())), off_diagonal(k, z.device()))
            };
            let label = student_bce(z, y).mean(Kind::Float);
            let teacher = (lambda * teacher_mse(&p, &out.ensemble_logit)).sum(Kind::Float);
            let peers = (mu * peer_mse(&p)).sum(Kind::Float) / k as f64;
            label + teacher + peers
        }
        Framework::Cetnet => student_bce(z, y).sum(Kind::Float) + bce_teacher() + symmetric_kl(&p) * cfg.cetnet_alpha,
    }
}

/// S_k = mean_i (1 − |y_i − p_{k,i}|), not detached (as the reference implementation).
pub fn exam_scores(p: &Tensor, y: &Tensor) -> Tensor {
    let correct: Tensor = 1.0 - (y - p).abs();
    correct.mean_dim([0i64].as_slice(), false, Kind::Float)
}

/// μ_{k,l} = softmax over l ≠ k of (S_l − S_k); zero on the diagonal.
pub fn peer_weights(s: &Tensor) -> Tensor {
    let k = s.size()[0];
    let diff = s.unsqueeze(0) - s.unsqueeze(1);
    let eye = Tensor::eye(k, (Kind::Bool, s.device()));
    diff.masked_fill(&eye, f64::NEG_INFINITY).softmax(1, Kind::Float)
}

/// BCE of each student against the labels: K values.
fn student_bce(z: &Tensor, y: &Tensor) -> Tensor {
    let y = y.expand_as(z);
    z.binary_cross_entropy_with_logits::<Tensor>(&y, None, None, Reduction::None).mean_dim(
        [0i64].as_slice(),
        false,
        Kind::Float,
    )
}

/// MSE(p_k, stop_grad(p_t)) for each student: K values.
fn teacher_mse(p: &Tensor, teacher_logit: &Tensor) -> Tensor {
    let pt = teacher_logit.detach().sigmoid();
    (p - pt).square().mean_dim([0i64].as_slice(), false, Kind::Float)
}

/// M[k, l] = MSE(p_k, stop_grad(p_l)), zero on the diagonal: K × K.
fn peer_mse(p: &Tensor) -> Tensor {
    let k = p.size()[1];
    let diff = p.unsqueeze(2) - p.detach().unsqueeze(1);
    diff.square().mean_dim([0i64].as_slice(), false, Kind::Float) * off_diagonal(k, p.device())
}

fn off_diagonal(k: i64, device: tch::Device) -> Tensor {
    Tensor::ones([k, k], (Kind::Float, device)) - Tensor::eye(k, (Kind::Float, device))
}

/// Mean over ordered pairs (k ≠ l) of mean_i KL(p_k ‖ p_l) between Bernoulli predictions.
fn symmetric_kl(p: &Tensor) -> Tensor {
    let k = p.size()[1];
    let p = p.clamp(1e-7, 1.0 - 1e-7);
    let (a, b) = (p.unsqueeze(2), p.unsqueeze(1));
    let (na, nb): (Tensor, Tensor) = (1.0 - &a, 1.0 - &b);
    let kl = &a * (&a / &b).log() + &na * (&na / &nb).log();
    let pairs = kl.mean_dim([0i64].as_slice(), false, Kind::Float) * off_diagonal(k, p.device());
    pairs.sum(Kind::Float) / (k * (k - 1)).max(1) as f64
}
