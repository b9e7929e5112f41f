use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use pabi_validator::render::{self, FileReport};
use pabi_validator::{Options, Rule, Severity};

use super::host_args::parse_size;
use super::{default_max_module_bytes, read_plugin_or_fail};
use crate::{exit, out, outln};

/// Check plugin binaries against the pabi ABI without running them.
///
/// Every finding cites the spec clause it breaks, e.g. `error[IMP-3]`.
#[derive(clap::Args, Debug)]
#[command(after_help = "\
Examples:
  pabi validate plugin.wasm
  pabi validate target/plugins/            # every .wasm below the folder
  pabi validate --format sarif plugins/ > pabi.sarif
  pabi validate --deny-warnings --allow MOD-7 go-plugin.wasm

Exit codes:
  0  every plugin is valid
  1  a plugin has errors (or warnings, under --deny-warnings)
  2  usage or I/O error, or a file larger than --max-module-size, which is
     not read (MODULE_LIMIT)")]
pub struct Opts {
    /// Plugin files, or folders to search for `.wasm` files.
    #[arg(required = true, value_name = "PATH")]
    paths: Vec<PathBuf>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = ValidateFormat::Human)]
    format: ValidateFormat,
    /// Treat warnings as errors.
    #[arg(long)]
    deny_warnings: bool,
    /// Drop findings of a warning rule, by clause ID (repeatable).
    #[arg(long, value_name = "RULE")]
    allow: Vec<String>,
    /// The largest module to read, e.g. `64MiB` [default: 32MiB, the
    /// spec's compile budget (LIM-12)]. A larger file is not read: exit 2,
    /// MODULE_LIMIT.
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    max_module_size: Option<u64>,
}

/// The output formats of `pabi validate`.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ValidateFormat {
    /// rustc-style diagnostics.
    Human,
    /// The report of spec/schemas/validate-report.schema.json.
    Json,
    /// SARIF 2.1.0, for code scanning.
    Sarif,
}

impl Opts {
    pub fn run(self) -> anyhow::Result<u8> {
        let options = Options { allow: parse_allowed(&self.allow)?, ..Options::default() };
        let files = expand_paths(&self.paths)?;
        let max = self.max_module_size.unwrap_or_else(default_max_module_bytes);
        let mut loaded = Vec::with_capacity(files.len());
        for path in &files {
            let wasm = read_plugin_or_fail(path, max, " (--max-module-size raises the cap)")?;
            loaded.push((path.display().to_string(), pabi_validator::validate_with(&wasm, &options)));
        }
        let reports: Vec<FileReport<'_>> = loaded.iter().map(|(path, report)| FileReport { path, report }).collect();
        let all_valid = reports.iter().all(|f| f.valid(self.deny_warnings));
        match self.format {
            ValidateFormat::Human => {
                for file in &reports {
                    out!("{}", render::human(file, self.deny_warnings));
                }
            }
            ValidateFormat::Json => outln!("{}", render::json(&reports, self.deny_warnings)),
            ValidateFormat::Sarif => outln!("{:#}", render::sarif(&reports, env!("CARGO_PKG_VERSION"))),
        }
        Ok(if all_valid { exit::OK } else { exit::FAILURE })
    }
}

fn parse_allowed(ids: &[String]) -> anyhow::Result<Vec<Rule>> {
    ids.iter()
        .map(|id| {
            let rule = Rule::from_id(id).with_context(|| format!("`{id}` is not a rule ID"))?;
            if rule.severity() == Severity::Error {
                bail!("`{id}` is an error rule; only warnings can be allowed");
            }
            Ok(rule)
        })
        .collect()
}

/// Files as given; folders replaced by the `.wasm` files below them, sorted.
fn expand_paths(paths: &[PathBuf]) -> anyhow::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for path in paths {
        if path.is_dir() {
            let before = files.len();
            walk(path, &mut files)?;
            if files.len() == before {
                bail!("no `.wasm` files found in `{}`", path.display());
            }
        } else {
            files.push(path.clone());
        }
    }
    Ok(files)
}

/// The `.wasm` files below `dir`, following symlinks (plugin folders are
/// often links into build trees). A link back to one of its own parents
/// would recurse forever; walkdir notices it, and it is skipped with a
/// warning.
fn walk(dir: &Path, files: &mut Vec<PathBuf>) -> anyhow::Result<()> {
    for entry in walkdir::WalkDir::new(dir).follow_links(true).sort_by_file_name() {
        let entry = match entry {
            Ok(entry) => entry,
            Err(err) if err.loop_ancestor().is_some() => {
                let at = err.path().map_or_else(|| dir.display().to_string(), |p| p.display().to_string());
                eprintln!("warning: skipping `{at}`: a symlink back to one of its parent folders");
                continue;
            }
            Err(err) => {
                let at = err.path().unwrap_or(dir).display().to_string();
                return Err(err).with_context(|| format!("failed to read folder `{at}`"));
            }
        };
        if entry.file_type().is_file() && entry.path().extension().is_some_and(|e| e == "wasm") {
            files.push(entry.into_path());
        }
    }
    Ok(())
}
