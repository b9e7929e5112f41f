//! The serve configuration: a TOML file of per-plugin settings, each
//! falling back to `[defaults]`, then to the built-in default documented
//! on the field.
//!
//! ```toml
//! [server]
//! grace = "5s"
//! max_connections = 256
//! max_running = 4
//!
//! [defaults]
//! instances = 2
//! timeout = "500ms"
//! max_memory = "64 MiB"
//!
//! [plugins.echo]
//! sha256 = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
//! instances = 4
//! max_queue = 128
//!
//! [plugins.untrusted]
//! isolation = "worker_process"
//! worker_cpu_time = "10m"
//! host_calls = ["kv.get"]
//! ```

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use bytesize::ByteSize;
use pabi_host::Isolation;
use serde::Deserialize;

/// Settings of every plugin in the folder, by file stem.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct ServeConfig {
    /// What a plugin without its own value for a setting gets.
    #[serde(default)]
    pub defaults: PluginSettings,
    /// Per plugin, by file stem (`echo` for `echo.wasm`).
    #[serde(default)]
    pub plugins: BTreeMap<String, PluginSettings>,
    /// The server's own settings: connections, their timeouts, the drain.
    #[serde(default)]
    pub server: ServerSettings,
}

/// Settings of the server as a whole, the `[server]` table. Every field is
/// optional; the accessor of the same name gives the value in force, and
/// its default is documented on the field.
///
/// Together with each plugin's `instances`, `max_queue`, `max_input` and
/// `max_output` they bound what a client can make the server hold: at
/// most `instances + max_queue` calls per plugin hold a request body or an
/// output at once, and at most `max_connections` connections are open,
/// each with a few hundred KiB of buffers.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct ServerSettings {
    /// After the shutdown signal, how long calls in flight may run. Past
    /// it they are cancelled and answered `CANCELLED`, and every
    /// connection still open is closed: the drain ends within it.
    /// Default: 10 s.
    #[serde(default, with = "humantime_serde")]
    pub grace: Option<Duration>,
    /// Connections open at once. At the cap, a new connection closes the
    /// one that has waited longest with no request in progress and takes
    /// its place; when every connection has a request in progress, it is
    /// answered `503` with `Retry-After` (`HOST_FAILURE`) and closed. Keep
    /// it under the process's file-descriptor limit. Default: 512.
    pub max_connections: Option<usize>,
    /// How long a request's head (request line and headers) may take to
    /// arrive, from its first byte; past it the connection is closed.
    /// Default: 10 s.
    #[serde(default, with = "humantime_serde")]
    pub header_timeout: Option<Duration>,
    /// How long a connection may wait for its next request, when it has
    /// none in progress; past it the connection is closed. Default: 60 s.
    #[serde(default, with = "humantime_serde")]
    pub idle_timeout: Option<Duration>,
    /// How long a request body may take, beyond what `min_body_rate`
    /// allows for the bytes received: a body must have arrived within
    /// `body_timeout + received / min_body_rate` of its start, or the
    /// call is answered `408` (`REQUEST_TIMEOUT`). Default: 10 s.
    #[serde(default, with = "humantime_serde")]
    pub body_timeout: Option<Duration>,
    /// The slowest a request body may arrive, in bytes per second, once
    /// `body_timeout` is spent. Default: 16 KiB (a 16 MiB body may take
    /// 10 s + 1024 s).
    #[serde(default)]
    pub min_body_rate: Option<ByteSize>,
    /// How long a response may wait for its client to read any of it;
    /// past it the connection is closed, and the output and the call's
    /// place in its plugin's queue are let go. Default: 10 s.
    #[serde(default, with = "humantime_serde")]
    pub send_timeout: Option<Duration>,
    /// Plugin calls that run wasm at once, across every plugin served in
    /// this process. The permits go round the plugins in time slices of
    /// 0.5 ms ([`pabi_host::CpuGate`]): a call that has run its slice while
    /// another waits gives its permit up, and a call blocked in a host call
    /// holds none, so a plugin with little work keeps a latency close to
    /// the one it has alone, whatever its neighbours burn. A call's
    /// deadline runs while it waits for its turn. Calls of plugins under
    /// `worker_process` isolation are not counted: the operating system
    /// schedules their worker processes. Default: the number of CPUs.
    pub max_running: Option<usize>,
}

impl ServerSettings {
    pub fn grace(&self) -> Duration {
        self.grace.unwrap_or(Duration::from_secs(10))
    }

    pub fn max_connections(&self) -> usize {
        self.max_connections.unwrap_or(512)
    }

    pub fn header_timeout(&self) -> Duration {
        self.header_timeout.unwrap_or(Duration::from_secs(10))
    }

    pub fn idle_timeout(&self) -> Duration {
        self.idle_timeout.unwrap_or(Duration::from_secs(60))
    }

    pub fn body_timeout(&self) -> Duration {
        self.body_timeout.unwrap_or(Duration::from_secs(10))
    }

    /// Bytes per second; at least 1.
    pub fn min_body_rate(&self) -> u64 {
        self.min_body_rate.map_or(16 << 10, |rate| rate.as_u64()).max(1)
    }

    pub fn send_timeout(&self) -> Duration {
        self.send_timeout.unwrap_or(Duration::from_secs(10))
    }

    /// At least 1.
    pub fn max_running(&self) -> usize {
        self.max_running.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, usize::from)).max(1)
    }

    /// Whether the settings can be served: no zero timeout, cap or rate.
    /// [`ServeConfig::from_toml`] checks them; an application that sets
    /// fields itself calls this.
    pub fn check(&self) -> Result<(), ConfigError> {
        let refuse = |key: &'static str, reason: &str| Err(ConfigError::setting("server", key, reason));
        if self.max_connections == Some(0) {
            return refuse("max_connections", "must be at least 1");
        }
        if self.max_running == Some(0) {
            return refuse("max_running", "must be at least 1");
        }
        if self.min_body_rate.is_some_and(|rate| rate.as_u64() == 0) {
            return refuse("min_body_rate", "must be at least 1 B");
        }
        let timeouts = [
            ("header_timeout", self.header_timeout),
            ("idle_timeout", self.idle_timeout),
            ("body_timeout", self.body_timeout),
            ("send_timeout", self.send_timeout),
        ];
        for (key, timeout) in timeouts {
            if timeout.is_some_and(|t| t.is_zero()) {
                return refuse(key, "must be longer than 0 s");
            }
        }
        Ok(())
    }
}

/// Why a configuration file was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    #[error("cannot read {path}")]
    Read { path: String, source: std::io::Error },
    /// Not TOML, or not the keys and values of [`PluginSettings`]: the
    /// message names the key.
    #[error("{}{message}", path_prefix(path))]
    Parse { path: Option<String>, message: String },
    /// A value the key cannot take, in the table `[defaults]`, `[server]`
    /// or `[plugins.NAME]` (written here as `NAME`).
    #[error("{}[{table}] {key} {reason}", path_prefix(path))]
    Setting { path: Option<String>, table: String, key: &'static str, reason: String },
}

impl ConfigError {
    fn setting(table: &str, key: &'static str, reason: impl Into<String>) -> ConfigError {
        ConfigError::Setting { path: None, table: table.to_string(), key, reason: reason.into() }
    }
}

fn path_prefix(path: &Option<String>) -> String {
    path.as_ref().map_or_else(String::new, |path| format!("{path}: "))
}

impl ServeConfig {
    /// Reads and checks a TOML configuration.
    pub fn from_file(path: &Path) -> Result<ServeConfig, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| ConfigError::Read { path: path.display().to_string(), source })?;
        let named = Some(path.display().to_string());
        ServeConfig::from_toml(&text).map_err(|error| match error {
            ConfigError::Parse { message, .. } => ConfigError::Parse { path: named, message },
            ConfigError::Setting { table, key, reason, .. } => ConfigError::Setting { path: named, table, key, reason },
            other => other,
        })
    }

    /// Parses and checks a TOML configuration; the error names the key.
    pub fn from_toml(text: &str) -> Result<ServeConfig, ConfigError> {
        let parse = |message: String| ConfigError::Parse { path: None, message };
        let config: ServeConfig = toml::from_str(text).map_err(|e| parse(e.to_string()))?;
        for (name, settings) in std::iter::once(("defaults", &config.defaults))
            .chain(config.plugins.iter().map(|(name, settings)| (name.as_str(), settings)))
        {
            settings.check(name)?;
        }
        config.server.check()?;
        if config.defaults.sha256.is_some() {
            return Err(parse("[defaults] sha256 pins one file; set it under [plugins.NAME]".into()));
        }
        Ok(config)
    }

    /// The settings of the plugin `name`: its own, else the defaults.
    pub fn settings(&self, name: &str) -> PluginSettings {
        let own = self.plugins.get(name).cloned().unwrap_or_default();
        own.or(&self.defaults)
    }
}

/// One plugin's settings. Every field is optional; [`PluginSettings`]'s
/// accessors give the value in force. Each key is a setter of
/// [`pabi_host::PoolBuilder`] or [`pabi_host::ConfigBuilder`] of the same
/// name, but for `sha256`, `max_input` and `host_calls`, which are the
/// server's own, and `log_records_per_second` and `log_bytes_per_second`,
/// which together are [`pabi_host::ConfigBuilder::log_rate`].
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct PluginSettings {
    /// Instances serving calls at once. Default: the number of CPUs.
    pub instances: Option<usize>,
    /// Calls that may wait for an instance; past it, `503` with
    /// `Retry-After`. Default: 64 per instance.
    pub max_queue: Option<usize>,
    /// How long a call may wait for an instance. Default: 5 s.
    #[serde(default, with = "humantime_serde")]
    pub queue_timeout: Option<Duration>,
    /// Deadline of a call. Default: the host's, 1 s (`LIM-3`).
    #[serde(default, with = "humantime_serde")]
    pub timeout: Option<Duration>,
    /// Linear memory cap. Default: the host's (`LIM-1`).
    #[serde(default)]
    pub max_memory: Option<ByteSize>,
    /// Output cap of a call. Default: the host's (`LIM-5`).
    #[serde(default)]
    pub max_output: Option<ByteSize>,
    /// Request body cap; past it, `413`. Default: 16 MiB.
    #[serde(default)]
    pub max_input: Option<ByteSize>,
    /// Fuel per call. Default: off (`LIM-4`).
    pub fuel: Option<u64>,
    /// Offer the real clocks. Default: no (virtual time, `WASI-6`).
    pub allow_clock: Option<bool>,
    /// Offer host entropy. Default: no (`WASI-7`).
    pub allow_random: Option<bool>,
    /// Environment variables offered to plugins that declare them (`WASI-8`).
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Folders offered as `HOST:GUEST[:ro]`, to plugins that declare them
    /// (`WASI-3`).
    #[serde(default, deserialize_with = "dir_grants")]
    pub dirs: Vec<pabi_host::DirGrant>,
    /// The SHA-256 (hex) the plugin file must have: a file that does not
    /// match is refused at load and on reload, and the old version keeps
    /// serving. Default: no pin.
    pub sha256: Option<String>,
    /// The bytes each instance gets in `pabi_init` (`LIFE-2`). Default:
    /// empty.
    pub plugin_config: Option<String>,
    /// Where the plugin runs: `in_process`, in the server's process, or
    /// `worker_process`, in a worker process of its own with OS limits,
    /// restarted when it dies. Default: `in_process`.
    pub isolation: Option<Isolation>,
    /// Under `worker_process` isolation, the CPU time a worker may use in all
    /// (`RLIMIT_CPU`); past it the OS kills the worker and it is restarted.
    /// Default: no limit (each call has its deadline).
    #[serde(default, with = "humantime_serde")]
    pub worker_cpu_time: Option<Duration>,
    /// Under `worker_process` isolation, the address space a worker may map
    /// beyond what loading its plugin mapped (`RLIMIT_AS` is set to the
    /// sum once the plugin is loaded). An absolute cap would have to know
    /// the engine's up-front reservations (guard regions of several GiB
    /// per instance); a margin over them does not. Default: 1 GiB.
    #[serde(default)]
    pub worker_address_headroom: Option<ByteSize>,
    /// The server's host functions this plugin is offered, by name
    /// (`CALL-5`): an allow list. A required host call the list leaves
    /// out refuses the plugin with `MISSING_CAPABILITY`; an optional one
    /// answers `E_ABSENT`. Default: every host function of the server.
    pub host_calls: Option<Vec<String>>,
    /// How long a plugin disabled by a crash loop (`LIFE-7`, five dead
    /// instances within 60 s) answers `503 CRASH_LOOP` before its next
    /// call tries it again; the `Retry-After` of that answer, in whole
    /// seconds rounded up. Default: 60 s.
    #[serde(default, with = "humantime_serde")]
    pub crash_reset: Option<Duration>,
    /// Log records the plugin may write per second, across all its calls
    /// and instances (`log` records and lines of standard output and
    /// error); past it they are dropped and counted in `/metrics`, and
    /// `log` still returns 0. Default: 1,000.
    pub log_records_per_second: Option<u64>,
    /// Bytes of log text the plugin may write per second, across all its
    /// calls and instances. Default: 1 MiB.
    #[serde(default)]
    pub log_bytes_per_second: Option<ByteSize>,
}

/// `dirs` as `pabi run --dir` writes them: `HOST:GUEST[:ro|:rw]`.
fn dir_grants<'de, D: serde::Deserializer<'de>>(de: D) -> Result<Vec<pabi_host::DirGrant>, D::Error> {
    let texts: Vec<String> = Deserialize::deserialize(de)?;
    texts.iter().map(|text| pabi_host::DirGrant::parse(text).map_err(serde::de::Error::custom)).collect()
}

impl PluginSettings {
    fn check(&self, table: &str) -> Result<(), ConfigError> {
        if let Some(pin) = &self.sha256 {
            if pin.len() != 64 || !pin.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(ConfigError::setting(table, "sha256", format!("`{pin}` is not 64 hex digits")));
            }
        }
        if self.instances == Some(0) {
            return Err(ConfigError::setting(table, "instances", "must be at least 1"));
        }
        for name in self.host_calls.iter().flatten() {
            if !pabi_abi::is_valid_host_call_name(name) {
                let reason = format!("`{name}` is not a host-call name (CALL-2)");
                return Err(ConfigError::setting(table, "host_calls", reason));
            }
        }
        Ok(())
    }

    /// Each field from `self`, else from `defaults`.
    fn or(self, defaults: &PluginSettings) -> PluginSettings {
        let d = defaults.clone();
        PluginSettings {
            instances: self.instances.or(d.instances),
            max_queue: self.max_queue.or(d.max_queue),
            queue_timeout: self.queue_timeout.or(d.queue_timeout),
            timeout: self.timeout.or(d.timeout),
            max_memory: self.max_memory.or(d.max_memory),
            max_output: self.max_output.or(d.max_output),
            max_input: self.max_input.or(d.max_input),
            fuel: self.fuel.or(d.fuel),
            allow_clock: self.allow_clock.or(d.allow_clock),
            allow_random: self.allow_random.or(d.allow_random),
            env: if self.env.is_empty() { d.env } else { self.env },
            dirs: if self.dirs.is_empty() { d.dirs } else { self.dirs },
            sha256: self.sha256,
            plugin_config: self.plugin_config.or(d.plugin_config),
            isolation: self.isolation.or(d.isolation),
            worker_cpu_time: self.worker_cpu_time.or(d.worker_cpu_time),
            worker_address_headroom: self.worker_address_headroom.or(d.worker_address_headroom),
            host_calls: self.host_calls.or(d.host_calls),
            crash_reset: self.crash_reset.or(d.crash_reset),
            log_records_per_second: self.log_records_per_second.or(d.log_records_per_second),
            log_bytes_per_second: self.log_bytes_per_second.or(d.log_bytes_per_second),
        }
    }

    pub fn instances(&self) -> usize {
        self.instances.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, usize::from))
    }

    pub fn max_queue(&self) -> usize {
        self.max_queue.unwrap_or(64 * self.instances())
    }

    pub fn queue_timeout(&self) -> Duration {
        self.queue_timeout.unwrap_or(Duration::from_secs(5))
    }

    pub fn crash_reset(&self) -> Duration {
        self.crash_reset.unwrap_or(Duration::from_secs(60))
    }

    /// The plugin's log rate: records and bytes per second.
    pub fn log_rate(&self) -> pabi_host::LogRate {
        let default = pabi_host::LogRate::default();
        pabi_host::LogRate::new(
            self.log_records_per_second.unwrap_or(default.records),
            self.log_bytes_per_second.map_or(default.bytes, |size| size.as_u64()),
        )
    }

    /// Whether the host function `name` is offered to this plugin.
    pub fn offers_host_call(&self, name: &str) -> bool {
        self.host_calls.as_ref().is_none_or(|names| names.iter().any(|n| n == name))
    }

    pub fn isolation(&self) -> Isolation {
        self.isolation.unwrap_or_default()
    }

    pub fn worker_address_headroom(&self) -> u64 {
        self.worker_address_headroom.map_or(1 << 30, |size| size.as_u64())
    }

    pub fn max_input(&self) -> u64 {
        self.max_input.map_or(16 << 20, |size| size.as_u64())
    }

    /// The pool these settings ask for.
    pub fn pool_builder(&self) -> pabi_host::PoolBuilder {
        let mut builder = pabi_host::Pool::builder()
            .instances(self.instances())
            .max_queue(self.max_queue())
            .queue_timeout(self.queue_timeout())
            .plugin_config(self.plugin_config.clone().unwrap_or_default())
            .isolation(self.isolation())
            .worker_address_headroom(self.worker_address_headroom());
        if let Some(cpu_time) = self.worker_cpu_time {
            builder = builder.worker_cpu_time(cpu_time);
        }
        builder
    }

    /// The host configuration these settings ask for.
    pub fn host_config(&self) -> pabi_host::Config {
        let mut builder = pabi_host::Config::builder()
            // One slot per instance, and one for a reload's new instances
            // while the old ones still serve.
            .max_instances(u32::try_from(self.instances() * 2).unwrap_or(u32::MAX));
        if let Some(timeout) = self.timeout {
            builder = builder.timeout(timeout);
        }
        if let Some(max) = self.max_memory {
            builder = builder.max_memory(max.as_u64());
        }
        if let Some(max) = self.max_output {
            builder = builder.max_output(max.as_u64());
        }
        builder = builder
            .crash_reset(self.crash_reset())
            .log_rate(Some(self.log_rate()))
            .fuel(self.fuel)
            .allow_clock(self.allow_clock.unwrap_or(false))
            .allow_random(self.allow_random.unwrap_or(false));
        for (name, value) in &self.env {
            builder = builder.allow_env(name, value);
        }
        for dir in &self.dirs {
            builder = builder.allow_dir(dir.clone());
        }
        builder.build()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plugin_settings_fall_back_to_the_defaults_field_by_field() {
        let config = ServeConfig::from_toml(
            r#"
            [defaults]
            instances = 2
            timeout = "250ms"
            max_memory = "32 MiB"
            [plugins.echo]
            instances = 4
            sha256 = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
            "#,
        )
        .unwrap();
        let echo = config.settings("echo");
        assert_eq!(echo.instances(), 4);
        assert_eq!(echo.timeout, Some(Duration::from_millis(250)));
        assert_eq!(echo.max_memory, Some(ByteSize::mib(32)));
        assert_eq!(echo.max_queue(), 256);
        let other = config.settings("other");
        assert_eq!((other.instances(), other.sha256), (2, None), "a pin is never a default");
    }

    #[test]
    fn the_example_at_the_top_of_this_file_is_a_valid_configuration() {
        let source = include_str!("config.rs");
        let example: String = source
            .lines()
            .skip_while(|line| *line != "//! ```toml")
            .skip(1)
            .take_while(|line| *line != "//! ```")
            .map(|line| format!("{}\n", line.trim_start_matches("//!").trim_start()))
            .collect();
        let config = ServeConfig::from_toml(&example).unwrap();
        let untrusted = config.settings("untrusted");
        assert_eq!(untrusted.isolation(), Isolation::WorkerProcess);
        assert_eq!(untrusted.worker_cpu_time, Some(Duration::from_secs(600)));
        assert!(untrusted.offers_host_call("kv.get") && !untrusted.offers_host_call("kv.put"));
        assert_eq!((untrusted.instances(), config.settings("echo").instances()), (2, 4));
        assert_eq!((config.server.grace(), config.server.max_connections()), (Duration::from_secs(5), 256));
        assert_eq!(config.server.idle_timeout(), Duration::from_secs(60), "a default");
    }

    #[test]
    fn bad_settings_name_their_key() {
        for (text, needle) in [
            ("[plugins.a]\nsha256 = \"abc\"", "64 hex digits"),
            ("[plugins.a]\ninstances = 0", "at least 1"),
            ("[plugins.a]\ntimeout = \"soon\"", "timeout"),
            ("[plugins.a]\nmax_memory = \"lots\"", "max_memory"),
            ("[plugins.a]\nunknown = 1", "unknown"),
            (
                "[defaults]\nsha256 = \"9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08\"",
                "pins one file",
            ),
            ("[plugins.a]\ndirs = [\"nocolon\"]", "dirs"),
            ("[plugins.a]\nisolation = \"vm\"", "isolation"),
            ("[plugins.a]\nhost_calls = [\"KV\"]", "CALL-2"),
            ("[server]\nmax_connections = 0", "[server] max_connections"),
            ("[server]\nheader_timeout = \"0s\"", "[server] header_timeout"),
            ("[server]\nlinger = \"1s\"", "linger"),
        ] {
            let error = ServeConfig::from_toml(text).unwrap_err();
            assert!(error.to_string().contains(needle), "{text}: {error}");
        }
    }
}
