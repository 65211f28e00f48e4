//! KServe v2 gRPC front end (`inference.GRPCInferenceService`, the vendored proto/kserve/grpc_service.proto):
//! a thin adapter over the same scoring pipeline as HTTP, so metrics, deadlines, routing and errors are the
//! same. Inputs come as typed `contents` or as `raw_input_contents`; the output goes as `raw_output_contents`
//! (what Triton answers and `tritonclient.grpc` reads).
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use tonic::{Request, Response, Status};

use crate::features::Encoder;
use crate::serve::decode::{encode_tensors, BodyOptions, DecodeLimits, Encoded, Tensor, Values};
use crate::serve::error::ScoringError;
use crate::serve::http::AppState;
use crate::serve::registry::LoadedModel;
use crate::serve::scoring::Decode;

/// Code generated from the vendored proto.
pub mod proto {
    tonic::include_proto!("inference");
}

use proto::grpc_inference_service_server::{GrpcInferenceService, GrpcInferenceServiceServer};
use proto::infer_parameter::ParameterChoice;
use proto::model_infer_response::InferOutputTensor;
use proto::model_metadata_response::TensorMetadata;
use proto::*;

/// Serves the gRPC front end on `listener` until `shutdown` resolves; in-flight calls finish first.
///
/// hyper (through `axum::serve`) carries it rather than tonic's transport, whose own timer for the client's
/// `grpc-timeout` would race the pipeline's deadline and answer CANCELLED, uncounted, where the pipeline
/// answers DEADLINE_EXCEEDED and counts it.
pub async fn serve(
    state: Arc<AppState>,
    listener: tokio::net::TcpListener,
    max_message_bytes: usize,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    use axum::serve::ListenerExt as _;
    let app = router(state, max_message_bytes);
    // Small answers must not wait out Nagle's algorithm against the client's delayed ACKs (~40 ms).
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    axum::serve(listener, app).with_graceful_shutdown(shutdown).await
}

/// The gRPC service as an axum router (what [`serve`] serves; tests call it in-process).
pub fn router(state: Arc<AppState>, max_message_bytes: usize) -> axum::Router {
    let service = GrpcInferenceServiceServer::new(Grpc { state }).max_decoding_message_size(max_message_bytes);
    let service = tonic::service::interceptor::InterceptedService::new(service, stamp_arrival);
    tonic::service::Routes::new(service).prepare().into_axum_router()
}

struct Grpc {
    state: Arc<AppState>,
}

/// When a call reached the service (its headers read, its message perhaps not yet): the start of its
/// `grpc-timeout`, as the client's gRPC library counts it.
#[derive(Clone, Copy)]
struct Arrival(Instant);

#[allow(clippy::result_large_err)] // the signature of a tonic interceptor
fn stamp_arrival(mut r: Request<()>) -> Result<Request<()>, Status> {
    r.extensions_mut().insert(Arrival(Instant::now()));
    Ok(r)
}

/// The gRPC status of a scoring error, from its HTTP status (one mapping for every front end).
fn status(e: &ScoringError) -> Status {
    let message = e.to_string();
    match e.status() {
        400 | 422 => Status::invalid_argument(message),
        404 => Status::not_found(message),
        413 => Status::resource_exhausted(message),
        429 | 503 => Status::unavailable(message),
        504 => Status::deadline_exceeded(message),
        _ => Status::internal(message),
    }
}

impl Grpc {
    /// The model `name`, at `version` when one is named (empty: the loaded one).
    fn model(&self, name: &str, version: &str) -> Result<Arc<LoadedModel>, ScoringError> {
        self.state.scorer.registry.get_version(name, (!version.is_empty()).then_some(version))
    }
}

#[tonic::async_trait]
impl GrpcInferenceService for Grpc {
    async fn server_live(&self, _: Request<ServerLiveRequest>) -> Result<Response<ServerLiveResponse>, Status> {
        Ok(Response::new(ServerLiveResponse { live: true }))
    }

    async fn server_ready(&self, _: Request<ServerReadyRequest>) -> Result<Response<ServerReadyResponse>, Status> {
        let ready = !self.state.scorer.registry.models.load().is_empty();
        Ok(Response::new(ServerReadyResponse { ready }))
    }

    async fn model_ready(&self, r: Request<ModelReadyRequest>) -> Result<Response<ModelReadyResponse>, Status> {
        let r = r.into_inner();
        let ready = self.model(&r.name, &r.version).is_ok();
        Ok(Response::new(ModelReadyResponse { ready }))
    }

    async fn server_metadata(
        &self,
        _: Request<ServerMetadataRequest>,
    ) -> Result<Response<ServerMetadataResponse>, Status> {
        let version = env!("CARGO_PKG_VERSION").to_string();
        Ok(Response::new(ServerMetadataResponse { name: "ensemble-serve".into(), version, extensions: vec![] }))
    }

    async fn model_metadata(
        &self,
        r: Request<ModelMetadataRequest>,
    ) -> Result<Response<ModelMetadataResponse>, Status> {
        let r = r.into_inner();
        let m = self.model(&r.name, &r.version).map_err(|e| status(&e))?;
        let tensor = |name: &str, datatype: &str| TensorMetadata {
            name: name.into(),
            datatype: datatype.into(),
            shape: vec![-1, 1],
        };
        Ok(Response::new(ModelMetadataResponse {
            name: m.name.clone(),
            versions: vec![m.version.clone()],
            platform: "ensemble-serve_onnxruntime".into(),
            inputs: m.artifact.encoder.fields.iter().map(|f| tensor(&f.spec.name, "BYTES")).collect(),
            outputs: vec![tensor("probability", "FP32")],
        }))
    }

    async fn model_config(&self, r: Request<ModelConfigRequest>) -> Result<Response<ModelConfigResponse>, Status> {
        let r = r.into_inner();
        let m = self.model(&r.name, &r.version).map_err(|e| status(&e))?;
        Ok(Response::new(ModelConfigResponse { config: Some(model_config(&m)) }))
    }

    async fn model_infer(&self, r: Request<ModelInferRequest>) -> Result<Response<ModelInferResponse>, Status> {
        let (metadata, extensions, req) = r.into_parts();
        let arrival = extensions.get::<Arrival>().map_or_else(Instant::now, |a| a.0);
        let headers = metadata.into_headers();
        // A named version must be the loaded one; an unknown model is the pipeline's to answer and count.
        if !req.model_version.is_empty() {
            self.model(&req.model_name, &req.model_version).map_err(|e| status(&e))?;
        }
        let mut call = crate::serve::http::call(&req.model_name, arrival, &headers);
        call.grpc_timeout = crate::serve::http::header_text(&headers, "grpc-timeout");
        let (out, ()) = self.state.scorer.score(call, GrpcBody(&req)).await.map_err(|e| status(&e))?;
        let rows = out.probabilities.len() as i64;
        let raw: Vec<u8> = out.probabilities.iter().flat_map(|p| p.to_le_bytes()).collect();
        let string = |s: String| InferParameter { parameter_choice: Some(ParameterChoice::StringParam(s)) };
        let double = |v: f64| InferParameter { parameter_choice: Some(ParameterChoice::DoubleParam(v)) };
        let served = HashMap::from([
            ("served_by".to_string(), string(out.tier)),
            ("server_time_us".to_string(), double(out.server_us.round())),
        ]);
        Ok(Response::new(ModelInferResponse {
            model_name: out.model,
            model_version: out.version,
            id: req.id.clone(),
            parameters: served,
            outputs: vec![InferOutputTensor {
                name: "probability".into(),
                datatype: "FP32".into(),
                shape: vec![rows, 1],
                parameters: HashMap::new(),
                contents: None,
            }],
            raw_output_contents: vec![raw],
        }))
    }
}

/// The Triton-style config, as `GET /v2/models/{name}/config` gives it.
fn model_config(m: &LoadedModel) -> ModelConfig {
    let b = &m.tiers[0].batcher;
    let input = |f: &crate::features::FieldEncoder| ModelInput {
        name: f.spec.name.clone(),
        data_type: DataType::TypeString as i32,
        dims: vec![1],
    };
    let kind = match m.execution_provider {
        crate::runtime::Provider::Cuda => model_instance_group::Kind::Gpu,
        crate::runtime::Provider::Cpu => model_instance_group::Kind::Cpu,
    };
    let tiers = m.tiers.iter().map(|t| t.label.clone()).collect::<Vec<_>>().join(",");
    ModelConfig {
        name: m.name.clone(),
        platform: "onnxruntime_onnx".into(),
        backend: "onnxruntime".into(),
        version_policy: Some(ModelVersionPolicy {
            policy_choice: Some(model_version_policy::PolicyChoice::Latest(model_version_policy::Latest {
                num_versions: 1,
            })),
        }),
        max_batch_size: b.max_batch_rows as i32,
        input: m.artifact.encoder.fields.iter().map(input).collect(),
        output: vec![ModelOutput { name: "probability".into(), data_type: DataType::TypeFp32 as i32, dims: vec![1] }],
        scheduling_choice: Some(model_config::SchedulingChoice::DynamicBatching(ModelDynamicBatching {
            preferred_batch_size: vec![],
            max_queue_delay_microseconds: b.max_queue_delay.as_micros() as u64,
        })),
        instance_group: vec![ModelInstanceGroup { name: String::new(), kind: kind as i32, count: 1 }],
        parameters: HashMap::from([("tiers".to_string(), ModelParameter { string_value: tiers })]),
    }
}

/// A gRPC infer request for the pipeline.
struct GrpcBody<'a>(&'a ModelInferRequest);

impl Decode for GrpcBody<'_> {
    type Extra = ();
    fn decode(self, enc: &Encoder, limits: DecodeLimits) -> Result<(Encoded, BodyOptions, ()), ScoringError> {
        decode_infer(self.0, enc, limits).map(|(encoded, options)| (encoded, options, ()))
    }
}

/// A gRPC infer request's rows (typed `contents` or `raw_input_contents`) and options.
pub fn decode_infer(
    req: &ModelInferRequest,
    enc: &Encoder,
    limits: DecodeLimits,
) -> Result<(Encoded, BodyOptions), ScoringError> {
    let raw = &req.raw_input_contents;
    if !raw.is_empty() && raw.len() != req.inputs.len() {
        let msg = format!("{} raw_input_contents for {} inputs", raw.len(), req.inputs.len());
        return Err(ScoringError::InvalidRequest(msg));
    }
    let tensors: Vec<Tensor> = req
        .inputs
        .iter()
        .enumerate()
        .map(|(i, input)| Tensor {
            name: &input.name,
            datatype: &input.datatype,
            shape: &input.shape,
            values: match raw.get(i) {
                Some(bytes) => Values::Raw(bytes),
                None => typed(&input.datatype, input.contents.as_ref()),
            },
        })
        .collect();
    Ok((encode_tensors(&tensors, enc, limits)?, options(&req.parameters)?))
}

/// An input's typed contents for its datatype (none: no values, which the count check names).
fn typed<'a>(datatype: &str, contents: Option<&'a InferTensorContents>) -> Values<'a> {
    let Some(c) = contents else { return Values::Bytes(&[]) };
    match datatype {
        "INT64" => Values::Int64(&c.int64_contents),
        "INT32" => Values::Int32(&c.int_contents),
        "FP32" => Values::Fp32(&c.fp32_contents),
        "FP64" => Values::Fp64(&c.fp64_contents),
        _ => Values::Bytes(&c.bytes_contents),
    }
}

/// `latency_budget_ms`, `tier` and `timeout_ms` from the request's parameters.
fn options(parameters: &HashMap<String, InferParameter>) -> Result<BodyOptions, ScoringError> {
    let number = |key: &str| -> Result<Option<f64>, ScoringError> {
        match parameters.get(key).and_then(|p| p.parameter_choice.as_ref()) {
            None => Ok(None),
            Some(ParameterChoice::DoubleParam(v)) => Ok(Some(*v)),
            Some(ParameterChoice::Int64Param(v)) => Ok(Some(*v as f64)),
            Some(ParameterChoice::Uint64Param(v)) => Ok(Some(*v as f64)),
            Some(other) => Err(ScoringError::InvalidRequest(format!("parameter '{key}': {other:?} is not a number"))),
        }
    };
    let tier = match parameters.get("tier").and_then(|p| p.parameter_choice.as_ref()) {
        None => None,
        Some(ParameterChoice::StringParam(s)) => Some(s.clone()),
        Some(other) => {
            return Err(ScoringError::InvalidRequest(format!("parameter 'tier': {other:?} is not a string")))
        }
    };
    Ok(BodyOptions { latency_budget_ms: number("latency_budget_ms")?, tier, timeout_ms: number("timeout_ms")? })
}
