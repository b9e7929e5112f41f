//! The host an embedder holds: configuration, engine and cache, shared by
//! every clone and every plugin it loads.

use std::sync::Arc;

use crate::config::Config;
use crate::engine::HostCore;
use crate::plugin::Plugin;
use crate::Error;

/// A configured host. Cheap to clone; every clone shares the engine, the
/// cache of prepared plugins and the epoch ticker.
///
/// One host serves many plugins; each plugin instance has its own `Store`.
/// See [Which type do I use?](crate#which-type-do-i-use).
#[derive(Clone)]
pub struct Host {
    shared: Arc<HostCore>,
}

impl std::fmt::Debug for Host {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Host").field("config", &self.shared.config).finish_non_exhaustive()
    }
}

impl Host {
    /// Builds the engine. Fails only with [`Error::HostUnavailable`], when
    /// the engine cannot be set up (for example, the pooling allocator cannot
    /// reserve its address space).
    pub fn new(config: Config) -> Result<Host, Error> {
        let offered = config.abi_version();
        if offered.major != pabi_abi::HOST_ABI.major || !pabi_abi::HOST_ABI.accepts(offered) {
            return Err(Error::HostUnavailable(crate::Unavailable::Unsupported {
                clause: pabi_abi::Clause::Call9,
                detail: format!("this host implements ABI {}, and cannot offer ABI {offered}", pabi_abi::HOST_ABI),
            }));
        }
        if let Some((function, fault)) = config.host_functions().iter().find_map(|f| Some((f, f.name_fault()?))) {
            return Err(Error::HostUnavailable(crate::Unavailable::Unsupported {
                clause: pabi_abi::Clause::Call2,
                detail: format!("`{}` cannot be a host function: {fault}", function.name()),
            }));
        }
        Ok(Host { shared: Arc::new(HostCore::new(config)?) })
    }

    pub fn config(&self) -> &Config {
        &self.shared.config
    }

    /// This host with other [`Limits`](crate::Limits): how one plugin gets a
    /// longer deadline, more fuel or a smaller memory than its neighbours.
    /// The new host shares this one's engine, compiled plugins and host
    /// functions, so it costs no compile and no address space; plugins
    /// loaded through it (and pools built from it) get its limits.
    ///
    /// Most limits belong to each call's store and may take any value. Four
    /// belong to the engine this host was built with, and bound the rest:
    /// fuel can be counted only if this host counts it, the wasm stack is
    /// the engine's, and with pooling neither memory nor table may exceed
    /// this host's. Asking past them is [`Error::HostUnavailable`] with
    /// [`Unavailable::Unsupported`](crate::Unavailable::Unsupported) naming
    /// the limit's clause.
    ///
    /// ```
    /// # fn main() -> Result<(), pabi_host::Error> {
    /// use std::time::Duration;
    ///
    /// let host = pabi_host::Host::new(pabi_host::Config::default())?;
    /// let mut limits = host.config().limits().clone();
    /// limits.timeout = Duration::from_secs(10);
    /// let patient = host.with_limits(limits)?;
    /// assert_eq!(patient.config().limits().timeout, Duration::from_secs(10));
    /// assert_eq!(host.config().limits().timeout, Duration::from_secs(1));
    /// # Ok(()) }
    /// ```
    pub fn with_limits(&self, limits: crate::Limits) -> Result<Host, Error> {
        Ok(Host { shared: Arc::new(self.shared.with_limits(limits)?) })
    }

    /// Loads a plugin with an empty configuration. See [`Host::load_with_plugin_config`].
    pub fn load(&self, wasm: &[u8]) -> Result<Plugin, Error> {
        self.load_with_plugin_config(wasm, b"")
    }

    /// Validates and compiles the plugin (or takes it from the cache),
    /// instantiates it and initialises it: `_initialize`, then
    /// `pabi_init(plugin_config)` (`LIFE-1`, `LIFE-2`). The plugin's
    /// configuration is its own bytes, not this host's [`Config`].
    pub fn load_with_plugin_config(&self, wasm: &[u8], plugin_config: &[u8]) -> Result<Plugin, Error> {
        let prepared = self.shared.prepared(wasm)?;
        Plugin::start(self.shared.clone(), prepared, plugin_config.to_vec())
    }

    /// Validates and compiles a plugin into the cache without instantiating
    /// it, so that a later load costs no compile. Reports the same static
    /// errors a load would.
    pub fn precompile(&self, wasm: &[u8]) -> Result<(), Error> {
        self.shared.prepared(wasm).map(drop)
    }
}
