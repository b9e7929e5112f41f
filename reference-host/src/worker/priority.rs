//! The threads of a worker whose calls are heavy run below the threads
//! that serve requests: [`lower_every_thread`], [`lower_this_thread`].
//!
//! When every CPU is busy with calls that compute, a thread that wakes to
//! read a request or to pass an answer on competes, at equal priority,
//! with the computing threads, and Linux may let a running thread finish
//! its time slice (about 1.4 ms on 2 CPUs) before one that wakes: a plugin
//! with little work waits at the wake-ups on its call's path. A thread at
//! nice 10 gets about a tenth of the share of one at nice 0 while both
//! want a CPU, and every CPU that no thread at nice 0 wants. Among lowered
//! threads nothing changes.
//!
//! Linux keeps a nice value per thread; elsewhere `setpriority` would
//! change the whole process, so nothing is lowered there.

/// How much lower a heavy worker's threads go than its main thread, capped at the lowest priority, 19.
const LOWER_BY: i32 = 10;

/// The nice value the process's threads are lowered to:
/// [`LOWER_BY`] below its main thread's, read once, before any thread
/// was lowered (a worker lowers its main thread too).
#[cfg(target_os = "linux")]
fn lowered() -> i32 {
    static LOWERED: std::sync::OnceLock<i32> = std::sync::OnceLock::new();
    *LOWERED.get_or_init(|| {
        // The process's id names its main thread.
        let main = rustix::process::getpriority_process(Some(rustix::process::getpid())).unwrap_or(0);
        main.saturating_add(LOWER_BY).min(19)
    })
}

/// Lowers the calling thread for good, once: the system does not let a
/// thread raise its priority back without a privilege. Each call's thread
/// of a lowered worker lowers itself, in case [`lower_every_thread`]
/// missed it.
#[cfg(target_os = "linux")]
pub(crate) fn lower_this_thread() {
    thread_local!(static DONE: std::cell::Cell<bool> = const { std::cell::Cell::new(false) });
    if !DONE.replace(true) {
        lower(None);
    }
}

/// Lowers every thread of this process (a worker whose calls compute
/// long): a thread started meanwhile may be missed, and lowers itself at
/// its next call ([`lower_this_thread`]).
#[cfg(target_os = "linux")]
pub(crate) fn lower_every_thread() -> std::io::Result<()> {
    for entry in std::fs::read_dir("/proc/self/task")? {
        // A thread that ended since the listing is no error.
        if let Some(tid) = entry?.file_name().to_str().and_then(|t| t.parse::<i32>().ok()) {
            lower(Some(rustix::process::Pid::from_raw(tid).ok_or_else(|| std::io::Error::other("thread id 0"))?));
        }
    }
    Ok(())
}

/// Lowers thread `tid` (`None`: the calling one) to [`lowered`], if it is
/// above it.
#[cfg(target_os = "linux")]
fn lower(tid: Option<rustix::process::Pid>) {
    use rustix::process::{getpriority_process, setpriority_process};
    let lowered = lowered();
    if getpriority_process(tid).is_ok_and(|nice| nice < lowered) {
        let _ = setpriority_process(tid, lowered);
    }
}

#[cfg(not(target_os = "linux"))]
pub(crate) fn lower_this_thread() {}

#[cfg(not(target_os = "linux"))]
pub(crate) fn lower_every_thread() -> std::io::Result<()> {
    Err(std::io::Error::other("threads are lowered on Linux only"))
}
