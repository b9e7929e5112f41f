//! A pool of instances of one plugin, shared by threads and async tasks:
//! one call per instance at a time (`HOST-9`), a bounded queue in front of
//! them, per-call cancellation, resizing and hot reload of the whole pool
//! with its state (`LIFE-10`, `LIFE-11`).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
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
        let mut instances = Vec::with_capacity(self.size);
        for _ in 0..self.size {
            let mut plugin = host.load_with_config(wasm, &self.config)?;
            plugin.join_group(group);
            instances.push(plugin);
        }
        let first = &instances[0];
        let (metadata, functions) = (first.metadata().clone(), first.functions().to_vec());
        Ok(Pool {
            inner: Arc::new(Inner {
                host: host.clone(),
                max_queue: self.max_queue,
                queue_timeout: self.queue_timeout,
                config: self.config,
                slots: Mutex::new(Slots {
                    live: instances.len(),
                    idle: instances,
                    size: self.size,
                    generation: 0,
                    waiting: 0,
                    wasm: Arc::from(wasm),
                    metadata: Arc::new(metadata),
                    functions: Arc::from(functions),
                }),
                returned: Condvar::new(),
                reloading: Mutex::new(()),
                calls: AtomicU64::new(0),
                group,
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
    slots: Mutex<Slots>,
    /// Signalled whenever an instance comes back or the pool changes.
    returned: Condvar,
    /// One reload at a time.
    reloading: Mutex<()>,
    calls: AtomicU64,
    /// The re-entry group of every instance (`CALL-8`).
    group: usize,
}

struct Slots {
    /// Idle instances of the current generation; the last is the most
    /// recently returned.
    idle: Vec<Plugin>,
    /// Instances of the current generation, idle or serving a call.
    live: usize,
    size: usize,
    generation: u64,
    waiting: usize,
    wasm: Arc<[u8]>,
    metadata: Arc<pabi_abi::Metadata>,
    functions: Arc<[String]>,
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
        lock(&self.inner.slots).metadata.clone()
    }

    /// The plugin's functions (of the version serving now).
    pub fn functions(&self) -> Arc<[String]> {
        lock(&self.inner.slots).functions.clone()
    }

    pub fn stats(&self) -> PoolStats {
        let slots = lock(&self.inner.slots);
        PoolStats {
            size: slots.size,
            live: slots.live,
            busy: slots.live - slots.idle.len(),
            waiting: slots.waiting,
            generation: slots.generation,
            calls: self.inner.calls.load(Ordering::Relaxed),
        }
    }

    /// Sets how many instances the pool keeps. Growing creates them on
    /// demand; shrinking runs `pabi_shutdown` on idle instances now and on
    /// busy ones when their call returns (`LIFE-4`).
    pub fn resize(&self, size: usize) {
        let surplus: Vec<Plugin> = {
            let mut slots = lock(&self.inner.slots);
            slots.size = size.max(1);
            let surplus = slots.live.saturating_sub(slots.size).min(slots.idle.len());
            slots.live -= surplus;
            // The least recently used go first.
            slots.idle.drain(..surplus).collect()
        };
        self.inner.returned.notify_all();
        drop(surplus);
    }

    /// Replaces the plugin with a new version in every instance
    /// (`LIFE-10`, `LIFE-11`): creates the new instances while the old ones
    /// serve; when both versions have the state pair, saves the state of
    /// the instance that served the latest call and loads it into each new
    /// instance; then switches. Calls that were running finish on the old
    /// version, whose instances then get `pabi_shutdown`. On any failure
    /// before the switch, the old version keeps serving and the error is
    /// returned.
    pub fn reload(&self, wasm: &[u8]) -> Result<(), Error> {
        let _one_at_a_time = lock(&self.inner.reloading);
        let size = lock(&self.inner.slots).size;
        let mut fresh = Vec::with_capacity(size);
        for _ in 0..size {
            let mut plugin = self.inner.host.load_with_config(wasm, &self.inner.config)?;
            plugin.join_group(self.inner.group);
            fresh.push(plugin);
        }
        // The state of the instance that served the latest call: the top of
        // the idle stack. Holding it keeps it from serving while its state
        // is copied, so no call's effect on it is lost.
        let mut source = None;
        if fresh[0].has_state() {
            let mut lease = self.checkout(None)?;
            if lease.plugin().has_state() {
                let state = lease.plugin().save_state()?;
                for plugin in &mut fresh {
                    plugin.load_state(&state)?;
                }
            }
            source = Some(lease);
        }
        let (metadata, functions) = (Arc::new(fresh[0].metadata().clone()), Arc::from(fresh[0].functions().to_vec()));
        let old = {
            let mut slots = lock(&self.inner.slots);
            slots.generation += 1;
            slots.live = fresh.len();
            slots.wasm = Arc::from(wasm);
            slots.metadata = metadata;
            slots.functions = functions;
            std::mem::replace(&mut slots.idle, fresh)
        };
        self.inner.returned.notify_all();
        // Old instances shut down outside the lock (`LIFE-4`); the one that
        // gave its state is of the old generation and goes the same way.
        drop(old);
        drop(source);
        tracing::info!(plugin = %self.metadata().name, version = %self.metadata().version, "pool reloaded");
        Ok(())
    }

    /// Takes an idle instance, creates one when the pool is below its size,
    /// or waits in the queue.
    fn checkout(&self, cancel: Option<&CallCancel>) -> Result<Lease<'_>, Error> {
        let inner = &*self.inner;
        // A handler serving an instance of this pool would wait for itself
        // when the pool is full (`CALL-8`).
        if crate::host_fn::is_serving(inner.group) {
            return Err(Error::HostUnavailable(Unavailable::Reentrant));
        }
        let cancelled = || cancel.is_some_and(CallCancel::is_cancelled);
        let started = Instant::now();
        let mut slots = lock(&inner.slots);
        loop {
            if cancelled() {
                return Err(Error::Cancelled);
            }
            if let Some(plugin) = slots.idle.pop() {
                inner.calls.fetch_add(1, Ordering::Relaxed);
                return Ok(Lease { pool: inner, plugin: Some(plugin), generation: slots.generation });
            }
            if slots.live < slots.size {
                // Grow: make the instance outside the lock.
                slots.live += 1;
                let (generation, wasm) = (slots.generation, slots.wasm.clone());
                drop(slots);
                return match inner.host.load_with_config(&wasm, &inner.config) {
                    Ok(mut plugin) => {
                        plugin.join_group(inner.group);
                        inner.calls.fetch_add(1, Ordering::Relaxed);
                        Ok(Lease { pool: inner, plugin: Some(plugin), generation })
                    }
                    Err(error) => {
                        let mut slots = lock(&inner.slots);
                        if slots.generation == generation {
                            slots.live -= 1;
                        }
                        Err(error)
                    }
                };
            }
            if slots.waiting >= inner.max_queue {
                return Err(Error::HostUnavailable(Unavailable::QueueFull { limit: inner.max_queue }));
            }
            let wait = match inner.queue_timeout {
                Some(timeout) => match timeout.checked_sub(started.elapsed()) {
                    Some(left) if !left.is_zero() => left,
                    _ => return Err(Error::HostUnavailable(Unavailable::QueueTimeout { timeout })),
                },
                None => Duration::MAX,
            };
            // A cancel has no way to wake the wait: look every 10 ms, as the
            // epoch does for a running call.
            let wait = if cancel.is_some() { wait.min(Duration::from_millis(10)) } else { wait };
            slots.waiting += 1;
            slots = if wait == Duration::MAX {
                inner.returned.wait(slots).unwrap_or_else(|p| p.into_inner())
            } else {
                inner.returned.wait_timeout(slots, wait).unwrap_or_else(|p| p.into_inner()).0
            };
            slots.waiting -= 1;
        }
    }
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool").field("stats", &self.stats()).finish_non_exhaustive()
    }
}

/// An instance taken from the pool for one call; back to the pool on drop,
/// or shut down if the pool moved on (a reload or a shrink).
struct Lease<'a> {
    pool: &'a Inner,
    plugin: Option<Plugin>,
    generation: u64,
}

impl Lease<'_> {
    fn plugin(&mut self) -> &mut Plugin {
        self.plugin.as_mut().expect("a lease holds its instance until dropped")
    }
}

impl Drop for Lease<'_> {
    fn drop(&mut self) {
        let Some(plugin) = self.plugin.take() else { return };
        let surplus = {
            let mut slots = lock(&self.pool.slots);
            if slots.generation != self.generation {
                Some(plugin)
            } else if slots.live > slots.size {
                slots.live -= 1;
                Some(plugin)
            } else {
                slots.idle.push(plugin);
                None
            }
        };
        self.pool.returned.notify_one();
        // `pabi_shutdown` runs outside the lock.
        drop(surplus);
    }
}
