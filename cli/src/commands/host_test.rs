use std::path::{Path, PathBuf};

use anyhow::Context;
use pabi_host_suite::{self as host_suite, CaseResult, Report, Verdict};

use crate::{exit, outln};

/// Run the host conformance suite against a host's adapter command, and
/// the shared test vectors against every built example plugin.
#[derive(clap::Args, Debug)]
#[command(after_help = host_test_help())]
pub struct Opts {
    /// The host's adapter command, split into words as a shell does (quote
    /// a path with spaces).
    #[arg(long, value_name = "CMD")]
    adapter: String,
    /// The folder of case files.
    #[arg(long, value_name = "DIR", default_value = "fixtures/host-conformance")]
    cases: PathBuf,
    /// Also run the shared test vectors in DIR (one file per plugin) …
    #[arg(long, value_name = "DIR", requires = "plugins")]
    vectors: Option<PathBuf>,
    /// … against PLUGINS/<language>/<plugin>.wasm, and require byte-identical
    /// results across languages.
    #[arg(long, value_name = "PLUGINS")]
    plugins: Option<PathBuf>,
    /// Run only the cases whose name contains this.
    #[arg(long, value_name = "TEXT")]
    only: Option<String>,
    #[arg(long, value_enum, default_value_t = Format::Human)]
    format: Format,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum Format {
    Human,
    Json,
}

const fn host_test_help() -> &'static str {
    "\
The adapter protocol is in spec/host-guide.md: the runner invokes
`CMD PLUGIN.wasm FUNCTION --input-hex HEX [--then F:HEX]... [--config-hex HEX]
[--timeout-ms N] [--max-memory B] [--max-output B] [--fuel N] --format json`
and reads one JSON result line per call.

Examples:
  pabi host-test --adapter 'pabi run'
  pabi host-test --adapter 'node hosts/node/bin/pabi-node.js' --only status
  pabi host-test --adapter 'pabi run' --vectors fixtures/vectors --plugins target/plugins

Exit codes:
  0  every case passed (or is not supported where the case allows it) and
     every vector passed, identically in every language
  1  a case or a vector failed
  2  usage or I/O error"
}

impl Opts {
    pub fn run(self) -> anyhow::Result<u8> {
        let adapter = host_suite::adapter_words(&self.adapter)?;
        let scratch = tempfile::tempdir().context("cannot create a scratch folder")?;
        let mut cases = host_suite::load_cases(&self.cases)?;
        if let Some(only) = &self.only {
            cases.retain(|c| c.name.contains(only.as_str()));
        }
        let mut results = Vec::new();
        for case in &cases {
            let plugin = compiled_plugin(&self.cases, &case.plugin, scratch.path())?;
            let result = host_suite::run_case(&adapter, case, &plugin);
            if self.format == Format::Human {
                print_case(&result);
            }
            results.push(result);
        }
        let (vectors, vector_failures) = match (&self.vectors, &self.plugins) {
            (Some(vectors), Some(plugins)) => host_suite::run_vector_files(&adapter, vectors, plugins, scratch.path())?,
            _ => (Vec::new(), Vec::new()),
        };
        let report = Report::new(self.adapter.clone(), results, vectors, vector_failures);
        match self.format {
            Format::Human => {
                for summary in &report.vectors {
                    outln!(
                        "vectors {}: {}/{} passed over {}",
                        summary.plugin,
                        summary.passed,
                        summary.total,
                        summary.languages.join(", ")
                    );
                }
                for failure in &report.vector_failures {
                    outln!("FAIL vector {failure}");
                }
                let (failed, unsupported) = (report.failed_cases(), report.unsupported_cases());
                outln!(
                    "\n{} cases: {} passed, {failed} failed, {unsupported} not supported by this host",
                    report.cases.len(),
                    report.cases.len() - failed - unsupported
                );
                if self.vectors.is_some() {
                    outln!("vectors: {} failures", report.vector_failures.len());
                }
            }
            Format::Json => outln!("{:#}", serde_json::to_value(&report)?),
        }
        Ok(if report.passed() { exit::OK } else { exit::FAILURE })
    }
}

/// The case's plugin as a `.wasm` file: `.wat` sources are compiled into
/// `scratch` once.
fn compiled_plugin(cases: &Path, plugin: &str, scratch: &Path) -> anyhow::Result<PathBuf> {
    let source = cases.join(plugin);
    if source.extension().is_none_or(|e| e != "wat") {
        return Ok(source);
    }
    let target = scratch.join(plugin).with_extension("wasm");
    if !target.exists() {
        let wasm = wat::parse_file(&source).with_context(|| format!("cannot compile {}", source.display()))?;
        std::fs::write(&target, wasm).with_context(|| format!("cannot write {}", target.display()))?;
    }
    Ok(target)
}

fn print_case(result: &CaseResult) {
    let clauses = result.clauses.iter().map(|c| c.id()).collect::<Vec<_>>().join(" ");
    match &result.verdict {
        Verdict::Pass => outln!("pass  {} [{clauses}]", result.case),
        Verdict::NotSupported { clause } => {
            outln!("n/s   {} [{clauses}]: not supported by this host ({clause})", result.case)
        }
        Verdict::Fail { reason } => outln!("FAIL  {} [{clauses}]: {reason}", result.case),
    }
}
