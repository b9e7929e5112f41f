//! A hand-written acceptor for the metadata schema (`META-3`), so that the
//! common case, a valid document, costs no schema compilation: building
//! the JSON Schema validator compiles a dozen regular expressions and the
//! 2020-12 meta-schema, which was most of a short `pabi validate`.
//!
//! It may refuse a valid document (then the schema decides, and words any
//! error), but must never accept an invalid one. The test
//! `the_fast_path_never_accepts_what_the_schema_refuses` holds it to that
//! over hundreds of mutated documents, and to accepting every valid one.

use serde_json::{Map, Value};

/// Whether `doc` certainly matches `metadata.schema.json`.
pub(crate) fn clearly_valid(doc: &Value) -> bool {
    let Some(doc) = doc.as_object() else { return false };
    let required = ["abi", "name", "version", "profile", "functions", "capabilities"];
    let optional = ["description", "host_calls", "statuses"];
    required.iter().all(|key| doc.contains_key(*key))
        && only_keys(doc, &required, &optional)
        && doc.iter().all(|(key, value)| match key.as_str() {
            "abi" => value.as_str().is_some_and(is_abi_version),
            "name" => value.as_str().is_some_and(|s| chars(s) <= 64 && is_name(s, b'-')),
            "version" => value.as_str().is_some_and(|s| chars(s) <= 128 && is_semver(s)),
            "description" => is_text(value, 4096),
            "profile" => matches!(value.as_str(), Some("core" | "wasi")),
            "functions" => items(value, 1, 1024, is_function),
            "host_calls" => items(value, 0, 256, is_host_call),
            "capabilities" => items(value, 0, 256, is_capability) && all_unique(value),
            "statuses" => value.as_object().is_some_and(|statuses| {
                statuses.iter().all(|(code, text)| is_status_code(code) && is_text(text, 1024))
            }),
            _ => true, // `x-` extensions, checked by `only_keys`
        })
}

fn only_keys(object: &Map<String, Value>, required: &[&str], optional: &[&str]) -> bool {
    object
        .keys()
        .all(|key| required.contains(&key.as_str()) || optional.contains(&key.as_str()) || key.starts_with("x-"))
}

fn chars(s: &str) -> usize {
    s.chars().count()
}

fn is_text(value: &Value, max_chars: usize) -> bool {
    value.as_str().is_some_and(|s| chars(s) <= max_chars)
}

fn items(value: &Value, min: usize, max: usize, item: fn(&Value) -> bool) -> bool {
    value.as_array().is_some_and(|list| (min..=max).contains(&list.len()) && list.iter().all(item))
}

fn all_unique(value: &Value) -> bool {
    let list = value.as_array().map_or(&[][..], Vec::as_slice);
    let mut seen = std::collections::BTreeSet::new();
    list.iter().all(|item| item.as_str().is_some_and(|s| seen.insert(s)))
}

/// `^[a-z][a-z0-9<extra>]*$`.
fn is_name(s: &str, extra: u8) -> bool {
    let bytes = s.as_bytes();
    bytes.first().is_some_and(u8::is_ascii_lowercase)
        && bytes.iter().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == extra)
}

/// `0` or a digit string without a leading zero, of at most `max` digits
/// (`None`: no cap).
fn is_number(s: &str, max: Option<usize>) -> bool {
    let bytes = s.as_bytes();
    !bytes.is_empty()
        && bytes.iter().all(u8::is_ascii_digit)
        && (bytes == b"0" || bytes[0] != b'0')
        && max.is_none_or(|max| bytes.len() <= max)
}

fn is_abi_version(s: &str) -> bool {
    s.split_once('.').is_some_and(|(major, minor)| is_number(major, Some(5)) && is_number(minor, Some(5)))
}

/// `MAJOR.MINOR.PATCH(-PRE)?(+BUILD)?` with `PRE` and `BUILD` of
/// `[0-9A-Za-z.-]+`.
fn is_semver(s: &str) -> bool {
    let tag = |t: &str| !t.is_empty() && t.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-');
    let (rest, build) = match s.split_once('+') {
        Some((rest, build)) => (rest, Some(build)),
        None => (s, None),
    };
    let (core, pre) = match rest.split_once('-') {
        Some((core, pre)) => (core, Some(pre)),
        None => (rest, None),
    };
    let parts: Vec<&str> = core.split('.').collect();
    parts.len() == 3 && parts.iter().all(|p| is_number(p, None)) && pre.is_none_or(tag) && build.is_none_or(tag)
}

fn is_media_type(value: &Value) -> bool {
    let Some(s) = value.as_str() else { return false };
    let token = |t: &str| {
        !t.is_empty() && t.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"!#$&^_.+-".contains(&b))
    };
    let (essence, parameters) = match s.split_once(';') {
        Some((essence, parameters)) => (essence, Some(parameters)),
        None => (s, None),
    };
    chars(s) <= 255
        && essence.split_once('/').is_some_and(|(kind, sub)| token(kind) && token(sub))
        && parameters.is_none_or(|p| !p.contains(['\n', '\r', '\u{2028}', '\u{2029}']))
}

fn is_function(value: &Value) -> bool {
    let Some(function) = value.as_object() else { return false };
    only_keys(function, &["name"], &["summary", "input", "output", "deterministic"])
        && function.get("name").and_then(Value::as_str).is_some_and(|s| chars(s) <= 64 && is_name(s, b'_'))
        && function.iter().all(|(key, value)| match key.as_str() {
            "summary" => is_text(value, 1024),
            "input" | "output" => is_media_type(value),
            "deterministic" => value.is_boolean(),
            _ => true,
        })
}

fn is_host_call(value: &Value) -> bool {
    let Some(call) = value.as_object() else { return false };
    only_keys(call, &["name", "required"], &["summary", "request", "reply"])
        && call.get("name").and_then(Value::as_str).is_some_and(crate::is_valid_host_call_name)
        && call.get("required").is_some_and(Value::is_boolean)
        && call.iter().all(|(key, value)| match key.as_str() {
            "summary" => is_text(value, 1024),
            "request" | "reply" => is_media_type(value),
            _ => true,
        })
}

fn is_capability(value: &Value) -> bool {
    let Some(s) = value.as_str() else { return false };
    if s == "clock" || s == "random" {
        return true;
    }
    if let Some(name) = s.strip_prefix("env:") {
        let bytes = name.as_bytes();
        return chars(s) <= 132
            && bytes.first().is_some_and(|b| b.is_ascii_alphabetic() || *b == b'_')
            && bytes.iter().all(|b| b.is_ascii_alphanumeric() || *b == b'_');
    }
    let Some(path) = s.strip_prefix("fs:/") else { return false };
    let Some(path) = path.strip_suffix(":ro").or_else(|| path.strip_suffix(":rw")) else { return false };
    chars(s) <= 1030 && !path.contains([':', '\0', '\n'])
}

/// `64` … `127`.
fn is_status_code(code: &str) -> bool {
    is_number(code, Some(3)) && code.parse::<u32>().is_ok_and(|n| (64..=127).contains(&n))
}
