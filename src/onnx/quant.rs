//! What int8 emission needs to know: precisions, how weights and activations are scaled, calibrated
//! ranges, and the weight quantization itself ([`super::dense`] emits the layers).
use serde::{Deserialize, Serialize};

/// Numeric precision of a graph's dense layers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    #[default]
    Fp32,
    Int8,
}

impl Precision {
    pub fn is_fp32(&self) -> bool {
        *self == Precision::Fp32
    }
    pub fn name(self) -> &'static str {
        match self {
            Precision::Fp32 => "fp32",
            Precision::Int8 => "int8",
        }
    }
}

impl std::fmt::Display for Precision {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// How int8 weights are scaled. Per tensor is the default: on this machine ONNX Runtime's per-column
/// rescale cost ~15% at batch 1 (student: 21.3 vs 17.9 µs) with no AUC gain on frappe_ctr (docs/benchmarks.md).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum WeightScale {
    #[default]
    PerTensor,
    PerChannel,
}

/// How int8 activations are scaled: per run from the batch's own range (`DynamicQuantizeLinear`; a row's
/// score then depends on the rows it is batched with), or with fixed ranges calibrated on training rows.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum ActivationScale {
    #[default]
    Static,
    Dynamic,
}

/// A dense layer input's calibrated range (min ≤ 0 ≤ max after widening).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Range {
    pub min: f32,
    pub max: f32,
}

impl Range {
    /// uint8 scale and zero point covering [min(0, min), max(0, max)], as DynamicQuantizeLinear picks them.
    pub fn uint8(self) -> (f32, u8) {
        let (lo, hi) = (self.min.min(0.0), self.max.max(0.0));
        let scale = if hi > lo { (hi - lo) / 255.0 } else { 1.0 };
        (scale, (-lo / scale).round_ties_even().clamp(0.0, 255.0) as u8)
    }
}

/// Weights quantized symmetrically: `q` [in, out] (transposed for `MatMulInteger`), `scale` [out] per
/// channel or [1] per tensor, with w ≈ q · scale and q in −127..=127.
#[derive(Debug, Clone, PartialEq)]
pub struct QuantizedWeights {
    pub q: Vec<i8>,
    pub scale: Vec<f32>,
}

/// scale = max|w|/127 over each output row of `weight` [out, in] (or over all of it; 1 when all zero),
/// q = round(w/scale).
pub fn quantize_weights(weight: &[f32], out: usize, inp: usize, granularity: WeightScale) -> QuantizedWeights {
    assert_eq!(weight.len(), out * inp, "weight is [out, in]");
    let scale_of = |w: &[f32]| {
        let max = w.iter().fold(0f32, |m, w| m.max(w.abs()));
        if max > 0.0 {
            max / 127.0
        } else {
            1.0
        }
    };
    let scale: Vec<f32> = match granularity {
        WeightScale::PerChannel => weight.chunks(inp).map(scale_of).collect(),
        WeightScale::PerTensor => vec![scale_of(weight)],
    };
    let row_scale = |o: usize| scale[if scale.len() == 1 { 0 } else { o }];
    let mut q = vec![0i8; out * inp];
    for o in 0..out {
        for i in 0..inp {
            q[i * out + o] = (weight[o * inp + i] / row_scale(o)).round().clamp(-127.0, 127.0) as i8;
        }
    }
    QuantizedWeights { q, scale }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_channel_quantization_keeps_each_rows_extreme_at_127_and_zero_rows_at_zero() {
        // weight [out 2, in 3]
        let w = [0.5, -1.0, 0.25, 0.0, 0.0, 0.0];
        let qw = quantize_weights(&w, 2, 3, WeightScale::PerChannel);
        assert_eq!(qw.scale, vec![1.0 / 127.0, 1.0]);
        // q is [in, out]: column 0 is row 0 of w.
        assert_eq!(qw.q, vec![64, 0, -127, 0, 32, 0]);
    }

    #[test]
    fn per_tensor_quantization_scales_every_row_by_the_largest_weight() {
        let w = [0.5, -1.0, 0.25, 0.0, 0.1, 0.0];
        let qw = quantize_weights(&w, 2, 3, WeightScale::PerTensor);
        assert_eq!(qw.scale, vec![1.0 / 127.0]);
        assert_eq!(qw.q, vec![64, 0, -127, 13, 32, 0]);
    }
}
