//! Layer-level parity of the int8 dense layer: ONNX Runtime running the emitted
//! `(Dynamic)QuantizeLinear → MatMulInteger → Cast → scale → bias` graph, with dynamic or calibrated activation
//! ranges, equals an independent reference computation of the same arithmetic (ONNX's quantization
//! definition, integer dot products over the
//! per-tensor or per-channel quantized weights, one rescale) within float rounding, for rank-2 (Gemm-shaped) and rank-3
//! (last-axis) inputs; and it stays within quantization error of tch's fp32 forward pass.
#![cfg(feature = "train")]
mod common;

use ensemble_serve::model::embedding::to_vec;
use ensemble_serve::model::layers::Dense;
use ensemble_serve::onnx::proto::tensor_proto::DataType;
use ensemble_serve::onnx::quant::quantize_weights;
use ensemble_serve::onnx::{builder::to_bytes, Dim, GraphBuilder, InputRank, Precision, Range, WeightScale};
use tch::{nn, Device, Kind, Tensor};

/// ONNX (Dynamic)QuantizeLinear to uint8: the range covers [min(0, lo), max(0, hi)] — x's own for dynamic,
/// the calibrated one for static (values outside it saturate); round half to even.
fn quantize(x: &[f32], range: Option<Range>) -> (Vec<u8>, f32, u8) {
    let (lo, hi) = match range {
        Some(r) => (r.min.min(0.0), r.max.max(0.0)),
        None => (x.iter().fold(0f32, |m, &v| m.min(v)), x.iter().fold(0f32, |m, &v| m.max(v))),
    };
    let scale = (hi - lo) / 255.0;
    let zero_point = (-lo / scale).round_ties_even().clamp(0.0, 255.0) as u8;
    let q = x.iter().map(|&v| ((v / scale).round_ties_even() + zero_point as f32).clamp(0.0, 255.0) as u8).collect();
    (q, scale, zero_point)
}

/// y[r, o] = Σ_i (xq[r, i] − zp) · wq[i, o] · (x_scale · w_scale[o]) + b[o], in exact integers then f32.
fn reference(x: &[f32], inp: usize, w: &[f32], b: &[f32], out: usize, q: Quant) -> Vec<f32> {
    let (xq, xs, zp) = quantize(x, q.range);
    let scale = q.weights;
    let qw = quantize_weights(w, out, inp, scale);
    let w_scale = |o: usize| qw.scale[if qw.scale.len() == 1 { 0 } else { o }];
    let rows = x.len() / inp;
    let mut y = vec![0f32; rows * out];
    for r in 0..rows {
        for o in 0..out {
            let acc: i32 = (0..inp).map(|i| (xq[r * inp + i] as i32 - zp as i32) * qw.q[i * out + o] as i32).sum();
            // Static graphs fold x_scale · w_scale into one constant, as the reference does here.
            y[r * out + o] = acc as f32 * (xs * w_scale(o)) + b[o];
        }
    }
    y
}

/// Emits `dense` at int8 over an input of `shape` and runs it through ONNX Runtime.
/// How a test layer is quantized: weight scaling, and a calibrated input range (`None`: dynamic).
#[derive(Debug, Clone, Copy)]
struct Quant {
    weights: WeightScale,
    range: Option<Range>,
}

fn run_int8(dense: &Dense, x: &Tensor, rank: InputRank, q: Quant) -> Vec<f32> {
    let shape = x.size();
    let mut g = GraphBuilder::with_precision("dense_int8", Precision::Int8);
    g.set_weight_scale(q.weights);
    if let Some(range) = q.range {
        g.set_activation_ranges(vec![range]);
    }
    let dims: Vec<Dim> = shape.iter().map(|&d| Dim::Fixed(d)).collect();
    g.input("x", DataType::Float, &dims);
    let y = dense.emit_ranked(&mut g, "x", rank);
    g.op_into("Identity", &[&y], "y", vec![]);
    let mut out_dims = dims.clone();
    *out_dims.last_mut().unwrap() = Dim::Fixed(dense.linear.ws.size()[0]);
    g.output("y", DataType::Float, &out_dims);
    let bytes = to_bytes(&g.finish());
    let mut session = ort::session::Session::builder(common::ort_env())
        .unwrap()
        .with_intra_threads(1)
        .unwrap()
        .commit_from_memory(&bytes)
        .unwrap();
    let array =
        ndarray::ArrayD::from_shape_vec(shape.iter().map(|&d| d as usize).collect::<Vec<_>>(), to_vec(x)).unwrap();
    let outputs = session.run(ort::inputs!["x" => ort::value::Tensor::from_array(array).unwrap()]).unwrap();
    outputs["y"].try_extract_tensor::<f32>().unwrap().1.to_vec()
}

/// A dense layer; with batch norm, its running statistics moved off their defaults (so folding matters).
fn trained_dense(vs: &nn::VarStore, inp: i64, out: i64, batch_norm: bool, relu: bool) -> Dense {
    let dense = Dense::new(vs.root() / "d", inp, out, batch_norm, 0.0, relu);
    for _ in 0..if batch_norm { 3 } else { 0 } {
        let _ = dense.forward(&(Tensor::randn([512, inp], (Kind::Float, Device::Cpu)) * 2.0 + 0.5), true);
    }
    dense
}

fn max_abs(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0f32, f32::max)
}

fn check(inp: i64, out: i64, shape: &[i64], rank: InputRank) {
    // Calibrated ranges: one wider than these inputs (randn × 1.5), one narrower, so that values saturate.
    let (wide, clipping) = (Some(Range { min: -12.0, max: 12.0 }), Some(Range { min: -3.0, max: 2.5 }));
    for weights in [WeightScale::PerTensor, WeightScale::PerChannel] {
        for range in [None, wide, clipping] {
            check_scaled(inp, out, shape, rank, Quant { weights, range });
        }
    }
}

fn check_scaled(inp: i64, out: i64, shape: &[i64], rank: InputRank, q: Quant) {
    tch::manual_seed(7);
    let vs = nn::VarStore::new(Device::Cpu);
    // Batch norm is 2-D only in tch; DHEN's last-axis layers have none.
    let dense = trained_dense(&vs, inp, out, rank == InputRank::Two, false);
    let x = Tensor::randn(shape, (Kind::Float, Device::Cpu)) * 1.5;
    let ort = run_int8(&dense, &x, rank, q);
    let (w, b) = dense.folded();
    let want = reference(&to_vec(&x), inp as usize, &to_vec(&w), &to_vec(&b), out as usize, q);
    let out_scale = want.iter().fold(0f32, |m, v| m.max(v.abs()));
    let diff = max_abs(&ort, &want);
    let what = format!("{shape:?} {q:?}");
    assert!(diff <= 1e-5 * out_scale.max(1.0), "{what}: ORT int8 vs reference: max |Δ| {diff} (output {out_scale})");
    let xs = to_vec(&x);
    if q.range.is_some_and(|r| xs.iter().any(|&v| v < r.min || v > r.max)) {
        eprintln!("{what}: int8 vs reference {diff:.2e} (inputs saturate: no fp32 comparison)");
        return;
    }
    let fp32 = to_vec(&dense.forward(&x, false));
    let quant_err = max_abs(&ort, &fp32);
    // uint8 activations, int8 weights: error ≈ √in · x_scale · w_scale · |w|, a few % of the output's scale
    // (coarser steps under a calibrated range wider than the data).
    assert!(quant_err <= 0.1 * out_scale, "{what}: int8 vs tch fp32: max |Δ| {quant_err} (output {out_scale})");
    eprintln!("{what}: int8 vs reference {diff:.2e}, vs fp32 {quant_err:.2e} (output scale {out_scale:.2})");
}

#[test]
fn int8_dense_rank2_matches_reference_and_fp32() {
    check(160, 400, &[256, 160], InputRank::Two);
    check(400, 1, &[33, 400], InputRank::Two);
}

#[test]
fn int8_dense_rank3_matches_reference_and_fp32() {
    check(16, 24, &[64, 10, 16], InputRank::Any);
}

#[test]
fn fp32_emission_is_unchanged_by_the_precision_switch() {
    tch::manual_seed(3);
    let vs = nn::VarStore::new(Device::Cpu);
    let dense = trained_dense(&vs, 32, 8, true, true);
    let mut g = GraphBuilder::new("dense_fp32");
    g.input("x", DataType::Float, &[Dim::Batch, Dim::Fixed(32)]);
    dense.emit(&mut g, "x");
    let ops: Vec<String> = g.finish().graph.unwrap().node.iter().map(|n| n.op_type.clone().unwrap()).collect();
    assert_eq!(ops, ["Gemm", "Relu"]);
}

/// 8-bit row-wise embedding rows gathered by ONNX Runtime equal min + q · step computed here, and each value is
/// within half a step of the fp32 table's.
#[test]
fn rowwise_u8_embedding_rows_match_reference_and_fp32() {
    use ensemble_serve::onnx::lookup::quantize_rows;
    let (rows, dim) = (50usize, 16usize);
    let table: Vec<f32> = (0..rows * dim).map(|i| ((i * 7919 % 1000) as f32 / 500.0 - 1.0) * 0.05).collect();
    let mut g = GraphBuilder::new("lookup");
    g.input("idx", DataType::Int64, &[Dim::Batch, Dim::Fixed(3)]);
    let t = g.embedding_table("emb", &table, rows as i64, dim as i64, true);
    let y = g.gather_rows(&t, "idx");
    g.op_into("Identity", &[&y], "y", vec![]);
    g.output("y", DataType::Float, &[Dim::Batch, Dim::Fixed(3), Dim::Fixed(dim as i64)]);
    let bytes = to_bytes(&g.finish());
    let mut session = ort::session::Session::builder(common::ort_env()).unwrap().commit_from_memory(&bytes).unwrap();
    let idx: Vec<i64> = vec![0, 7, 49, 3, 3, 20];
    let input = ndarray::Array2::from_shape_vec((2, 3), idx.clone()).unwrap();
    let outputs = session.run(ort::inputs!["idx" => ort::value::Tensor::from_array(input).unwrap()]).unwrap();
    let got = outputs["y"].try_extract_tensor::<f32>().unwrap().1.to_vec();
    let (q, step, min) = quantize_rows(&table, dim);
    for (n, &r) in idx.iter().enumerate() {
        let r = r as usize;
        for c in 0..dim {
            let (value, want) = (got[n * dim + c], min[r] + q[r * dim + c] as f32 * step[r]);
            assert_eq!(value, want, "row {r} col {c}");
            assert!((value - table[r * dim + c]).abs() <= step[r] / 2.0 + 1e-7, "row {r} col {c}");
        }
    }
}
