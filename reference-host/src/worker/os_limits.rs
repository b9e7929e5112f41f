//! The OS limits a worker process puts on itself (Linux): no new
//! privileges, no core dumps, death with its parent, CPU time and address
//! space; and the lower priority of a worker whose calls compute long.

use super::protocol::WorkerLimits;

/// The OS limits a worker takes on at once: no new privileges, no core
/// dumps, death with the server, the CPU time of its settings.
#[cfg(target_os = "linux")]
pub(super) fn limit_process(limits: &WorkerLimits) -> std::io::Result<()> {
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
    if let Some(cpu) = limits.cpu_time {
        // SIGXCPU at the soft limit, SIGKILL a second later.
        let seconds = cpu.as_secs().max(1);
        setrlimit(Resource::Cpu, Rlimit { current: Some(seconds), maximum: Some(seconds + 1) })?;
    }
    Ok(())
}

/// Caps the address space at what the worker has mapped now plus
/// `headroom`: called once the engine has made its reservations.
#[cfg(target_os = "linux")]
pub(super) fn cap_address_space(headroom: u64) -> std::io::Result<()> {
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
pub(super) fn limit_process(_: &WorkerLimits) -> std::io::Result<()> {
    Err(std::io::Error::other("the worker's OS limits are implemented for Linux only"))
}

#[cfg(not(target_os = "linux"))]
pub(super) fn cap_address_space(_: u64) -> std::io::Result<()> {
    Err(std::io::Error::other("the worker's OS limits are implemented for Linux only"))
}

/// How much lower a worker's priority goes once a call of its plugin
/// computed long ([`lower_priority`]): at nice 10 a thread gets about a
/// tenth of the share of one at nice 0 while both want a CPU, and the
/// system lets a thread at nice 0 that wakes run before it.
pub(super) const HEAVY_NICE: i32 = 10;

/// Lowers the priority of every thread of this worker to `base`, the
/// worker's own at its start, plus [`HEAVY_NICE`], for good: the system
/// cannot raise it back without a privilege, which the worker gives up.
/// Calls of a plugin in a worker process do not take turns at the
/// server's CPU gate; the system shares the CPUs between the workers.
/// Without this, a plugin with little work waits behind the slices of the
/// workers that burn CPU at every wake-up of its call's several threads.
/// A thread started meanwhile may be missed: each call's thread also
/// lowers itself ([`lower_this_thread`]).
#[cfg(target_os = "linux")]
pub(super) fn lower_priority(base: i32) -> std::io::Result<()> {
    use rustix::process::{setpriority_process, Pid};
    // Linux keeps a priority per thread: each one is lowered.
    for entry in std::fs::read_dir("/proc/self/task")? {
        let Some(tid) = entry?.file_name().to_str().and_then(|t| t.parse::<i32>().ok()).and_then(Pid::from_raw) else {
            continue;
        };
        // A thread that ended since the listing is no error.
        let _ = setpriority_process(Some(tid), lowered(base));
    }
    Ok(())
}

/// Lowers the calling thread's priority as [`lower_priority`] does, if it
/// is not yet.
#[cfg(target_os = "linux")]
pub(super) fn lower_this_thread(base: i32) {
    use rustix::process::{getpriority_process, setpriority_process};
    // Without a pid, Linux reads and sets the calling thread's priority.
    if getpriority_process(None).is_ok_and(|nice| nice < lowered(base)) {
        let _ = setpriority_process(None, lowered(base));
    }
}

/// The calling thread's priority (its nice value), 0 where unknown.
pub(super) fn nice() -> i32 {
    rustix::process::getpriority_process(None).unwrap_or(0)
}

#[cfg(target_os = "linux")]
fn lowered(base: i32) -> i32 {
    base.saturating_add(HEAVY_NICE).min(19)
}

#[cfg(not(target_os = "linux"))]
pub(super) fn lower_this_thread(_: i32) {}

#[cfg(not(target_os = "linux"))]
pub(super) fn lower_priority(_: i32) -> std::io::Result<()> {
    Err(std::io::Error::other("a worker lowers its priority on Linux only"))
}
