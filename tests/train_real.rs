//! Training on real data and the KDEF objective against an independent computation.
#![cfg(feature = "train")]
mod common;

use ensemble_serve::config::{DeviceChoice, DhenFusion, DhenModule, StudentKind, TrainConfig};
use ensemble_serve::data::Dataset;
use ensemble_serve::model::{build_student, Framework, Outputs, StudentConfig};
use ensemble_serve::train::{self, loss};
use tch::{nn, Device, Kind, Tensor};

#[test]
fn kdef_two_epochs_on_ml100k_beats_auc_070() {
    let data_dir = require_data!();
    let spec = common::spec("ml100k_ctr", &data_dir);
    let tmp = tempfile::tempdir().unwrap();
    let data = Dataset::open(&spec, tmp.path(), false).unwrap();
    let cfg =
        TrainConfig { max_epochs: 2, hidden_units: vec![128, 64], device: DeviceChoice::Cpu, ..TrainConfig::default() };
    let out = train::train(&cfg, &data, false, |_| {}).unwrap();
    assert_eq!(out.epochs.len(), 2);
    let test = out.test.unwrap();
    eprintln!("ensemble test AUC after 2 epochs: {:.4}", test.ensemble.auc);
    assert!(test.ensemble.auc > 0.70, "{}", test.ensemble.auc);
    assert!(test.students.iter().all(|s| s.auc > 0.70));
    assert!(out.best_student < 3);
}

#[test]
fn every_student_has_the_right_shape_and_gradients() {
    let cfg = StudentConfig {
        hidden_units: vec![16, 8],
        batch_norm: true,
        dropout: 0.1,
        cross_layers: 2,
        ..StudentConfig::default()
    };
    for &kind in StudentKind::ALL {
        let vs = nn::VarStore::new(Device::Cpu);
        let student = build_student(kind, vs.root(), 5, 4, &cfg).unwrap();
        let emb = Tensor::randn([32, 5, 4], (Kind::Float, Device::Cpu)).set_requires_grad(true);
        let logit = student.logit(&emb, true);
        assert_eq!(logit.size(), [32, 1], "{kind}");
        logit.sum(Kind::Float).backward();
        assert!(
            emb.grad().abs().sum(Kind::Float).double_value(&[]) > 0.0,
            "{kind}: no gradient reaches the embeddings"
        );
        for (name, v) in vs.trainable_variables().iter().enumerate() {
            assert!(v.grad().defined(), "{kind}: parameter #{name} got no gradient");
        }
    }
    let concat = StudentConfig {
        dhen_modules: vec![DhenModule::Linear, DhenModule::Dcn, DhenModule::Dot],
        dhen_ensemble: DhenFusion::Concat,
        ..cfg.clone()
    };
    let vs = nn::VarStore::new(Device::Cpu);
    let dhen = build_student(StudentKind::Dhen, vs.root(), 5, 4, &concat).unwrap();
    assert_eq!(dhen.logit(&Tensor::randn([8, 5, 4], (Kind::Float, Device::Cpu)), true).size(), [8, 1]);
    let odd = build_student(StudentKind::Ecn, nn::VarStore::new(Device::Cpu).root(), 5, 3, &cfg);
    assert_eq!(odd.err().map(|e| e.key), Some("embedding_dim"));
}

/// The KDEF loss on a 4-row, 3-student batch, recomputed here in f64 from the formula in algorithms.md.
#[test]
fn kdef_loss_matches_the_formula() {
    let z = [[0.3f64, -1.2, 2.0], [1.5, 0.2, -0.7], [-0.4, -2.2, 0.9], [0.0, 1.1, 0.5]];
    let y = [1.0f64, 0.0, 1.0, 1.0];
    let sig = |x: f64| 1.0 / (1.0 + (-x).exp());
    let (b, k) = (4usize, 3usize);
    let p: Vec<Vec<f64>> = z.iter().map(|r| r.iter().map(|&v| sig(v)).collect()).collect();
    let pt: Vec<f64> = z.iter().map(|r| sig(r.iter().sum::<f64>() / k as f64)).collect();
    let bce = |p: f64, y: f64| -(y * p.ln() + (1.0 - y) * (1.0 - p).ln());
    let mse = |a: &dyn Fn(usize) -> f64, c: &dyn Fn(usize) -> f64| {
        (0..b).map(|i| (a(i) - c(i)).powi(2)).sum::<f64>() / b as f64
    };
    let s: Vec<f64> = (0..k).map(|j| (0..b).map(|i| 1.0 - (y[i] - p[i][j]).abs()).sum::<f64>() / b as f64).collect();
    let softmax = |v: &[f64]| {
        let e: Vec<f64> = v.iter().map(|x| x.exp()).collect();
        let t: f64 = e.iter().sum();
        e.into_iter().map(|x| x / t).collect::<Vec<_>>()
    };
    let lambda = softmax(&s.iter().map(|v| -v).collect::<Vec<_>>());
    let label: f64 = (0..k).map(|j| (0..b).map(|i| bce(p[i][j], y[i])).sum::<f64>() / b as f64).sum::<f64>() / k as f64;
    let teacher: f64 = (0..k).map(|j| lambda[j] * mse(&|i| p[i][j], &|i| pt[i])).sum();
    let mut peers = 0.0;
    for j in 0..k {
        let others: Vec<usize> = (0..k).filter(|&l| l != j).collect();
        let mu = softmax(&others.iter().map(|&l| s[l] - s[j]).collect::<Vec<_>>());
        peers += others.iter().zip(&mu).map(|(&l, m)| m * mse(&|i| p[i][j], &|i| p[i][l])).sum::<f64>();
    }
    let want = label + teacher + peers / k as f64;

    let flat: Vec<f32> = z.iter().flatten().map(|&v| v as f32).collect();
    let zt = Tensor::from_slice(&flat).view([4, 3]);
    let out = Outputs { ensemble_logit: zt.mean_dim([1i64].as_slice(), true, Kind::Float), student_logits: zt };
    let yt = Tensor::from_slice(&y.map(|v| v as f32)).view([4, 1]);
    let got = loss::loss(Framework::Kdef, &out, &yt, loss::LossConfig { cetnet_alpha: 0.1 }).double_value(&[]);
    assert!((got - want).abs() < 1e-6, "KDEF loss {got} vs formula {want}");
}
