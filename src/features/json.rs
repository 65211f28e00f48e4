//! One JSON value → a field's ids, through the same functions as the CSV path: the visitor the server's
//! one-pass decode drives over request bytes, and [`FieldEncoder::encode_json`] over a parsed value.
use std::fmt;

use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

use super::{BadValue, FieldEncoder, FieldKind};

/// One field's JSON value → its ids in `out`, through the same functions as the CSV path. The inner
/// `Err` is a value the field cannot take (the caller names the row and field); the outer one is serde's.
pub struct ValueSeed<'f, 'o> {
    pub field: &'f FieldEncoder,
    pub out: &'o mut [u32],
}

impl<'de> DeserializeSeed<'de> for ValueSeed<'_, '_> {
    type Value = Result<(), BadValue>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for ValueSeed<'_, '_> {
    type Value = Result<(), BadValue>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a field value")
    }
    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(self.field.encode_text(v, self.out))
    }
    fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Self::Value, E> {
        match (i64::try_from(v), &self.field.spec.kind) {
            (Ok(i), FieldKind::Categorical) => {
                self.out[0] = self.field.vocab.int_id(i);
                Ok(Ok(()))
            }
            _ => self.visit_str(itoa::Buffer::new().format(v)),
        }
    }
    fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Self::Value, E> {
        if matches!(self.field.spec.kind, FieldKind::Categorical) {
            self.out[0] = self.field.vocab.int_id(v);
            return Ok(Ok(()));
        }
        self.visit_str(itoa::Buffer::new().format(v))
    }
    fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Self::Value, E> {
        self.visit_str(&v.to_string())
    }
    fn visit_bool<E: serde::de::Error>(self, v: bool) -> Result<Self::Value, E> {
        self.visit_str(if v { "true" } else { "false" })
    }
    fn visit_unit<E: serde::de::Error>(self) -> Result<Self::Value, E> {
        self.visit_str("")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(Err(BadValue::Object))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        if !matches!(self.field.spec.kind, FieldKind::Sequence { .. }) {
            while seq.next_element::<IgnoredAny>()?.is_some() {}
            return Ok(Err(BadValue::Array));
        }
        self.out.fill(0);
        let mut verdict = Ok(());
        let mut slot = 0;
        while let Some(token) = seq.next_element::<Token>()? {
            match token {
                Token::Text(t) if slot < self.out.len() => {
                    self.out[slot] = self.field.vocab.id(&t);
                    slot += 1;
                }
                Token::Text(_) => {}
                Token::Nested(what) => verdict = verdict.and(Err(BadValue::Nested(what))),
            }
        }
        Ok(verdict)
    }
}

/// One element of a sequence field's array, as text (like a CSV token), or the kind of nested value it was.
enum Token<'de> {
    Text(std::borrow::Cow<'de, str>),
    Nested(&'static str),
}

impl<'de> serde::Deserialize<'de> for Token<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(TokenVisitor)
    }
}

struct TokenVisitor;

impl<'de> Visitor<'de> for TokenVisitor {
    type Value = Token<'de>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a token")
    }
    fn visit_borrowed_str<E: serde::de::Error>(self, v: &'de str) -> Result<Token<'de>, E> {
        Ok(Token::Text(v.into()))
    }
    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Token<'de>, E> {
        Ok(Token::Text(v.to_string().into()))
    }
    fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Token<'de>, E> {
        Ok(Token::Text(v.to_string().into()))
    }
    fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Token<'de>, E> {
        Ok(Token::Text(v.to_string().into()))
    }
    fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Token<'de>, E> {
        Ok(Token::Text(v.to_string().into()))
    }
    fn visit_bool<E: serde::de::Error>(self, v: bool) -> Result<Token<'de>, E> {
        Ok(Token::Text(v.to_string().into()))
    }
    fn visit_unit<E: serde::de::Error>(self) -> Result<Token<'de>, E> {
        Ok(Token::Text("".into()))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Token<'de>, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Token::Nested("an array"))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Token<'de>, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(Token::Nested("an object"))
    }
}
