//! What a [`crate::Pool`] reports of itself, whatever its isolation.

use crate::Isolation;

/// A snapshot of a pool's counters, for metrics and status pages.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct PoolStats {
    pub isolation: Isolation,
    /// The instances the pool keeps.
    pub size: usize,
    /// Instances that exist now, idle or busy.
    pub live: usize,
    /// Instances serving a call.
    pub busy: usize,
    /// Calls waiting for an instance.
    pub waiting: usize,
    /// Reloads so far.
    pub reloads: u64,
    /// Calls started so far.
    pub calls: u64,
    /// Async calls that ran in place, on the executor thread that awaited
    /// them, rather than on a blocking thread ([`crate::Pool::call_async`]);
    /// always 0 in a worker process.
    pub calls_in_place: u64,
    /// Async calls that waited in the queue and ran on the thread that
    /// ended the call before them, on its instance, without a wake-up of
    /// their task and a hop to a thread of their own
    /// ([`crate::Pool::call_async`]); always 0 in a worker process.
    pub calls_handed_on: u64,
    /// Whether the plugin is disabled by a crash loop (`LIFE-7`): a call
    /// was refused with `CRASH_LOOP` less than
    /// [`crate::Config::crash_reset`] ago and none has succeeded since.
    /// Once the reset time has passed, the next call tries the plugin
    /// again.
    pub disabled: bool,
    /// Log records of the plugin dropped, past the log cap of a call
    /// (`LIM-11`) or past its log rate ([`crate::ConfigBuilder::log_rate`]),
    /// since it was first loaded in the pool's host (or, in a worker
    /// process, since the pool was built).
    pub log_records_dropped: u64,
    /// The bytes of log text dropped with them.
    pub log_bytes_dropped: u64,
    /// The worker process, under [`Isolation::WorkerProcess`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub worker: Option<WorkerStats>,
}

/// A pool's worker process.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct WorkerStats {
    /// Its process id, while one lives.
    pub pid: Option<u32>,
    /// Workers started after the first.
    pub restarts: u64,
}
