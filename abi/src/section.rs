use std::ops::Range;

use wasmparser::{Parser, Payload};

use crate::{Metadata, MetadataError};

/// The custom section that holds the metadata (`META-1`).
pub const METADATA_SECTION: &str = "pabi";

/// A custom section found in a module.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CustomSection {
    /// The whole section, id byte included.
    pub section: Range<usize>,
    /// The payload after the name.
    pub data: Range<usize>,
}

/// Finds every custom section called `name`, without validating the module.
/// Fails with the parser's message when the module cannot be decoded.
pub fn find_custom_sections(wasm: &[u8], name: &str) -> Result<Vec<CustomSection>, wasmparser::BinaryReaderError> {
    let mut found = Vec::new();
    for payload in Parser::new(0).parse_all(wasm) {
        match payload? {
            Payload::CustomSection(reader) if reader.name() == name => {
                let data = reader.data_offset()..reader.data_offset() + reader.data().len();
                let start = section_start(wasm, reader.range().start);
                found.push(CustomSection { section: start..data.end, data });
            }
            _ => {}
        }
    }
    Ok(found)
}

/// `range().start` of a custom section reader is the start of its contents;
/// walk back over the LEB128 size and the id byte.
fn section_start(wasm: &[u8], contents_start: usize) -> usize {
    let mut pos = contents_start - 1;
    // The size's last byte has no continuation bit; earlier bytes all do.
    while pos > 0 && wasm[pos - 1] & 0x80 != 0 {
        pos -= 1;
    }
    pos - 1
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EmbedError {
    #[error("the input is not a WebAssembly module: {0}")]
    NotWasm(String),
    #[error("the metadata is invalid [{}]", .0.clause())]
    Metadata(#[source] MetadataError),
}

/// Returns `wasm` with its `pabi` sections replaced by one holding `json`.
/// Every other byte is kept as it was, so debug info and names survive.
pub fn embed_metadata(wasm: &[u8], json: &[u8]) -> Result<Vec<u8>, EmbedError> {
    Metadata::parse(json).map_err(EmbedError::Metadata)?;
    if !wasm.starts_with(b"\0asm") {
        return Err(EmbedError::NotWasm("missing the `\\0asm` header".into()));
    }
    let old = find_custom_sections(wasm, crate::METADATA_SECTION).map_err(|e| EmbedError::NotWasm(e.to_string()))?;
    let mut out = Vec::with_capacity(wasm.len() + json.len() + 16);
    let mut kept_from = 0;
    for section in &old {
        out.extend_from_slice(&wasm[kept_from..section.section.start]);
        kept_from = section.section.end;
    }
    out.extend_from_slice(&wasm[kept_from..]);
    out.extend_from_slice(&encode_custom_section(crate::METADATA_SECTION, json));
    Ok(out)
}

/// The bytes of a custom section: id 0, size, name, payload.
pub fn encode_custom_section(name: &str, data: &[u8]) -> Vec<u8> {
    use wasm_encoder::{Encode, Section};
    let section = wasm_encoder::CustomSection { name: name.into(), data: data.into() };
    let mut out = vec![section.id()];
    section.encode(&mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const EMPTY_MODULE: &[u8] = b"\0asm\x01\0\0\0";
    const META: &[u8] = br#"{"abi":"1.0","name":"e","version":"1.0.0","profile":"core","functions":[{"name":"echo"}],"capabilities":[]}"#;

    #[test]
    fn embeds_once_and_replaces() {
        let once = embed_metadata(EMPTY_MODULE, META).unwrap();
        let twice = embed_metadata(&once, META).unwrap();
        assert_eq!(once, twice);
        let found = find_custom_sections(&twice, "pabi").unwrap();
        assert_eq!(found.len(), 1);
        assert_eq!(&twice[found[0].data.clone()], META);
        assert_eq!(found[0].section.start, EMPTY_MODULE.len());
    }

    #[test]
    fn keeps_a_section_with_a_long_size() {
        let big = format!(
            r#"{{"abi":"1.0","name":"e","version":"1.0.0","description":"{}","profile":"core","functions":[{{"name":"echo"}}],"capabilities":[]}}"#,
            "x".repeat(300)
        );
        let out = embed_metadata(EMPTY_MODULE, big.as_bytes()).unwrap();
        let again = embed_metadata(&out, META).unwrap();
        assert_eq!(again, embed_metadata(EMPTY_MODULE, META).unwrap());
    }

    #[test]
    fn refuses_bad_inputs() {
        assert!(matches!(embed_metadata(b"nope", META), Err(EmbedError::NotWasm(_))));
        assert!(matches!(embed_metadata(EMPTY_MODULE, b"{}"), Err(EmbedError::Metadata(_))));
    }

    #[test]
    fn encodes_sizes_as_leb128() {
        assert_eq!(encode_custom_section("a", b""), [0, 2, 1, b'a']);
        // 1 + 1 + 126 = 128 bytes of contents: a two-byte size.
        let long = encode_custom_section("a", &[7; 126]);
        assert_eq!(long[..4], [0, 0x80, 0x01, 1]);
        assert_eq!(long.len(), 3 + 128);
    }
}
