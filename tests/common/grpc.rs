//! KServe v2 gRPC requests built from real rows, for the tests that call the gRPC front end.
use ensemble_serve::serve::grpc::proto::infer_parameter::ParameterChoice;
use ensemble_serve::serve::grpc::proto::model_infer_request::InferInputTensor;
use ensemble_serve::serve::grpc::proto::{InferParameter, InferTensorContents, ModelInferRequest};
use serde_json::{Map, Value};

/// A row's value as the text a BYTES element carries.
pub fn text(v: &Value) -> String {
    v.as_str().map_or_else(|| v.to_string(), str::to_string)
}

/// An infer request on the default model: context fields as [1] (broadcast), candidate fields as [N, 1], BYTES
/// contents; `tier` and a 10 s budget as parameters.
pub fn infer_request(context: &Map<String, Value>, candidates: &[Map<String, Value>], tier: &str) -> ModelInferRequest {
    let input = |name: &str, shape: Vec<i64>, values: Vec<Vec<u8>>| InferInputTensor {
        name: name.into(),
        datatype: "BYTES".into(),
        shape,
        contents: Some(InferTensorContents { bytes_contents: values, ..Default::default() }),
        ..Default::default()
    };
    let mut inputs: Vec<InferInputTensor> =
        context.iter().map(|(k, v)| input(k, vec![1], vec![text(v).into_bytes()])).collect();
    for field in candidates[0].keys() {
        let values: Vec<Vec<u8>> = candidates.iter().map(|c| text(&c[field]).into_bytes()).collect();
        inputs.push(input(field, vec![values.len() as i64, 1], values));
    }
    let param = |c: ParameterChoice| InferParameter { parameter_choice: Some(c) };
    let parameters = [
        ("tier".to_string(), param(ParameterChoice::StringParam(tier.into()))),
        ("latency_budget_ms".to_string(), param(ParameterChoice::DoubleParam(1e4))),
    ];
    ModelInferRequest { model_name: "default".into(), inputs, parameters: parameters.into(), ..Default::default() }
}
