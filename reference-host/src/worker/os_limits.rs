//! The OS limits a worker process puts on itself (Linux): no new
//! privileges, no core dumps, death with its parent, CPU time and address
//! space.

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
