//! Dense layers as ONNX at the builder's precision: fp32 (`Gemm`, or `MatMul` + `Add` past rank 2) or int8
//! (weights from [`quantize_weights`]; activations quantized with calibrated ranges, or per run).
use super::builder::{attr_int, GraphBuilder};
use super::proto::tensor_proto::DataType;
use super::quant::{quantize_weights, Precision, Range};

/// ONNX Runtime's contrib-op domain (`MatMulIntegerToFloat`).
pub const MS_DOMAIN: &str = "com.microsoft";

/// The rank of a dense layer's input, which picks the fp32 form.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InputRank {
    /// [B, in]: one `Gemm`.
    Two,
    /// [B, …, in]: `MatMul` then `Add` (Gemm is 2-D only).
    Any,
}

/// A dense layer's parameters: `weight` [out, in] row-major (PyTorch's layout), optional `bias` [out].
pub struct DenseWeights<'a> {
    pub weight: &'a [f32],
    pub bias: Option<&'a [f32]>,
    pub out: i64,
    pub inp: i64,
}

impl GraphBuilder {
    /// `x` · Wᵀ + b at this builder's precision; returns the output's name.
    /// Records `x` as the next dense-layer input (what calibration reads).
    pub fn dense(&mut self, x: &str, w: &DenseWeights<'_>, rank: InputRank) -> String {
        self.record_dense_input(x);
        match self.precision() {
            Precision::Fp32 => self.dense_fp32(x, w, rank),
            Precision::Int8 => {
                let range = self.next_range();
                self.dense_int8(x, w, range)
            }
        }
    }

    fn dense_fp32(&mut self, x: &str, w: &DenseWeights<'_>, rank: InputRank) -> String {
        let (out, inp) = (w.out, w.inp);
        match (rank, w.bias) {
            (InputRank::Two, Some(b)) => {
                let wn = self.initializer_f32("w", &[out, inp], w.weight);
                let bn = self.initializer_f32("b", &[out], b);
                self.op("Gemm", &[x, &wn, &bn], vec![attr_int("transB", 1)])
            }
            _ => {
                let wt = self.initializer_f32("wt", &[inp, out], &transpose(w.weight, out as usize, inp as usize));
                let y = self.op("MatMul", &[x, &wt], vec![]);
                self.add_bias(y, w.bias, out)
            }
        }
    }

    /// Dynamic: `DynamicQuantizeLinear` → `MatMulInteger` → `Cast` → × (x_scale · w_scale) → + b.
    /// Static (`range` given): `QuantizeLinear` with the calibrated scale → ONNX Runtime's
    /// `MatMulIntegerToFloat` (integer product, both scales and the bias in one kernel).
    fn dense_int8(&mut self, x: &str, w: &DenseWeights<'_>, range: Option<Range>) -> String {
        let (out, inp) = (w.out, w.inp);
        let qw = quantize_weights(w.weight, out as usize, inp as usize, self.weight_scale());
        let bytes: Vec<u8> = qw.q.iter().map(|&v| v as u8).collect();
        let wq = self.initializer_raw("wq", DataType::Int8, &[inp, out], bytes);
        let scale_shape: &[i64] = if qw.scale.len() == 1 { &[] } else { &[out] };
        let y = match range {
            None => {
                let ws = self.initializer_f32("w_scale", scale_shape, &qw.scale);
                let (xq, xs, xzp) = (self.fresh("xq"), self.fresh("x_scale"), self.fresh("x_zero_point"));
                self.op_multi("DynamicQuantizeLinear", &[x], &[&xq, &xs, &xzp], vec![]);
                let acc = self.op("MatMulInteger", &[&xq, &wq, &xzp], vec![]);
                let acc = self.op("Cast", &[&acc], vec![attr_int("to", DataType::Float as i64)]);
                let scale = self.op("Mul", &[&xs, &ws], vec![]);
                self.op("Mul", &[&acc, &scale], vec![])
            }
            Some(range) => {
                // ONNX Runtime's contrib op: the standard MatMulInteger → Cast → Mul with a constant scale is not
                // fused, and ran 21.1 µs against 16.4 µs for this one (frappe student, batch 1).
                let (xs, zp) = range.uint8();
                let xs_name = self.initializer_f32("x_scale", &[], &[xs]);
                let zp_name = self.initializer_raw("x_zero_point", DataType::Uint8, &[], vec![zp]);
                let ws = self.initializer_f32("w_scale", scale_shape, &qw.scale);
                let xq = self.op("QuantizeLinear", &[x, &xs_name, &zp_name], vec![]);
                let bias = w.bias.map(|b| self.initializer_f32("b", &[out], b)).unwrap_or_default();
                let inputs = [xq.as_str(), &wq, &xs_name, &ws, &zp_name, "", &bias];
                return self.op_in(MS_DOMAIN, "MatMulIntegerToFloat", &inputs, vec![]);
            }
        };
        self.add_bias(y, w.bias, out)
    }

    fn add_bias(&mut self, y: String, bias: Option<&[f32]>, out: i64) -> String {
        match bias {
            Some(b) => {
                let bn = self.initializer_f32("b", &[out], b);
                self.op("Add", &[&y, &bn], vec![])
            }
            None => y,
        }
    }
}

/// [rows, cols] row-major → [cols, rows].
fn transpose(m: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    (0..cols * rows).map(|i| m[(i % rows) * cols + i / rows]).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transpose_swaps_axes() {
        assert_eq!(transpose(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0], 2, 3), vec![1.0, 4.0, 2.0, 5.0, 3.0, 6.0]);
    }
}
