//! Host settings shared by `pabi run` and `pabi pipe`.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context};
use pabi_host::testing::{HostCallLog, Reenter};
use pabi_host::{Config, ConfigBuilder, DirGrant, Host, HostFunction};
use pabi_testkit::host_calls::HostCallTable;

#[derive(clap::Args, Debug, Clone)]
pub struct HostArgs {
    /// Wall-time deadline per call, e.g. `100ms`, `2s`.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    timeout: Option<Duration>,
    /// The deadline in milliseconds (the conformance adapter's spelling).
    #[arg(long, value_name = "N", conflicts_with = "timeout")]
    timeout_ms: Option<u64>,
    /// Memory cap, e.g. `64MiB` or bytes.
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    max_memory: Option<u64>,
    /// Output cap per call, e.g. `1MiB` or bytes.
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    max_output: Option<u64>,
    /// A host call's request cap, e.g. `64KiB` [default: 1MiB; at most
    /// 2147483647 bytes].
    #[arg(long, value_name = "SIZE", value_parser = parse_host_call_cap)]
    max_request: Option<u64>,
    /// A host call's reply cap, e.g. `64KiB` [default: 1MiB; at most
    /// 2147483647 bytes].
    #[arg(long, value_name = "SIZE", value_parser = parse_host_call_cap)]
    max_reply: Option<u64>,
    /// Fuel per call (deterministic instruction budget); off by default.
    #[arg(long, value_name = "N")]
    fuel: Option<u64>,
    /// Offer a host directory at a guest path: `HOST:GUEST[:ro]`. Granted
    /// only to plugins that declare `fs:GUEST:ro|rw`.
    #[arg(long = "dir", value_name = "HOST:GUEST[:ro]", value_parser = DirGrant::parse)]
    dirs: Vec<DirGrant>,
    /// Offer an environment variable: `NAME=VALUE`. Granted only to plugins
    /// that declare `env:NAME`.
    #[arg(long = "env", value_name = "NAME=VALUE", value_parser = parse_env)]
    envs: Vec<(String, String)>,
    /// Offer the real clocks (else plugins see virtual time).
    #[arg(long)]
    allow_clock: bool,
    /// Offer host entropy (else plugins see a fixed-seed generator).
    #[arg(long)]
    allow_random: bool,
    /// Keep compiled plugins here between runs [default: the user cache
    /// folder, `pabi/`].
    #[arg(long, value_name = "DIR")]
    cache_dir: Option<PathBuf>,
    /// Compile every time; write no cache.
    #[arg(long, conflicts_with = "cache_dir")]
    no_cache: bool,
    #[command(flatten)]
    host_calls: HostCallArgs,
    /// Offer this ABI version instead of the newest, e.g. `1.0` to refuse
    /// plugins that make host calls (CALL-9).
    #[arg(long, value_name = "VERSION")]
    abi: Option<pabi_abi::AbiVersion>,
}

/// The application's side of host calls, played from the command line;
/// shared by `pabi run`, `pabi pipe` and `pabi serve`.
#[derive(clap::Args, Debug, Clone)]
pub struct HostCallArgs {
    /// Play the application's side of host calls from a host-call table
    /// (JSON: spec/schemas/host-calls.schema.json): each name it lists is
    /// offered, with canned replies or failures.
    #[arg(long, value_name = "FILE")]
    host_calls: Option<PathBuf>,
    /// Serve the host call NAME by running COMMAND (split like shell
    /// words) with the request on standard input: its standard output is
    /// the reply; a non-zero exit is a handler failure with its standard
    /// error as the message. It runs in a process group of its own, ended
    /// at the call's deadline or when it writes more than the reply cap
    /// (E_LIMIT) or 64 KiB to standard error (E_FAILED). Repeatable.
    #[arg(long = "host-call-command", value_name = "NAME=COMMAND", value_parser = parse_env)]
    host_call_commands: Vec<(String, String)>,
}

impl HostCallArgs {
    /// The host functions of `--host-calls` and `--host-call-command`,
    /// recording each call in `transcript`.
    pub fn host_functions(
        &self,
        transcript: &HostCallLog,
        reenter: Option<Reenter>,
    ) -> anyhow::Result<Vec<HostFunction>> {
        let mut functions = Vec::new();
        if let Some(path) = &self.host_calls {
            let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
            let table = HostCallTable::parse(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
            functions.extend(pabi_host::testing::table_functions_reentering(&table, transcript, reenter));
        }
        if !self.host_call_commands.is_empty() {
            // So that a kill of this process (`SIGKILL`) ends the commands
            // too; without it, only that case is left uncovered.
            if let Err(error) = pabi_host::command_reaper::start_command_reaper_from_current_exe() {
                tracing::warn!("cannot start the reaper of host-call commands: {error}");
            }
        }
        for (name, command) in &self.host_call_commands {
            let words = shlex::split(command)
                .filter(|w| !w.is_empty())
                .with_context(|| format!("--host-call-command {name}: `{command}` is not a command"))?;
            let (program, args) = words.split_first().expect("a command has a first word");
            functions.push(transcript.recording(HostFunction::command(name, program, args)));
        }
        Ok(functions)
    }
}

impl HostArgs {
    /// The host these flags describe: limits, grants, cache, ABI version
    /// and the host functions of `--host-calls` and `--host-call-command`,
    /// which record each call in `transcript`; `reenter` serves a
    /// host-call table's `reenter` answers. `tune` adds what one command
    /// alone sets. `pabi run` and `pabi pipe` both start their host here,
    /// so a shared flag means the same in both.
    pub fn host(
        &self,
        transcript: &HostCallLog,
        reenter: Option<Reenter>,
        tune: impl FnOnce(ConfigBuilder) -> ConfigBuilder,
    ) -> anyhow::Result<Host> {
        let mut config = Config::builder()
            .fuel(self.fuel)
            .allow_clock(self.allow_clock)
            .allow_random(self.allow_random)
            .cache_dir(if self.no_cache { None } else { self.cache_dir.clone().or_else(default_cache_dir) });
        if let Some(timeout) = self.timeout.or(self.timeout_ms.map(Duration::from_millis)) {
            config = config.timeout(timeout);
        }
        if let Some(max) = self.max_memory {
            config = config.max_memory(max);
        }
        if let Some(max) = self.max_output {
            config = config.max_output(max);
        }
        for (name, value) in &self.envs {
            config = config.allow_env(name, value);
        }
        for grant in &self.dirs {
            config = config.allow_dir(grant.clone());
        }
        for function in self.host_calls.host_functions(transcript, reenter)? {
            config = config.host_function(function);
        }
        if let Some(abi) = self.abi {
            config = config.abi_version(abi);
        }
        if self.max_request.is_some() || self.max_reply.is_some() {
            let defaults = pabi_abi::Limits::default();
            config = config.max_host_call_bytes(
                self.max_request.unwrap_or(defaults.max_request),
                self.max_reply.unwrap_or(defaults.max_reply),
            );
        }
        Host::new(tune(config).build()).context("cannot start the reference host")
    }
}

/// The user cache folder of compiled plugins, shared by `pabi run` and
/// `pabi conform`.
pub(crate) fn default_cache_dir() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cache")))?;
    Some(base.join("pabi"))
}

/// A duration with its unit, as a serve settings file writes it: `100ms`,
/// `2s`, `1m 30s`. A number alone is refused: `--timeout 100` could mean
/// either unit.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("`{text}` has no unit: write {text}ms or {text}s"));
    }
    humantime::parse_duration(text).map_err(|e| format!("`{text}` is not a duration such as 100ms or 2s: {e}"))
}

/// `64MiB`, `1GiB`, `16MB`, `512KiB`, `100k`, or plain bytes.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let value: u64 = number.parse().map_err(|_| format!("`{text}` is not a size such as 64MiB or 1048576"))?;
    let factor: u64 = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kib" => 1 << 10,
        "kb" => 1000,
        "m" | "mib" => 1 << 20,
        "mb" => 1_000_000,
        "g" | "gib" => 1 << 30,
        "gb" => 1_000_000_000,
        _ => return Err(format!("`{text}`: the unit must be B, KiB, MiB or GiB (or KB, MB, GB)")),
    };
    value.checked_mul(factor).ok_or_else(|| format!("`{text}` is too large"))
}

/// A host-call cap: a size of at most 2^31 - 1 bytes, what `host_call`'s
/// `i32` result can count (`LIM-14`). A larger one is a usage error, not
/// lowered to the maximum, so that a run never has a cap other than the one
/// asked for (the adapter protocol's exit 2).
fn parse_host_call_cap(text: &str) -> Result<u64, String> {
    const MAX: u64 = i32::MAX as u64;
    let cap = parse_size(text)?;
    if cap > MAX {
        return Err(format!("`{text}` is {cap} bytes; a host-call cap is at most {MAX} bytes (LIM-14)"));
    }
    Ok(cap)
}

fn parse_env(text: &str) -> Result<(String, String), String> {
    let (name, value) = text.split_once('=').ok_or_else(|| format!("`{text}` is not NAME=VALUE"))?;
    if name.is_empty() {
        return Err(format!("`{text}`: the name is empty"));
    }
    Ok((name.to_string(), value.to_string()))
}

/// Hex digits to bytes, for `--input-hex` and friends.
pub fn parse_hex(text: &str) -> anyhow::Result<Vec<u8>> {
    match pabi_testkit::hex::decode_hex(text) {
        Some(bytes) => Ok(bytes),
        None => bail!("`{text}` is not hex: give pairs of hex digits with no separators"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_durations_parse() {
        assert_eq!(parse_size("64MiB"), Ok(64 << 20));
        assert_eq!(parse_size("16MB"), Ok(16_000_000));
        assert_eq!(parse_size("4096"), Ok(4096));
        assert!(parse_size("12 parsecs").is_err());
        assert!(parse_size("99999999999999GiB").is_err());
        assert_eq!(parse_duration("100ms"), Ok(Duration::from_millis(100)));
        assert_eq!(parse_duration("2s"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_duration("1m 30s"), Ok(Duration::from_secs(90)));
        assert!(parse_duration("250").unwrap_err().contains("no unit"), "a number alone is ambiguous");
        assert!(parse_duration("soon").is_err());
        assert_eq!(parse_env("A=b=c"), Ok(("A".into(), "b=c".into())));
        assert!(parse_env("novalue").is_err());
    }
}
