//! `Isolation::WorkerProcess`, the pool's side: calls sent to the worker
//! process ([`super::run()`]) and their answers, reloads, resizing, stats.
//!
//! Calls are multiplexed on the worker's pipes ([`super::link`]): each
//! caller writes its frame, a reader thread hands each answer to the caller
//! waiting for its `id`. When the worker dies, the supervisor
//! ([`super::supervisor`]) fails every call it held with
//! [`Unavailable::WorkerExited`] and starts a new worker from the latest
//! module; calls that come meanwhile wait for it, up to the queue timeout.
//!
//! The pool trusts nothing a worker says about itself: host calls are
//! checked against the plugin name read here from the module
//! ([`super::relay`]), requests against the host-call cap, and every frame
//! against a size cap.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, RwLock};
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use super::link::{Link, WorkerAnswer};
use super::protocol::{ToWorker, WorkerLimits};
use super::supervisor;
use super::{lock, read, write, WorkerCommand, WorkerSettings};
use crate::pool_settings::PoolSettings;
use crate::{CancelHandle, Config, Error, Host, HostFunction, Unavailable};
use crate::{Isolation, PoolStats, WorkerStats};

/// A plugin's instances in a worker process of its own. Cloning shares it;
/// the last clone dropped closes the worker, which finishes its calls, runs
/// `pabi_shutdown` on its instances and exits.
#[derive(Clone)]
pub(crate) struct WorkerPool {
    state: Arc<PoolState>,
}

/// What the pool's clones, its reader thread and its supervisor share.
pub(super) struct PoolState {
    /// The plugin's name, for logs.
    pub plugin: String,
    /// What a worker is started with.
    pub start: StartWith,
    pub host_functions: Arc<[HostFunction]>,
    /// The module a new worker loads: the latest that took over.
    pub module: Mutex<Module>,
    /// What the serving version says of itself.
    serving: RwLock<ServingVersion>,
    pub worker: Mutex<WorkerState>,
    pub worker_changed: Condvar,
    next_id: AtomicU64,
    calls: AtomicU64,
    in_flight: AtomicUsize,
    reloads: AtomicU64,
    pub restarts: AtomicU64,
    /// Log records and bytes the workers reported dropped (`log_dropped`).
    pub log_records_dropped: AtomicU64,
    pub log_bytes_dropped: AtomicU64,
    /// Instances serving, after [`WorkerPool::resize`].
    instances: AtomicUsize,
    /// One start at a time: a restart after a death, or a reload that
    /// finds no worker to reload in.
    pub starting: Mutex<()>,
    /// Workers in a row that died soon after their start.
    pub quick_deaths: AtomicU32,
    pub closing: AtomicBool,
    /// The re-entry group of the pool (`CALL-8`): a handler serving one of
    /// its host calls cannot call into it.
    pub group: usize,
}

/// How every worker of a pool is started and set up.
pub(super) struct StartWith {
    pub command: WorkerCommand,
    pub config: Config,
    pub settings: PoolSettings,
    pub limits: WorkerLimits,
}

/// A module and its metadata name, read by this process from the bytes it
/// sends: what host calls are checked against, never the worker's word.
#[derive(Clone)]
pub(super) struct Module {
    pub wasm: Arc<[u8]>,
    pub name: Arc<str>,
}

impl Module {
    /// The name is empty when the module has no readable metadata (the
    /// worker then refuses it anyway).
    pub fn new(wasm: &[u8]) -> Module {
        let name = pabi_abi::find_custom_sections(wasm, pabi_abi::METADATA_SECTION)
            .ok()
            .and_then(|sections| sections.into_iter().next())
            .and_then(|section| pabi_abi::Metadata::parse(&wasm[section.data]).ok())
            .map(|metadata| metadata.name)
            .unwrap_or_default();
        Module { wasm: wasm.into(), name: name.into() }
    }
}

/// The serving version's metadata, and its function names.
struct ServingVersion {
    metadata: Arc<pabi_abi::Metadata>,
    functions: Arc<[String]>,
}

/// The pool's worker, if one serves.
pub(super) enum WorkerState {
    Live(Arc<Link>),
    Restarting,
    /// The last start failed; the next is tried after a pause.
    Down(String),
}

impl std::fmt::Debug for WorkerPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkerPool").field("plugin", &self.state.plugin).finish_non_exhaustive()
    }
}

impl WorkerPool {
    /// Starts a worker and loads `wasm` in it with the host's
    /// configuration; the host's functions stay in this process.
    pub fn start(
        settings: PoolSettings,
        worker: WorkerSettings,
        host: &Host,
        wasm: &[u8],
    ) -> Result<WorkerPool, Error> {
        let module = Module::new(wasm);
        let command = match worker.command {
            Some(command) => command,
            None => {
                WorkerCommand::current_exe().map_err(|e| worker_down(format!("cannot find this executable: {e}")))?
            }
        };
        let host_functions: Arc<[HostFunction]> = host.config().host_functions().into();
        // The functions run here; the worker gets their names.
        let config = host.config().to_builder().without_host_functions().build();
        let state = Arc::new(PoolState {
            plugin: module.name.to_string(),
            instances: AtomicUsize::new(settings.instances),
            start: StartWith { command, config, settings, limits: worker.limits },
            host_functions,
            module: Mutex::new(module.clone()),
            serving: RwLock::new(ServingVersion {
                metadata: Arc::new(placeholder_metadata()),
                functions: Arc::from([]),
            }),
            worker: Mutex::new(WorkerState::Restarting),
            worker_changed: Condvar::new(),
            next_id: AtomicU64::new(1),
            calls: AtomicU64::new(0),
            in_flight: AtomicUsize::new(0),
            reloads: AtomicU64::new(0),
            restarts: AtomicU64::new(0),
            log_records_dropped: AtomicU64::new(0),
            log_bytes_dropped: AtomicU64::new(0),
            starting: Mutex::new(()),
            quick_deaths: AtomicU32::new(0),
            closing: AtomicBool::new(false),
            group: crate::plugin::new_group(),
        });
        let link = supervisor::start(&state, &module).map_err(|refusal| refusal.into_error())?;
        state.install(link);
        Ok(WorkerPool { state })
    }

    /// Calls `function` in the worker. Blocking: it panics on a thread that
    /// runs async tasks (as tokio's blocking waits do).
    pub fn call(&self, function: &str, input: &[u8], cancel: Option<&CancelHandle>) -> Result<Vec<u8>, Error> {
        self.check_reentry()?;
        let mut tries = 0;
        loop {
            if cancel.is_some_and(CancelHandle::is_cancelled) {
                return Err(Error::Cancelled);
            }
            let link = self.live_worker_blocking()?;
            match self.send_call(&link, function, input) {
                Ok((id, answer)) => {
                    let mut guard = CancelOnDrop { pool: self, link: &link, id, done: false };
                    let running = cancel.map(|cancel| cancel.running(cancel_in_worker(&link, id)));
                    let answer = answer.blocking_recv();
                    drop(running);
                    guard.done = true;
                    return self.finish(answer);
                }
                Err(reason) => self.undelivered(&link, reason, &mut tries)?,
            }
        }
    }

    /// Calls `function` in the worker without blocking the executor; the
    /// call is cancelled in the worker when the future is dropped.
    pub async fn call_async(&self, function: &str, input: Vec<u8>, cancel: CancelHandle) -> Result<Vec<u8>, Error> {
        self.check_reentry()?;
        let input = Arc::new(input);
        let mut tries = 0;
        loop {
            if cancel.is_cancelled() {
                return Err(Error::Cancelled);
            }
            let link = self.live_worker_async().await?;
            let sent = if input.len() <= SMALL_WRITE {
                self.send_call(&link, function, &input)
            } else {
                // A large input could fill the pipe and block until the
                // worker reads it: off the executor threads.
                let (pool, link, function, input) = (self.clone(), link.clone(), function.to_string(), input.clone());
                tokio::task::spawn_blocking(move || pool.send_call(&link, &function, &input))
                    .await
                    .unwrap_or_else(|e| Err(format!("the sending thread ended abnormally: {e}")))
            };
            match sent {
                Ok((id, answer)) => {
                    let mut guard = CancelOnDrop { pool: self, link: &link, id, done: false };
                    let running = cancel.running(cancel_in_worker(&link, id));
                    let answer = answer.await;
                    drop(running);
                    guard.done = true;
                    return self.finish(answer);
                }
                Err(reason) => self.undelivered(&link, reason, &mut tries)?,
            }
        }
    }

    /// Replaces the plugin, in the worker, by `wasm`, with its state
    /// (`LIFE-10`, `LIFE-11`); on failure the old version keeps serving.
    /// When no worker serves (it died, or keeps dying), a new worker is
    /// started with `wasm` instead, without state; a version that fails
    /// to start there is refused. A worker started later loads `wasm`.
    pub fn reload(&self, wasm: &[u8]) -> Result<(), Error> {
        let state = &*self.state;
        let module = Module::new(wasm);
        if let Some(link) = state.live() {
            match self.reload_in(&link, &module) {
                Ok(done) => return done,
                // The worker ended during the reload: start afresh below.
                Err(_) => state.retire(&link),
            }
        }
        // No worker to reload in: a new one with the new version.
        let _starting = lock(&state.starting);
        if let Some(link) = state.live() {
            // A restart won the race; its worker serves the old version.
            return self.reload_in(&link, &module).unwrap_or_else(Err);
        }
        let link = supervisor::start(&self.state, &module).map_err(|refusal| refusal.into_error())?;
        *lock(&state.module) = module;
        state.reloads.fetch_add(1, Ordering::Relaxed);
        state.install(link);
        Ok(())
    }

    /// Reloads `module` in the worker of `link`: the outcome, or `Err` with
    /// the error to report when the worker ended before it answered.
    fn reload_in(&self, link: &Link, module: &Module) -> Result<Result<(), Error>, Error> {
        let state = &*self.state;
        let id = state.next_id.fetch_add(1, Ordering::Relaxed);
        let answer = link.send(id, &ToWorker::Reload { id }, &module.wasm).map_err(worker_down)?;
        match answer.blocking_recv() {
            Ok(WorkerAnswer::Reloaded(metadata)) => {
                *lock(&state.module) = module.clone();
                state.set_metadata(*metadata);
                state.reloads.fetch_add(1, Ordering::Relaxed);
                Ok(Ok(()))
            }
            ended @ (Ok(WorkerAnswer::Ended(..)) | Err(_)) => Err(error_of(ended)),
            other => Ok(Err(error_of(other))),
        }
    }

    /// Serves with `instances` instances, from 1 up to the number the pool
    /// was built with; a worker started later serves with as many.
    pub fn resize(&self, instances: usize) {
        let state = &*self.state;
        let instances = instances.clamp(1, state.start.settings.instances);
        state.instances.store(instances, Ordering::Relaxed);
        if let Some(link) = state.live() {
            // A worker that cannot take it has ended, and its successor
            // starts with the new size.
            let _ = link.send_frame(&ToWorker::Resize { instances }, b"");
        }
    }

    /// Ends the worker and waits for it (see [`crate::Pool::shutdown`]).
    pub fn shutdown(&self) {
        self.state.close(true);
    }

    pub fn metadata(&self) -> Arc<pabi_abi::Metadata> {
        read(&self.state.serving).metadata.clone()
    }

    pub fn functions(&self) -> Arc<[String]> {
        read(&self.state.serving).functions.clone()
    }

    pub fn stats(&self) -> PoolStats {
        let state = &*self.state;
        let pid = match &*lock(&state.worker) {
            WorkerState::Live(link) => Some(link.pid),
            _ => None,
        };
        let size = state.instances.load(Ordering::Relaxed);
        // The worker's own queue is not seen from here: calls beyond its
        // instances count as waiting.
        let in_flight = state.in_flight.load(Ordering::Relaxed);
        let busy = in_flight.min(size);
        PoolStats {
            isolation: Isolation::WorkerProcess,
            size,
            live: if pid.is_some() { size } else { 0 },
            busy,
            waiting: in_flight - busy,
            reloads: state.reloads.load(Ordering::Relaxed),
            calls: state.calls.load(Ordering::Relaxed),
            calls_in_place: 0,
            calls_handed_on: 0,
            // Known to the `Pool` around this one, which sets it.
            disabled: false,
            log_records_dropped: state.log_records_dropped.load(Ordering::Relaxed),
            log_bytes_dropped: state.log_bytes_dropped.load(Ordering::Relaxed),
            worker: Some(WorkerStats { pid, restarts: state.restarts.load(Ordering::Relaxed) }),
        }
    }

    /// A handler serving this pool's host call would wait for itself when
    /// every instance is busy, as in a pool in this process (`CALL-8`).
    fn check_reentry(&self) -> Result<(), Error> {
        if crate::host_fn::is_serving(self.state.group) {
            return Err(Error::HostUnavailable(Unavailable::Reentrant));
        }
        Ok(())
    }

    fn live_worker_blocking(&self) -> Result<Arc<Link>, Error> {
        let state = &*self.state;
        let deadline = Instant::now() + state.start.settings.queue_timeout;
        let mut worker = lock(&state.worker);
        loop {
            match &*worker {
                WorkerState::Live(link) => return Ok(link.clone()),
                WorkerState::Down(reason) => return Err(state.down(reason)),
                WorkerState::Restarting => {
                    let left = deadline.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return Err(worker_down("a new worker did not start in time".into()));
                    }
                    worker = state.worker_changed.wait_timeout(worker, left).unwrap_or_else(|p| p.into_inner()).0;
                }
            }
        }
    }

    async fn live_worker_async(&self) -> Result<Arc<Link>, Error> {
        let state = &*self.state;
        let deadline = Instant::now() + state.start.settings.queue_timeout;
        loop {
            match &*lock(&state.worker) {
                WorkerState::Live(link) => return Ok(link.clone()),
                WorkerState::Down(reason) => return Err(state.down(reason)),
                WorkerState::Restarting if Instant::now() >= deadline => {
                    return Err(worker_down("a new worker did not start in time".into()))
                }
                WorkerState::Restarting => {}
            }
            // A restart is rare and takes milliseconds: polling keeps the
            // executor free without a second, async wake-up path.
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// A call that did not reach the worker of `link`: the next one waits
    /// for another worker, up to [`MAX_TRIES`] in all.
    fn undelivered(&self, link: &Arc<Link>, reason: String, tries: &mut u32) -> Result<(), Error> {
        *tries += 1;
        self.state.retire(link);
        if *tries == MAX_TRIES {
            return Err(worker_down(reason));
        }
        Ok(())
    }

    /// Sends a call; `Err` when it could not be delivered (the worker has
    /// ended), which is safe to try again with the next worker.
    fn send_call(
        &self,
        link: &Link,
        function: &str,
        input: &[u8],
    ) -> Result<(u64, oneshot::Receiver<WorkerAnswer>), String> {
        let state = &*self.state;
        let id = state.next_id.fetch_add(1, Ordering::Relaxed);
        let answer = link.send(id, &ToWorker::Call { id, function: function.into() }, input)?;
        state.calls.fetch_add(1, Ordering::Relaxed);
        state.in_flight.fetch_add(1, Ordering::Relaxed);
        Ok((id, answer))
    }

    fn finish(&self, answer: Result<WorkerAnswer, oneshot::error::RecvError>) -> Result<Vec<u8>, Error> {
        self.state.in_flight.fetch_sub(1, Ordering::Relaxed);
        match answer {
            Ok(WorkerAnswer::Output(output)) => Ok(output),
            other => Err(error_of(other)),
        }
    }
}

fn error_of(answer: Result<WorkerAnswer, oneshot::error::RecvError>) -> Error {
    match answer {
        Ok(WorkerAnswer::Failed(error)) => error,
        Ok(WorkerAnswer::Ended(pid, status)) => Error::HostUnavailable(Unavailable::WorkerExited { pid, status }),
        Ok(WorkerAnswer::Output(_) | WorkerAnswer::Reloaded(_)) | Err(_) => {
            worker_down("the worker answered out of turn".into())
        }
    }
}

/// No worker can serve: it cannot be started, or it broke the protocol.
pub(super) fn worker_down(reason: String) -> Error {
    Error::HostUnavailable(Unavailable::WorkerDown { reason })
}

/// What stops the call `id` in the worker of `link`.
fn cancel_in_worker(link: &Arc<Link>, id: u64) -> crate::cancel::Stop {
    let link = link.clone();
    Box::new(move || {
        let _ = link.send_frame(&ToWorker::Cancel { id }, b"");
    })
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
    pool: &'a WorkerPool,
    link: &'a Link,
    id: u64,
    done: bool,
}

impl Drop for CancelOnDrop<'_> {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        self.pool.state.in_flight.fetch_sub(1, Ordering::Relaxed);
        self.link.forget(self.id);
        let _ = self.link.send_frame(&ToWorker::Cancel { id: self.id }, b"");
    }
}

impl PoolState {
    /// Why no worker serves, for a call.
    fn down(&self, reason: &str) -> Error {
        if self.closing.load(Ordering::Acquire) {
            Error::HostUnavailable(Unavailable::ShutDown)
        } else {
            worker_down(reason.to_string())
        }
    }

    pub fn set_metadata(&self, metadata: pabi_abi::Metadata) {
        let functions = metadata.functions.iter().map(|f| f.name.clone()).collect();
        *write(&self.serving) = ServingVersion { metadata: Arc::new(metadata), functions };
    }

    /// Counts log text a worker reports dropped.
    pub fn log_dropped(&self, records: u64, bytes: u64) {
        self.log_records_dropped.fetch_add(records, Ordering::Relaxed);
        self.log_bytes_dropped.fetch_add(bytes, Ordering::Relaxed);
    }

    /// The instances a new worker serves with.
    pub fn instances(&self) -> usize {
        self.instances.load(Ordering::Relaxed)
    }

    /// The worker serving now, if one is.
    pub fn live(&self) -> Option<Arc<Link>> {
        match &*lock(&self.worker) {
            WorkerState::Live(link) => Some(link.clone()),
            _ => None,
        }
    }

    pub fn install(&self, link: Arc<Link>) {
        *lock(&self.worker) = WorkerState::Live(link);
        self.worker_changed.notify_all();
    }

    /// The worker of `link` has ended: calls wait for the next one instead
    /// of finding it again.
    pub fn retire(&self, link: &Arc<Link>) {
        let mut worker = lock(&self.worker);
        if matches!(&*worker, WorkerState::Live(live) if Arc::ptr_eq(live, link)) {
            *worker = WorkerState::Restarting;
        }
    }
}

impl Drop for PoolState {
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
