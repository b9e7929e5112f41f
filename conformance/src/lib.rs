//! Conformance of pabi plugins: does a plugin honour the ABI under arbitrary
//! inputs, repeated calls, re-instantiation and state moves?
//!
//! Each check has a stable ID and cites the spec clauses it verifies
//! ([`Check`]). Inputs are generated with proptest from a seed, so a failure
//! comes with a shrunk minimal input and a one-line reproducer, and the whole
//! run can be replayed with the same seed.
//!
//! ```no_run
//! let wasm = std::fs::read("plugin.wasm").unwrap();
//! let host = pabi_conform::ReferenceHost::new().unwrap();
//! let options = pabi_conform::Options::default();
//! let report = pabi_conform::conform(&host, "plugin.wasm", &wasm, &options, &mut |_| {});
//! assert!(report.conformant, "{}", pabi_conform::report::human(&report));
//! ```

mod checks;
pub mod coverage;
mod harness;
mod host;
pub mod inputs;
mod reference;
pub mod report;
pub mod reproducer;

use pabi_testkit::vectors::VectorFile;

pub use checks::no_leak::{leak_bound, LEAK_CALLS};
pub use checks::{Check, UnknownCheck};
use harness::Run;
pub use host::{AnsweredCall, Application, HostFailure, HostResult, Offer, PluginUnderTest, ScriptedAnswer, TestHost};
pub use reference::{ReferenceHost, ReferencePlugin, Scratch, SCRATCH_QUOTA_BYTES, SCRATCH_QUOTA_ENTRIES};
use report::PluginReport;

/// Options of a run. `#[non_exhaustive]`: start from
/// [`Options::default`] and set the fields.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Options {
    /// Generated cases per function for the status and caps checks, and
    /// calls per function for the explore check; the
    /// costlier checks use a tenth of it (at least 16).
    pub cases: u32,
    pub seed: u64,
    pub vectors: Option<VectorFile>,
    /// Run only this check.
    pub only: Option<Check>,
    /// The folder for reproducer files: a failing input, configuration or
    /// host-call table too long to show in a report
    /// ([`reproducer::INLINE_BYTES`], [`reproducer::INLINE_TABLE_BYTES`])
    /// is written there, and the report names the file. `None` (the
    /// default): a fresh temporary folder, made only when a file is
    /// written, and kept.
    pub report_dir: Option<std::path::PathBuf>,
    /// The largest input generated, in bytes ([`inputs::MAX_INPUT`] by
    /// default): the input cap the plugin is meant to run under. The
    /// boundary sizes ([`inputs::boundary_sizes`]) go up to it. A plugin
    /// that makes host calls gets at most
    /// [`inputs::MAX_INPUT_WITH_HOST_CALLS`].
    pub max_input: usize,
    /// The corpus folder of the `explore` check: the inputs in
    /// `<corpus>/<plugin>/<function>/` are its first seeds, and the inputs
    /// that reach new blocks are added there. `None`: no corpus is kept.
    pub corpus: Option<std::path::PathBuf>,
    /// The `explore` check fails when it reaches less than this percentage
    /// of the plugin's blocks.
    pub min_coverage: Option<f64>,
    /// Whether the `explore` check is guided by coverage (the default);
    /// `false` runs generated inputs only, the baseline guidance is
    /// measured against.
    pub guided: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            cases: 256,
            seed: 0x9ab1,
            vectors: None,
            only: None,
            report_dir: None,
            corpus: None,
            min_coverage: None,
            guided: true,
            max_input: inputs::MAX_INPUT,
        }
    }
}

impl Options {
    /// These options with reproducer files written to `dir`
    /// ([`Options::report_dir`]).
    pub fn with_report_dir(mut self, dir: impl Into<std::path::PathBuf>) -> Self {
        self.report_dir = Some(dir.into());
        self
    }
}

/// Progress events, for a progress bar.
#[derive(Clone, Copy, Debug)]
pub enum Progress {
    Started { check: Check },
}

/// Runs every check on one plugin, in the order of [`Check::ALL`].
pub fn conform<H: TestHost + Sync>(
    host: &H,
    path: &str,
    wasm: &[u8],
    options: &Options,
    progress: &mut dyn FnMut(Progress),
) -> PluginReport {
    let report = pabi_validator::validate(wasm);
    let mut run = Run::new(host, path, wasm, options, report.metadata.as_ref());
    // Dynamic checks need a plugin that passes the static one.
    let meta = report.metadata.clone().filter(|_| !report.has_errors());
    if meta.is_some() {
        host.precompile(wasm);
    }
    let explores = meta.is_some() && options.only.is_none_or(|only| only == Check::Explore);
    std::thread::scope(|scope| {
        // The instrumented copy is made and compiled (a load fills the
        // host's module cache) while the checks before `explore` run: for
        // a large plugin that takes seconds, and those checks often leave
        // a core idle.
        if explores {
            let (send, receive) = std::sync::mpsc::channel();
            scope.spawn(move || {
                let map = coverage::instrument(wasm).map(std::sync::Arc::new);
                if let Ok(map) = &map {
                    let _ = host.load(&map.wasm, b"");
                }
                let _ = send.send(map);
            });
            run.instrumented = Some(std::sync::Mutex::new(receive));
        }
        for check in Check::ALL {
            if options.only.is_some_and(|only| only != check) {
                continue;
            }
            if check != Check::Static && meta.is_none() {
                break;
            }
            run.record(check, progress, |run| run.check(check, &report, meta.as_ref()));
        }
    });
    run.finish()
}
