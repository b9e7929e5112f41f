//! What a host allows and how hard it limits plugins.
//!
//! [`Config`] is built with [`ConfigBuilder`]: every setting has a documented
//! default, and a setting added later is not a breaking change for callers.

use std::path::{Path, PathBuf};
use std::time::Duration;

pub use pabi_abi::Limits;

/// How long a plugin disabled by a crash loop stays disabled, by default.
const DEFAULT_CRASH_RESET: Duration = Duration::from_secs(60);

/// The host's configuration: limits, what WASI plugins may be granted, and
/// engine options. `Config::default()` is the spec's defaults with nothing
/// granted (`WASI-5`, `LIM-10`).
///
/// ```
/// use std::time::Duration;
///
/// let config = pabi_host::Config::builder()
///     .timeout(Duration::from_millis(200))
///     .max_memory(16 << 20)
///     .allow_env("LANG", "C")
///     .build();
/// assert_eq!(config.limits().timeout, Duration::from_millis(200));
/// ```
// Serializable for the worker protocol, which sends a worker its host's
// configuration; the host functions stay with the pool's side.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct Config {
    limits: Limits,
    allow: Allow,
    crash_limit: u32,
    crash_window: Duration,
    crash_reset: Duration,
    log_rate: Option<LogRate>,
    pooling: bool,
    max_instances: u32,
    cache_dir: Option<PathBuf>,
    cache_dir_bytes: u64,
    cache_capacity: usize,
    wasi_profile: bool,
    #[serde(skip)]
    host_functions: Vec<crate::HostFunction>,
    /// Stays in this process, like the host functions: a worker process's
    /// calls are not gated ([`crate::CpuGate`]).
    #[serde(skip)]
    cpu_gate: Option<crate::CpuGate>,
    abi: pabi_abi::AbiVersion,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            limits: Limits::default(),
            allow: Allow::default(),
            crash_limit: 5,
            crash_window: Duration::from_secs(60),
            crash_reset: DEFAULT_CRASH_RESET,
            log_rate: Some(LogRate::default()),
            pooling: true,
            max_instances: 64,
            cache_dir: None,
            cache_dir_bytes: 1 << 30,
            cache_capacity: 256,
            wasi_profile: true,
            host_functions: Vec::new(),
            cpu_gate: None,
            abi: pabi_abi::HOST_ABI,
        }
    }
}

impl Config {
    /// A builder that starts from the defaults.
    pub fn builder() -> ConfigBuilder {
        ConfigBuilder { config: Config::default() }
    }

    /// A builder that starts from this configuration.
    pub fn to_builder(&self) -> ConfigBuilder {
        ConfigBuilder { config: self.clone() }
    }

    /// The limits every call and instance gets (`LIM-1` … `LIM-8`).
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// The capabilities this host is willing to grant (`WASI-5`).
    pub fn allowed(&self) -> &Allow {
        &self.allow
    }

    /// Dead instances tolerated within [`Config::crash_window`] before the
    /// plugin is disabled (`LIFE-7`).
    pub fn crash_limit(&self) -> u32 {
        self.crash_limit
    }

    pub fn crash_window(&self) -> Duration {
        self.crash_window
    }

    /// How long a plugin disabled by a crash loop stays disabled before
    /// it is tried again (`LIFE-7`).
    pub fn crash_reset(&self) -> Duration {
        self.crash_reset
    }

    /// The log text a plugin may write per second, across its calls and
    /// instances; `None`: no bound but the cap of a call (`LIM-11`).
    pub fn log_rate(&self) -> Option<LogRate> {
        self.log_rate
    }

    pub fn pooling(&self) -> bool {
        self.pooling
    }

    /// The most instances alive at once in this host.
    pub fn max_instances(&self) -> u32 {
        self.max_instances
    }

    pub fn cache_dir(&self) -> Option<&Path> {
        self.cache_dir.as_deref()
    }

    /// The most bytes the compile cache folder may hold.
    pub fn cache_dir_bytes(&self) -> u64 {
        self.cache_dir_bytes
    }

    /// How many validated, compiled plugins the host keeps ready.
    pub fn cache_capacity(&self) -> usize {
        self.cache_capacity
    }

    /// Whether plugins of the `wasi` profile are served.
    pub fn serves_wasi(&self) -> bool {
        self.wasi_profile
    }

    /// The host functions offered to plugins' host calls.
    pub fn host_functions(&self) -> &[crate::HostFunction] {
        &self.host_functions
    }

    /// The ABI version this host offers (`CALL-9`).
    pub fn abi_version(&self) -> pabi_abi::AbiVersion {
        self.abi
    }

    /// The gate that bounds and shares the calls running at once, if any.
    pub fn cpu_gate(&self) -> Option<&crate::CpuGate> {
        self.cpu_gate.as_ref()
    }
}

/// Builds a [`Config`]. Each setter names its default.
#[derive(Clone, Debug)]
pub struct ConfigBuilder {
    config: Config,
}

impl ConfigBuilder {
    /// Bounds the calls that run wasm at once, in this host and every host
    /// given the same gate, and shares the permits fairly between plugins
    /// by time slices ([`crate::CpuGate`]). Not sent to a worker process:
    /// calls of a pool in one are not gated. Default: `None`, every call
    /// runs at once.
    pub fn cpu_gate(mut self, gate: crate::CpuGate) -> Self {
        self.config.cpu_gate = Some(gate);
        self
    }

    /// All limits at once. Default: `Limits::default()`, the spec's defaults.
    pub fn limits(mut self, limits: Limits) -> Self {
        self.config.limits = limits;
        self
    }

    /// Linear memory cap in bytes (`LIM-1`). Default: 128 MiB.
    pub fn max_memory(mut self, bytes: u64) -> Self {
        self.config.limits.max_memory = bytes;
        self
    }

    /// Wall-time deadline of every call, armed before each one (`LIM-3`).
    /// Default: 1 s.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.config.limits.timeout = timeout;
        self
    }

    /// Fuel per call, or `None` for no fuel metering (`LIM-4`). Default: `None`.
    pub fn fuel(mut self, fuel: Option<u64>) -> Self {
        self.config.limits.fuel = fuel;
        self
    }

    /// Output cap per call in bytes (`LIM-5`). Default: 16 MiB.
    pub fn max_output(mut self, bytes: u64) -> Self {
        self.config.limits.max_output = bytes;
        self
    }

    /// Wasm stack in bytes (`LIM-7`). Default: 512 KiB.
    pub fn max_wasm_stack(mut self, bytes: usize) -> Self {
        self.config.limits.max_wasm_stack = bytes;
        self
    }

    /// Elements per table (`LIM-8`). Default: 10,000.
    pub fn max_table_elements(mut self, elements: u64) -> Self {
        self.config.limits.max_table_elements = elements;
        self
    }

    /// Log text per call in bytes, `log` records and standard output and
    /// error together (`LIM-11`). Default: 1 MiB.
    pub fn max_log(mut self, bytes: u64) -> Self {
        self.config.limits.max_log = bytes;
        self
    }

    /// The log records and bytes a plugin may write per second, across
    /// all its calls and instances in this host (in a worker process: in
    /// that worker): a token bucket per plugin that holds one second's
    /// worth. The cap of a call (`LIM-11`) bounds one call; this bounds
    /// many clients calling at once. A record past the rate is dropped and
    /// counted, and `log` still returns 0: what a call sees does not depend
    /// on other calls. `None`: no bound across calls. Default: 1,000
    /// records and 1 MiB per second.
    pub fn log_rate(mut self, rate: Option<LogRate>) -> Self {
        self.config.log_rate = rate;
        self
    }

    /// The compile budget (`LIM-12`): the module's size in bytes, the
    /// functions it defines, and one function body in bytes. A plugin past
    /// any of them is refused with `MODULE_LIMIT` before it is compiled.
    /// Default: 32 MiB, 100,000 functions, 1 MiB.
    pub fn compile_budget(mut self, module_bytes: u64, functions: u64, function_body: u64) -> Self {
        self.config.limits.max_module_bytes = module_bytes;
        self.config.limits.max_functions = functions;
        self.config.limits.max_function_body = function_body;
        self
    }

    /// Grant the real clocks and real sleeps to plugins that declare
    /// `clock` (`WASI-3`, `WASI-6`). Default: `false` (virtual time).
    pub fn allow_clock(mut self, allow: bool) -> Self {
        self.config.allow.clock = allow;
        self
    }

    /// Offers a host function to plugins' host calls (`CALL-5`). Default:
    /// none. A second function of the same name replaces the first.
    pub fn host_function(mut self, function: crate::HostFunction) -> Self {
        self.config.host_functions.push(function);
        self
    }

    /// The ABI version the host offers (`CALL-9`). Default: the newest this
    /// crate implements, [`pabi_abi::HOST_ABI`]. `1.0` keeps plugins from
    /// making host calls at all: a plugin declaring 1.1 is refused with
    /// `VERSION_MISMATCH`. A version newer than this crate implements makes
    /// [`crate::Host::new`] fail.
    pub fn abi_version(mut self, version: pabi_abi::AbiVersion) -> Self {
        self.config.abi = version;
        self
    }

    /// The cap on a host call's request and on its reply, in bytes
    /// (`LIM-14`). Default: 1 MiB each.
    pub fn max_host_call_bytes(mut self, request: u64, reply: u64) -> Self {
        self.config.limits.max_request = request.min(pabi_abi::MAX_INPUT_LEN);
        self.config.limits.max_reply = reply.min(pabi_abi::MAX_INPUT_LEN);
        self
    }

    /// Serve plugins of the `wasi` profile (`WASI-2`). Default: `true`. An
    /// embedder that wants no WASI surface at all turns it off; the host
    /// then refuses a `wasi` plugin at load with `UNSUPPORTED`.
    pub fn wasi_profile(mut self, serve: bool) -> Self {
        self.config.wasi_profile = serve;
        self
    }

    /// Grant host entropy to plugins that declare `random` (`WASI-7`).
    /// Default: `false` (a fixed-seed generator).
    pub fn allow_random(mut self, allow: bool) -> Self {
        self.config.allow.random = allow;
        self
    }

    /// Offer the environment variable `name` with `value` to plugins that
    /// declare `env:NAME` (`WASI-8`). Default: none.
    pub fn allow_env(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.config.allow.env.push((name.into(), value.into()));
        self
    }

    /// Offer a host directory to plugins that declare `fs:` for its guest
    /// path (`WASI-3`). Default: none.
    pub fn allow_dir(mut self, grant: DirGrant) -> Self {
        self.config.allow.dirs.push(grant);
        self
    }

    /// Dead instances tolerated within `window` before the plugin is
    /// disabled with `CRASH_LOOP` (`LIFE-7`). Default: 5 in 60 s.
    pub fn crash_limit(mut self, failures: u32, window: Duration) -> Self {
        self.config.crash_limit = failures.max(1);
        self.config.crash_window = window;
        self
    }

    /// How long a plugin disabled by a crash loop (`LIFE-7`) answers
    /// `CRASH_LOOP` before its next call tries a fresh instance again, its
    /// failures forgotten; a plugin still broken is disabled again after
    /// [`ConfigBuilder::crash_limit`] more failures. Without a reset one
    /// client that makes a plugin fail five times would disable it for
    /// everyone until it is reloaded. Default: 60 s.
    pub fn crash_reset(mut self, reset: Duration) -> Self {
        self.config.crash_reset = reset;
        self
    }

    /// Instantiate from wasmtime's pooling allocator: faster instantiation,
    /// address space reserved up front. Default: `true`.
    pub fn pooling(mut self, pooling: bool) -> Self {
        self.config.pooling = pooling;
        self
    }

    /// The most instances alive at once in this host (each loaded plugin
    /// holds one). Past it a load fails with [`crate::Error::HostUnavailable`].
    /// Default: 64.
    pub fn max_instances(mut self, instances: u32) -> Self {
        self.config.max_instances = instances.max(1);
        self
    }

    /// Keep precompiled modules in this folder between processes. Default:
    /// none (in memory only).
    pub fn cache_dir(mut self, dir: Option<PathBuf>) -> Self {
        self.config.cache_dir = dir;
        self
    }

    /// The most bytes the compile cache folder may hold: after each write
    /// the oldest entries are removed until it fits. A precompiled module can
    /// be many times the size of the plugin, so a host that loads plugins
    /// it does not control must bound it. Default: 1 GiB.
    pub fn cache_dir_bytes(mut self, bytes: u64) -> Self {
        self.config.cache_dir_bytes = bytes;
        self
    }

    /// Accept plugins that declare `clock` or `random` as if both were
    /// allowed, but serve them a virtual clock like that of plugins without
    /// the capability (`WASI-6`), so a sleep costs nothing, and a
    /// pseudo-random generator; each instance's clock start and generator
    /// seed come from a counter, so that a run repeats exactly while two
    /// instances still see different times and bytes. For
    /// test and conformance runs, which must be repeatable and must not hang
    /// on a plugin that sleeps forever. Default: `false`.
    pub fn simulate_clock_and_random(mut self, simulate: bool) -> Self {
        self.config.allow.simulated = simulate;
        self
    }

    /// Validated, compiled plugins kept ready in memory; the least recently
    /// used one goes first. Default: 256.
    pub fn cache_capacity(mut self, plugins: usize) -> Self {
        self.config.cache_capacity = plugins.max(1);
        self
    }

    /// Drops the host functions: a worker process gets the rest.
    #[cfg(feature = "worker-process")]
    pub(crate) fn without_host_functions(mut self) -> Self {
        self.config.host_functions.clear();
        self
    }

    pub fn build(self) -> Config {
        self.config
    }
}

/// A rate of log text: records and bytes per second (see
/// [`ConfigBuilder::log_rate`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct LogRate {
    /// Records per second: `log` records, and lines of standard output and
    /// error.
    pub records: u64,
    /// Bytes of log text per second.
    pub bytes: u64,
}

impl LogRate {
    pub fn new(records: u64, bytes: u64) -> LogRate {
        LogRate { records, bytes }
    }
}

/// 1,000 records and 1 MiB per second: a busy plugin's honest logging,
/// where two clients calling a flooding plugin wrote 100 MB a second.
impl Default for LogRate {
    fn default() -> LogRate {
        LogRate { records: 1000, bytes: 1 << 20 }
    }
}

/// The WASI capabilities a host is willing to grant. A plugin gets the
/// intersection of these and what it declares (`WASI-5`). Set through
/// [`ConfigBuilder`].
#[derive(Clone, Debug, Default, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct Allow {
    clock: bool,
    random: bool,
    simulated: bool,
    env: Vec<(String, String)>,
    dirs: Vec<DirGrant>,
}

impl Allow {
    /// The real clocks and real sleeps (`clock`).
    pub fn clock(&self) -> bool {
        self.clock
    }

    /// Whether `clock` and `random` are granted but served virtually
    /// ([`ConfigBuilder::simulate_clock_and_random`]).
    pub fn simulated(&self) -> bool {
        self.simulated
    }

    /// Host entropy (`random`).
    pub fn random(&self) -> bool {
        self.random
    }

    /// Environment variables the plugin may read (`env:NAME`), with values.
    pub fn env(&self) -> &[(String, String)] {
        &self.env
    }

    /// Directories (`fs:/guest:ro|rw`).
    pub fn dirs(&self) -> &[DirGrant] {
        &self.dirs
    }
}

/// A host directory offered at a guest path.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DirGrant {
    host: PathBuf,
    guest: String,
    read_only: bool,
}

/// A directory grant that is not `HOST:/GUEST[:ro|:rw]`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("`{text}` is not a directory grant: {reason}")]
pub struct DirGrantError {
    text: String,
    reason: &'static str,
}

impl DirGrant {
    /// Offers `host` at the absolute guest path `guest`. Fails when `guest`
    /// is not absolute.
    pub fn new(host: impl Into<PathBuf>, guest: impl Into<String>, read_only: bool) -> Result<DirGrant, DirGrantError> {
        let guest = guest.into();
        if !guest.starts_with('/') {
            return Err(DirGrantError { text: guest, reason: "the guest path must be absolute" });
        }
        Ok(DirGrant { host: host.into(), guest, read_only })
    }

    /// Parses `HOST:GUEST[:ro|:rw]`, as `pabi run --dir` takes it.
    pub fn parse(text: &str) -> Result<DirGrant, DirGrantError> {
        let error = |reason| DirGrantError { text: text.to_string(), reason };
        let (rest, read_only) = match text.strip_suffix(":ro") {
            Some(rest) => (rest, true),
            None => (text.strip_suffix(":rw").unwrap_or(text), false),
        };
        // The guest path starts with `/` and holds no `:`, so the split is at
        // the last `:/`: a host path may hold colons of its own.
        let split = rest.rfind(":/").ok_or_else(|| error("give HOST:/GUEST[:ro]"))?;
        let (host, guest) = (&rest[..split], &rest[split + 1..]);
        if host.is_empty() {
            return Err(error("the host directory is empty"));
        }
        DirGrant::new(host, guest, read_only).map_err(|_| error("the guest path must be absolute, as HOST:/GUEST[:ro]"))
    }

    pub fn host(&self) -> &Path {
        &self.host
    }

    pub fn guest(&self) -> &str {
        &self.guest
    }

    pub fn read_only(&self) -> bool {
        self.read_only
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dir_grants_parse() {
        let ro = DirGrant::parse("data:/data:ro").unwrap();
        assert_eq!((ro.host(), ro.guest(), ro.read_only()), (Path::new("data"), "/data", true));
        assert!(!DirGrant::parse("./x:/y").unwrap().read_only());
        assert!(!DirGrant::parse("./x:/y:rw").unwrap().read_only());
        assert!(DirGrant::parse("nocolon").is_err());
        assert!(DirGrant::parse("a:relative").is_err());
        assert!(DirGrant::parse(":/x").is_err());
        // A host path with colons of its own splits at the last `:/`.
        let odd = DirGrant::parse("C:/data/a:b:/guest:ro").unwrap();
        assert_eq!((odd.host(), odd.guest()), (Path::new("C:/data/a:b"), "/guest"));
    }

    #[test]
    fn builder_sets_and_defaults_hold() {
        let defaults = Config::default();
        assert_eq!(defaults.limits(), &Limits::default());
        assert_eq!((defaults.crash_limit(), defaults.crash_window()), (5, Duration::from_secs(60)));
        let config = Config::builder().max_output(10).allow_random(true).crash_limit(0, Duration::ZERO).build();
        assert_eq!(config.limits().max_output, 10);
        assert!(config.allowed().random() && !config.allowed().clock());
        assert_eq!(config.crash_limit(), 1, "a crash limit of 0 would disable every plugin at once");
        assert_eq!(config.to_builder().build().limits().max_output, 10);
        assert!(defaults.serves_wasi());
        assert!(!Config::builder().wasi_profile(false).build().serves_wasi());
    }
}
