//! The bound on plugin calls that run wasm at once, shared fairly between
//! plugins: [`CpuGate`].
//!
//! A permit per call alone would not do: while long CPU-bound calls hold
//! every permit, a short call waits for a whole long call. So a call that
//! has run for a time slice while another call waits gives its permit up,
//! from the epoch callback the deadline already uses, and waits for its
//! next turn. The epoch ticks every 2 ms, too coarse for a short call to
//! wait for: a call that arrives to wait advances the epoch of every
//! engine the gate serves, so a call past its slice gives its permit up
//! within microseconds; and a call whose plugin is next in line (it held
//! permits the least: a light plugin) takes a permit from a call that has
//! run a tenth of its slice, without waiting for the slice to end (when
//! none has run that long yet, it advances the epochs again the moment
//! the first one has). Turns go to plugins, not to calls: each plugin (a pool, or a
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
/// up, by default. Short enough that a light plugin's call waits less than
/// its own time alone; long enough that calls switching permits (a few
/// microseconds each) cost the burners under 1 %.
const DEFAULT_SLICE: Duration = Duration::from_micros(500);

/// The part of a slice a call runs at least before an urgent arrival
/// ([`CpuGate::acquire`]) takes its permit: 50 µs of the default slice.
/// Switching permits costs a few microseconds, which this keeps a small
/// part of a turn, and a longer slice lengthens it in step.
const MIN_TURN_PER_SLICE: u32 = 10;

/// How often a call waiting for its turn looks at its cancel flag: a
/// cancel takes effect within about this long, as in wasm (`store.rs`).
const CANCEL_LOOK: Duration = Duration::from_millis(10);

/// At most `permits` plugin calls run wasm at once, in every host given
/// this gate ([`crate::ConfigBuilder::cpu_gate`]), and the permits go
/// round the plugins that wait, least CPU time first: a call that has run
/// for a time slice (0.5 ms) while another call waits gives its permit up
/// and waits for its next turn, and a call blocked in a host call's handler or
/// a real sleep holds no permit. A plugin with little work so keeps a
/// latency close to the one it has alone, whatever its neighbours run.
///
/// A call's deadline keeps running while it waits for a turn (`LIM-3` is
/// wall time): a plugin whose calls need all their deadline alone may time
/// out under load. A cancel ends a waiting call as it ends a running one.
///
/// A short async call that a pool runs in place, on the executor thread
/// that polls it ([`crate::Pool::call_async`]), takes no turn: waiting
/// there would hold the executor thread. At most one such call per
/// executor thread runs outside the gate, each of a plugin whose calls
/// compute under 0.1 ms on average.
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
    /// The engines whose calls take this gate's permits: a call that
    /// arrives to wait advances their epochs, so that a call that has run
    /// for its slice gives its permit up now rather than at the next tick.
    engines: Mutex<Vec<wasmtime::EngineWeak>>,
    /// Calls waiting for a turn, read without the lock by every running
    /// call's epoch callback.
    waiting: AtomicUsize,
    /// Set when a call arrives whose plugin is next in line: the first
    /// running call that has run a tenth of its slice gives its permit up
    /// at once and clears it.
    urgent: AtomicBool,
    state: Mutex<State>,
}

struct State {
    free: usize,
    /// Every plugin with calls waiting, and those ahead of them in time
    /// held.
    lanes: Vec<Lane>,
    /// When each permit held now was granted: when the first holder may be
    /// cut short for a call next in line.
    granted: Vec<Instant>,
}

/// The calls of one plugin waiting for a turn, and the time its calls
/// held permits.
struct Lane {
    key: usize,
    waiters: VecDeque<Arc<Waiter>>,
    /// Time its calls held permits while others waited. A lane that comes
    /// back after a pause starts one slice ahead of the least-served lane
    /// that waits, and no further: a plugin with little work goes before
    /// the plugins that burn CPU, but banks no credit while idle. Level
    /// with it, it would tie with a burner's lane and wait a slice.
    used: Duration,
}

#[derive(Default)]
struct Waiter {
    /// When the permit was granted, once it is: the start of the holder's
    /// turn.
    granted: std::sync::OnceLock<Instant>,
    wake: Condvar,
}

/// Why a call stopped waiting for its turn.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum NoTurn {
    Cancelled,
    DeadlinePassed,
}

impl CpuGate {
    /// A gate of `permits` permits (at least 1), with time slices of
    /// 0.5 ms.
    pub fn new(permits: usize) -> CpuGate {
        CpuGate::with_slice(permits, DEFAULT_SLICE)
    }

    /// A gate of `permits` permits (at least 1), whose calls run for
    /// `slice` while others wait before they give their permit up. A call
    /// past its slice gives its permit up as soon as another call arrives
    /// to wait, or at the next epoch tick (2 ms) for calls that wait
    /// already; a call whose plugin is next in line takes it after a
    /// tenth of the slice. A longer slice trades the latency of
    /// short calls for fewer switches.
    pub fn with_slice(permits: usize, slice: Duration) -> CpuGate {
        let permits = permits.max(1);
        CpuGate {
            inner: Arc::new(Inner {
                permits,
                slice,
                engines: Mutex::default(),
                waiting: AtomicUsize::new(0),
                urgent: AtomicBool::new(false),
                state: Mutex::new(State { free: permits, lanes: Vec::new(), granted: Vec::new() }),
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

    /// Whether a running call that has held its permit for `held` gives it
    /// up now: when calls wait, at the end of its slice, or after a tenth
    /// of it for a call whose plugin is next in line.
    pub(crate) fn should_yield(&self, held: Duration) -> bool {
        if !self.has_waiters() {
            return false;
        }
        let slice = self.inner.slice;
        held >= slice || (held >= slice / MIN_TURN_PER_SLICE && self.inner.urgent.swap(false, Ordering::Relaxed))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.inner.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Takes a permit for a call of the plugin `lane`, waiting for its turn
    /// until `end` or a cancel (`cancel` is then cleared, as the epoch
    /// callback clears it).
    ///
    /// A call that arrives (`kick`) makes the calls that have run for their
    /// slice give their permits up at once ([`CpuGate::kick`]); a call that
    /// gave its permit up at the end of its slice waits without a kick, or
    /// every turn would cut another short.
    ///
    /// Returns when the permit was granted, which starts the call's turn
    /// (a call woken late has had part of it): give it back with
    /// [`CpuGate::release`] and the time since then.
    pub(crate) fn acquire(
        &self,
        lane: usize,
        cancel: &AtomicBool,
        end: Instant,
        kick: bool,
    ) -> Result<Instant, NoTurn> {
        let waiter = {
            let mut state = self.lock();
            if state.free > 0 && state.lanes.iter().all(|l| l.waiters.is_empty()) {
                state.free -= 1;
                let now = Instant::now();
                state.granted.push(now);
                return Ok(now);
            }
            let waiter = Arc::new(Waiter::default());
            state.enqueue(lane, waiter.clone(), self.inner.slice);
            self.inner.waiting.fetch_add(1, Ordering::Relaxed);
            // A plugin next in line (one that has held permits the least,
            // a light one above all) takes a running call's permit at
            // once; others wait for a slice to end.
            let urgent = kick && state.next_lane() == Some(lane);
            if urgent {
                self.inner.urgent.store(true, Ordering::Relaxed);
            }
            // A permit may be free while others wait only for an instant
            // (between a release and the grant): grant now rather than wait.
            self.grant_free(&mut state);
            if waiter.granted.get().is_some() {
                self.inner.urgent.store(false, Ordering::Relaxed);
            }
            (waiter, urgent)
        };
        let (waiter, urgent) = waiter;
        if kick && waiter.granted.get().is_none() {
            self.kick();
        }
        let min_turn = self.inner.slice / MIN_TURN_PER_SLICE;
        let mut kicked_at = Instant::now();
        let mut state = self.lock();
        loop {
            if let Some(granted) = waiter.granted.get() {
                return Ok(*granted);
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
            let now = Instant::now();
            let mut wait = end.saturating_duration_since(now).min(CANCEL_LOOK);
            // Still the first call of the lane next in line: others wait
            // for the end of a slice.
            let first = urgent
                && state.next_lane() == Some(lane)
                && state
                    .lanes
                    .iter()
                    .find(|l| l.key == lane)
                    .and_then(|l| l.waiters.front())
                    .is_some_and(|w| Arc::ptr_eq(w, &waiter));
            if first {
                // No call had run its shortest turn at the last kick: kick
                // again when the first one has, rather than at the epoch's
                // next tick, 2 ms away. One timed wait per holder, for the
                // one call next in line.
                let next = state.granted.iter().map(|g| *g + min_turn).filter(|t| *t > kicked_at).min();
                if let Some(next) = next {
                    if next <= now {
                        self.inner.urgent.store(true, Ordering::Relaxed);
                        self.kick();
                        kicked_at = now;
                        continue;
                    }
                    wait = wait.min(next - now);
                }
            }
            state = waiter.wake.wait_timeout(state, wait).unwrap_or_else(|p| p.into_inner()).0;
        }
    }

    /// Calls of `engine` take this gate's permits.
    pub(crate) fn serve_engine(&self, engine: &wasmtime::Engine) {
        let mut engines = self.inner.engines.lock().unwrap_or_else(|p| p.into_inner());
        engines.retain(|e| e.upgrade().is_some());
        engines.push(engine.weak());
    }

    /// Advances the epoch of every engine served: each call running wasm
    /// looks at once whether it has had its slice (`Deadline::on_epoch`).
    /// An epoch is a counter every store reads; advancing it costs an
    /// atomic add, and a call that looks and goes on a few nanoseconds. A
    /// deadline under a gate is wall time, so the extra epochs shorten no
    /// call.
    fn kick(&self) {
        let engines = self.inner.engines.lock().unwrap_or_else(|p| p.into_inner());
        for engine in engines.iter().filter_map(wasmtime::EngineWeak::upgrade) {
            engine.increment_epoch();
        }
    }

    /// Gives back a permit that a call of the plugin `lane` holds since
    /// `granted` (what [`CpuGate::acquire`] returned): to the next lane's
    /// first waiter, or to the free count when none waits.
    pub(crate) fn release(&self, lane: usize, granted: Instant) {
        let held = granted.elapsed();
        let mut state = self.lock();
        state.free += 1;
        if let Some(at) = state.granted.iter().position(|g| *g == granted) {
            state.granted.swap_remove(at);
        }
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
            let now = Instant::now();
            state.granted.push(now);
            self.inner.waiting.fetch_sub(1, Ordering::Relaxed);
            let _ = waiter.granted.set(now);
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
        self.lane_at(key, floor)
    }

    /// The lane of `key`, made with `used` if it has gone.
    fn lane_at(&mut self, key: usize, used: Duration) -> &mut Lane {
        let at = match self.lanes.iter().position(|l| l.key == key) {
            Some(at) => at,
            None => {
                self.lanes.push(Lane { key, waiters: VecDeque::new(), used });
                self.lanes.len() - 1
            }
        };
        &mut self.lanes[at]
    }

    fn charge(&mut self, key: usize, held: Duration) {
        let lane = self.lane(key);
        lane.used = lane.used.saturating_add(held);
    }

    fn enqueue(&mut self, key: usize, waiter: Arc<Waiter>, credit: Duration) {
        let floor = self.floor().unwrap_or_default();
        let start = floor.saturating_sub(credit);
        let lane = self.lane_at(key, start);
        if lane.waiters.is_empty() {
            lane.used = lane.used.max(start);
        }
        lane.waiters.push_back(waiter);
    }

    /// The lane whose first waiter [`State::next_waiter`] would take.
    fn next_lane(&self) -> Option<usize> {
        self.lanes.iter().filter(|l| !l.waiters.is_empty()).min_by_key(|l| (l.used, l.waiters.len())).map(|l| l.key)
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
        let first = gate.acquire(0, &never, far(), false).unwrap();
        let order = Arc::new(Mutex::new(Vec::new()));
        let waiter = |lane: usize| {
            let (gate, order) = (gate.clone(), order.clone());
            std::thread::spawn(move || {
                let granted = gate.acquire(lane, &AtomicBool::new(false), far(), false).unwrap();
                order.lock().unwrap().push(lane);
                gate.release(lane, granted);
            })
        };
        let mut threads: Vec<_> = (0..5).map(|_| waiter(1)).collect();
        wait_until(|| gate.waiting() == 5);
        threads.push(waiter(2));
        wait_until(|| gate.waiting() == 6);
        gate.release(0, first);
        threads.into_iter().for_each(|t| t.join().unwrap());
        let order = order.lock().unwrap();
        assert_eq!(order.first(), Some(&2), "{order:?}");
        assert_eq!((gate.waiting(), gate.lock().free), (0, 1));
    }

    /// A call that arrives to wait interrupts the wasm the gate's engines
    /// run, at once: here an engine whose epoch nothing else advances runs
    /// a loop that only an epoch can end.
    #[test]
    fn a_call_that_arrives_to_wait_interrupts_running_wasm() {
        let mut config = wasmtime::Config::new();
        config.epoch_interruption(true);
        let engine = wasmtime::Engine::new(&config).unwrap();
        let gate = CpuGate::new(1);
        gate.serve_engine(&engine);
        let wasm = wat::parse_str(r#"(module (func (export "spin") (loop (br 0))))"#).unwrap();
        let module = wasmtime::Module::new(&engine, wasm).unwrap();
        let (interrupted, looked) = std::sync::mpsc::channel();
        let (armed, deadline_set) = std::sync::mpsc::channel();
        let spinner = {
            let engine = engine.clone();
            std::thread::spawn(move || {
                let mut store = wasmtime::Store::new(&engine, ());
                store.set_epoch_deadline(1);
                armed.send(()).unwrap();
                store.epoch_deadline_callback(move |_| {
                    let _ = interrupted.send(());
                    Err(wasmtime::Error::msg("interrupted"))
                });
                let instance = wasmtime::Instance::new(&mut store, &module, &[]).unwrap();
                let spin = instance.get_typed_func::<(), ()>(&mut store, "spin").unwrap();
                spin.call(&mut store, ()).unwrap_err();
            })
        };
        // The store's deadline is one epoch past the engine's now: one kick
        // passes it, whether the loop runs yet or not.
        deadline_set.recv().unwrap();
        let never = AtomicBool::new(false);
        gate.acquire(0, &never, far(), false).unwrap();
        // The waiting call ends at its deadline: the kick is what counts.
        let _ = gate.acquire(1, &never, Instant::now() + Duration::from_millis(50), true);
        let kicked = looked.recv_timeout(Duration::from_secs(10));
        // End the loop either way, so that a failure does not hang.
        engine.increment_epoch();
        spinner.join().unwrap();
        kicked.expect("the arriving call advanced the epoch of the gate's engine");
    }

    /// A call whose plugin is next in line takes one running call's permit
    /// after a short turn; a call of a plugin behind others waits for the
    /// end of a slice.
    #[test]
    fn a_call_next_in_line_cuts_a_turn_short_once() {
        let gate = CpuGate::with_slice(1, Duration::from_secs(60));
        let never = AtomicBool::new(false);
        let held = gate.acquire(0, &never, far(), false).unwrap();
        let min_turn = Duration::from_secs(6);
        let short = min_turn + Duration::from_micros(1);
        assert!(!gate.should_yield(short), "no one waits");
        // Lane 1 has held a permit for a second: behind lane 2 below.
        gate.lock().charge(1, Duration::from_secs(1));
        let waiter = |lane: usize| {
            let gate = gate.clone();
            std::thread::spawn(move || {
                let granted = gate.acquire(lane, &AtomicBool::new(false), far(), true).unwrap();
                gate.release(lane, granted);
            })
        };
        let first = waiter(2);
        wait_until(|| gate.waiting() == 1);
        assert!(!gate.should_yield(min_turn / 2), "a turn shorter than a tenth of the slice is kept");
        assert!(gate.should_yield(short), "lane 2 is next in line");
        assert!(!gate.should_yield(short), "one arrival cuts one turn short");
        let second = waiter(1);
        wait_until(|| gate.waiting() == 2);
        assert!(!gate.should_yield(short), "lane 1 is behind lane 2: it waits for a slice");
        assert!(gate.should_yield(Duration::from_secs(60)), "a whole slice");
        gate.release(0, held);
        first.join().unwrap();
        second.join().unwrap();
    }

    /// A plugin back from a pause goes before a lane that waits at the
    /// floor, rather than tying with it, and no further ahead than a slice.
    #[test]
    fn a_lane_back_from_a_pause_goes_one_slice_ahead_of_the_floor() {
        let slice = Duration::from_millis(1);
        let mut state = State { free: 0, lanes: Vec::new(), granted: Vec::new() };
        state.enqueue(1, Arc::default(), slice);
        state.charge(1, Duration::from_millis(5));
        state.enqueue(2, Arc::default(), slice);
        assert_eq!(state.next_lane(), Some(2));
        let used = |state: &State, key| state.lanes.iter().find(|l| l.key == key).map(|l| l.used);
        assert_eq!(used(&state, 2), Some(Duration::from_millis(4)));
        // A lane ahead of the floor keeps its debt when it comes back.
        state.charge(3, Duration::from_millis(9));
        let debt = used(&state, 3);
        assert!(debt > Some(Duration::from_millis(5)), "{debt:?}");
        state.enqueue(3, Arc::default(), slice);
        assert_eq!(used(&state, 3), debt);
    }

    /// A call next in line that arrives while no running call has had its
    /// shortest turn advances the epochs again when the first one has, and
    /// so takes its permit then, not at the epoch's next tick (no ticker
    /// runs here: without the second kick the call would wait to its end).
    #[test]
    fn a_call_next_in_line_kicks_again_when_a_turn_can_be_cut() {
        let mut config = wasmtime::Config::new();
        config.epoch_interruption(true);
        let engine = wasmtime::Engine::new(&config).unwrap();
        // A shortest turn of 1 s: the arrival comes well before it.
        let gate = CpuGate::with_slice(1, Duration::from_secs(10));
        gate.serve_engine(&engine);
        let wasm = wat::parse_str(r#"(module (func (export "spin") (loop (br 0))))"#).unwrap();
        let module = wasmtime::Module::new(&engine, wasm).unwrap();
        let never = AtomicBool::new(false);
        let granted = gate.acquire(0, &never, far(), false).unwrap();
        let (armed, deadline_set) = std::sync::mpsc::channel();
        let stop = Arc::new(AtomicBool::new(false));
        let spinner = {
            let (engine, gate, stop) = (engine.clone(), gate.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut store = wasmtime::Store::new(&engine, ());
                store.set_epoch_deadline(1);
                armed.send(()).unwrap();
                store.epoch_deadline_callback(move |_| {
                    if stop.load(Ordering::Relaxed) {
                        return Err(wasmtime::Error::msg("stopped"));
                    }
                    // As `Deadline::on_epoch` does under a gate.
                    if gate.should_yield(granted.elapsed()) {
                        gate.release(0, granted);
                        return Err(wasmtime::Error::msg("gave its permit up"));
                    }
                    Ok(wasmtime::UpdateDeadline::Continue(1))
                });
                let instance = wasmtime::Instance::new(&mut store, &module, &[]).unwrap();
                let spin = instance.get_typed_func::<(), ()>(&mut store, "spin").unwrap();
                spin.call(&mut store, ()).unwrap_err();
            })
        };
        deadline_set.recv().unwrap();
        let turn = gate.acquire(1, &never, Instant::now() + Duration::from_secs(20), true);
        // End the loop either way, so that a failure does not hang.
        stop.store(true, Ordering::Relaxed);
        engine.increment_epoch();
        spinner.join().unwrap();
        assert!(turn.is_ok(), "the call next in line got the permit before its end: {turn:?}");
    }

    #[test]
    fn a_waiting_call_stops_at_a_cancel_or_its_end() {
        let gate = CpuGate::new(1);
        let never = AtomicBool::new(false);
        let first = gate.acquire(0, &never, far(), false).unwrap();
        let cancel = AtomicBool::new(true);
        assert_eq!(gate.acquire(1, &cancel, far(), false), Err(NoTurn::Cancelled));
        assert!(!cancel.load(Ordering::Relaxed), "the cancel is taken");
        assert_eq!(gate.acquire(1, &never, Instant::now(), false), Err(NoTurn::DeadlinePassed));
        assert_eq!(gate.waiting(), 0);
        gate.release(0, first);
        gate.acquire(1, &never, far(), false).unwrap();
    }
}
