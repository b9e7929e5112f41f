//! What a host allows and how hard it limits plugins.

use std::path::PathBuf;
use std::time::Duration;

pub use pabi_abi::Limits;

/// The host's configuration: limits, what WASI plugins may be granted, and
/// engine options. `Config::default()` is the spec's defaults with nothing
/// granted (`WASI-5`, `LIM-9`).
#[derive(Clone, Debug)]
pub struct Config {
    pub limits: Limits,
    pub allow: Allow,
    /// Traps tolerated in `crash_window` before the plugin is disabled (`LIFE-9`).
    pub crash_limit: u32,
    pub crash_window: Duration,
    /// Instantiate from wasmtime's pooling allocator.
    pub pooling: bool,
    /// Where precompiled modules are kept between processes; `None` keeps
    /// the cache in memory only.
    pub cache_dir: Option<PathBuf>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            limits: Limits::default(),
            allow: Allow::default(),
            crash_limit: 5,
            crash_window: Duration::from_secs(60),
            pooling: true,
            cache_dir: None,
        }
    }
}

/// The WASI capabilities this host is willing to grant. A plugin gets the
/// intersection of these and what it declares (`WASI-5`).
#[derive(Clone, Debug, Default)]
pub struct Allow {
    /// The real clocks and real sleeps (`clock`).
    pub clock: bool,
    /// Host entropy (`random`).
    pub random: bool,
    /// Environment variables the plugin may read (`env:NAME`), with values.
    pub env: Vec<(String, String)>,
    /// Directories (`fs:/guest:ro|rw`).
    pub dirs: Vec<DirGrant>,
}

/// A host directory offered at a guest path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DirGrant {
    pub host: PathBuf,
    pub guest: String,
    pub read_only: bool,
}

impl DirGrant {
    /// Parses `HOST:GUEST[:ro]`, as `pabi run --dir` takes it.
    pub fn parse(text: &str) -> Result<DirGrant, String> {
        let (rest, read_only) = match text.strip_suffix(":ro") {
            Some(rest) => (rest, true),
            None => (text.strip_suffix(":rw").unwrap_or(text), false),
        };
        let (host, guest) = rest.split_once(':').ok_or_else(|| format!("`{text}` is not HOST:GUEST[:ro]"))?;
        if host.is_empty() || !guest.starts_with('/') {
            return Err(format!("`{text}`: give a host directory and an absolute guest path, as HOST:/GUEST[:ro]"));
        }
        Ok(DirGrant { host: PathBuf::from(host), guest: guest.to_string(), read_only })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dir_grants_parse() {
        let ro = DirGrant::parse("data:/data:ro").unwrap();
        assert_eq!((ro.host, ro.guest.as_str(), ro.read_only), (PathBuf::from("data"), "/data", true));
        assert!(!DirGrant::parse("./x:/y").unwrap().read_only);
        assert!(DirGrant::parse("nocolon").is_err());
        assert!(DirGrant::parse("a:relative").is_err());
    }
}
