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
        if report.shape.is_none() {
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

#[test]
fn spec_testsuite_invalid_and_malformed_modules_are_rejected() {
    let modules = pabi_fixtures::spec_testsuite_rejects();
    assert!(modules.len() > 1000, "only {} modules; is the testsuite crate complete?", modules.len());
    let mut slowest = std::time::Duration::ZERO;
    let mut missed = Vec::new();
    for (name, wasm) in &modules {
        let started = std::time::Instant::now();
        let report = pabi_validator::validate(wasm);
        slowest = slowest.max(started.elapsed());
        assert!(report.has_errors(), "{name} passed validation");
        // Invalid wasm is MOD-1; a module valid only with proposals outside
        // the profile is MOD-2. Older spec versions and proposal snapshots
        // hold a few modules that the current spec (and wasmparser) accept,
        // e.g. over-long LEB128 memory limits, which wasm 3.0 made valid; the
        // current spec's own files must all be refused as wasm.
        let current = name.starts_with("wasm-v3/") || name.starts_with("wasm-latest/");
        let refused = report.findings.iter().any(|f| matches!(f.rule.id(), "MOD-1" | "MOD-2"));
        if current && !refused {
            missed.push(name.as_str());
        }
    }
    assert!(missed.is_empty(), "{} of {} modules not refused as wasm: {missed:#?}", missed.len(), modules.len());
    assert!(slowest < std::time::Duration::from_secs(10), "slowest module took {slowest:?}");
}
