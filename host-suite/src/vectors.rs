//! The shared test vectors: each run through the adapter on every
//! language's build of its plugin, judged, and required to give the same
//! lines in every language.

use std::path::{Path, PathBuf};

use pabi_testkit::adapter::{AdapterCall, AdapterGrants, AdapterLimits, Invocation, ResultLine};
use pabi_testkit::vectors::{Bytes, Vector, VectorFile};

use crate::adapter::invoke_with;
use crate::error::SuiteError;
use crate::judge::{clip, judge_vector};
use crate::report::VectorSummary;
use crate::run::scratch_error;

/// Runs one shared test vector through the adapter and returns its result
/// lines, one per step. `scratch` is a folder for inputs too large for one
/// argument.
pub fn run_vector(
    adapter: &[String],
    vector: &Vector,
    plugin: &Path,
    scratch: &Path,
) -> Result<Vec<ResultLine>, SuiteError> {
    let subject = || format!("vector `{}`", vector.name);
    let bytes = |b: &Bytes| b.resolve().map_err(|e| SuiteError::Input { subject: subject(), reason: e.to_string() });
    let calls = vector
        .steps()
        .map(|step| Ok(AdapterCall { function: step.function.clone(), input: bytes(&step.input)?, input_file: None }))
        .collect::<Result<Vec<_>, SuiteError>>()?;
    let config = vector.config.as_ref().map(bytes).transpose()?;
    let host_calls = match &vector.host_calls {
        Some(table) => {
            let path = scratch
                .join(format!("{}.host-calls.json", vector.name.replace(|c: char| !c.is_ascii_alphanumeric(), "-")));
            std::fs::write(&path, table.to_json()).map_err(|source| scratch_error("a host-call table", source))?;
            Some(path)
        }
        None => None,
    };
    let invocation = Invocation {
        plugin: plugin.to_path_buf(),
        calls,
        config,
        limits: AdapterLimits::default(),
        grants: AdapterGrants::default(),
        host_calls,
        abi: None,
    };
    let args = invocation
        .args(&mut pabi_testkit::adapter::spill_into(scratch, &vector.name))
        .map_err(|e| SuiteError::Input { subject: subject(), reason: e.to_string() })?;
    invoke_with(adapter, args)
}

/// Runs every vector file of `vectors` against each language's build of its
/// plugin, `plugins/<language>/<plugin>.wasm`, and requires the languages to
/// give identical lines. Returns a summary per file and the failures.
pub fn run_vector_files(
    adapter: &[String],
    vectors: &Path,
    plugins: &Path,
    scratch: &Path,
) -> anyhow::Result<(Vec<VectorSummary>, Vec<String>)> {
    use anyhow::Context;
    let list = |dir: &Path, keep: &dyn Fn(&Path) -> bool| -> anyhow::Result<Vec<PathBuf>> {
        let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
            .with_context(|| format!("cannot read {}", dir.display()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| keep(p))
            .collect();
        paths.sort();
        Ok(paths)
    };
    let files = list(vectors, &|p| p.extension().is_some_and(|e| e == "json"))?;
    let languages = list(plugins, &|p| p.is_dir()).context("the plugins folder (run ci/build-plugins)")?;
    let (mut summaries, mut failures) = (Vec::new(), Vec::new());
    for file in &files {
        let bytes = std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))?;
        let vectors = VectorFile::parse(&bytes).with_context(|| format!("{} is not a vector file", file.display()))?;
        let builds: Vec<(String, PathBuf)> = languages
            .iter()
            .map(|dir| {
                let language = dir.file_name().unwrap_or_default().to_string_lossy().into_owned();
                (language, dir.join(format!("{}.wasm", vectors.plugin)))
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
            let mut first: Option<(&str, Vec<ResultLine>)> = None;
            for (language, path) in &builds {
                total += 1;
                let label = format!("{}/{} `{}`", language, vectors.plugin, vector.name);
                let lines = match run_vector(adapter, vector, path, scratch) {
                    Ok(lines) => lines,
                    Err(reason) => {
                        failures.push(format!("{label}: {reason}"));
                        continue;
                    }
                };
                if let Err(reason) = judge_vector(vector, &lines) {
                    failures.push(format!("{label}: {reason}"));
                    continue;
                }
                if let Some((reference, expected)) = first.as_ref().filter(|(_, expected)| *expected != lines) {
                    failures.push(format!(
                        "{label}: differs from {reference}: {} vs {}",
                        shown(&lines),
                        shown(expected)
                    ));
                    continue;
                }
                passed += 1;
                if first.is_none() {
                    first = Some((language, lines));
                }
            }
        }
        summaries.push(VectorSummary {
            plugin: vectors.plugin.clone(),
            languages: builds.into_iter().map(|(l, _)| l).collect(),
            passed,
            total,
        });
    }
    Ok((summaries, failures))
}

/// A step's lines, for a reason: as JSON, cut short.
fn shown(lines: &[ResultLine]) -> String {
    let lines: Vec<String> = lines.iter().map(ResultLine::to_json).collect();
    clip(&format!("[{}]", lines.join(",")), 240)
}
