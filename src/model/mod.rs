//! Students (one file each) and the ensemble frameworks. Every layer type holds its tch forward pass and
//! its ONNX emission side by side, so the trained graph and the served graph cannot drift.
pub mod dcnv2;
pub mod dhen;
pub mod dropout;
pub mod ecn;
pub mod embedding;
pub mod ensemble;
pub mod final_net;
pub mod fused;
pub mod layers;
pub mod mlp;
pub mod pnn;
pub mod student;

use tch::nn;

use crate::config::InvalidKey;

pub use crate::config::{Framework, StudentKind};
pub use embedding::{FieldEmbedding, FieldLayout};
pub use ensemble::{Ensemble, Outputs};
pub use student::{Student, StudentConfig};

/// The student registry: adding a type is one file and one line here.
pub fn build_student(
    kind: StudentKind,
    vs: nn::Path,
    fields: i64,
    dim: i64,
    cfg: &StudentConfig,
) -> Result<Box<dyn Student>, InvalidKey> {
    Ok(match kind {
        StudentKind::Mlp => Box::new(mlp::MlpStudent::new(vs, fields, dim, cfg)),
        StudentKind::Dcnv2 => Box::new(dcnv2::Dcnv2Student::new(vs, fields, dim, cfg)),
        StudentKind::Pnn => Box::new(pnn::PnnStudent::new(vs, fields, dim, cfg)),
        StudentKind::Final => Box::new(final_net::FinalStudent::new(vs, fields, dim, cfg)?),
        StudentKind::Ecn => Box::new(ecn::EcnStudent::new(vs, fields, dim, cfg)?),
        StudentKind::Dhen => Box::new(dhen::DhenStudent::new(vs, fields, dim, cfg)?),
    })
}
