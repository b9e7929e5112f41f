//! The state of one instance, owned by its wasmtime `Store`: the call's
//! buffers, the phase, the limiter, the deadline and the WASI context.
//! The imports, WASI and the plugin all work on it; it depends on none of
//! them.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use wasmtime::{Memory, ResourceLimiter, StoreContextMut, UpdateDeadline};

use crate::clock::PluginClock;
use crate::cpu_gate::{CpuGate, NoTurn};
use crate::Error;

/// What a call is doing, which decides what the imports may do (`HOST-8`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Phase {
    Initialize,
    Init,
    Call,
    StateSave,
    StateLoad,
    Shutdown,
}

/// The state of one instance.
pub(crate) struct StoreData {
    pub memory: Option<Memory>,
    pub phase: Phase,
    pub input: Vec<u8>,
    pub output: Vec<u8>,
    pub message: Vec<u8>,
    pub max_output: u64,
    pub max_message: u64,
    pub limiter: Limiter,
    pub deadline: Deadline,
    pub wasi: Option<wasmtime_wasi::p1::WasiP1Ctx>,
    /// The clock of a WASI plugin; `None` for the core profile.
    pub clock: Option<PluginClock>,
    /// What `random_get` reads: a fixed-seed generator, or one seeded from
    /// the operating system with the `random` capability (`WASI-7`).
    pub random: Option<rand::rngs::StdRng>,
    /// The granted environment as `NAME=value` strings (`WASI-8`).
    pub environ: Vec<String>,
    /// `pabi.log` records and WASI stdio, under one budget per call (`LIM-11`).
    pub log: crate::log::LogHandle,
    /// The plugin's host calls and what serves them (`CALL-5`).
    pub host_calls: Arc<crate::host_fn::PluginHostCalls>,
    /// The reply of the latest `host_call` of this call (`CALL-6`).
    pub reply: Vec<u8>,
    pub max_request: u64,
    pub max_reply: u64,
    /// The plugin's name and its functions' names, for [`crate::CallContext`].
    pub plugin_name: Arc<str>,
    pub function_names: Arc<[String]>,
    /// The index in `function_names` of the function being served.
    pub serving: usize,
    /// The re-entry group of the plugin or pool (`CALL-8`).
    pub group: usize,
}

impl StoreData {
    /// The log sink (locked only when WASI streams share it).
    pub fn with_log<R>(&mut self, f: impl FnOnce(&mut crate::log::LogSink) -> R) -> R {
        self.log.with(f)
    }

    pub fn wasi(&mut self) -> &mut wasmtime_wasi::p1::WasiP1Ctx {
        self.wasi.as_mut().expect("WASI imports are linked only for wasi-profile plugins")
    }
}

/// Enforces the memory and table caps (`LIM-1`, `LIM-8`) and remembers a
/// refused memory growth, so that a trap or `proc_exit` after it reads as
/// `MEMORY_LIMIT` (`LIM-2`). The cap is checked first, so a growth past
/// both the cap and the plugin's own maximum counts as refused by the host.
pub(crate) struct Limiter {
    pub max_memory: u64,
    pub max_table_elements: u64,
    pub refused: bool,
}

impl ResourceLimiter for Limiter {
    fn memory_growing(&mut self, _current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        let allowed = desired as u64 <= self.max_memory;
        self.refused |= !allowed;
        Ok(allowed)
    }

    // A refused table growth is not remembered: a trap after it is `TRAP`
    // (`LIM-8`). Only memory, which a runtime cannot do without, turns a
    // later trap into `MEMORY_LIMIT`.
    fn table_growing(&mut self, _current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        Ok(desired as u64 <= self.max_table_elements)
    }

    fn instances(&self) -> usize {
        1
    }

    fn memories(&self) -> usize {
        1
    }

    fn tables(&self) -> usize {
        // Reference-types modules may declare several tables (`MOD-2`).
        MAX_TABLES as usize
    }
}

/// Tables one instance may define; the pooling allocator reserves as many.
pub(crate) const MAX_TABLES: u32 = 100;

/// How often the epoch advances; deadlines are whole ticks (`LIM-3`).
pub(crate) const EPOCH_TICK: std::time::Duration = std::time::Duration::from_millis(2);

/// Ticks between two looks at the cancel flag while a call runs: a cancel
/// takes effect within about 10 ms. Under a [`CpuGate`] the callback comes
/// every tick, so that a call gives its turn up within a slice.
const CHECK_TICKS: u64 = 5;

thread_local! {
    /// Set while this thread runs a call outside its host's [`CpuGate`]
    /// ([`outside_the_gate`]).
    static OUTSIDE_THE_GATE: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Runs `call` (a plugin call on this thread) without turns at its host's
/// [`CpuGate`]: for a short call that an async pool runs in place, on the
/// executor thread that polls it. Waiting for a turn there would hold the
/// executor thread, and the hops to a blocking thread and back that it
/// saves are most of what a light plugin's call waits beside CPU-heavy
/// neighbours. What so runs outside the gate stays bounded (see
/// `InProcessPool::call_async`): one call per executor thread, each of a
/// plugin whose calls compute under 0.1 ms on average and that cannot
/// block, and a call in
/// place that computes long ends running in place for its plugin's
/// version.
pub(crate) fn outside_the_gate<R>(call: impl FnOnce() -> R) -> R {
    // Put back on the way out, a panic's included.
    struct PutBack(bool);
    impl Drop for PutBack {
        fn drop(&mut self) {
            OUTSIDE_THE_GATE.set(self.0);
        }
    }
    let _put_back = PutBack(OUTSIDE_THE_GATE.replace(true));
    call()
}

/// A call's place at its host's [`CpuGate`]: whether it holds a permit,
/// and since when. Cells, so that code holding the store's state shared
/// (a host call's handler) can give the permit up.
struct Seat {
    gate: CpuGate,
    /// The plugin whose call holds the permit: time held is charged to it.
    lane: std::cell::Cell<usize>,
    held: std::cell::Cell<bool>,
    since: std::cell::Cell<std::time::Instant>,
}

impl Drop for Seat {
    fn drop(&mut self) {
        // A call that unwound past its end (a panic) does not keep a permit
        // for good: the instance's store goes, and the permit with it.
        if self.held.get() {
            self.gate.release(self.lane.get(), self.since.get());
        }
    }
}

/// The deadline of the running call, in epoch ticks, and the embedder's
/// cancel flag. wasmtime calls [`Deadline::on_epoch`] each time the store's
/// epoch deadline passes; it either grants more ticks or ends the call.
pub(crate) struct Deadline {
    /// The timeout of every call, and the same in whole ticks.
    timeout: std::time::Duration,
    ticks: u64,
    remaining: u64,
    granted: u64,
    pub cancel: Arc<AtomicBool>,
    /// The wall-clock end of the call, kept only for plugins that can block
    /// in host code (a real sleep), where the epoch cannot reach them.
    wall: Option<std::time::Instant>,
    track_wall: bool,
    /// The host's CPU gate, when it has one: the call holds a permit while
    /// it runs wasm.
    seat: Option<Seat>,
}

impl Deadline {
    pub fn new(
        timeout: std::time::Duration,
        cancel: Arc<AtomicBool>,
        track_wall: bool,
        gate: Option<CpuGate>,
    ) -> Deadline {
        // One tick more than the timeout holds: the call starts somewhere
        // inside a tick, so the first tick may come at once, and `n` ticks
        // could end a call up to a tick before its deadline (LIM-3 aborts
        // a call *past* it). The ticker's own lag usually hides this; the
        // rule should not depend on it.
        let ticks = timeout.as_nanos().div_ceil(EPOCH_TICK.as_nanos()).saturating_add(1).try_into().unwrap_or(u64::MAX);
        let seat = gate.map(|gate| Seat {
            gate,
            lane: std::cell::Cell::new(0),
            held: std::cell::Cell::new(false),
            since: std::cell::Cell::new(std::time::Instant::now()),
        });
        // A call waiting for its turn is outside wasm, where the epoch
        // cannot end it: the gate waits until the wall-clock end.
        let track_wall = track_wall || seat.is_some();
        Deadline { timeout, ticks, remaining: 0, granted: 0, cancel, wall: None, track_wall, seat }
    }

    /// Ticks between two calls of [`Deadline::on_epoch`].
    fn look_every(&self) -> u64 {
        if self.seat.is_some() {
            1
        } else {
            CHECK_TICKS
        }
    }

    /// Takes a permit of the host's gate for a call of the plugin `lane`,
    /// waiting for its turn; `Ok` at once without a gate or with a permit
    /// held. Waiting ends at a cancel or at the call's deadline.
    pub fn take_turn(&self, lane: usize) -> Result<(), NoTurn> {
        self.take_turn_as(lane, true)
    }

    /// [`Deadline::take_turn`]; `kick`: whether the calls that have had
    /// their slice give their permits up at once (a call that arrives), or
    /// at their next tick (a call that just gave its own up).
    fn take_turn_as(&self, lane: usize, kick: bool) -> Result<(), NoTurn> {
        let Some(seat) = &self.seat else { return Ok(()) };
        if seat.held.get() || OUTSIDE_THE_GATE.get() {
            return Ok(());
        }
        let end = self.wall.unwrap_or_else(std::time::Instant::now);
        let granted = seat.gate.acquire(lane, &self.cancel, end, kick)?;
        seat.held.set(true);
        seat.lane.set(lane);
        seat.since.set(granted);
        Ok(())
    }

    /// [`Deadline::take_turn`] from inside wasm's call: a cancel or the
    /// deadline ends the call as the epoch callback would.
    pub fn take_turn_in_call(&self, lane: usize) -> wasmtime::Result<()> {
        self.take_turn_in_call_as(lane, true)
    }

    fn take_turn_in_call_as(&self, lane: usize, kick: bool) -> wasmtime::Result<()> {
        self.take_turn_as(lane, kick).map_err(|why| match why {
            NoTurn::Cancelled => wasmtime::Error::new(Abort(Error::Cancelled)),
            NoTurn::DeadlinePassed => wasmtime::Error::new(wasmtime::Trap::Interrupt),
        })
    }

    /// Gives the permit back, if the call holds one: at its end, and before
    /// host code that blocks (a host call's handler, a real sleep).
    pub fn give_turn(&self) {
        if let Some(seat) = &self.seat {
            if seat.held.replace(false) {
                seat.gate.release(seat.lane.get(), seat.since.get());
            }
        }
    }

    /// Arms the deadline for a call and returns the ticks until the first
    /// look. A pending cancel makes that look immediate.
    pub fn arm(&mut self) -> u64 {
        if self.track_wall {
            self.wall = std::time::Instant::now().checked_add(self.timeout);
        }
        self.remaining = self.ticks;
        self.granted = if self.cancel.load(Ordering::Relaxed) { 0 } else { self.ticks.min(self.look_every()) };
        self.remaining -= self.granted;
        self.granted
    }

    /// The wall-clock end of the call in progress, for a plugin that can
    /// block in host code (`CALL-7`); `None` for others.
    pub fn wall(&self) -> Option<std::time::Instant> {
        self.wall
    }

    /// After host code that may have run for long (a host call's handler):
    /// a cancel or a passed deadline ends the call now (`CALL-7`), since
    /// the epoch reaches only wasm code.
    pub fn check_after_host_code(&self) -> wasmtime::Result<()> {
        if self.cancel.swap(false, Ordering::Relaxed) {
            return Err(wasmtime::Error::new(Abort(Error::Cancelled)));
        }
        if self.wall.is_some_and(|wall| std::time::Instant::now() >= wall) {
            return Err(wasmtime::Error::new(wasmtime::Trap::Interrupt));
        }
        Ok(())
    }

    /// Blocks the calling import for up to `wait`, but never past the call's
    /// deadline or a cancel: those end the call (`LIM-3`).
    /// A sleeping call holds no permit of the gate; it waits for its turn
    /// after (`lane` is its plugin's).
    pub fn sleep(&self, wait: std::time::Duration, lane: usize) -> wasmtime::Result<()> {
        let started = std::time::Instant::now();
        self.give_turn();
        loop {
            self.check_after_host_code()?;
            let now = std::time::Instant::now();
            let left = wait.saturating_sub(now - started);
            if left.is_zero() {
                return self.take_turn_in_call(lane);
            }
            let until_deadline = self.wall.map_or(left, |wall| wall - now);
            std::thread::sleep(left.min(until_deadline).min(EPOCH_TICK * CHECK_TICKS as u32));
        }
    }

    /// The epoch passed the granted ticks: cancel, time out, or go on.
    ///
    /// Under a [`CpuGate`], a call that has run for its slice while another
    /// call waits gives its permit up here and waits for its next turn, on
    /// its own thread. Its deadline keeps running meanwhile (`LIM-3` is
    /// wall time): the wall-clock end ends it too.
    pub fn on_epoch(mut store: StoreContextMut<'_, StoreData>) -> wasmtime::Result<UpdateDeadline> {
        let data = store.data_mut();
        let lane = data.group;
        let deadline = &mut data.deadline;
        if deadline.cancel.swap(false, Ordering::Relaxed) {
            return Err(wasmtime::Error::new(Abort(Error::Cancelled)));
        }
        if let Some(seat) = &deadline.seat {
            // Under a gate, the deadline is the wall clock's alone: a call
            // that arrives to wait advances the epoch besides the ticker
            // (`CpuGate::kick`), so ticks no longer measure time.
            if deadline.wall.is_some_and(|wall| std::time::Instant::now() >= wall) {
                return Err(wasmtime::Error::new(wasmtime::Trap::Interrupt));
            }
            if seat.held.get() && seat.gate.should_yield(seat.since.get().elapsed()) {
                deadline.give_turn();
                deadline.take_turn_in_call_as(lane, false)?;
            }
            deadline.granted = 1;
            return Ok(UpdateDeadline::Continue(1));
        }
        if deadline.remaining == 0 {
            return Err(wasmtime::Error::new(wasmtime::Trap::Interrupt));
        }
        deadline.granted = deadline.remaining.min(deadline.look_every());
        deadline.remaining -= deadline.granted;
        Ok(UpdateDeadline::Continue(deadline.granted))
    }
}

/// Ends a call from inside an import or the epoch callback: the plugin
/// broke the ABI or a limit, or the embedder cancelled. It travels through
/// wasmtime as the error's root cause.
#[derive(Debug)]
pub(crate) struct Abort(pub Error);

impl std::fmt::Display for Abort {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for Abort {}
