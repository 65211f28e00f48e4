//! Field embeddings: one table for all fields (each field's ids offset into it), sequence fields
//! mean-pooled with padding masked. Output B × F × d, scalar fields first, then sequence fields.
use tch::{nn, Kind, Tensor};

use crate::features::{Encoder, FieldKind};
use crate::onnx::builder::attr_int;
use crate::onnx::GraphBuilder;

/// Where each field's ids sit in an encoded row and in the shared table.
#[derive(Debug, Clone)]
pub struct FieldLayout {
    /// Table offset of each scalar field, in row order.
    pub scalar_offsets: Vec<i64>,
    /// Sequence fields: (name, first slot in the row, max_len, table offset).
    pub sequences: Vec<(String, i64, i64, i64)>,
    /// Rows of the shared table.
    pub table_rows: i64,
}

impl FieldLayout {
    pub fn new(encoder: &Encoder) -> Self {
        let (mut scalar_offsets, mut sequences, mut next) = (Vec::new(), Vec::new(), 0i64);
        let mut by_slot: Vec<usize> = (0..encoder.fields.len()).collect();
        by_slot.sort_by_key(|&i| encoder.slots(i).start);
        for i in by_slot {
            let f = &encoder.fields[i];
            match &f.spec.kind {
                FieldKind::Sequence { max_len, .. } => {
                    sequences.push((f.spec.name.clone(), encoder.slots(i).start as i64, *max_len as i64, next))
                }
                _ => scalar_offsets.push(next),
            }
            next += f.vocab.size() as i64;
        }
        Self { scalar_offsets, sequences, table_rows: next }
    }
    pub fn num_fields(&self) -> i64 {
        (self.scalar_offsets.len() + self.sequences.len()) as i64
    }
}

pub struct FieldEmbedding {
    pub table: Tensor,
    pub layout: FieldLayout,
    pub dim: i64,
    offsets: Tensor,
}

impl FieldEmbedding {
    /// Normal(0, 1e-4) initialisation as FuxiCTR's default.
    pub fn new(vs: nn::Path, layout: FieldLayout, dim: i64) -> Self {
        let table = vs.var("table", &[layout.table_rows, dim], nn::Init::Randn { mean: 0.0, stdev: 1e-4 });
        let offsets = Tensor::from_slice(&layout.scalar_offsets).to_device(vs.device());
        Self { table, layout, dim, offsets }
    }

    /// `ids`: B × width raw field ids (int64) → B × F × d.
    pub fn forward(&self, ids: &Tensor) -> Tensor {
        let scalars = self.layout.scalar_offsets.len() as i64;
        let mut parts = vec![lookup(&self.table, &(ids.narrow(1, 0, scalars) + &self.offsets))];
        for (_, start, len, offset) in &self.layout.sequences {
            let tok = ids.narrow(1, *start, *len);
            let mask = tok.ne(0).to_kind(Kind::Float).unsqueeze(-1);
            let emb = lookup(&self.table, &(&tok + *offset)) * &mask;
            let count = mask.sum_dim_intlist([1i64].as_slice(), false, Kind::Float).clamp_min(1.0);
            parts.push((emb.sum_dim_intlist([1i64].as_slice(), false, Kind::Float) / count).unsqueeze(1));
        }
        Tensor::cat(&parts, 1)
    }

    /// (λ/2)·‖E‖², FuxiCTR's embedding regulariser.
    pub fn l2(&self, lambda: f64) -> Tensor {
        self.table.square().sum(Kind::Float) * (lambda / 2.0)
    }

    /// ONNX: `field_ids` [B, F_scalar] and one `seq_<name>` [B, max_len] per sequence field → B × F × d.
    /// `rowwise_u8`: store the table 8-bit row-wise ([`crate::onnx::lookup`]).
    pub fn emit(&self, g: &mut GraphBuilder, prefix: &str, rowwise_u8: bool) -> String {
        let values = to_vec(&self.table);
        let table = g.embedding_table(prefix, &values, self.layout.table_rows, self.dim, rowwise_u8);
        let offsets = g.initializer_i64(
            &format!("{prefix}_offsets"),
            &[self.layout.scalar_offsets.len() as i64],
            &self.layout.scalar_offsets,
        );
        let shifted = g.op("Add", &["field_ids", &offsets], vec![]);
        let mut parts = vec![g.gather_rows(&table, &shifted)];
        for (name, _, _, offset) in &self.layout.sequences {
            let input = format!("seq_{name}");
            let zero = g.initializer_i64("zero", &[], &[0]);
            let off = g.initializer_i64("seq_offset", &[], &[*offset]);
            let mask = g.op("Greater", &[&input, &zero], vec![]);
            let maskf = g.op("Cast", &[&mask], vec![attr_int("to", 1)]);
            let shifted = g.op("Add", &[&input, &off], vec![]);
            let emb = g.gather_rows(&table, &shifted);
            let last = g.initializer_i64("axes", &[1], &[-1]);
            let mask3 = g.op("Unsqueeze", &[&maskf, &last], vec![]);
            let masked = g.op("Mul", &[&emb, &mask3], vec![]);
            let axis1 = g.initializer_i64("axes", &[1], &[1]);
            let total = g.op("ReduceSum", &[&masked, &axis1], vec![attr_int("keepdims", 1)]);
            let count = g.op("ReduceSum", &[&mask3, &axis1], vec![attr_int("keepdims", 1)]);
            let one = g.initializer_f32("one", &[], &[1.0]);
            let safe = g.op("Max", &[&count, &one], vec![]);
            parts.push(g.op("Div", &[&total, &safe], vec![]));
        }
        let refs: Vec<&str> = parts.iter().map(String::as_str).collect();
        if refs.len() == 1 {
            parts.remove(0)
        } else {
            g.op("Concat", &refs, vec![attr_int("axis", 1)])
        }
    }
}

/// Rows of `table` at `ids` (dense gradient on the table, as the whole-table L2 term needs anyway).
fn lookup(table: &Tensor, ids: &Tensor) -> Tensor {
    Tensor::embedding(table, ids, -1, false, false)
}

/// A tensor's values as f32, row-major.
pub fn to_vec(t: &Tensor) -> Vec<f32> {
    Vec::<f32>::try_from(t.detach().to_device(tch::Device::Cpu).to_kind(Kind::Float).flatten(0, -1))
        .expect("float tensor")
}
