//! The validator must never panic or hang on any bytes. The input shaping
//! lives in `pabi-fixtures`, shared with the proptest.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;

fn bases() -> &'static [Vec<u8>] {
    static BASES: OnceLock<Vec<Vec<u8>>> = OnceLock::new();
    BASES.get_or_init(|| {
        ["core", "wasi", "lifecycle"]
            .iter()
            .map(|name| pabi_fixtures::good(name).expect("good fixtures compile"))
            .collect()
    })
}

fuzz_target!(|data: &[u8]| {
    let wasm = pabi_fixtures::module_from_fuzz_input(data, bases());
    let report = pabi_validator::validate(&wasm);
    if report.shape.is_none() {
        assert!(report.has_errors(), "an undecodable module must be reported");
    }
});
