//! The worker process of `process` isolation: one plugin, served to the
//! server over the worker protocol ([`crate::protocol`]) on standard
//! input and output.
//!
//! A binary that serves with `process` isolation runs its workers from
//! its own executable: it calls [`run_if_worker`] first thing in `main`.
//!
//! ```no_run
//! // First thing in `main`:
//! pabi_serve::worker::run_if_worker();
//! // … then the application, which may build a `Server` or a `ProcessPool`.
//! ```

use std::collections::{HashMap, VecDeque};
use std::fs::File;
use std::io::{BufReader, BufWriter, Write};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use pabi_host::{CallCancel, Error, Host, HostCallError, HostFunction, Pool, Unavailable};

use crate::protocol::{read_frame, write_frame, Failure, FromWorker, HostFunctionOffer, ToWorker};
use crate::{lock, PluginSettings};

/// The first argument that makes a process a worker.
pub const WORKER_ARG: &str = "__pabi-serve-worker";

/// When the process was started as a worker (first argument
/// [`WORKER_ARG`]), serves as one and exits; otherwise returns at once.
/// Log through the `tracing` subscriber the binary installs before: a
/// worker shares its standard error with the server.
pub fn run_if_worker() {
    if is_worker() {
        std::process::exit(run());
    }
}

/// Whether the process was started as a worker.
pub fn is_worker() -> bool {
    std::env::args_os().nth(1).is_some_and(|arg| arg == WORKER_ARG)
}

/// Serves one plugin on standard input and output until standard input
/// ends; the exit code: 0 after a clean end, 1 when the plugin was
/// refused, 2 when the protocol broke.
pub fn run() -> i32 {
    // The protocol keeps standard output to itself: it moves to a new
    // descriptor, and descriptor 1 becomes standard error, so that nothing
    // else written to standard output can break a frame.
    let (input, output) = match protocol_streams() {
        Ok(streams) => streams,
        Err(error) => {
            eprintln!("pabi worker: cannot set up its streams: {error}");
            return 2;
        }
    };
    let mut input = BufReader::new(input);
    let output = Arc::new(Mutex::new(BufWriter::new(output)));
    let (plugin, settings, offers, wasm) = match read_frame::<ToWorker>(&mut input) {
        Ok(Some((ToWorker::Load { plugin, settings, host_functions }, wasm))) => {
            (plugin, *settings, host_functions, wasm)
        }
        Ok(None) => return 0,
        Ok(Some((other, _))) => {
            eprintln!("pabi worker: the first message must be `load`, not {other:?}");
            return 2;
        }
        Err(error) => {
            eprintln!("pabi worker: {error}");
            return 2;
        }
    };
    let _span = tracing::info_span!("worker", plugin = %plugin).entered();
    if let Err(error) = limit_process(&settings) {
        tracing::warn!("cannot apply the worker's OS limits: {error}");
    }
    let relays = Relays::new(output.clone());
    let state = Arc::new(Served {
        queue: Queue { jobs: Mutex::default(), ready: Condvar::new() },
        pool: std::sync::OnceLock::new(),
        reloads: Mutex::default(),
        max_queue: settings.max_queue(),
        instances: settings.instances(),
    });
    // Standard input is read on a thread of its own from now on: a host
    // call in `pabi_init`, below, waits for a reply that comes in on it.
    let reader = {
        let (state, output, relays) = (state.clone(), output.clone(), relays.clone());
        std::thread::spawn(move || read_input(input, &state, &output, &relays))
    };
    let pool = match load(&settings, &wasm, &relays, &offers) {
        Ok(pool) => pool,
        Err(message) => {
            let _ = send(&output, &FromWorker::Refused { message }, b"");
            return 1;
        }
    };
    // Now that the engine has reserved its address space, the rest is capped.
    if let Err(error) = cap_address_space(settings.worker_address_headroom()) {
        tracing::warn!("cannot cap the worker's address space: {error}");
    }
    let _ = state.pool.set(pool.clone());
    let ready = FromWorker::Ready { pid: std::process::id(), metadata: Box::new((*pool.metadata()).clone()) };
    if send(&output, &ready, b"").is_err() {
        return 2;
    }
    // One thread per instance: a call never waits inside the pool, so the
    // queue, its cap and its timeout are all here.
    let queue_timeout = settings.queue_timeout();
    let executors: Vec<_> = (0..settings.instances())
        .map(|_| {
            let (state, output, pool) = (state.clone(), output.clone(), pool.clone());
            std::thread::spawn(move || execute(&state.queue, &output, &pool, queue_timeout))
        })
        .collect();
    let code = reader.join().unwrap_or(2);
    // The server closed the session: the calls received are finished and
    // answered (a host call waiting for the server fails), then the
    // instances get `pabi_shutdown` as the pool goes.
    relays.close();
    lock(&state.queue.jobs).closed = true;
    state.queue.ready.notify_all();
    let reloads = std::mem::take(&mut *lock(&state.reloads));
    for thread in executors.into_iter().chain(reloads) {
        let _ = thread.join();
    }
    drop(state);
    drop(pool);
    code
}

/// What the reading thread shares with the rest of the worker.
struct Served {
    queue: Queue,
    /// Set once the plugin is loaded.
    pool: std::sync::OnceLock<Pool>,
    reloads: Mutex<Vec<std::thread::JoinHandle<()>>>,
    max_queue: usize,
    instances: usize,
}

/// Reads the server's frames until standard input ends; the exit code.
fn read_input(mut input: BufReader<File>, state: &Served, output: &Output, relays: &Relays) -> i32 {
    loop {
        let (message, body) = match read_frame::<ToWorker>(&mut input) {
            Ok(Some(frame)) => frame,
            Ok(None) => {
                relays.close();
                return 0;
            }
            Err(error) => {
                tracing::error!("the server broke the worker protocol: {error}");
                relays.close();
                return 2;
            }
        };
        match message {
            ToWorker::HostReply { id, error } => relays.reply(id, error.map_or(Ok(body), Err)),
            ToWorker::Call { id, function } => {
                let mut jobs = lock(&state.queue.jobs);
                if jobs.running >= state.instances && jobs.waiting.len() >= state.max_queue {
                    drop(jobs);
                    let full = Error::HostUnavailable(Unavailable::QueueFull { limit: state.max_queue });
                    let _ = send(output, &FromWorker::Failed { id, failure: Failure::of(&full) }, b"");
                    continue;
                }
                let cancel = CallCancel::new();
                jobs.cancels.insert(id, cancel.clone());
                jobs.waiting.push_back(Job { id, function, input: body, queued: Instant::now(), cancel });
                drop(jobs);
                state.queue.ready.notify_one();
            }
            ToWorker::Cancel { id } => {
                if let Some(cancel) = lock(&state.queue.jobs).cancels.get(&id) {
                    cancel.cancel();
                }
            }
            ToWorker::Reload { id } => {
                let Some(pool) = state.pool.get().cloned() else {
                    tracing::error!("the server sent `reload` before the plugin was ready");
                    return 2;
                };
                // Off the reading thread: calls keep flowing while the new
                // version compiles.
                let output = output.clone();
                lock(&state.reloads).push(std::thread::spawn(move || {
                    let answer = match pool.reload(&body) {
                        Ok(()) => FromWorker::Reloaded { id, metadata: Box::new((*pool.metadata()).clone()) },
                        Err(error) => FromWorker::Failed { id, failure: Failure::of(&error) },
                    };
                    let _ = send(&output, &answer, b"");
                }));
            }
            ToWorker::Load { .. } => {
                tracing::error!("the server sent a second `load`");
                relays.close();
                return 2;
            }
        }
    }
}

/// The host calls relayed to the server and waiting for its reply.
#[derive(Clone)]
struct Relays {
    output: Output,
    waiting: Arc<Mutex<RelayWaits>>,
}

#[derive(Default)]
struct RelayWaits {
    next: u64,
    replies: HashMap<u64, std::sync::mpsc::Sender<Result<Vec<u8>, String>>>,
    /// The server is gone: no reply will come.
    closed: bool,
}

impl Relays {
    fn new(output: Output) -> Relays {
        Relays { output, waiting: Arc::default() }
    }

    /// A host function that sends the plugin's host call to the server and
    /// waits for its reply: the handler runs in the server's process. Its
    /// time counts against the call's deadline as any handler's (`CALL-7`).
    fn function(&self, offer: &HostFunctionOffer) -> Result<HostFunction, String> {
        let relays = self.clone();
        let function = HostFunction::new(&offer.name, move |cx, request| {
            let (reply, replied) = std::sync::mpsc::channel();
            let id = {
                let mut waiting = lock(&relays.waiting);
                if waiting.closed {
                    return Err(HostCallError::new("the server is gone"));
                }
                waiting.next += 1;
                let id = waiting.next;
                waiting.replies.insert(id, reply);
                id
            };
            let call = FromWorker::HostCall {
                id,
                name: cx.host_call().to_string(),
                plugin: cx.plugin().to_string(),
                function: cx.function().to_string(),
            };
            if send(&relays.output, &call, request).is_err() {
                lock(&relays.waiting).replies.remove(&id);
                return Err(HostCallError::new("cannot reach the server"));
            }
            match replied.recv() {
                Ok(Ok(reply)) => Ok(reply),
                Ok(Err(message)) => Err(HostCallError::new(message)),
                Err(_) => Err(HostCallError::new("the server is gone")),
            }
        })
        .map_err(|e| e.to_string())?;
        Ok(match &offer.only_for {
            Some(plugins) => function.only_for(plugins.iter().cloned()),
            None => function,
        })
    }

    fn reply(&self, id: u64, reply: Result<Vec<u8>, String>) {
        if let Some(waiter) = lock(&self.waiting).replies.remove(&id) {
            let _ = waiter.send(reply);
        }
    }

    /// Fails every host call waiting and any made later.
    fn close(&self) {
        let mut waiting = lock(&self.waiting);
        waiting.closed = true;
        waiting.replies.clear();
    }
}

#[cfg(unix)]
fn protocol_streams() -> std::io::Result<(File, File)> {
    let output = rustix::io::dup(std::io::stdout())?;
    rustix::stdio::dup2_stdout(std::io::stderr())?;
    let input = rustix::io::dup(std::io::stdin())?;
    Ok((File::from(input), File::from(output)))
}

#[cfg(not(unix))]
fn protocol_streams() -> std::io::Result<(File, File)> {
    Err(std::io::Error::other("process isolation needs a Unix system"))
}

/// The OS limits a worker takes on at once: no new privileges, no core
/// dumps, death with the server, the CPU time of its settings.
#[cfg(target_os = "linux")]
fn limit_process(settings: &PluginSettings) -> std::io::Result<()> {
    use rustix::process::{setrlimit, Resource, Rlimit};
    rustix::thread::set_no_new_privs(true)?;
    let parent = rustix::process::getppid();
    rustix::process::set_parent_process_death_signal(Some(rustix::process::Signal::KILL))?;
    // The server may have gone before the death signal was armed: then
    // this process has a new parent. (Not "the parent is 1": in a
    // container the server itself may be process 1.)
    if rustix::process::getppid() != parent {
        std::process::exit(0);
    }
    setrlimit(Resource::Core, Rlimit { current: Some(0), maximum: Some(0) })?;
    if let Some(cpu) = settings.worker_cpu_time {
        // SIGXCPU at the soft limit, SIGKILL a second later.
        let seconds = cpu.as_secs().max(1);
        setrlimit(Resource::Cpu, Rlimit { current: Some(seconds), maximum: Some(seconds + 1) })?;
    }
    Ok(())
}

/// Caps the address space at what the worker has mapped now plus
/// `headroom`: called once the engine has made its reservations.
#[cfg(target_os = "linux")]
fn cap_address_space(headroom: u64) -> std::io::Result<()> {
    use rustix::process::{setrlimit, Resource, Rlimit};
    let statm = std::fs::read_to_string("/proc/self/statm")?;
    let pages: u64 = statm
        .split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| std::io::Error::other("cannot read /proc/self/statm"))?;
    let size = pages.saturating_mul(rustix::param::page_size() as u64).saturating_add(headroom);
    setrlimit(Resource::As, Rlimit { current: Some(size), maximum: Some(size) }).map_err(Into::into)
}

#[cfg(not(target_os = "linux"))]
fn limit_process(_: &PluginSettings) -> std::io::Result<()> {
    Err(std::io::Error::other("the worker's OS limits are implemented for Linux only"))
}

#[cfg(not(target_os = "linux"))]
fn cap_address_space(_: u64) -> std::io::Result<()> {
    Err(std::io::Error::other("the worker's OS limits are implemented for Linux only"))
}

fn load(settings: &PluginSettings, wasm: &[u8], relays: &Relays, offers: &[HostFunctionOffer]) -> Result<Pool, String> {
    let mut config = settings.host_config()?.to_builder();
    for offer in offers {
        config = config.host_function(relays.function(offer)?);
    }
    let host = Host::new(config.build()).map_err(|e| e.to_string())?;
    Pool::builder()
        .size(settings.instances())
        // The worker queues calls itself (below); the pool never has to.
        .max_queue(settings.max_queue())
        .plugin_config(settings.config.clone().unwrap_or_default())
        .build(&host, wasm)
        .map_err(|e| e.to_string())
}

type Output = Arc<Mutex<BufWriter<File>>>;

fn send(output: &Output, header: &FromWorker, body: &[u8]) -> std::io::Result<()> {
    let mut output = lock(output);
    write_frame(&mut *output, header, body)?;
    output.flush()
}

struct Job {
    id: u64,
    function: String,
    input: Vec<u8>,
    queued: Instant,
    cancel: CallCancel,
}

/// The calls received and not yet started, and the cancel handle of every
/// call not yet answered.
struct Queue {
    jobs: Mutex<Jobs>,
    ready: Condvar,
}

#[derive(Default)]
struct Jobs {
    waiting: VecDeque<Job>,
    running: usize,
    cancels: HashMap<u64, CallCancel>,
    closed: bool,
}

fn execute(queue: &Queue, output: &Output, pool: &Pool, queue_timeout: Duration) {
    loop {
        let job = {
            let mut jobs = lock(&queue.jobs);
            loop {
                if let Some(job) = jobs.waiting.pop_front() {
                    jobs.running += 1;
                    break job;
                }
                if jobs.closed {
                    return;
                }
                jobs = queue.ready.wait(jobs).unwrap_or_else(|p| p.into_inner());
            }
        };
        let outcome = if job.cancel.is_cancelled() {
            Err(Error::Cancelled)
        } else if job.queued.elapsed() > queue_timeout {
            Err(Error::HostUnavailable(Unavailable::QueueTimeout { timeout: queue_timeout }))
        } else {
            pool.call_cancellable(&job.function, &job.input, &job.cancel)
        };
        let sent = match &outcome {
            Ok(output_bytes) => send(output, &FromWorker::Output { id: job.id }, output_bytes),
            Err(error) => {
                let body = error.message().unwrap_or_default();
                send(output, &FromWorker::Failed { id: job.id, failure: Failure::of(error) }, body)
            }
        };
        let mut jobs = lock(&queue.jobs);
        jobs.running -= 1;
        jobs.cancels.remove(&job.id);
        drop(jobs);
        if sent.is_err() {
            // The server is gone; the reading thread sees the end too.
            return;
        }
    }
}
