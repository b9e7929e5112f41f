//! A pool's worker processes over their lives: started (always from one
//! long-lived thread), loaded, restarted with a growing pause when they
//! keep dying, and ended when the pool closes.

use std::io::BufReader;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::Ordering;
use std::sync::{mpsc, Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use super::link::{read_answers, watch, Link};
use super::lock;
use super::pool::{worker_down, Module, PoolState, WorkerState};
use super::protocol::{read_frame_capped, FromWorker, HostFunctionOffer, ToWorker};
use crate::Error;

/// Calls to a worker that does not start wait this long, doubling up to
/// [`MAX_PAUSE`], before the next try.
const FIRST_PAUSE: Duration = Duration::from_millis(100);
const MAX_PAUSE: Duration = Duration::from_secs(5);
/// A worker that lived this long has not been crash-looping.
const HEALTHY: Duration = Duration::from_secs(10);

/// Why a worker did not start.
pub(super) enum NotStarted {
    /// The worker refused the plugin, with the host's error: the same one
    /// a pool in this process would give.
    Refused(Error),
    /// The worker could not be started or broke off.
    Failed(String),
}

impl NotStarted {
    pub fn into_error(self) -> Error {
        match self {
            NotStarted::Refused(error) => error,
            NotStarted::Failed(reason) => worker_down(reason),
        }
    }
}

/// The largest body a worker may send: no answer is larger than an
/// output, a host call's request or a plugin's error message, whichever
/// cap is largest.
fn max_body(pool: &PoolState) -> u64 {
    let limits = pool.start.config.limits();
    limits.max_output.max(limits.max_request).max(limits.max_error_message)
}

/// Starts a worker and loads `module`; on success its reader thread runs,
/// and will restart it when it dies.
pub(super) fn start(pool: &Arc<PoolState>, module: &Module) -> Result<Arc<Link>, NotStarted> {
    let program = &pool.start.command.program;
    let mut command = Command::new(program);
    command.args(&pool.start.command.args).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::inherit());
    let mut child =
        spawn(command).map_err(|e| NotStarted::Failed(format!("cannot start {}: {e}", program.display())))?;
    let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
        let _ = child.kill();
        let _ = child.wait();
        return Err(NotStarted::Failed("the worker's pipes were not set up".into()));
    };
    let link = Arc::new(Link::new(child, stdin));
    let mut stdout = BufReader::new(stdout);
    let max_body = max_body(pool);
    let load = ToWorker::Load {
        plugin: module.name.to_string(),
        config: Box::new(pool.start.config.clone()),
        pool: crate::pool_settings::PoolSettings { instances: pool.instances(), ..pool.start.settings.clone() },
        limits: pool.start.limits.clone(),
        host_functions: pool.host_functions.iter().map(HostFunctionOffer::of).collect(),
    };
    let sent = link.send_frame(&load, &module.wasm);
    // Until it is ready, the worker may make host calls (`pabi_init` may,
    // HOST-8): they are served here, as nothing else reads it yet.
    let loaded = loop {
        if let Err(error) = &sent {
            break Err(NotStarted::Failed(format!("cannot send the plugin: {error}")));
        }
        match read_frame_capped::<FromWorker>(&mut stdout, max_body) {
            Ok(Some((FromWorker::HostCall { id, name, function, time_left, .. }, request))) => {
                let call = super::relay::HostCall { id, name: &name, function: &function, time_left };
                super::relay::answer(pool, &link, call, &request, None);
            }
            // Answered above, on this thread: by the time this is read,
            // its handler has ended.
            Ok(Some((FromWorker::HostCallEnded { .. }, _))) => {}
            Ok(Some((FromWorker::Ready { metadata, .. }, _))) => break Ok(*metadata),
            Ok(Some((FromWorker::LogDropped { records, bytes }, _))) => pool.log_dropped(records, bytes),
            Ok(Some((FromWorker::Refused { error }, _))) => {
                let _ = lock(&link.child).wait();
                return Err(NotStarted::Refused(error));
            }
            Ok(Some(_)) => break Err(NotStarted::Failed("the worker answered out of turn".into())),
            Ok(None) => break Err(NotStarted::Failed("the worker ended before it was ready".into())),
            Err(error) => break Err(NotStarted::Failed(format!("a broken answer: {error}"))),
        }
    };
    let metadata = match loaded {
        Ok(metadata) => metadata,
        Err(NotStarted::Failed(reason)) => {
            let mut child = lock(&link.child);
            let _ = child.kill();
            let status = child.wait().map_or_else(|e| e.to_string(), |s| s.to_string());
            return Err(NotStarted::Failed(format!("{reason} ({status})")));
        }
        Err(refused) => return Err(refused),
    };
    pool.set_metadata(metadata);
    let started = Instant::now();
    // Weak: the pool closes when its last user lets go, not when its
    // worker does.
    let (reader_pool, reader_link) = (Arc::downgrade(pool), link.clone());
    let spawned = std::thread::Builder::new().name(format!("pabi-worker-reader-{}", link.pid)).spawn(move || {
        read_answers(stdout, &reader_link, &reader_pool, max_body);
        supervise(&reader_pool, &reader_link, started);
    });
    if let Err(error) = spawned {
        let mut child = lock(&link.child);
        let _ = child.kill();
        let _ = child.wait();
        return Err(NotStarted::Failed(format!("cannot start the thread that reads the worker: {error}")));
    }
    let watched = Arc::downgrade(&link);
    let spawned =
        std::thread::Builder::new().name(format!("pabi-worker-watch-{}", link.pid)).spawn(move || watch(&watched));
    if let Err(error) = spawned {
        // The reader thread reaps the worker once it is killed.
        link.kill();
        return Err(NotStarted::Failed(format!("cannot start the thread that checks the worker lives: {error}")));
    }
    Ok(link)
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

/// After a worker's output ended: fail what it held, reap it, and unless
/// the pool is closing, start another. Only a weak reference is kept
/// between tries, so that a pool let go while its worker cannot start
/// stops trying.
fn supervise(pool: &Weak<PoolState>, link: &Arc<Link>, started: Instant) {
    // Calls wait for the next worker from now on, not while it is reaped.
    if let Some(pool) = pool.upgrade() {
        pool.retire(link);
    }
    let status = {
        let mut child = lock(&link.child);
        match child.wait() {
            Ok(status) => status.to_string(),
            Err(error) => format!("cannot wait for it: {error}"),
        }
    };
    link.fail_all(&status);
    let mut pause = {
        let Some(pool) = pool.upgrade() else { return };
        if pool.closing.load(Ordering::Acquire) {
            return;
        }
        tracing::error!(plugin = %pool.plugin, pid = link.pid, "the worker process ended ({status}); starting another");
        // A worker that dies soon after it started again is crash-looping:
        // each such death doubles the pause before the next start.
        let quick = if started.elapsed() >= HEALTHY {
            pool.quick_deaths.store(0, Ordering::Relaxed);
            0
        } else {
            pool.quick_deaths.fetch_add(1, Ordering::Relaxed) + 1
        };
        match quick {
            0 => Duration::ZERO,
            n => FIRST_PAUSE.saturating_mul(1 << (n - 1).min(6)).min(MAX_PAUSE),
        }
    };
    loop {
        std::thread::sleep(pause);
        let Some(pool) = pool.upgrade() else { return };
        if pool.closing.load(Ordering::Acquire) {
            return;
        }
        let _starting = lock(&pool.starting);
        if matches!(&*lock(&pool.worker), WorkerState::Live(_)) {
            // A reload started a worker meanwhile.
            return;
        }
        let module = lock(&pool.module).clone();
        match start(&pool, &module) {
            Ok(link) => {
                pool.restarts.fetch_add(1, Ordering::Relaxed);
                tracing::info!(plugin = %pool.plugin, pid = link.pid, "worker process restarted");
                pool.install(link);
                return;
            }
            Err(not_started) => {
                let reason = not_started.into_error().to_string();
                tracing::error!(plugin = %pool.plugin, "cannot restart the worker process: {reason}");
                *lock(&pool.worker) = WorkerState::Down(reason);
                pool.worker_changed.notify_all();
                pause = (pause * 2).clamp(FIRST_PAUSE, MAX_PAUSE);
            }
        }
    }
}

impl PoolState {
    /// Ends the worker: its input closes, so it finishes its calls, runs
    /// `pabi_shutdown` and exits; killed if it has not within 10 s. With
    /// `wait`, here; else on a thread of its own, so that a pool dropped on
    /// an executor thread does not hold it.
    pub fn close(&self, wait: bool) {
        self.closing.store(true, Ordering::Release);
        let link = match std::mem::replace(&mut *lock(&self.worker), WorkerState::Down("shut down".into())) {
            WorkerState::Live(link) => link,
            _ => return,
        };
        self.worker_changed.notify_all();
        link.close_input();
        let reap = move || {
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                let mut child = lock(&link.child);
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
