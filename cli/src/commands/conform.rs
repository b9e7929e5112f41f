use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use anyhow::Context;
use pabi_conform::report::{self, PluginReport};
use pabi_conform::{Check, Options, Progress, ReferenceHost};
use pabi_testkit::vectors::VectorFile;

use super::{default_max_module_bytes, read_input, read_plugin_or_fail};
use crate::{exit, out, outln};

/// Run the conformance suite on plugins: the static validator, then
/// property-based dynamic checks under the reference host, each citing the
/// spec clauses it verifies.
#[derive(clap::Args, Debug)]
#[command(after_help = conform_help())]
pub struct Opts {
    /// Plugin files.
    #[arg(required = true, value_name = "PLUGIN")]
    plugins: Vec<PathBuf>,
    /// Generated cases per function (the costlier checks use a tenth).
    #[arg(long, default_value_t = 256)]
    cases: u32,
    /// Seed of the generated inputs; a report prints it for replay.
    #[arg(long, default_value_t = 0x9ab1)]
    seed: u64,
    /// Test vectors of the plugin (fixtures/vectors format) [default:
    /// PLUGIN.vectors.json beside each plugin, when there is one].
    #[arg(long, value_name = "FILE")]
    vectors: Option<PathBuf>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = ConformFormat::Human)]
    format: ConformFormat,
    /// Run only this check (the list is below).
    #[arg(long, value_name = "CHECK")]
    only: Option<Check>,
    /// Folder for reproducer files: a failing input or host-call table
    /// longer than a report shows is written there, and the report names
    /// the file [default: a new temporary folder, made only when needed].
    #[arg(long, value_name = "DIR")]
    report_dir: Option<PathBuf>,
    /// The largest input generated, in bytes: the input cap the plugin
    /// will run under. Inputs at the boundary sizes (0, 1, around every
    /// power of two and 64 KiB) go up to it; a plugin that makes host
    /// calls gets at most 65,537 [at most 2,147,483,647, LIM-13].
    #[arg(long, value_name = "BYTES", default_value_t = pabi_conform::inputs::MAX_INPUT as u64,
          value_parser = clap::value_parser!(u64).range(0..=i32::MAX as u64))]
    max_input: u64,
    /// Keep compiled plugins (and their instrumented copies) here between
    /// runs [default: the user cache folder, as `pabi run`].
    #[arg(long, value_name = "DIR")]
    cache_dir: Option<PathBuf>,
    /// Compile every plugin again on each run; write no cache.
    #[arg(long, conflicts_with = "cache_dir")]
    no_cache: bool,
    /// Corpus folder of the explore check: the inputs in
    /// DIR/<plugin>/<function>/ seed it, and inputs that reach new code
    /// are added there; keep it between runs and each run explores further.
    #[arg(long, value_name = "DIR")]
    corpus: Option<PathBuf>,
    /// Fail (exit 1) when the explore check reaches less than PCT percent
    /// of a plugin's blocks.
    #[arg(long, value_name = "PCT", value_parser = percentage)]
    min_coverage: Option<f64>,
    /// Write the blocks the explore check reached and missed, per wasm
    /// function, as an lcov tracefile [default: DIR/coverage.lcov with
    /// --report-dir DIR, else none].
    #[arg(long, value_name = "FILE")]
    coverage_report: Option<PathBuf>,
}

/// A `--min-coverage` value: a number from 0 to 100.
fn percentage(text: &str) -> Result<f64, String> {
    match text.trim_end_matches('%').parse::<f64>() {
        Ok(pct) if (0.0..=100.0).contains(&pct) => Ok(pct),
        _ => Err(format!("`{text}` is not a percentage from 0 to 100")),
    }
}

/// The output formats of `pabi conform`.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConformFormat {
    Human,
    Json,
    Junit,
}

/// The help's list of checks comes from [`Check::ALL`], so it cannot miss one.
fn conform_help() -> String {
    let mut help = String::from("Checks, in run order (ID [clauses]):\n");
    for check in Check::ALL {
        let clauses: Vec<&str> = check.clauses().iter().map(|c| c.id()).collect();
        help += &format!("  {:<14} [{}] {}\n", check.id(), clauses.join(" "), check.summary());
    }
    help + "\n" + HELP_TAIL
}

const HELP_TAIL: &str = "\
Examples:
  pabi conform plugin.wasm                # and plugin.vectors.json, if present
  pabi conform --cases 1000 --vectors text-cases.json text.wasm
  pabi conform --format junit target/plugins/go/*.wasm > conform.xml
  pabi conform --seed 1234 --only status plugin.wasm   # replay a failure
  pabi conform --report-dir reproducers plugin.wasm    # long inputs there
  pabi conform --max-input 16777216 plugin.wasm        # inputs up to 16 MiB
  pabi conform --corpus corpus --min-coverage 60 --coverage-report cov.lcov plugin.wasm

Exit codes:
  0  every plugin is conformant
  1  a plugin is not conformant, or its explore check reached less than
     --min-coverage
  2  usage or I/O error, or a plugin larger than the spec's compile
     budget of 32 MiB, which is not read (MODULE_LIMIT)";

impl Opts {
    pub fn run(self) -> anyhow::Result<u8> {
        let given = self.vectors.as_deref().map(read_vectors).transpose()?;
        let mut options = Options::default();
        (options.cases, options.seed, options.only) = (self.cases, self.seed, self.only);
        options.report_dir = self.report_dir.clone();
        options.min_coverage = self.min_coverage;
        options.max_input =
            usize::try_from(self.max_input).context("--max-input is larger than this machine's memory")?;
        if let Some(corpus) = &self.corpus {
            std::fs::create_dir_all(corpus)
                .with_context(|| format!("cannot create the corpus folder `{}`", corpus.display()))?;
            options.corpus = Some(corpus.clone());
        }
        let lcov_path =
            self.coverage_report.clone().or_else(|| self.report_dir.as_ref().map(|d| d.join("coverage.lcov")));
        let cache_dir =
            if self.no_cache { None } else { self.cache_dir.clone().or_else(super::host_args::default_cache_dir) };
        let host = ReferenceHost::with_cache_dir(cache_dir)?;
        let tty = std::io::stderr().is_terminal() && self.format == ConformFormat::Human;
        let mut reports: Vec<PluginReport> = Vec::new();
        for path in &self.plugins {
            let wasm = read_plugin_or_fail(path, default_max_module_bytes(), "")?;
            options.vectors = match &given {
                Some(vectors) => Some(vectors.clone()),
                None => beside(path).map(|found| read_vectors(&found)).transpose()?,
            };
            let label = path.display().to_string();
            let bar = tty.then(|| progress_bar(&label));
            let report = pabi_conform::conform(&host, &label, &wasm, &options, &mut |event| {
                if let (Some(bar), Progress::Started { check }) = (&bar, event) {
                    bar.set_message(check.to_string());
                    bar.inc(1);
                }
            });
            if let Some(bar) = bar {
                bar.finish_and_clear();
            }
            if self.format == ConformFormat::Human {
                out!("{}", report::human(&report));
            }
            reports.push(report);
        }
        if let Some(path) = &lcov_path {
            write_lcov(path, &reports)?;
        }
        match self.format {
            ConformFormat::Human => {}
            ConformFormat::Json => outln!("{:#}", report::json(&reports)),
            ConformFormat::Junit => out!("{}", report::junit(&reports)),
        }
        Ok(if reports.iter().all(|r| r.conformant) { exit::OK } else { exit::FAILURE })
    }
}

/// The lcov tracefile of every plugin the explore check covered; none
/// when it ran on no plugin.
fn write_lcov(path: &Path, reports: &[PluginReport]) -> anyhow::Result<()> {
    let lcov: String = reports
        .iter()
        .flat_map(|r| {
            r.checks.iter().filter_map(|c| c.coverage.as_deref()).map(|c| pabi_conform::coverage::lcov(c, &r.path))
        })
        .collect();
    if lcov.is_empty() {
        return Ok(());
    }
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).with_context(|| format!("cannot create `{}`", parent.display()))?;
    }
    std::fs::write(path, lcov).with_context(|| format!("cannot write the coverage report `{}`", path.display()))
}

fn read_vectors(path: &Path) -> anyhow::Result<VectorFile> {
    VectorFile::parse(&read_input(path)?).with_context(|| format!("`{}` is not a vector file", path.display()))
}

/// `text.wasm` → `text.vectors.json` in the same folder, if it exists.
fn beside(plugin: &Path) -> Option<PathBuf> {
    let path = plugin.with_extension("vectors.json");
    path.is_file().then_some(path)
}

fn progress_bar(label: &str) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::new(Check::ALL.len() as u64);
    let style = indicatif::ProgressStyle::with_template("{prefix} [{bar:20}] {pos}/{len} {msg}")
        .expect("the template is valid")
        .progress_chars("=> ");
    bar.set_style(style);
    bar.set_prefix(label.to_string());
    bar
}
