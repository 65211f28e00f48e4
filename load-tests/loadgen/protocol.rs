//! How a request is written, sent and read back in each protocol a target speaks: ensemble-serve's /v1
//! JSON, KServe v2 JSON or binary tensors over HTTP, and KServe v2 gRPC.
use std::time::Duration;

use ensemble_serve::serve::grpc::proto::grpc_inference_service_client::GrpcInferenceServiceClient;
use ensemble_serve::serve::grpc::proto::{infer_parameter::ParameterChoice, model_infer_request, InferParameter};
use ensemble_serve::serve::grpc::proto::{ModelInferRequest, ModelInferResponse};
use serde::Deserialize;

use crate::driver::{CLIENT_TIMEOUT, TRANSPORT_ERROR};
use crate::replay::Replay;

/// The request format of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// ensemble-serve's /v1 score request (ours and the FastAPI peer).
    V1,
    /// KServe v2 JSON infer request. `tier`: the graph; `as_parameter`: sent as the `tier` parameter (ours),
    /// else it is the model the URL names (Triton).
    V2Json { tier: &'static str, as_parameter: bool },
    /// KServe v2 with the binary tensor data extension, binary output (ours; `tier` as a parameter).
    V2Binary { tier: &'static str },
    /// KServe v2 gRPC with `raw_input_contents` (ours; `tier` as a parameter).
    Grpc { tier: &'static str },
}

/// What every answer yields.
#[derive(Deserialize)]
pub struct Answer {
    pub served_by: String,
    pub probabilities: Vec<f32>,
    #[serde(default)]
    pub server_time_us: f64,
    #[serde(default)]
    pub inference_time_us: f64,
}

/// A request ready to go (built before its send time: building it is the client's work, not latency).
#[derive(Clone)]
pub enum Prepared {
    Http { body: Vec<u8>, header_len: Option<usize> },
    Grpc(ModelInferRequest),
}

/// Where requests go and how.
#[derive(Clone)]
pub struct Sender {
    pub protocol: Protocol,
    pub url: String,
    pub http: reqwest::Client,
    pub grpc: Option<GrpcInferenceServiceClient<tonic::transport::Channel>>,
    pub timeout: Duration,
    /// The model requests name (gRPC names it in the message).
    pub model: String,
}

impl Sender {
    pub fn prepare(&self, replay: &Replay, first: u32, n: usize, v1_tier: Option<&str>, budget_ms: f64) -> Prepared {
        let http = |body, header_len| Prepared::Http { body, header_len };
        match self.protocol {
            Protocol::V1 => http(replay.body(first, n, v1_tier, budget_ms), None),
            Protocol::V2Json { tier, as_parameter } => {
                http(replay.v2_body(first, n, as_parameter.then_some(tier)), None)
            }
            Protocol::V2Binary { tier } => {
                let (body, header_len) = replay.v2_binary_body(first, n, tier);
                http(body, Some(header_len))
            }
            Protocol::Grpc { tier } => Prepared::Grpc(grpc_request(replay, (first, n), &self.model, tier)),
        }
    }
}

fn grpc_request(replay: &Replay, (first, n): (u32, usize), model: &str, tier: &str) -> ModelInferRequest {
    let (inputs, raw) = replay.grpc_inputs(first, n);
    let tier = InferParameter { parameter_choice: Some(ParameterChoice::StringParam(tier.into())) };
    ModelInferRequest {
        model_name: model.into(),
        inputs: inputs
            .into_iter()
            .map(|(name, rows)| model_infer_request::InferInputTensor {
                name,
                datatype: "BYTES".into(),
                shape: vec![rows as i64, 1],
                ..Default::default()
            })
            .collect(),
        raw_input_contents: raw,
        parameters: [("tier".to_string(), tier)].into(),
        ..Default::default()
    }
}

impl Sender {
    pub async fn send(&self, request: Prepared) -> (u16, Option<Answer>) {
        match request {
            Prepared::Http { body, header_len } => self.send_http(body, header_len).await,
            Prepared::Grpc(req) => self.send_grpc(req).await,
        }
    }

    async fn send_http(&self, body: Vec<u8>, header_len: Option<usize>) -> (u16, Option<Answer>) {
        let mut req = self.http.post(&self.url).body(body).timeout(self.timeout);
        req = match header_len {
            Some(n) => {
                req.header("inference-header-content-length", n).header("content-type", "application/octet-stream")
            }
            None => req.header("content-type", "application/json"),
        };
        let resp = match req.send().await {
            Ok(r) => r,
            Err(e) if e.is_timeout() => return (CLIENT_TIMEOUT, None),
            Err(_) => return (TRANSPORT_ERROR, None),
        };
        let status = resp.status().as_u16();
        let json_len =
            resp.headers().get("inference-header-content-length").and_then(|v| v.to_str().ok()?.parse().ok());
        match resp.bytes().await {
            Ok(b) if status == 200 => match self.parse(&b, json_len) {
                Some(a) => (200, Some(a)),
                None => (TRANSPORT_ERROR, None),
            },
            Ok(_) => (status, None),
            Err(e) if e.is_timeout() => (CLIENT_TIMEOUT, None),
            Err(_) => (TRANSPORT_ERROR, None),
        }
    }

    async fn send_grpc(&self, req: ModelInferRequest) -> (u16, Option<Answer>) {
        let Some(mut client) = self.grpc.clone() else { return (TRANSPORT_ERROR, None) };
        match tokio::time::timeout(self.timeout, client.model_infer(req)).await {
            Err(_) => (CLIENT_TIMEOUT, None),
            Ok(Err(status)) => (http_status(status.code()), None),
            Ok(Ok(resp)) => match grpc_answer(resp.into_inner()) {
                Some(a) => (200, Some(a)),
                None => (TRANSPORT_ERROR, None),
            },
        }
    }

    fn parse(&self, body: &[u8], json_len: Option<usize>) -> Option<Answer> {
        match self.protocol {
            Protocol::V1 => serde_json::from_slice(body).ok(),
            Protocol::V2Json { tier, .. } | Protocol::V2Binary { tier } | Protocol::Grpc { tier } => {
                let (json, raw) = body.split_at(json_len.unwrap_or(body.len()).min(body.len()));
                let mut v2: V2Answer = serde_json::from_slice(json).ok()?;
                let output = (!v2.outputs.is_empty()).then(|| v2.outputs.swap_remove(0))?;
                let probabilities = match output.data {
                    Some(d) => d,
                    None => raw.chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().expect("4 bytes"))).collect(),
                };
                let served_by = v2.parameters.served_by.unwrap_or_else(|| tier.into());
                let server_time_us = v2.parameters.server_time_us.unwrap_or(0.0);
                Some(Answer { served_by, probabilities, server_time_us, inference_time_us: 0.0 })
            }
        }
    }
}

/// A KServe v2 infer response: the first output's data (JSON, or raw after the header) are the probabilities.
#[derive(Deserialize)]
struct V2Answer {
    outputs: Vec<V2Output>,
    #[serde(default)]
    parameters: V2Parameters,
}

#[derive(Deserialize, Default)]
struct V2Parameters {
    served_by: Option<String>,
    server_time_us: Option<f64>,
}

#[derive(Deserialize)]
struct V2Output {
    #[serde(default)]
    data: Option<Vec<f32>>,
}

fn grpc_answer(resp: ModelInferResponse) -> Option<Answer> {
    let raw = resp.raw_output_contents.first()?;
    let probabilities = raw.chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().expect("4 bytes"))).collect();
    let param = |key: &str| resp.parameters.get(key).and_then(|p| p.parameter_choice.clone());
    let served_by = match param("served_by") {
        Some(ParameterChoice::StringParam(s)) => s,
        _ => resp.model_name.clone(),
    };
    let server_time_us = match param("server_time_us") {
        Some(ParameterChoice::DoubleParam(us)) => us,
        _ => 0.0,
    };
    Some(Answer { served_by, probabilities, server_time_us, inference_time_us: 0.0 })
}

/// The HTTP status a gRPC code stands for (as the server maps them).
fn http_status(code: tonic::Code) -> u16 {
    use tonic::Code::*;
    match code {
        InvalidArgument => 400,
        NotFound => 404,
        ResourceExhausted => 413,
        Unavailable => 503,
        DeadlineExceeded => 504,
        Internal => 500,
        _ => TRANSPORT_ERROR,
    }
}
