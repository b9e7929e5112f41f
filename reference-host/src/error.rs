//! The host's one error type: a variant per host error kind of the spec
//! (`ERR-6`), each with a fixed message and the details that explain it,
//! plus one variant for a host that cannot serve at all.

use std::fmt;
use std::time::Duration;

use pabi_abi::text::escape_controls;
use pabi_abi::{AbiVersion, Capability, Clause, HostErrorKind, TrapKind};

/// Why a host could not be set up, or a load, call or reload failed.
///
/// Every variant but [`Error::HostUnavailable`] is one of the spec's host
/// error kinds ([`Error::kind`]). `Error` is also what a `wasmtime::Error`
/// from this crate's imports downcasts to.
// Serializable for the worker protocol: an error crosses from a worker
// process as the very value an in-process pool returns.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", content = "detail", rename_all = "SCREAMING_SNAKE_CASE")]
#[non_exhaustive]
pub enum Error {
    /// The binary breaks a static rule (`HOST-1`); each finding cites its clause.
    #[error("INVALID_MODULE: the plugin is not a valid pabi module: {}", join(findings))]
    InvalidModule { findings: Vec<ModuleFinding> },
    /// The plugin's ABI version is not one this host implements (`VER-3`, `VER-4`).
    #[error(
        "VERSION_MISMATCH: the plugin declares ABI {plugin}, this host implements ABI {host}{}",
        missing_suffix(missing_imports)
    )]
    VersionMismatch { plugin: AbiVersion, host: AbiVersion, missing_imports: Vec<String> },
    /// The plugin needs an optional part of the ABI this host does not serve
    /// (`WASI-2`), such as the `wasi` profile.
    #[error("UNSUPPORTED: the plugin needs a part of the ABI this host does not implement: {need}")]
    Unsupported { need: String },
    /// The plugin declares capabilities the host configuration does not
    /// allow (`WASI-5`), or required host calls it does not offer to this
    /// plugin (`CALL-5`), named `host_call:NAME`.
    #[error("MISSING_CAPABILITY: {}", missing(capabilities, host_calls))]
    MissingCapability { capabilities: Vec<Capability>, host_calls: Vec<String> },
    /// The plugin broke a clause of the ABI at run time (`ERR-8`).
    #[error("ABI_VIOLATION: the plugin broke the ABI ({clause}): {detail}")]
    AbiViolation { clause: Clause, detail: String },
    /// A wasm trap (`ERR-9`), with the engine's words and the wasm backtrace.
    #[error("TRAP: the plugin trapped: {trap}{}{}", detail_suffix(detail), backtrace_suffix(backtrace))]
    Trap { trap: TrapKind, detail: String, backtrace: WasmTrace },
    /// The call ran past its wall-time deadline (`LIM-3`).
    #[error("TIMEOUT: the call ran past its deadline of {timeout:?}")]
    Timeout { timeout: Duration },
    /// The embedder cancelled the call through a [`crate::CancelHandle`]
    /// (`CANCELLED`). The instance is discarded, but the failure is not the
    /// plugin's, so it does not count towards the crash loop (`LIFE-7`).
    #[error("CANCELLED: the call was cancelled by the host's caller")]
    Cancelled,
    /// The call used up its fuel (`LIM-4`).
    #[error("FUEL_EXHAUSTED: the call ran out of fuel ({fuel} units)")]
    FuelExhausted { fuel: u64 },
    /// The plugin needed more memory or table space than allowed (`LIM-2`).
    #[error("MEMORY_LIMIT: the plugin hit the memory limit of {limit} bytes")]
    MemoryLimit { limit: u64 },
    /// The plugin wrote more output than allowed (`LIM-5`).
    #[error("OUTPUT_LIMIT: the plugin wrote more than the {limit}-byte output limit")]
    OutputLimit { limit: u64 },
    /// The module is past the host's compile budget and was not compiled
    /// (`LIM-12`).
    #[error("MODULE_LIMIT: the plugin is larger than this host compiles: {cap}")]
    ModuleLimit { cap: CompileCap },
    /// The input, configuration or state is longer than the ABI can address,
    /// or than a lower cap the host set (`LIM-13`); no plugin code ran.
    /// `len` is `None` where the host stopped reading at the limit (a
    /// stream, an HTTP body) and so never learnt the whole length.
    #[error("INPUT_LIMIT: {}", input_limit_text(*len, *limit))]
    InputLimit { len: Option<u64>, limit: u64 },
    /// The plugin returned a value that is not a status (`ERR-2`, `ERR-4`).
    #[error("UNKNOWN_STATUS: the plugin returned status {status}, which the ABI does not define")]
    UnknownStatus { status: i32 },
    /// The plugin returned a defined error status (`ERR-7`), with the
    /// bytes it passed to `error_write`.
    #[error("PLUGIN_ERROR: status {status} ({}): {}", status_name(*status), escape_controls(&String::from_utf8_lossy(message)))]
    PluginError { status: i32, message: Vec<u8> },
    /// No `pabi_fn_<name>` export of that name; `available` lists the
    /// plugin's functions.
    #[error("UNKNOWN_FUNCTION: the plugin has no function `{name}`{}", available_suffix(available))]
    UnknownFunction { name: String, available: Vec<String> },
    /// Too many dead instances in the window; the plugin is disabled
    /// (`LIFE-7`) until [`crate::ConfigBuilder::crash_reset`] has passed.
    #[error("CRASH_LOOP: the plugin failed {failures} times within {window:?} and was disabled")]
    CrashLoop { failures: u32, window: Duration },
    /// The host itself cannot serve, whatever the plugin (`HOST_FAILURE`),
    /// or, for [`Unavailable::Unsupported`], its configuration asks for
    /// something it cannot do, which has no kind (`ERR-6`, `LIM-4`).
    #[error("{}", host_unavailable(.0))]
    HostUnavailable(Unavailable),
}

/// Why a host cannot serve, whatever the plugin.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Unavailable {
    /// The wasm engine could not be set up, for example because the pooling
    /// allocator could not reserve its address space.
    #[error("cannot set up the wasm engine: {0}")]
    Engine(String),
    /// Every instance slot of the host is taken ([`crate::ConfigBuilder::max_instances`]).
    #[error("all {limit} instance slots are in use; drop a plugin or raise max_instances")]
    InstanceSlots { limit: u32 },
    /// A handler tried to call into the plugin whose host call it serves
    /// (`CALL-8`): the plugin is waiting for the handler.
    #[error("the plugin is waiting in a host call this handler serves; a handler cannot call into it (CALL-8)")]
    Reentrant,
    /// Every instance of a [`crate::Pool`] is busy and its queue is full
    /// ([`crate::PoolBuilder::max_queue`]): try again later.
    #[error("all instances are busy and {limit} calls are already waiting")]
    QueueFull { limit: usize },
    /// A call of a [`crate::Pool`] waited longer than
    /// [`crate::PoolBuilder::queue_timeout`] for an instance.
    #[error("no instance became free within {timeout:?}")]
    QueueTimeout { timeout: std::time::Duration },
    /// The [`crate::Pool`] was shut down ([`crate::Pool::shutdown`]).
    #[error("the pool was shut down")]
    ShutDown,
    /// The worker process of a [`crate::Pool`] ended while it held the
    /// call; another is being started.
    #[error("the worker process (pid {pid}) ended during the call ({status}); it is restarted")]
    WorkerExited { pid: u32, status: String },
    /// No worker process of a [`crate::Pool`] can serve: it cannot be
    /// started, or it broke the worker protocol.
    #[error("the worker process cannot serve: {reason}")]
    WorkerDown { reason: String },
    /// A directory the configuration grants cannot be opened.
    #[error("cannot open {} for the guest path {guest}: {reason}", host.display())]
    Directory { host: std::path::PathBuf, guest: String, reason: String },
    /// The configuration asks for something this host cannot do; the clause
    /// names the limit (`LIM-4`).
    #[error("{detail} ({clause})")]
    Unsupported { clause: Clause, detail: String },
}

fn host_unavailable(why: &Unavailable) -> String {
    match why {
        Unavailable::Unsupported { .. } => format!("the host cannot apply its configuration: {why}"),
        _ => format!("HOST_FAILURE: {}: {why}", HostErrorKind::HostFailure.message()),
    }
}

/// Which cap of the compile budget a module passed (`LIM-12`), with the
/// module's value and the cap.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum CompileCap {
    #[error("the module is {bytes} bytes, past the cap of {cap}")]
    ModuleBytes { bytes: u64, cap: u64 },
    #[error("the module defines {functions} functions, past the cap of {cap}")]
    Functions { functions: u64, cap: u64 },
    #[error("function {index} has a body of {bytes} bytes, past the cap of {cap}")]
    FunctionBody { index: u32, bytes: u64, cap: u64 },
}

/// One static finding inside `INVALID_MODULE`.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[non_exhaustive]
pub struct ModuleFinding {
    /// The clause the module breaks; `None` when the engine refused the
    /// module for a reason no clause names.
    pub clause: Option<Clause>,
    pub message: String,
}

impl ModuleFinding {
    pub fn new(clause: Clause, message: impl Into<String>) -> ModuleFinding {
        ModuleFinding { clause: Some(clause), message: message.into() }
    }
}

impl From<&pabi_validator::Finding> for ModuleFinding {
    fn from(finding: &pabi_validator::Finding) -> Self {
        ModuleFinding { clause: Some(finding.rule.clause()), message: finding.message.clone() }
    }
}

impl fmt::Display for ModuleFinding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.clause {
            // Findings quote names from the module, plugin-chosen text
            // (`SEC-3`).
            Some(clause) => write!(f, "[{clause}] {}", escape_controls(&self.message)),
            None => f.write_str(&escape_controls(&self.message)),
        }
    }
}

/// The wasm frames of a trap, innermost first. Runs of the same frame, as a
/// stack overflow makes, are kept once with a count.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct WasmTrace {
    runs: Vec<(Frame, u32)>,
}

/// One wasm frame.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[non_exhaustive]
pub struct Frame {
    /// The function's index in the module's function index space.
    pub func_index: u32,
    /// From the module's `name` section, when it has one (`MOD-5`).
    pub name: Option<String>,
}

impl Frame {
    pub fn new(func_index: u32, name: Option<String>) -> Frame {
        Frame { func_index, name }
    }
}

impl WasmTrace {
    pub fn from_frames(frames: impl IntoIterator<Item = Frame>) -> WasmTrace {
        let mut runs: Vec<(Frame, u32)> = Vec::new();
        for frame in frames {
            match runs.last_mut() {
                Some((last, count)) if *last == frame => *count += 1,
                _ => runs.push((frame, 1)),
            }
        }
        WasmTrace { runs }
    }

    pub fn is_empty(&self) -> bool {
        self.runs.is_empty()
    }

    /// Each distinct consecutive frame with how many times it repeats.
    pub fn runs(&self) -> &[(Frame, u32)] {
        &self.runs
    }

    /// The number of frames, repeats included.
    pub fn depth(&self) -> u64 {
        self.runs.iter().map(|(_, n)| u64::from(*n)).sum()
    }
}

impl fmt::Display for WasmTrace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut depth = 0u64;
        for (i, (frame, count)) in self.runs.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            // Function names come from the plugin's name section (`SEC-3`).
            let name = escape_controls(frame.name.as_deref().unwrap_or("<unknown>"));
            write!(f, "  {depth}: {name} (function {})", frame.func_index)?;
            if *count > 1 {
                write!(f, "\n     … the same frame {} more times", count - 1)?;
            }
            depth += u64::from(*count);
        }
        Ok(())
    }
}

impl Error {
    /// The spec's name for this failure; `None` only for a configuration the
    /// host cannot apply ([`Unavailable::Unsupported`]), refused before any
    /// plugin.
    pub fn kind(&self) -> Option<HostErrorKind> {
        Some(match self {
            Error::InvalidModule { .. } => HostErrorKind::InvalidModule,
            Error::VersionMismatch { .. } => HostErrorKind::VersionMismatch,
            Error::MissingCapability { .. } => HostErrorKind::MissingCapability,
            Error::Unsupported { .. } => HostErrorKind::Unsupported,
            Error::AbiViolation { .. } => HostErrorKind::AbiViolation,
            Error::Trap { .. } => HostErrorKind::Trap,
            Error::Timeout { .. } => HostErrorKind::Timeout,
            Error::Cancelled => HostErrorKind::Cancelled,
            Error::FuelExhausted { .. } => HostErrorKind::FuelExhausted,
            Error::MemoryLimit { .. } => HostErrorKind::MemoryLimit,
            Error::OutputLimit { .. } => HostErrorKind::OutputLimit,
            Error::ModuleLimit { .. } => HostErrorKind::ModuleLimit,
            Error::InputLimit { .. } => HostErrorKind::InputLimit,
            Error::UnknownStatus { .. } => HostErrorKind::UnknownStatus,
            Error::PluginError { .. } => HostErrorKind::PluginError,
            Error::UnknownFunction { .. } => HostErrorKind::UnknownFunction,
            Error::CrashLoop { .. } => HostErrorKind::CrashLoop,
            Error::HostUnavailable(Unavailable::Unsupported { .. }) => return None,
            Error::HostUnavailable(_) => HostErrorKind::HostFailure,
        })
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

    /// The clause an `ABI_VIOLATION` cites, the first clause an
    /// `INVALID_MODULE` breaks, or the limit a configuration cannot have.
    pub fn clause(&self) -> Option<Clause> {
        match self {
            Error::AbiViolation { clause, .. } => Some(*clause),
            Error::InvalidModule { findings } => findings.iter().find_map(|f| f.clause),
            Error::HostUnavailable(Unavailable::Unsupported { clause, .. }) => Some(*clause),
            _ => None,
        }
    }

    /// The trap kind of a `TRAP`.
    pub fn trap(&self) -> Option<TrapKind> {
        match self {
            Error::Trap { trap, .. } => Some(*trap),
            _ => None,
        }
    }

    /// Whether the instance that produced this error is dead (`LIFE-5`):
    /// every abort and trap kills it; a returned status does not.
    pub fn kills_instance(&self) -> bool {
        !matches!(
            self,
            Error::PluginError { .. }
                | Error::UnknownStatus { .. }
                | Error::UnknownFunction { .. }
                | Error::HostUnavailable(_)
        )
    }

    pub(crate) fn invalid(clause: Clause, message: impl Into<String>) -> Error {
        Error::InvalidModule { findings: vec![ModuleFinding::new(clause, message)] }
    }
}

fn join(findings: &[ModuleFinding]) -> String {
    findings.iter().map(ModuleFinding::to_string).collect::<Vec<_>>().join("; ")
}

/// A capability is allowed or not by the host's configuration (`WASI-5`);
/// a host call is offered or not, by the application's handlers and the
/// configuration (`CALL-5`). The message says which of the two failed.
fn missing(capabilities: &[Capability], host_calls: &[String]) -> String {
    // An `fs:` path is the plugin's text (`SEC-3`); host-call names follow
    // a grammar without control characters (`CALL-2`).
    let capabilities: Vec<String> =
        capabilities.iter().map(|c| format!("`{}`", escape_controls(&c.to_string()))).collect();
    let host_calls: Vec<String> = host_calls.iter().map(|name| format!("`host_call:{name}`")).collect();
    let mut parts = Vec::new();
    if !capabilities.is_empty() {
        parts.push(format!("the plugin declares {}, which this host does not allow", capabilities.join(", ")));
    }
    if !host_calls.is_empty() {
        let calls = if host_calls.len() == 1 { "host call" } else { "host calls" };
        parts.push(format!(
            "the plugin requires the {calls} {}, which this host does not offer to it",
            host_calls.join(", ")
        ));
    }
    parts.join("; ")
}

fn missing_suffix(missing: &[String]) -> String {
    if missing.is_empty() {
        String::new()
    } else {
        // Import names are the plugin's choice (`SEC-3`).
        format!("; missing imports: {}", escape_controls(&missing.join(", ")))
    }
}

fn available_suffix(available: &[String]) -> String {
    if available.is_empty() {
        String::new()
    } else {
        format!("; it has: {}", available.join(", "))
    }
}

fn detail_suffix(detail: &str) -> String {
    if detail.is_empty() {
        String::new()
    } else {
        // The engine's words may quote names from the plugin (`SEC-3`).
        format!(" ({})", escape_controls(detail))
    }
}

fn backtrace_suffix(backtrace: &WasmTrace) -> String {
    if backtrace.is_empty() {
        String::new()
    } else {
        format!("\nwasm backtrace:\n{backtrace}")
    }
}

/// The kind's fixed description first (`ERR-6`), then which limit: the
/// ABI's, or a lower cap of the host's (`LIM-13`).
fn input_limit_text(len: Option<u64>, limit: u64) -> String {
    let description = HostErrorKind::InputLimit.message();
    let whose = if limit == pabi_abi::MAX_INPUT_LEN { "the ABI's limit" } else { "this host's cap" };
    match len {
        Some(len) => format!("{description}: {len} bytes, past {whose} of {limit}"),
        None => format!("{description}: past {whose} of {limit} bytes"),
    }
}

fn status_name(status: i32) -> &'static str {
    pabi_abi::Status::from_code(status).map_or("plugin-defined", |s| s.name())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A capability is "not allowed", a host call "not offered": the
    /// message never says a host call is not allowed.
    #[test]
    fn missing_capabilities_and_host_calls_are_worded_apart() {
        let calls = Error::MissingCapability { capabilities: vec![], host_calls: vec!["kv.get".into()] };
        assert_eq!(
            calls.to_string(),
            "MISSING_CAPABILITY: the plugin requires the host call `host_call:kv.get`, which this host does not offer to it"
        );
        let both = Error::MissingCapability {
            capabilities: vec![Capability::Clock, Capability::Random],
            host_calls: vec!["kv.get".into(), "kv.put".into()],
        };
        assert_eq!(
            both.to_string(),
            "MISSING_CAPABILITY: the plugin declares `clock`, `random`, which this host does not allow; \
             the plugin requires the host calls `host_call:kv.get`, `host_call:kv.put`, which this host does not offer to it"
        );
    }

    #[test]
    fn display_starts_with_the_kind_name() {
        let errors = [
            Error::invalid(Clause::Meta1, "x"),
            Error::VersionMismatch {
                plugin: AbiVersion::new(2, 0),
                host: AbiVersion::new(1, 0),
                missing_imports: vec![],
            },
            Error::MissingCapability { capabilities: vec![Capability::Clock], host_calls: vec![] },
            Error::AbiViolation { clause: Clause::Mem3, detail: "x".into() },
            Error::Trap { trap: TrapKind::Unreachable, detail: String::new(), backtrace: WasmTrace::default() },
            Error::Timeout { timeout: Duration::from_millis(5) },
            Error::FuelExhausted { fuel: 1 },
            Error::MemoryLimit { limit: 1 },
            Error::OutputLimit { limit: 1 },
            Error::ModuleLimit { cap: CompileCap::Functions { functions: 2, cap: 1 } },
            Error::InputLimit { len: Some(1 << 31), limit: pabi_abi::MAX_INPUT_LEN },
            Error::UnknownStatus { status: 200 },
            Error::PluginError { status: 1, message: b"bad".to_vec() },
            Error::UnknownFunction { name: "f".into(), available: vec![] },
            Error::CrashLoop { failures: 5, window: Duration::from_secs(1) },
            Error::Unsupported { need: "the `wasi` profile".into() },
            Error::Cancelled,
            Error::HostUnavailable(Unavailable::InstanceSlots { limit: 2 }),
        ];
        for error in &errors {
            let kind = error.kind().expect("a plugin failure has a kind");
            assert!(error.to_string().starts_with(kind.name()), "{error}");
        }
        let past_cap = Error::InputLimit { len: None, limit: 1024 }.to_string();
        assert_eq!(
            past_cap,
            "INPUT_LIMIT: the input is longer than the host accepts: past this host's cap of 1024 bytes"
        );
        let kinds: std::collections::HashSet<_> = errors.iter().filter_map(Error::kind).collect();
        assert_eq!(kinds.len(), HostErrorKind::ALL.len(), "one variant per kind");
        let unsupported = Error::HostUnavailable(Unavailable::Unsupported { clause: Clause::Lim4, detail: "x".into() });
        assert_eq!(unsupported.kind(), None, "a configuration the host cannot apply has no kind");
    }

    #[test]
    fn version_mismatch_names_both_versions_and_missing_imports() {
        let e = Error::VersionMismatch {
            plugin: AbiVersion::new(1, 1),
            host: AbiVersion::new(1, 0),
            missing_imports: vec!["pabi.kv_get".into()],
        };
        let text = e.to_string();
        assert!(text.contains("1.1") && text.contains("1.0") && text.contains("pabi.kv_get"), "{text}");
    }

    #[test]
    fn unknown_function_lists_what_the_plugin_has() {
        let e = Error::UnknownFunction { name: "nope".into(), available: vec!["upper".into(), "lower".into()] };
        assert_eq!(e.to_string(), "UNKNOWN_FUNCTION: the plugin has no function `nope`; it has: upper, lower");
    }

    #[test]
    fn backtraces_collapse_repeated_frames() {
        let frame = |i: u32| Frame { func_index: i, name: Some(format!("f{i}")) };
        let trace = WasmTrace::from_frames([frame(1), frame(2), frame(2), frame(2), frame(3)]);
        assert_eq!(trace.depth(), 5);
        assert_eq!(trace.runs().len(), 3);
        assert_eq!(
            trace.to_string(),
            "  0: f1 (function 1)\n  1: f2 (function 2)\n     … the same frame 2 more times\n  4: f3 (function 3)"
        );
    }
}
