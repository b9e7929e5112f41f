//! What a [`crate::Pool`] is built from: where its instances run, and the
//! settings every isolation shares.

use std::time::Duration;

/// Where a pool's instances run. See [Which type do I use?](crate#which-type-do-i-use).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
// More kinds may come (a container, a VM); callers match with a wildcard.
#[non_exhaustive]
pub enum Isolation {
    /// In this process: the fastest; a plugin is contained by the wasm
    /// sandbox and the host's limits.
    #[default]
    // The names a serve configuration used before the two were named for
    // where the instances run.
    #[serde(alias = "thread")]
    InProcess,
    /// In a worker process of its own, with OS limits (`SEC-1`), restarted
    /// when it dies: a fault of the engine or the host behind a plugin
    /// takes down only its worker. Unix only.
    #[cfg(feature = "worker-process")]
    #[serde(alias = "process")]
    WorkerProcess,
}

impl std::str::FromStr for Isolation {
    type Err = String;
    fn from_str(text: &str) -> Result<Isolation, String> {
        match text {
            "in_process" | "thread" => Ok(Isolation::InProcess),
            #[cfg(feature = "worker-process")]
            "worker_process" | "process" => Ok(Isolation::WorkerProcess),
            other => Err(format!("`{other}` is not an isolation; use `in_process` or `worker_process`")),
        }
    }
}

/// The settings of a pool that every isolation shares, as
/// [`crate::PoolBuilder`] sets them; they cross the worker protocol as they are
/// (`spec/schemas/worker-protocol.schema.json`, `pool`).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct PoolSettings {
    pub instances: usize,
    pub max_queue: usize,
    pub queue_timeout: Duration,
    pub plugin_config: Vec<u8>,
}
