//! The reference host as the checks' [`TestHost`], with its default limits.

use std::collections::HashMap;
use std::sync::Mutex;

use pabi_abi::{Capability, Metadata};
use pabi_host::{Config, DirGrant, Error, Host, Plugin};

use crate::host::{HostFailure, HostResult, PluginUnderTest, TestHost};

/// Runs plugins in [`pabi_host`] with the spec's default limits, granting
/// what a plugin declares: the real clock and entropy, an empty value for
/// each `env:NAME`, and an empty scratch folder for each `fs:` path.
#[derive(Debug)]
pub struct ReferenceHost {
    base: Host,
    /// Hosts for plugins that declare `env:` or `fs:` capabilities, by the
    /// sorted list of those capabilities.
    scoped: Mutex<HashMap<Vec<String>, Host>>,
    scratch: tempfile::TempDir,
}

impl ReferenceHost {
    /// The reference host with default limits. Fails only if the wasm
    /// engine or the scratch folder cannot be set up.
    pub fn new() -> anyhow::Result<Self> {
        let config = Config::builder().allow_clock(true).allow_random(true).build();
        Ok(ReferenceHost { base: Host::new(config)?, scoped: Mutex::default(), scratch: tempfile::tempdir()? })
    }

    /// The host for a plugin: the base one, or one that also offers the
    /// plugin's `env:` and `fs:` capabilities.
    fn host_for(&self, wasm: &[u8]) -> Host {
        let declared = pabi_abi::find_custom_sections(wasm, pabi_abi::METADATA_SECTION)
            .ok()
            .and_then(|sections| sections.first().and_then(|s| Metadata::parse(&wasm[s.data.clone()]).ok()))
            .map(|m| m.capabilities)
            .unwrap_or_default();
        let mut scoped: Vec<Capability> =
            declared.into_iter().filter(|c| matches!(c, Capability::Env(_) | Capability::Fs { .. })).collect();
        if scoped.is_empty() {
            return self.base.clone();
        }
        scoped.sort();
        let key: Vec<String> = scoped.iter().map(ToString::to_string).collect();
        let mut hosts = self.scoped.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(host) = hosts.get(&key) {
            return host.clone();
        }
        let mut config = self.base.config().to_builder();
        for (i, capability) in scoped.into_iter().enumerate() {
            match capability {
                Capability::Env(name) => config = config.allow_env(name, ""),
                Capability::Fs { guest_path, read_only } => {
                    let host_dir = self.scratch.path().join(format!("dir{i}"));
                    let grant = DirGrant::new(host_dir.clone(), guest_path, read_only);
                    if let (Ok(grant), Ok(())) = (grant, std::fs::create_dir_all(&host_dir)) {
                        config = config.allow_dir(grant);
                    }
                }
                _ => {}
            }
        }
        let host = Host::new(config.build()).unwrap_or_else(|_| self.base.clone());
        hosts.insert(key, host.clone());
        host
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

impl TestHost for ReferenceHost {
    type Plugin = Plugin;

    fn load(&self, wasm: &[u8], config: &[u8]) -> HostResult<Plugin> {
        self.host_for(wasm).load_with_config(wasm, config).map_err(failure)
    }
}

impl PluginUnderTest for Plugin {
    fn call(&mut self, function: &str, input: &[u8]) -> HostResult<Vec<u8>> {
        Plugin::call(self, function, input).map_err(failure)
    }

    fn memory_bytes(&mut self) -> u64 {
        Plugin::memory_bytes(self)
    }

    fn has_state(&self) -> bool {
        Plugin::has_state(self)
    }

    fn save_state(&mut self) -> HostResult<Vec<u8>> {
        Plugin::save_state(self).map_err(failure)
    }

    fn load_state(&mut self, state: &[u8]) -> HostResult<()> {
        Plugin::load_state(self, state).map_err(failure)
    }

    fn shutdown(self) -> HostResult<()> {
        Plugin::shutdown(self).map_err(failure)
    }

    fn abort_next_call(&mut self) {
        self.cancel_handle().cancel();
    }

    fn max_memory(&self) -> u64 {
        self.host_config().limits().max_memory
    }

    fn max_output(&self) -> u64 {
        self.host_config().limits().max_output
    }

    fn max_error_message(&self) -> u64 {
        self.host_config().limits().max_error_message
    }
}
