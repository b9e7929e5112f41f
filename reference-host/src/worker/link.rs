//! One worker process and its pipes: frames written by the callers
//! themselves, answers read by one thread and handed to the caller waiting
//! for each `id`.

use std::collections::HashMap;
use std::io::{BufReader, BufWriter, Write};
use std::process::{Child, ChildStdin, ChildStdout};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use super::lock;
use super::pool::PoolState;
use super::protocol::{read_frame_capped, with_message, write_frame, FromWorker, ToWorker};
use crate::Error;

/// One worker process and its pipes.
pub(super) struct Link {
    pub pid: u32,
    /// The worker's standard input; `None` once closed, which ends the
    /// worker's session. Callers write their frames themselves, under the
    /// lock: a writer thread between them and the pipe cost a thread
    /// wake-up per call, a fifth of a call's time.
    input: Mutex<Option<BufWriter<PipeInput>>>,
    pending: Mutex<Pending>,
    /// The cancel flag of each host call the worker relayed whose handler
    /// runs, by the worker's id: set when the worker's call stops waiting
    /// for it, or the worker ends, so that a handler (a command, say) ends
    /// then, not at the call's deadline.
    host_calls: Mutex<HashMap<u64, Arc<AtomicBool>>>,
    pub child: Mutex<Child>,
    /// When the link was made: what [`Link::heard`] counts from.
    born: Instant,
    /// When a frame last came from the worker, in nanoseconds since
    /// `born`: the liveness check's evidence ([`watch`]).
    heard: AtomicU64,
}

#[derive(Default)]
struct Pending {
    answers: HashMap<u64, oneshot::Sender<WorkerAnswer>>,
    /// Set once the worker ended: a call made later fails at once instead
    /// of waiting for an answer nobody will send.
    ended: Option<String>,
}

/// What the worker answered to a call or a reload.
pub(super) enum WorkerAnswer {
    Output(Vec<u8>),
    Failed(Error),
    Reloaded(Box<pabi_abi::Metadata>),
    /// The worker ended: its pid and how.
    Ended(u32, String),
}

impl Link {
    /// The worker `child`, whose standard input the caller took out.
    pub fn new(child: Child, stdin: ChildStdin) -> Link {
        let pid = child.id();
        Link {
            pid,
            input: Mutex::new(Some(BufWriter::new(PipeInput(stdin)))),
            pending: Mutex::default(),
            host_calls: Mutex::default(),
            child: Mutex::new(child),
            born: Instant::now(),
            heard: AtomicU64::new(0),
        }
    }

    fn since_born(&self, at: Instant) -> u64 {
        u64::try_from(at.saturating_duration_since(self.born).as_nanos()).unwrap_or(u64::MAX)
    }

    /// A frame came from the worker now.
    fn heard_now(&self) {
        self.heard.store(self.since_born(Instant::now()), Ordering::Relaxed);
    }

    /// Whether a frame came from the worker at or after `at`.
    fn heard_since(&self, at: Instant) -> bool {
        self.heard.load(Ordering::Relaxed) >= self.since_born(at)
    }

    /// Registers the answer of `id`, then writes the frame; `Err` when the
    /// frame did not reach the worker.
    pub fn send(&self, id: u64, message: &ToWorker, body: &[u8]) -> Result<oneshot::Receiver<WorkerAnswer>, String> {
        let (sender, receiver) = oneshot::channel();
        {
            let mut pending = lock(&self.pending);
            if let Some(status) = &pending.ended {
                return Err(format!("the worker (pid {}) ended ({status})", self.pid));
            }
            pending.answers.insert(id, sender);
        }
        self.send_frame(message, body).inspect_err(|_| self.forget(id))?;
        Ok(receiver)
    }

    /// The caller of `id` stopped waiting: its answer, if one comes, is
    /// dropped.
    pub fn forget(&self, id: u64) {
        lock(&self.pending).answers.remove(&id);
    }

    /// Writes a frame. A large body blocks the caller while the worker
    /// reads it, which its reading thread does at once; a worker that
    /// reads nothing for [`STALL`] is ended, and the frame is not sent.
    pub fn send_frame(&self, message: &ToWorker, body: &[u8]) -> Result<(), String> {
        let mut input = lock(&self.input);
        let writer = input.as_mut().ok_or("the worker is closing")?;
        match write_frame(writer, message, body).and_then(|()| writer.flush()) {
            Ok(()) => Ok(()),
            Err(error) => {
                // Part of a frame may have gone: nothing more can be sent
                // on this pipe. A worker still alive is ended, and the
                // supervisor starts another.
                input.take();
                if let Ok(mut child) = self.child.try_lock() {
                    let _ = child.kill();
                }
                Err(format!("cannot write to the worker: {error}"))
            }
        }
    }

    /// Closes the worker's input, which ends its session.
    pub fn close_input(&self) {
        lock(&self.input).take();
    }

    /// Fails every call the worker held, and any sent later, with
    /// [`WorkerAnswer::Ended`].
    pub fn fail_all(&self, status: &str) {
        let held: Vec<_> = {
            let mut pending = lock(&self.pending);
            pending.ended = Some(status.to_string());
            pending.answers.drain().map(|(_, sender)| sender).collect()
        };
        for sender in held {
            let _ = sender.send(WorkerAnswer::Ended(self.pid, status.to_string()));
        }
        // No one waits for the replies of the host calls it made.
        for (_, cancel) in lock(&self.host_calls).drain() {
            cancel.store(true, Ordering::Relaxed);
        }
    }

    /// Registers the host call `id` whose handler is about to run: its
    /// cancel flag.
    fn host_call_started(&self, id: u64) -> Arc<AtomicBool> {
        let cancel = Arc::new(AtomicBool::new(lock(&self.pending).ended.is_some()));
        lock(&self.host_calls).insert(id, cancel.clone());
        cancel
    }

    fn host_call_done(&self, id: u64) {
        lock(&self.host_calls).remove(&id);
    }

    /// The worker's call stopped waiting for the host call `id`: its
    /// handler is cancelled.
    fn host_call_ended(&self, id: u64) {
        if let Some(cancel) = lock(&self.host_calls).remove(&id) {
            cancel.store(true, Ordering::Relaxed);
        }
    }

    pub fn kill(&self) {
        let _ = lock(&self.child).kill();
    }
}

/// Reads the worker's answers until its output ends, handing each to its
/// caller; a host call is served on a thread of its own.
pub(super) fn read_answers(
    mut stdout: BufReader<ChildStdout>,
    link: &Arc<Link>,
    pool: &Weak<PoolState>,
    max_body: u64,
) {
    loop {
        let (message, body) = match read_frame_capped::<FromWorker>(&mut stdout, max_body) {
            Ok(Some(frame)) => {
                link.heard_now();
                frame
            }
            Ok(None) => return,
            Err(error) => {
                tracing::error!(pid = link.pid, "the worker broke the protocol: {error}");
                // A worker that breaks the protocol is ended like a dead one.
                link.kill();
                return;
            }
        };
        let (id, answer) = match message {
            FromWorker::Output { id } => (id, WorkerAnswer::Output(body)),
            FromWorker::Failed { id, error } => (id, WorkerAnswer::Failed(with_message(error, body))),
            FromWorker::Reloaded { id, metadata } => (id, WorkerAnswer::Reloaded(metadata)),
            FromWorker::HostCall { id, name, function, time_left, .. } => {
                let Some(pool) = pool.upgrade() else { return };
                // On a thread of its own: a handler may take its time, and
                // the answers of other calls keep flowing meanwhile.
                let relay = link.clone();
                let cancel = link.host_call_started(id);
                let spawned = std::thread::Builder::new().name("pabi-host-call".into()).spawn(move || {
                    let call = super::relay::HostCall { id, name: &name, function: &function, time_left };
                    super::relay::answer(&pool, &relay, call, &body, Some(&cancel));
                    relay.host_call_done(id);
                });
                if let Err(error) = spawned {
                    // Answering from here could wait on the worker's input
                    // while the worker waits on its output: end it instead.
                    tracing::error!(pid = link.pid, "cannot start a thread for a host call: {error}");
                    link.kill();
                    return;
                }
                continue;
            }
            FromWorker::HostCallEnded { id } => {
                link.host_call_ended(id);
                continue;
            }
            FromWorker::LogDropped { records, bytes } => {
                if let Some(pool) = pool.upgrade() {
                    pool.log_dropped(records, bytes);
                }
                continue;
            }
            FromWorker::Ready { .. } | FromWorker::Refused { .. } | FromWorker::Pong => continue,
        };
        // A call whose caller stopped waiting has no entry any more.
        if let Some(sender) = lock(&link.pending).answers.remove(&id) {
            let _ = sender.send(answer);
        }
    }
}

/// How often a worker with calls in it is asked whether it lives.
const PING_EVERY: Duration = Duration::from_millis(250);

/// How long a worker may leave a `ping` unanswered before it is taken for
/// stuck (stopped, or gone wrong) and ended. Its input is read, and the
/// ping answered, by a thread that runs no call while it reads, so a live
/// worker answers within milliseconds even with every instance busy.
pub(super) const LIVENESS: Duration = Duration::from_secs(2);

/// The liveness check of one worker, on a thread of its own until the
/// worker ends: while calls (or a reload) wait for the worker, it is
/// pinged every [`PING_EVERY`]; a worker that sends nothing for
/// [`LIVENESS`] after a ping is killed, which fails the calls it held
/// with `WorkerExited` and makes the supervisor start another. Small
/// calls fit in the pipe and never make a write wait, so a stopped worker
/// would otherwise hold them forever.
pub(super) fn watch(link: &Weak<Link>) {
    let mut pinged: Option<Instant> = None;
    loop {
        std::thread::sleep(PING_EVERY);
        let Some(link) = link.upgrade() else { return };
        let waiting = {
            let pending = lock(&link.pending);
            if pending.ended.is_some() {
                return;
            }
            !pending.answers.is_empty()
        };
        if let Some(at) = pinged {
            if link.heard_since(at) {
                pinged = None;
            } else if at.elapsed() >= LIVENESS {
                tracing::error!(pid = link.pid, "the worker answered nothing for {LIVENESS:?}; ending it");
                link.kill();
                return;
            }
        }
        if waiting && pinged.is_none() {
            pinged = Some(Instant::now());
            // A ping that cannot be written means the worker is ending
            // (`send_frame` ended it): its reader sees that.
            if link.send_frame(&ToWorker::Ping, b"").is_err() {
                return;
            }
        }
    }
}

/// How long a worker may leave its input unread, while a frame waits, before
/// it is taken for stuck (stopped, or gone wrong) and ended. The thread
/// that reads does nothing else meanwhile (a call it reads runs once
/// another thread took the reading over), so a live worker never comes
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
