//! The command reaper: a small process that ends the process groups of
//! host-call commands ([`crate::HostFunction::command`]) when the host
//! dies without ending them, by `SIGKILL` or a crash, which no code of
//! the host sees.
//!
//! The host tells the reaper, over a pipe, each command's process group as
//! it starts and as it ends; when the pipe closes, which the kernel does
//! when the host dies, the reaper kills the groups still open and exits.
//! The whole group goes, so what a command started goes too, unless it
//! left the group (`setsid`). Each group comes with its leader's start
//! time (Linux's `/proc`), and the reaper kills a group only if a leader
//! with that id started then: a group whose end it did not hear of (the
//! pipe was full) may have ended, and its id gone to another process.
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

use std::collections::HashMap;
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

/// The reaper's main loop: reads `+PGID START` and `-PGID` lines from
/// standard input until it closes, then kills every group still
/// registered whose leader is the process that started at `START`.
/// Returns the exit status.
pub fn run_command_reaper() -> i32 {
    for (pgid, started) in groups_left(std::io::stdin().lock()) {
        // A leader that started at another time is another process: the
        // group's id was reused. One that is gone (reaped by the system
        // after the host died) leaves its group's id unused until the
        // group is empty, so the group is still the command's.
        let leader = start_time(pgid);
        if started.is_some() && leader.is_some() && leader != started {
            continue;
        }
        // ESRCH: the group ended on its own.
        let _ = rustix::process::kill_process_group(pgid, Signal::KILL);
    }
    0
}

/// The groups `input` registered (`+PGID [START]`) and did not end
/// (`-PGID`) before it closed, with their leaders' start times; lines of
/// another form are skipped.
fn groups_left(input: impl BufRead) -> HashMap<Pid, Option<u64>> {
    let mut groups = HashMap::new();
    for line in input.lines() {
        let Ok(line) = line else { break };
        let (sign, rest) = line.split_at(line.len().min(1));
        let mut words = rest.split(' ');
        let Some(pgid) = words.next().and_then(|w| w.parse::<i32>().ok()).and_then(Pid::from_raw) else { continue };
        match sign {
            "+" => {
                groups.insert(pgid, words.next().and_then(|w| w.parse::<u64>().ok()));
            }
            "-" => {
                groups.remove(&pgid);
            }
            _ => {}
        }
    }
    groups
}

/// When process `pid` started, in clock ticks since boot (`/proc`), if it
/// runs (or awaits its reaping).
fn start_time(pid: Pid) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{}/stat", pid.as_raw_nonzero())).ok()?;
    // The 22nd field; the second, the command's name, may hold spaces.
    stat[stat.rfind(')')? + 1..].split_whitespace().nth(19)?.parse().ok()
}

/// Starts the reaper from `program` with the reaper's own argument first,
/// then `args`, once per process: later calls do nothing. Commands started
/// before it are not covered.
///
/// A write to a reaper that has died fails with `EPIPE`, which needs
/// `SIGPIPE` ignored, as Rust's runtime does before `main`; a program that
/// restores its default action would be killed instead.
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
        .arg(REAPER_ARG)
        .args(args.into_iter().map(Into::into))
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

/// Tells the reaper that the group `pgid` started, with its leader's
/// start time.
pub(crate) fn started(pgid: Pid) {
    let id = pgid.as_raw_nonzero();
    tell(match start_time(pgid) {
        Some(started) => format!("+{id} {started}\n"),
        // Not known (no `/proc`): the reaper kills it unchecked.
        None => format!("+{id}\n"),
    });
}

/// Tells the reaper that the group `pgid` is about to end.
pub(crate) fn ending(pgid: Pid) {
    tell(format!("-{}\n", pgid.as_raw_nonzero()));
}

fn tell(line: String) {
    let mut reaper = lock();
    if let Some(pipe) = reaper.as_mut() {
        // A line of a few bytes goes into a pipe whole or not at all.
        match pipe.write_all(line.as_bytes()) {
            Ok(()) => {}
            // Full: the reaper is behind. A start it does not hear of
            // leaves the group uncovered; an end, a group it may try to
            // kill later, which the leader's start time guards.
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_groups_left_are_those_started_and_not_ended() {
        let input = "+5 100\n+6\n-5\n+7 x\nnoise\n+\n-9\n+8 42\n";
        let left = groups_left(input.as_bytes());
        let pid = |n| Pid::from_raw(n).unwrap();
        let expected = HashMap::from([(pid(6), None), (pid(7), None), (pid(8), Some(42))]);
        assert_eq!(left, expected);
    }

    #[test]
    fn a_running_process_has_a_start_time_and_a_gone_one_none() {
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = Pid::from_child(&child);
        assert!(start_time(rustix::process::getpid()).is_some());
        child.wait().unwrap();
        assert_eq!(start_time(pid), None, "reaped");
    }
}
