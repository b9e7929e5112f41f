use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context};

use super::host_args::{parse_duration, HostCallArgs};

/// Serve the plugins of a folder over HTTP: a pool of instances per
/// plugin, quotas from a TOML file, hot reload, Prometheus metrics.
#[derive(clap::Args, Debug)]
#[command(after_help = serve_help())]
pub struct Opts {
    /// The folder of plugins: each `NAME.wasm` is served as NAME.
    #[arg(value_name = "DIR")]
    dir: PathBuf,
    /// Address to listen on.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// Per-plugin settings (TOML) [default: DIR.toml beside DIR, if it
    /// exists].
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// How often to look for new and changed plugin files; `0s` turns hot
    /// reload off.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, default_value = "1s")]
    watch: Duration,
    /// Where plugins run: `in_process`, or `worker_process`, each in a
    /// worker process of its own with OS limits, restarted when it dies.
    /// Overrides `[defaults]`; a plugin's own `isolation` setting wins
    /// [default: the settings', else in_process].
    #[arg(long, value_name = "MODE")]
    isolation: Option<pabi_host::Isolation>,
    /// The host functions offered to plugins (each plugin's `host_calls`
    /// setting narrows them); with worker_process isolation they still run
    /// here.
    #[command(flatten)]
    host_calls: HostCallArgs,
    /// After SIGTERM or Ctrl-C, how long calls in flight may run before
    /// they are cancelled and every connection is closed. Overrides
    /// `[server] grace` [default: the settings', else 10s].
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    grace: Option<Duration>,
    /// Connections open at once; one more is answered 503. Overrides
    /// `[server] max_connections` [default: the settings', else 512].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    max_connections: Option<u64>,
    /// Plugin calls running wasm at once across all in-process plugins,
    /// shared round the plugins in 0.5 ms slices. Overrides `[server]
    /// max_running` [default: the settings', else the number of CPUs].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    max_running: Option<u64>,
    /// How long a request's head may take from its first byte. Overrides
    /// `[server] header_timeout` [default: the settings', else 10s].
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    header_timeout: Option<Duration>,
    /// How long a connection may wait for its next request. Overrides
    /// `[server] idle_timeout` [default: the settings', else 60s].
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    idle_timeout: Option<Duration>,
    /// How long a request body may take beyond what `min_body_rate`
    /// allows. Overrides `[server] body_timeout` [default: the settings',
    /// else 10s].
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    body_timeout: Option<Duration>,
    /// How long a response may wait for its client to read any of it.
    /// Overrides `[server] send_timeout` [default: the settings', else 10s].
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    send_timeout: Option<Duration>,
}

const fn serve_help() -> &'static str {
    "\
Routes:
  POST /v1/plugins/{plugin}/{function}   body = input; 200 = output, else a JSON error
  GET  /v1/plugins                       plugins, their pools and the files refused
  GET  /healthz                          200 (and a line per plugin disabled by a crash loop), or 503 while draining
  GET  /metrics                          Prometheus text

Errors are {\"kind\", \"status\", \"message\"} (spec/schemas/serve-error.schema.json):
PLUGIN_ERROR 422, UNKNOWN_FUNCTION or UNKNOWN_PLUGIN 404, INPUT_LIMIT 413,
TIMEOUT 504, a full queue (HOST_FAILURE) or CRASH_LOOP 503 with Retry-After,
any other plugin failure 502.

Connections (the [server] table, or the flags of the same names):
  grace 10s, max_connections 512 (one more closes the longest idle one; if
  every connection has a request in progress: 503 HOST_FAILURE, Retry-After),
  header_timeout 10s (a request's head, from its first byte), idle_timeout
  60s (waiting for the next request), body_timeout 10s and min_body_rate
  16 KiB (a body must arrive within body_timeout + received / rate, else
  408 REQUEST_TIMEOUT), send_timeout 10s (a response nobody reads).
CPU (the [server] table, or the flag): max_running, default the number of
  CPUs: in-process plugin calls running wasm at once; the permits go round
  the plugins in 0.5 ms slices (a call in a host call holds none), so a
  light plugin keeps its latency beside CPU-heavy ones. Worker processes
  are left to the OS scheduler.
A call is admitted before its body is read only while its plugin has fewer
than instances + max_queue calls admitted, else 503 at once; it keeps its
place until its output is handed over. A Content-Length past max_input is
413 at once. Malformed requests are 400 BAD_REQUEST, unknown routes 404
UNKNOWN_ROUTE, in the same JSON.

Settings (DIR.toml; every key optional, [plugins.NAME] over [defaults]):
  instances, max_queue, queue_timeout, timeout, max_memory, max_output,
  max_input, fuel, allow_clock, allow_random, env, dirs, plugin_config,
  sha256, isolation (in_process | worker_process), worker_cpu_time,
  worker_address_headroom, crash_reset (how long a plugin disabled by a
  crash loop answers CRASH_LOOP; default 60s, its Retry-After),
  log_records_per_second, log_bytes_per_second (log text a plugin may
  write across all its calls; default 1000 and 1 MiB; the rest is dropped
  and counted in /metrics),
  host_calls (the names of --host-calls / --host-call-command offered;
  default all)

With worker_process isolation each plugin runs in a worker process of this
executable (no new privileges, no core dumps, RLIMIT_AS at its size after
loading plus worker_address_headroom, RLIMIT_CPU at worker_cpu_time). A
worker that dies is started again; only the calls it held fail, with
HOST_FAILURE (503).

Every DIR/NAME.wasm is looked at on each scan (--watch): a new or changed
file loads while the old version serves; one that fails, is larger than
32 MiB (MODULE_LIMIT, not read) or is not a regular file (a FIFO, a device,
a symlink to nothing) is refused and logged, and the old version serves on.
A refused file is read again only once its size, mtime or inode changes.

SIGTERM or Ctrl-C drains: no new connections, idle ones closed, calls in
flight finish within the grace (then they are cancelled and answered
CANCELLED, 503, and the connections left are closed), every instance gets
pabi_shutdown. One that comes while the plugins load drains
as soon as they are in. Logs go to standard error (PABI_LOG, default info);
settings that match no plugin file or host function are warned of there.

Examples:
  pabi serve plugins/
  pabi serve plugins/ --listen 0.0.0.0:9000 --config serve.toml
  pabi serve plugins/ --isolation worker_process
  curl -d hello localhost:8080/v1/plugins/text/upper

Exit codes:
  0  drained and stopped after SIGTERM or Ctrl-C
  2  usage or I/O error (no such folder, bad settings, address in use)"
}

impl Opts {
    pub fn run(self) -> anyhow::Result<u8> {
        if !self.dir.is_dir() {
            bail!("`{}` is not a folder", self.dir.display());
        }
        let mut config = match self.config.clone().or_else(|| default_config(&self.dir)) {
            Some(path) => pabi_serve::ServeConfig::from_file(&path)?,
            None => pabi_serve::ServeConfig::default(),
        };
        if let Some(isolation) = self.isolation {
            config.defaults.isolation = Some(isolation);
        }
        let server_settings = &mut config.server;
        for (flag, setting) in [
            (self.grace, &mut server_settings.grace),
            (self.header_timeout, &mut server_settings.header_timeout),
            (self.idle_timeout, &mut server_settings.idle_timeout),
            (self.body_timeout, &mut server_settings.body_timeout),
            (self.send_timeout, &mut server_settings.send_timeout),
        ] {
            if flag.is_some() {
                *setting = flag;
            }
        }
        if let Some(max) = self.max_connections {
            server_settings.max_connections = Some(usize::try_from(max).unwrap_or(usize::MAX));
        }
        if let Some(max) = self.max_running {
            server_settings.max_running = Some(usize::try_from(max).unwrap_or(usize::MAX));
        }
        server_settings.check()?;
        let mut server = pabi_serve::Server::new(self.dir.clone(), config);
        for function in self.host_calls.host_functions(&pabi_host::testing::HostCallLog::off(), None)? {
            server = server.host_function(function);
        }
        let runtime =
            tokio::runtime::Builder::new_multi_thread().enable_all().build().context("cannot start the runtime")?;
        let served = runtime.block_on(async {
            // Bound before loading, so a port in use fails at once; calls
            // wait in the backlog until the plugins are in.
            let listener = tokio::net::TcpListener::bind(self.listen)
                .await
                .with_context(|| format!("cannot listen on {}", self.listen))?;
            let address = listener.local_addr().context("cannot read the listening address")?;
            // Armed before loading too: a SIGTERM while plugins load drains
            // as soon as they are in, rather than killing the process.
            let stop = pabi_serve::stop_signal();
            let loader = server.clone();
            let report = tokio::task::spawn_blocking(move || loader.scan()).await.context("loading the plugins failed")?;
            tracing::info!(loaded = ?report.loaded, refused = report.refused.len(), "plugins of {}", self.dir.display());
            // The one line a script waits for (the port, when it asked for 0).
            eprintln!("listening on http://{address}");
            server.serve(listener, self.watch, stop).await.context("the server failed")
        });
        // The drain is over: a call still in a host function that does not
        // look at its cancel must not hold the exit.
        runtime.shutdown_timeout(std::time::Duration::from_secs(1));
        served?;
        Ok(crate::exit::OK)
    }
}

/// `DIR.toml` beside `DIR/` (`plugins.toml` beside `plugins/`).
fn default_config(dir: &std::path::Path) -> Option<PathBuf> {
    let dir = dir.canonicalize().ok()?;
    let path = dir.with_file_name(format!("{}.toml", dir.file_name()?.to_str()?));
    path.is_file().then_some(path)
}
