//! Host settings shared by `pabi run` and `pabi pipe`.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context};
use pabi_host::{Config, DirGrant, Host};

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
}

impl HostArgs {
    pub fn config(&self) -> Config {
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
        config.build()
    }

    pub fn host(&self) -> anyhow::Result<Host> {
        Host::new(self.config()).context("cannot start the reference host")
    }
}

fn default_cache_dir() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cache")))?;
    Some(base.join("pabi"))
}

/// `100ms`, `2s`, `1.5s`, `1m`, or plain milliseconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let value: f64 = number.parse().map_err(|_| format!("`{text}` is not a duration such as 100ms or 2s"))?;
    let seconds = match unit {
        "ms" | "" => value / 1000.0,
        "s" => value,
        "m" => value * 60.0,
        "us" | "µs" => value / 1e6,
        _ => return Err(format!("`{text}`: the unit must be us, ms, s or m")),
    };
    Duration::try_from_secs_f64(seconds).map_err(|e| format!("`{text}`: {e}"))
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

fn parse_env(text: &str) -> Result<(String, String), String> {
    let (name, value) = text.split_once('=').ok_or_else(|| format!("`{text}` is not NAME=VALUE"))?;
    if name.is_empty() {
        return Err(format!("`{text}`: the name is empty"));
    }
    Ok((name.to_string(), value.to_string()))
}

/// Hex digits to bytes, for `--input-hex` and friends.
pub fn parse_hex(text: &str) -> anyhow::Result<Vec<u8>> {
    match pabi_abi::vectors::decode_hex(text) {
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
        assert_eq!(parse_duration("250"), Ok(Duration::from_millis(250)));
        assert!(parse_duration("soon").is_err());
        assert_eq!(parse_env("A=b=c"), Ok(("A".into(), "b=c".into())));
        assert!(parse_env("novalue").is_err());
    }
}
