//! The `/v1/score` body: `instances`, or `context` + `candidates`, with the request's options.
use std::fmt;

use serde::de::{DeserializeSeed, Deserializer, MapAccess, Visitor};

use super::{utf8_body, DecodeLimits, Encoded, RowsBuilder};
use crate::features::Encoder;
use crate::serve::error::ScoringError;

/// Options a body may carry beside its rows.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BodyOptions {
    pub latency_budget_ms: Option<f64>,
    pub tier: Option<String>,
    pub timeout_ms: Option<f64>,
}

const KEYS: &[&str] = &["instances", "context", "candidates", "latency_budget_ms", "tier", "timeout_ms"];

/// Decodes and encodes a `/v1/score` body in one pass.
pub fn decode_v1(body: &[u8], enc: &Encoder, limits: DecodeLimits) -> Result<(Encoded, BodyOptions), ScoringError> {
    let mut builder = RowsBuilder::new(enc, "instances");
    let mut de = serde_json::Deserializer::from_str(utf8_body(body)?);
    let parsed = BodySeed { builder: &mut builder, limits }.deserialize(&mut de).and_then(|o| de.end().map(|_| o));
    let (options, seen) = parsed.map_err(|e| builder.take_failure(&e))?;
    match (seen.instances, seen.candidates, seen.context) {
        (true, true, _) => return Err(bad(BOTH)),
        (true, false, true) => return Err(bad("'context' goes with 'candidates', not 'instances'")),
        (false, false, true) => return Err(bad("'context' needs 'candidates'")),
        (false, false, false) => return Err(bad("missing field `instances` (or `context` + `candidates`)")),
        _ => {}
    }
    Ok((builder.finish(limits.missing_as_oov)?, options))
}

const BOTH: &str = "give either 'instances' or 'context' + 'candidates', not both (nor either twice)";

fn bad(msg: &str) -> ScoringError {
    ScoringError::InvalidRequest(msg.to_string())
}

#[derive(Default)]
struct Seen {
    instances: bool,
    candidates: bool,
    context: bool,
}

/// An option's value (`Some(None)`: given as null); one given twice is refused.
fn once<'de, T: serde::Deserialize<'de>, A: MapAccess<'de>>(
    slot: &mut Option<Option<T>>,
    name: &'static str,
    map: &mut A,
) -> Result<(), A::Error> {
    if slot.is_some() {
        return Err(serde::de::Error::duplicate_field(name));
    }
    *slot = Some(map.next_value()?);
    Ok(())
}

struct BodySeed<'b, 'e> {
    builder: &'b mut RowsBuilder<'e>,
    limits: DecodeLimits,
}

impl<'de> DeserializeSeed<'de> for BodySeed<'_, '_> {
    type Value = (BodyOptions, Seen);
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for BodySeed<'_, '_> {
    type Value = (BodyOptions, Seen);
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a scoring request object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut seen = Seen::default();
        let (mut budget, mut tier, mut timeout) = (None, None, None);
        while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
            match key.as_ref() {
                "instances" | "candidates" if seen.instances || seen.candidates => {
                    return Err(self.builder.fail(bad(BOTH)));
                }
                "instances" => {
                    seen.instances = true;
                    map.next_value_seed(self.builder.rows_seed(self.limits.max_rows))?;
                }
                "candidates" => {
                    seen.candidates = true;
                    self.builder.what = "candidates";
                    map.next_value_seed(self.builder.rows_seed(self.limits.max_rows))?;
                }
                "context" if seen.context => return Err(serde::de::Error::duplicate_field("context")),
                "context" => {
                    seen.context = true;
                    map.next_value_seed(self.builder.context_seed())?;
                }
                "latency_budget_ms" => once(&mut budget, "latency_budget_ms", &mut map)?,
                "tier" => once(&mut tier, "tier", &mut map)?,
                "timeout_ms" => once(&mut timeout, "timeout_ms", &mut map)?,
                other => return Err(serde::de::Error::unknown_field(other, KEYS)),
            }
        }
        let options =
            BodyOptions { latency_budget_ms: budget.flatten(), tier: tier.flatten(), timeout_ms: timeout.flatten() };
        Ok((options, seen))
    }
}
