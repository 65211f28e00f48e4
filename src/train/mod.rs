//! `serve train`: the training loop (Adam, embedding L2, lr decay on plateau, early stopping that
//! restores the best epoch), per-epoch evaluation of the ensemble and of every student, and the run outputs.
pub mod batches;
pub mod curves;
pub mod loss;
pub mod report;

use std::time::Instant;

use tch::{nn, nn::OptimizerConfig, Device, Kind, Tensor};

use crate::config::{DeviceChoice, InvalidKey, TrainConfig};
use crate::data::{Dataset, EncodedSplit};
use crate::metrics;
use crate::model::{Ensemble, FieldLayout};
use batches::Batches;

#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error("training config: {0}")]
    Config(#[from] InvalidKey),
    #[error("the dataset has no validation split (early stopping and the best student need one)")]
    NoValidSplit,
    #[error("device = cuda: libtorch sees no CUDA device")]
    NoCuda,
    #[error(transparent)]
    Torch(#[from] tch::TchError),
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

pub use crate::run_summary::Scores;

/// The ensemble's and every student's scores on one split.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct SplitScores {
    pub ensemble: Scores,
    pub students: Vec<Scores>,
}

/// One epoch's record (a line of metrics.jsonl).
#[derive(Debug, Clone, serde::Serialize)]
pub struct EpochLog {
    pub epoch: usize,
    pub train_loss: f64,
    pub learning_rate: f64,
    pub seconds: f64,
    pub samples_per_second: f64,
    pub valid: SplitScores,
}

/// What a finished run hands to the report writer and the exporter.
pub struct TrainOutcome {
    pub vs: nn::VarStore,
    pub ensemble: Ensemble,
    pub epochs: Vec<EpochLog>,
    pub best_epoch: usize,
    pub valid: SplitScores,
    pub test: Option<SplitScores>,
    /// Index of the student with the highest validation AUC.
    pub best_student: usize,
    /// Per student: knowledge abundance of each linear layer at `ka_tau`.
    pub knowledge_abundance: Vec<Vec<f64>>,
}

pub fn resolve_device(choice: DeviceChoice) -> Result<Device, TrainError> {
    match choice {
        DeviceChoice::Cpu => Ok(Device::Cpu),
        DeviceChoice::Cuda if tch::Cuda::is_available() => Ok(Device::Cuda(0)),
        DeviceChoice::Cuda => Err(TrainError::NoCuda),
        DeviceChoice::Auto => Ok(Device::cuda_if_available()),
    }
}

/// Trains on `data.train`, selecting the epoch by validation AUC of the ensemble.
pub fn train(
    cfg: &TrainConfig,
    data: &Dataset,
    progress: bool,
    mut on_epoch: impl FnMut(&EpochLog),
) -> Result<TrainOutcome, TrainError> {
    cfg.validate()?;
    let framework = cfg.framework;
    let valid = data.valid.as_ref().ok_or(TrainError::NoValidSplit)?;
    let device = resolve_device(cfg.device)?;
    tch::manual_seed(cfg.seed as i64);
    crate::model::dropout::seed(cfg.seed);
    if cfg.threads > 0 {
        tch::set_num_threads(cfg.threads as i32);
    }
    let layout = FieldLayout::new(&data.encoder);
    let vs = nn::VarStore::new(device);
    let ensemble = Ensemble::from_config(&vs.root(), cfg, &layout)?;
    let mut opt = nn::Adam::default().build(&vs, cfg.learning_rate)?;
    let loss_cfg = loss::LossConfig { cetnet_alpha: cfg.cetnet_alpha };
    let group = data.encoder.group_slot();
    let (mut lr, mut best_auc, mut best_epoch, mut stale) = (cfg.learning_rate, f64::NEG_INFINITY, 0, 0);
    let mut best_weights = snapshot(&vs);
    let mut epochs = Vec::new();
    for epoch in 1..=cfg.max_epochs {
        let start = Instant::now();
        let batches = Batches::shuffled(&data.train, cfg.batch_size, cfg.seed.wrapping_add(epoch as u64), device);
        let bar = progress.then(|| epoch_bar(epoch, data.train.rows as u64));
        // Summed on the device and read every few steps: reading a CUDA scalar each step would sync the GPU.
        let mut loss_sum = Tensor::zeros([], (Kind::Double, device));
        let mut steps = 0usize;
        for (ids, y) in batches {
            let out = ensemble.forward(&ids, true);
            let mut total = loss::loss(framework, &out, &y, loss_cfg);
            if cfg.embedding_l2 > 0.0 {
                total += ensemble.l2(cfg.embedding_l2);
            }
            if cfg.max_gradient_norm > 0.0 {
                opt.backward_step_clip_norm(&total, cfg.max_gradient_norm);
            } else {
                opt.backward_step(&total);
            }
            loss_sum += total.detach().to_kind(Kind::Double);
            steps += 1;
            if let Some(b) = &bar {
                b.inc(ids.size()[0] as u64);
                if steps % 16 == 1 {
                    b.set_message(format!("loss {:.4}", total.double_value(&[])));
                }
            }
        }
        let loss_sum = loss_sum.double_value(&[]);
        let train_seconds = start.elapsed().as_secs_f64();
        if let Some(b) = bar {
            b.finish_and_clear();
        }
        let scores = evaluate(&ensemble, valid, group, device);
        let log = EpochLog {
            epoch,
            train_loss: loss_sum / steps.max(1) as f64,
            learning_rate: lr,
            seconds: train_seconds,
            samples_per_second: data.train.rows as f64 / train_seconds,
            valid: scores,
        };
        on_epoch(&log);
        let auc = log.valid.ensemble.auc;
        epochs.push(log);
        if auc >= best_auc + cfg.min_delta {
            (best_auc, best_epoch, stale) = (auc, epoch, 0);
            best_weights = snapshot(&vs);
        } else {
            stale += 1;
            lr = (lr * 0.1).max(1e-6);
            opt.set_lr(lr);
            if stale >= cfg.patience {
                break;
            }
        }
    }
    restore(&vs, &best_weights);
    let valid_scores = evaluate(&ensemble, valid, group, device);
    let test_scores = data.test.as_ref().map(|t| evaluate(&ensemble, t, group, device));
    let best_student = argmax_auc(&valid_scores.students);
    let knowledge_abundance = ensemble
        .students
        .iter()
        .map(|s| s.linear_weights().iter().map(|w| knowledge_abundance(w, cfg.ka_tau)).collect())
        .collect();
    Ok(TrainOutcome {
        vs,
        ensemble,
        epochs,
        best_epoch,
        valid: valid_scores,
        test: test_scores,
        best_student,
        knowledge_abundance,
    })
}

fn argmax_auc(students: &[Scores]) -> usize {
    students.iter().enumerate().max_by(|a, b| a.1.auc.total_cmp(&b.1.auc)).map_or(0, |(i, _)| i)
}

/// Scores every student and the ensemble on `split` (eval mode, no gradients).
pub fn evaluate(ensemble: &Ensemble, split: &EncodedSplit, group: Option<usize>, device: Device) -> SplitScores {
    let (ensemble_p, student_p) = predict(ensemble, split, device);
    let labels = split.labels();
    let groups: Option<Vec<u32>> = group.map(|g| (0..split.rows).map(|r| split.row(r)[g]).collect());
    let score = |p: &[f32]| Scores {
        auc: metrics::auc(p, labels).unwrap_or(f64::NAN),
        logloss: metrics::logloss(p, labels),
        gauc: groups.as_ref().and_then(|g| metrics::gauc(p, labels, g)),
    };
    SplitScores { ensemble: score(&ensemble_p), students: student_p.iter().map(|p| score(p)).collect() }
}

/// Probabilities of the ensemble and of each student for every row of `split`.
pub fn predict(ensemble: &Ensemble, split: &EncodedSplit, device: Device) -> (Vec<f32>, Vec<Vec<f32>>) {
    let k = ensemble.students.len();
    let (mut ens, mut stu) = (Vec::with_capacity(split.rows), vec![Vec::with_capacity(split.rows); k]);
    tch::no_grad(|| {
        for (ids, _) in Batches::sequential(split, 8192, device) {
            let out = ensemble.forward(&ids, false);
            ens.extend(
                Vec::<f32>::try_from(out.ensemble_logit.sigmoid().flatten(0, -1).to_device(Device::Cpu)).expect("f32"),
            );
            let sp = out.student_logits.sigmoid().to_device(Device::Cpu);
            for (j, v) in stu.iter_mut().enumerate() {
                v.extend(Vec::<f32>::try_from(sp.select(1, j as i64)).expect("f32"));
            }
        }
    });
    (ens, stu)
}

/// KA(W, τ) = #{σ_i > τ} / #{σ_i > 0} over W's singular values (KDEF eq. 3).
pub fn knowledge_abundance(w: &Tensor, tau: f64) -> f64 {
    let s = Vec::<f32>::try_from(w.to_device(Device::Cpu).to_kind(Kind::Float).svd(true, false).1).unwrap_or_default();
    let positive = s.iter().filter(|&&v| v > 0.0).count();
    let above = s.iter().filter(|&&v| v as f64 > tau).count();
    if positive == 0 {
        0.0
    } else {
        above as f64 / positive as f64
    }
}

/// In-memory copy of every variable (parameters and batch-norm statistics).
fn snapshot(vs: &nn::VarStore) -> Vec<(String, Tensor)> {
    vs.variables().into_iter().map(|(n, t)| (n, t.detach().copy())).collect()
}

fn restore(vs: &nn::VarStore, saved: &[(String, Tensor)]) {
    let vars = vs.variables();
    tch::no_grad(|| {
        for (name, value) in saved {
            if let Some(v) = vars.get(name) {
                v.shallow_clone().copy_(value);
            }
        }
    });
}

/// One epoch's progress over training rows.
pub fn epoch_bar(epoch: usize, rows: u64) -> indicatif::ProgressBar {
    let bar = crate::data::progress_bar(rows, "epoch {prefix:>3} [{bar:30}] {pos}/{len} {per_sec} ETA {eta} {msg}");
    bar.set_prefix(epoch.to_string());
    bar
}
