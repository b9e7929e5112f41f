//! The conformance checks: which there are, the clauses each verifies, and
//! the dispatch from a check to its body, one file per check named as its
//! variant.

mod caps;
mod determinism;
mod explore;
mod host_calls;
mod init_config;
mod input_read;
pub(crate) mod no_leak;
mod reinstantiate;
mod shutdown;
mod state;
// `static` is a keyword; the raw name keeps the file named as its variant.
mod r#static;
mod status;
mod vectors;

use std::fmt;
use std::str::FromStr;

use pabi_abi::{Clause, Metadata};

use crate::harness::Run;
use crate::report::CheckOutcome;
use crate::TestHost;
use r#static::static_check;

/// A conformance check. [`Check::ALL`] is also the order `pabi conform`
/// runs them in; a new check is a new variant, and the compiler finds every
/// place that must know it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Check {
    Static,
    Status,
    Explore,
    Caps,
    Determinism,
    NoLeak,
    InitConfig,
    Shutdown,
    Reinstantiate,
    State,
    InputRead,
    HostCalls,
    Vectors,
}

impl Check {
    /// Every check, in run order.
    pub const ALL: [Check; 13] = [
        Check::Static,
        Check::Status,
        Check::Explore,
        Check::Caps,
        Check::Determinism,
        Check::NoLeak,
        Check::InitConfig,
        Check::Shutdown,
        Check::Reinstantiate,
        Check::State,
        Check::InputRead,
        Check::HostCalls,
        Check::Vectors,
    ];

    /// The stable ID, as `--check` takes it and the reports print it.
    pub fn id(self) -> &'static str {
        match self {
            Check::Static => "static",
            Check::Status => "status",
            Check::Explore => "explore",
            Check::Caps => "caps",
            Check::Determinism => "determinism",
            Check::NoLeak => "no-leak",
            Check::InitConfig => "init-config",
            Check::Shutdown => "shutdown",
            Check::Reinstantiate => "reinstantiate",
            Check::State => "state",
            Check::InputRead => "input-read",
            Check::HostCalls => "host-calls",
            Check::Vectors => "vectors",
        }
    }

    /// The clauses the check verifies.
    pub fn clauses(self) -> &'static [Clause] {
        use Clause::*;
        match self {
            Check::Static => &[Host1],
            // The property of `status`, on other inputs.
            Check::Status | Check::Explore => &[Fn2, Fn6, Err1, Err2, Err4],
            Check::Caps => &[Fn4, Fn8, Lim5, Lim6],
            Check::Determinism => &[Fn5],
            Check::NoLeak => &[Fn7],
            Check::InitConfig => &[Life1, Life2, Life3],
            Check::Shutdown => &[Life4],
            Check::Reinstantiate => &[Life5, Life6],
            Check::State => &[Life9],
            Check::InputRead => &[Fn1, Host3, Host4, Mem5],
            Check::HostCalls => &[Fn5, Fn6, Call1, Call3, Call4, Call5],
            Check::Vectors => &[Fn3],
        }
    }

    /// One line on what the check verifies.
    pub fn summary(self) -> &'static str {
        match self {
            Check::Static => "the plugin passes the static validator (pabi validate)",
            Check::Status => {
                "every call returns a defined status and never traps, for inputs shaped by the declared media type \
                 and at the boundary sizes"
            }
            Check::Explore => {
                "as status, on inputs mutated from a corpus toward code not reached yet (coverage-guided, on an \
                 instrumented copy; failures confirmed on the plugin); reports the blocks reached"
            }
            Check::Caps => "output and error message stay within the caps; messages are UTF-8",
            Check::Determinism => {
                "a function declared deterministic gives the same result on fresh instances and after other calls"
            }
            Check::NoLeak => "10,000 calls after a warm-up grow memory by at most max(1 MiB, 25%)",
            Check::InitConfig => "init with arbitrary config bytes gives a defined status and never traps",
            Check::Shutdown => "pabi_shutdown returns a defined status and never traps",
            Check::Reinstantiate => "after an aborted call, the next call runs on a fresh, working instance",
            Check::State => "state save -> load -> save round-trips to the same bytes",
            Check::InputRead => "the host serves input_read at any chunking and offset (host side, WAT fixture)",
            Check::HostCalls => {
                "with replies of every size up to the reply cap and past it, failures with messages up to their cap, \
                 absent optional calls and slow replies, per call and held across calls (the application down), \
                 every call returns a defined status, never traps and calls only declared names; a deterministic \
                 function repeats for the same replies, and recovers when the application does"
            }
            Check::Vectors => "the plugin's own test vectors (PLUGIN.vectors.json or --vectors) all pass",
        }
    }

    /// The check with this ID.
    pub fn from_id(id: &str) -> Option<Check> {
        Check::ALL.into_iter().find(|c| c.id() == id)
    }
}

impl fmt::Display for Check {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.id())
    }
}

/// A `--check` value that names no check.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not a check; the checks are: {list}", list = Check::ALL.map(Check::id).join(", "))]
pub struct UnknownCheck(pub String);

impl FromStr for Check {
    type Err = UnknownCheck;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Check::from_id(s).ok_or_else(|| UnknownCheck(s.to_string()))
    }
}

impl serde::Serialize for Check {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.id())
    }
}

impl<H: TestHost + Sync> Run<'_, H> {
    /// Runs one check. Only the static check runs without metadata.
    pub(crate) fn check(
        &mut self,
        check: Check,
        report: &pabi_validator::Report,
        meta: Option<&Metadata>,
    ) -> CheckOutcome {
        let Some(meta) = meta.filter(|_| check != Check::Static) else { return static_check(report) };
        let functions: Vec<String> = meta.functions.iter().map(|f| f.name.clone()).collect();
        match check {
            Check::Static => static_check(report),
            Check::Status => self.for_each_function(&functions, |run, f| run.status(f)),
            Check::Explore => self.explore(&functions),
            Check::Caps => self.for_each_function(&functions, |run, f| run.caps(f)),
            Check::Determinism => self.determinism(meta),
            Check::NoLeak => self.for_each_function(&functions, |run, f| run.no_leak(f)),
            Check::InitConfig => self.init_config(),
            Check::Shutdown => self.shutdown(&functions[0]),
            Check::Reinstantiate => self.reinstantiate(meta),
            Check::State => self.state(&functions),
            Check::HostCalls => self.host_calls(meta),
            Check::InputRead => self.input_read(),
            Check::Vectors => self.vectors(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_unique_and_parse_back() {
        let mut ids: Vec<_> = Check::ALL.iter().map(|c| c.id()).collect();
        for check in Check::ALL {
            assert_eq!(check.id().parse::<Check>(), Ok(check));
            assert!(!check.clauses().is_empty(), "{check} cites no clause");
        }
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), Check::ALL.len());
        let error = "nope".parse::<Check>().unwrap_err().to_string();
        assert!(error.contains("no-leak") && error.contains("static"), "{error}");
    }
}
