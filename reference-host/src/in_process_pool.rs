//! `Isolation::InProcess`: the instances of a [`crate::Pool`] in this
//! process, shared by threads and async tasks: one call per instance at a
//! time (`HOST-9`), the pool's one bounded queue in front of them,
//! per-call cancellation, resizing and hot reload of the whole pool with
//! its state (`LIFE-10`, `LIFE-11`).

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::pool_settings::PoolSettings;
use crate::{CancelHandle, Error, Host, Plugin, Unavailable};
use crate::{Isolation, PoolStats};

/// Instances of one plugin behind a bounded queue, callable from any
/// thread through `&self`. Cheap to clone; clones share the instances.
///
/// Each call takes an idle instance (the one returned most recently, whose
/// memory is warm), or waits in the queue for one; a full queue refuses
/// the call at once. An instance that traps or hits a limit is replaced on
/// its next call (`LIFE-5`). A reload swaps in a new version with the
/// state of the instance that served the latest call (`LIFE-11`); calls
/// keep being served during the swap. Dropping the last clone runs
/// `pabi_shutdown` on every idle instance (`LIFE-4`).
#[derive(Clone)]
pub(crate) struct InProcessPool {
    inner: Arc<Instances>,
}

struct Instances {
    host: Host,
    max_queue: usize,
    queue_timeout: Duration,
    plugin_config: Vec<u8>,
    /// One lock per instance: a call locks only its own slot, so callers on
    /// different threads share no lock and no counter on the way in and
    /// out. A shared lock there made two threads slower than one.
    slots: Box<[InstanceSlot]>,
    /// The slots in use (a resize below the pool's size empties the rest).
    active: AtomicUsize,
    serving: Mutex<ServingVersion>,
    reloads: AtomicU64,
    /// Set by `shutdown`: no call is taken any more.
    closed: AtomicBool,
    /// Calls waiting for a free slot.
    waiting: AtomicUsize,
    /// Waiters sleep on `returned` under `queue`; a returning call signals
    /// only when someone waits.
    queue: Mutex<()>,
    returned: Condvar,
    /// What async waiters wait on: signalled with `returned`.
    freed: tokio::sync::Notify,
    /// Async calls waiting in the queue, which the thread that ends a
    /// call runs next on the same instance ([`Handoff`]).
    handoffs: Mutex<std::collections::VecDeque<Arc<Handoff>>>,
    /// One reload at a time.
    reloading: Mutex<()>,
    /// The re-entry group of every instance (`CALL-8`).
    group: usize,
    born: Instant,
    /// The CPU time of the pool's calls, in nanoseconds, averaged with
    /// weight [`AVERAGE_WEIGHT`] for the latest: whether async calls run in
    /// place ([`InProcessPool::call_async`]).
    computed_ns: AtomicU64,
    /// Until when no call runs in place, in nanoseconds since `born`: after
    /// a call in place that was long ([`BARRED_FOR`]); `u64::MAX`, never,
    /// for a version that can block in host code (a host call's handler, a
    /// real sleep). Set anew by a reload.
    in_place_after: AtomicU64,
    /// Calls run in place so far.
    in_place: AtomicU64,
    /// Waiting calls run by the thread that ended the call before them.
    handed_on: AtomicU64,
}

/// The plugin serving now: what an emptied slot is refilled from, and
/// what the pool reports.
struct ServingVersion {
    wasm: Arc<[u8]>,
    metadata: Arc<pabi_abi::Metadata>,
    functions: Arc<[String]>,
    /// The log rate and drop counts the instances share.
    log: Arc<crate::log::PluginLog>,
}

/// One instance's place, on its own cache line: the thread that holds it
/// writes only here.
#[derive(Default)]
#[repr(align(128))]
struct InstanceSlot {
    /// `None` until the instance is created on demand (after a resize).
    plugin: Mutex<Option<Plugin>>,
    calls: AtomicU64,
    /// When a call last returned here, in nanoseconds since the pool was
    /// built: the slot a reload
    /// takes the state from (`LIFE-11`).
    last_used: AtomicU64,
}

/// The pool's async calls run in place while its calls compute less than
/// this on average (their thread's CPU time). A call in place takes
/// no turn at the CPU gate and holds an executor thread, which serves
/// every connection, so only calls far shorter than a turn of the gate
/// (0.5 ms) run there: at 1 ms, a burner's calls of 0.5 ms ran in place,
/// outside the gate, and a light echo beside them waited for the executor
/// threads. The hop to a blocking thread and back, tens of microseconds,
/// is a small part of any longer call.
const SHORT_CALL: Duration = Duration::from_micros(100);

/// A call in place that computes this long ends running in place for a
/// while ([`BARRED_FOR`]). A new pool, or a new version, starts at this
/// average: about 18 calls of a few microseconds bring it under
/// [`SHORT_CALL`].
const LONG_IN_PLACE: Duration = Duration::from_millis(1);

/// A call in place that computed [`LONG_IN_PLACE`] or held its thread
/// [`HELD_TOO_LONG`] ends running in place for this many times as long
/// as it held its thread: a plugin whose calls are short but for a long
/// one now and then so holds an executor thread at most 1% of the time.
/// It used to end running in place for the plugin's version, for good.
/// But on a virtual machine the system counts the time the hypervisor
/// takes a CPU away as the time of the thread that ran on it: a light
/// echo's call of a few microseconds counted 1-8 ms of CPU time now and
/// then, without a page fault, when its calls kept both CPUs busy, and
/// that one call ended running in place for the rest of the server's
/// life. That was the hostile-mix runs where the light echo hopped on
/// every call beside the mix, about half of them.
const BARRED_FOR: u32 = 100;

/// The weight of the latest call in the pool's average CPU time per call:
/// 1/8. An average, not a run of short calls in a row: a light plugin has
/// a call of a few hundred microseconds now and then (a page of memory
/// touched first, an instance made anew), and with a run that sent it
/// back to hops, where beside CPU-heavy neighbours its calls also waited
/// for turns at the gate; a plugin whose calls mostly compute long (a
/// burner of 0.5 ms per call) never averages under [`SHORT_CALL`].
const AVERAGE_WEIGHT: u64 = 8;

/// A call in place that held its executor thread this long, computing or
/// not (put aside by the system), ends running in place for a while all
/// the same ([`BARRED_FOR`]).
const HELD_TOO_LONG: Duration = Duration::from_millis(100);

/// The CPU time the calling thread has used, where the system tells it.
pub(crate) fn thread_cpu_time() -> Option<Duration> {
    #[cfg(unix)]
    {
        let time = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
        Some(Duration::new(u64::try_from(time.tv_sec).ok()?, u32::try_from(time.tv_nsec).ok()?))
    }
    #[cfg(not(unix))]
    None
}

/// Where a version's pause of running in place starts: never over for one
/// that can block in host code, none for others.
fn never_in_place_if(can_block: bool) -> u64 {
    if can_block {
        u64::MAX
    } else {
        0
    }
}

/// A duration in whole nanoseconds, saturated.
fn nanos(duration: Duration) -> u64 {
    u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX)
}

/// The CPU time the calling thread has used since `started`, when it had
/// used `cpu`; the wall time where the system does not tell. Wall time
/// would count a short call long whenever the system put it aside for a
/// moment or it waited for a turn at a [`crate::CpuGate`], which on a busy
/// machine comes often: beside CPU-heavy neighbours a light plugin then
/// never had its calls count as short, and never ran in place again.
fn computed_since(started: Instant, cpu: Option<Duration>) -> Duration {
    match (cpu, thread_cpu_time()) {
        (Some(before), Some(after)) => after.saturating_sub(before),
        _ => started.elapsed(),
    }
}

/// What an attempt at a call on a free instance gave: `None` if every
/// instance was busy; `Err` with its message if its thread panicked.
type Attempt = Result<Option<Result<Vec<u8>, Error>>, String>;

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

impl InProcessPool {
    /// Loads the plugin and creates every instance. The host needs an
    /// instance slot per instance ([`crate::ConfigBuilder::max_instances`]).
    pub(crate) fn build(settings: &PoolSettings, host: &Host, wasm: &[u8]) -> Result<InProcessPool, Error> {
        let group = crate::plugin::new_group();
        let mut slots = Vec::with_capacity(settings.instances);
        for _ in 0..settings.instances {
            let mut plugin = host.load_with_plugin_config(wasm, &settings.plugin_config)?;
            plugin.join_group(group);
            slots.push(InstanceSlot { plugin: Mutex::new(Some(plugin)), ..InstanceSlot::default() });
        }
        let can_block = lock(&slots[0].plugin).as_ref().is_some_and(Plugin::can_block);
        let serving = {
            let first = lock(&slots[0].plugin);
            let first = first.as_ref().expect("just created");
            ServingVersion {
                wasm: Arc::from(wasm),
                metadata: Arc::new(first.metadata().clone()),
                functions: Arc::from(first.functions().to_vec()),
                log: first.plugin_log().clone(),
            }
        };
        Ok(InProcessPool {
            inner: Arc::new(Instances {
                host: host.clone(),
                max_queue: settings.max_queue,
                queue_timeout: settings.queue_timeout,
                plugin_config: settings.plugin_config.clone(),
                active: AtomicUsize::new(slots.len()),
                slots: slots.into_boxed_slice(),
                serving: Mutex::new(serving),
                reloads: AtomicU64::new(0),
                closed: AtomicBool::new(false),
                waiting: AtomicUsize::new(0),
                queue: Mutex::new(()),
                returned: Condvar::new(),
                freed: tokio::sync::Notify::new(),
                handoffs: Mutex::default(),
                reloading: Mutex::new(()),
                group,
                born: Instant::now(),
                computed_ns: AtomicU64::new(nanos(LONG_IN_PLACE)),
                in_place: AtomicU64::new(0),
                handed_on: AtomicU64::new(0),
                in_place_after: AtomicU64::new(never_in_place_if(can_block)),
            }),
        })
    }

    pub(crate) fn call_into(
        &self,
        name: &str,
        input: &[u8],
        output: &mut Vec<u8>,
        cancel: Option<&CancelHandle>,
    ) -> Result<(), Error> {
        let mut lease = self.checkout(cancel)?;
        call_on_lease(&mut lease, name, input, output, cancel)
    }

    /// [`InProcessPool::call_into`] for async callers. Waiting for an
    /// instance is an entry in the queue, and holds no thread: only a call
    /// that has an instance runs on a thread of its own. When every
    /// instance was busy, a plugin whose calls block (a slow host call)
    /// used to hold a thread per queued call too, and starved every other
    /// plugin of the runtime's blocking threads.
    ///
    /// A call runs on one of tokio's blocking threads, which a dropped
    /// future cancels; but while the pool's calls compute under
    /// [`SHORT_CALL`] on average ([`AVERAGE_WEIGHT`]), it runs in place
    /// instead, on the
    /// executor thread that polls it: the hop there and back, two thread
    /// switches and their wake-ups, was half the CPU time of a short call
    /// in `pabi serve`. Only where that cannot hold the executor up for
    /// long: on a multi-threaded runtime, for a plugin that cannot block
    /// in host code (no host calls, no real clock). A call in place that
    /// computes [`LONG_IN_PLACE`] or more (a plugin whose calls change), or
    /// holds its thread [`HELD_TOO_LONG`], ends running in place for a
    /// hundred times as long as it held its thread ([`BARRED_FOR`]): such
    /// calls hold an executor thread at most 1% of the time. A call in
    /// place is not dropped
    /// while it runs; a [`CancelHandle`] still stops it.
    ///
    /// A call in place takes no turn at the host's [`crate::CpuGate`]
    /// ([`crate::store::outside_the_gate`]): waiting for one would hold the
    /// executor thread, and a light plugin beside CPU-heavy ones waited
    /// mostly for the hops and turns that running in place saves. What runs
    /// outside the gate so stays bounded: at most one call per executor
    /// thread, each of a plugin whose calls compute under [`SHORT_CALL`] on
    /// average.
    /// The first version ran in place only while no call waited for a
    /// turn, so beside the burners a light echo hopped on every call.
    ///
    /// A call that waits in the queue is also published there
    /// ([`Handoff`]): the blocking thread that ends a call runs the calls
    /// waiting next, on the same instance, up to [`HANDOFFS_IN_A_ROW`],
    /// and the waiting task only takes the result. Otherwise each queued
    /// call would need its task woken and a hop to a thread before it
    /// even asked for its turn at a [`crate::CpuGate`]; on a busy machine
    /// each of those waits for the system's scheduler, and a burst of
    /// calls on a pool of 2 instances waited for them again in every
    /// round. A call handed on still counts in the queue
    /// ([`PoolStats::waiting`]) until its task takes the result.
    pub(crate) async fn call_async(&self, name: &str, input: Vec<u8>, cancel: CancelHandle) -> Result<Vec<u8>, Error> {
        // A call on a blocking thread goes on while this future is
        // dropped: dropping it cancels the call there.
        struct CancelOnDrop(Option<CancelHandle>);
        impl Drop for CancelOnDrop {
            fn drop(&mut self) {
                if let Some(cancel) = self.0.take() {
                    cancel.cancel();
                }
            }
        }
        let inner = &*self.inner;
        let call: Arc<(String, Vec<u8>)> = Arc::new((name.to_string(), input));
        let started = Instant::now();
        let mut queued: Option<Waiting<'_>> = None;
        loop {
            if let Some(error) = refusal(inner, Some(&cancel)) {
                return Err(error);
            }
            let mut guard = CancelOnDrop(Some(cancel.clone()));
            let attempt = match self.call_in_place(&call.0, &call.1, &cancel) {
                Some(attempt) => attempt,
                None => {
                    let (pool, call, cancel) = (self.clone(), call.clone(), cancel.clone());
                    let (sent, result) = tokio::sync::oneshot::channel();
                    let _thread = tokio::task::spawn_blocking(move || {
                        pool.call_then_run_queued(&call.0, &call.1, &cancel, |r| {
                            let _ = sent.send(r);
                        });
                    });
                    result.await.unwrap_or_else(|_| Err("its thread ended".to_string()))
                }
            };
            guard.0 = None;
            match attempt {
                Ok(Some(result)) => return result,
                Ok(None) => {}
                Err(e) => return Err(thread_ended(e)),
            }
            // Every instance was busy: into the queue, once, then wait for
            // an instance to come back, a cancel, or the queue timeout.
            if queued.is_none() {
                queued = Some(Waiting::enter(inner)?);
                // An instance that came back between the attempt and
                // the entry signalled no one, as no call was waiting:
                // look again, here, without a hop to a thread. Once
                // counted as waiting, a return leaves a permit in `freed`.
                if self.any_free() {
                    continue;
                }
            }
            let timeout = inner.queue_timeout;
            let Some(left) = timeout.checked_sub(started.elapsed()).filter(|left| !left.is_zero()) else {
                return Err(Error::HostUnavailable(Unavailable::QueueTimeout { timeout }));
            };
            let woken = Arc::new(tokio::sync::Notify::new());
            let _watch = cancel.running({
                let woken = woken.clone();
                Box::new(move || woken.notify_one())
            });
            let mut handoff = HandoffGuard::publish(inner, call.clone(), cancel.clone());
            let (freed, timed_out) = tokio::select! {
                biased;
                () = handoff.handoff.done.notified() => (false, false),
                () = inner.freed.notified() => (true, false),
                () = woken.notified() => (false, false),
                () = tokio::time::sleep(left) => (false, true),
            };
            if !handoff.take_back() {
                // A thread runs this call: an instance freed meanwhile is
                // for another waiting call, now, not once this one ends.
                if freed {
                    inner.freed.notify_one();
                }
                return handoff.outcome().await;
            }
            if timed_out {
                return Err(Error::HostUnavailable(Unavailable::QueueTimeout { timeout }));
            }
        }
    }

    /// A call on a free instance in place, if the pool's calls are
    /// short (see [`InProcessPool::call_async`]); `Err` with its message
    /// if the call panicked, as a blocking thread's would be; `None` if
    /// it did not run.
    fn call_in_place(&self, name: &str, input: &[u8], cancel: &CancelHandle) -> Option<Attempt> {
        if !self.runs_in_place() {
            return None;
        }
        // When the call started; `None` while no call ran (every instance
        // was busy). What it computed, once it returned.
        let (mut ran, mut computed) = (None, None);
        let attempt = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            crate::store::outside_the_gate(|| {
                let mut lease = match self.lease_if_free() {
                    Ok(Some(lease)) => lease,
                    Ok(None) => return None,
                    Err(error) => return Some(Err(error)),
                };
                // Measured from here: making an instance, which taking a
                // lease may do once per slot, is not the plugin's call.
                // Counted in, it took 1 ms now and then, and ended
                // running in place for a light plugin.
                ran = Some(Instant::now());
                let (result, took) = self.call_measured(&mut lease, name, input, cancel);
                computed = Some(took);
                Some(result)
            })
        }));
        if let Some(started) = ran {
            // A call that panicked is judged by its wall time alone.
            let held = started.elapsed();
            if computed.is_some_and(|took| took >= LONG_IN_PLACE) || held >= HELD_TOO_LONG {
                // It held an executor thread for that long: not again for
                // a hundred times as long.
                let until = self.inner.born.elapsed().saturating_add(held.saturating_mul(BARRED_FOR));
                self.inner.in_place_after.fetch_max(nanos(until), Ordering::Relaxed);
            }
            self.inner.in_place.fetch_add(1, Ordering::Relaxed);
        }
        Some(attempt.map_err(|panic| format!("the call panicked: {}", panic_message(&*panic))))
    }

    /// Whether the next async call runs in place (see
    /// [`InProcessPool::call_async`]): the pool's calls were short on
    /// average, its plugin cannot block, no call in place was long lately
    /// ([`BARRED_FOR`]), and the runtime has other threads for the
    /// executor's other tasks.
    fn runs_in_place(&self) -> bool {
        let inner = &*self.inner;
        inner.computed_ns.load(Ordering::Relaxed) < nanos(SHORT_CALL)
            && match inner.in_place_after.load(Ordering::Relaxed) {
                0 => true,
                u64::MAX => false,
                // A pause that is over is cleared, so that later calls
                // read no clock; a reload or a new pause that came
                // meanwhile stays.
                after => {
                    nanos(inner.born.elapsed()) >= after && {
                        let _ = inner.in_place_after.compare_exchange(after, 0, Ordering::Relaxed, Ordering::Relaxed);
                        true
                    }
                }
            }
            && matches!(
                tokio::runtime::Handle::try_current().map(|runtime| runtime.runtime_flavor()),
                Ok(tokio::runtime::RuntimeFlavor::MultiThread)
            )
    }

    /// Counts a call that computed for `computed` toward running async
    /// calls in place.
    fn took(&self, computed: Duration) {
        // Two calls that end at once may count as one: an average a call
        // behind is no harm.
        let average = self.inner.computed_ns.load(Ordering::Relaxed);
        let computed = nanos(computed);
        let average = (average - average / AVERAGE_WEIGHT).saturating_add(computed / AVERAGE_WEIGHT);
        self.inner.computed_ns.store(average, Ordering::Relaxed);
    }

    /// Whether an instance is free now; it may be taken by the time the
    /// caller looks for it.
    fn any_free(&self) -> bool {
        let inner = &*self.inner;
        let active = inner.active.load(Ordering::SeqCst).min(inner.slots.len());
        inner.slots[..active].iter().any(|slot| slot.plugin.try_lock().is_ok())
    }

    /// A free instance, `None` when every one is busy; an error when a
    /// handler of this pool's plugin calls it (`CALL-8`) or a new
    /// instance cannot be made.
    fn lease_if_free(&self) -> Result<Option<Lease<'_>>, Error> {
        if crate::host_fn::is_serving(self.inner.group) {
            return Err(Error::HostUnavailable(Unavailable::Reentrant));
        }
        self.try_slots()
    }

    /// A call on a free instance, whose outcome goes to `done` (`None`,
    /// having done nothing, when every instance is busy); then,
    /// on the same instance and thread, the async calls that wait in the
    /// queue ([`Handoff`]), up to [`HANDOFFS_IN_A_ROW`]. A waiting call so
    /// starts as soon as an instance frees, without a wake-up of its task
    /// and a hop to another thread, each of which a busy machine can
    /// delay by a scheduler's slice.
    fn call_then_run_queued(&self, name: &str, input: &[u8], cancel: &CancelHandle, done: impl FnOnce(Attempt)) {
        let mut lease = match self.lease_if_free() {
            Ok(Some(lease)) => lease,
            Ok(None) => return done(Ok(None)),
            Err(error) => return done(Ok(Some(Err(error)))),
        };
        let first =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.call_on(&mut lease, name, input, cancel)));
        let panicked = first.is_err();
        if panicked {
            lease.discard();
        }
        done(first.map(Some).map_err(|panic| format!("the call panicked: {}", panic_message(&*panic))));
        if panicked {
            return;
        }
        let inner = &*self.inner;
        for _ in 0..HANDOFFS_IN_A_ROW {
            if inner.closed.load(Ordering::SeqCst) || lease.slot >= inner.active.load(Ordering::SeqCst) {
                return;
            }
            let Some(handoff) = take_handoff(inner) else { return };
            let mut panicked = false;
            let result = match refusal(inner, Some(&handoff.cancel)) {
                Some(error) => Err(error),
                None => {
                    inner.slots[lease.slot].calls.fetch_add(1, Ordering::Relaxed);
                    inner.handed_on.fetch_add(1, Ordering::Relaxed);
                    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        self.call_on(&mut lease, &handoff.call.0, &handoff.call.1, &handoff.cancel)
                    }))
                    .unwrap_or_else(|panic| {
                        panicked = true;
                        lease.discard();
                        Err(thread_ended(format!("the call panicked: {}", panic_message(&*panic))))
                    })
                }
            };
            *lock(&handoff.result) = Some(result);
            handoff.done.notify_one();
            // The instance is gone with the panic: the waiting calls find
            // their own (the slot makes a new one).
            if panicked {
                return;
            }
        }
    }

    /// One call on a leased instance, counted toward running in place.
    fn call_on(
        &self,
        lease: &mut Lease<'_>,
        name: &str,
        input: &[u8],
        cancel: &CancelHandle,
    ) -> Result<Vec<u8>, Error> {
        self.call_measured(lease, name, input, cancel).0
    }

    /// [`InProcessPool::call_on`], and what the call computed: a call in
    /// place is judged by it too, without reading the thread's CPU clock
    /// twice more on the fastest path.
    fn call_measured(
        &self,
        lease: &mut Lease<'_>,
        name: &str,
        input: &[u8],
        cancel: &CancelHandle,
    ) -> (Result<Vec<u8>, Error>, Duration) {
        let mut output = Vec::new();
        let (started, cpu) = (Instant::now(), thread_cpu_time());
        let result = call_on_lease(lease, name, input, &mut output, Some(cancel));
        let computed = computed_since(started, cpu);
        self.took(computed);
        (result.map(|()| output), computed)
    }

    /// The plugin's metadata (of the version serving now).
    pub fn metadata(&self) -> Arc<pabi_abi::Metadata> {
        lock(&self.inner.serving).metadata.clone()
    }

    /// The plugin's functions (of the version serving now).
    pub fn functions(&self) -> Arc<[String]> {
        lock(&self.inner.serving).functions.clone()
    }

    /// Log records and bytes the plugin had dropped (see [`PoolStats`]).
    pub fn log_dropped(&self) -> (u64, u64) {
        let log = lock(&self.inner.serving).log.clone();
        (log.dropped_records.load(Ordering::Relaxed), log.dropped_bytes.load(Ordering::Relaxed))
    }

    pub fn stats(&self) -> PoolStats {
        let (log_records_dropped, log_bytes_dropped) = self.log_dropped();
        let inner = &*self.inner;
        let active = inner.active.load(Ordering::SeqCst);
        let (mut live, mut busy) = (0, 0);
        for slot in &inner.slots[..active] {
            match slot.plugin.try_lock() {
                Ok(plugin) => live += usize::from(plugin.is_some()),
                Err(_) => (live, busy) = (live + 1, busy + 1),
            }
        }
        PoolStats {
            isolation: Isolation::InProcess,
            size: active,
            live,
            busy,
            waiting: inner.waiting.load(Ordering::SeqCst),
            reloads: inner.reloads.load(Ordering::SeqCst),
            calls: inner.slots.iter().map(|s| s.calls.load(Ordering::Relaxed)).sum(),
            calls_in_place: inner.in_place.load(Ordering::Relaxed),
            calls_handed_on: inner.handed_on.load(Ordering::Relaxed),
            // Known to the `Pool` around this one, which sets it.
            disabled: false,
            log_records_dropped,
            log_bytes_dropped,
            worker: None,
        }
    }

    /// Takes no call any more, waits for the calls in progress, and runs
    /// `pabi_shutdown` on every instance (`LIFE-4`). Calls waiting in the
    /// queue are refused.
    pub fn shutdown(&self) {
        let inner = &*self.inner;
        inner.closed.store(true, Ordering::SeqCst);
        self.wake_waiters();
        for slot in inner.slots.iter() {
            // Locking waits for the slot's call in progress, if any.
            let plugin = lock(&slot.plugin).take();
            drop(plugin);
        }
    }

    /// Sets how many instances the pool uses, from 1 up to the size it was
    /// built with. Shrinking runs `pabi_shutdown` on the instances let go,
    /// each once its call in progress returns (`LIFE-4`); growing creates
    /// them on demand.
    pub fn resize(&self, size: usize) {
        let inner = &*self.inner;
        let size = size.clamp(1, inner.slots.len());
        let before = inner.active.swap(size, Ordering::SeqCst);
        for slot in inner.slots.iter().take(before).skip(size) {
            let plugin = lock(&slot.plugin).take();
            drop(plugin);
        }
        self.wake_waiters();
    }

    /// Replaces the plugin with a new version in every instance
    /// (`LIFE-10`, `LIFE-11`): creates the new instances while the old ones
    /// serve; when both versions have the state pair, saves the state of
    /// the instance that served the latest call and loads it into each new
    /// instance; then switches slot by slot, each as soon as its call in
    /// progress returns. No call fails for the reload. On any failure
    /// before the switch, the old version keeps serving and the error is
    /// returned.
    pub fn reload(&self, wasm: &[u8]) -> Result<(), Error> {
        let inner = &*self.inner;
        let _one_at_a_time = lock(&inner.reloading);
        let active = inner.active.load(Ordering::SeqCst);
        let mut fresh = Vec::with_capacity(active);
        for _ in 0..active {
            let mut plugin = inner.host.load_with_plugin_config(wasm, &inner.plugin_config)?;
            plugin.join_group(inner.group);
            fresh.push(plugin);
        }
        // The state of the instance that served the latest call. Holding
        // its slot keeps it from serving while its state is copied and
        // until the switch, so no call's effect on it is lost.
        let latest = (0..active).max_by_key(|&i| inner.slots[i].last_used.load(Ordering::Relaxed)).unwrap_or(0);
        let mut source = lock(&inner.slots[latest].plugin);
        if fresh[0].has_state() {
            if let Some(old) = source.as_mut().filter(|p| p.has_state()) {
                let state = old.save_state()?;
                for plugin in &mut fresh {
                    plugin.load_state(&state)?;
                }
            }
        }
        *lock(&inner.serving) = ServingVersion {
            wasm: Arc::from(wasm),
            metadata: Arc::new(fresh[0].metadata().clone()),
            functions: Arc::from(fresh[0].functions().to_vec()),
            log: fresh[0].plugin_log().clone(),
        };
        inner.reloads.fetch_add(1, Ordering::SeqCst);
        // The new version earns running in place by its own calls.
        inner.computed_ns.store(nanos(LONG_IN_PLACE), Ordering::Relaxed);
        inner.in_place_after.store(never_in_place_if(fresh[0].can_block()), Ordering::Relaxed);
        let mut fresh = fresh.into_iter();
        let old = std::mem::replace(&mut *source, fresh.next());
        drop(source);
        // `pabi_shutdown` on each old instance, outside its slot's lock.
        drop(old);
        let others = (0..active).filter(|&i| i != latest);
        for (index, plugin) in others.zip(fresh) {
            let old = lock(&inner.slots[index].plugin).replace(plugin);
            drop(old);
        }
        self.wake_waiters();
        tracing::info!(plugin = %self.metadata().name, version = %self.metadata().version, "pool reloaded");
        Ok(())
    }

    fn wake_waiters(&self) {
        let _queue = lock(&self.inner.queue);
        self.inner.returned.notify_all();
        self.inner.freed.notify_waiters();
    }

    /// A free slot: the one this thread used last if free, else any; else
    /// waits in the queue.
    fn checkout(&self, cancel: Option<&CancelHandle>) -> Result<Lease<'_>, Error> {
        let inner = &*self.inner;
        // A handler serving an instance of this pool would wait for itself
        // when the pool is full (`CALL-8`).
        if crate::host_fn::is_serving(inner.group) {
            return Err(Error::HostUnavailable(Unavailable::Reentrant));
        }
        let refused = || refusal(inner, cancel);
        if let Some(error) = refused() {
            return Err(error);
        }
        if let Some(lease) = self.try_slots()? {
            return Ok(lease);
        }
        let _waiting = Waiting::enter(inner)?;
        let started = Instant::now();
        let mut queue = lock(&inner.queue);
        loop {
            if let Some(error) = refused() {
                return Err(error);
            }
            // Under the queue lock: a call that returns after this scan
            // signals once this thread waits, not before.
            if let Some(lease) = self.try_slots()? {
                return Ok(lease);
            }
            let timeout = inner.queue_timeout;
            let mut wait = match timeout.checked_sub(started.elapsed()) {
                Some(left) if !left.is_zero() => left,
                _ => return Err(Error::HostUnavailable(Unavailable::QueueTimeout { timeout })),
            };
            // A cancel has no way to wake the wait: look every 10 ms, as
            // the epoch does for a running call.
            if cancel.is_some() {
                wait = wait.min(Duration::from_millis(10));
            }
            queue = inner.returned.wait_timeout(queue, wait).unwrap_or_else(|p| p.into_inner()).0;
        }
    }

    /// Locks a free slot, filling it when empty; `None` when all are busy.
    fn try_slots(&self) -> Result<Option<Lease<'_>>, Error> {
        let inner = &*self.inner;
        let active = inner.active.load(Ordering::SeqCst).min(inner.slots.len());
        let (group, last) = LAST.get();
        let start = if group == inner.group { last } else { 0 };
        for step in 0..active {
            let index = (start + step) % active;
            let Ok(mut plugin) = inner.slots[index].plugin.try_lock() else { continue };
            if plugin.is_none() {
                let wasm = lock(&inner.serving).wasm.clone();
                let mut fresh = inner.host.load_with_plugin_config(&wasm, &inner.plugin_config)?;
                fresh.join_group(inner.group);
                *plugin = Some(fresh);
            }
            LAST.set((inner.group, index));
            inner.slots[index].calls.fetch_add(1, Ordering::Relaxed);
            return Ok(Some(Lease { pool: inner, slot: index, plugin: Some(plugin) }));
        }
        Ok(None)
    }
}

/// A slot locked for one call; unlocked on drop, waking a waiter if any.
struct Lease<'a> {
    pool: &'a Instances,
    slot: usize,
    plugin: Option<MutexGuard<'a, Option<Plugin>>>,
}

impl Lease<'_> {
    fn plugin(&mut self) -> &mut Plugin {
        self.plugin.as_mut().and_then(|p| p.as_mut()).expect("a leased slot holds an instance")
    }

    /// Drops the instance, which a panic may have left half-way: the slot
    /// makes a new one for its next call.
    fn discard(&mut self) {
        if let Some(slot) = self.plugin.as_mut() {
            drop(slot.take());
        }
    }

    /// Marks the instance as the one that served the latest call, whose
    /// state a reload takes (`LIFE-11`): after each call, as a lease may
    /// serve several.
    fn mark_used(&self) {
        // A clock, not a shared counter: a counter's cache line would travel
        // between the calling threads on every call.
        let now = u64::try_from(self.pool.born.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.pool.slots[self.slot].last_used.store(now, Ordering::Relaxed);
    }
}

impl Drop for Lease<'_> {
    fn drop(&mut self) {
        // Unlock before signalling, so that the woken waiter finds the slot
        // free; a waiter that scanned before this sleeps under the queue
        // lock, which the signal takes.
        drop(self.plugin.take());
        if self.pool.waiting.load(Ordering::SeqCst) > 0 {
            let _queue = lock(&self.pool.queue);
            self.pool.returned.notify_one();
            self.pool.freed.notify_one();
        }
    }
}

/// A call whose thread ended abnormally (a panic), as `HOST_FAILURE`.
fn thread_ended(detail: impl std::fmt::Display) -> Error {
    Error::HostUnavailable(Unavailable::Engine(format!("the call's thread ended abnormally: {detail}")))
}

/// What a panic said.
fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic".into())
}

/// How many waiting calls the thread that ended a call runs in a row
/// before it lets its instance go: a reload or a resize waits for the
/// instance meanwhile.
const HANDOFFS_IN_A_ROW: usize = 16;

/// An async call waiting in the queue, published for the thread that ends
/// a call on an instance to run next there ([`InProcessPool::call_then_run_queued`]).
/// Whoever sets `taken` first runs it: that thread, or the waiting call
/// itself when it wakes to try on its own, times out or is dropped.
struct Handoff {
    call: Arc<(String, Vec<u8>)>,
    cancel: CancelHandle,
    taken: AtomicBool,
    result: Mutex<Option<Result<Vec<u8>, Error>>>,
    done: tokio::sync::Notify,
}

/// The first waiting call no one has taken, taken.
fn take_handoff(inner: &Instances) -> Option<Arc<Handoff>> {
    let mut handoffs = lock(&inner.handoffs);
    while let Some(handoff) = handoffs.pop_front() {
        if !handoff.taken.swap(true, Ordering::SeqCst) {
            return Some(handoff);
        }
    }
    None
}

/// A waiting call's [`Handoff`], taken back on drop if no thread took it,
/// or cancelled if a thread runs it.
struct HandoffGuard<'a> {
    handoff: Arc<Handoff>,
    pool: &'a Instances,
    /// Whether this call still has to be taken back or cancelled on drop:
    /// cleared once taken back, or once its outcome is taken.
    armed: bool,
}

impl<'a> HandoffGuard<'a> {
    fn publish(inner: &'a Instances, call: Arc<(String, Vec<u8>)>, cancel: CancelHandle) -> HandoffGuard<'a> {
        let handoff = Arc::new(Handoff {
            call,
            cancel,
            taken: AtomicBool::new(false),
            result: Mutex::new(None),
            done: tokio::sync::Notify::new(),
        });
        lock(&inner.handoffs).push_back(handoff.clone());
        HandoffGuard { handoff, pool: inner, armed: true }
    }

    /// The outcome of the call a thread took, once it ends.
    async fn outcome(mut self) -> Result<Vec<u8>, Error> {
        loop {
            if let Some(result) = lock(&self.handoff.result).take() {
                self.armed = false;
                return result;
            }
            self.handoff.done.notified().await;
        }
    }

    /// Takes the call back from the queue, unless a thread took it first:
    /// whether it did.
    fn take_back(&mut self) -> bool {
        if self.handoff.taken.swap(true, Ordering::SeqCst) {
            return false;
        }
        lock(&self.pool.handoffs).retain(|h| !Arc::ptr_eq(h, &self.handoff));
        self.armed = false;
        true
    }
}

impl Drop for HandoffGuard<'_> {
    fn drop(&mut self) {
        // A call dropped while a thread runs it: the cancel stops it there.
        if self.armed && !self.take_back() && lock(&self.handoff.result).is_none() {
            self.handoff.cancel.cancel();
        }
    }
}

/// What ends a call before it gets an instance, looked at on the way in
/// and at every wake-up in the queue.
fn refusal(inner: &Instances, cancel: Option<&CancelHandle>) -> Option<Error> {
    if cancel.is_some_and(CancelHandle::is_cancelled) {
        Some(Error::Cancelled)
    } else if inner.closed.load(Ordering::SeqCst) {
        Some(Error::HostUnavailable(Unavailable::ShutDown))
    } else {
        None
    }
}

/// A call's place in the queue, counted in `waiting` while it lives; a
/// full queue refuses the call at once.
struct Waiting<'a>(&'a Instances);

impl<'a> Waiting<'a> {
    fn enter(inner: &'a Instances) -> Result<Waiting<'a>, Error> {
        if inner.waiting.fetch_add(1, Ordering::SeqCst) >= inner.max_queue {
            inner.waiting.fetch_sub(1, Ordering::SeqCst);
            return Err(Error::HostUnavailable(Unavailable::QueueFull { limit: inner.max_queue }));
        }
        Ok(Waiting(inner))
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.waiting.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Runs one call on a leased instance, and marks it as the latest used.
/// With a cancel handle, a cancel sets the instance's own flag, which its
/// deadline watches.
fn call_on_lease(
    lease: &mut Lease<'_>,
    name: &str,
    input: &[u8],
    output: &mut Vec<u8>,
    cancel: Option<&CancelHandle>,
) -> Result<(), Error> {
    let plugin = lease.plugin();
    let result = match cancel {
        None => plugin.call_into(name, input, output),
        Some(cancel) => {
            let flag = plugin.cancel_flag().clone();
            let stop = {
                let flag = flag.clone();
                Box::new(move || flag.store(true, Ordering::Relaxed))
            };
            let running = cancel.running(stop);
            let result = plugin.call_into(name, input, output);
            drop(running);
            // A cancel that came as the call ended, and that no call took,
            // must not end the instance's next call, someone else's.
            flag.store(false, Ordering::Relaxed);
            result
        }
    };
    lease.mark_used();
    result
}

thread_local! {
    /// The pool (its group) and slot this thread called last.
    static LAST: std::cell::Cell<(usize, usize)> = const { std::cell::Cell::new((0, 0)) };
}
