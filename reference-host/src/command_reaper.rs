//! The command reaper: a small process that ends the process groups of
//! host-call commands ([`crate::HostFunction::command`]) when the host
//! dies without ending them, by `SIGKILL` or a crash, which no code of
//! the host sees.
//!
//! The host tells the reaper, over a pipe, each command's process group as
//! it starts and as it ends; when the pipe closes, which the kernel does
//! when the host dies, the reaper kills the groups still open and exits.
//! The whole group goes, so what a command started goes too, unless it
//! left the group (`setsid`).
//!
//! A parent-death signal set in each command would need code between fork
//! and exec, and with it the standard library forks the whole host for
//! each command instead of using `posix_spawn`: measured in `pabi serve`'s
//! hostile mix, that took a light neighbour's p99 from 9 ms to 36–47 ms.
//! The reaper costs two short writes per command.
//!
//! An executable that starts the reaper from itself
//! ([`start_command_reaper_from_current_exe`]) calls
//! [`run_if_command_reaper`] first in its `main`, as it does for worker
//! processes ([`crate::worker::run_if_worker`]).

use std::collections::HashSet;
use std::ffi::OsString;
use std::io::{BufRead, Write};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{ChildStdin, Command, Stdio};
use std::sync::Mutex;

use rustix::process::{Pid, Signal};

/// The first argument that makes this executable the reaper.
const REAPER_ARG: &str = "__pabi-command-reaper";

/// The pipe to the reaper, once started; `None` after a write failed (the
/// reaper is gone: commands are then ended only by the host itself).
static REAPER: Mutex<Option<ChildStdin>> = Mutex::new(None);

/// Runs the reaper and exits, if this process was started as the
/// reaper; returns otherwise. Call it first in `main`.
pub fn run_if_command_reaper() {
    if is_command_reaper() {
        std::process::exit(run_command_reaper());
    }
}

/// Whether this process was started as the command reaper.
pub fn is_command_reaper() -> bool {
    std::env::args_os().nth(1).is_some_and(|arg| arg == REAPER_ARG)
}

/// The reaper's main loop: reads `+PGID` and `-PGID` lines from standard
/// input until it closes, then kills every group still registered.
/// Returns the exit status.
pub fn run_command_reaper() -> i32 {
    let mut groups = HashSet::new();
    for line in std::io::stdin().lock().lines() {
        let Ok(line) = line else { break };
        let (sign, pgid) = line.split_at(line.len().min(1));
        let Some(pgid) = pgid.parse::<i32>().ok().and_then(Pid::from_raw) else { continue };
        match sign {
            "+" => groups.insert(pgid),
            "-" => groups.remove(&pgid),
            _ => false,
        };
    }
    for pgid in groups {
        // ESRCH: the group ended on its own.
        let _ = rustix::process::kill_process_group(pgid, Signal::KILL);
    }
    0
}

/// Starts the reaper from `program` with `args` (then the reaper's own
/// argument), once per process: later calls do nothing. Commands started
/// before it are not covered.
pub fn start_command_reaper(
    program: impl Into<PathBuf>,
    args: impl IntoIterator<Item = impl Into<OsString>>,
) -> std::io::Result<()> {
    let mut reaper = lock();
    if reaper.is_some() {
        return Ok(());
    }
    let mut command = Command::new(program.into());
    let mut child = command
        .args(args.into_iter().map(Into::into))
        .arg(REAPER_ARG)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        // Its own group: a terminal's Ctrl-C for the host must not end
        // it before the host has ended its commands.
        .process_group(0)
        .spawn()?;
    let stdin = child.stdin.take().expect("piped above");
    // A reaper that stops reading must not hold a host call: a write that
    // would block is dropped instead.
    rustix::io::ioctl_fionbio(&stdin, true)?;
    // Not waited for: it exits when this process ends.
    drop(child);
    *reaper = Some(stdin);
    Ok(())
}

/// [`start_command_reaper`] from this executable.
pub fn start_command_reaper_from_current_exe() -> std::io::Result<()> {
    start_command_reaper(std::env::current_exe()?, std::iter::empty::<OsString>())
}

/// Tells the reaper that the group `pgid` started (`+`) or ended (`-`).
pub(crate) fn tell(sign: char, pgid: Pid) {
    let mut reaper = lock();
    if let Some(pipe) = reaper.as_mut() {
        match pipe.write_all(format!("{sign}{}\n", pgid.as_raw_nonzero()).as_bytes()) {
            Ok(()) => {}
            // Full: the reaper is behind; this group goes uncovered.
            Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(error) => {
                tracing::warn!("the command reaper is gone ({error}): host-call commands are no longer ended if this process is killed");
                *reaper = None;
            }
        }
    }
}

fn lock() -> std::sync::MutexGuard<'static, Option<ChildStdin>> {
    REAPER.lock().unwrap_or_else(|p| p.into_inner())
}
