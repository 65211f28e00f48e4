//! Embedding tables as ONNX: fp32, or 8-bit row-wise (each row stored as uint8 with its own step and
//! minimum, value = min + q · step), which holds a table in a quarter of the bytes.
use super::builder::{attr_int, GraphBuilder};
use super::proto::tensor_proto::DataType;

/// A table's initializers, emitted once and gathered from as often as needed.
pub enum Table {
    F32(String),
    /// `q` [rows, dim] uint8, `step` and `min` [rows, 1] f32.
    RowwiseU8 {
        q: String,
        step: String,
        min: String,
    },
}

/// Row-wise 8-bit quantization of `table` [rows, dim]: per row, min and step = (max − min)/255 (1 when the
/// row is constant), q = round((x − min)/step).
pub fn quantize_rows(table: &[f32], dim: usize) -> (Vec<u8>, Vec<f32>, Vec<f32>) {
    let (mut q, mut steps, mut mins) = (Vec::with_capacity(table.len()), Vec::new(), Vec::new());
    for row in table.chunks(dim) {
        let lo = row.iter().copied().fold(f32::INFINITY, f32::min);
        let hi = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let step = if hi > lo { (hi - lo) / 255.0 } else { 1.0 };
        q.extend(row.iter().map(|&x| ((x - lo) / step).round().clamp(0.0, 255.0) as u8));
        steps.push(step);
        mins.push(lo);
    }
    (q, steps, mins)
}

impl GraphBuilder {
    /// Emits a [rows, dim] table, 8-bit row-wise when `rowwise_u8`.
    pub fn embedding_table(&mut self, hint: &str, table: &[f32], rows: i64, dim: i64, rowwise_u8: bool) -> Table {
        if !rowwise_u8 {
            return Table::F32(self.initializer_f32(&format!("{hint}_table"), &[rows, dim], table));
        }
        let (q, step, min) = quantize_rows(table, dim as usize);
        Table::RowwiseU8 {
            q: self.initializer_raw(&format!("{hint}_table_u8"), DataType::Uint8, &[rows, dim], q),
            step: self.initializer_f32(&format!("{hint}_row_step"), &[rows, 1], &step),
            min: self.initializer_f32(&format!("{hint}_row_min"), &[rows, 1], &min),
        }
    }

    /// Rows of `table` at `idx` (any shape S) → S × dim, as f32.
    pub fn gather_rows(&mut self, table: &Table, idx: &str) -> String {
        let axis0 = || vec![attr_int("axis", 0)];
        match table {
            Table::F32(t) => self.op("Gather", &[t, idx], axis0()),
            Table::RowwiseU8 { q, step, min } => {
                let rows = self.op("Gather", &[q, idx], axis0());
                let rows = self.op("Cast", &[&rows], vec![attr_int("to", DataType::Float as i64)]);
                let (step, min) = (self.op("Gather", &[step, idx], axis0()), self.op("Gather", &[min, idx], axis0()));
                let scaled = self.op("Mul", &[&rows, &step], vec![]);
                self.op("Add", &[&scaled, &min], vec![])
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rowwise_quantization_keeps_each_rows_range_and_constant_rows() {
        let (q, step, min) = quantize_rows(&[0.0, 0.5, 1.0, 2.0, 2.0, 2.0], 3);
        assert_eq!((step, min), (vec![1.0 / 255.0, 1.0], vec![0.0, 2.0]));
        assert_eq!(q, vec![0, 127, 255, 0, 0, 0]); // 0.5 / (1/255) is 127.49998 in f32
    }
}
