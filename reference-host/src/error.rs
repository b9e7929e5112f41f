//! The host's one error type: a variant per host error kind of the spec
//! (`ERR-6`), each with a fixed message and the details that explain it.

use std::time::Duration;

use pabi_abi::HostErrorKind;

/// Why a load, call or reload failed.
///
/// The variants are exactly the spec's host error kinds. `Error` is also
/// what a `wasmtime::Error` or `anyhow::Error` from this crate downcasts to.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The binary breaks a static rule (`HOST-1`); `findings` cite clauses.
    #[error("INVALID_MODULE: the plugin is not a valid pabi module: {}", findings.join("; "))]
    InvalidModule { findings: Vec<String> },
    /// The plugin's ABI version is not one this host implements (`VER-3`).
    #[error(
        "VERSION_MISMATCH: the plugin declares ABI {plugin}, this host implements ABI {host}{}",
        missing_suffix(missing_imports)
    )]
    VersionMismatch { plugin: String, host: String, missing_imports: Vec<String> },
    /// The plugin declares a capability the host configuration does not allow (`WASI-5`).
    #[error("MISSING_CAPABILITY: the plugin declares `{capability}`, which this host does not allow")]
    MissingCapability { capability: String },
    /// The plugin broke a clause of the ABI at run time (`ERR-8`).
    #[error("ABI_VIOLATION: the plugin broke the ABI ({clause}): {detail}")]
    AbiViolation { clause: &'static str, detail: String },
    /// A wasm trap (`ERR-9`): `trap` is its kind, e.g. `unreachable`.
    #[error("TRAP: the plugin trapped: {trap}{}", backtrace_suffix(backtrace))]
    Trap { trap: String, backtrace: String },
    /// The call ran past its wall-time deadline (`LIM-3`).
    #[error("TIMEOUT: the call ran past its deadline of {timeout:?}")]
    Timeout { timeout: Duration },
    /// The call used up its fuel (`LIM-4`).
    #[error("FUEL_EXHAUSTED: the call ran out of fuel ({fuel} units)")]
    FuelExhausted { fuel: u64 },
    /// The plugin needed more memory or table space than allowed (`LIM-2`).
    #[error("MEMORY_LIMIT: the plugin hit the memory limit of {limit} bytes")]
    MemoryLimit { limit: u64 },
    /// The plugin wrote more output than allowed (`LIM-5`).
    #[error("OUTPUT_LIMIT: the plugin wrote more than the {limit}-byte output limit")]
    OutputLimit { limit: u64 },
    /// The plugin returned a status the ABI does not define (`ERR-4`).
    #[error("UNKNOWN_STATUS: the plugin returned status {status}, which the ABI does not define")]
    UnknownStatus { status: i32 },
    /// The plugin returned a defined error status (`ERR-7`), with the
    /// bytes it passed to `error_write`.
    #[error("PLUGIN_ERROR: status {status} ({}): {}", status_name(*status), String::from_utf8_lossy(message))]
    PluginError { status: i32, message: Vec<u8> },
    /// No `pabi_fn_<name>` export of that name (`HOST-5`).
    #[error("UNKNOWN_FUNCTION: the plugin has no function `{name}`")]
    UnknownFunction { name: String },
    /// Too many traps in the window; the plugin is disabled (`LIFE-9`).
    #[error("CRASH_LOOP: the plugin failed {failures} times within {window:?} and was disabled")]
    CrashLoop { failures: u32, window: Duration },
}

impl Error {
    /// The spec's name for this failure.
    pub fn kind(&self) -> HostErrorKind {
        match self {
            Error::InvalidModule { .. } => HostErrorKind::InvalidModule,
            Error::VersionMismatch { .. } => HostErrorKind::VersionMismatch,
            Error::MissingCapability { .. } => HostErrorKind::MissingCapability,
            Error::AbiViolation { .. } => HostErrorKind::AbiViolation,
            Error::Trap { .. } => HostErrorKind::Trap,
            Error::Timeout { .. } => HostErrorKind::Timeout,
            Error::FuelExhausted { .. } => HostErrorKind::FuelExhausted,
            Error::MemoryLimit { .. } => HostErrorKind::MemoryLimit,
            Error::OutputLimit { .. } => HostErrorKind::OutputLimit,
            Error::UnknownStatus { .. } => HostErrorKind::UnknownStatus,
            Error::PluginError { .. } => HostErrorKind::PluginError,
            Error::UnknownFunction { .. } => HostErrorKind::UnknownFunction,
            Error::CrashLoop { .. } => HostErrorKind::CrashLoop,
        }
    }

    /// The plugin's status code, for `PLUGIN_ERROR` and `UNKNOWN_STATUS`.
    pub fn status(&self) -> Option<i32> {
        match self {
            Error::PluginError { status, .. } | Error::UnknownStatus { status } => Some(*status),
            _ => None,
        }
    }

    /// The plugin's own error message bytes, for `PLUGIN_ERROR`.
    pub fn message(&self) -> Option<&[u8]> {
        match self {
            Error::PluginError { message, .. } => Some(message),
            _ => None,
        }
    }

    /// The clause an `ABI_VIOLATION` cites.
    pub fn clause(&self) -> Option<&'static str> {
        match self {
            Error::AbiViolation { clause, .. } => Some(clause),
            _ => None,
        }
    }

    /// Whether the instance that produced this error is dead (`LIFE-5`):
    /// every abort and trap kills it; a returned status does not.
    pub fn kills_instance(&self) -> bool {
        !matches!(self, Error::PluginError { .. } | Error::UnknownStatus { .. } | Error::UnknownFunction { .. })
    }
}

fn missing_suffix(missing: &[String]) -> String {
    if missing.is_empty() {
        String::new()
    } else {
        format!("; missing imports: {}", missing.join(", "))
    }
}

fn backtrace_suffix(backtrace: &str) -> String {
    if backtrace.is_empty() {
        String::new()
    } else {
        format!("\nwasm backtrace:\n{backtrace}")
    }
}

fn status_name(status: i32) -> &'static str {
    pabi_abi::Status::from_code(status).map_or("plugin-defined", |s| s.name())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_starts_with_the_kind_name() {
        let errors = [
            Error::InvalidModule { findings: vec!["x".into()] },
            Error::VersionMismatch { plugin: "2.0".into(), host: "1.0".into(), missing_imports: vec![] },
            Error::MissingCapability { capability: "clock".into() },
            Error::AbiViolation { clause: "MEM-3", detail: "x".into() },
            Error::Trap { trap: "unreachable".into(), backtrace: String::new() },
            Error::Timeout { timeout: Duration::from_millis(5) },
            Error::FuelExhausted { fuel: 1 },
            Error::MemoryLimit { limit: 1 },
            Error::OutputLimit { limit: 1 },
            Error::UnknownStatus { status: 200 },
            Error::PluginError { status: 1, message: b"bad".to_vec() },
            Error::UnknownFunction { name: "f".into() },
            Error::CrashLoop { failures: 5, window: Duration::from_secs(1) },
        ];
        for error in &errors {
            assert!(error.to_string().starts_with(error.kind().name()), "{error}");
        }
        let kinds: std::collections::HashSet<_> = errors.iter().map(Error::kind).collect();
        assert_eq!(kinds.len(), HostErrorKind::ALL.len(), "one variant per kind");
    }

    #[test]
    fn version_mismatch_names_both_versions_and_missing_imports() {
        let e = Error::VersionMismatch {
            plugin: "1.1".into(),
            host: "1.0".into(),
            missing_imports: vec!["pabi.kv_get".into()],
        };
        let text = e.to_string();
        assert!(text.contains("1.1") && text.contains("1.0") && text.contains("pabi.kv_get"), "{text}");
    }
}
