//! Static int8 calibration: the fp32 graph with every dense layer's input exposed as an output, run through
//! ONNX Runtime over training rows, gives each layer's input range (ONNX Runtime's MinMax calibration).
use std::collections::HashMap;
use std::path::Path;

use ort::environment::Environment;

use crate::artifact;
use crate::data::encode::encode_file;
use crate::data::{DataError, Split};
use crate::features::{DatasetSpec, Encoder};
use crate::onnx::builder::to_bytes;
use crate::onnx::proto::tensor_proto::DataType;
use crate::onnx::{GraphBuilder, Range};
use crate::runtime::GraphSession;

// No `#[from]`/`#[source]`: the message holds the cause, and `{e:#}` would print it twice.
#[derive(Debug, thiserror::Error)]
pub enum CalibrationError {
    #[error("calibration: {0}")]
    Ort(ort::Error),
    #[error("calibration rows: {0}")]
    Data(DataError),
    #[error("calibration graph: {0}")]
    Io(std::io::Error),
}

/// Training rows the ranges are taken over.
pub const CALIBRATION_ROWS: usize = 32_768;
const BATCH_ROWS: usize = 4096;

/// Input ranges of the dense layers of `fp32` (an fp32 graph, not yet finished), in emission order, over the
/// first [`CALIBRATION_ROWS`] training rows of `spec` encoded by `encoder`.
pub fn calibrate(
    env: &Environment,
    mut fp32: GraphBuilder,
    encoder: &Encoder,
    spec: &DatasetSpec,
    scratch: &Path,
) -> Result<Vec<Range>, CalibrationError> {
    let inputs: Vec<String> = fp32.dense_inputs().to_vec();
    let mut exposed: Vec<String> = Vec::new();
    for name in &inputs {
        if !exposed.contains(name) {
            fp32.expose(name, DataType::Float);
            exposed.push(name.clone());
        }
    }
    let path = tempfile::Builder::new()
        .prefix(".calibration-")
        .suffix(".onnx")
        .tempfile_in(scratch)
        .map_err(CalibrationError::Io)?;
    std::fs::write(path.path(), to_bytes(&fp32.finish())).map_err(CalibrationError::Io)?;
    let schema = artifact::input_schema(encoder);
    let mut session = GraphSession::load(env, path.path(), &schema, encoder, 0).map_err(CalibrationError::Ort)?;
    let names: Vec<&str> = exposed.iter().map(String::as_str).collect();
    let mut ranges = vec![Range { min: 0.0, max: 0.0 }; names.len()];
    let width = encoder.width();
    let mut batch = Vec::with_capacity(BATCH_ROWS * width);
    let (mut seen, mut failure) = (0usize, None);
    let mut widen = |batch: &mut Vec<u32>, failure: &mut Option<ort::Error>| {
        if batch.is_empty() || failure.is_some() {
            return;
        }
        match session.run_outputs(batch, width, &names) {
            Ok(outputs) => {
                for ((values, _), r) in outputs.iter().zip(ranges.iter_mut()) {
                    let (lo, hi) = values.iter().fold((r.min, r.max), |(lo, hi), &v| (lo.min(v), hi.max(v)));
                    *r = Range { min: lo, max: hi };
                }
            }
            Err(e) => *failure = Some(e),
        }
        batch.clear();
    };
    encode_file(spec, encoder, Split::Train, false, |ids, _| {
        if seen < CALIBRATION_ROWS {
            batch.extend_from_slice(ids);
            seen += 1;
            if batch.len() >= BATCH_ROWS * width {
                widen(&mut batch, &mut failure);
            }
        }
        Ok(())
    })
    .map_err(CalibrationError::Data)?;
    widen(&mut batch, &mut failure);
    if let Some(e) = failure {
        return Err(CalibrationError::Ort(e));
    }
    let by_name: HashMap<&str, Range> = names.iter().copied().zip(ranges).collect();
    Ok(inputs.iter().map(|n| by_name[n.as_str()]).collect())
}
