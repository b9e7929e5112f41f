//! Running one case: the invocation its file asks for, the scratch inputs
//! and granted folders it needs, one run of the adapter, and the verdict.

use std::path::{Path, PathBuf};
use std::time::Instant;

use pabi_testkit::adapter::{AdapterCall, AdapterDir, AdapterGrants, Invocation, ResultLine};
use pabi_testkit::hex::decode_hex;

use crate::adapter::invoke_with;
use crate::case::{Case, DirMode};
use crate::error::SuiteError;
use crate::judge::{judge, judge_folders};
use crate::report::{CaseResult, Verdict};

/// What the adapter is asked to do for a case.
pub fn invocation(case: &Case, plugin: &Path) -> Result<Invocation, SuiteError> {
    let hex = |text: &str, what: &str| {
        decode_hex(text).ok_or_else(|| SuiteError::Input {
            subject: format!("case `{}`", case.name),
            reason: format!("{what} is not hex"),
        })
    };
    let calls = case
        .calls
        .iter()
        .map(|call| {
            Ok(AdapterCall {
                function: call.function.clone(),
                input: hex(&call.input_hex, "an input")?,
                input_file: None,
            })
        })
        .collect::<Result<_, SuiteError>>()?;
    let config = case.config_hex.as_deref().map(|c| hex(c, "config_hex")).transpose()?;
    let mut grants = AdapterGrants::default();
    grants.clock = case.grants.clock;
    grants.random = case.grants.random;
    grants.env = case.grants.env.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    Ok(Invocation {
        plugin: plugin.to_path_buf(),
        calls,
        config,
        limits: case.limits.clone(),
        grants,
        host_calls: None,
        abi: case.abi,
    })
}

/// Makes each granted folder of a case under `scratch`, holding its
/// `files`, and adds it to the invocation.
fn make_dirs(case: &Case, scratch: &Path, invocation: &mut Invocation) -> Result<Vec<PathBuf>, SuiteError> {
    let mut folders = Vec::new();
    for (index, dir) in case.grants.dirs.iter().enumerate() {
        let folder = scratch.join(format!("dir-{index}"));
        std::fs::create_dir(&folder).map_err(|source| scratch_error("a scratch folder", source))?;
        for (name, text) in &dir.files {
            std::fs::write(folder.join(name), text).map_err(|source| scratch_error(name, source))?;
        }
        invocation.grants.dirs.push(AdapterDir {
            host: folder.clone(),
            guest: dir.guest.clone(),
            read_only: dir.mode == DirMode::Ro,
        });
        folders.push(folder);
    }
    Ok(folders)
}

/// Runs one case through the adapter (`adapter` is the command's words).
pub fn run_case(adapter: &[String], case: &Case, plugin: &Path) -> CaseResult {
    let started = Instant::now();
    let verdict = match invoke(adapter, case, plugin) {
        Ok((lines, folders)) => match judge(case, &lines) {
            Verdict::Pass => judge_folders(case, &folders.paths),
            other => other,
        },
        Err(error) => Verdict::Fail { reason: error.to_string() },
    };
    CaseResult {
        case: case.name.clone(),
        clauses: case.clauses.clone(),
        verdict,
        millis: started.elapsed().as_millis() as u64,
    }
}

/// The folders a case granted, kept until the verdict has read them.
struct Folders {
    _root: tempfile::TempDir,
    paths: Vec<PathBuf>,
}

fn invoke(adapter: &[String], case: &Case, plugin: &Path) -> Result<(Vec<ResultLine>, Folders), SuiteError> {
    let mut invocation = invocation(case, plugin)?;
    // Inputs given by length become sparse files: no disk, no memory, and
    // an adapter that reads them instead of checking their length first
    // fails the case by running out of its deadline or memory.
    let scratch = tempfile::tempdir().map_err(|source| scratch_error("a scratch folder", source))?;
    for (index, (call, spec)) in invocation.calls.iter_mut().zip(&case.calls).enumerate() {
        if let Some(len) = spec.input_file_len {
            let path = scratch.path().join(format!("input-{index}.bin"));
            std::fs::File::create(&path)
                .and_then(|file| file.set_len(len))
                .map_err(|source| scratch_error(&format!("a {len}-byte sparse input"), source))?;
            call.input_file = Some(path);
        }
    }
    // The granted folders outlive the scratch folder of the inputs, so
    // that the verdict can read them after the adapter exits.
    let dirs = tempfile::tempdir().map_err(|source| scratch_error("a scratch folder", source))?;
    let folders = make_dirs(case, dirs.path(), &mut invocation)?;
    if let Some(table) = &case.host_calls {
        let path = dirs.path().join("host-calls.json");
        std::fs::write(&path, table.to_json()).map_err(|source| scratch_error("the host-call table", source))?;
        invocation.host_calls = Some(path);
    }
    let args = invocation
        .args(&mut |_| Err(std::io::Error::other("case inputs are small enough to pass as hex")))
        .map_err(|e| SuiteError::Input { subject: format!("case `{}`", case.name), reason: e.to_string() })?;
    let lines = invoke_with(adapter, args)?;
    Ok((lines, Folders { _root: dirs, paths: folders }))
}

pub(crate) fn scratch_error(what: &str, source: std::io::Error) -> SuiteError {
    SuiteError::Scratch { what: what.to_string(), source }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::case::tests::case;

    #[test]
    fn grants_become_flags_and_folders_are_judged() {
        let mut c = case(vec![json!({"ok": true})], None);
        c.grants = serde_json::from_value(json!({
            "clock": true,
            "env": {"A": "x=y"},
            "dirs": [{"guest": "/data", "mode": "ro", "files": {"a.txt": "hi"}, "files_after": {"a.txt": "hi"}}]
        }))
        .unwrap();
        let scratch = tempfile::tempdir().unwrap();
        let mut invocation = invocation(&c, Path::new("p.wasm")).unwrap();
        let folders = make_dirs(&c, scratch.path(), &mut invocation).unwrap();
        let args = invocation.args(&mut |_| unreachable!()).unwrap();
        let dir = format!("{}:/data:ro", folders[0].display());
        let tail: Vec<&str> = args.iter().map(String::as_str).skip_while(|a| *a != "--allow-clock").collect();
        assert_eq!(tail, ["--allow-clock", "--env", "A=x=y", "--dir", dir.as_str(), "--format", "json"]);
        let folders = Folders { _root: scratch, paths: folders };
        assert_eq!(judge_folders(&c, &folders.paths), Verdict::Pass);
        // A file the plugin should not have been able to write fails the case.
        std::fs::write(folders.paths[0].join("new.txt"), "abc").unwrap();
        assert!(matches!(judge_folders(&c, &folders.paths), Verdict::Fail { .. }));
    }

    #[test]
    fn args_follow_the_protocol() {
        let c = case(vec![json!({"ok": true}), json!({"ok": true})], None);
        let args = invocation(&c, Path::new("p.wasm")).unwrap().args(&mut |_| unreachable!()).unwrap();
        assert_eq!(args[..4], ["p.wasm", "f", "--input-hex", "00"]);
        assert!(args.windows(2).any(|w| w == ["--then", "f:00"]));
        assert!(args.windows(2).any(|w| w == ["--fuel", "5"]));
        assert_eq!(args[args.len() - 2..], ["--format", "json"]);
    }
}
