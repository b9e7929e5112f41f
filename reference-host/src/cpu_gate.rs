//! The bound on plugin calls that run wasm at once, shared fairly between
//! plugins: [`CpuGate`].
//!
//! A permit per call alone would not do: while long CPU-bound calls hold
//! every permit, a short call waits for a whole long call. So a call that
//! has run for a time slice while another call waits gives its permit up,
//! from the epoch callback the deadline already uses, and waits for its
//! next turn. Turns go to plugins, not to calls: each plugin (a pool, or a
//! lone [`crate::Plugin`]) has a lane of waiting calls, first come first
//! served within it, and a freed permit goes to the lane that has held
//! permits for the least time, so a plugin with one waiting call gets the
//! next permit even when another plugin has a hundred waiting, and a plugin
//! of short calls goes before plugins that burn CPU: counting turns
//! instead would make a short call wait for a turn of every burner.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// How long a call runs, while another waits, before it gives its permit
/// up, by default: one epoch tick ([`crate::store::EPOCH_TICK`]), the finest
/// the epoch can interrupt. Spelled out: the gate sits below the store.
const DEFAULT_SLICE: Duration = Duration::from_millis(2);

/// How often a call waiting for its turn looks at its cancel flag: a
/// cancel takes effect within about this long, as in wasm (`store.rs`).
const CANCEL_LOOK: Duration = Duration::from_millis(10);

/// At most `permits` plugin calls run wasm at once, in every host given
/// this gate ([`crate::ConfigBuilder::cpu_gate`]), and the permits go
/// round the plugins that wait, least CPU time first: a call that has run for a time slice (one
/// epoch tick, 2 ms) while another call waits gives its permit up and
/// waits for its next turn, and a call blocked in a host call's handler or
/// a real sleep holds no permit. A plugin with little work so keeps a
/// latency close to the one it has alone, whatever its neighbours run.
///
/// A call's deadline keeps running while it waits for a turn (`LIM-3` is
/// wall time): a plugin whose calls need all their deadline alone may time
/// out under load. A cancel ends a waiting call as it ends a running one.
///
/// A host without a gate (the default) runs every call at once, and pays
/// nothing for it. Calls of a pool in a worker process
/// ([`crate::Isolation::WorkerProcess`]) are not gated: the worker's
/// configuration crosses a process boundary, the gate does not; the
/// operating system schedules the worker processes.
///
/// ```
/// # fn main() -> Result<(), pabi_host::Error> {
/// use pabi_host::{Config, CpuGate, Host};
///
/// // Every plugin of both hosts shares the 2 permits.
/// let gate = CpuGate::new(2);
/// let a = Host::new(Config::builder().cpu_gate(gate.clone()).build())?;
/// let b = Host::new(Config::builder().cpu_gate(gate.clone()).build())?;
/// assert_eq!((gate.permits(), gate.waiting()), (2, 0));
/// # drop((a, b));
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct CpuGate {
    inner: Arc<Inner>,
}

struct Inner {
    permits: usize,
    slice: Duration,
    /// Calls waiting for a turn, read without the lock by every running
    /// call's epoch callback.
    waiting: AtomicUsize,
    state: Mutex<State>,
}

struct State {
    free: usize,
    /// Every plugin with calls waiting, and those ahead of them in time
    /// held.
    lanes: Vec<Lane>,
}

/// The calls of one plugin waiting for a turn, and the time its calls
/// held permits.
struct Lane {
    key: usize,
    waiters: VecDeque<Arc<Waiter>>,
    /// Time its calls held permits while others waited. A lane that comes
    /// back after a pause starts level with the least-served lane that
    /// waits: no credit banked while idle.
    used: Duration,
}

#[derive(Default)]
struct Waiter {
    granted: AtomicBool,
    wake: Condvar,
}

/// Why a call stopped waiting for its turn.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum NoTurn {
    Cancelled,
    DeadlinePassed,
}

impl CpuGate {
    /// A gate of `permits` permits (at least 1), with time slices of 2 ms
    /// (one epoch tick).
    pub fn new(permits: usize) -> CpuGate {
        CpuGate::with_slice(permits, DEFAULT_SLICE)
    }

    /// A gate of `permits` permits (at least 1), whose calls run for
    /// `slice` while others wait before they give their permit up (taken
    /// in whole epoch ticks of 2 ms). A longer slice trades the latency of
    /// short calls for fewer switches.
    pub fn with_slice(permits: usize, slice: Duration) -> CpuGate {
        let permits = permits.max(1);
        CpuGate {
            inner: Arc::new(Inner {
                permits,
                slice,
                waiting: AtomicUsize::new(0),
                state: Mutex::new(State { free: permits, lanes: Vec::new() }),
            }),
        }
    }

    /// How many calls may run wasm at once.
    pub fn permits(&self) -> usize {
        self.inner.permits
    }

    /// How long a call runs while others wait before it gives its permit up.
    pub fn slice(&self) -> Duration {
        self.inner.slice
    }

    /// Calls waiting for their turn now.
    pub fn waiting(&self) -> usize {
        self.inner.waiting.load(Ordering::Relaxed)
    }

    /// Whether another call waits: read by the epoch callback of every
    /// running call, without the lock.
    pub(crate) fn has_waiters(&self) -> bool {
        self.inner.waiting.load(Ordering::Relaxed) > 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.inner.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Takes a permit for a call of the plugin `lane`, waiting for its turn
    /// until `end` or a cancel (`cancel` is then cleared, as the epoch
    /// callback clears it).
    pub(crate) fn acquire(&self, lane: usize, cancel: &AtomicBool, end: Instant) -> Result<(), NoTurn> {
        let waiter = {
            let mut state = self.lock();
            if state.free > 0 && state.lanes.iter().all(|l| l.waiters.is_empty()) {
                state.free -= 1;
                return Ok(());
            }
            let waiter = Arc::new(Waiter::default());
            state.enqueue(lane, waiter.clone());
            self.inner.waiting.fetch_add(1, Ordering::Relaxed);
            // A permit may be free while others wait only for an instant
            // (between a release and the grant): grant now rather than wait.
            self.grant_free(&mut state);
            waiter
        };
        let mut state = self.lock();
        loop {
            if waiter.granted.load(Ordering::Relaxed) {
                return Ok(());
            }
            let stop = if cancel.swap(false, Ordering::Relaxed) {
                Some(NoTurn::Cancelled)
            } else if Instant::now() >= end {
                Some(NoTurn::DeadlinePassed)
            } else {
                None
            };
            if let Some(why) = stop {
                state.remove(lane, &waiter);
                self.inner.waiting.fetch_sub(1, Ordering::Relaxed);
                return Err(why);
            }
            let wait = end.saturating_duration_since(Instant::now()).min(CANCEL_LOOK);
            state = waiter.wake.wait_timeout(state, wait).unwrap_or_else(|p| p.into_inner()).0;
        }
    }

    /// Gives back a permit that a call of the plugin `lane` held for
    /// `held`: to the next lane's first waiter, or to the free count when
    /// none waits.
    pub(crate) fn release(&self, lane: usize, held: Duration) {
        let mut state = self.lock();
        state.free += 1;
        // Time counts only while someone waits: without contention there
        // is nothing to share.
        if state.lanes.iter().any(|l| !l.waiters.is_empty()) {
            state.charge(lane, held);
        }
        self.grant_free(&mut state);
    }

    /// Hands free permits to waiters, fairest lane first.
    fn grant_free(&self, state: &mut State) {
        while state.free > 0 {
            let Some(waiter) = state.next_waiter() else { return };
            state.free -= 1;
            self.inner.waiting.fetch_sub(1, Ordering::Relaxed);
            waiter.granted.store(true, Ordering::Relaxed);
            waiter.wake.notify_one();
        }
    }
}

impl State {
    /// The least time held by a lane that waits.
    fn floor(&self) -> Option<Duration> {
        self.lanes.iter().filter(|l| !l.waiters.is_empty()).map(|l| l.used).min()
    }

    /// The lane of `key`, made at the floor if it has gone.
    fn lane(&mut self, key: usize) -> &mut Lane {
        let floor = self.floor().unwrap_or_default();
        let at = match self.lanes.iter().position(|l| l.key == key) {
            Some(at) => at,
            None => {
                self.lanes.push(Lane { key, waiters: VecDeque::new(), used: floor });
                self.lanes.len() - 1
            }
        };
        &mut self.lanes[at]
    }

    fn charge(&mut self, key: usize, held: Duration) {
        let lane = self.lane(key);
        lane.used = lane.used.saturating_add(held);
    }

    fn enqueue(&mut self, key: usize, waiter: Arc<Waiter>) {
        let floor = self.floor().unwrap_or_default();
        let lane = self.lane(key);
        if lane.waiters.is_empty() {
            lane.used = lane.used.max(floor);
        }
        lane.waiters.push_back(waiter);
    }

    /// The first waiter of the lane that held permits for the least time
    /// (then of the one with fewer calls waiting: the plugin with little
    /// work goes first).
    fn next_waiter(&mut self) -> Option<Arc<Waiter>> {
        let lane = self.lanes.iter_mut().filter(|l| !l.waiters.is_empty()).min_by_key(|l| (l.used, l.waiters.len()))?;
        let waiter = lane.waiters.pop_front();
        self.forget_idle();
        waiter
    }

    /// Drops the lanes with no waiter whose turn count the floor has
    /// caught up with: coming back, they would start at the floor anyway.
    /// So the lanes kept are bounded by the calls that wait.
    fn forget_idle(&mut self) {
        let floor = self.floor();
        // An idle lane ahead of the floor keeps its time while some lane
        // waits below it: a plugin cannot shed its debt by pausing.
        self.lanes.retain(|l| !l.waiters.is_empty() || floor.is_some_and(|f| l.used > f));
    }

    fn remove(&mut self, key: usize, waiter: &Arc<Waiter>) {
        if let Some(lane) = self.lanes.iter_mut().find(|l| l.key == key) {
            lane.waiters.retain(|w| !Arc::ptr_eq(w, waiter));
        }
        self.forget_idle();
    }
}

impl std::fmt::Debug for CpuGate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CpuGate").field("permits", &self.permits()).field("waiting", &self.waiting()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn far() -> Instant {
        Instant::now() + Duration::from_secs(30)
    }

    fn wait_until(done: impl Fn() -> bool) {
        let started = Instant::now();
        while !done() {
            assert!(started.elapsed() < Duration::from_secs(10), "timed out");
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    #[test]
    fn a_plugin_with_one_waiting_call_goes_before_one_with_many() {
        let gate = CpuGate::new(1);
        let never = AtomicBool::new(false);
        gate.acquire(0, &never, far()).unwrap();
        let order = Arc::new(Mutex::new(Vec::new()));
        let waiter = |lane: usize| {
            let (gate, order) = (gate.clone(), order.clone());
            std::thread::spawn(move || {
                gate.acquire(lane, &AtomicBool::new(false), far()).unwrap();
                order.lock().unwrap().push(lane);
                gate.release(lane, Duration::from_millis(1));
            })
        };
        let mut threads: Vec<_> = (0..5).map(|_| waiter(1)).collect();
        wait_until(|| gate.waiting() == 5);
        threads.push(waiter(2));
        wait_until(|| gate.waiting() == 6);
        gate.release(0, Duration::from_millis(1));
        threads.into_iter().for_each(|t| t.join().unwrap());
        let order = order.lock().unwrap();
        assert_eq!(order.first(), Some(&2), "{order:?}");
        assert_eq!((gate.waiting(), gate.lock().free), (0, 1));
    }

    #[test]
    fn a_waiting_call_stops_at_a_cancel_or_its_end() {
        let gate = CpuGate::new(1);
        let never = AtomicBool::new(false);
        gate.acquire(0, &never, far()).unwrap();
        let cancel = AtomicBool::new(true);
        assert_eq!(gate.acquire(1, &cancel, far()), Err(NoTurn::Cancelled));
        assert!(!cancel.load(Ordering::Relaxed), "the cancel is taken");
        assert_eq!(gate.acquire(1, &never, Instant::now()), Err(NoTurn::DeadlinePassed));
        assert_eq!(gate.waiting(), 0);
        gate.release(0, Duration::ZERO);
        gate.acquire(1, &never, far()).unwrap();
    }
}
