//! `process` isolation, the server's side: a plugin served by a worker
//! process ([`crate::worker`]) through the worker protocol, restarted when
//! it dies.
//!
//! Calls are multiplexed on the worker's pipes: each caller writes its
//! frame, a reader thread hands each answer to the caller waiting for its
//! `id`. When the worker dies, the reader fails every call it held with
//! [`WorkerError::Exited`] and starts a new worker from the latest module;
//! calls that come meanwhile wait for it (up to the queue timeout).
//!
//! The server trusts nothing a worker says about itself: host calls are
//! checked against the plugin name read here from the module, requests
//! against the host-call cap, and every frame against a size cap.

use std::collections::HashMap;
use std::ffi::OsString;
use std::io::{BufReader, BufWriter, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex, RwLock, Weak};
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use crate::protocol::{read_frame_capped, write_frame, Failure, FromWorker, HostFunctionOffer, ToWorker};
use crate::worker::WORKER_ARG;
use crate::{lock, read, write, PluginSettings};

/// How a worker process is started: a program and its arguments.
#[derive(Clone, Debug)]
pub struct WorkerCommand {
    program: PathBuf,
    args: Vec<OsString>,
}

impl WorkerCommand {
    /// This executable, started as a worker: its `main` must call
    /// [`crate::worker::run_if_worker`] first.
    pub fn current_exe() -> std::io::Result<WorkerCommand> {
        Ok(WorkerCommand { program: std::env::current_exe()?, args: vec![WORKER_ARG.into()] })
    }

    /// Another program, started with `args`, that serves the worker
    /// protocol on its standard input and output (for example one whose
    /// `main` calls [`crate::worker::run`]).
    pub fn new(program: impl Into<PathBuf>, args: impl IntoIterator<Item = impl Into<OsString>>) -> WorkerCommand {
        WorkerCommand { program: program.into(), args: args.into_iter().map(Into::into).collect() }
    }
}

/// Why a call through a worker failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WorkerError {
    /// The worker's host answered the call with a failure: the plugin's
    /// error, a limit, a trap, a full queue…
    #[error("{}", .0.message)]
    Call(Failure, Vec<u8>),
    /// The worker process ended while it held the call; a new one is being
    /// started.
    #[error(
        "HOST_FAILURE: the worker process of `{plugin}` (pid {pid}) ended during the call ({status}); it is restarted"
    )]
    Exited { plugin: String, pid: u32, status: String },
    /// No worker can serve: it cannot be started, or it refused the plugin.
    #[error("HOST_FAILURE: the worker process of `{plugin}` cannot serve: {reason}")]
    Unavailable { plugin: String, reason: String },
    /// The call was cancelled before an answer came.
    #[error("CANCELLED: the call was cancelled")]
    Cancelled,
}

impl WorkerError {
    /// The failure, as the HTTP layer and clients see it.
    pub fn failure(&self) -> Failure {
        match self {
            WorkerError::Call(failure, _) => failure.clone(),
            WorkerError::Exited { .. } | WorkerError::Unavailable { .. } => Failure {
                retry_after: Some(1),
                ..Failure::new(Some(pabi_abi::HostErrorKind::HostFailure), self.to_string())
            },
            WorkerError::Cancelled => Failure::new(Some(pabi_abi::HostErrorKind::Cancelled), self.to_string()),
        }
    }
}

/// Settings of a [`ProcessPool`], each with a documented default.
#[derive(Clone, Debug)]
pub struct ProcessPoolBuilder {
    plugin: String,
    settings: PluginSettings,
    command: Option<WorkerCommand>,
    host_functions: Vec<pabi_host::HostFunction>,
}

impl ProcessPoolBuilder {
    /// The plugin's settings: instances, queue, quotas, grants, OS limits.
    /// Default: [`PluginSettings::default`].
    pub fn settings(mut self, settings: PluginSettings) -> ProcessPoolBuilder {
        self.settings = settings;
        self
    }

    /// How the worker is started. Default: [`WorkerCommand::current_exe`].
    pub fn command(mut self, command: WorkerCommand) -> ProcessPoolBuilder {
        self.command = Some(command);
        self
    }

    /// A host function of this process offered to the plugin: the worker
    /// relays the plugin's host calls of its name here, and the handler
    /// runs in this process. Default: none.
    pub fn host_function(mut self, function: pabi_host::HostFunction) -> ProcessPoolBuilder {
        self.host_functions.push(function);
        self
    }

    /// Starts a worker and loads `wasm` in it. Blocking: the worker
    /// validates, compiles and instantiates. A plugin the worker refuses
    /// is [`WorkerError::Unavailable`] with the host's words.
    pub fn spawn(self, wasm: &[u8]) -> Result<ProcessPool, WorkerError> {
        let command = match self.command {
            Some(command) => command,
            None => WorkerCommand::current_exe().map_err(|e| WorkerError::Unavailable {
                plugin: self.plugin.clone(),
                reason: format!("cannot find this executable: {e}"),
            })?,
        };
        ProcessPool::start(self.plugin, self.settings, command, self.host_functions.into(), wasm)
    }
}

/// A plugin served by a worker process of its own. Cloning shares it; the
/// last clone dropped closes the worker, which finishes its calls, runs
/// `pabi_shutdown` on its instances and exits.
///
/// ```no_run
/// # fn main() -> anyhow::Result<()> {
/// use pabi_serve::{PluginSettings, ProcessPool};
/// let wasm = std::fs::read("plugins/text.wasm")?;
/// let pool = ProcessPool::builder("text").settings(PluginSettings::default()).spawn(&wasm)?;
/// assert_eq!(pool.call("upper", b"hi")?, b"HI");
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct ProcessPool {
    inner: Arc<Inner>,
}

struct Inner {
    plugin: String,
    settings: PluginSettings,
    command: WorkerCommand,
    host_functions: Arc<[pabi_host::HostFunction]>,
    /// The module a new worker loads: the latest that took over.
    module: Mutex<Module>,
    /// What the serving version says of itself, for [`ProcessPool::metadata`]
    /// and [`ProcessPool::functions`].
    version: RwLock<Version>,
    slot: Mutex<Slot>,
    slot_changed: Condvar,
    next_id: AtomicU64,
    calls: AtomicU64,
    in_flight: AtomicUsize,
    generation: AtomicU64,
    restarts: AtomicU64,
    /// One start at a time: a restart after a death, or a reload that
    /// finds no worker to reload in.
    starting: Mutex<()>,
    /// Workers in a row that died within [`HEALTHY`] of their start.
    quick_deaths: std::sync::atomic::AtomicU32,
    closing: AtomicBool,
}

/// A module and its metadata name, read by this process from the bytes it
/// sends: what host calls are checked against, never the worker's word.
#[derive(Clone)]
struct Module {
    wasm: Arc<[u8]>,
    name: Arc<str>,
}

impl Module {
    /// The name is empty when the module has no readable metadata (the
    /// worker then refuses it anyway).
    fn new(wasm: &[u8]) -> Module {
        let name = pabi_abi::find_custom_sections(wasm, pabi_abi::METADATA_SECTION)
            .ok()
            .and_then(|sections| sections.into_iter().next())
            .and_then(|section| pabi_abi::Metadata::parse(&wasm[section.data]).ok())
            .map(|metadata| metadata.name)
            .unwrap_or_default();
        Module { wasm: wasm.into(), name: name.into() }
    }
}

/// The serving version's metadata, and its function names, kept beside it
/// for the per-call check of the HTTP layer.
struct Version {
    metadata: Arc<pabi_abi::Metadata>,
    functions: Arc<[String]>,
}

enum Slot {
    Live(Arc<Worker>),
    Restarting,
    /// The last start failed; the next is tried after a pause.
    Down(String),
}

/// One worker process and its pipes.
struct Worker {
    pid: u32,
    /// The worker's standard input; `None` once closed, which ends the
    /// worker's session. Callers write their frames themselves, under the
    /// lock: a writer thread between them and the pipe cost a thread
    /// wake-up per call, a fifth of a call's time.
    input: Mutex<Option<BufWriter<PipeInput>>>,
    pending: Mutex<Pending>,
    child: Mutex<Child>,
}

#[derive(Default)]
struct Pending {
    answers: HashMap<u64, oneshot::Sender<Answer>>,
    /// Set once the worker ended: a call made later fails at once instead
    /// of waiting for an answer nobody will send.
    ended: Option<String>,
}

enum Answer {
    Output(Vec<u8>),
    Failed(Failure, Vec<u8>),
    Reloaded(Box<pabi_abi::Metadata>),
    /// The worker ended: its pid and how.
    Ended(u32, String),
}

/// A snapshot of a process pool's counters, for metrics.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ProcessPoolStats {
    /// Instances the worker runs.
    pub size: usize,
    /// Instances alive: all of them while the worker lives, else none.
    pub live: usize,
    /// Calls sent to the worker and not yet answered.
    pub in_flight: usize,
    pub generation: u64,
    pub calls: u64,
    /// Workers started after the first.
    pub restarts: u64,
    /// The process id of the worker, while one lives.
    pub pid: Option<u32>,
}

impl std::fmt::Debug for ProcessPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProcessPool").field("plugin", &self.inner.plugin).finish_non_exhaustive()
    }
}

/// Calls to a worker that does not start wait this long, doubling up to
/// [`MAX_PAUSE`], before the next try.
const FIRST_PAUSE: Duration = Duration::from_millis(100);
const MAX_PAUSE: Duration = Duration::from_secs(5);
/// A worker that lived this long has not been crash-looping.
const HEALTHY: Duration = Duration::from_secs(10);

impl ProcessPool {
    /// A pool for the plugin `plugin` (a name for logs and errors).
    pub fn builder(plugin: impl Into<String>) -> ProcessPoolBuilder {
        ProcessPoolBuilder {
            plugin: plugin.into(),
            settings: PluginSettings::default(),
            command: None,
            host_functions: Vec::new(),
        }
    }

    fn start(
        plugin: String,
        settings: PluginSettings,
        command: WorkerCommand,
        host_functions: Arc<[pabi_host::HostFunction]>,
        wasm: &[u8],
    ) -> Result<ProcessPool, WorkerError> {
        let module = Module::new(wasm);
        let inner = Arc::new(Inner {
            plugin: plugin.clone(),
            settings,
            command,
            host_functions,
            module: Mutex::new(module.clone()),
            version: RwLock::new(Version { metadata: Arc::new(placeholder_metadata()), functions: Arc::from([]) }),
            slot: Mutex::new(Slot::Restarting),
            slot_changed: Condvar::new(),
            next_id: AtomicU64::new(1),
            calls: AtomicU64::new(0),
            in_flight: AtomicUsize::new(0),
            generation: AtomicU64::new(0),
            restarts: AtomicU64::new(0),
            starting: Mutex::new(()),
            quick_deaths: Default::default(),
            closing: AtomicBool::new(false),
        });
        let worker = start(&inner, &module).map_err(|reason| WorkerError::Unavailable { plugin, reason })?;
        inner.install(worker);
        Ok(ProcessPool { inner })
    }

    /// Calls `function` in the worker. Blocking: it panics on a thread that
    /// runs async tasks (as tokio's blocking waits do); from async code use
    /// [`ProcessPool::call_async`].
    pub fn call(&self, function: &str, input: &[u8]) -> Result<Vec<u8>, WorkerError> {
        let mut tries = 0;
        loop {
            let worker = self.live_worker_blocking()?;
            match self.send_call(&worker, function, input) {
                Ok((id, answer)) => {
                    let mut guard = CancelOnDrop { pool: self, worker: &worker, id, done: false };
                    let answer = answer.blocking_recv();
                    guard.done = true;
                    return self.finish(answer);
                }
                Err(reason) => self.undelivered(&worker, reason, &mut tries)?,
            }
        }
    }

    /// Calls `function` in the worker without blocking the executor; the
    /// call is cancelled in the worker when the future is dropped.
    pub async fn call_async(&self, function: &str, input: Vec<u8>) -> Result<Vec<u8>, WorkerError> {
        let input = Arc::new(input);
        let mut tries = 0;
        loop {
            let worker = self.live_worker_async().await?;
            let sent = if input.len() <= SMALL_WRITE {
                self.send_call(&worker, function, &input)
            } else {
                // A large input could fill the pipe and block until the
                // worker reads it: off the executor threads.
                let (pool, worker, function, input) =
                    (self.clone(), worker.clone(), function.to_string(), input.clone());
                tokio::task::spawn_blocking(move || pool.send_call(&worker, &function, &input))
                    .await
                    .unwrap_or_else(|e| Err(format!("the sending thread ended abnormally: {e}")))
            };
            match sent {
                Ok((id, answer)) => {
                    let mut guard = CancelOnDrop { pool: self, worker: &worker, id, done: false };
                    let answer = answer.await;
                    guard.done = true;
                    return self.finish(answer);
                }
                Err(reason) => self.undelivered(&worker, reason, &mut tries)?,
            }
        }
    }

    /// Replaces the plugin, in the worker, by `wasm`, with its state
    /// (`LIFE-10`, `LIFE-11`); on failure the old version keeps serving.
    /// When no worker serves (it died, or keeps dying), a new worker is
    /// started with `wasm` instead, without state; a version that fails
    /// to start there is refused. A worker started later loads `wasm`.
    pub fn reload(&self, wasm: &[u8]) -> Result<(), WorkerError> {
        let inner = &*self.inner;
        let module = Module::new(wasm);
        if let Some(worker) = inner.live() {
            match self.reload_in(&worker, &module) {
                Ok(done) => return done,
                // The worker ended during the reload: start afresh below.
                Err(_) => inner.retire(&worker),
            }
        }
        // No worker to reload in: a new one with the new version.
        let _starting = lock(&inner.starting);
        if let Some(worker) = inner.live() {
            // A restart won the race; its worker serves the old version.
            return self.reload_in(&worker, &module).unwrap_or_else(Err);
        }
        let worker = start(&self.inner, &module).map_err(|reason| inner.unavailable(reason))?;
        *lock(&inner.module) = module;
        inner.generation.fetch_add(1, Ordering::Relaxed);
        inner.install(worker);
        Ok(())
    }

    /// Reloads `module` in `worker`: the outcome, or `Err` with the error
    /// to report when the worker ended before it answered.
    fn reload_in(&self, worker: &Worker, module: &Module) -> Result<Result<(), WorkerError>, WorkerError> {
        let inner = &*self.inner;
        let id = inner.next_id.fetch_add(1, Ordering::Relaxed);
        let answer =
            worker.send(id, &ToWorker::Reload { id }, &module.wasm).map_err(|reason| inner.unavailable(reason))?;
        match answer.blocking_recv() {
            Ok(Answer::Reloaded(metadata)) => {
                *lock(&inner.module) = module.clone();
                inner.set_metadata(*metadata);
                inner.generation.fetch_add(1, Ordering::Relaxed);
                Ok(Ok(()))
            }
            ended @ (Ok(Answer::Ended(..)) | Err(_)) => Err(self.error_of(ended)),
            other => Ok(Err(self.error_of(other))),
        }
    }

    /// Ends the worker and waits for it: no new call is sent, the calls
    /// it holds finish, its instances get `pabi_shutdown`, and it exits
    /// (killed after 10 s). Blocking. Dropping the last clone does the
    /// same without waiting.
    pub fn shutdown(&self) {
        self.inner.close(true);
    }

    /// The plugin's metadata (of the version serving now).
    pub fn metadata(&self) -> Arc<pabi_abi::Metadata> {
        read(&self.inner.version).metadata.clone()
    }

    /// The plugin's functions (of the version serving now).
    pub fn functions(&self) -> Arc<[String]> {
        read(&self.inner.version).functions.clone()
    }

    pub fn stats(&self) -> ProcessPoolStats {
        let inner = &*self.inner;
        let pid = match &*lock(&inner.slot) {
            Slot::Live(worker) => Some(worker.pid),
            _ => None,
        };
        let size = inner.settings.instances();
        ProcessPoolStats {
            size,
            live: if pid.is_some() { size } else { 0 },
            in_flight: inner.in_flight.load(Ordering::Relaxed),
            generation: inner.generation.load(Ordering::Relaxed),
            calls: inner.calls.load(Ordering::Relaxed),
            restarts: inner.restarts.load(Ordering::Relaxed),
            pid,
        }
    }

    fn live_worker_blocking(&self) -> Result<Arc<Worker>, WorkerError> {
        let inner = &*self.inner;
        let deadline = Instant::now() + inner.settings.queue_timeout();
        let mut slot = lock(&inner.slot);
        loop {
            match &*slot {
                Slot::Live(worker) => return Ok(worker.clone()),
                Slot::Down(reason) => return Err(inner.unavailable(reason.clone())),
                Slot::Restarting => {
                    let left = deadline.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return Err(inner.unavailable("a new worker did not start in time".into()));
                    }
                    slot = inner.slot_changed.wait_timeout(slot, left).unwrap_or_else(|p| p.into_inner()).0;
                }
            }
        }
    }

    async fn live_worker_async(&self) -> Result<Arc<Worker>, WorkerError> {
        let inner = &*self.inner;
        let deadline = Instant::now() + inner.settings.queue_timeout();
        loop {
            match &*lock(&inner.slot) {
                Slot::Live(worker) => return Ok(worker.clone()),
                Slot::Down(reason) => return Err(inner.unavailable(reason.clone())),
                Slot::Restarting if Instant::now() >= deadline => {
                    return Err(inner.unavailable("a new worker did not start in time".into()))
                }
                Slot::Restarting => {}
            }
            // A restart is rare and takes milliseconds: polling keeps the
            // executor free without a second, async wake-up path.
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// A call that did not reach `worker`: the next one waits for another
    /// worker, up to [`MAX_TRIES`] in all.
    fn undelivered(&self, worker: &Arc<Worker>, reason: String, tries: &mut u32) -> Result<(), WorkerError> {
        *tries += 1;
        self.inner.retire(worker);
        if *tries == MAX_TRIES {
            return Err(self.inner.unavailable(reason));
        }
        Ok(())
    }

    /// Sends a call; `Err` when it could not be delivered (the worker has
    /// ended), which is safe to try again with the next worker.
    fn send_call(
        &self,
        worker: &Worker,
        function: &str,
        input: &[u8],
    ) -> Result<(u64, oneshot::Receiver<Answer>), String> {
        let inner = &*self.inner;
        let id = inner.next_id.fetch_add(1, Ordering::Relaxed);
        let answer = worker.send(id, &ToWorker::Call { id, function: function.into() }, input)?;
        inner.calls.fetch_add(1, Ordering::Relaxed);
        inner.in_flight.fetch_add(1, Ordering::Relaxed);
        Ok((id, answer))
    }

    fn finish(&self, answer: Result<Answer, oneshot::error::RecvError>) -> Result<Vec<u8>, WorkerError> {
        self.inner.in_flight.fetch_sub(1, Ordering::Relaxed);
        match answer {
            Ok(Answer::Output(output)) => Ok(output),
            other => Err(self.error_of(other)),
        }
    }

    fn error_of(&self, answer: Result<Answer, oneshot::error::RecvError>) -> WorkerError {
        match answer {
            Ok(Answer::Failed(failure, _)) if failure.kind.as_deref() == Some("CANCELLED") => WorkerError::Cancelled,
            Ok(Answer::Failed(failure, body)) => WorkerError::Call(failure, body),
            Ok(Answer::Ended(pid, status)) => WorkerError::Exited { plugin: self.inner.plugin.clone(), pid, status },
            Ok(Answer::Output(_) | Answer::Reloaded(_)) | Err(_) => {
                self.inner.unavailable("the worker answered out of turn".into())
            }
        }
    }
}

/// Tries of a call whose worker turns out to have ended before the call
/// reached it.
const MAX_TRIES: u32 = 3;

/// Inputs up to this size are written from the caller's task: the pipe
/// takes them without waiting.
const SMALL_WRITE: usize = 16 << 10;

/// Cancels the call in the worker when the caller stops waiting (a future
/// dropped): the worker stops it and its instance is free again.
struct CancelOnDrop<'a> {
    pool: &'a ProcessPool,
    worker: &'a Worker,
    id: u64,
    done: bool,
}

impl Drop for CancelOnDrop<'_> {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        self.pool.inner.in_flight.fetch_sub(1, Ordering::Relaxed);
        lock(&self.worker.pending).answers.remove(&self.id);
        let _ = self.worker.send_frame(&ToWorker::Cancel { id: self.id }, b"");
    }
}

impl Inner {
    fn unavailable(&self, reason: String) -> WorkerError {
        WorkerError::Unavailable { plugin: self.plugin.clone(), reason }
    }

    fn set_metadata(&self, metadata: pabi_abi::Metadata) {
        let functions = metadata.functions.iter().map(|f| f.name.clone()).collect();
        *write(&self.version) = Version { metadata: Arc::new(metadata), functions };
    }

    /// The worker serving now, if one is.
    fn live(&self) -> Option<Arc<Worker>> {
        match &*lock(&self.slot) {
            Slot::Live(worker) => Some(worker.clone()),
            _ => None,
        }
    }

    fn install(&self, worker: Arc<Worker>) {
        *lock(&self.slot) = Slot::Live(worker);
        self.slot_changed.notify_all();
    }

    /// `worker` has ended: calls wait for the next one instead of finding
    /// it again.
    fn retire(&self, worker: &Arc<Worker>) {
        let mut slot = lock(&self.slot);
        if matches!(&*slot, Slot::Live(live) if Arc::ptr_eq(live, worker)) {
            *slot = Slot::Restarting;
        }
    }

    /// Ends the worker: its input closes, so it finishes its calls, runs
    /// `pabi_shutdown` and exits; killed if it has not within 10 s. With
    /// `wait`, here; else on a thread of its own, so that a pool dropped on
    /// an executor thread does not hold it.
    fn close(&self, wait: bool) {
        self.closing.store(true, Ordering::Release);
        let worker = match std::mem::replace(&mut *lock(&self.slot), Slot::Down("closed".into())) {
            Slot::Live(worker) => worker,
            _ => return,
        };
        self.slot_changed.notify_all();
        lock(&worker.input).take();
        let reap = move || {
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                let mut child = lock(&worker.child);
                match child.try_wait() {
                    Ok(Some(_)) | Err(_) => return,
                    Ok(None) if Instant::now() >= deadline => {
                        let _ = child.kill();
                        let _ = child.wait();
                        return;
                    }
                    Ok(None) => {}
                }
                drop(child);
                std::thread::sleep(Duration::from_millis(5));
            }
        };
        if wait {
            reap();
        } else if let Err(error) = std::thread::Builder::new().name("pabi-worker-close".into()).spawn(reap) {
            tracing::error!(plugin = %self.plugin, "cannot wait for the worker to end: {error}");
        }
    }
}

impl Worker {
    /// Registers the answer of `id`, then writes the frame; `Err` when the
    /// frame did not reach the worker.
    fn send(&self, id: u64, message: &ToWorker, body: &[u8]) -> Result<oneshot::Receiver<Answer>, String> {
        let (sender, receiver) = oneshot::channel();
        {
            let mut pending = lock(&self.pending);
            if let Some(status) = &pending.ended {
                return Err(format!("the worker (pid {}) ended ({status})", self.pid));
            }
            pending.answers.insert(id, sender);
        }
        self.send_frame(message, body).inspect_err(|_| {
            lock(&self.pending).answers.remove(&id);
        })?;
        Ok(receiver)
    }

    /// Writes a frame. A large body blocks the caller while the worker
    /// reads it, which its reading thread does at once; a worker that
    /// reads nothing for [`STALL`] is ended, and the frame is not sent.
    fn send_frame(&self, message: &ToWorker, body: &[u8]) -> Result<(), String> {
        let mut input = lock(&self.input);
        let writer = input.as_mut().ok_or("the worker is closing")?;
        match write_frame(writer, message, body).and_then(|()| writer.flush()) {
            Ok(()) => Ok(()),
            Err(error) => {
                // Part of a frame may have gone: nothing more can be sent
                // on this pipe. A worker still alive is ended, and the
                // reader starts another.
                input.take();
                if let Ok(mut child) = self.child.try_lock() {
                    let _ = child.kill();
                }
                Err(format!("cannot write to the worker: {error}"))
            }
        }
    }
}

/// How long a worker may leave its input unread, while a frame waits, before
/// it is taken for stuck (stopped, or gone wrong) and ended. It reads on a
/// thread of its own that does nothing else, so a live worker never comes
/// near this.
const STALL: Duration = Duration::from_secs(1);

/// The worker's standard input, written so that a write waits for room at
/// most [`STALL`]: a stuck worker cannot hold a caller, perhaps an executor
/// thread, for longer. Each write waits (`poll`) until the pipe has room for
/// `PIPE_BUF` bytes and then writes at most that many, which a pipe takes
/// at once. (A non-blocking pipe would save the `poll`, but made a call
/// through the isolation bench 50 µs slower; the cause was not pinned
/// down.)
struct PipeInput(ChildStdin);

/// POSIX guarantees at least 512; Linux's is 4096.
const PIPE_BUF: usize = 4096;

impl Write for PipeInput {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        loop {
            let mut fds = [rustix::event::PollFd::new(&self.0, rustix::event::PollFlags::OUT)];
            let timeout = rustix::event::Timespec { tv_sec: STALL.as_secs() as _, tv_nsec: 0 };
            match rustix::event::poll(&mut fds, Some(&timeout)) {
                Ok(0) => {
                    let message = format!("the worker read nothing for {STALL:?}");
                    return Err(std::io::Error::new(std::io::ErrorKind::TimedOut, message));
                }
                Ok(_) => return self.0.write(&bytes[..bytes.len().min(PIPE_BUF)]),
                Err(rustix::io::Errno::INTR) => {}
                Err(error) => return Err(error.into()),
            }
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush()
    }
}

/// The largest body a worker may send: no answer is larger than an
/// output, a host call's request or a plugin's error message (64 KiB),
/// whichever cap is largest.
fn max_body(settings: &PluginSettings) -> u64 {
    let limits = pabi_abi::Limits::default();
    let max_output = settings.max_output.map_or(limits.max_output, |size| size.as_u64());
    max_output.max(limits.max_request).max(64 << 10)
}

/// Starts a worker and loads `wasm`; on success its reader thread runs,
/// and will restart it when it dies.
fn start(inner: &Arc<Inner>, module: &Module) -> Result<Arc<Worker>, String> {
    let mut command = Command::new(&inner.command.program);
    command.args(&inner.command.args).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::inherit());
    let mut child = spawn(command).map_err(|e| format!("cannot start {}: {e}", inner.command.program.display()))?;
    let pid = child.id();
    let (Some(mut stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
        let _ = child.kill();
        let _ = child.wait();
        return Err("the worker's pipes were not set up".into());
    };
    let mut stdout = BufReader::new(stdout);
    let max_body = max_body(&inner.settings);
    let load = ToWorker::Load {
        plugin: inner.plugin.clone(),
        settings: Box::new(inner.settings.clone()),
        host_functions: inner.host_functions.iter().map(HostFunctionOffer::of).collect(),
    };
    let sent = write_frame(&mut stdin, &load, &module.wasm).and_then(|()| stdin.flush());
    // Until it is ready, the worker may make host calls (`pabi_init` may,
    // HOST-8): they are served here, as nothing else talks to it yet.
    let loaded = loop {
        if let Err(error) = &sent {
            break Err(format!("cannot send the plugin: {error}"));
        }
        match read_frame_capped::<FromWorker>(&mut stdout, max_body) {
            Ok(Some((FromWorker::HostCall { id, name, function, .. }, request))) => {
                let (error, reply) = serve_host_call(inner, &module.name, &name, &function, &request);
                let answered =
                    write_frame(&mut stdin, &ToWorker::HostReply { id, error }, &reply).and_then(|()| stdin.flush());
                if let Err(error) = answered {
                    break Err(format!("cannot answer a host call: {error}"));
                }
            }
            Ok(Some((FromWorker::Ready { metadata, .. }, _))) => break Ok(*metadata),
            Ok(Some((FromWorker::Refused { message }, _))) => {
                let _ = child.wait();
                return Err(message);
            }
            Ok(Some(_)) => break Err("the worker answered out of turn".into()),
            Ok(None) => break Err("the worker ended before it was ready".into()),
            Err(error) => break Err(format!("a broken answer: {error}")),
        }
    };
    let metadata = match loaded {
        Ok(metadata) => metadata,
        Err(reason) => {
            let _ = child.kill();
            let status = child.wait().map_or_else(|e| e.to_string(), |s| s.to_string());
            return Err(format!("{reason} ({status})"));
        }
    };
    inner.set_metadata(metadata);
    let worker = Arc::new(Worker {
        pid,
        input: Mutex::new(Some(BufWriter::new(PipeInput(stdin)))),
        pending: Mutex::default(),
        child: Mutex::new(child),
    });
    let started = Instant::now();
    // Weak: the pool closes when its last user lets go, not when its
    // worker does.
    let (reader_inner, reader_worker) = (Arc::downgrade(inner), worker.clone());
    let spawned = std::thread::Builder::new().name(format!("pabi-worker-reader-{pid}")).spawn(move || {
        read_answers(stdout, &reader_worker, &reader_inner, max_body);
        supervise(&reader_inner, &reader_worker, started);
    });
    if let Err(error) = spawned {
        let mut child = lock(&worker.child);
        let _ = child.kill();
        let _ = child.wait();
        return Err(format!("cannot start the thread that reads the worker: {error}"));
    }
    Ok(worker)
}

/// Runs the server's host function for a host call its worker relays.
/// The plugin is who this process loaded, whatever the worker claims;
/// the request is held to the host-call cap (`LIM-14`) and the function
/// must be offered to the plugin (`CALL-5`).
fn serve_host_call(
    inner: &Inner,
    plugin: &str,
    name: &str,
    function: &str,
    request: &[u8],
) -> (Option<String>, Vec<u8>) {
    let max_request = pabi_abi::Limits::default().max_request;
    let reply = if request.len() as u64 > max_request {
        Err(format!("a request of {} bytes, past the cap of {max_request}", request.len()))
    } else {
        match inner.host_functions.iter().find(|f| f.name() == name && f.offered_to(plugin)) {
            Some(handler) => handler.serve(plugin, function, request).map_err(|e| e.message().to_string()),
            None => Err(format!("no host function `{name}` is offered to `{plugin}`")),
        }
    };
    match reply {
        Ok(reply) => (None, reply),
        Err(error) => (Some(error), Vec::new()),
    }
}

/// Starts `command` from one thread that lives as long as the process. A
/// worker asks the OS to kill it when its parent goes, and on Linux the
/// parent is the thread that started it: a worker started from a passing
/// thread (a restart, a scan on tokio's blocking pool) would be killed when
/// that thread ends.
fn spawn(command: Command) -> std::io::Result<Child> {
    type Request = (Command, mpsc::Sender<std::io::Result<Child>>);
    static SPAWNER: Mutex<Option<mpsc::Sender<Request>>> = Mutex::new(None);
    let (reply, answer) = mpsc::channel();
    {
        let mut spawner = lock(&SPAWNER);
        if spawner.is_none() {
            let (requests, received) = mpsc::channel::<Request>();
            std::thread::Builder::new().name("pabi-worker-spawner".into()).spawn(move || {
                for (mut command, reply) in received {
                    let _ = reply.send(command.spawn());
                }
            })?;
            *spawner = Some(requests);
        }
        let spawner = spawner.as_ref().expect("set above");
        spawner.send((command, reply)).map_err(|_| std::io::Error::other("the thread that starts workers is gone"))?;
    }
    answer.recv().map_err(|_| std::io::Error::other("the thread that starts workers is gone"))?
}

fn read_answers(stdout: BufReader<ChildStdout>, worker: &Arc<Worker>, inner: &Weak<Inner>, max_body: u64) {
    let mut stdout = stdout;
    loop {
        let (message, body) = match read_frame_capped::<FromWorker>(&mut stdout, max_body) {
            Ok(Some(frame)) => frame,
            Ok(None) => return,
            Err(error) => {
                tracing::error!(pid = worker.pid, "the worker broke the protocol: {error}");
                // A worker that breaks the protocol is ended like a dead one.
                let _ = lock(&worker.child).kill();
                return;
            }
        };
        let (id, answer) = match message {
            FromWorker::Output { id } => (id, Answer::Output(body)),
            FromWorker::Failed { id, failure } => (id, Answer::Failed(failure, body)),
            FromWorker::Reloaded { id, metadata } => (id, Answer::Reloaded(metadata)),
            FromWorker::HostCall { id, name, function, .. } => {
                let Some(inner) = inner.upgrade() else { return };
                // On a thread of its own: a handler may take its time, and
                // the answers of other calls keep flowing meanwhile.
                let relay = worker.clone();
                let spawned = std::thread::Builder::new().name("pabi-host-call".into()).spawn(move || {
                    let plugin = lock(&inner.module).name.clone();
                    let (error, reply) = serve_host_call(&inner, &plugin, &name, &function, &body);
                    let _ = relay.send_frame(&ToWorker::HostReply { id, error }, &reply);
                });
                if let Err(error) = spawned {
                    // Answering from here could wait on the worker's input
                    // while the worker waits on its output: end it instead.
                    tracing::error!(pid = worker.pid, "cannot start a thread for a host call: {error}");
                    let _ = lock(&worker.child).kill();
                    return;
                }
                continue;
            }
            FromWorker::Ready { .. } | FromWorker::Refused { .. } => continue,
        };
        // A call whose caller stopped waiting has no entry any more.
        if let Some(sender) = lock(&worker.pending).answers.remove(&id) {
            let _ = sender.send(answer);
        }
    }
}

/// After a worker's output ended: fail what it held, reap it, and unless
/// the pool is closing, start another. Only a weak reference is kept
/// between tries, so that a pool let go while its worker cannot start
/// stops trying.
fn supervise(inner: &Weak<Inner>, worker: &Arc<Worker>, started: Instant) {
    // Calls wait for the next worker from now on, not while it is reaped.
    if let Some(inner) = inner.upgrade() {
        inner.retire(worker);
    }
    let status = {
        let mut child = lock(&worker.child);
        match child.wait() {
            Ok(status) => status.to_string(),
            Err(error) => format!("cannot wait for it: {error}"),
        }
    };
    let held: Vec<_> = {
        let mut pending = lock(&worker.pending);
        pending.ended = Some(status.clone());
        pending.answers.drain().map(|(_, sender)| sender).collect()
    };
    for sender in held {
        let _ = sender.send(Answer::Ended(worker.pid, status.clone()));
    }
    let mut pause = {
        let Some(inner) = inner.upgrade() else { return };
        if inner.closing.load(Ordering::Acquire) {
            return;
        }
        tracing::error!(plugin = %inner.plugin, pid = worker.pid, "the worker process ended ({status}); starting another");
        // A worker that dies soon after it started again is crash-looping:
        // each such death doubles the pause before the next start.
        let quick = if started.elapsed() >= HEALTHY {
            inner.quick_deaths.store(0, Ordering::Relaxed);
            0
        } else {
            inner.quick_deaths.fetch_add(1, Ordering::Relaxed) + 1
        };
        match quick {
            0 => Duration::ZERO,
            n => FIRST_PAUSE.saturating_mul(1 << (n - 1).min(6)).min(MAX_PAUSE),
        }
    };
    loop {
        std::thread::sleep(pause);
        let Some(inner) = inner.upgrade() else { return };
        if inner.closing.load(Ordering::Acquire) {
            return;
        }
        let _starting = lock(&inner.starting);
        if matches!(&*lock(&inner.slot), Slot::Live(_)) {
            // A reload started a worker meanwhile.
            return;
        }
        let module = lock(&inner.module).clone();
        match start(&inner, &module) {
            Ok(worker) => {
                inner.restarts.fetch_add(1, Ordering::Relaxed);
                tracing::info!(plugin = %inner.plugin, pid = worker.pid, "worker process restarted");
                inner.install(worker);
                return;
            }
            Err(reason) => {
                tracing::error!(plugin = %inner.plugin, "cannot restart the worker process: {reason}");
                *lock(&inner.slot) = Slot::Down(reason);
                inner.slot_changed.notify_all();
                pause = (pause * 2).clamp(FIRST_PAUSE, MAX_PAUSE);
            }
        }
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        // After `shutdown`, nothing is left to close.
        self.close(false);
    }
}

fn placeholder_metadata() -> pabi_abi::Metadata {
    serde_json::from_value(serde_json::json!({
        "abi": "1.0", "name": "loading", "version": "0.0.0", "profile": "core",
        "functions": [], "capabilities": []
    }))
    .expect("a valid metadata document")
}
