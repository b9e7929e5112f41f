//! The checks' engine: the reference host with its default limits.

use pabi_host::{Config, Error, Host, Plugin};

use crate::engine::{Engine, HostFailure, Outcome, PluginUnderTest};

/// Runs plugins in [`pabi_host`] with the spec's default limits.
#[derive(Clone, Debug)]
pub struct ReferenceEngine {
    host: Host,
}

impl ReferenceEngine {
    /// The reference host with default limits. Fails only if the wasm
    /// engine cannot start.
    pub fn new() -> anyhow::Result<Self> {
        Self::with_config(Config::default())
    }

    pub fn with_config(config: Config) -> anyhow::Result<Self> {
        Ok(ReferenceEngine { host: Host::new(config)? })
    }
}

fn failure(error: Error) -> HostFailure {
    HostFailure {
        kind: error.kind(),
        status: error.status(),
        message: error.message().map(<[u8]>::to_vec).unwrap_or_default(),
        detail: error.to_string(),
    }
}

impl Engine for ReferenceEngine {
    type Plugin = Plugin;

    fn load(&self, wasm: &[u8], config: &[u8]) -> Outcome<Plugin> {
        self.host.load_with_config(wasm, config).map_err(failure)
    }
}

impl PluginUnderTest for Plugin {
    fn call(&mut self, function: &str, input: &[u8]) -> Outcome<Vec<u8>> {
        Plugin::call(self, function, input).map_err(failure)
    }

    fn memory_bytes(&mut self) -> u64 {
        Plugin::memory_bytes(self)
    }

    fn has_state(&self) -> bool {
        Plugin::has_state(self)
    }

    fn save_state(&mut self) -> Outcome<Vec<u8>> {
        Plugin::save_state(self).map_err(failure)
    }

    fn load_state(&mut self, state: &[u8]) -> Outcome<()> {
        Plugin::load_state(self, state).map_err(failure)
    }

    fn shutdown(self) -> Outcome<()> {
        Plugin::shutdown(self).map_err(failure)
    }

    fn abort_next_call(&mut self) {
        self.interrupt_next_call();
    }

    fn max_output(&self) -> u64 {
        self.host().config().limits.max_output
    }

    fn max_error_message(&self) -> u64 {
        self.host().config().limits.max_error_message
    }
}
