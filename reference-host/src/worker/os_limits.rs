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

/// How much lower a worker's nice value goes once its calls compute long,
/// where the system refuses the idle policy ([`lower_priority`]): at nice
/// 10 a thread gets about a tenth of the share of one at nice 0 while both
/// want a CPU.
const HEAVY_NICE: i32 = 10;

/// Lowers every thread of this worker to the lowest priority, for good:
/// the system does not let it raise the priority back without a
/// privilege, which the worker gives up. Calls of a plugin in a worker
/// process do not take turns at the server's CPU gate; the system shares
/// the CPUs between the workers. Without this, a plugin with little work
/// waits behind the workers that burn CPU at every wake-up of its call's
/// several threads.
///
/// Each thread takes Linux's `SCHED_IDLE` policy: it gives its CPU at once
/// to any thread of another policy that wakes, and gets a share of about
/// 1/340 of a thread at nice 0 while both want the CPU. At nice 10 alone
/// (the first version) the system let a burning thread finish its slice,
/// milliseconds, before a light worker's thread that woke could run. The
/// price is the heavy worker's share: it runs in the CPU time that no
/// other thread wants (in `bench/serve` the burners' calls per second fell
/// to about a third, the bench's own load generators on the same CPUs
/// taking part of it). Where the system refuses the policy, the thread's nice
/// value goes to `base`, the worker's own at its start, plus
/// [`HEAVY_NICE`].
///
/// A thread started meanwhile may be missed: each call's thread also
/// lowers itself ([`lower_this_thread`]).
#[cfg(target_os = "linux")]
pub(super) fn lower_priority(base: i32) -> std::io::Result<()> {
    // Linux keeps a priority per thread: each one is lowered.
    for entry in std::fs::read_dir("/proc/self/task")? {
        let Some(tid) = entry?.file_name().to_str().and_then(|t| t.parse::<i32>().ok()) else {
            continue;
        };
        // A thread that ended since the listing is no error.
        lower_thread(tid, base);
    }
    Ok(())
}

/// Lowers the calling thread's priority as [`lower_priority`] does, if it
/// is not yet.
#[cfg(target_os = "linux")]
pub(super) fn lower_this_thread(base: i32) {
    // Linux reads and sets the calling thread's policy at pid 0.
    lower_thread(0, base);
}

/// Lowers thread `tid` of this process (0: the calling thread), if it is
/// not yet; see [`lower_priority`].
#[cfg(target_os = "linux")]
fn lower_thread(tid: i32, base: i32) {
    use rustix::process::{getpriority_process, setpriority_process, Pid};
    let param = libc::sched_param { sched_priority: 0 };
    // SAFETY: plain system calls on a thread id; `param` is a valid
    // `sched_param` that outlives the call, which only reads it.
    #[allow(unsafe_code)]
    let idle = unsafe {
        libc::sched_getscheduler(tid) == libc::SCHED_IDLE
            || libc::sched_setscheduler(tid, libc::SCHED_IDLE, &param) == 0
    };
    if idle {
        return;
    }
    let lowered = base.saturating_add(HEAVY_NICE).min(19);
    let tid = Pid::from_raw(tid);
    if getpriority_process(tid).is_ok_and(|nice| nice < lowered) {
        let _ = setpriority_process(tid, lowered);
    }
}

/// The calling thread's priority (its nice value), 0 where unknown.
pub(super) fn nice() -> i32 {
    rustix::process::getpriority_process(None).unwrap_or(0)
}

#[cfg(not(target_os = "linux"))]
pub(super) fn lower_this_thread(_: i32) {}

#[cfg(not(target_os = "linux"))]
pub(super) fn lower_priority(_: i32) -> std::io::Result<()> {
    Err(std::io::Error::other("a worker lowers its priority on Linux only"))
}
