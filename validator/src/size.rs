//! What compiling a module will cost, measured from its section headers
//! alone (`LIM-12`): no body is decoded and nothing is validated, so a host
//! can refuse a compile bomb before it pays for anything.

use wasmparser::{Parser, Payload};

/// The sizes a compile budget is checked against.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct CodeSize {
    /// The module's length in bytes.
    pub module_bytes: u64,
    /// Functions the module defines (its function section's count; imports
    /// are not compiled and do not count).
    pub functions: u64,
    /// The largest function body: its index among the defined functions and
    /// its size in bytes.
    pub largest_body: Option<(u32, u64)>,
}

/// Measures `wasm` from its section headers and the code section's body
/// sizes. A module that does not parse is measured as far as it parses: the
/// validator reports what is wrong with it.
pub fn code_size(wasm: &[u8]) -> CodeSize {
    let mut size = CodeSize { module_bytes: wasm.len() as u64, ..CodeSize::default() };
    let mut body_index = 0u32;
    for payload in Parser::new(0).parse_all(wasm) {
        match payload {
            Ok(Payload::FunctionSection(reader)) => size.functions = u64::from(reader.count()),
            Ok(Payload::CodeSectionStart { count, .. }) => {
                // A code section that claims more bodies than the function
                // section declares is invalid, but must not slip past the
                // cap before validation says so.
                size.functions = size.functions.max(u64::from(count));
            }
            Ok(Payload::CodeSectionEntry(body)) => {
                let bytes = body.range().len() as u64;
                if size.largest_body.is_none_or(|(_, largest)| bytes > largest) {
                    size.largest_body = Some((body_index, bytes));
                }
                body_index += 1;
            }
            Ok(Payload::End(_)) | Err(_) => break,
            Ok(_) => {}
        }
    }
    size
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_defined_functions_and_finds_the_largest_body() {
        let wasm = wat::parse_str(
            r#"(module
                (import "pabi" "log" (func (param i32 i32 i32) (result i32)))
                (func nop)
                (func nop nop nop nop nop nop nop nop)
                (func))"#,
        )
        .unwrap();
        let size = code_size(&wasm);
        assert_eq!(size.module_bytes, wasm.len() as u64);
        assert_eq!(size.functions, 3);
        // The second defined function: 8 nops, `end`, the locals count.
        assert_eq!(size.largest_body, Some((1, 10)));
    }

    #[test]
    fn a_module_that_does_not_parse_is_measured_as_far_as_it_goes() {
        assert_eq!(code_size(b"\0asm\x01\0\0\0\x03\x02"), CodeSize { module_bytes: 10, ..CodeSize::default() });
        assert_eq!(code_size(b"").functions, 0);
    }
}
