//! Standard output for the reports. A reader that stops early
//! (`pabi validate DIR | head -1`) closes the pipe; that is not an error of
//! the command, so later writes are dropped quietly and the command ends
//! with its usual exit code. Other write errors (a full disk) are kept and
//! reported once the command is done.

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

static CLOSED: AtomicBool = AtomicBool::new(false);
static FAILED: Mutex<Option<std::io::Error>> = Mutex::new(None);

/// Writes to standard output; use through [`out!`](crate::out) and
/// [`outln!`](crate::outln).
pub fn write_fmt(args: std::fmt::Arguments<'_>) {
    if CLOSED.load(Ordering::Relaxed) {
        return;
    }
    let mut stdout = std::io::stdout().lock();
    if let Err(err) = stdout.write_fmt(args) {
        record(err);
    }
}

/// Writes bytes to standard output and flushes them.
pub fn write_bytes(bytes: &[u8]) {
    if CLOSED.load(Ordering::Relaxed) {
        return;
    }
    let mut stdout = std::io::stdout().lock();
    if let Err(err) = stdout.write_all(bytes).and_then(|()| stdout.flush()) {
        record(err);
    }
}

fn record(err: std::io::Error) {
    CLOSED.store(true, Ordering::Relaxed);
    if err.kind() != std::io::ErrorKind::BrokenPipe {
        FAILED.lock().unwrap_or_else(|p| p.into_inner()).get_or_insert(err);
    }
}

/// Flushes standard output; the first write error other than a closed
/// pipe, if any.
pub fn finish() -> Result<(), std::io::Error> {
    if !CLOSED.load(Ordering::Relaxed) {
        if let Err(err) = std::io::stdout().lock().flush() {
            record(err);
        }
    }
    match FAILED.lock().unwrap_or_else(|p| p.into_inner()).take() {
        Some(err) => Err(err),
        None => Ok(()),
    }
}

/// Whether `err` is a closed standard output, from a command that wrote
/// through its own handle.
pub fn is_closed_pipe(err: &anyhow::Error) -> bool {
    err.chain()
        .filter_map(|cause| cause.downcast_ref::<std::io::Error>())
        .any(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
}

/// `print!` that survives a closed pipe.
#[macro_export]
macro_rules! out {
    ($($arg:tt)*) => { $crate::output::write_fmt(format_args!($($arg)*)) };
}

/// `println!` that survives a closed pipe.
#[macro_export]
macro_rules! outln {
    () => { $crate::output::write_fmt(format_args!("\n")) };
    ($($arg:tt)*) => { $crate::output::write_fmt(format_args!("{}\n", format_args!($($arg)*))) };
}
