//! `config/train.toml`: what `serve train` reads. Every choice is an enum, so an unknown value fails while
//! the file is parsed (naming the key, the value and the allowed values), before any data is read.
use std::fmt;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// Names a variant as the config spells it (its serde name), for messages, run names and manifests.
macro_rules! spelled {
    ($ty:ident, $key:literal { $($v:ident => $s:literal),+ $(,)? }) => {
        impl $ty {
            pub const ALL: &'static [$ty] = &[$($ty::$v),+];
            pub fn as_str(self) -> &'static str {
                match self { $($ty::$v => $s),+ }
            }
        }
        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.pad(self.as_str())
            }
        }
        impl std::str::FromStr for $ty {
            type Err = InvalidKey;
            fn from_str(s: &str) -> Result<Self, InvalidKey> {
                $ty::ALL.iter().copied().find(|v| v.as_str() == s).ok_or_else(|| InvalidKey {
                    key: $key,
                    value: s.into(),
                    rule: format!("allowed: {}", $ty::ALL.iter().map(|v| v.as_str()).collect::<Vec<_>>().join(", ")),
                })
            }
        }
    };
}

/// A training key whose value is out of range or unknown.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{key} = {value}: {rule}")]
pub struct InvalidKey {
    pub key: &'static str,
    pub value: String,
    pub rule: String,
}

/// How students are combined and trained (algorithms.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Framework {
    Single,
    Mean,
    Sum,
    Concat,
    Kd,
    Dml,
    Kdef,
    KdefNoExam,
    Cetnet,
}

spelled!(Framework, "framework" {
    Single => "single", Mean => "mean", Sum => "sum", Concat => "concat", Kd => "kd", Dml => "dml",
    Kdef => "kdef", KdefNoExam => "kdef_no_exam", Cetnet => "cetnet",
});

/// A student sub-network (one file each under `src/model/`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StudentKind {
    Mlp,
    Dcnv2,
    Pnn,
    Final,
    Ecn,
    Dhen,
}

spelled!(StudentKind, "students" { Mlp => "mlp", Dcnv2 => "dcnv2", Pnn => "pnn", Final => "final", Ecn => "ecn", Dhen => "dhen" });

/// Where libtorch trains.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeviceChoice {
    Cpu,
    Cuda,
    /// CUDA when libtorch sees a device, else CPU.
    Auto,
}

spelled!(DeviceChoice, "device" { Cpu => "cpu", Cuda => "cuda", Auto => "auto" });

/// One DHEN interaction module.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DhenModule {
    Linear,
    Dcn,
    SelfAttention,
    Dot,
}

spelled!(DhenModule, "dhen_modules" { Linear => "linear", Dcn => "dcn", SelfAttention => "self_attention", Dot => "dot" });

/// How a DHEN layer combines its modules' outputs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DhenFusion {
    Sum,
    Concat,
}

spelled!(DhenFusion, "dhen_ensemble" { Sum => "sum", Concat => "concat" });

/// `config/train.toml`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TrainConfig {
    /// Dataset description (see `config/datasets/`).
    pub dataset: PathBuf,
    /// Cross layers of DCNv2 and ECN students.
    pub cross_layers: i64,
    /// DHEN students: interaction modules per layer (linear, dcn, self_attention, dot).
    pub dhen_modules: Vec<DhenModule>,
    /// DHEN students: stacked layers.
    pub dhen_layers: i64,
    /// DHEN students: sum or concat of a layer's modules.
    pub dhen_ensemble: DhenFusion,
    /// Per-student dropout overriding `dropout` (same length as `students`, or empty).
    pub student_dropouts: Vec<f64>,
    /// Ensemble framework: single, mean, sum, concat, kd, dml, kdef, kdef_no_exam, cetnet.
    pub framework: Framework,
    /// Student sub-networks, e.g. ["mlp", "mlp", "mlp"] or ["pnn", "final", "ecn"].
    pub students: Vec<StudentKind>,
    /// Embedding dimension d.
    pub embedding_dim: i64,
    /// Hidden layer sizes of MLP parts.
    pub hidden_units: Vec<i64>,
    pub dropout: f64,
    pub batch_norm: bool,
    pub batch_size: usize,
    pub learning_rate: f64,
    /// L2 penalty on embeddings (FuxiCTR's `embedding_regularizer`).
    pub embedding_l2: f64,
    pub max_epochs: usize,
    /// Epochs without validation-AUC improvement before stopping (best epoch restored).
    pub patience: usize,
    /// Smallest validation-AUC gain that counts as an improvement (FuxiCTR: 1e-6).
    pub min_delta: f64,
    /// Clip the global gradient L2 norm to this before each step (FuxiCTR's default is 10); 0 = off.
    pub max_gradient_norm: f64,
    pub seed: u64,
    pub device: DeviceChoice,
    /// libtorch intra-op threads (0 = libtorch's default: all cores).
    pub threads: usize,
    /// CETNet's weight α on the symmetric-KL collaborative loss.
    pub cetnet_alpha: f64,
    /// Singular-value threshold τ of knowledge abundance.
    pub ka_tau: f64,
    /// Run name (directory under runs/); empty = "<dataset>_<framework>".
    pub name: String,
}

impl TrainConfig {
    /// Range checks for every numeric key, naming the key: libtorch would otherwise panic on a zero-width
    /// layer, loop forever on `batch_size = 0`, or train silently on a dropout of 1.5.
    pub fn validate(&self) -> Result<(), InvalidKey> {
        self.check_counts()?;
        let at_least_one = [
            ("embedding_dim", self.embedding_dim),
            ("cross_layers", self.cross_layers),
            ("dhen_layers", self.dhen_layers),
            ("batch_size", self.batch_size as i64),
            ("max_epochs", self.max_epochs as i64),
        ];
        let hidden = self.hidden_units.iter().map(|&u| ("hidden_units", u));
        if let Some((key, v)) = at_least_one.into_iter().chain(hidden).find(|&(_, v)| v < 1) {
            return Err(InvalidKey::new(key, v, "must be at least 1"));
        }
        if !(self.learning_rate.is_finite() && self.learning_rate > 0.0) {
            return Err(InvalidKey::new("learning_rate", self.learning_rate, "must be a finite number > 0"));
        }
        let non_negative = [
            ("min_delta", self.min_delta),
            ("max_gradient_norm", self.max_gradient_norm),
            ("embedding_l2", self.embedding_l2),
            ("cetnet_alpha", self.cetnet_alpha),
            ("ka_tau", self.ka_tau),
        ];
        if let Some((key, v)) = non_negative.into_iter().find(|&(_, v)| !(v.is_finite() && v >= 0.0)) {
            return Err(InvalidKey::new(key, v, "must be a finite number ≥ 0"));
        }
        let dropouts = std::iter::once(("dropout", self.dropout))
            .chain(self.student_dropouts.iter().map(|&d| ("student_dropouts", d)));
        if let Some((key, v)) = dropouts.into_iter().find(|&(_, v)| !(0.0..1.0).contains(&v)) {
            return Err(InvalidKey::new(key, v, "must be a probability from 0 up to (not including) 1"));
        }
        Ok(())
    }

    /// Student counts and shapes against what the framework and each student kind need.
    fn check_counts(&self) -> Result<(), InvalidKey> {
        let kinds = || self.students.iter().map(|k| k.as_str()).collect::<Vec<_>>().join(", ");
        if self.students.is_empty() {
            return Err(InvalidKey::new("students", "[]", "at least one student is needed"));
        }
        if self.framework == Framework::Single && self.students.len() != 1 {
            return Err(InvalidKey::new("students", format!("[{}]", kinds()), "framework 'single' trains exactly one"));
        }
        if !self.student_dropouts.is_empty() && self.student_dropouts.len() != self.students.len() {
            let rule = format!("{} values for {} students", self.student_dropouts.len(), self.students.len());
            return Err(InvalidKey::new("student_dropouts", format!("{:?}", self.student_dropouts), &rule));
        }
        if self.students.contains(&StudentKind::Dhen) && self.dhen_modules.is_empty() {
            return Err(InvalidKey::new("dhen_modules", "[]", "a dhen student needs at least one module"));
        }
        if self.students.contains(&StudentKind::Ecn) && self.embedding_dim % 2 != 0 {
            return Err(InvalidKey::new("embedding_dim", self.embedding_dim, "ecn students need an even dimension"));
        }
        let odd = self.hidden_units.iter().find(|&&h| h % 2 != 0);
        if let (true, Some(odd)) = (self.students.contains(&StudentKind::Final), odd) {
            return Err(InvalidKey::new("hidden_units", odd, "final students need even widths (halves multiply)"));
        }
        Ok(())
    }

    /// `<dataset>_<framework>` unless `name` is set.
    pub fn run_name(&self, dataset: &str) -> String {
        if self.name.is_empty() {
            format!("{dataset}_{}", self.framework)
        } else {
            self.name.clone()
        }
    }
}

impl InvalidKey {
    pub fn new(key: &'static str, value: impl fmt::Display, rule: &str) -> Self {
        Self { key, value: value.to_string(), rule: rule.into() }
    }
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            dataset: "config/datasets/frappe_ctr.toml".into(),
            framework: Framework::Kdef,
            cross_layers: 3,
            student_dropouts: Vec::new(),
            dhen_modules: vec![DhenModule::SelfAttention, DhenModule::Linear],
            dhen_layers: 2,
            dhen_ensemble: DhenFusion::Sum,
            students: vec![StudentKind::Mlp; 3],
            embedding_dim: 16,
            hidden_units: vec![400, 400, 400],
            dropout: 0.1,
            batch_norm: true,
            batch_size: 4096,
            learning_rate: 1e-3,
            embedding_l2: 0.01,
            max_epochs: 100,
            patience: 2,
            min_delta: 1e-6,
            max_gradient_norm: 1.0,
            seed: 2024,
            device: DeviceChoice::Auto,
            threads: 0,
            cetnet_alpha: 0.1,
            ka_tau: 0.05,
            name: String::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{Framework, StudentKind, TrainConfig};
    use serde::Serialize;

    /// A key as written, and the change that sets it so.
    type Case = (&'static str, fn(&mut TrainConfig));

    #[test]
    fn the_default_training_config_is_valid() {
        assert_eq!(TrainConfig::default().validate(), Ok(()));
    }

    #[test]
    fn every_out_of_range_training_key_is_named() {
        let cases: [Case; 14] = [
            ("embedding_dim = 0", |c| c.embedding_dim = 0),
            ("cross_layers = -1", |c| c.cross_layers = -1),
            ("dhen_layers = 0", |c| c.dhen_layers = 0),
            ("batch_size = 0", |c| c.batch_size = 0),
            ("max_epochs = 0", |c| c.max_epochs = 0),
            ("hidden_units = -5", |c| c.hidden_units = vec![400, -5]),
            ("learning_rate = -1", |c| c.learning_rate = -1.0),
            ("learning_rate = NaN", |c| c.learning_rate = f64::NAN),
            ("embedding_l2 = -0.1", |c| c.embedding_l2 = -0.1),
            ("cetnet_alpha = inf", |c| c.cetnet_alpha = f64::INFINITY),
            ("ka_tau = -1", |c| c.ka_tau = -1.0),
            ("max_gradient_norm = NaN", |c| c.max_gradient_norm = f64::NAN),
            ("dropout = 1.5", |c| c.dropout = 1.5),
            ("student_dropouts = 1", |c| c.student_dropouts = vec![0.1, 1.0, 0.1]),
        ];
        for (want, break_it) in cases {
            let mut cfg = TrainConfig::default();
            break_it(&mut cfg);
            let err = cfg.validate().expect_err(want).to_string();
            assert!(err.starts_with(want), "{want}: {err}");
        }
    }

    /// Every enum key refuses an unknown value while the TOML is parsed, naming the key and the allowed values.
    #[test]
    fn unknown_enum_values_are_refused_with_the_allowed_ones() {
        let cases = [
            ("framework = \"kdf\"", "kdef_no_exam"),
            ("students = [\"mlp\", \"mpl\"]", "dcnv2"),
            ("device = \"gpu\"", "auto"),
            ("dhen_modules = [\"attention\"]", "self_attention"),
            ("dhen_ensemble = \"mean\"", "concat"),
        ];
        for (line, allowed) in cases {
            let err = toml::from_str::<TrainConfig>(line).expect_err(line).to_string();
            let key = line.split(' ').next().unwrap();
            assert!(err.contains(key) && err.contains(allowed), "{line}: {err}");
        }
    }

    #[test]
    fn student_counts_are_checked_against_the_framework() {
        let single = TrainConfig { framework: Framework::Single, ..Default::default() };
        assert!(single.validate().unwrap_err().to_string().contains("'single' trains exactly one"));
        let none = TrainConfig { students: vec![], ..Default::default() };
        assert_eq!(none.validate().unwrap_err().key, "students");
        let dropouts = TrainConfig { student_dropouts: vec![0.1], ..Default::default() };
        assert_eq!(dropouts.validate().unwrap_err().key, "student_dropouts");
        let dhen = TrainConfig { students: vec![StudentKind::Dhen], dhen_modules: vec![], ..Default::default() };
        assert_eq!(dhen.validate().unwrap_err().key, "dhen_modules");
    }

    /// The spellings messages and manifests use are serde's own, for every variant of every enum.
    #[test]
    fn every_spelling_is_the_serde_name() {
        fn check<T: Serialize + std::fmt::Display>(all: &[T]) {
            for v in all {
                assert_eq!(serde_json::to_value(v).unwrap(), serde_json::Value::String(v.to_string()));
            }
        }
        check(Framework::ALL);
        check(super::StudentKind::ALL);
        check(super::DeviceChoice::ALL);
        check(super::DhenModule::ALL);
        check(super::DhenFusion::ALL);
    }

    #[test]
    fn cli_spellings_parse_and_unknown_ones_name_the_key() {
        assert_eq!("kdef_no_exam".parse::<Framework>(), Ok(Framework::KdefNoExam));
        let err = "kdf".parse::<Framework>().unwrap_err().to_string();
        assert!(err.starts_with("framework = kdf: allowed: single, mean"), "{err}");
    }
}
