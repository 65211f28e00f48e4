//! The one-pass `/v1` body decoder against the plain reading of the same body (a `serde_json::Value` tree,
//! then the encoder's per-object JSON path), on real frappe rows mutated at random with a fixed seed: it
//! never panics, every refusal is a 4xx naming a reason, and whatever it accepts the plain reading accepts
//! with the same ids. KServe v2 bodies get the byte-level half (no panic, 4xx).
mod common;

use std::panic::{catch_unwind, AssertUnwindSafe};

use ensemble_serve::data::instances::{read_instances, split_context};
use ensemble_serve::features::Encoder;
use ensemble_serve::serve::decode::{decode_v1, decode_v2, DecodeLimits, Encoded};
use ensemble_serve::serve::error::ScoringError;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Map, Value};

type Row = Map<String, Value>;

const CONTEXT: [&str; 8] = ["user", "daytime", "weekday", "isweekend", "homework", "weather", "country", "city"];
const LIMITS: DecodeLimits = DecodeLimits { max_rows: 12, missing_as_oov: false };
const CASES: usize = 60_000;

/// What a value may be replaced with: every JSON kind, edge numbers, odd strings, the fields' own tokens.
fn value_pool(rows: &[Row]) -> Vec<Value> {
    let mut pool: Vec<Value> = serde_json::from_str(
        r#"[null, true, false, 0, -0, 1, -1, 0.5, 35, 35.0, 3.5e1, 1e300, -1e-300, 18446744073709551616,
            9007199254740993, -9223372036854775809, "", " ", "0", "035", "+3", "-1", "1e2", "é", "\u0000",
            "a|b", "🙂", [], [1], ["a", "b"], [[1]], {}, {"user": "1"}, [null]]"#,
    )
    .expect("pool");
    pool.extend(rows.iter().take(20).flat_map(|r| r.values().cloned()));
    pool
}

/// The two body shapes built from `n` real rows.
fn body(rows: &[Row], rng: &mut SmallRng) -> Value {
    let n = rng.gen_range(1..=8).min(rows.len());
    let start = rng.gen_range(0..rows.len() - n);
    let group = &rows[start..start + n];
    match rng.gen_bool(0.5) {
        true => json!({"instances": group, "tier": "auto"}),
        false => {
            let (context, candidates) = split_context(group, &CONTEXT);
            json!({"context": context, "candidates": candidates, "latency_budget_ms": 25})
        }
    }
}

/// One to three random edits anywhere in the tree: replace, delete, add or rename an entry, grow or shrink
/// an array.
fn mutate(v: &mut Value, pool: &[Value], keys: &[String], rng: &mut SmallRng) {
    for _ in 0..rng.gen_range(1..=3) {
        let depth = rng.gen_range(0..4);
        edit(v, depth, pool, keys, rng);
    }
}

fn edit(v: &mut Value, depth: usize, pool: &[Value], keys: &[String], rng: &mut SmallRng) {
    let pick = |rng: &mut SmallRng| pool[rng.gen_range(0..pool.len())].clone();
    match v {
        Value::Object(m) if depth > 0 && !m.is_empty() => {
            let key = m.keys().nth(rng.gen_range(0..m.len())).cloned().expect("a key");
            edit(m.get_mut(&key).expect("present"), depth - 1, pool, keys, rng)
        }
        Value::Array(a) if depth > 0 && !a.is_empty() => {
            let i = rng.gen_range(0..a.len());
            edit(&mut a[i], depth - 1, pool, keys, rng)
        }
        Value::Object(m) => match rng.gen_range(0..4) {
            0 if !m.is_empty() => {
                let key = m.keys().nth(rng.gen_range(0..m.len())).cloned().expect("a key");
                m.remove(&key);
            }
            1 if !m.is_empty() => {
                let key = m.keys().nth(rng.gen_range(0..m.len())).cloned().expect("a key");
                let value = m.remove(&key).expect("present");
                m.insert(keys[rng.gen_range(0..keys.len())].clone(), value);
            }
            2 => _ = m.insert(keys[rng.gen_range(0..keys.len())].clone(), pick(rng)),
            _ => *v = pick(rng),
        },
        Value::Array(a) => match rng.gen_range(0..3) {
            0 if !a.is_empty() => _ = a.remove(rng.gen_range(0..a.len())),
            1 if !a.is_empty() => a.extend(std::iter::repeat_n(a[0].clone(), rng.gen_range(1..10))),
            _ => *v = pick(rng),
        },
        _ => *v = pick(rng),
    }
}

/// Byte-level damage to a serialized body: flips, cuts, duplicated spans (duplicate keys among them).
fn damage(bytes: &mut Vec<u8>, rng: &mut SmallRng) {
    const SYNTAX: &[u8] = b"{}[],:\"\\ 0e-";
    if bytes.is_empty() {
        return bytes.push(SYNTAX[rng.gen_range(0..SYNTAX.len())]);
    }
    match rng.gen_range(0..4) {
        0 => {
            let i = rng.gen_range(0..bytes.len());
            bytes[i] = rng.gen();
        }
        1 => bytes.truncate(rng.gen_range(0..bytes.len())),
        2 => {
            let a = rng.gen_range(0..bytes.len());
            let b = rng.gen_range(a..bytes.len().min(a + 40) + 1);
            let span = bytes[a..b].to_vec();
            let at = rng.gen_range(0..=bytes.len());
            bytes.splice(at..at, span);
        }
        _ => {
            let i = rng.gen_range(0..bytes.len());
            bytes.insert(i, SYNTAX[rng.gen_range(0..SYNTAX.len())]);
        }
    }
}

/// Writes a key a second time with another value just before one of its occurrences: JSON allows it, and a
/// `Value` tree keeps the last.
fn duplicate_key(bytes: &mut Vec<u8>, keys: &[String], pool: &[Value], rng: &mut SmallRng) {
    let key = &keys[rng.gen_range(0..keys.len())];
    let quoted = format!("\"{key}\":");
    let text = String::from_utf8_lossy(bytes).into_owned();
    let at: Vec<usize> = text.match_indices(&quoted).map(|(i, _)| i).collect();
    if let Some(&i) = at.get(rng.gen_range(0..at.len().max(1))) {
        let value = &pool[rng.gen_range(0..pool.len())];
        bytes.splice(i..i, format!("{quoted}{value},").into_bytes());
    }
}

/// A JSON document's objects as key lists, duplicates kept (a `Value` keeps only the last).
enum Keys {
    Object(Vec<(String, Keys)>),
    Array(Vec<Keys>),
    Scalar,
}

impl<'de> serde::Deserialize<'de> for Keys {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(KeysVisitor)
    }
}

struct KeysVisitor;

impl<'de> serde::de::Visitor<'de> for KeysVisitor {
    type Value = Keys;
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("JSON")
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Keys, A::Error> {
        let mut entries = Vec::new();
        while let Some(entry) = map.next_entry::<String, Keys>()? {
            entries.push(entry);
        }
        Ok(Keys::Object(entries))
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Keys, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element::<Keys>()? {
            items.push(item);
        }
        Ok(Keys::Array(items))
    }
    fn visit_bool<E>(self, _: bool) -> Result<Keys, E> {
        Ok(Keys::Scalar)
    }
    fn visit_i64<E>(self, _: i64) -> Result<Keys, E> {
        Ok(Keys::Scalar)
    }
    fn visit_u64<E>(self, _: u64) -> Result<Keys, E> {
        Ok(Keys::Scalar)
    }
    fn visit_f64<E>(self, _: f64) -> Result<Keys, E> {
        Ok(Keys::Scalar)
    }
    fn visit_str<E>(self, _: &str) -> Result<Keys, E> {
        Ok(Keys::Scalar)
    }
    fn visit_unit<E>(self) -> Result<Keys, E> {
        Ok(Keys::Scalar)
    }
}

/// The keys the server refuses twice: any key of the request object, a model field's within a row or the
/// context (other keys of a row are ignored, repeated or not).
fn repeated_key(doc: &Keys, enc: &Encoder) -> Option<String> {
    let Keys::Object(top) = doc else { return None };
    let twice = |entries: &[(String, Keys)], counts: &dyn Fn(&str) -> bool| {
        let mut seen = std::collections::HashSet::new();
        entries.iter().map(|(k, _)| k).find(|k| counts(k) && !seen.insert(k.as_str())).cloned()
    };
    let field = |k: &str| enc.field_index(k, 0).is_some();
    let rows = top.iter().filter(|(k, _)| matches!(k.as_str(), "instances" | "candidates" | "context"));
    let objects = rows.flat_map(|(_, v)| match v {
        Keys::Array(items) => items.iter().collect::<Vec<_>>(),
        other => vec![other],
    });
    twice(top, &|_| true)
        .or_else(|| objects.filter_map(|o| if let Keys::Object(e) = o { twice(e, &field) } else { None }).next())
}

/// The plain reading: the body as a `Value` tree (no key given twice), the request's shape checked, each row
/// (with the context's fields merged in) encoded by `Encoder::encode_json_object`.
fn plain(body: &[u8], enc: &Encoder, limits: DecodeLimits) -> Result<Encoded, String> {
    let v: Value = serde_json::from_slice(body).map_err(|e| e.to_string())?;
    let doc: Keys = serde_json::from_slice(body).map_err(|e| e.to_string())?;
    if let Some(key) = repeated_key(&doc, enc) {
        return Err(format!("'{key}' given twice"));
    }
    let top = v.as_object().ok_or("not an object")?;
    for (k, v) in top {
        match k.as_str() {
            "latency_budget_ms" | "timeout_ms" if !(v.is_null() || v.is_number()) => {
                return Err(format!("{k} is not a number"))
            }
            "tier" if !(v.is_null() || v.is_string()) => return Err("tier".into()),
            "instances" | "context" | "candidates" | "latency_budget_ms" | "timeout_ms" | "tier" => {}
            other => return Err(format!("unknown key {other}")),
        }
    }
    let (rows, context) = match (top.get("instances"), top.get("candidates"), top.get("context")) {
        (Some(rows), None, None) => (rows, None),
        (None, Some(rows), context) => (rows, context),
        _ => return Err("shape".into()),
    };
    let context = match context {
        None => None,
        Some(c) => Some(c.as_object().ok_or("context is not an object")?),
    };
    let rows = rows.as_array().ok_or("rows are not an array")?;
    if rows.is_empty() || rows.len() > limits.max_rows {
        return Err(format!("{} rows", rows.len()));
    }
    let mut ids = vec![0u32; rows.len() * enc.width()];
    for (row, out) in rows.iter().zip(ids.chunks_mut(enc.width())) {
        let mut row = row.as_object().ok_or("row is not an object")?.clone();
        for (k, v) in context.into_iter().flatten() {
            if enc.field_index(k, 0).is_some() && row.insert(k.clone(), v.clone()).is_some() {
                return Err(format!("{k} in both"));
            }
        }
        enc.encode_json_object(&row, limits.missing_as_oov, out).map_err(|e| e.to_string())?;
    }
    Ok(Encoded { ids, rows: rows.len() })
}

/// What every fuzz test draws from: the first 2,000 frappe_ctr test rows, the shipped encoder, the value pool.
fn corpus(data: &std::path::Path) -> (Vec<Row>, Encoder, Vec<Value>) {
    let spec = common::spec("frappe_ctr", data);
    let rows = read_instances(&spec, ensemble_serve::data::Split::Test, Some(2_000)).unwrap().objects;
    let pool = value_pool(&rows);
    (rows, common::shipped_encoder(), pool)
}

/// Keys a mutation may add or rename to: the rows' fields and `protocol`'s own.
fn field_and_protocol_keys(rows: &[Row], protocol: &[&str]) -> Vec<String> {
    rows[0].keys().cloned().chain(protocol.iter().map(|k| k.to_string())).collect()
}

/// A refusal must be a client error with a message.
fn assert_refusal(e: &ScoringError, body: &[u8]) {
    let shown = String::from_utf8_lossy(body);
    assert!((400..500).contains(&e.status()) && !e.to_string().is_empty(), "{e:?} for {shown}");
}

#[test]
fn v1_decoding_never_panics_and_accepts_only_what_the_plain_reading_accepts_alike() {
    let data = require_data!();
    let (rows, enc, pool) = corpus(&data);
    let keys = field_and_protocol_keys(&rows, &["instances", "context", "candidates", "tier", "timeout_ms", "nope"]);
    let mut rng = SmallRng::seed_from_u64(20261204);
    let (mut accepted, mut refused_alike, mut stricter) = (0, 0, Vec::new());
    for case in 0..CASES {
        let mut tree = body(&rows, &mut rng);
        let mut bytes = match case % 3 {
            0 => serde_json::to_vec(&tree).unwrap(),
            1 => {
                mutate(&mut tree, &pool, &keys, &mut rng);
                serde_json::to_vec(&tree).unwrap()
            }
            _ => {
                let mut b = serde_json::to_vec(&tree).unwrap();
                damage(&mut b, &mut rng);
                b
            }
        };
        if case % 3 == 1 && rng.gen_bool(0.2) {
            duplicate_key(&mut bytes, &keys, &pool, &mut rng);
        }
        let ours = catch_unwind(AssertUnwindSafe(|| decode_v1(&bytes, &enc, LIMITS)))
            .unwrap_or_else(|_| panic!("case {case} panicked on {}", String::from_utf8_lossy(&bytes)));
        match (ours, plain(&bytes, &enc, LIMITS)) {
            (Ok((got, _)), Ok(want)) => {
                assert_eq!(got, want, "case {case}: {}", String::from_utf8_lossy(&bytes));
                accepted += 1;
            }
            (Ok(_), Err(why)) => panic!("case {case} accepted what the plain reading refuses ({why}): {}", {
                String::from_utf8_lossy(&bytes)
            }),
            (Err(e), Ok(_)) => {
                assert_refusal(&e, &bytes);
                stricter.push(format!("{e}: {}", String::from_utf8_lossy(&bytes)));
            }
            (Err(e), Err(_)) => {
                assert_refusal(&e, &bytes);
                refused_alike += 1;
            }
        }
    }
    eprintln!("{accepted} accepted alike, {refused_alike} refused alike, {} refused only here", stricter.len());
    for s in stricter.iter().take(10) {
        eprintln!("  {}", &s[..s.len().min(300)]);
    }
    assert!(accepted > CASES / 4 && refused_alike > CASES / 4, "{accepted} / {refused_alike}: a weak corpus");
    assert!(stricter.is_empty(), "refused only by the one-pass decoder: {}", stricter.len());
}

/// A KServe v2 JSON body of `n` real rows: one BYTES input per field, the context's fields broadcast.
fn v2_body(rows: &[Row], rng: &mut SmallRng) -> Value {
    let n = rng.gen_range(1..=8).min(rows.len());
    let start = rng.gen_range(0..rows.len() - n);
    let group = &rows[start..start + n];
    let text = |v: &Value| v.as_str().map_or_else(|| v.to_string(), str::to_string);
    let inputs: Vec<Value> = group[0]
        .keys()
        .map(|field| {
            let broadcast = CONTEXT.contains(&field.as_str()) && rng.gen_bool(0.5);
            let data: Vec<String> = match broadcast {
                true => vec![text(&group[0][field])],
                false => group.iter().map(|r| text(&r[field])).collect(),
            };
            json!({"name": field, "shape": [data.len()], "datatype": "BYTES", "data": data})
        })
        .collect();
    json!({"id": "fuzz", "inputs": inputs})
}

#[test]
fn v2_decoding_never_panics_and_refuses_with_a_client_error() {
    let data = require_data!();
    let (rows, enc, pool) = corpus(&data);
    let protocol = ["inputs", "outputs", "name", "shape", "datatype", "data", "parameters", "id"];
    let keys = field_and_protocol_keys(&rows, &protocol);
    let mut rng = SmallRng::seed_from_u64(20261205);
    let (mut accepted, mut refused) = (0, 0);
    for case in 0..CASES {
        let mut tree = v2_body(&rows, &mut rng);
        if case % 3 != 0 {
            mutate(&mut tree, &pool, &keys, &mut rng);
        }
        let mut bytes = serde_json::to_vec(&tree).unwrap();
        if case % 3 == 2 {
            damage(&mut bytes, &mut rng);
        }
        match decode_v2_checked(&bytes, None, &enc, case) {
            true => accepted += 1,
            false => refused += 1,
        }
    }
    eprintln!("v2: {accepted} accepted, {refused} refused");
    assert!(accepted > CASES / 4 && refused > CASES / 4, "{accepted} / {refused}: a weak corpus");
}

/// Decodes a v2 body, which must not panic: accepted (true) with whole rows, or refused (false) with a 4xx.
fn decode_v2_checked(body: &[u8], header_len: Option<usize>, enc: &Encoder, case: usize) -> bool {
    let outcome = catch_unwind(AssertUnwindSafe(|| decode_v2(body, header_len, enc, LIMITS)))
        .unwrap_or_else(|_| panic!("case {case} panicked on {}", String::from_utf8_lossy(body)));
    match outcome {
        Ok((encoded, _, _)) => {
            assert!((1..=LIMITS.max_rows).contains(&encoded.rows), "case {case}: {} rows", encoded.rows);
            assert_eq!(encoded.ids.len(), encoded.rows * enc.width(), "case {case}");
            true
        }
        Err(e) => {
            assert_refusal(&e, body);
            false
        }
    }
}

/// KServe v2 JSON refuses a repeated key too: in `parameters`, in an input object, or an input named twice.
#[test]
fn v2_refuses_a_key_given_twice() {
    let enc = common::shipped_encoder();
    let input = |name: &str| format!(r#"{{"name": "{name}", "shape": [1], "datatype": "BYTES", "data": ["1"]}}"#);
    let inputs: Vec<String> = enc.fields.iter().map(|f| input(&f.spec.name)).collect();
    let body = |inputs: &[String], parameters: &str| format!(r#"{{"inputs": [{}]{parameters}}}"#, inputs.join(", "));
    let decode = |b: String| decode_v2(b.as_bytes(), None, &enc, LIMITS).map(|(e, o, _)| (e.rows, o.tier));
    assert_eq!(decode(body(&inputs, r#", "parameters": {"tier": "student"}"#)).unwrap(), (1, Some("student".into())));
    let twice = decode(body(&inputs, r#", "parameters": {"tier": "student", "tier": "ensemble"}"#)).unwrap_err();
    assert!(twice.to_string().contains("parameter 'tier' is given twice") && twice.status() == 422, "{twice:?}");
    let mut repeated = inputs.clone();
    repeated[0] = repeated[0].replacen(r#""shape": [1]"#, r#""shape": [1], "shape": [2]"#, 1);
    let err = decode(body(&repeated, "")).unwrap_err();
    assert!(err.to_string().contains("duplicate field `shape`"), "{err:?}");
    repeated[0] = input(&enc.fields[1].spec.name);
    let err = decode(body(&repeated, "")).unwrap_err();
    assert!(err.to_string().contains("is given twice"), "{err:?}");
}

/// A KServe v2 body with binary tensor data: the JSON header (`binary_data_size` per input) and each input's
/// length-prefixed BYTES elements after it.
fn v2_binary_body(rows: &[Row], rng: &mut SmallRng) -> (Value, Vec<u8>) {
    let mut header = v2_body(rows, rng);
    let mut blob = Vec::new();
    for input in header["inputs"].as_array_mut().expect("inputs") {
        let data = input.as_object_mut().expect("an input").remove("data").expect("data");
        let start = blob.len();
        for v in data.as_array().expect("values") {
            let text = v.as_str().expect("BYTES values");
            blob.extend((text.len() as u32).to_le_bytes());
            blob.extend(text.as_bytes());
        }
        input["parameters"] = json!({"binary_data_size": blob.len() - start});
    }
    (header, blob)
}

#[test]
fn v2_binary_decoding_never_panics_and_refuses_with_a_client_error() {
    let data = require_data!();
    let (rows, enc, pool) = corpus(&data);
    let keys: Vec<String> = ["binary_data_size", "parameters", "shape", "datatype", "name"].map(String::from).into();
    let mut rng = SmallRng::seed_from_u64(20261206);
    let (mut accepted, mut refused) = (0, 0);
    for case in 0..CASES {
        let (mut header, mut blob) = v2_binary_body(&rows, &mut rng);
        match case % 4 {
            0 => {}
            1 => mutate(&mut header, &pool, &keys, &mut rng),
            2 => damage(&mut blob, &mut rng),
            _ => {}
        }
        let mut body = serde_json::to_vec(&header).unwrap();
        let mut header_len = body.len();
        if case % 4 == 3 {
            header_len = header_len.saturating_add_signed(rng.gen_range(-3..=3));
        }
        body.extend(&blob);
        match decode_v2_checked(&body, Some(header_len), &enc, case) {
            true => accepted += 1,
            false => refused += 1,
        }
    }
    eprintln!("v2 binary: {accepted} accepted, {refused} refused");
    assert!(accepted > CASES / 4 && refused > CASES / 4, "{accepted} / {refused}: a weak corpus");
}
