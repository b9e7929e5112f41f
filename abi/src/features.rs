use wasmparser::WasmFeatures;

/// The name of the feature profile of ABI 1.0 (`MOD-2`).
pub const PROFILE_NAME: &str = "pabi-1.0 (WebAssembly 2.0)";

/// The wasm features a 1.0 plugin may use (`MOD-2`): exactly WebAssembly 2.0,
/// which includes reference types, bulk memory, multi-value and SIMD. Rust
/// 1.82+ and Go 1.21+ emit modules inside this set by default.
pub fn feature_profile() -> WasmFeatures {
    WasmFeatures::WASM2
}

/// The lower-case names of the named features set in `features`, for
/// messages (`threads`, `memory64`, …).
pub fn named_features(features: WasmFeatures) -> Vec<String> {
    features.iter_names().map(|(name, _)| name.to_ascii_lowercase()).collect()
}
