//! The envelope (`VER-7`): the part of a plugin that no version of the ABI
//! changes, read before anything that belongs to a version (`VER-8`).

use wasmparser::{Parser, Payload, TypeRef};

use crate::{AbiVersion, Clause, VersionParseError, METADATA_SECTION};

/// Why the envelope of a plugin could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EnvelopeError {
    #[error("the module's sections cannot be read: {0}")]
    Malformed(String),
    #[error("the `pabi` metadata section is missing")]
    NoSection,
    #[error("{0} `pabi` metadata sections; exactly one is allowed")]
    SeveralSections(usize),
    #[error("metadata is {0} bytes, more than the {max}-byte limit", max = crate::MAX_METADATA_BYTES)]
    TooLarge(usize),
    #[error("metadata is not UTF-8")]
    NotUtf8,
    /// Not JSON, or JSON that breaks a rule of I-JSON or the depth limit.
    #[error("metadata is not JSON: {0}")]
    NotJson(String),
    /// JSON whose value is not an object.
    #[error("metadata is not a JSON object but {0}")]
    NotAnObject(&'static str),
    #[error("metadata has no member `abi`")]
    NoAbi,
    #[error("metadata `abi` is {0}, not a string")]
    AbiNotString(&'static str),
    #[error("metadata `abi`: {0}")]
    BadAbi(#[from] VersionParseError),
}

impl EnvelopeError {
    /// The clause an unreadable envelope breaks (`VER-8`, step 2): the
    /// section's count is `META-1`'s; its bytes, JSON and top-level shape
    /// are `META-2`'s; the `abi` member is `VER-1`'s.
    pub fn clause(&self) -> Clause {
        match self {
            EnvelopeError::Malformed(_) => Clause::Mod1,
            EnvelopeError::NoSection | EnvelopeError::SeveralSections(_) => Clause::Meta1,
            EnvelopeError::TooLarge(_)
            | EnvelopeError::NotUtf8
            | EnvelopeError::NotJson(_)
            | EnvelopeError::NotAnObject(_) => Clause::Meta2,
            EnvelopeError::NoAbi | EnvelopeError::AbiNotString(_) | EnvelopeError::BadAbi(_) => Clause::Ver1,
        }
    }
}

/// The ABI version a plugin declares, read from its envelope alone: the
/// module is walked section by section without validation, and of the
/// metadata only `abi` is read, so that a plugin of any version, with any
/// fields, features or imports, gets as far as the version comparison.
pub fn read_envelope(wasm: &[u8]) -> Result<AbiVersion, EnvelopeError> {
    let sections = crate::find_custom_sections(wasm, METADATA_SECTION)
        .map_err(|e| EnvelopeError::Malformed(e.message().to_string()))?;
    let section = match sections.as_slice() {
        [] => return Err(EnvelopeError::NoSection),
        [one] => one,
        several => return Err(EnvelopeError::SeveralSections(several.len())),
    };
    // The size first: what follows parses the document, and a section of any
    // size must not cost the host more than the 64 KiB the ABI allows.
    if section.data.len() > crate::MAX_METADATA_BYTES {
        return Err(EnvelopeError::TooLarge(section.data.len()));
    }
    let text = std::str::from_utf8(&wasm[section.data.clone()]).map_err(|_| EnvelopeError::NotUtf8)?;
    // The I-JSON rules guard the parse (depth) and make `abi` unambiguous
    // (no second `abi` member).
    crate::ijson::check(text).map_err(|e| EnvelopeError::NotJson(e.to_string()))?;
    let value: serde_json::Value = serde_json::from_str(text).map_err(|e| EnvelopeError::NotJson(e.to_string()))?;
    let object = value.as_object().ok_or_else(|| EnvelopeError::NotAnObject(json_type(&value)))?;
    let abi = object.get("abi").ok_or(EnvelopeError::NoAbi)?;
    let abi = abi.as_str().ok_or_else(|| EnvelopeError::AbiNotString(json_type(abi)))?;
    Ok(abi.parse::<AbiVersion>()?)
}

/// A JSON value's type, as a message names it.
fn json_type(value: &serde_json::Value) -> &'static str {
    match value {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}

/// Every function import of the module as (module, name), read from the
/// import section without validation: enough to name the imports a host
/// lacks in a `VERSION_MISMATCH` (`VER-4`).
pub fn function_imports(wasm: &[u8]) -> Vec<(String, String)> {
    let mut imports = Vec::new();
    for payload in Parser::new(0).parse_all(wasm) {
        match payload {
            Ok(Payload::ImportSection(reader)) => {
                for import in reader.into_imports().flatten() {
                    if matches!(import.ty, TypeRef::Func(_)) {
                        imports.push((import.module.to_string(), import.name.to_string()));
                    }
                }
            }
            Ok(Payload::CodeSectionStart { .. }) | Ok(Payload::End(_)) | Err(_) => break,
            Ok(_) => {}
        }
    }
    imports
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_metadata(json: &str) -> Vec<u8> {
        let mut wasm = b"\0asm\x01\0\0\0".to_vec();
        wasm.extend(crate::encode_custom_section(METADATA_SECTION, json.as_bytes()));
        wasm
    }

    #[test]
    fn only_abi_is_read() {
        let future = with_metadata(r#"{"abi":"1.7","host_calls":[{"x":1}],"capabilities":["net:*"]}"#);
        assert_eq!(read_envelope(&future), Ok(AbiVersion::new(1, 7)));
        let reshaped = with_metadata(r#"{"abi":"2.0","plugin":{"name":"p"}}"#);
        assert_eq!(read_envelope(&reshaped), Ok(AbiVersion::new(2, 0)));
    }

    #[test]
    fn an_unreadable_envelope_names_its_clause() {
        let clause = |wasm: &[u8]| read_envelope(wasm).unwrap_err().clause();
        assert_eq!(clause(b"\0asm\x01\0\0\0"), Clause::Meta1);
        assert_eq!(clause(&with_metadata("[1]")), Clause::Meta2);
        assert_eq!(clause(&with_metadata("\u{feff}{\"abi\":\"1.0\"}")), Clause::Meta2);
        assert_eq!(clause(&with_metadata(r#"{"abi":"1.0","abi":"9.0"}"#)), Clause::Meta2);
        assert_eq!(clause(&with_metadata(r#"{"version":"1.0"}"#)), Clause::Ver1);
        assert_eq!(clause(&with_metadata(r#"{"abi":"1.0.0"}"#)), Clause::Ver1);
        assert_eq!(clause(&with_metadata(r#"{"abi":1}"#)), Clause::Ver1);
        assert_eq!(clause(&with_metadata(r#"{"abi":"1.700000"}"#)), Clause::Ver1);
        assert_eq!(read_envelope(&with_metadata("[1]")), Err(EnvelopeError::NotAnObject("an array")));
        assert_eq!(read_envelope(&with_metadata(r#"{"abi":1}"#)), Err(EnvelopeError::AbiNotString("a number")));
        assert_eq!(read_envelope(&with_metadata(r#"{"name":"x"}"#)), Err(EnvelopeError::NoAbi));
        let deep = format!(r#"{{"abi":"2.0","x":{}{}}}"#, "[".repeat(64), "]".repeat(64));
        assert_eq!(clause(&with_metadata(&deep)), Clause::Meta2, "65 levels, the object being level 1");
        let huge = format!(r#"{{"abi":"1.0","x-pad":"{}"}}"#, "a".repeat(crate::MAX_METADATA_BYTES));
        assert_eq!(read_envelope(&with_metadata(&huge)).unwrap_err(), EnvelopeError::TooLarge(huge.len()));
    }
}
