//! JSON Schemas of one loaded model's requests, from its encoder and tiers: which fields a row takes and
//! what values each accepts, which tier names exist, how many rows fit. They refine the handler types'
//! generic schemas in the OpenAPI document, so a schema-valid request is one the decoders accept.
use serde_json::{json, Value};

use crate::features::{FieldEncoder, FieldKind};
use crate::serve::registry::LoadedModel;

/// What the server's limits add to a model's schemas.
#[derive(Clone, Copy)]
pub struct RequestLimits {
    pub max_rows: usize,
    pub missing_as_oov: bool,
}

/// The KServe v2 tensor datatypes an input may declare.
const DATATYPES: [&str; 5] = ["BYTES", "INT64", "INT32", "FP32", "FP64"];

/// A numeric field's text: blank, or a finite number as Rust's `f64` parser reads it (after trimming).
const NUMBER_TEXT: &str = r"^\s*([+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]+)?)?\s*$";

/// The values one field accepts (`null` is its blank value).
pub fn value_schema(f: &FieldEncoder) -> Value {
    let scalar = json!({"type": ["string", "number", "boolean", "null"]});
    match &f.spec.kind {
        FieldKind::Categorical => {
            json!({"type": ["string", "number", "boolean", "null"], "description": "categorical: any scalar; unseen values map to the field's OOV id"})
        }
        FieldKind::NumericBucket => json!({
            "description": "numeric: a number, its text, or blank",
            "anyOf": [{"type": ["number", "null"]}, {"type": "string", "pattern": NUMBER_TEXT}],
        }),
        FieldKind::Sequence { separator, max_len } => json!({
            "description": format!("sequence: tokens as an array, or one string split at '{separator}'; the first {max_len} count"),
            "anyOf": [scalar, {"type": "array", "items": scalar}],
        }),
    }
}

/// A row object: each field's values; keys that name no field are ignored.
fn row(m: &LoadedModel, required: bool) -> Value {
    let fields = &m.artifact.encoder.fields;
    let properties: serde_json::Map<String, Value> =
        fields.iter().map(|f| (f.spec.name.clone(), value_schema(f))).collect();
    let mut row = json!({"type": "object", "properties": properties});
    if required {
        row["required"] = fields.iter().map(|f| f.spec.name.as_str()).collect();
    }
    row
}

/// A value each field knows (its first vocabulary token), for the examples.
fn known_values(m: &LoadedModel) -> Vec<(&str, &str)> {
    let fields = &m.artifact.encoder.fields;
    fields.iter().map(|f| (f.spec.name.as_str(), f.vocab.tokens().first().map_or("", |t| t))).collect()
}

/// The tier names a request may ask for: `auto`, each loaded tier, and `student` (+`:int8`) for the best.
pub fn tier_names(m: &LoadedModel) -> Vec<String> {
    let labels: Vec<&str> = m.tiers.iter().map(|t| t.label.as_str()).collect();
    let best = format!("student:{}", m.artifact.manifest.best_student);
    let mut names = vec!["auto".to_string()];
    names.extend(labels.iter().map(|l| l.to_string()));
    for (alias, label) in [("student", best.clone()), ("student:int8", format!("{best}:int8"))] {
        if labels.contains(&label.as_str()) {
            names.push(alias.to_string());
        }
    }
    names
}

fn tier_schema(m: &LoadedModel, description: &Value) -> Value {
    let mut names: Vec<Value> = tier_names(m).into_iter().map(Value::String).collect();
    names.push(Value::Null);
    json!({"enum": names, "description": description})
}

/// `/v1/score` for this model as named components (`<prefix>.<name>`): the handler type's schema with the
/// model's rows and tiers, as one of its two shapes (`instances`, or `context` + `candidates`), each a closed
/// object, so generated clients get a union of two types.
pub fn score_request(base: &Value, m: &LoadedModel, limits: RequestLimits, prefix: &str) -> Vec<(String, Value)> {
    let reference = |name: &str| json!({"$ref": format!("#/components/schemas/{prefix}.{name}")});
    let described = |mut schema: Value, what: &str| {
        schema["description"] = base["properties"][what]["description"].clone();
        schema
    };
    let rows = |item: Value, what: &str| {
        described(json!({"type": "array", "items": item, "minItems": 1, "maxItems": limits.max_rows}), what)
    };
    let shape = |rows: Vec<(&str, Value)>| {
        let mut p = base["properties"].as_object().cloned().unwrap_or_default();
        p.retain(|k, _| !matches!(k.as_str(), "instances" | "context" | "candidates"));
        p.insert("tier".into(), tier_schema(m, &base["properties"]["tier"]["description"]));
        let required: Vec<&str> = rows.iter().map(|(k, _)| *k).collect();
        p.extend(rows.into_iter().map(|(k, v)| (k.to_string(), v)));
        json!({"type": "object", "properties": p, "required": required, "additionalProperties": false})
    };
    let instances = shape(vec![("instances", rows(reference("Row"), "instances"))]);
    let ranking = shape(vec![
        ("context", described(reference("PartialRow"), "context")),
        ("candidates", rows(reference("PartialRow"), "candidates")),
    ]);
    let example: serde_json::Map<String, Value> =
        known_values(m).into_iter().map(|(f, v)| (f.into(), json!(v))).collect();
    let request = json!({
        "oneOf": [reference("InstancesRequest"), reference("RankingRequest")],
        "examples": [{"instances": [example]}],
        "description": "Give `instances`, or `context` + `candidates`. With a context, each field is given once: \
            in the context or in every candidate (a field in both is refused).",
    });
    [
        ("Row", row(m, !limits.missing_as_oov)),
        ("PartialRow", row(m, false)),
        ("InstancesRequest", instances),
        ("RankingRequest", ranking),
        ("ScoreRequest", request),
    ]
    .into_iter()
    .map(|(name, schema)| (format!("{prefix}.{name}"), schema))
    .collect()
}

/// A tensor's shape: `[N]` or `[N, 1]` (two branches: OpenAPI client generators read a plain array of
/// integers better than a tuple).
fn shape(limits: RequestLimits) -> Value {
    let n = json!({"type": "integer", "minimum": 1, "maximum": limits.max_rows});
    json!({"oneOf": [
        {"type": "array", "items": n, "minItems": 1, "maxItems": 1},
        {"type": "array", "prefixItems": [n, {"const": 1}], "minItems": 2, "maxItems": 2},
    ], "description": "[N] or [N, 1]; N = 1 applies the value to every row"})
}

/// One field's input tensor.
fn field_input(f: &FieldEncoder, limits: RequestLimits) -> Value {
    json!({"type": "object", "required": ["name", "shape", "datatype", "data"],
    "properties": {
        "name": {"const": f.spec.name},
        "shape": shape(limits),
        "datatype": {"enum": DATATYPES},
        "data": {"type": "array", "items": value_schema(f), "minItems": 1, "maxItems": limits.max_rows,
                 "description": "one value per row (shape[0] of them)"},
        "parameters": json_tensor_parameters(),
    }})
}

/// An input's parameters in a JSON body: its values are in `data`, so no `binary_data_size`.
fn json_tensor_parameters() -> Value {
    json!({"type": "object", "properties": {"binary_data_size": {"type": "null"}}})
}

/// `infer` for this model: one tensor per field, in metadata order here (the server takes any order);
/// tensors naming no field are ignored but must still be well formed.
pub fn infer_request(base: &Value, m: &LoadedModel, limits: RequestLimits) -> Value {
    let mut s = base.clone();
    let fields = &m.artifact.encoder.fields;
    let names: Vec<&str> = fields.iter().map(|f| f.spec.name.as_str()).collect();
    let other = json!({"type": "object", "required": ["name", "shape", "datatype", "data"],
    "properties": {
        "name": {"type": "string", "not": {"enum": names}},
        "shape": shape(limits),
        "datatype": {"enum": DATATYPES},
        "data": {"not": {"type": "null"}},
        "parameters": json_tensor_parameters(),
    }});
    let inputs: Vec<Value> = fields.iter().map(|f| field_input(f, limits)).collect();
    s["properties"]["inputs"] = json!({"type": "array", "prefixItems": inputs, "items": other,
        "minItems": fields.len(), "description": base["properties"]["inputs"]["description"]});
    let tier = tier_schema(m, &json!("the tier to run on"));
    s["properties"]["parameters"] =
        json!({"allOf": [{"$ref": "#/components/schemas/InferParameters"}], "properties": {"tier": tier}});
    let tensors: Vec<Value> = known_values(m)
        .into_iter()
        .map(|(f, v)| json!({"name": f, "shape": [1, 1], "datatype": "BYTES", "data": [v]}))
        .collect();
    s["examples"] = json!([{"inputs": tensors}]);
    s["description"] = json!(
        "One tensor per model field, all of N rows (or 1, applied to every row): shape[0] is the length of \
         `data`. Tensors appear here in metadata order; the server takes any order."
    );
    s
}
