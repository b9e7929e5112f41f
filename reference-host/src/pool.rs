//! A pool of instances of one plugin, shared by threads and async tasks:
//! one call per instance at a time (`HOST-9`), a bounded queue in front of
//! them, per-call cancellation, resizing and hot reload of the whole pool
//! with its state (`LIFE-10`, `LIFE-11`).

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::plugin::CancelHandle;
use crate::{Error, Host, Plugin, Unavailable};

/// Settings of a [`Pool`], each with a documented default.
///
/// ```
/// # fn main() -> anyhow::Result<()> {
/// # let wasm = wat::parse_str(r#"(module
/// #   (import "pabi" "input_read" (func $read (param i32 i32 i32) (result i32)))
/// #   (import "pabi" "output_write" (func $write (param i32 i32) (result i32)))
/// #   (memory (export "memory") 1)
/// #   (func (export "pabi_fn_echo") (param $len i32) (result i32)
/// #     (drop (call $read (i32.const 0) (i32.const 0) (local.get $len)))
/// #     (drop (call $write (i32.const 0) (local.get $len)))
/// #     (i32.const 0))
/// #   (@custom "pabi" "{\"abi\":\"1.0\",\"name\":\"echo\",\"version\":\"1.0.0\",\"profile\":\"core\",\"functions\":[{\"name\":\"echo\"}],\"capabilities\":[]}"))"#)?;
/// let host = pabi_host::Host::new(pabi_host::Config::default())?;
/// let pool = pabi_host::Pool::builder().size(4).max_queue(64).build(&host, &wasm)?;
/// assert_eq!(pool.call("echo", b"hi")?, b"hi");
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct PoolBuilder {
    size: usize,
    max_queue: usize,
    queue_timeout: Option<Duration>,
    config: Vec<u8>,
}

impl Default for PoolBuilder {
    fn default() -> PoolBuilder {
        PoolBuilder { size: default_size(), max_queue: 64 * default_size(), queue_timeout: None, config: Vec::new() }
    }
}

fn default_size() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from)
}

impl PoolBuilder {
    /// Instances, created when the pool is built; a call beyond them waits
    /// in the queue. Default: the number of CPUs. At least 1.
    pub fn size(mut self, size: usize) -> PoolBuilder {
        self.size = size.max(1);
        self
    }

    /// Calls that may wait for an instance; one more is refused at once
    /// with [`Unavailable::QueueFull`]. Default: 64 per CPU. 0 refuses
    /// every call that finds all instances busy.
    pub fn max_queue(mut self, max_queue: usize) -> PoolBuilder {
        self.max_queue = max_queue;
        self
    }

    /// How long a call may wait in the queue before it is refused with
    /// [`Unavailable::QueueTimeout`]. Default: no limit, as the queue
    /// itself is bounded and every call has its deadline once it runs.
    pub fn queue_timeout(mut self, timeout: Duration) -> PoolBuilder {
        self.queue_timeout = Some(timeout);
        self
    }

    /// The configuration every instance gets in `pabi_init` (`LIFE-2`).
    /// Default: empty.
    pub fn plugin_config(mut self, config: impl Into<Vec<u8>>) -> PoolBuilder {
        self.config = config.into();
        self
    }

    /// Loads the plugin and creates every instance. The host needs an
    /// instance slot per instance ([`crate::ConfigBuilder::max_instances`]).
    pub fn build(self, host: &Host, wasm: &[u8]) -> Result<Pool, Error> {
        let group = crate::plugin::new_group();
        let mut slots = Vec::with_capacity(self.size);
        for _ in 0..self.size {
            let mut plugin = host.load_with_config(wasm, &self.config)?;
            plugin.join_group(group);
            slots.push(Slot { plugin: Mutex::new(Some(plugin)), ..Slot::default() });
        }
        let version = {
            let first = lock(&slots[0].plugin);
            let first = first.as_ref().expect("just created");
            Version {
                wasm: Arc::from(wasm),
                metadata: Arc::new(first.metadata().clone()),
                functions: Arc::from(first.functions().to_vec()),
            }
        };
        Ok(Pool {
            inner: Arc::new(Inner {
                host: host.clone(),
                max_queue: self.max_queue,
                queue_timeout: self.queue_timeout,
                config: self.config,
                active: AtomicUsize::new(slots.len()),
                slots: slots.into_boxed_slice(),
                version: Mutex::new(version),
                generation: AtomicU64::new(0),
                waiting: AtomicUsize::new(0),
                queue: Mutex::new(()),
                returned: Condvar::new(),
                reloading: Mutex::new(()),
                group,
                born: Instant::now(),
            }),
        })
    }
}

/// Instances of one plugin behind a bounded queue, callable from any
/// thread through `&self`. Cheap to clone; clones share the instances.
///
/// Each call takes an idle instance (the one returned most recently, whose
/// memory is warm), or waits in the queue for one; a full queue refuses
/// the call at once. An instance that traps or hits a limit is replaced on
/// its next call (`LIFE-5`). [`Pool::reload`] swaps in a new version with
/// the state of the instance that served the latest call (`LIFE-11`);
/// calls keep being served during the swap. Dropping the last clone runs
/// `pabi_shutdown` on every idle instance (`LIFE-4`).
#[derive(Clone)]
pub struct Pool {
    inner: Arc<Inner>,
}

struct Inner {
    host: Host,
    max_queue: usize,
    queue_timeout: Option<Duration>,
    config: Vec<u8>,
    /// One lock per instance: a call locks only its own slot, so callers on
    /// different threads share no lock and no counter on the way in and
    /// out. A shared lock there made two threads slower than one.
    slots: Box<[Slot]>,
    /// The slots in use (a resize below the pool's size empties the rest).
    active: AtomicUsize,
    version: Mutex<Version>,
    /// Reloads so far.
    generation: AtomicU64,
    /// Calls waiting for a free slot.
    waiting: AtomicUsize,
    /// Waiters sleep on `returned` under `queue`; a returning call signals
    /// only when someone waits.
    queue: Mutex<()>,
    returned: Condvar,
    /// One reload at a time.
    reloading: Mutex<()>,
    /// The re-entry group of every instance (`CALL-8`).
    group: usize,
    born: Instant,
}

/// The plugin serving now: what an emptied slot is refilled from, and
/// what the pool reports.
struct Version {
    wasm: Arc<[u8]>,
    metadata: Arc<pabi_abi::Metadata>,
    functions: Arc<[String]>,
}

/// One instance's place, on its own cache line: the thread that holds it
/// writes only here.
#[derive(Default)]
#[repr(align(128))]
struct Slot {
    /// `None` until the instance is created on demand (after a resize).
    plugin: Mutex<Option<Plugin>>,
    calls: AtomicU64,
    /// When a call last returned here, in nanoseconds since the pool was
    /// built: the slot a reload
    /// takes the state from (`LIFE-11`).
    last_used: AtomicU64,
}

/// A snapshot of a pool's counters, for metrics.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct PoolStats {
    /// The instances the pool keeps.
    pub size: usize,
    /// Instances that exist now, idle or busy.
    pub live: usize,
    /// Instances serving a call.
    pub busy: usize,
    /// Calls waiting for an instance.
    pub waiting: usize,
    /// Reloads so far.
    pub generation: u64,
    /// Calls started so far.
    pub calls: u64,
}

/// Cancels one call of a [`Pool`] from any thread, or before it starts:
/// the call ends within about 10 ms with [`Error::Cancelled`], its
/// instance is discarded and replaced (`LIFE-5`), and the cancel does not
/// count toward the crash loop. A call still waiting in the queue leaves it.
#[derive(Clone, Debug, Default)]
pub struct CallCancel(Arc<CancelState>);

#[derive(Debug, Default)]
struct CancelState {
    cancelled: AtomicBool,
    /// The instance's handle while the call runs on one.
    running: Mutex<Option<CancelHandle>>,
}

impl CallCancel {
    pub fn new() -> CallCancel {
        CallCancel::default()
    }

    pub fn cancel(&self) {
        self.0.cancelled.store(true, Ordering::Relaxed);
        if let Some(handle) = &*lock(&self.0.running) {
            handle.cancel();
        }
    }

    pub fn is_cancelled(&self) -> bool {
        self.0.cancelled.load(Ordering::Relaxed)
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

impl Pool {
    pub fn builder() -> PoolBuilder {
        PoolBuilder::default()
    }

    /// Calls `pabi_fn_<name>` on an idle instance, waiting in the queue
    /// for one when all are busy.
    pub fn call(&self, name: &str, input: &[u8]) -> Result<Vec<u8>, Error> {
        let mut output = Vec::new();
        self.call_into(name, input, &mut output)?;
        Ok(output)
    }

    /// [`Pool::call`] into the caller's buffer (see [`Plugin::call_into`]).
    pub fn call_into(&self, name: &str, input: &[u8], output: &mut Vec<u8>) -> Result<(), Error> {
        let mut lease = self.checkout(None)?;
        lease.plugin().call_into(name, input, output)
    }

    /// [`Pool::call`] that `cancel` can stop, from another thread, while it
    /// waits or runs.
    pub fn call_cancellable(&self, name: &str, input: &[u8], cancel: &CallCancel) -> Result<Vec<u8>, Error> {
        let mut lease = self.checkout(Some(cancel))?;
        let plugin = lease.plugin();
        let handle = plugin.cancel_handle();
        *lock(&cancel.0.running) = Some(handle.clone());
        // A cancel that came after the check in `checkout` but before the
        // handle was registered is caught here.
        if cancel.is_cancelled() {
            handle.cancel();
        }
        let result = plugin.call(name, input);
        // Under the lock, so that a cancel racing with the end of the call
        // either reaches the call or finds no handle: a flag left set would
        // cancel the instance's next call, which is someone else's.
        lock(&cancel.0.running).take();
        handle.clear();
        result
    }

    /// [`Pool::call`] for async applications: the call runs on tokio's
    /// blocking threads, so a long plugin call never holds an executor
    /// thread, and dropping the future (a client gone, a `select!` timeout)
    /// cancels the call. Needs a tokio runtime.
    pub async fn call_async(&self, name: &str, input: Vec<u8>) -> Result<Vec<u8>, Error> {
        self.call_async_cancellable(name, input, CallCancel::new()).await
    }

    /// [`Pool::call_async`] that `cancel` can also stop.
    pub async fn call_async_cancellable(
        &self,
        name: &str,
        input: Vec<u8>,
        cancel: CallCancel,
    ) -> Result<Vec<u8>, Error> {
        struct CancelOnDrop(Option<CallCancel>);
        impl Drop for CancelOnDrop {
            fn drop(&mut self) {
                if let Some(cancel) = self.0.take() {
                    cancel.cancel();
                }
            }
        }
        let mut guard = CancelOnDrop(Some(cancel.clone()));
        let pool = self.clone();
        let name = name.to_string();
        let joined = tokio::task::spawn_blocking(move || pool.call_cancellable(&name, &input, &cancel)).await;
        guard.0 = None;
        joined.unwrap_or_else(|e| {
            Err(Error::HostUnavailable(Unavailable::Engine(format!("the call's thread ended abnormally: {e}"))))
        })
    }

    /// The plugin's metadata (of the version serving now).
    pub fn metadata(&self) -> Arc<pabi_abi::Metadata> {
        lock(&self.inner.version).metadata.clone()
    }

    /// The plugin's functions (of the version serving now).
    pub fn functions(&self) -> Arc<[String]> {
        lock(&self.inner.version).functions.clone()
    }

    pub fn stats(&self) -> PoolStats {
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
            size: active,
            live,
            busy,
            waiting: inner.waiting.load(Ordering::SeqCst),
            generation: inner.generation.load(Ordering::SeqCst),
            calls: inner.slots.iter().map(|s| s.calls.load(Ordering::Relaxed)).sum(),
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
            let mut plugin = inner.host.load_with_config(wasm, &inner.config)?;
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
        *lock(&inner.version) = Version {
            wasm: Arc::from(wasm),
            metadata: Arc::new(fresh[0].metadata().clone()),
            functions: Arc::from(fresh[0].functions().to_vec()),
        };
        inner.generation.fetch_add(1, Ordering::SeqCst);
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
    }

    /// A free slot: the one this thread used last if free, else any; else
    /// waits in the queue.
    fn checkout(&self, cancel: Option<&CallCancel>) -> Result<Lease<'_>, Error> {
        let inner = &*self.inner;
        // A handler serving an instance of this pool would wait for itself
        // when the pool is full (`CALL-8`).
        if crate::host_fn::is_serving(inner.group) {
            return Err(Error::HostUnavailable(Unavailable::Reentrant));
        }
        let cancelled = || cancel.is_some_and(CallCancel::is_cancelled);
        if cancelled() {
            return Err(Error::Cancelled);
        }
        if let Some(lease) = self.try_slots()? {
            return Ok(lease);
        }
        if inner.waiting.fetch_add(1, Ordering::SeqCst) >= inner.max_queue {
            inner.waiting.fetch_sub(1, Ordering::SeqCst);
            return Err(Error::HostUnavailable(Unavailable::QueueFull { limit: inner.max_queue }));
        }
        let started = Instant::now();
        let result = (|| {
            let mut queue = lock(&inner.queue);
            loop {
                if cancelled() {
                    return Err(Error::Cancelled);
                }
                // Under the queue lock: a call that returns after this scan
                // signals once this thread waits, not before.
                if let Some(lease) = self.try_slots()? {
                    return Ok(lease);
                }
                let mut wait = match inner.queue_timeout {
                    Some(timeout) => match timeout.checked_sub(started.elapsed()) {
                        Some(left) if !left.is_zero() => left,
                        _ => return Err(Error::HostUnavailable(Unavailable::QueueTimeout { timeout })),
                    },
                    None => Duration::from_secs(3600),
                };
                // A cancel has no way to wake the wait: look every 10 ms, as
                // the epoch does for a running call.
                if cancel.is_some() {
                    wait = wait.min(Duration::from_millis(10));
                }
                queue = inner.returned.wait_timeout(queue, wait).unwrap_or_else(|p| p.into_inner()).0;
            }
        })();
        inner.waiting.fetch_sub(1, Ordering::SeqCst);
        result
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
                let wasm = lock(&inner.version).wasm.clone();
                let mut fresh = inner.host.load_with_config(&wasm, &inner.config)?;
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

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool").field("stats", &self.stats()).finish_non_exhaustive()
    }
}

/// A slot locked for one call; unlocked on drop, waking a waiter if any.
struct Lease<'a> {
    pool: &'a Inner,
    slot: usize,
    plugin: Option<MutexGuard<'a, Option<Plugin>>>,
}

impl Lease<'_> {
    fn plugin(&mut self) -> &mut Plugin {
        self.plugin.as_mut().and_then(|p| p.as_mut()).expect("a leased slot holds an instance")
    }
}

impl Drop for Lease<'_> {
    fn drop(&mut self) {
        // A clock, not a shared counter: a counter's cache line would travel
        // between the calling threads on every call.
        let now = u64::try_from(self.pool.born.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.pool.slots[self.slot].last_used.store(now, Ordering::Relaxed);
        // Unlock before signalling, so that the woken waiter finds the slot
        // free; a waiter that scanned before this sleeps under the queue
        // lock, which the signal takes.
        drop(self.plugin.take());
        if self.pool.waiting.load(Ordering::SeqCst) > 0 {
            let _queue = lock(&self.pool.queue);
            self.pool.returned.notify_one();
        }
    }
}

thread_local! {
    /// The pool (its group) and slot this thread called last.
    static LAST: std::cell::Cell<(usize, usize)> = const { std::cell::Cell::new((0, 0)) };
}
