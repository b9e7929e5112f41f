//! `Isolation::WorkerProcess`: a [`crate::Pool`] whose instances run in a
//! worker process of its own, with OS limits, restarted when it dies.
//!
//! The pool's side lives in this process (`pool.rs`, `supervisor.rs`,
//! `link.rs`, `relay.rs`); the worker is a process that runs [`run`], started
//! from this executable by default. An application that builds such pools
//! calls [`run_if_worker`] first thing in `main`:
//!
//! ```no_run
//! # fn main() -> anyhow::Result<()> {
//! pabi_host::worker::run_if_worker();
//! // … then the application:
//! # let wasm = Vec::new();
//! let host = pabi_host::Host::new(pabi_host::Config::default())?;
//! let pool = pabi_host::Pool::builder()
//!     .isolation(pabi_host::Isolation::WorkerProcess)
//!     .build(&host, &wasm)?;
//! # drop(pool);
//! # Ok(())
//! # }
//! ```
//!
//! The two processes speak the worker protocol ([`protocol`]).

mod link;
mod os_limits;
mod pool;
mod priority;
pub mod protocol;
mod relay;
mod run;
mod supervisor;

use std::ffi::OsString;
use std::path::PathBuf;
use std::sync::{Mutex, RwLock};

pub(crate) use pool::WorkerPool;
pub use run::run;

/// The first argument that makes a process a worker.
pub const WORKER_ARG: &str = "__pabi-worker";

/// When the process was started as a worker (first argument
/// [`WORKER_ARG`]), serves as one and exits; otherwise returns at once.
/// Log through the `tracing` subscriber the binary installs before: a
/// worker shares its standard error with its pool's process.
pub fn run_if_worker() {
    if is_worker() {
        std::process::exit(run());
    }
}

/// Whether the process was started as a worker.
pub fn is_worker() -> bool {
    std::env::args_os().nth(1).is_some_and(|arg| arg == WORKER_ARG)
}

/// How a worker process is started: a program and its arguments.
#[derive(Clone, Debug)]
pub struct WorkerCommand {
    program: PathBuf,
    args: Vec<OsString>,
}

impl WorkerCommand {
    /// This executable, started as a worker: its `main` must call
    /// [`run_if_worker`] first.
    pub fn current_exe() -> std::io::Result<WorkerCommand> {
        Ok(WorkerCommand { program: std::env::current_exe()?, args: vec![WORKER_ARG.into()] })
    }

    /// Another program, started with `args`, that serves the worker
    /// protocol on its standard input and output (for example one whose
    /// `main` calls [`run`], as the `pabi-worker` program of this crate
    /// does).
    pub fn new(program: impl Into<PathBuf>, args: impl IntoIterator<Item = impl Into<OsString>>) -> WorkerCommand {
        WorkerCommand { program: program.into(), args: args.into_iter().map(Into::into).collect() }
    }
}

/// The settings of a pool that only a worker process has.
#[derive(Clone, Debug, Default)]
pub(crate) struct WorkerSettings {
    /// `None`: [`WorkerCommand::current_exe`].
    pub command: Option<WorkerCommand>,
    pub limits: protocol::WorkerLimits,
}

// A poisoned lock still guards consistent data here: every critical
// section either completes its writes or makes none.
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

fn read<T>(lock: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(|p| p.into_inner())
}

fn write<T>(lock: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    lock.write().unwrap_or_else(|p| p.into_inner())
}
