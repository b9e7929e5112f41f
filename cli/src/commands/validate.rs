use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use pabi_validator::render::{self, FileReport};
use pabi_validator::{Options, Rule, Severity};

use super::{read_input, Format};

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
  2  usage or I/O error")]
pub struct Opts {
    /// Plugin files, or folders to search for `.wasm` files.
    #[arg(required = true, value_name = "PATH")]
    paths: Vec<PathBuf>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Human)]
    format: Format,
    /// Treat warnings as errors.
    #[arg(long)]
    deny_warnings: bool,
    /// Drop findings of a warning rule, by clause ID (repeatable).
    #[arg(long, value_name = "RULE")]
    allow: Vec<String>,
}

impl Opts {
    pub fn run(self) -> anyhow::Result<u8> {
        let options = Options { allow: parse_allowed(&self.allow)? };
        let files = expand_paths(&self.paths)?;
        let mut loaded = Vec::with_capacity(files.len());
        for path in &files {
            let wasm = read_input(path)?;
            loaded.push((path.display().to_string(), pabi_validator::validate_with(&wasm, &options)));
        }
        let reports: Vec<FileReport<'_>> = loaded.iter().map(|(path, report)| FileReport { path, report }).collect();
        let all_valid = reports.iter().all(|f| f.valid(self.deny_warnings));
        match self.format {
            Format::Human => {
                for file in &reports {
                    print!("{}", render::human(file, self.deny_warnings));
                }
            }
            Format::Json => println!("{}", render::json(&reports, self.deny_warnings)),
            Format::Sarif => println!("{:#}", render::sarif(&reports, env!("CARGO_PKG_VERSION"))),
        }
        Ok(if all_valid { 0 } else { 1 })
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

fn walk(dir: &Path, files: &mut Vec<PathBuf>) -> anyhow::Result<()> {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .with_context(|| format!("failed to read folder `{}`", dir.display()))?
        .collect::<Result<_, _>>()
        .with_context(|| format!("failed to read folder `{}`", dir.display()))?;
    entries.sort_by_key(|e| e.path());
    for entry in entries {
        let path = entry.path();
        if path.is_dir() {
            walk(&path, files)?;
        } else if path.extension().is_some_and(|e| e == "wasm") {
            files.push(path);
        }
    }
    Ok(())
}
