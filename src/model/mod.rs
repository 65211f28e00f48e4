//! Students (one file each) and the ensemble frameworks. Every layer type holds its tch forward pass and
//! its ONNX emission side by side, so the trained graph and the served graph cannot drift.
pub mod dcnv2;
pub mod dhen;
pub mod dropout;
pub mod ecn;
pub mod embedding;
pub mod ensemble;
pub mod final_net;
pub mod layers;
pub mod mlp;
pub mod pnn;
pub mod student;

use tch::nn;

pub use embedding::{FieldEmbedding, FieldLayout};
pub use ensemble::{Ensemble, Framework, Outputs};
pub use student::{Student, StudentConfig};

/// Every student type `build_student` knows.
pub const STUDENT_TYPES: [&str; 6] = ["mlp", "dcnv2", "pnn", "final", "ecn", "dhen"];

/// The student registry: adding a type is one file and one line here.
pub fn build_student(
    kind: &str,
    vs: nn::Path,
    fields: i64,
    dim: i64,
    cfg: &StudentConfig,
) -> Result<Box<dyn Student>, String> {
    match kind {
        "mlp" => Ok(Box::new(mlp::MlpStudent::new(vs, fields, dim, cfg))),
        "dcnv2" => Ok(Box::new(dcnv2::Dcnv2Student::new(vs, fields, dim, cfg))),
        "pnn" => Ok(Box::new(pnn::PnnStudent::new(vs, fields, dim, cfg))),
        "final" => Ok(Box::new(final_net::FinalStudent::new(vs, fields, dim, cfg)?)),
        "ecn" => Ok(Box::new(ecn::EcnStudent::new(vs, fields, dim, cfg)?)),
        "dhen" => Ok(Box::new(dhen::DhenStudent::new(vs, fields, dim, cfg)?)),
        other => Err(format!("unknown student type '{other}' (known: {})", STUDENT_TYPES.join(", "))),
    }
}
