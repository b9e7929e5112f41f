//! Serve the pabi plugins of a folder over HTTP.
//!
//! Every `*.wasm` file of the folder is a plugin, named by its file stem,
//! served by a [`pabi_host::Pool`] of instances behind a bounded queue, in
//! the server's process or in a worker process (the `isolation` setting):
//!
//! | route | answer |
//! |---|---|
//! | `POST /v1/plugins/{plugin}/{function}` | the body is the input; `200` with the output, or an error (below) |
//! | `GET /v1/plugins` | each plugin's file, SHA-256, metadata and pool, and the files refused |
//! | `GET /healthz` | `200`, with a line `disabled: NAME …` for each plugin disabled by a crash loop (`LIFE-7`) until its `crash_reset` passes; or `503` while draining |
//! | `GET /metrics` | calls, errors by kind, latency, instances, queue depth, reloads, plugins disabled, log records dropped (Prometheus text) |
//!
//! A failed call answers a JSON body `{"kind", "status", "message"}`
//! (`spec/schemas/serve-error.schema.json`): `kind` is the host error kind
//! (`ERR-6`), `status` the plugin's status for `PLUGIN_ERROR`, with the
//! HTTP status of [`http_status`]. A full queue answers `503` with
//! `Retry-After`; nothing is dropped silently. Every other error answer
//! has the same body, of one of the server's own kinds
//! ([`CallErrorKind::http_status`]).
//!
//! What a client can make the server hold is bounded by the settings
//! ([`ServerSettings`], the `[server]` table, and each plugin's
//! [`PluginSettings`]), not by the number of clients: connections up to
//! `max_connections` (at the cap a new one pushes out the longest idle),
//! each closed past its header, idle or send timeout; a
//! body read only once its call is admitted, one of its plugin's
//! `instances + max_queue` places, which it keeps until its output is
//! handed over, and only as fast as `body_timeout` and `min_body_rate`
//! allow; a `Content-Length` past `max_input` refused unread.
//!
//! [`Server::scan`] takes in new and changed files: a file is validated and
//! its instances made while the old version serves; it then replaces the
//! old version with its state (`LIFE-10`, `LIFE-11`), or, on any failure,
//! the old version keeps serving and the error is logged and listed under
//! `refused` in `GET /v1/plugins`. A file is read only if it is a regular
//! file (or a symlink to one) within the compile budget: anything else in
//! a plugin's place is refused unopened ([`Refusal::NotAFile`]), a larger
//! file by its size ([`Refusal::TooLarge`]), and a refused file is not
//! read again until its size, modification time or inode changes.
//! [`Server::serve`] scans on an interval
//! and, when its shutdown future completes, stops accepting, closes the
//! connections with no request in progress, lets calls in flight finish
//! within the `grace` period (past it they are cancelled, answered
//! `CANCELLED`, and the connections left closed), and runs
//! `pabi_shutdown` on every instance.
//!
//! ```no_run
//! # async fn run() -> anyhow::Result<()> {
//! let server = pabi_serve::Server::new("plugins".into(), pabi_serve::ServeConfig::default());
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
//! // Armed before loading: a SIGTERM while the plugins load drains at once.
//! let stop = pabi_serve::stop_signal();
//! let loader = server.clone();
//! tokio::task::spawn_blocking(move || loader.scan()).await?;
//! server.serve(listener, std::time::Duration::from_secs(1), stop).await?;
//! # Ok(())
//! # }
//! ```

mod config;
mod conn;
mod http;
mod metrics;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use pabi_host::worker::WorkerCommand;
use pabi_host::{FileStamp, Host, Isolation, PluginFile, PluginFileError, Pool};
use sha2::{Digest, Sha256};

pub use config::{ConfigError, PluginSettings, ServeConfig, ServerSettings};
pub use http::{http_status, CallErrorBody, CallErrorKind, SERVE_ERROR_SCHEMA};

/// The plugins of a folder, served.
#[derive(Clone)]
pub struct Server {
    state: Arc<State>,
}

pub(crate) struct State {
    dir: PathBuf,
    config: ServeConfig,
    plugins: RwLock<BTreeMap<String, Arc<Loaded>>>,
    refused: Mutex<BTreeMap<String, Refused>>,
    metrics: metrics::Metrics,
    draining: std::sync::atomic::AtomicBool,
    /// Set when a drain's grace runs out: calls and bodies in progress
    /// give way.
    abort: tokio::sync::watch::Sender<bool>,
    /// How worker processes are started; `None`: this executable.
    worker: Mutex<Option<WorkerCommand>>,
    /// The host functions plugins may be offered (`host_calls` settings).
    host_functions: Mutex<Vec<pabi_host::HostFunction>>,
    /// The warnings of the last scan, so each is logged once.
    warned: Mutex<Vec<String>>,
    /// `max_running` permits, shared by every in-process plugin's host.
    pub(crate) gate: pabi_host::CpuGate,
    /// The calls running, for the drain to cancel.
    calls: http::CallsRunning,
}

/// A plugin being served.
pub(crate) struct Loaded {
    pub file: PathBuf,
    pub sha256: String,
    pub pool: Pool,
    pub settings: PluginSettings,
    /// `instances + max_queue` permits: a call holds one from before its
    /// body is read until its output is handed over, so that the bodies
    /// and outputs held are bounded by the settings, not by the clients.
    /// A reload keeps the semaphore, as it keeps the pool.
    pub admission: Arc<tokio::sync::Semaphore>,
    /// What a call of this version needs besides the pool, looked up once.
    pub calls: http::CallPath,
}

/// A refusal, and which version of the file: the same version is not
/// read again, nor the same bytes tried again.
pub(crate) struct Refused {
    /// The file's size, modification time and inode when it was refused;
    /// `None` when it could not be opened, as a file that is not a regular
    /// file is not.
    pub stamp: Option<FileStamp>,
    pub sha256: Option<String>,
    pub why: Refusal,
}

/// Why a plugin file (or the folder) was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Refusal {
    /// The folder cannot be listed, or the file cannot be read.
    #[error("cannot read {path}: {error}")]
    Unreadable { path: PathBuf, error: String },
    /// The file is not the one its `sha256` setting pins.
    #[error("SHA-256 {sha256} does not match the pinned {pinned}")]
    PinMismatch { sha256: String, pinned: String },
    /// The host refused the plugin or its settings: the file's SHA-256
    /// and the host's error.
    #[error("{error} (SHA-256 {sha256})")]
    Host { sha256: String, error: pabi_host::Error },
    /// The file is not a regular file, nor a symlink to one: a FIFO, a
    /// device, a folder, a symlink to nothing. It is not opened.
    #[error("{} is {what}, not a regular file", path.display())]
    NotAFile { path: PathBuf, what: String },
    /// The file is larger than the host's compile budget: `MODULE_LIMIT`
    /// ([`pabi_host::Error::ModuleLimit`]), from its size alone. It is not
    /// read.
    #[error("{error} (not read)")]
    TooLarge { path: PathBuf, error: pabi_host::Error },
}

/// A file [`Server::scan`] refused.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct RefusedFile {
    /// The plugin's name, the file stem; the folder's path when the folder
    /// itself cannot be read.
    pub plugin: String,
    pub why: Refusal,
}

/// What a scan did with one file.
enum TakenIn {
    /// The file is the version served, or a version refused before.
    Unchanged,
    Loaded,
    Reloaded,
}

/// What a [`Server::scan`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ScanReport {
    /// Plugins loaded for the first time.
    pub loaded: Vec<String>,
    /// Plugins replaced by a new version.
    pub reloaded: Vec<String>,
    /// Files refused, with why; an older version, if any, keeps serving.
    pub refused: Vec<RefusedFile>,
    /// Plugins whose file is gone; they are no longer served.
    pub removed: Vec<String>,
    /// Settings that match nothing: a `[plugins.NAME]` table with no
    /// `NAME.wasm` in the folder (a typo would drop its pin unseen), an
    /// empty folder, a `host_calls` entry the server does not offer. Each
    /// is reported (and logged) by the first scan that finds it.
    pub warnings: Vec<String>,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server").field("dir", &self.state.dir).finish_non_exhaustive()
    }
}

impl Server {
    /// A server for the plugins of `dir`, none loaded yet: see [`Server::scan`].
    pub fn new(dir: PathBuf, config: ServeConfig) -> Server {
        Server {
            state: Arc::new(State {
                dir,
                gate: pabi_host::CpuGate::new(config.server.max_running()),
                config,
                plugins: RwLock::default(),
                refused: Mutex::default(),
                metrics: metrics::Metrics::new(),
                draining: Default::default(),
                abort: tokio::sync::watch::Sender::new(false),
                worker: Mutex::default(),
                host_functions: Mutex::default(),
                warned: Mutex::default(),
                calls: Default::default(),
            }),
        }
    }

    /// Starts the workers of plugins under `worker_process` isolation with
    /// `command`. Default: this executable, whose `main` then calls
    /// [`pabi_host::worker::run_if_worker`] first.
    pub fn with_worker_command(self, command: WorkerCommand) -> Server {
        *lock(&self.state.worker) = Some(command);
        self
    }

    /// The routes, for embedding in a larger axum application or for tests.
    pub fn router(&self) -> axum::Router {
        http::router(self.state.clone())
    }

    /// The names of the plugins being served.
    pub fn plugins(&self) -> Vec<String> {
        read(&self.state.plugins).keys().cloned().collect()
    }

    /// Offers a host function to the plugins loaded from now on, those
    /// whose `host_calls` setting names it, or all when they have none.
    /// Under `worker_process` isolation the worker relays the plugin's
    /// calls and the handler runs in this process.
    pub fn host_function(self, function: pabi_host::HostFunction) -> Server {
        lock(&self.state.host_functions).push(function);
        self
    }

    /// The pool serving a plugin.
    pub fn pool(&self, plugin: &str) -> Option<Pool> {
        Some(read(&self.state.plugins).get(plugin)?.pool.clone())
    }

    /// Takes in the folder's new and changed `*.wasm` files and drops the
    /// plugins whose file is gone. Blocking: it validates, compiles and
    /// instantiates.
    pub fn scan(&self) -> ScanReport {
        let state = &*self.state;
        let mut report = ScanReport::default();
        let files = match plugin_files(&state.dir) {
            Ok(files) => files,
            Err(error) => {
                tracing::error!(dir = %state.dir.display(), "cannot list the plugin folder: {error}");
                let why = Refusal::Unreadable { path: state.dir.clone(), error: error.to_string() };
                report.refused.push(RefusedFile { plugin: state.dir.display().to_string(), why });
                return report;
            }
        };
        let gone: Vec<String> =
            read(&state.plugins).keys().filter(|name| !files.contains_key(*name)).cloned().collect();
        for name in gone {
            write(&state.plugins).remove(&name);
            tracing::info!(plugin = %name, "file removed; no longer served");
            report.removed.push(name);
        }
        // A refusal is about a file: once the file is gone, so is it.
        lock(&state.refused).retain(|name, _| files.contains_key(name));
        let warnings = self.warnings(&files);
        let mut warned = lock(&state.warned);
        for warning in warnings.iter().filter(|w| !warned.contains(w)) {
            tracing::warn!("{warning}");
            report.warnings.push(warning.clone());
        }
        *warned = warnings;
        drop(warned);
        for (name, file) in files {
            match self.take_in(&name, &file) {
                Ok(TakenIn::Unchanged) => {}
                Ok(taken) => {
                    lock(&state.refused).remove(&name);
                    match taken {
                        TakenIn::Reloaded => report.reloaded.push(name),
                        _ => report.loaded.push(name),
                    }
                }
                Err(refused) => {
                    tracing::error!(plugin = %name, file = %file.display(), "refused: {}", refused.why);
                    if read(&state.plugins).contains_key(&name) {
                        state.metrics.reloads.get_or_create(&reload_labels(&name, "refused")).inc();
                    }
                    report.refused.push(RefusedFile { plugin: name.clone(), why: refused.why.clone() });
                    lock(&state.refused).insert(name, *refused);
                }
            }
        }
        report
    }

    /// What in the configuration matches nothing in the folder or the
    /// server.
    fn warnings(&self, files: &BTreeMap<String, PathBuf>) -> Vec<String> {
        let state = &*self.state;
        let dir = state.dir.display();
        let mut warnings = Vec::new();
        if files.is_empty() {
            warnings.push(format!("no plugin to serve: {dir} has no `*.wasm` file"));
        }
        for name in state.config.plugins.keys().filter(|name| !files.contains_key(*name)) {
            warnings.push(format!("[plugins.{name}] configures no plugin: there is no {dir}/{name}.wasm"));
        }
        let offered: Vec<String> = lock(&state.host_functions).iter().map(|f| f.name().to_string()).collect();
        let tables = std::iter::once(("defaults".to_string(), &state.config.defaults))
            .chain(state.config.plugins.iter().map(|(name, settings)| (format!("plugins.{name}"), settings)));
        for (table, settings) in tables {
            for call in settings.host_calls.iter().flatten().filter(|call| !offered.contains(call)) {
                warnings.push(format!("[{table}] host_calls names `{call}`, which this server does not offer"));
            }
        }
        warnings
    }

    /// Loads or reloads one file.
    ///
    /// Anyone who can write to the folder chooses what is there, so a file
    /// is opened only if it is a regular file (or a symlink to one), never
    /// waiting on a FIFO; it is read only if it fits the compile budget;
    /// and a refused file is not read again until its size, modification
    /// time or inode changes. Its SHA-256 would tell a new version for
    /// sure, but only by reading all of it on every scan.
    fn take_in(&self, name: &str, file: &Path) -> Result<TakenIn, Box<Refused>> {
        let state = &*self.state;
        let refused = |stamp, why| Box::new(Refused { stamp, sha256: None, why });
        let opened = match PluginFile::open_regular(file) {
            Ok(opened) => opened,
            Err(error) => {
                let why = file_refusal(file, error);
                // Nothing to stamp: the same refusal as last time is the
                // same file, already reported.
                if lock(&state.refused).get(name).is_some_and(|r| r.stamp.is_none() && r.why == why) {
                    return Ok(TakenIn::Unchanged);
                }
                return Err(refused(None, why));
            }
        };
        let stamp = opened.stamp();
        if lock(&state.refused).get(name).is_some_and(|r| r.stamp == Some(stamp)) {
            return Ok(TakenIn::Unchanged);
        }
        let limit = state.config.settings(name).host_config().limits().max_module_bytes;
        let wasm = opened.read(limit).map_err(|error| refused(Some(stamp), file_refusal(file, error)))?;
        let sha256 = format!("{:x}", Sha256::digest(&wasm));
        self.take_in_bytes(name, file, &wasm, &sha256)
            .map_err(|why| Box::new(Refused { stamp: Some(stamp), sha256: Some(sha256), why }))
    }

    fn take_in_bytes(&self, name: &str, file: &Path, wasm: &[u8], sha256: &str) -> Result<TakenIn, Refusal> {
        let state = &*self.state;
        let current = read(&state.plugins).get(name).cloned();
        if current.as_ref().is_some_and(|c| c.sha256 == sha256) {
            // The file is the version being served again (a bad copy was
            // put back): whatever was refused in between is past.
            lock(&state.refused).remove(name);
            return Ok(TakenIn::Unchanged);
        }
        // A refused file is tried again only once it changes.
        if lock(&state.refused).get(name).is_some_and(|r| r.sha256.as_deref() == Some(sha256)) {
            return Ok(TakenIn::Unchanged);
        }
        let settings = state.config.settings(name);
        if let Some(pin) = &settings.sha256 {
            if !pin.eq_ignore_ascii_case(sha256) {
                return Err(Refusal::PinMismatch { sha256: sha256.to_string(), pinned: pin.clone() });
            }
        }
        let refused = |error| Refusal::Host { sha256: sha256.to_string(), error };
        // Validating and compiling a large plugin takes a while: say so
        // when it starts, not only when it is done.
        let verb = if current.is_some() { "reloading" } else { "loading" };
        tracing::info!(plugin = %name, file = %file.display(), sha256, "{verb}: validating and compiling");
        if let Some(current) = current {
            current.pool.reload(wasm).map_err(refused)?;
            let loaded = Loaded {
                file: file.to_path_buf(),
                sha256: sha256.to_string(),
                calls: http::CallPath::new(&state.metrics, name, &current.pool),
                pool: current.pool.clone(),
                settings,
                admission: current.admission.clone(),
            };
            write(&state.plugins).insert(name.to_string(), Arc::new(loaded));
            state.metrics.reloads.get_or_create(&reload_labels(name, "ok")).inc();
            tracing::info!(plugin = %name, "reloaded");
            return Ok(TakenIn::Reloaded);
        }
        let offered: Vec<_> =
            lock(&state.host_functions).iter().filter(|f| settings.offers_host_call(f.name())).cloned().collect();
        // Every plugin's host shares the server's gate: the permits go
        // round the plugins, not round each plugin's own calls.
        let mut config = settings.host_config().to_builder().cpu_gate(state.gate.clone());
        for function in offered {
            config = config.host_function(function);
        }
        let mut builder = settings.pool_builder();
        if settings.isolation() == Isolation::WorkerProcess {
            if let Some(command) = lock(&state.worker).clone() {
                builder = builder.worker_command(command);
            }
        }
        let host = Host::new(config.build()).map_err(refused)?;
        let pool = builder.build(&host, wasm).map_err(refused)?;
        let admission = Arc::new(tokio::sync::Semaphore::new(settings.instances() + settings.max_queue()));
        let calls = http::CallPath::new(&state.metrics, name, &pool);
        let loaded = Loaded { file: file.to_path_buf(), sha256: sha256.to_string(), pool, settings, admission, calls };
        write(&state.plugins).insert(name.to_string(), Arc::new(loaded));
        tracing::info!(plugin = %name, "loaded");
        Ok(TakenIn::Loaded)
    }

    /// Serves on `listener` until `shutdown` completes, scanning the folder
    /// every `watch` (zero: never), under the connection bounds of the
    /// `[server]` settings ([`ServerSettings`]). Then drains: no new
    /// connection, idle ones closed, calls in flight finish within the
    /// grace (then they are cancelled and every connection is closed), and
    /// every instance gets `pabi_shutdown`.
    pub async fn serve(
        self,
        listener: tokio::net::TcpListener,
        watch: Duration,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let router = self.router();
        self.serve_app(listener, router, watch, shutdown).await
    }

    /// [`Server::serve`] for an application with routes of its own: `app`
    /// is [`Server::router`] merged into the application's router. The
    /// folder is watched and the drain is the same.
    pub async fn serve_app(
        self,
        listener: tokio::net::TcpListener,
        app: axum::Router,
        watch: Duration,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let watcher = (!watch.is_zero()).then(|| {
            let server = self.clone();
            tokio::spawn(async move {
                let mut ticks = tokio::time::interval(watch);
                ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                ticks.tick().await;
                loop {
                    ticks.tick().await;
                    let server = server.clone();
                    // A scan compiles: off the executor threads.
                    let _ = tokio::task::spawn_blocking(move || server.scan()).await;
                }
            })
        });
        let result = conn::serve(self.state.clone(), listener, app, shutdown).await;
        if let Some(watcher) = watcher {
            watcher.abort();
        }
        // The last pools go: `pabi_shutdown` on every instance, off the
        // executor threads.
        let state = self.state.clone();
        let _ = tokio::task::spawn_blocking(move || {
            let plugins = std::mem::take(&mut *write(&state.plugins));
            for loaded in plugins.values() {
                // Waited for: a worker's `pabi_shutdown` runs before this
                // process exits and takes the worker with it.
                loaded.pool.shutdown();
            }
        })
        .await;
        tracing::info!("stopped");
        result
    }
}

/// Completes at the first SIGTERM or SIGINT (Ctrl-C): the usual shutdown
/// future for [`Server::serve`].
///
/// The handlers are installed when this is called, not when the future is
/// first polled, so a signal that comes while the plugins load is kept and
/// ends the serve as soon as it starts, where the default action would
/// have killed the process before its workers got `pabi_shutdown`. Call it
/// inside a tokio runtime. Where a handler cannot be installed, that
/// signal keeps its default action. Off Unix, only Ctrl-C stops, and its
/// handler is installed at the first poll.
pub fn stop_signal() -> impl std::future::Future<Output = ()> + Send + 'static {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let wait = |kind: SignalKind| {
            let installed = signal(kind);
            async move {
                match installed {
                    Ok(mut signal) => {
                        signal.recv().await;
                    }
                    Err(error) => {
                        tracing::warn!("cannot handle signal {}: {error}", kind.as_raw_value());
                        std::future::pending::<()>().await;
                    }
                }
            }
        };
        let (term, interrupt) = (wait(SignalKind::terminate()), wait(SignalKind::interrupt()));
        async move {
            tokio::select! {
                () = term => {}
                () = interrupt => {}
            }
        }
    }
    #[cfg(not(unix))]
    async {
        tokio::signal::ctrl_c().await.ok();
    }
}

fn reload_labels(plugin: &str, result: &str) -> metrics::ReloadLabels {
    metrics::ReloadLabels { plugin: plugin.to_string(), result: result.to_string() }
}

/// Why a plugin file was not read, as a refusal.
fn file_refusal(file: &Path, error: PluginFileError) -> Refusal {
    match error {
        PluginFileError::NotAFile { path, what } => Refusal::NotAFile { path, what: what.to_string() },
        PluginFileError::ModuleLimit(error) => Refusal::TooLarge { path: file.to_path_buf(), error },
        PluginFileError::Unreadable { path, error } => Refusal::Unreadable { path, error: error.to_string() },
        // `PluginFileError` is non-exhaustive; a new reason is still a
        // file that cannot be read.
        other => Refusal::Unreadable { path: file.to_path_buf(), error: other.to_string() },
    }
}

/// The folder's plugin files by name. A name is the file stem, which must
/// fit a URL path segment as it is.
///
/// Every entry named `*.wasm` counts, whatever it is: a FIFO, a device or
/// a symlink to nothing put in a plugin's place is refused by
/// [`Server::take_in`] while the old version serves, where skipping it
/// here would remove the plugin.
fn plugin_files(dir: &Path) -> std::io::Result<BTreeMap<String, PathBuf>> {
    let mut files = BTreeMap::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "wasm") {
            let Some(stem) = path.file_stem().and_then(|s| s.to_str()) else { continue };
            if stem.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b)) {
                files.insert(stem.to_string(), path);
            } else {
                tracing::warn!(file = %path.display(), "skipped: a plugin's file name is [A-Za-z0-9._-] and `.wasm`");
            }
        }
    }
    Ok(files)
}

// A poisoned lock still guards consistent data here: every critical
// section either completes its writes or makes none.
pub(crate) fn read<T>(lock: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(|p| p.into_inner())
}

pub(crate) fn write<T>(lock: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    lock.write().unwrap_or_else(|p| p.into_inner())
}

pub(crate) fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}
