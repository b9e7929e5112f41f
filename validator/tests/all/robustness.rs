//! No panic on any bytes: random edits of good plugins, and (when fetched)
//! every invalid or malformed module of the WebAssembly spec testsuite.

use proptest::prelude::*;

fn bases() -> Vec<Vec<u8>> {
    ["core", "wasi", "lifecycle"].iter().map(|n| pabi_fixtures::good(n).unwrap()).collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn edited_plugins_never_panic(data in proptest::collection::vec(any::<u8>(), 0..96)) {
        let wasm = pabi_fixtures::module_from_fuzz_input(&data, &bases());
        let report = pabi_validator::validate(&wasm);
        // A module that cannot be decoded must still be reported, never
        // silently passed.
        if report.module.is_none() {
            prop_assert!(report.has_errors());
        }
    }
}

#[test]
fn truncations_of_a_good_plugin_are_reported_unless_still_valid_wasm() {
    let good = pabi_fixtures::good("core").unwrap();
    let mut reported = 0;
    for len in 0..good.len() {
        let prefix = &good[..len];
        let report = pabi_validator::validate(prefix);
        if wasmparser::Validator::new().validate_all(prefix).is_err() {
            assert!(report.has_errors(), "invalid prefix of {len} bytes passed");
            reported += 1;
        }
    }
    // Only cuts at section boundaries can leave valid wasm.
    assert!(reported + 8 >= good.len(), "{reported} of {} prefixes reported", good.len());
}
