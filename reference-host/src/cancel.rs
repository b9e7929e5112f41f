//! [`CancelHandle`]: the one way to stop a call early, for a [`crate::Plugin`]
//! and for a [`crate::Pool`] of either isolation.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

/// Stops a call from any thread: the call ends within about 10 ms with
/// [`crate::Error::Cancelled`], its instance is discarded and replaced
/// (`LIFE-5`), and the cancel does not count toward the crash loop
/// (`LIFE-7`). See [Which type do I use?](crate#which-type-do-i-use).
///
/// Two kinds, one type:
/// - [`crate::Plugin::cancel_handle`] cancels the plugin's call in
///   progress, or, when none is, its next call as soon as it starts;
/// - [`CancelHandle::new`] makes a handle for one call of a pool
///   ([`crate::Pool::call_cancellable`]): the call ends whether it waits in
///   the queue or runs, and a cancel before the call starts refuses it.
///
/// Cheap to clone; clones cancel the same call.
#[derive(Clone, Debug, Default)]
pub struct CancelHandle(Arc<State>);

#[derive(Default)]
struct State {
    /// For a plugin's handle, the flag its running call watches, which
    /// the call takes when it ends on it; for a call's handle, set for good.
    flag: Arc<AtomicBool>,
    /// While a pool's call runs: what stops it where it runs (an
    /// instance's handle, or a cancel frame to a worker process).
    running: Mutex<Option<Stop>>,
}

impl std::fmt::Debug for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CancelHandle").field("cancelled", &self.flag.load(Ordering::Relaxed)).finish_non_exhaustive()
    }
}

/// Stops a running call where it runs.
pub(crate) type Stop = Box<dyn Fn() + Send + Sync>;

impl CancelHandle {
    /// A handle for one call of a pool, not cancelled yet.
    pub fn new() -> CancelHandle {
        CancelHandle::default()
    }

    /// A plugin's handle on the flag its calls watch.
    pub(crate) fn on_flag(flag: Arc<AtomicBool>) -> CancelHandle {
        CancelHandle(Arc::new(State { flag, running: Mutex::default() }))
    }

    pub fn cancel(&self) {
        self.0.flag.store(true, Ordering::Relaxed);
        if let Some(stop) = &*lock(&self.0.running) {
            stop();
        }
    }

    /// Whether [`CancelHandle::cancel`] was called and, for a plugin's
    /// handle, no call has taken the cancel yet.
    pub fn is_cancelled(&self) -> bool {
        self.0.flag.load(Ordering::Relaxed)
    }

    /// Registers `stop` as the way to stop the call in progress, until
    /// the returned guard drops. A cancel that came before stops it at
    /// once. The registration ends under the lock, so that a cancel racing
    /// with the end of the call either reaches the call or finds nothing:
    /// a stop left behind would cancel whatever ran next in its place.
    pub(crate) fn running(&self, stop: Stop) -> Running {
        let mut running = lock(&self.0.running);
        if self.is_cancelled() {
            stop();
        }
        *running = Some(stop);
        Running(self.0.clone())
    }
}

/// A call's registration with its [`CancelHandle`]; ends on drop.
pub(crate) struct Running(Arc<State>);

impl Drop for Running {
    fn drop(&mut self) {
        lock(&self.0.running).take();
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}
