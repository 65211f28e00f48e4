//! The KServe v2 REST answers as types: the handlers build them and the OpenAPI document derives from them,
//! so the two cannot drift.
use serde::Serialize;
use utoipa::ToSchema;

/// Every KServe v2 error answer (the protocol's shape).
#[derive(Serialize, ToSchema)]
pub struct V2ErrorBody {
    pub error: String,
}

/// `GET /v2`.
#[derive(Serialize, ToSchema)]
pub struct ServerMetadata {
    pub name: &'static str,
    pub version: &'static str,
    /// Protocol extensions this server speaks.
    pub extensions: Vec<&'static str>,
}

/// `GET /v2/health/live`.
#[derive(Serialize, ToSchema)]
pub struct Live {
    pub live: bool,
}

/// `GET /v2/health/ready`: true when at least one model is loaded.
#[derive(Serialize, ToSchema)]
pub struct Ready {
    pub ready: bool,
}

/// `GET /v2/models/{name}/ready`.
#[derive(Serialize, ToSchema)]
pub struct ModelReady {
    pub name: String,
    pub ready: bool,
}

/// One tensor's name, type and shape (`-1`: any length).
#[derive(Serialize, ToSchema)]
pub struct TensorMetadata {
    pub name: String,
    pub datatype: &'static str,
    pub shape: [i64; 2],
}

/// `GET /v2/models/{name}`: inputs are `[batch, 1]` as in the config (`dims: [1]` with a batch size); `[N]`
/// is accepted too.
#[derive(Serialize, ToSchema)]
pub struct ModelMetadata {
    pub name: String,
    pub versions: Vec<String>,
    pub platform: &'static str,
    pub inputs: Vec<TensorMetadata>,
    pub outputs: Vec<TensorMetadata>,
}

/// One tensor of a Triton model configuration.
#[derive(Serialize, ToSchema)]
pub struct ConfigTensor {
    pub name: String,
    pub data_type: &'static str,
    pub dims: [i64; 1],
}

#[derive(Serialize, ToSchema)]
pub struct LatestVersions {
    pub num_versions: u32,
}

#[derive(Serialize, ToSchema)]
pub struct VersionPolicy {
    pub latest: LatestVersions,
}

#[derive(Serialize, ToSchema)]
pub struct DynamicBatching {
    pub max_queue_delay_microseconds: u64,
}

#[derive(Serialize, ToSchema)]
pub struct InstanceGroup {
    pub count: u32,
    /// `KIND_CPU` or `KIND_GPU`.
    pub kind: &'static str,
}

/// A Triton string parameter.
#[derive(Serialize, ToSchema)]
pub struct StringParameter {
    pub string_value: String,
}

#[derive(Serialize, ToSchema)]
pub struct ConfigParameters {
    /// The model's tiers, most accurate first, comma-separated.
    pub tiers: StringParameter,
}

/// `GET /v2/models/{name}/config`: the model as a Triton model configuration (as `tritonclient` reads it).
#[derive(Serialize, ToSchema)]
pub struct ModelConfig {
    pub name: String,
    pub platform: &'static str,
    pub backend: &'static str,
    pub version_policy: VersionPolicy,
    pub max_batch_size: usize,
    pub input: Vec<ConfigTensor>,
    pub output: Vec<ConfigTensor>,
    pub dynamic_batching: DynamicBatching,
    pub instance_group: Vec<InstanceGroup>,
    pub parameters: ConfigParameters,
}

/// What an infer answer reports beside its output.
#[derive(Serialize, ToSchema)]
pub struct InferAnswerParameters {
    /// The tier that served: `ensemble` or `student:<k>` (`:int8` for the quantised twins).
    pub served_by: String,
    pub server_time_us: f64,
}

/// The output's parameters when its values follow the JSON header as raw bytes.
#[derive(Serialize, ToSchema)]
pub struct BinaryDataSize {
    pub binary_data_size: usize,
}

/// The output tensor, with its values inline (`data`) or, with `binary_data_size`, after the JSON header.
/// Serialised with f32 numbers, so probabilities print exactly as in v1 answers.
#[derive(Serialize, ToSchema)]
pub struct InferOutput {
    pub name: &'static str,
    pub datatype: &'static str,
    pub shape: [usize; 2],
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parameters: Option<BinaryDataSize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data: Option<Vec<f32>>,
}

/// `POST /v2/models/{name}/infer` answer (the JSON header, when binary output follows it).
#[derive(Serialize, ToSchema)]
pub struct InferResponse {
    pub model_name: String,
    pub model_version: String,
    /// The request's `id`, only when it sent one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    pub parameters: InferAnswerParameters,
    pub outputs: [InferOutput; 1],
}
