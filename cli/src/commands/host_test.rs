use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use pabi_abi::vectors::VectorFile;
use pabi_conform::host_suite::{self, CaseResult, Verdict};
use serde_json::{json, Value};

use crate::{exit, outln};

/// Run the host conformance suite against a host's adapter command, and
/// the shared test vectors against every built example plugin.
#[derive(clap::Args, Debug)]
#[command(after_help = host_test_help())]
pub struct Opts {
    /// The host's adapter command; split on whitespace.
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
        let adapter: Vec<String> = self.adapter.split_whitespace().map(String::from).collect();
        if adapter.is_empty() {
            bail!("--adapter is empty");
        }
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
        let vector_failures = match (&self.vectors, &self.plugins) {
            (Some(vectors), Some(plugins)) => self.run_vectors(&adapter, vectors, plugins, scratch.path())?,
            _ => Vec::new(),
        };
        let failed = results.iter().filter(|r| matches!(r.verdict, Verdict::Fail { .. })).count();
        let unsupported = results.iter().filter(|r| matches!(r.verdict, Verdict::NotSupported { .. })).count();
        match self.format {
            Format::Human => {
                outln!(
                    "\n{} cases: {} passed, {failed} failed, {unsupported} not supported by this host",
                    results.len(),
                    results.len() - failed - unsupported
                );
                if self.vectors.is_some() {
                    outln!("vectors: {} failures", vector_failures.len());
                }
            }
            Format::Json => {
                let report = json!({"schema": "pabi-host-test/1", "adapter": self.adapter, "cases": results, "vector_failures": vector_failures});
                outln!("{report:#}");
            }
        }
        Ok(if failed == 0 && vector_failures.is_empty() { exit::OK } else { exit::FAILURE })
    }

    /// Runs every vector file against every language's build of its plugin;
    /// returns the failures.
    fn run_vectors(
        &self,
        adapter: &[String],
        vectors: &Path,
        plugins: &Path,
        scratch: &Path,
    ) -> anyhow::Result<Vec<String>> {
        let mut files: Vec<PathBuf> = std::fs::read_dir(vectors)
            .with_context(|| format!("cannot read {}", vectors.display()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|e| e == "json"))
            .collect();
        files.sort();
        let mut languages: Vec<PathBuf> = std::fs::read_dir(plugins)
            .with_context(|| format!("cannot read {} (run ci/build-plugins)", plugins.display()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.is_dir())
            .collect();
        languages.sort();
        let mut failures = Vec::new();
        for file in &files {
            let bytes = std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))?;
            let vectors =
                VectorFile::parse(&bytes).with_context(|| format!("{} is not a vector file", file.display()))?;
            let builds: Vec<(String, PathBuf)> = languages
                .iter()
                .map(|dir| {
                    (
                        dir.file_name().unwrap_or_default().to_string_lossy().into_owned(),
                        dir.join(format!("{}.wasm", vectors.plugin)),
                    )
                })
                .filter(|(_, path)| path.is_file())
                .collect();
            if builds.is_empty() {
                failures.push(format!(
                    "{}: no build of plugin `{}` under {}",
                    file.display(),
                    vectors.plugin,
                    plugins.display()
                ));
                continue;
            }
            let (mut passed, mut total) = (0, 0);
            for vector in &vectors.vectors {
                let mut first: Option<(&str, Vec<Value>)> = None;
                for (language, path) in &builds {
                    total += 1;
                    let label = format!("{}/{} `{}`", language, vectors.plugin, vector.name);
                    let lines = match host_suite::run_vector(adapter, vector, path, scratch) {
                        Ok(lines) => lines,
                        Err(reason) => {
                            failures.push(format!("{label}: {reason}"));
                            continue;
                        }
                    };
                    if let Err(reason) = host_suite::judge_vector(vector, &lines) {
                        failures.push(format!("{label}: {reason}"));
                        continue;
                    }
                    let differs = first.as_ref().filter(|(_, expected)| *expected != lines);
                    if let Some((reference, expected)) = differs {
                        failures.push(format!(
                            "{label}: differs from {reference}: {} vs {}",
                            short(&Value::from(lines.clone())),
                            short(&Value::from(expected.clone()))
                        ));
                        continue;
                    }
                    passed += 1;
                    if first.is_none() {
                        first = Some((language, lines));
                    }
                }
            }
            if self.format == Format::Human {
                let names: Vec<&str> = builds.iter().map(|(l, _)| l.as_str()).collect();
                outln!("vectors {}: {passed}/{total} passed over {}", vectors.plugin, names.join(", "));
            }
        }
        if self.format == Format::Human {
            for failure in &failures {
                outln!("FAIL vector {failure}");
            }
        }
        Ok(failures)
    }
}

fn short(value: &Value) -> String {
    let text = value.to_string();
    if text.len() > 240 {
        format!("{}…", &text[..240])
    } else {
        text
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
    let clauses = result.clauses.join(" ");
    match &result.verdict {
        Verdict::Pass => outln!("pass  {} [{clauses}]", result.case),
        Verdict::NotSupported { clause } => {
            outln!("n/s   {} [{clauses}]: not supported by this host ({clause})", result.case)
        }
        Verdict::Fail { reason } => outln!("FAIL  {} [{clauses}]: {reason}", result.case),
    }
}
