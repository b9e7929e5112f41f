//! The I-JSON rules of `META-2` that a JSON parser does not enforce by
//! itself: nesting depth and duplicate member names. (serde_json already
//! refuses lone surrogates, numbers past binary64 and a byte-order mark.)

use std::collections::HashSet;
use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};

/// The deepest nesting of arrays and objects `META-2` allows; the document
/// object itself is level 1.
pub const MAX_METADATA_DEPTH: usize = 64;

/// Why a JSON text is not I-JSON within the depth limit.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IJsonError {
    #[error("arrays and objects nest more than {MAX_METADATA_DEPTH} levels deep")]
    TooDeep,
    #[error("member name `{0}` appears twice in one object")]
    DuplicateName(String),
    #[error("{0}")]
    NotJson(String),
}

/// The deepest nesting of `[` and `{` outside strings. A scan, not a
/// parse, so that no recursion happens before the depth is known to be
/// safe.
fn depth(text: &str) -> usize {
    let (mut depth, mut deepest, mut in_string, mut escaped) = (0usize, 0usize, false, false);
    for byte in text.bytes() {
        if in_string {
            match byte {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match byte {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                deepest = deepest.max(depth);
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    deepest
}

/// Checks depth first (so the parse below cannot recurse too far), then
/// parses once more to find a member name used twice in one object.
pub fn check(text: &str) -> Result<(), IJsonError> {
    if depth(text) > MAX_METADATA_DEPTH {
        return Err(IJsonError::TooDeep);
    }
    let mut deserializer = serde_json::Deserializer::from_str(text);
    match NoDuplicates::deserialize(&mut deserializer) {
        Ok(_) => Ok(()),
        Err(e) => match e.to_string().strip_prefix(DUPLICATE) {
            Some(rest) => Err(IJsonError::DuplicateName(rest.split(" at line").next().unwrap_or(rest).to_string())),
            None => Err(IJsonError::NotJson(e.to_string())),
        },
    }
}

const DUPLICATE: &str = "duplicate member name: ";

/// Any JSON value, refusing an object that names a member twice.
struct NoDuplicates;

impl<'de> Deserialize<'de> for NoDuplicates {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(NoDuplicatesVisitor)
    }
}

struct NoDuplicatesVisitor;

impl<'de> Visitor<'de> for NoDuplicatesVisitor {
    type Value = NoDuplicates;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<NoDuplicates, E> {
        Ok(NoDuplicates)
    }
    fn visit_i64<E>(self, _: i64) -> Result<NoDuplicates, E> {
        Ok(NoDuplicates)
    }
    fn visit_u64<E>(self, _: u64) -> Result<NoDuplicates, E> {
        Ok(NoDuplicates)
    }
    fn visit_f64<E>(self, _: f64) -> Result<NoDuplicates, E> {
        Ok(NoDuplicates)
    }
    fn visit_str<E>(self, _: &str) -> Result<NoDuplicates, E> {
        Ok(NoDuplicates)
    }
    fn visit_unit<E>(self) -> Result<NoDuplicates, E> {
        Ok(NoDuplicates)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<NoDuplicates, A::Error> {
        while seq.next_element::<NoDuplicates>()?.is_some() {}
        Ok(NoDuplicates)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<NoDuplicates, A::Error> {
        let mut names = HashSet::new();
        while let Some(name) = map.next_key::<String>()? {
            if !names.insert(name.clone()) {
                return Err(de::Error::custom(format!("{DUPLICATE}{name}")));
            }
            map.next_value::<NoDuplicates>()?;
        }
        Ok(NoDuplicates)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nested(levels: usize) -> String {
        format!("{}{}", "[".repeat(levels), "]".repeat(levels))
    }

    #[test]
    fn depth_counts_the_outermost_value_as_level_one_and_skips_strings() {
        assert_eq!(check(&nested(64)), Ok(()));
        assert_eq!(check(&nested(65)), Err(IJsonError::TooDeep));
        assert_eq!(check(&nested(30_000)), Err(IJsonError::TooDeep), "refused without recursing");
        assert_eq!(check(r#"{"a":"[[[[\"{{{{"}"#), Ok(()));
    }

    #[test]
    fn a_name_twice_in_one_object_is_refused_at_any_depth() {
        assert_eq!(check(r#"{"abi":"1.0","abi":"2.0"}"#), Err(IJsonError::DuplicateName("abi".into())));
        assert_eq!(check(r#"{"x-a":[{"k":1,"k":2}]}"#), Err(IJsonError::DuplicateName("k".into())));
        assert_eq!(check(r#"{"a":{"k":1},"b":{"k":2}}"#), Ok(()), "the same name in two objects is fine");
    }

    #[test]
    fn what_serde_json_refuses_stays_refused() {
        for text in ["{\"a\":1e400}", "{\"a\":\"\\ud800\"}", "\u{feff}{}", "{"] {
            assert!(matches!(check(text), Err(IJsonError::NotJson(_))), "{text}");
        }
    }
}
