//! The worker process of `Isolation::WorkerProcess`: one plugin in an
//! in-process pool, served to the pool's side over the worker protocol
//! ([`super::protocol`]) on standard input and output.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufReader, BufWriter, Write};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use super::lock;
use super::os_limits::{cap_address_space, limit_process};
use super::priority::{lower_every_thread, lower_this_thread};
use super::protocol::{read_frame_bounded, take_message, write_frame, FromWorker, HostFunctionOffer, ToWorker};
use crate::in_process_pool::{thread_cpu_time, InProcessPool};
use crate::pool_settings::PoolSettings;
use crate::{CancelHandle, Config, Error, Host, HostCallError, HostFunction};

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
    let first = read_frame_bounded::<ToWorker>(&mut input, |frame| frame.max_body(&pabi_abi::Limits::default()));
    let (plugin, config, settings, limits, offers, wasm) = match first {
        Ok(Some((ToWorker::Load { plugin, config, pool, limits, host_functions }, wasm))) => {
            (plugin, *config, pool, limits, host_functions, wasm)
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
    if let Err(error) = limit_process(&limits) {
        tracing::warn!("cannot apply the worker's OS limits: {error}");
    }
    let relays = Relays::new(output.clone());
    let calls = match Calls::new(&settings) {
        Ok(calls) => Arc::new(calls),
        Err(error) => {
            eprintln!("pabi worker: cannot start its call threads: {error}");
            return 2;
        }
    };
    // Standard input is read on another thread from now on: a host call
    // in `pabi_init`, below, waits for a reply that comes in on it. The
    // reading moves from thread to thread ([`Reader::read`]); the one that
    // reads its end sends the exit code.
    let (ended, exit_code) = std::sync::mpsc::channel();
    let reader = Reader {
        input,
        limits: Arc::new(config.limits().clone()),
        calls: calls.clone(),
        output: output.clone(),
        relays: relays.clone(),
        ended,
    };
    std::thread::spawn(move || reader.read());
    let pool = match load(config, settings, &wasm, &relays, &offers) {
        Ok(pool) => pool,
        Err(error) => {
            let _ = send(&output, &FromWorker::Refused { error }, b"");
            return 1;
        }
    };
    // Now that the engine has reserved its address space, the rest is capped.
    if let Err(error) = cap_address_space(limits.address_headroom) {
        tracing::warn!("cannot cap the worker's address space: {error}");
    }
    let _ = calls.pool.set(pool.clone());
    let ready = FromWorker::Ready { pid: std::process::id(), metadata: Box::new((*pool.metadata()).clone()) };
    if send(&output, &ready, b"").is_err() {
        return 2;
    }
    // No code: the thread reading panicked.
    let code = exit_code.recv().unwrap_or(2);
    // The pool's side closed the session: the calls received are finished
    // and answered (a host call waiting for it fails), then the instances
    // get `pabi_shutdown`.
    relays.close();
    calls.wait_for_all();
    pool.shutdown();
    code
}

/// The calls received and not yet answered. Each runs on a thread of
/// tokio's blocking pool and waits, if it must, in the one queue of the
/// in-process pool, which holds the queue's cap and timeout.
struct Calls {
    /// Set once the plugin is loaded.
    pool: std::sync::OnceLock<InProcessPool>,
    threads: tokio::runtime::Runtime,
    /// The cancel handle of every call not yet answered, by id.
    running: Mutex<HashMap<u64, CancelHandle>>,
    /// Reloads in progress count as calls, so that the end waits for them.
    done: Condvar,
    /// The plugin's log drops reported to the pool so far.
    reported: (AtomicU64, AtomicU64),
    /// Whether the calls make the worker heavy.
    load: Load,
    /// Whether the worker lowered its threads ([`lower_every_thread`]).
    lowered: AtomicBool,
}

impl Calls {
    fn new(settings: &PoolSettings) -> std::io::Result<Calls> {
        // A thread for every call that may run or wait at once, one for a
        // reload and one for the reading ([`Reader::read`]): the pool
        // refuses any call past those at once, so none waits for a thread.
        let threads = settings.instances.saturating_add(settings.max_queue).saturating_add(3).min(MAX_THREADS);
        let threads = tokio::runtime::Builder::new_current_thread().max_blocking_threads(threads).build()?;
        Ok(Calls {
            pool: std::sync::OnceLock::new(),
            threads,
            running: Mutex::default(),
            done: Condvar::new(),
            reported: Default::default(),
            load: Load::new(Instant::now()),
            lowered: AtomicBool::new(false),
        })
    }

    /// Runs `job` on a thread of its own, as the call or reload `id`.
    fn spawn(self: &Arc<Calls>, id: u64, job: impl FnOnce(&InProcessPool, &CancelHandle) + Send + 'static) {
        if let Some(run) = self.start(id) {
            drop(self.threads.spawn_blocking(move || run(job)));
        }
    }

    /// Registers the call or reload `id`, whose cancel frame may come next,
    /// and returns what runs it, on any thread; `None` before the plugin
    /// is ready.
    fn start<J>(self: &Arc<Calls>, id: u64) -> Option<impl FnOnce(J) + Send + 'static>
    where
        J: FnOnce(&InProcessPool, &CancelHandle),
    {
        let Some(pool) = self.pool.get().cloned() else {
            tracing::error!("a call or reload came before the plugin was ready");
            return None;
        };
        let cancel = CancelHandle::new();
        lock(&self.running).insert(id, cancel.clone());
        let calls = self.clone();
        Some(move |job: J| {
            job(&pool, &cancel);
            lock(&calls.running).remove(&id);
            calls.done.notify_all();
        })
    }

    /// Reports the log drops of the plugin not reported yet, if any: the
    /// pool's stats count them. Calls end concurrently; each reports what
    /// its reading of the counts adds to the highest reported.
    fn report_log_drops(&self, pool: &InProcessPool, output: &Output) {
        let (records, bytes) = pool.log_dropped();
        let records = records.saturating_sub(self.reported.0.fetch_max(records, Ordering::Relaxed));
        let bytes = bytes.saturating_sub(self.reported.1.fetch_max(bytes, Ordering::Relaxed));
        if records > 0 || bytes > 0 {
            let _ = send(output, &FromWorker::LogDropped { records, bytes }, b"");
        }
    }

    /// Counts a call that computed for `computed`: once the calls make
    /// the worker heavy ([`Load`]), it lowers its threads for good
    /// ([`lower_every_thread`]).
    fn computed(&self, computed: Duration) {
        if self.load.heavy_after(computed, Instant::now()) && !self.lowered.swap(true, Ordering::Relaxed) {
            if let Err(error) = lower_every_thread() {
                tracing::debug!("cannot lower the worker's threads: {error}");
            }
        }
    }

    fn cancel(&self, id: u64) {
        if let Some(cancel) = lock(&self.running).get(&id) {
            cancel.cancel();
        }
    }

    fn wait_for_all(&self) {
        let mut running = lock(&self.running);
        while !running.is_empty() {
            running = self.done.wait(running).unwrap_or_else(|p| p.into_inner());
        }
    }
}

/// Whether a worker's calls make it heavy: two calls in a row that
/// computed [`HEAVY_CALL`] or more (two, because the call after a trap
/// also makes the new instance), or calls that computed [`BUSY_SHARE`] of
/// a CPU over a [`BUSY_WINDOW`].
struct Load {
    /// Calls in a row that computed [`HEAVY_CALL`] or more.
    heavy_in_a_row: AtomicU32,
    /// The CPU time the calls computed since the window began, and when
    /// it began.
    busy: Mutex<(Duration, Instant)>,
}

impl Load {
    fn new(now: Instant) -> Load {
        Load { heavy_in_a_row: AtomicU32::new(0), busy: Mutex::new((Duration::ZERO, now)) }
    }

    /// Counts a call that computed for `computed` and ended at `now`;
    /// true once the calls make the worker heavy.
    fn heavy_after(&self, computed: Duration, now: Instant) -> bool {
        let long = if computed < HEAVY_CALL {
            self.heavy_in_a_row.store(0, Ordering::Relaxed);
            false
        } else {
            self.heavy_in_a_row.fetch_add(1, Ordering::Relaxed) + 1 >= HEAVY_IN_A_ROW
        };
        let mut busy = lock(&self.busy);
        busy.0 = busy.0.saturating_add(computed);
        let window = now.saturating_duration_since(busy.1);
        if window < BUSY_WINDOW {
            return long;
        }
        let share = busy.0.as_secs_f64() / window.as_secs_f64();
        *busy = (Duration::ZERO, now);
        long || share >= BUSY_SHARE
    }
}

/// Calls that compute this long (their thread's CPU time, not the time
/// they waited for a CPU), [`HEAVY_IN_A_ROW`] in a row, make their worker
/// heavy ([`Load`]): a slice of the CPU gate ([`crate::CpuGate`]), past
/// which an in-process call gives its permit up to a waiting one.
const HEAVY_CALL: Duration = Duration::from_micros(500);

/// Calls in a row of [`HEAVY_CALL`] that make the worker heavy.
const HEAVY_IN_A_ROW: u32 = 2;

/// The share of one CPU that a worker's calls compute, over a
/// [`BUSY_WINDOW`], that makes it heavy as long calls do: a plugin whose
/// short calls come without pause (a memory bomb refused at once, a log
/// flood, an echo at full speed) is no plugin with little work, and its
/// threads at the priority of one would delay it (in `bench/serve`, the
/// light echo's 200 calls a second compute under 1 % of a CPU).
const BUSY_SHARE: f64 = 0.1;

/// The window over which [`BUSY_SHARE`] is measured.
const BUSY_WINDOW: Duration = Duration::from_secs(1);

/// Threads past this many are not started; calls past them wait for one.
const MAX_THREADS: usize = 4096;

/// Reads the pool's frames until standard input ends, on one thread at a
/// time.
struct Reader {
    input: BufReader<File>,
    limits: Arc<pabi_abi::Limits>,
    calls: Arc<Calls>,
    output: Output,
    relays: Relays,
    /// Where the exit code goes once standard input ends.
    ended: std::sync::mpsc::Sender<i32>,
}

impl Reader {
    /// Reads frames until standard input ends, then sends the exit code;
    /// or until a call comes: the thread that read it hands the reading on
    /// to a thread of the call pool and runs the call itself. Before, the
    /// reading thread handed the call to a call thread, whose wake-up each
    /// call waited for; beside busy neighbours the system's scheduler can
    /// delay a wake-up by a slice of another thread. Now the reading
    /// thread's successor wakes while the call runs.
    fn read(mut self) {
        let code = loop {
            // Every frame is held to the cap of what it carries: a pool's
            // side gone wrong cannot make the worker allocate past it.
            let frame = read_frame_bounded::<ToWorker>(&mut self.input, |frame| frame.max_body(&self.limits));
            let (message, body) = match frame {
                Ok(Some(frame)) => frame,
                Ok(None) => break 0,
                Err(error) => {
                    tracing::error!("the pool's side broke the worker protocol: {error}");
                    break 2;
                }
            };
            let (calls, output) = (&self.calls, &self.output);
            match message {
                ToWorker::HostReply { id, error } => self.relays.reply(id, error.map_or(Ok(body), Err)),
                ToWorker::Call { id, function } => {
                    // Registered before the reading moves on: the call's
                    // cancel frame may be the next one read.
                    let Some(run) = calls.start(id) else { continue };
                    let (output, reporter) = (output.clone(), calls.clone());
                    // Every call that may run or wait at once has a thread
                    // of the pool, and so does the reading ([`Calls::new`]).
                    let threads = calls.threads.handle().clone();
                    drop(threads.spawn_blocking(move || self.read()));
                    run(move |pool: &InProcessPool, cancel: &CancelHandle| {
                        let mut result = Vec::new();
                        // Once lowered, a worker measures its calls no more.
                        let before = if reporter.lowered.load(Ordering::Relaxed) {
                            lower_this_thread();
                            None
                        } else {
                            thread_cpu_time()
                        };
                        let answer = pool.call_into(&function, &body, &mut result, Some(cancel)).map(|()| result);
                        if let (Some(before), Some(after)) = (before, thread_cpu_time()) {
                            reporter.computed(after.saturating_sub(before));
                        }
                        // Before the answer: a caller that has it sees the
                        // drops in the pool's stats.
                        reporter.report_log_drops(pool, &output);
                        let _ = match answer {
                            Ok(bytes) => send(&output, &FromWorker::Output { id }, &bytes),
                            Err(error) => {
                                let (error, message) = take_message(error);
                                send(&output, &FromWorker::Failed { id, error }, &message)
                            }
                        };
                    });
                    return;
                }
                ToWorker::Cancel { id } => calls.cancel(id),
                // Answered by the thread that reads, which runs no call
                // while it does: a worker whose calls all run or wait still
                // says it lives.
                ToWorker::Ping => {
                    let _ = send(output, &FromWorker::Pong, b"");
                }
                ToWorker::Resize { instances } => {
                    if let Some(pool) = calls.pool.get() {
                        pool.resize(instances);
                    }
                }
                ToWorker::Reload { id } => {
                    let output = output.clone();
                    // Off the reading thread: calls keep flowing while the
                    // new version compiles.
                    calls.spawn(id, move |pool, _| {
                        let answer = match pool.reload(&body) {
                            Ok(()) => FromWorker::Reloaded { id, metadata: Box::new((*pool.metadata()).clone()) },
                            Err(error) => FromWorker::Failed { id, error },
                        };
                        let _ = send(&output, &answer, b"");
                    });
                }
                ToWorker::Load { .. } => {
                    tracing::error!("the pool's side sent a second `load`");
                    break 2;
                }
            }
        };
        self.relays.close();
        let _ = self.ended.send(code);
    }
}

/// How often a relayed host call's wait looks at its call's cancel.
const RELAY_LOOK: std::time::Duration = std::time::Duration::from_millis(10);

/// The host calls relayed to the pool and waiting for its reply.
#[derive(Clone)]
struct Relays {
    output: Output,
    waiting: Arc<Mutex<RelayWaits>>,
}

#[derive(Default)]
struct RelayWaits {
    next: u64,
    replies: HashMap<u64, std::sync::mpsc::Sender<Result<Vec<u8>, String>>>,
    /// The pool's side is gone: no reply will come.
    closed: bool,
}

impl Relays {
    fn new(output: Output) -> Relays {
        Relays { output, waiting: Arc::default() }
    }

    /// A host function that sends the plugin's host call to the pool and
    /// waits for its reply: the handler runs in the pool's process. Its
    /// time counts against the call's deadline as any handler's (`CALL-7`).
    fn function(&self, offer: &HostFunctionOffer) -> HostFunction {
        let relays = self.clone();
        let function = HostFunction::new(&offer.name, move |cx, request| {
            let time_left = cx.deadline().map(|deadline| deadline.saturating_duration_since(std::time::Instant::now()));
            let (reply, replied) = std::sync::mpsc::channel();
            let id = {
                let mut waiting = lock(&relays.waiting);
                if waiting.closed {
                    return Err(HostCallError::new("the pool is gone"));
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
                time_left,
            };
            if send(&relays.output, &call, request).is_err() {
                lock(&relays.waiting).replies.remove(&id);
                return Err(HostCallError::new("cannot reach the pool"));
            }
            // The wait ends at the call's deadline or cancel, whatever the
            // handler over there does (`CALL-7`): the call then ends with
            // TIMEOUT or CANCELLED, and a late reply finds no one.
            loop {
                let look = cx.deadline().map_or(RELAY_LOOK, |deadline| {
                    deadline.saturating_duration_since(std::time::Instant::now()).min(RELAY_LOOK)
                });
                match replied.recv_timeout(look) {
                    Ok(Ok(reply)) => return Ok(reply),
                    Ok(Err(message)) => return Err(HostCallError::new(message)),
                    Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                        return Err(HostCallError::new("the pool is gone"))
                    }
                    Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                        let passed = cx.deadline().is_some_and(|deadline| std::time::Instant::now() >= deadline);
                        if passed || cx.is_cancelled() {
                            lock(&relays.waiting).replies.remove(&id);
                            // Its handler over there is ended too. Lost
                            // only if the pool is gone, which ends it.
                            let _ = send(&relays.output, &FromWorker::HostCallEnded { id }, b"");
                            return Err(HostCallError::new("the call ended while its host call waited"));
                        }
                    }
                }
            }
        });
        match &offer.only_for {
            Some(plugins) => function.only_for(plugins.iter().cloned()),
            None => function,
        }
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

fn load(
    config: Config,
    settings: PoolSettings,
    wasm: &[u8],
    relays: &Relays,
    offers: &[HostFunctionOffer],
) -> Result<InProcessPool, Error> {
    let mut config = config.to_builder();
    for offer in offers {
        config = config.host_function(relays.function(offer));
    }
    let host = Host::new(config.build())?;
    InProcessPool::build(&settings, &host, wasm)
}

type Output = Arc<Mutex<BufWriter<File>>>;

fn send(output: &Output, header: &FromWorker, body: &[u8]) -> std::io::Result<()> {
    let mut output = lock(output);
    write_frame(&mut *output, header, body)?;
    output.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_calls_two_in_a_row_make_a_worker_heavy() {
        let start = Instant::now();
        let load = Load::new(start);
        assert!(!load.heavy_after(HEAVY_CALL, start));
        // A short call between two long ones starts the count again.
        assert!(!load.heavy_after(Duration::from_micros(10), start));
        assert!(!load.heavy_after(HEAVY_CALL, start));
        assert!(load.heavy_after(HEAVY_CALL, start));
    }

    #[test]
    fn short_calls_make_a_worker_heavy_by_their_share_of_a_cpu_over_a_window() {
        let start = Instant::now();
        let call = Duration::from_micros(100);
        // 1,000 short calls computing 0.1 s: under the share over 2 s,
        // which the window's end alone decides.
        let light = Load::new(start);
        for _ in 0..999 {
            assert!(!light.heavy_after(call, start));
        }
        assert!(!light.heavy_after(call, start + 2 * BUSY_WINDOW));
        // The same calls over one window are the share: heavy at its end,
        // not before.
        let busy = Load::new(start);
        for _ in 0..999 {
            assert!(!busy.heavy_after(call, start + BUSY_WINDOW / 2));
        }
        assert!(busy.heavy_after(call, start + BUSY_WINDOW));
        // A window starts again at the end of the last.
        assert!(!busy.heavy_after(call, start + 2 * BUSY_WINDOW));
    }
}
