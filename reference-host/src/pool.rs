//! [`Pool`]: instances of one plugin behind one bounded queue, in this
//! process or in a worker process, with one builder, one stats struct and
//! one cancel handle for both isolations.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::in_process_pool::InProcessPool;
use crate::pool_settings::PoolSettings;
use crate::typed::{Input, Output, TypedCallError};
use crate::{CancelHandle, Error, Host, Isolation, PoolStats};

#[cfg(feature = "worker-process")]
use crate::worker::{WorkerCommand, WorkerPool};

/// Settings of a [`Pool`], each with a documented default. The setters
/// are named as the keys of a `pabi serve` configuration file, which maps
/// onto them one to one.
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
/// use std::time::Duration;
/// let host = pabi_host::Host::new(pabi_host::Config::default())?;
/// let pool = pabi_host::Pool::builder()
///     .instances(4)
///     .max_queue(64)
///     .queue_timeout(Duration::from_secs(1))
///     .build(&host, &wasm)?;
/// assert_eq!(pool.call("echo", b"hi")?, b"hi");
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct PoolBuilder {
    /// `max_queue` here is only what was set: see [`PoolBuilder::max_queue`].
    settings: PoolSettings,
    /// `None`: 64 per instance, derived when the pool is built.
    max_queue: Option<usize>,
    isolation: Isolation,
    #[cfg(feature = "worker-process")]
    worker: crate::worker::WorkerSettings,
}

impl Default for PoolBuilder {
    fn default() -> PoolBuilder {
        let instances = default_instances();
        PoolBuilder {
            settings: PoolSettings {
                instances,
                max_queue: 0,
                queue_timeout: DEFAULT_QUEUE_TIMEOUT,
                plugin_config: Vec::new(),
            },
            max_queue: None,
            isolation: Isolation::default(),
            #[cfg(feature = "worker-process")]
            worker: crate::worker::WorkerSettings::default(),
        }
    }
}

/// How long a call may wait for an instance, by default.
const DEFAULT_QUEUE_TIMEOUT: Duration = Duration::from_secs(5);

fn default_instances() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from)
}

impl PoolBuilder {
    /// Instances serving calls at once, created when the pool is built; a
    /// call beyond them waits in the queue. Default: the number of CPUs.
    /// At least 1.
    pub fn instances(mut self, instances: usize) -> PoolBuilder {
        self.settings.instances = instances.max(1);
        self
    }

    /// Calls that may wait for an instance; one more is refused at once
    /// with [`Unavailable::QueueFull`](crate::Unavailable::QueueFull). Default: 64 per instance. 0 refuses
    /// every call that finds all instances busy.
    pub fn max_queue(mut self, max_queue: usize) -> PoolBuilder {
        self.max_queue = Some(max_queue);
        self
    }

    /// How long a call may wait in the queue before it is refused with
    /// [`Unavailable::QueueTimeout`](crate::Unavailable::QueueTimeout). Default: 5 s.
    pub fn queue_timeout(mut self, timeout: Duration) -> PoolBuilder {
        self.settings.queue_timeout = timeout;
        self
    }

    /// The bytes every instance gets in `pabi_init` (`LIFE-2`). Default:
    /// empty.
    pub fn plugin_config(mut self, plugin_config: impl Into<Vec<u8>>) -> PoolBuilder {
        self.settings.plugin_config = plugin_config.into();
        self
    }

    /// Where the instances run. Default: [`Isolation::InProcess`].
    pub fn isolation(mut self, isolation: Isolation) -> PoolBuilder {
        self.isolation = isolation;
        self
    }

    /// Under [`Isolation::WorkerProcess`], how the worker is started.
    /// Default: [`WorkerCommand::current_exe`], whose `main` then calls
    /// [`crate::worker::run_if_worker`] first.
    #[cfg(feature = "worker-process")]
    pub fn worker_command(mut self, command: WorkerCommand) -> PoolBuilder {
        self.worker.command = Some(command);
        self
    }

    /// Under [`Isolation::WorkerProcess`], the CPU time a worker may use in
    /// all (`RLIMIT_CPU`); past it the OS kills the worker and it is
    /// restarted. Default: no limit (each call has its deadline).
    #[cfg(feature = "worker-process")]
    pub fn worker_cpu_time(mut self, cpu_time: Duration) -> PoolBuilder {
        self.worker.limits.cpu_time = Some(cpu_time);
        self
    }

    /// Under [`Isolation::WorkerProcess`], the address space a worker may
    /// map beyond what loading its plugin mapped (`RLIMIT_AS` is set to the
    /// sum once the plugin is loaded). An absolute cap would have to know
    /// the engine's up-front reservations (guard regions of several GiB
    /// per instance); a margin over them does not. Default: 1 GiB.
    #[cfg(feature = "worker-process")]
    pub fn worker_address_headroom(mut self, bytes: u64) -> PoolBuilder {
        self.worker.limits.address_headroom = bytes;
        self
    }

    /// Loads the plugin on `host` and creates every instance. In this
    /// process, the host needs an instance slot per instance
    /// ([`crate::ConfigBuilder::max_instances`]). In a worker process, the
    /// worker gets the host's configuration, and the host's functions stay
    /// here: the worker relays the plugin's host calls to them. Blocking:
    /// the plugin is validated, compiled and instantiated.
    pub fn build(mut self, host: &Host, wasm: &[u8]) -> Result<Pool, Error> {
        self.settings.max_queue = self.max_queue.unwrap_or(64 * self.settings.instances);
        let kind = match self.isolation {
            Isolation::InProcess => Kind::InProcess(InProcessPool::build(&self.settings, host, wasm)?),
            #[cfg(feature = "worker-process")]
            Isolation::WorkerProcess => Kind::WorkerProcess(WorkerPool::start(self.settings, self.worker, host, wasm)?),
        };
        let crash_loop =
            Arc::new(CrashLoopSeen { born: Instant::now(), at: AtomicU64::new(0), reset: host.config().crash_reset() });
        Ok(Pool { kind, crash_loop })
    }
}

/// Instances of one plugin behind a bounded queue, callable from any
/// thread through `&self` and from async tasks; cheap to clone, clones
/// share the instances. See [Which type do I use?](crate#which-type-do-i-use).
///
/// Each call takes an idle instance, or waits in the queue for one, up to
/// [`PoolBuilder::queue_timeout`]; a full queue refuses the call at once.
/// An instance that traps or hits a limit is replaced on its next call
/// (`LIFE-5`). [`Pool::reload`] swaps in a new version with the state of
/// the instance that served the latest call (`LIFE-11`); calls keep being
/// served during the swap. [`Pool::shutdown`], or dropping the last
/// clone, runs `pabi_shutdown` on every instance (`LIFE-4`).
///
/// Both isolations behave the same: the same errors, the same queue and
/// the same cancellation. A worker process that dies fails the calls it
/// held with [`Unavailable::WorkerExited`](crate::Unavailable::WorkerExited) and is restarted.
#[derive(Clone)]
pub struct Pool {
    kind: Kind,
    crash_loop: Arc<CrashLoopSeen>,
}

/// Whether the pool's plugin is disabled by a crash loop, as its calls
/// show it: the same for both isolations, where the instances that know it
/// may be in another process.
struct CrashLoopSeen {
    born: Instant,
    /// When a call was last refused with `CRASH_LOOP`, in nanoseconds
    /// since `born`, plus one; 0: none since the last call that succeeded.
    at: AtomicU64,
    reset: Duration,
}

impl CrashLoopSeen {
    fn saw<T>(&self, result: &Result<T, Error>) {
        match result {
            // One load on the path of every call; a store only after a
            // crash loop.
            Ok(_) => {
                if self.at.load(Ordering::Relaxed) != 0 {
                    self.at.store(0, Ordering::Relaxed);
                }
            }
            Err(Error::CrashLoop { .. }) => {
                let now = u64::try_from(self.born.elapsed().as_nanos()).unwrap_or(u64::MAX - 1);
                self.at.store(now + 1, Ordering::Relaxed);
            }
            Err(_) => {}
        }
    }

    fn disabled(&self) -> bool {
        match self.at.load(Ordering::Relaxed) {
            0 => false,
            at => self.born.elapsed().saturating_sub(Duration::from_nanos(at - 1)) < self.reset,
        }
    }
}

#[derive(Clone)]
enum Kind {
    InProcess(InProcessPool),
    #[cfg(feature = "worker-process")]
    WorkerProcess(WorkerPool),
}

impl Pool {
    pub fn builder() -> PoolBuilder {
        PoolBuilder::default()
    }

    /// Calls `pabi_fn_<name>` on an idle instance, waiting in the queue
    /// for one when all are busy. Blocking: from async code, use
    /// [`Pool::call_async`].
    pub fn call(&self, name: &str, input: &[u8]) -> Result<Vec<u8>, Error> {
        let mut output = Vec::new();
        self.call_into(name, input, &mut output)?;
        Ok(output)
    }

    /// [`Pool::call`] with typed input and output: bytes, UTF-8 text or
    /// [`Json`](crate::Json). See [`crate::typed`].
    pub fn call_as<I: Input + ?Sized, O: Output>(&self, name: &str, input: &I) -> Result<O, TypedCallError> {
        let output = self.call(name, &input.to_input()?)?;
        O::from_output(output)
    }

    /// [`Pool::call_async`] with typed input and output (see [`Pool::call_as`]).
    pub async fn call_as_async<I: Input + ?Sized, O: Output>(
        &self,
        name: &str,
        input: &I,
    ) -> Result<O, TypedCallError> {
        let input = input.to_input()?.into_owned();
        let output = self.call_async(name, input).await?;
        O::from_output(output)
    }

    /// [`Pool::call`] into the caller's buffer (see [`crate::Plugin::call_into`]).
    pub fn call_into(&self, name: &str, input: &[u8], output: &mut Vec<u8>) -> Result<(), Error> {
        self.call_with(name, input, output, None)
    }

    /// [`Pool::call`] that `cancel` can stop, from another thread, while it
    /// waits or runs.
    pub fn call_cancellable(&self, name: &str, input: &[u8], cancel: &CancelHandle) -> Result<Vec<u8>, Error> {
        let mut output = Vec::new();
        self.call_with(name, input, &mut output, Some(cancel))?;
        Ok(output)
    }

    fn call_with(
        &self,
        name: &str,
        input: &[u8],
        output: &mut Vec<u8>,
        cancel: Option<&CancelHandle>,
    ) -> Result<(), Error> {
        let result = match &self.kind {
            Kind::InProcess(pool) => pool.call_into(name, input, output, cancel),
            #[cfg(feature = "worker-process")]
            Kind::WorkerProcess(pool) => pool.call(name, input, cancel).map(|out| *output = out),
        };
        self.crash_loop.saw(&result);
        result
    }

    /// [`Pool::call`] for async applications: a long plugin call runs on
    /// one of tokio's blocking threads, not an executor thread (but see
    /// below: once), a call waiting in the queue holds no
    /// thread at all, and dropping the future (a client gone, a `select!`
    /// timeout) while the call waits, or while it runs on a blocking
    /// thread, cancels it. Needs a tokio runtime with its time driver
    /// (`enable_time` or `enable_all`), which the queue timeout uses.
    ///
    /// In this process, while the pool's calls compute under 0.1 ms on
    /// average (their thread's CPU time, not the time they waited; the
    /// latest call weighs 1/8; a new pool or version starts at 1 ms),
    /// a call runs in place, on the executor thread that polls it, rather
    /// than on a blocking thread: the hop there and back, two thread
    /// switches, was half of a short call's cost. Only on a multi-threaded
    /// runtime, and for a plugin without host calls or a real clock (which
    /// can block in host code). A call in place takes no turn at the
    /// host's [`crate::CpuGate`]: at most one per executor thread runs
    /// outside it, each short. A call in place that computes 1 ms or
    /// more (its thread's CPU time, so that a short call the system put
    /// aside does not count) or holds its thread 100 ms ends this for the
    /// plugin's version (until a reload): a plugin whose
    /// calls turn long holds one executor thread once, for at most its
    /// deadline. A call in place cannot be dropped while it runs: a
    /// timeout around the future waits for it to end; a [`CancelHandle`]
    /// ([`Pool::call_async_cancellable`]) stops it all the same.
    /// [`PoolStats::calls_in_place`] counts them.
    pub async fn call_async(&self, name: &str, input: Vec<u8>) -> Result<Vec<u8>, Error> {
        self.call_async_cancellable(name, input, CancelHandle::new()).await
    }

    /// [`Pool::call_async`] that `cancel` can also stop.
    pub async fn call_async_cancellable(
        &self,
        name: &str,
        input: Vec<u8>,
        cancel: CancelHandle,
    ) -> Result<Vec<u8>, Error> {
        let result = self.call_async_on(name, input, cancel).await;
        self.crash_loop.saw(&result);
        result
    }

    async fn call_async_on(&self, name: &str, input: Vec<u8>, cancel: CancelHandle) -> Result<Vec<u8>, Error> {
        match &self.kind {
            Kind::InProcess(pool) => pool.call_async(name, input, cancel).await,
            #[cfg(feature = "worker-process")]
            Kind::WorkerProcess(pool) => pool.call_async(name, input, cancel).await,
        }
    }

    /// The plugin's metadata (of the version serving now).
    pub fn metadata(&self) -> Arc<pabi_abi::Metadata> {
        match &self.kind {
            Kind::InProcess(pool) => pool.metadata(),
            #[cfg(feature = "worker-process")]
            Kind::WorkerProcess(pool) => pool.metadata(),
        }
    }

    /// The plugin's functions (of the version serving now).
    pub fn functions(&self) -> Arc<[String]> {
        match &self.kind {
            Kind::InProcess(pool) => pool.functions(),
            #[cfg(feature = "worker-process")]
            Kind::WorkerProcess(pool) => pool.functions(),
        }
    }

    pub fn stats(&self) -> PoolStats {
        let mut stats = match &self.kind {
            Kind::InProcess(pool) => pool.stats(),
            #[cfg(feature = "worker-process")]
            Kind::WorkerProcess(pool) => pool.stats(),
        };
        stats.disabled = self.crash_loop.disabled();
        stats
    }

    /// Sets how many instances serve, from 1 up to the number the pool was
    /// built with. Shrinking runs `pabi_shutdown` on the instances let go,
    /// each once its call in progress returns (`LIFE-4`); growing creates
    /// them on demand.
    pub fn resize(&self, instances: usize) {
        match &self.kind {
            Kind::InProcess(pool) => pool.resize(instances),
            #[cfg(feature = "worker-process")]
            Kind::WorkerProcess(pool) => pool.resize(instances),
        }
    }

    /// Replaces the plugin with a new version in every instance
    /// (`LIFE-10`, `LIFE-11`): creates the new instances while the old ones
    /// serve; when both versions have the state pair, moves the state of
    /// the instance that served the latest call into each new instance;
    /// then switches instance by instance, each as soon as its call in
    /// progress returns. No call fails for the reload. On any failure
    /// before the switch, the old version keeps serving and the error is
    /// returned. Blocking.
    pub fn reload(&self, wasm: &[u8]) -> Result<(), Error> {
        let result = match &self.kind {
            Kind::InProcess(pool) => pool.reload(wasm),
            #[cfg(feature = "worker-process")]
            Kind::WorkerProcess(pool) => pool.reload(wasm),
        };
        // Fresh instances: no crash loop is left.
        self.crash_loop.saw(&result);
        result
    }

    /// Takes no new call, lets the calls in progress finish, and runs
    /// `pabi_shutdown` on every instance (`LIFE-4`); a worker process is
    /// waited for (killed after 10 s). Calls made later fail with
    /// [`Unavailable::ShutDown`](crate::Unavailable::ShutDown). Blocking. Dropping the last clone does
    /// the same without waiting.
    pub fn shutdown(&self) {
        match &self.kind {
            Kind::InProcess(pool) => pool.shutdown(),
            #[cfg(feature = "worker-process")]
            Kind::WorkerProcess(pool) => pool.shutdown(),
        }
    }
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool").field("stats", &self.stats()).finish_non_exhaustive()
    }
}
