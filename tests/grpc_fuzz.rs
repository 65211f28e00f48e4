//! The KServe v2 gRPC request decoder (`serve::grpc::decode_infer`: typed `contents` or
//! `raw_input_contents`, context inputs of shape [1] broadcast) on real frappe rows, built and then mutated
//! at random with a fixed seed: it never panics, every refusal is a client error with a message, whatever
//! it accepts is whole rows within the limit, and an unmutated request gives the very ids the KServe v2
//! JSON decoder gives the same rows.
mod common;

use std::panic::{catch_unwind, AssertUnwindSafe};

use common::grpc::text;
use ensemble_serve::data::instances::read_instances;
use ensemble_serve::features::Encoder;
use ensemble_serve::serve::decode::{decode_v2, DecodeLimits};
use ensemble_serve::serve::grpc::decode_infer;
use ensemble_serve::serve::grpc::proto::infer_parameter::ParameterChoice;
use ensemble_serve::serve::grpc::proto::model_infer_request::InferInputTensor;
use ensemble_serve::serve::grpc::proto::{InferParameter, InferTensorContents, ModelInferRequest};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Map, Value};

type Row = Map<String, Value>;

const CONTEXT: [&str; 8] = ["user", "daytime", "weekday", "isweekend", "homework", "weather", "country", "city"];
const LIMITS: DecodeLimits = DecodeLimits { max_rows: 12, missing_as_oov: false };
const CASES: usize = 60_000;

/// A request of 1 to 8 real rows, every input BYTES, context fields as [1] at random, all typed or all raw;
/// and the same rows as a KServe v2 JSON body.
fn request(rows: &[Row], rng: &mut SmallRng) -> (ModelInferRequest, Value) {
    let n = rng.gen_range(1..=8);
    let start = rng.gen_range(0..rows.len() - n);
    let group = &rows[start..start + n];
    let (raw, broadcast) = (rng.gen_bool(0.5), rng.gen_bool(0.5));
    let (mut inputs, mut raw_contents, mut json_inputs) = (Vec::new(), Vec::new(), Vec::new());
    for field in group[0].keys() {
        let one = broadcast && CONTEXT.contains(&field.as_str());
        let values: Vec<String> =
            if one { vec![text(&group[0][field])] } else { group.iter().map(|r| text(&r[field])).collect() };
        let shape = if one { vec![1] } else { vec![n as i64, 1] };
        json_inputs.push(json!({"name": field, "datatype": "BYTES", "shape": shape, "data": values}));
        let bytes: Vec<Vec<u8>> = values.into_iter().map(String::into_bytes).collect();
        let contents = match raw {
            true => {
                raw_contents.push(
                    bytes.iter().flat_map(|b| (b.len() as u32).to_le_bytes().into_iter().chain(b.clone())).collect(),
                );
                None
            }
            false => Some(InferTensorContents { bytes_contents: bytes, ..Default::default() }),
        };
        inputs.push(InferInputTensor {
            name: field.clone(),
            datatype: "BYTES".into(),
            shape,
            contents,
            ..Default::default()
        });
    }
    let req = ModelInferRequest { inputs, raw_input_contents: raw_contents, ..Default::default() };
    (req, json!({"inputs": json_inputs}))
}

/// One to three random edits: an input's datatype, shape, name or contents; an input dropped or repeated;
/// raw contents miscounted or damaged; a parameter of the wrong kind.
fn mutate(req: &mut ModelInferRequest, keys: &[String], rng: &mut SmallRng) {
    for _ in 0..rng.gen_range(1..=3) {
        if req.inputs.is_empty() {
            return;
        }
        let i = rng.gen_range(0..req.inputs.len());
        match rng.gen_range(0..9) {
            0 => {
                let types = ["BYTES", "INT64", "INT32", "FP32", "FP64", "BOOL", "UINT8", "FP16", "", "bytes"];
                req.inputs[i].datatype = types[rng.gen_range(0..types.len())].into();
            }
            1 => {
                let n = req.inputs[i].shape.first().copied().unwrap_or(1);
                let shapes = [
                    vec![n],
                    vec![1],
                    vec![1, 1],
                    vec![n, 2],
                    vec![],
                    vec![-1],
                    vec![0],
                    vec![n + 1],
                    vec![i64::MAX],
                    vec![i64::MIN, 1],
                    vec![n, 1, 1],
                ];
                req.inputs[i].shape = shapes[rng.gen_range(0..shapes.len())].clone();
            }
            2 => {
                req.inputs.remove(i);
                if i < req.raw_input_contents.len() && rng.gen_bool(0.8) {
                    req.raw_input_contents.remove(i);
                }
            }
            3 => {
                req.inputs.push(req.inputs[i].clone());
                if let Some(r) = req.raw_input_contents.get(i).cloned() {
                    req.raw_input_contents.push(r);
                }
            }
            4 => req.inputs[i].name = keys[rng.gen_range(0..keys.len())].clone(),
            5 => match req.raw_input_contents.get_mut(i) {
                Some(r) => damage(r, rng),
                None => req.raw_input_contents.push(vec![1, 0, 0, 0, b'7']),
            },
            6 => {
                let n = rng.gen_range(0..4);
                let numbers = InferTensorContents {
                    int64_contents: (0..n).map(|_| rng.gen_range(-5..500)).collect(),
                    fp32_contents: (0..n).map(|_| rng.gen_range(-1.0..500.0)).collect(),
                    int_contents: (0..n).map(|_| rng.gen_range(-5..500)).collect(),
                    fp64_contents: (0..n).map(|_| f64::from_bits(rng.gen())).collect(),
                    ..Default::default()
                };
                req.inputs[i].contents = Some(numbers);
            }
            7 => {
                if let Some(c) = req.inputs[i].contents.as_mut() {
                    match c.bytes_contents.pop() {
                        Some(b) if rng.gen_bool(0.5) => c.bytes_contents.extend([b.clone(), b]),
                        Some(_) => {}
                        None => c.bytes_contents.push(vec![0xff, 0xfe]),
                    }
                }
            }
            _ => {
                let names = ["tier", "latency_budget_ms", "timeout_ms", "binary_data_output"];
                let choices = [
                    ParameterChoice::BoolParam(true),
                    ParameterChoice::Int64Param(-1),
                    ParameterChoice::Uint64Param(u64::MAX),
                    ParameterChoice::DoubleParam(f64::NAN),
                    ParameterChoice::StringParam("student".into()),
                    ParameterChoice::StringParam(String::new()),
                ];
                let p = InferParameter { parameter_choice: Some(choices[rng.gen_range(0..choices.len())].clone()) };
                req.parameters.insert(names[rng.gen_range(0..names.len())].into(), p);
            }
        }
    }
}

/// A flipped byte, a cut, or bytes appended.
fn damage(bytes: &mut Vec<u8>, rng: &mut SmallRng) {
    match rng.gen_range(0..3) {
        0 if !bytes.is_empty() => {
            let i = rng.gen_range(0..bytes.len());
            bytes[i] ^= 1 << rng.gen_range(0..8);
        }
        1 => bytes.truncate(rng.gen_range(0..=bytes.len())),
        _ => bytes.extend((0..rng.gen_range(1..6)).map(|_| rng.gen::<u8>())),
    }
}

fn corpus(data: &std::path::Path) -> (Vec<Row>, Encoder) {
    let spec = common::spec("frappe_ctr", data);
    (read_instances(&spec, ensemble_serve::data::Split::Test, Some(2_000)).unwrap().objects, common::shipped_encoder())
}

#[test]
fn grpc_decoding_never_panics_refuses_with_a_client_error_and_matches_v2_json() {
    let data = require_data!();
    let (rows, enc) = corpus(&data);
    let keys: Vec<String> = rows[0].keys().cloned().chain(["", "item ", "USER"].map(String::from)).collect();
    let mut rng = SmallRng::seed_from_u64(20261205);
    let (mut accepted, mut refused, mut matched) = (0, 0, 0);
    for case in 0..CASES {
        let (mut req, json_body) = request(&rows, &mut rng);
        let mutated = case % 3 != 0;
        if mutated {
            mutate(&mut req, &keys, &mut rng);
        }
        let outcome = catch_unwind(AssertUnwindSafe(|| decode_infer(&req, &enc, LIMITS)))
            .unwrap_or_else(|_| panic!("case {case}: the decoder panicked on {req:?}"));
        match outcome {
            Ok((encoded, _)) => {
                accepted += 1;
                assert!(encoded.rows <= LIMITS.max_rows, "case {case}: {} rows", encoded.rows);
                assert_eq!(encoded.ids.len(), encoded.rows * enc.fields.len(), "case {case}: whole rows only");
                if !mutated {
                    let body = serde_json::to_vec(&json_body).unwrap();
                    let (v2, _, _) = decode_v2(&body, None, &enc, LIMITS).expect("the same rows as v2 JSON");
                    assert_eq!(
                        (encoded.rows, &encoded.ids),
                        (v2.rows, &v2.ids),
                        "case {case}: gRPC and v2 JSON differ"
                    );
                    matched += 1;
                }
            }
            Err(e) => {
                refused += 1;
                assert!(
                    (400..500).contains(&e.status()) && !e.to_string().is_empty(),
                    "case {case}: {e:?} for {req:?}"
                );
                assert!(mutated, "case {case}: an unmutated request refused: {e}");
            }
        }
    }
    eprintln!("gRPC: {accepted} accepted ({matched} matched v2 JSON id for id), {refused} refused");
    assert!(accepted > CASES / 4 && refused > CASES / 4, "{accepted} / {refused}: a weak corpus");
}
