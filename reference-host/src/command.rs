//! [`HostFunction::command`]: a host function served by running a
//! command, held to the call's bounds. A command is code the host does
//! not control, so everything it may do without end is bounded here: its
//! reply is read up to the reply cap and one byte more (`LIM-14`), its
//! standard error up to the failure message cap (`CALL-4`), and it runs
//! until the call's deadline or cancel at most (`CALL-7`). It runs in a
//! process group of its own, which is killed when it ends for any reason,
//! so that nothing it started outlives the host call.

use std::ffi::OsString;
use std::io::{ErrorKind, Read, Write};
use std::os::unix::process::CommandExt;
use std::process::{Child, ChildStderr, ChildStdin, ChildStdout, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use rustix::process::{Pid, Signal, WaitId, WaitIdOptions};

use crate::host_fn::{CallContext, HostCallError, HostFunction, MAX_FAILURE_MESSAGE};

/// How often a waiting command's call looks at its cancel flag: a cancel
/// ends the command within about this long.
const CANCEL_LOOK: Duration = Duration::from_millis(10);

impl HostFunction {
    /// A host function that serves each host call by running `program`
    /// with `args` (no shell) in a process group of its own: the request
    /// on its standard input; on exit 0, its standard output is the reply;
    /// on another exit, a failure whose message is its standard error (or
    /// its exit status, when that is empty). `pabi run`, `pabi pipe` and
    /// `pabi serve` offer `--host-call-command` through it.
    ///
    /// Nothing a command does holds the host past the call's bounds:
    /// - standard output is read up to the reply cap and one byte more
    ///   ([`CallContext::max_reply`]): a command that writes more is
    ///   ended at once and the plugin sees `E_LIMIT` (`LIM-14`);
    /// - standard error is read up to the failure message cap (65,536
    ///   bytes): a command that writes more is ended at once and the
    ///   plugin sees `E_FAILED` with the first 65,536 bytes (`CALL-4`);
    /// - at the call's deadline ([`CallContext::deadline`]) or cancel the
    ///   command is ended and the call ends with `TIMEOUT` or `CANCELLED`
    ///   (`CALL-7`);
    /// - when the command exits, what it started is ended too, and its
    ///   output read so far is its answer: a child left holding its
    ///   standard output open cannot hold the call.
    ///
    /// Ending a command kills its whole process group (`SIGKILL`) and
    /// reaps the command, so none is left running or a zombie. A process
    /// that leaves the group (`setsid`) is beyond its reach. If the host
    /// itself is killed (`SIGKILL`) and has started the command reaper
    /// ([`crate::command_reaper`]), the reaper kills the groups of the
    /// commands still running.
    ///
    /// ```no_run
    /// use pabi_host::{Config, HostFunction};
    ///
    /// let upper = HostFunction::command("text.upper", "tr", ["a-z", "A-Z"]);
    /// let config = Config::builder().host_function(upper).build();
    /// # drop(config);
    /// ```
    pub fn command(
        name: impl Into<String>,
        program: impl Into<OsString>,
        args: impl IntoIterator<Item = impl Into<OsString>>,
    ) -> HostFunction {
        let program: OsString = program.into();
        let args: Vec<OsString> = args.into_iter().map(Into::into).collect();
        HostFunction::new(name, move |cx, request| run(&program, &args, cx, request))
    }
}

/// Runs one command for one host call.
fn run(program: &OsString, args: &[OsString], cx: &CallContext<'_>, request: &[u8]) -> Result<Vec<u8>, HostCallError> {
    let shown = program.to_string_lossy();
    let child = std::process::Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Its own group, so that ending it ends what it started.
        .process_group(0)
        .spawn()
        .map_err(|e| HostCallError::new(format!("cannot run `{shown}`: {e}")))?;
    let mut group = Group { child, reaped: false };
    crate::command_reaper::started(Pid::from_child(&group.child));
    let mut pipes = Pipes::new(&mut group.child, request).map_err(|e| HostCallError::new(format!("`{shown}`: {e}")))?;
    let reply_cap = usize::try_from(cx.max_reply()).unwrap_or(usize::MAX).saturating_add(1);
    let mut pause = Duration::from_micros(50);
    loop {
        if cx.is_cancelled() {
            // The call ends with CANCELLED when this returns.
            return Err(HostCallError::new(format!("`{shown}` was ended: the call was cancelled")));
        }
        let now = Instant::now();
        let left = cx.deadline().map(|deadline| deadline.saturating_duration_since(now));
        if left.is_some_and(|left| left.is_zero()) {
            // The call ends with TIMEOUT when this returns (`CALL-7`).
            return Err(HostCallError::new(format!("`{shown}` was ended at the call's deadline")));
        }
        let wait = left.map_or(CANCEL_LOOK, |left| left.min(CANCEL_LOOK));
        if group.exited() {
            // What it wrote before it exited is in the pipes; whatever it
            // started is ended, so that no one writes after this.
            group.kill();
            pipes.drain(reply_cap);
            let status = group.reap();
            return pipes.answer(reply_cap, status, &shown);
        }
        if pipes.stdin.is_none() && pipes.stdout.is_none() && pipes.stderr.is_none() {
            // Both pipes closed and the command not exited yet (it is
            // exiting, or closed them and runs on): look again soon.
            std::thread::sleep(pause.min(wait));
            pause = (pause * 2).min(CANCEL_LOOK);
            continue;
        }
        pipes.poll(wait);
        pipes.pump(reply_cap);
        if pipes.reply.len() >= reply_cap || pipes.message.len() > MAX_FAILURE_MESSAGE {
            // Enough read to answer: the rest is not read (`LIM-14`,
            // `CALL-4`), and the command is ended when `group` drops.
            return pipes.answer(reply_cap, None, &shown);
        }
    }
}

/// A command's process group; killed and its leader reaped on drop, so
/// that no path out of [`run`] leaves a process running or a zombie.
struct Group {
    child: Child,
    /// Whether the leader was reaped: its pid, the group's id, may then
    /// be another's.
    reaped: bool,
}

impl Group {
    /// Whether the command exited, leaving it unreaped: while it is a
    /// zombie its pid, the group's id, cannot be reused, so killing the
    /// group after this kills no stranger.
    fn exited(&self) -> bool {
        let pid = Pid::from_child(&self.child);
        let options = WaitIdOptions::EXITED | WaitIdOptions::NOHANG | WaitIdOptions::NOWAIT;
        // An error (no such child) means it is gone already.
        rustix::process::waitid(WaitId::Pid(pid), options).map_or(true, |status| status.is_some())
    }

    fn kill(&self) {
        if !self.reaped {
            // ESRCH: the group is empty already.
            let _ = rustix::process::kill_process_group(Pid::from_child(&self.child), Signal::KILL);
        }
    }

    /// Reaps the leader, once the group is killed. The reaper forgets
    /// the group first, while the unreaped leader keeps its id from being
    /// reused.
    fn reap(&mut self) -> Option<ExitStatus> {
        if !self.reaped {
            crate::command_reaper::ending(Pid::from_child(&self.child));
            self.reaped = true;
        }
        self.child.wait().ok()
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        self.kill();
        self.reap();
    }
}

/// The command's three pipes, non-blocking: the request written, its
/// standard output and error read, all from one thread.
struct Pipes<'a> {
    request: &'a [u8],
    stdin: Option<ChildStdin>,
    stdout: Option<ChildStdout>,
    stderr: Option<ChildStderr>,
    reply: Vec<u8>,
    message: Vec<u8>,
    ready: [bool; 3],
}

impl<'a> Pipes<'a> {
    fn new(child: &mut Child, request: &'a [u8]) -> std::io::Result<Pipes<'a>> {
        let (Some(stdin), Some(stdout), Some(stderr)) = (child.stdin.take(), child.stdout.take(), child.stderr.take())
        else {
            return Err(std::io::Error::other("its pipes were not set up"));
        };
        rustix::io::ioctl_fionbio(&stdin, true)?;
        rustix::io::ioctl_fionbio(&stdout, true)?;
        rustix::io::ioctl_fionbio(&stderr, true)?;
        // An empty request is all written: standard input closes at once.
        let stdin = (!request.is_empty()).then_some(stdin);
        Ok(Pipes {
            request,
            stdin,
            stdout: Some(stdout),
            stderr: Some(stderr),
            reply: Vec::new(),
            message: Vec::new(),
            ready: [false; 3],
        })
    }

    /// Waits up to `wait` for a pipe to be ready.
    fn poll(&mut self, wait: Duration) {
        use rustix::event::{PollFd, PollFlags};
        let mut fds = Vec::with_capacity(3);
        let mut which = Vec::with_capacity(3);
        if let Some(stdin) = &self.stdin {
            fds.push(PollFd::new(stdin, PollFlags::OUT));
            which.push(0);
        }
        if let Some(stdout) = &self.stdout {
            fds.push(PollFd::new(stdout, PollFlags::IN));
            which.push(1);
        }
        if let Some(stderr) = &self.stderr {
            fds.push(PollFd::new(stderr, PollFlags::IN));
            which.push(2);
        }
        let timeout = rustix::event::Timespec { tv_sec: wait.as_secs() as _, tv_nsec: wait.subsec_nanos() as _ };
        self.ready = [false; 3];
        if rustix::event::poll(&mut fds, Some(&timeout)).is_ok() {
            for (fd, index) in fds.iter().zip(which) {
                self.ready[index] = !fd.revents().is_empty();
            }
        }
    }

    /// Moves what the ready pipes allow: the request in, the answer out.
    fn pump(&mut self, reply_cap: usize) {
        if self.ready[0] {
            if let Some(stdin) = &mut self.stdin {
                match stdin.write(self.request) {
                    Ok(n) => self.request = &self.request[n..],
                    Err(e) if e.kind() == ErrorKind::WouldBlock || e.kind() == ErrorKind::Interrupted => {}
                    // It closed its standard input (EPIPE): it has read what
                    // it wants.
                    Err(_) => self.request = &[],
                }
                if self.request.is_empty() {
                    self.stdin = None;
                }
            }
        }
        if self.ready[1] {
            read_into(&mut self.stdout, &mut self.reply, reply_cap);
        }
        if self.ready[2] {
            read_into(&mut self.stderr, &mut self.message, MAX_FAILURE_MESSAGE + 1);
        }
    }

    /// After the command exited: reads what is left in the pipes without
    /// waiting, within the caps.
    fn drain(&mut self, reply_cap: usize) {
        self.stdin = None;
        while self.stdout.is_some() && self.reply.len() < reply_cap {
            let before = self.reply.len();
            read_into(&mut self.stdout, &mut self.reply, reply_cap);
            if self.reply.len() == before {
                break;
            }
        }
        while self.stderr.is_some() && self.message.len() <= MAX_FAILURE_MESSAGE {
            let before = self.message.len();
            read_into(&mut self.stderr, &mut self.message, MAX_FAILURE_MESSAGE + 1);
            if self.message.len() == before {
                break;
            }
        }
    }

    /// The host call's answer: past a cap, what was read (the plugin sees
    /// `E_LIMIT` for a reply of `reply_cap` bytes, one past the cap); else
    /// by the exit status.
    fn answer(self, reply_cap: usize, status: Option<ExitStatus>, shown: &str) -> Result<Vec<u8>, HostCallError> {
        if self.reply.len() >= reply_cap {
            return Ok(self.reply);
        }
        let failure = |message: Vec<u8>, status: Option<ExitStatus>| {
            let text = String::from_utf8_lossy(&message).trim().to_string();
            HostCallError::new(if !text.is_empty() {
                text
            } else if let Some(status) = status {
                format!("`{shown}` exited with {status}")
            } else {
                format!("`{shown}` was ended")
            })
        };
        match status {
            Some(status) if status.success() => Ok(self.reply),
            // Past the message cap, or ended: a failure carrying what it
            // wrote to standard error (cut to the cap where it is kept).
            _ => Err(failure(self.message, status)),
        }
    }
}

/// Reads what `pipe` has, up to `cap` bytes in `into` in all; closes the
/// pipe at its end.
fn read_into(pipe: &mut Option<impl Read>, into: &mut Vec<u8>, cap: usize) {
    let Some(reader) = pipe else { return };
    let mut chunk = [0; 16 << 10];
    loop {
        let room = cap.saturating_sub(into.len()).min(chunk.len());
        if room == 0 {
            return;
        }
        match reader.read(&mut chunk[..room]) {
            Ok(0) => {
                *pipe = None;
                return;
            }
            Ok(n) => into.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) if e.kind() == ErrorKind::WouldBlock => return,
            Err(_) => {
                *pipe = None;
                return;
            }
        }
    }
}
