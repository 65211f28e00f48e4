//! The KServe v2 binary tensor data extension through the real router (no socket): BYTES inputs after the
//! JSON header give the same probabilities as /v1/score, `binary_data_output` answers raw little-endian
//! floats, and malformed binary bodies are 400s in the protocol's `{"error": "<message>"}` shape.
mod common;

use ensemble_serve::data::instances::read_instances;
use serde_json::{json, Map, Value};

const HEADER: &str = "inference-header-content-length";

fn rows(n: usize) -> Option<Vec<Map<String, Value>>> {
    let data = common::data_dir()?;
    let spec = common::spec("frappe_ctr", &data);
    Some(read_instances(&spec, ensemble_serve::data::Split::Test, Some(n)).unwrap().objects)
}

/// A binary request: the JSON header, then each field's elements as 4-byte length + bytes.
fn binary_request(rows: &[Map<String, Value>], parameters: Value) -> (Vec<u8>, usize) {
    let fields: Vec<&String> = rows[0].keys().collect();
    let mut data = Vec::new();
    let mut inputs = Vec::new();
    for f in &fields {
        let start = data.len();
        for r in rows {
            let text = r[*f].as_str().expect("string cells");
            data.extend((text.len() as u32).to_le_bytes());
            data.extend(text.as_bytes());
        }
        let size = data.len() - start;
        inputs.push(json!({"name": f, "datatype": "BYTES", "shape": [rows.len(), 1],
                           "parameters": {"binary_data_size": size}}));
    }
    let header = serde_json::to_vec(&json!({"inputs": inputs, "parameters": parameters})).unwrap();
    let len = header.len();
    ([header, data].concat(), len)
}

#[tokio::test]
async fn binary_inputs_and_outputs_score_like_v1() {
    let Some(rows) = rows(40) else { return };
    let router = common::app::router(&common::app::shipped());
    let (_, v1) = common::app::post(&router, "/v1/score", &json!({"instances": rows, "tier": "ensemble"})).await;
    let want = common::app::prob_bits(&v1);
    let (body, len) = binary_request(&rows, json!({"tier": "ensemble", "binary_data_output": true}));
    let (status, headers, bytes) =
        common::app::post_bytes(&router, "/v2/models/default/infer", body, &[(HEADER, &len.to_string())]).await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&bytes));
    let json_len: usize = headers[HEADER].to_str().unwrap().parse().unwrap();
    let answer: Value = serde_json::from_slice(&bytes[..json_len]).unwrap();
    let output = &answer["outputs"][0];
    assert_eq!(output["parameters"]["binary_data_size"], json!(4 * rows.len()), "{answer}");
    assert!(output.get("data").is_none(), "binary outputs carry no JSON data: {answer}");
    let got: Vec<u32> =
        bytes[json_len..].chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap()).to_bits()).collect();
    assert_eq!(got, want, "binary v2 and v1 give the same probabilities");
}

#[tokio::test]
async fn malformed_binary_bodies_are_400s_that_say_why() {
    let Some(rows) = rows(3) else { return };
    let router = common::app::router(&common::app::shipped());
    let (body, len) = binary_request(&rows, json!({"tier": "ensemble"}));
    let past = (body.len() + 1).to_string();
    let mut truncated = body.clone();
    truncated.pop();
    let mut extra = body.clone();
    extra.push(0);
    for (what, bytes, header, expect) in [
        ("header past the body", body.clone(), past.as_str(), "past the body"),
        ("a truncated last element", truncated, &len.to_string(), "binary_data_size"),
        ("bytes after the last input", extra, &len.to_string(), "after the last input"),
        ("a header that is not a number", body, "twelve", "Inference-Header-Content-Length"),
    ] {
        let (status, _, answer) =
            common::app::post_bytes(&router, "/v2/models/default/infer", bytes, &[(HEADER, header)]).await;
        let answer: Value = serde_json::from_slice(&answer).unwrap();
        assert_eq!(status, 400, "{what}: {answer}");
        let message = answer["error"].as_str().unwrap_or_else(|| panic!("{what}: error is not a string: {answer}"));
        assert!(message.contains(expect), "{what}: {message}");
    }
}
