//! Virtual time for plugins without the `clock` capability (`WASI-6`).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A clock that moves only when the plugin sleeps. It starts at one second,
/// not 0: Go's runtime aborts when its monotonic clock reads 0 (`WASI-6`).
#[derive(Clone)]
pub(crate) struct VirtualClock(Arc<AtomicU64>);

/// Where every virtual clock starts, in nanoseconds.
pub(crate) const VIRTUAL_CLOCK_START: u64 = 1_000_000_000;

impl Default for VirtualClock {
    fn default() -> Self {
        VirtualClock(Arc::new(AtomicU64::new(VIRTUAL_CLOCK_START)))
    }
}

impl VirtualClock {
    /// A virtual clock that starts at `nanos` (at least
    /// [`VIRTUAL_CLOCK_START`]).
    pub(crate) fn starting_at(nanos: u64) -> VirtualClock {
        VirtualClock(Arc::new(AtomicU64::new(nanos.max(VIRTUAL_CLOCK_START))))
    }

    pub(crate) fn now_nanos(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }

    pub(crate) fn advance_to(&self, nanos: u64) {
        self.0.fetch_max(nanos, Ordering::Relaxed);
    }
}

impl wasmtime_wasi::HostWallClock for VirtualClock {
    fn resolution(&self) -> Duration {
        Duration::from_nanos(1)
    }
    fn now(&self) -> Duration {
        Duration::from_nanos(self.now_nanos())
    }
}

impl wasmtime_wasi::HostMonotonicClock for VirtualClock {
    fn resolution(&self) -> u64 {
        1
    }
    fn now(&self) -> u64 {
        self.now_nanos()
    }
}

/// The real monotonic clock of a plugin granted `clock`, counted from the
/// instance's creation. The host owns it, so that `poll_oneoff` can read an
/// absolute monotonic deadline in the same units the plugin sees.
#[derive(Clone, Copy)]
pub(crate) struct RealClock(Instant);

impl Default for RealClock {
    fn default() -> Self {
        RealClock(Instant::now())
    }
}

impl RealClock {
    pub(crate) fn now_nanos(&self) -> u64 {
        u64::try_from(self.0.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }
}

impl wasmtime_wasi::HostMonotonicClock for RealClock {
    fn resolution(&self) -> u64 {
        1
    }
    fn now(&self) -> u64 {
        self.now_nanos()
    }
}

/// The clock a WASI plugin sees: virtual without `clock`, real with it.
#[derive(Clone)]
pub(crate) enum PluginClock {
    Virtual(VirtualClock),
    Real(RealClock),
}
