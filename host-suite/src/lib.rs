//! The host conformance suite: cases in `fixtures/host-conformance/`, run
//! against any host through the adapter protocol of `spec/host-guide.md`.
//!
//! An adapter is a command. For each case the runner invokes
//! `ADAPTER PLUGIN.wasm FUNCTION [--input-hex HEX] [--then FUNCTION:HEX]...
//! [--config-hex HEX] [--timeout-ms N] [--max-memory BYTES]
//! [--max-output BYTES] [--fuel N] --format json` and reads one JSON line per
//! call.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use pabi_abi::vectors::{decode_hex, encode_hex, Expect, Vector};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A case file.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Case {
    #[serde(skip)]
    pub name: String,
    pub description: String,
    pub clauses: Vec<String>,
    /// A `.wat` file beside the case.
    pub plugin: String,
    #[serde(default)]
    pub config_hex: Option<String>,
    #[serde(default)]
    pub limits: Limits,
    pub calls: Vec<Call>,
    pub expect: Vec<Value>,
    /// A clause whose limit a host may lack: it may answer NOT_SUPPORTED.
    #[serde(default)]
    pub not_supported_allowed: Option<String>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    pub timeout_ms: Option<u64>,
    pub max_memory: Option<u64>,
    pub max_output: Option<u64>,
    pub fuel: Option<u64>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Call {
    pub function: String,
    pub input_hex: String,
}

/// The verdict on one case.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "verdict")]
pub enum Verdict {
    Pass,
    Fail {
        reason: String,
    },
    /// The host said it cannot enforce the limit of this clause.
    NotSupported {
        clause: String,
    },
}

#[derive(Clone, Debug, Serialize)]
pub struct CaseResult {
    pub case: String,
    pub clauses: Vec<String>,
    #[serde(flatten)]
    pub verdict: Verdict,
    pub millis: u64,
}

/// Reads every case of a folder, sorted by name.
pub fn load_cases(dir: &Path) -> anyhow::Result<Vec<Case>> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    paths.sort();
    paths
        .into_iter()
        .map(|path| {
            let mut case: Case = serde_json::from_slice(&std::fs::read(&path)?)
                .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
            case.name = path.file_stem().unwrap_or_default().to_string_lossy().into_owned();
            anyhow::ensure!(
                case.calls.len() == case.expect.len(),
                "{}: calls and expect differ in length",
                path.display()
            );
            anyhow::ensure!(!case.calls.is_empty(), "{}: no calls", path.display());
            Ok(case)
        })
        .collect()
}

/// The adapter's command line for a case, after the adapter's own words.
pub fn adapter_args(case: &Case, plugin: &Path) -> Vec<String> {
    let mut args = vec![plugin.display().to_string(), case.calls[0].function.clone()];
    args.extend(["--input-hex".to_string(), case.calls[0].input_hex.clone()]);
    for call in &case.calls[1..] {
        args.extend(["--then".to_string(), format!("{}:{}", call.function, call.input_hex)]);
    }
    if let Some(config) = &case.config_hex {
        args.extend(["--config-hex".to_string(), config.clone()]);
    }
    let limits = [
        ("--timeout-ms", case.limits.timeout_ms),
        ("--max-memory", case.limits.max_memory),
        ("--max-output", case.limits.max_output),
        ("--fuel", case.limits.fuel),
    ];
    for (flag, value) in limits {
        if let Some(value) = value {
            args.extend([flag.to_string(), value.to_string()]);
        }
    }
    args.extend(["--format".to_string(), "json".to_string()]);
    args
}

/// Runs one case through the adapter (`adapter` is split on whitespace).
pub fn run_case(adapter: &[String], case: &Case, plugin: &Path) -> CaseResult {
    let started = Instant::now();
    let verdict = match invoke(adapter, case, plugin) {
        Ok(lines) => judge(case, &lines),
        Err(reason) => Verdict::Fail { reason },
    };
    CaseResult {
        case: case.name.clone(),
        clauses: case.clauses.clone(),
        verdict,
        millis: started.elapsed().as_millis() as u64,
    }
}

/// The longest an adapter may take for one case.
const CASE_DEADLINE: Duration = Duration::from_secs(60);

fn invoke(adapter: &[String], case: &Case, plugin: &Path) -> Result<Vec<Value>, String> {
    invoke_with(adapter, adapter_args(case, plugin))
}

/// Runs the adapter with `args` and reads its result lines.
fn invoke_with(adapter: &[String], args: Vec<String>) -> Result<Vec<Value>, String> {
    let (program, words) = adapter.split_first().ok_or("the adapter command is empty")?;
    let mut child = Command::new(program)
        .args(words)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start the adapter `{program}`: {e}"))?;
    // Drain both pipes while waiting: a large result would fill a pipe and
    // block the adapter.
    let drain = |pipe: Option<Box<dyn std::io::Read + Send>>| {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            if let Some(mut pipe) = pipe {
                let _ = pipe.read_to_end(&mut bytes);
            }
            bytes
        })
    };
    let stdout = drain(child.stdout.take().map(|p| Box::new(p) as Box<dyn std::io::Read + Send>));
    let stderr = drain(child.stderr.take().map(|p| Box::new(p) as Box<dyn std::io::Read + Send>));
    let started = Instant::now();
    let status = loop {
        match child.try_wait().map_err(|e| e.to_string())? {
            Some(status) => break status,
            None if started.elapsed() > CASE_DEADLINE => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("the adapter ran longer than {CASE_DEADLINE:?}"));
            }
            None => std::thread::sleep(Duration::from_millis(2)),
        }
    };
    let stdout = stdout.join().unwrap_or_default();
    let stderr = stderr.join().unwrap_or_default();
    if status.code() != Some(0) {
        return Err(format!(
            "the adapter exited with {:?}: {}",
            status.code(),
            String::from_utf8_lossy(&stderr).trim()
        ));
    }
    String::from_utf8_lossy(&stdout)
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).map_err(|e| format!("the adapter printed a line that is not JSON ({e}): {l}")))
        .collect()
}

/// Byte strings longer than this go to the adapter as files.
const MAX_HEX_INPUT: usize = 16 << 10;

/// Runs one shared test vector through the adapter and returns its result
/// lines, one per step. `scratch` is a folder for large inputs.
pub fn run_vector(adapter: &[String], vector: &Vector, plugin: &Path, scratch: &Path) -> Result<Vec<Value>, String> {
    let steps: Vec<_> = vector.steps().collect();
    let (first, rest) = steps.split_first().ok_or_else(|| format!("vector `{}` has no steps", vector.name))?;
    let bytes = |b: &pabi_abi::vectors::Bytes| b.resolve().map_err(|e| format!("vector `{}`: {e}", vector.name));
    // Large byte strings travel as files (`--input FILE`, `--config FILE`,
    // `--then F:@FILE`), since one argument is limited to 128 KiB on Linux.
    let mut files = 0;
    let mut spill = |data: &[u8]| -> Result<Option<String>, String> {
        if data.len() <= MAX_HEX_INPUT {
            return Ok(None);
        }
        files += 1;
        let name = vector.name.replace(|c: char| !c.is_ascii_alphanumeric(), "_");
        let path = scratch.join(format!("{name}.{files}.bin"));
        std::fs::write(&path, data).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        Ok(Some(path.display().to_string()))
    };
    let mut args = vec![plugin.display().to_string(), first.function.clone()];
    let input = bytes(&first.input)?;
    match spill(&input)? {
        Some(path) => args.extend(["--input".to_string(), path]),
        None => args.extend(["--input-hex".to_string(), encode_hex(&input)]),
    }
    for step in rest {
        let input = bytes(&step.input)?;
        let value = match spill(&input)? {
            Some(path) => format!("@{path}"),
            None => encode_hex(&input),
        };
        args.extend(["--then".to_string(), format!("{}:{value}", step.function)]);
    }
    if let Some(config) = &vector.config {
        let config = bytes(config)?;
        match spill(&config)? {
            Some(path) => args.extend(["--config".to_string(), path]),
            None => args.extend(["--config-hex".to_string(), encode_hex(&config)]),
        }
    }
    args.extend(["--format".to_string(), "json".to_string()]);
    invoke_with(adapter, args)
}

/// Whether the result lines meet every step's expectation.
pub fn judge_vector(vector: &Vector, lines: &[Value]) -> Result<(), String> {
    for (i, step) in vector.steps().enumerate() {
        let got = lines.get(i).ok_or_else(|| format!("step {} ({}) printed no result line", i + 1, step.function))?;
        let ok = match &step.expect {
            Expect::Output(expected) => {
                got["ok"] == true
                    && got["output_hex"].as_str().and_then(decode_hex).is_some_and(|out| expected.matches(&out))
            }
            Expect::Status(status) => got["kind"] == "PLUGIN_ERROR" && got["status"] == *status,
        };
        if !ok {
            let shown = got.to_string();
            let shown = if shown.len() > 300 { format!("{}…", &shown[..300]) } else { shown };
            return Err(format!("step {} ({}): expected {:?}, got {shown}", i + 1, step.function, step.expect));
        }
    }
    Ok(())
}

/// Compares the adapter's lines with the expectations. A failed load gives
/// one line, which answers every call.
pub fn judge(case: &Case, lines: &[Value]) -> Verdict {
    if let Some(first) = lines.first() {
        if first["kind"] == "NOT_SUPPORTED" {
            let clause = first["clause"].as_str().unwrap_or_default().to_string();
            return match &case.not_supported_allowed {
                Some(allowed) if *allowed == clause => Verdict::NotSupported { clause },
                _ => Verdict::Fail {
                    reason: format!("the host answered NOT_SUPPORTED ({clause}) for a limit it must enforce"),
                },
            };
        }
    }
    for (i, expected) in case.expect.iter().enumerate() {
        let Some(got) = lines.get(i).or_else(|| (lines.len() == 1 && lines[0]["ok"] == false).then(|| &lines[0]))
        else {
            return Verdict::Fail {
                reason: format!("call {} ({}) printed no result line", i + 1, case.calls[i].function),
            };
        };
        if let Err(reason) = matches(expected, got) {
            return Verdict::Fail {
                reason: format!("call {} ({}): {reason}; got {got}", i + 1, case.calls[i].function),
            };
        }
    }
    Verdict::Pass
}

/// Every field of `expected` must be equal in `got`, except
/// `message_contains`, a list of substrings of `got.message`.
fn matches(expected: &Value, got: &Value) -> Result<(), String> {
    let Value::Object(fields) = expected else { return Err("a malformed expectation".into()) };
    for (key, want) in fields {
        if key == "message_contains" {
            let message = got["message"].as_str().unwrap_or_default();
            for needle in want.as_array().into_iter().flatten().filter_map(Value::as_str) {
                if !message.contains(needle) {
                    return Err(format!("the message does not name `{needle}`"));
                }
            }
        } else if got.get(key) != Some(want) {
            return Err(format!("expected {key} = {want}"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn case(expect: Vec<Value>, allowed: Option<&str>) -> Case {
        Case {
            name: "t".into(),
            description: String::new(),
            clauses: vec!["LIM-4".into()],
            plugin: "io.wat".into(),
            config_hex: None,
            limits: Limits { fuel: Some(5), ..Limits::default() },
            calls: expect.iter().map(|_| Call { function: "f".into(), input_hex: "00".into() }).collect(),
            expect,
            not_supported_allowed: allowed.map(String::from),
        }
    }

    #[test]
    fn judges_fields_messages_and_not_supported() {
        let c =
            case(vec![json!({"ok": false, "kind": "PLUGIN_ERROR", "status": 1, "message_contains": ["bad"]})], None);
        assert_eq!(
            judge(&c, &[json!({"ok": false, "kind": "PLUGIN_ERROR", "status": 1, "message": "bad input"})]),
            Verdict::Pass
        );
        assert!(matches!(
            judge(&c, &[json!({"ok": false, "kind": "PLUGIN_ERROR", "status": 2, "message": "bad"})]),
            Verdict::Fail { .. }
        ));
        assert!(matches!(
            judge(&c, &[json!({"ok": false, "kind": "PLUGIN_ERROR", "status": 1, "message": "oops"})]),
            Verdict::Fail { .. }
        ));
        assert!(matches!(judge(&c, &[]), Verdict::Fail { .. }));
        let unsupported = json!({"ok": false, "kind": "NOT_SUPPORTED", "clause": "LIM-4"});
        assert!(matches!(judge(&c, std::slice::from_ref(&unsupported)), Verdict::Fail { .. }));
        let c = case(vec![json!({"ok": true})], Some("LIM-4"));
        assert_eq!(judge(&c, &[unsupported]), Verdict::NotSupported { clause: "LIM-4".into() });
    }

    #[test]
    fn a_failed_load_answers_every_call() {
        let c = case(vec![json!({"ok": false, "kind": "TRAP"}), json!({"ok": false, "kind": "TRAP"})], None);
        assert_eq!(judge(&c, &[json!({"ok": false, "kind": "TRAP"})]), Verdict::Pass);
    }

    #[test]
    fn args_follow_the_protocol() {
        let c = case(vec![json!({"ok": true}), json!({"ok": true})], None);
        let args = adapter_args(&c, Path::new("p.wasm"));
        assert_eq!(args[..4], ["p.wasm", "f", "--input-hex", "00"]);
        assert!(args.windows(2).any(|w| w == ["--then", "f:00"]));
        assert!(args.windows(2).any(|w| w == ["--fuel", "5"]));
        assert_eq!(args[args.len() - 2..], ["--format", "json"]);
    }
}
