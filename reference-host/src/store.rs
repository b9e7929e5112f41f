//! The state of one instance, owned by its wasmtime `Store`: the call's
//! buffers, the phase, the limiter, the deadline and the WASI context.
//! The imports, WASI and the plugin all work on it; it depends on none of
//! them.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use wasmtime::{Memory, ResourceLimiter, StoreContextMut, UpdateDeadline};

use crate::clock::PluginClock;
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
/// takes effect within about 10 ms.
const CHECK_TICKS: u64 = 5;

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
}

impl Deadline {
    pub fn new(timeout: std::time::Duration, cancel: Arc<AtomicBool>, track_wall: bool) -> Deadline {
        // One tick more than the timeout holds: the call starts somewhere
        // inside a tick, so the first tick may come at once, and `n` ticks
        // could end a call up to a tick before its deadline (LIM-3 aborts
        // a call *past* it). The ticker's own lag usually hides this; the
        // rule should not depend on it.
        let ticks = timeout.as_nanos().div_ceil(EPOCH_TICK.as_nanos()).saturating_add(1).try_into().unwrap_or(u64::MAX);
        Deadline { timeout, ticks, remaining: 0, granted: 0, cancel, wall: None, track_wall }
    }

    /// Arms the deadline for a call and returns the ticks until the first
    /// look. A pending cancel makes that look immediate.
    pub fn arm(&mut self) -> u64 {
        if self.track_wall {
            self.wall = std::time::Instant::now().checked_add(self.timeout);
        }
        self.remaining = self.ticks;
        self.granted = if self.cancel.load(Ordering::Relaxed) { 0 } else { self.ticks.min(CHECK_TICKS) };
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
    pub fn sleep(&self, wait: std::time::Duration) -> wasmtime::Result<()> {
        let started = std::time::Instant::now();
        loop {
            self.check_after_host_code()?;
            let now = std::time::Instant::now();
            let left = wait.saturating_sub(now - started);
            if left.is_zero() {
                return Ok(());
            }
            let until_deadline = self.wall.map_or(left, |wall| wall - now);
            std::thread::sleep(left.min(until_deadline).min(EPOCH_TICK * CHECK_TICKS as u32));
        }
    }

    /// The epoch passed the granted ticks: cancel, time out, or go on.
    pub fn on_epoch(mut store: StoreContextMut<'_, StoreData>) -> wasmtime::Result<UpdateDeadline> {
        let deadline = &mut store.data_mut().deadline;
        if deadline.cancel.swap(false, Ordering::Relaxed) {
            return Err(wasmtime::Error::new(Abort(Error::Cancelled)));
        }
        if deadline.remaining == 0 {
            return Err(wasmtime::Error::new(wasmtime::Trap::Interrupt));
        }
        deadline.granted = deadline.remaining.min(CHECK_TICKS);
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
