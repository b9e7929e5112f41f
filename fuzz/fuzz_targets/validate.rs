//! The validator must never panic or hang on any bytes. The input shaping
//! lives in `pabi-fixtures`, shared with the proptest.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let wasm = pabi_fixtures::module_from_fuzz_input(data, pabi_fixtures::fuzz_bases());
    let report = pabi_validator::validate(&wasm);
    if report.shape.is_none() {
        assert!(report.has_errors(), "an undecodable module must be reported");
    }
});
