//! A small graph written by the crate's own ONNX builder runs in ONNX Runtime and gives the numbers
//! computed here by hand: embedding lookup → sum over fields → linear → sigmoid.
mod common;

use ensemble_serve::onnx::builder::{attr_int, attr_ints, to_bytes};
use ensemble_serve::onnx::proto::tensor_proto::DataType;
use ensemble_serve::onnx::{Dim, GraphBuilder};
use ort::session::Session;
use ort::value::TensorRef;

#[test]
fn crate_written_graph_runs_in_onnx_runtime() {
    let (vocab, dim, fields, batch) = (7usize, 3usize, 2usize, 4usize);
    let table: Vec<f32> = (0..vocab * dim).map(|i| ((i * 37 % 11) as f32 - 5.0) / 7.0).collect();
    let w: Vec<f32> = vec![0.5, -1.25, 2.0];
    let b = 0.1f32;

    let mut g = GraphBuilder::new("smoke");
    g.input("field_ids", DataType::Int64, &[Dim::Batch, Dim::Fixed(fields as i64)]);
    g.output("probability", DataType::Float, &[Dim::Batch, Dim::Fixed(1)]);
    let emb = g.initializer_f32("embedding", &[vocab as i64, dim as i64], &table);
    let gathered = g.op("Gather", &[&emb, "field_ids"], vec![attr_int("axis", 0)]);
    let axes = g.initializer_i64("axes", &[1], &[1]);
    let pooled = g.op("ReduceSum", &[&gathered, &axes], vec![attr_int("keepdims", 0)]);
    let wt = g.initializer_f32("w", &[dim as i64, 1], &w);
    let logit = g.op("MatMul", &[&pooled, &wt], vec![]);
    let bias = g.initializer_f32("b", &[1], &[b]);
    let shifted = g.op("Add", &[&logit, &bias], vec![]);
    g.op_into("Sigmoid", &[&shifted], "probability", vec![]);
    let _ = attr_ints; // the builder's other attribute helper is exercised by export tests
    let bytes = to_bytes(&g.finish());

    let mut session =
        Session::builder(common::ort_env()).unwrap().commit_from_memory(&bytes).expect("ORT accepts the graph");
    let ids: Vec<i64> = vec![0, 1, 2, 3, 4, 5, 6, 6];
    let input = ndarray::Array2::from_shape_vec((batch, fields), ids.clone()).unwrap();
    let outputs = session.run(ort::inputs!["field_ids" => TensorRef::from_array_view(&input).unwrap()]).unwrap();
    let got = outputs["probability"].try_extract_array::<f32>().unwrap();
    assert_eq!(got.shape(), &[batch, 1]);
    for r in 0..batch {
        let mut logit = b as f64;
        for k in 0..dim {
            let s: f64 = (0..fields).map(|f| table[ids[r * fields + f] as usize * dim + k] as f64).sum();
            logit += s * w[k] as f64;
        }
        let want = 1.0 / (1.0 + (-logit).exp());
        assert!((got[[r, 0]] as f64 - want).abs() < 1e-6, "row {r}: ORT {} vs hand {want}", got[[r, 0]]);
    }
}
