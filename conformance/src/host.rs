//! What the checks need from a host. The reference host implements it; the
//! trait keeps the checks free of engine details.

use pabi_abi::HostErrorKind;

/// A failed call, load or lifecycle step, as the host reported it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostFailure {
    /// `None` when the host itself could not serve (not a plugin failure).
    pub kind: Option<HostErrorKind>,
    /// The plugin's status, for PLUGIN_ERROR and UNKNOWN_STATUS.
    pub status: Option<i32>,
    /// The bytes the plugin passed to `error_write`, unconverted.
    pub message: Vec<u8>,
    /// The host's full description, starting with the kind's name (trap
    /// kind, backtrace, clause); what `Display` shows when present.
    pub detail: String,
}

impl HostFailure {
    /// Whether this is a plugin-reported error with a defined status: 1-4
    /// or 64-127 (`ERR-1`, `ERR-3`). Anything else is a host-side failure.
    pub fn is_defined_plugin_error(&self) -> bool {
        self.kind == Some(HostErrorKind::PluginError)
            && self.status.is_some_and(|s| pabi_abi::Status::from_code(s).is_some_and(|s| s.code() != 0))
    }
}

impl std::fmt::Display for HostFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if !self.detail.is_empty() {
            return f.write_str(&self.detail);
        }
        match self.kind {
            Some(kind) => write!(f, "{kind}")?,
            None => f.write_str("the host could not serve")?,
        }
        if let Some(status) = self.status {
            write!(f, " (status {status})")?;
        }
        Ok(())
    }
}

/// What a host gives back for a load or a call.
pub type HostResult<T> = Result<T, HostFailure>;

/// A host that loads plugins for checking.
pub trait TestHost {
    type Plugin: PluginUnderTest;

    /// Loads the plugin and initialises one instance with `config`.
    fn load(&self, wasm: &[u8], config: &[u8]) -> HostResult<Self::Plugin>;

    /// Compiles the plugin ahead of the checks, which then load it on
    /// several threads at once: without it, each of them would compile it.
    /// A failure is left for the first load to report.
    fn precompile(&self, wasm: &[u8]) {
        let _ = wasm;
    }

    /// Loads the plugin on a host that offers only some of its declared
    /// host calls (ABI 1.1): the others are absent (`CALL-5`). A host
    /// without host calls loads it as [`TestHost::load`] does.
    fn load_offering(&self, wasm: &[u8], config: &[u8], offer: &Offer) -> HostResult<Self::Plugin> {
        let _ = offer;
        self.load(wasm, config)
    }
}

/// Which of a plugin's declared host calls the host offers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Offer {
    All,
    RequiredOnly,
    /// These names (those the plugin declares among them).
    Only(Vec<String>),
}

/// The offer in words, for a failure message.
impl std::fmt::Display for Offer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Offer::All => f.write_str("every declared host call offered"),
            Offer::RequiredOnly => f.write_str("only the required host calls offered"),
            Offer::Only(names) if names.is_empty() => f.write_str("no host call offered"),
            Offer::Only(names) => write!(f, "only {} offered", names.join(", ")),
        }
    }
}

/// How the conformance host plays the application's side of host calls:
/// per call, or a state held for as long as it is set, across calls.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum Application {
    /// Each call succeeds with its request as the reply.
    Echo,
    /// Answers from a host-call table.
    Table(pabi_testkit::host_calls::HostCallTable),
    /// These answers, in order, one per host call; echo after the last.
    /// The `host-calls` check generates and shrinks them.
    Script(Vec<ScriptedAnswer>),
    /// The application is down: every host call fails with this message
    /// (`CALL-4`).
    Down(String),
    /// The application is slow: every host call is answered as `Echo`
    /// does, each after this long (`CALL-7`).
    Slow(std::time::Duration),
}

/// One answer of a script, and how long the application takes to give it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScriptedAnswer {
    pub answer: pabi_testkit::host_calls::Answer,
    pub delay: std::time::Duration,
}

/// One host call the plugin made and what the application answered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AnsweredCall {
    pub name: String,
    pub request: Vec<u8>,
    pub answer: pabi_testkit::host_calls::Answer,
}

/// A loaded plugin; the host re-creates its instance after a failure.
pub trait PluginUnderTest {
    fn call(&mut self, function: &str, input: &[u8]) -> HostResult<Vec<u8>>;
    /// Linear memory of the current instance, in bytes.
    fn memory_bytes(&mut self) -> u64;
    fn has_state(&self) -> bool;
    fn save_state(&mut self) -> HostResult<Vec<u8>>;
    fn load_state(&mut self, state: &[u8]) -> HostResult<()>;
    /// Retires the instance normally, running `pabi_shutdown`.
    fn shutdown(self) -> HostResult<()>;
    /// Makes the next call abort as a passed deadline would.
    fn abort_next_call(&mut self);
    /// The memory cap the host enforces.
    fn max_memory(&self) -> u64;
    /// The output cap the host enforces.
    fn max_output(&self) -> u64;
    /// The error-message cap the host enforces.
    fn max_error_message(&self) -> u64;
    /// The deadline of each call (`LIM-3`).
    fn deadline(&self) -> std::time::Duration {
        pabi_abi::Limits::default().timeout
    }
    /// Sets how the application answers host calls from now on (and
    /// restarts a random one from its seed). A host without host calls
    /// ignores it.
    fn set_application(&mut self, application: Application) {
        let _ = application;
    }
    /// The coverage bits of an instrumented copy
    /// ([`crate::coverage::instrument`]) set since the last read, counter
    /// `k` at index `k`; the first read starts the count and holds what
    /// loading reached. `None`: the host cannot read them, and the
    /// `explore` check skips.
    fn coverage(&mut self) -> Option<Vec<u64>> {
        None
    }
    /// The host calls made since the last take, with their answers.
    fn take_host_calls(&mut self) -> Vec<AnsweredCall> {
        Vec::new()
    }
}
