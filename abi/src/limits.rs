use std::time::Duration;

/// The limits a host enforces, with the spec's defaults (`LIM-1` … `LIM-12`).
///
/// `#[non_exhaustive]`: a limit a later version adds is not a breaking
/// change; start from `Limits::default()` and set fields.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct Limits {
    /// Linear memory cap in bytes (`LIM-1`).
    pub max_memory: u64,
    /// Wall-time deadline, armed before every call into the plugin (`LIM-3`).
    pub timeout: Duration,
    /// Fuel per call; `None` turns fuel off (`LIM-4`).
    pub fuel: Option<u64>,
    /// Output cap in bytes (`LIM-5`).
    pub max_output: u64,
    /// Error message cap in bytes (`LIM-6`).
    pub max_error_message: u64,
    /// Wasm stack in bytes (`LIM-7`).
    pub max_wasm_stack: usize,
    /// Elements per table (`LIM-8`).
    pub max_table_elements: u64,
    /// Log text per call in bytes: `log` records plus standard output and
    /// standard error (`LIM-11`).
    pub max_log: u64,
    /// Compile budget: the module's size in bytes (`LIM-12`).
    pub max_module_bytes: u64,
    /// Compile budget: functions the module defines (`LIM-12`).
    pub max_functions: u64,
    /// Compile budget: one function body in bytes (`LIM-12`).
    pub max_function_body: u64,
    /// A host call's request in bytes (`LIM-14`).
    pub max_request: u64,
    /// A host call's reply in bytes (`LIM-14`).
    pub max_reply: u64,
}

/// The longest input, configuration or state the ABI can address: the
/// length reaches the plugin as an `i32` (`LIM-13`).
pub const MAX_INPUT_LEN: u64 = i32::MAX as u64;

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_memory: 128 << 20,
            timeout: Duration::from_secs(1),
            fuel: None,
            max_output: 16 << 20,
            max_error_message: 64 << 10,
            max_wasm_stack: 512 << 10,
            max_table_elements: 10_000,
            max_log: 1 << 20,
            max_request: 1 << 20,
            max_reply: 1 << 20,
            max_module_bytes: 32 << 20,
            max_functions: 100_000,
            max_function_body: 1 << 20,
        }
    }
}
