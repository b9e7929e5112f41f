//! The host conformance suite: cases in `fixtures/host-conformance/`, run
//! against any host through the adapter protocol of `spec/host-guide.md`.
//!
//! An adapter is a command. For each case the runner invokes
//! `ADAPTER PLUGIN.wasm FUNCTION [--input-hex HEX] [--then FUNCTION:HEX]...
//! [--config-hex HEX] [--timeout-ms N] [--max-memory BYTES]
//! [--max-output BYTES] [--fuel N] --format json` (built by
//! [`pabi_abi::adapter::Invocation`]) and reads one JSON line per call. Every
//! line must follow the protocol: it is checked against
//! `spec/schemas/adapter-result.schema.json` and read as a
//! [`pabi_abi::adapter::ResultLine`] before the case is judged.
//!
//! This suite checks hosts; `pabi-conform` checks plugins. The two share
//! nothing but the ABI.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use std::collections::BTreeMap;

use pabi_abi::adapter::{
    AdapterCall, AdapterDir, AdapterGrants, AdapterLimits, Invocation, ResultLine, RESULT_LINE_SCHEMA,
};
use pabi_abi::vectors::{decode_hex, Expect, Vector};
use pabi_abi::Clause;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Version of the JSON report shape (`spec/schemas/host-test-report.schema.json`).
pub const REPORT_SCHEMA_VERSION: &str = "pabi-host-test/1";

/// A case file.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Case {
    #[serde(skip)]
    pub name: String,
    pub description: String,
    /// The clauses the case checks; an ID the spec does not define fails to load.
    pub clauses: Vec<Clause>,
    /// A `.wat` file beside the case.
    pub plugin: String,
    #[serde(default)]
    pub config_hex: Option<String>,
    #[serde(default)]
    pub limits: AdapterLimits,
    /// What the host's configuration allows (the adapter's grant flags).
    #[serde(default)]
    pub grants: CaseGrants,
    /// The application's side of host calls: a host-call table
    /// (`spec/schemas/host-calls.schema.json`), passed as `--host-calls`.
    #[serde(default)]
    pub host_calls: Option<Value>,
    /// The ABI version the host is to offer (`--abi`), for hosts that can
    /// offer an older one (`CALL-9`).
    #[serde(default)]
    pub abi: Option<pabi_abi::AbiVersion>,
    pub calls: Vec<Call>,
    pub expect: Vec<Value>,
    /// A clause whose limit a host may lack: it may answer NOT_SUPPORTED.
    #[serde(default)]
    pub not_supported_allowed: Option<Clause>,
}

/// A case's `grants`: the capabilities the host's configuration allows.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CaseGrants {
    #[serde(default)]
    pub clock: bool,
    #[serde(default)]
    pub random: bool,
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    #[serde(default)]
    pub dirs: Vec<CaseDir>,
}

/// A scratch folder the runner makes, fills with `files` and offers at
/// `guest`; after the run it must hold exactly `files_after`, when given.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CaseDir {
    pub guest: String,
    pub mode: DirMode,
    #[serde(default)]
    pub files: BTreeMap<String, String>,
    #[serde(default)]
    pub files_after: Option<BTreeMap<String, String>>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DirMode {
    Ro,
    Rw,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Call {
    pub function: String,
    pub input_hex: String,
    /// Instead of `input_hex`: an input of this many zero bytes, passed as
    /// a sparse file (`--input FILE`), for lengths no argument or memory
    /// could hold.
    #[serde(default)]
    pub input_file_len: Option<u64>,
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
        clause: Clause,
    },
}

#[derive(Clone, Debug, Serialize)]
pub struct CaseResult {
    pub case: String,
    pub clauses: Vec<Clause>,
    #[serde(flatten)]
    pub verdict: Verdict,
    pub millis: u64,
}

/// Splits an adapter command into words as a POSIX shell does, quotes and
/// backslashes included, without expanding anything: a path with spaces
/// is written in quotes (`node '/opt/my hosts/pabi-node.js'`).
pub fn adapter_words(command: &str) -> Result<Vec<String>, String> {
    let words =
        shlex::split(command).ok_or_else(|| format!("the adapter command `{command}` has an unclosed quote"))?;
    if words.is_empty() {
        return Err("the adapter command is empty".to_string());
    }
    Ok(words)
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
            if let Some(table) = &case.host_calls {
                pabi_abi::host_calls::HostCallTable::parse(&table.to_string())
                    .map_err(|e| anyhow::anyhow!("{}: host_calls: {e}", path.display()))?;
            }
            Ok(case)
        })
        .collect()
}

/// What the adapter is asked to do for a case.
pub fn invocation(case: &Case, plugin: &Path) -> Result<Invocation, String> {
    let hex =
        |text: &str, what: &str| decode_hex(text).ok_or_else(|| format!("case `{}`: {what} is not hex", case.name));
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
        .collect::<Result<_, String>>()?;
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
fn make_dirs(case: &Case, scratch: &Path, invocation: &mut Invocation) -> Result<Vec<PathBuf>, String> {
    let mut folders = Vec::new();
    for (index, dir) in case.grants.dirs.iter().enumerate() {
        let folder = scratch.join(format!("dir-{index}"));
        std::fs::create_dir(&folder).map_err(|e| format!("cannot make a scratch folder: {e}"))?;
        for (name, text) in &dir.files {
            std::fs::write(folder.join(name), text).map_err(|e| format!("cannot write {name}: {e}"))?;
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

/// What a granted folder holds after the run: file names and contents.
fn folder_files(folder: &Path) -> Result<BTreeMap<String, String>, String> {
    let mut files = BTreeMap::new();
    for entry in std::fs::read_dir(folder).map_err(|e| format!("cannot read {}: {e}", folder.display()))? {
        let entry = entry.map_err(|e| e.to_string())?;
        let text = std::fs::read(entry.path()).map_err(|e| e.to_string())?;
        files.insert(entry.file_name().to_string_lossy().into_owned(), String::from_utf8_lossy(&text).into_owned());
    }
    Ok(files)
}

/// Runs one case through the adapter (`adapter` is the command's words).
pub fn run_case(adapter: &[String], case: &Case, plugin: &Path) -> CaseResult {
    let started = Instant::now();
    let verdict = match invoke(adapter, case, plugin) {
        Ok((lines, folders)) => match judge(case, &lines) {
            Verdict::Pass => judge_folders(case, &folders),
            other => other,
        },
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

/// A passing case whose granted folders must end as `files_after` fails
/// when they do not: a read-only grant that let a file through, say.
fn judge_folders(case: &Case, folders: &Folders) -> Verdict {
    for (dir, folder) in case.grants.dirs.iter().zip(&folders.paths) {
        let Some(expected) = &dir.files_after else { continue };
        match folder_files(folder) {
            Ok(found) if &found == expected => {}
            Ok(found) => {
                return Verdict::Fail {
                    reason: format!("the folder granted at {} holds {found:?}, expected {expected:?}", dir.guest),
                }
            }
            Err(reason) => return Verdict::Fail { reason },
        }
    }
    Verdict::Pass
}

/// The folders a case granted, kept until the verdict has read them.
struct Folders {
    _root: tempfile::TempDir,
    paths: Vec<PathBuf>,
}

fn invoke(adapter: &[String], case: &Case, plugin: &Path) -> Result<(Vec<Value>, Folders), String> {
    let mut invocation = invocation(case, plugin)?;
    // Inputs given by length become sparse files: no disk, no memory, and
    // an adapter that reads them instead of checking their length first
    // fails the case by running out of its deadline or memory.
    let scratch = tempfile::tempdir().map_err(|e| format!("cannot make a scratch folder: {e}"))?;
    for (index, (call, spec)) in invocation.calls.iter_mut().zip(&case.calls).enumerate() {
        if let Some(len) = spec.input_file_len {
            let path = scratch.path().join(format!("input-{index}.bin"));
            std::fs::File::create(&path)
                .and_then(|file| file.set_len(len))
                .map_err(|e| format!("cannot write a {len}-byte sparse input: {e}"))?;
            call.input_file = Some(path);
        }
    }
    // The granted folders outlive the scratch folder of the inputs, so
    // that the verdict can read them after the adapter exits.
    let dirs = tempfile::tempdir().map_err(|e| format!("cannot make a scratch folder: {e}"))?;
    let folders = make_dirs(case, dirs.path(), &mut invocation)?;
    if let Some(table) = &case.host_calls {
        let path = dirs.path().join("host-calls.json");
        std::fs::write(&path, table.to_string()).map_err(|e| format!("cannot write the host-call table: {e}"))?;
        invocation.host_calls = Some(path);
    }
    let args = invocation
        .args(&mut |_| Err(std::io::Error::other("case inputs are small enough to pass as hex")))
        .map_err(|e| format!("case `{}`: {e}", case.name))?;
    let lines = invoke_with(adapter, args)?;
    Ok((lines, Folders { _root: dirs, paths: folders }))
}

/// The compiled schema of one result line.
fn line_schema() -> &'static jsonschema::Validator {
    static SCHEMA: OnceLock<jsonschema::Validator> = OnceLock::new();
    SCHEMA.get_or_init(|| {
        let schema: Value = serde_json::from_str(RESULT_LINE_SCHEMA).expect("the result-line schema is JSON");
        jsonschema::validator_for(&schema).expect("the result-line schema compiles")
    })
}

/// Reads one line the adapter printed: JSON, valid under the schema, and a
/// [`ResultLine`]. Anything else is a protocol violation of the host.
pub fn read_line(line: &str) -> Result<Value, String> {
    let value: Value =
        serde_json::from_str(line).map_err(|e| format!("the adapter printed a line that is not JSON ({e}): {line}"))?;
    if let Some(error) = line_schema().iter_errors(&value).next() {
        return Err(format!(
            "the adapter printed a line outside the protocol ({error} at {}): {line}",
            error.instance_path()
        ));
    }
    ResultLine::parse(line).map_err(|e| format!("the adapter printed a line outside the protocol: {e}"))?;
    Ok(value)
}

/// Runs the adapter with `args` and reads its result lines.
fn invoke_with(adapter: &[String], args: Vec<String>) -> Result<Vec<Value>, String> {
    invoke_within(adapter, args, CASE_DEADLINE)
}

/// As [`invoke_with`], with the deadline given.
fn invoke_within(adapter: &[String], args: Vec<String>, deadline: Duration) -> Result<Vec<Value>, String> {
    let (program, words) = adapter.split_first().ok_or("the adapter command is empty")?;
    let mut command = Command::new(program);
    command.args(words).args(&args).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    // A group of its own, so that an adapter past the deadline is killed
    // with every process it started, and none keeps the pipes open.
    #[cfg(unix)]
    std::os::unix::process::CommandExt::process_group(&mut command, 0);
    let mut child = command.spawn().map_err(|e| format!("cannot start the adapter `{program}`: {e}"))?;
    // Drain both pipes while waiting: a large result would fill a pipe and
    // block the adapter.
    let stdout = drain(child.stdout.take().map(|p| Box::new(p) as Box<dyn std::io::Read + Send>));
    let stderr = drain(child.stderr.take().map(|p| Box::new(p) as Box<dyn std::io::Read + Send>));
    let started = Instant::now();
    let status = loop {
        match child.try_wait().map_err(|e| e.to_string())? {
            Some(status) => break status,
            None if started.elapsed() > deadline => {
                kill_group(child.id());
                let _ = child.kill();
                let _ = child.wait();
                // What the adapter printed before it was killed is what
                // tells a hang in a call from one at exit, on a CI log.
                let (stdout, stderr) = (stdout.take().unwrap_or_default(), stderr.take().unwrap_or_default());
                return Err(format!(
                    "the adapter ran longer than {deadline:?} and was killed\n  command: {}\n  its standard output: {}\n  its standard error: {}",
                    shlex::try_join(adapter.iter().chain(&args).map(String::as_str))
                        .unwrap_or_else(|_| format!("{:?}", adapter.iter().chain(&args).collect::<Vec<_>>())),
                    shown(&stdout),
                    shown(&stderr),
                ));
            }
            None => std::thread::sleep(Duration::from_millis(2)),
        }
    };
    // A process the adapter started and left running would hold the pipes
    // open; the adapter has exited, so nothing of its group may still run.
    kill_group(child.id());
    let left_open = |pipe| format!("the adapter exited, but a process it started kept its standard {pipe} open");
    let stdout = stdout.take().ok_or_else(|| left_open("output"))?;
    let stderr = stderr.take().ok_or_else(|| left_open("error"))?;
    if status.code() != Some(0) {
        return Err(format!(
            "the adapter exited with {:?}: {}",
            status.code(),
            String::from_utf8_lossy(&stderr).trim()
        ));
    }
    String::from_utf8_lossy(&stdout).lines().filter(|l| !l.trim().is_empty()).map(read_line).collect()
}

/// The bytes of one of the adapter's pipes, read on a thread of its own.
struct Drain(std::sync::mpsc::Receiver<Vec<u8>>);

impl Drain {
    /// What the pipe gave until it closed, or None when it is still open
    /// after a few seconds: a process outside the adapter's group holds it,
    /// and the suite does not wait for that.
    fn take(self) -> Option<Vec<u8>> {
        self.0.recv_timeout(Duration::from_secs(5)).ok()
    }
}

fn drain(pipe: Option<Box<dyn std::io::Read + Send>>) -> Drain {
    let (send, receive) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut bytes = Vec::new();
        if let Some(mut pipe) = pipe {
            let _ = pipe.read_to_end(&mut bytes);
        }
        let _ = send.send(bytes);
    });
    Drain(receive)
}

/// Kills every process of the adapter's group (the adapter's pid is its
/// group's id); a group with none left is no error.
fn kill_group(pid: u32) {
    #[cfg(unix)]
    if let Some(pid) = rustix::process::Pid::from_raw(pid as i32) {
        let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
    }
    #[cfg(not(unix))]
    let _ = pid;
}

/// Bytes the adapter printed, for a failure message: text, its last 4 KiB.
fn shown(bytes: &[u8]) -> String {
    const TAIL: usize = 4096;
    if bytes.is_empty() {
        return "(nothing)".to_owned();
    }
    let text = String::from_utf8_lossy(bytes);
    let text = text.trim_end();
    if text.len() <= TAIL {
        return format!("\n{text}").replace('\n', "\n    ");
    }
    let mut cut = text.len() - TAIL;
    while !text.is_char_boundary(cut) {
        cut += 1;
    }
    format!("(the last {TAIL} bytes)\n{}", &text[cut..]).replace('\n', "\n    ")
}

/// Runs one shared test vector through the adapter and returns its result
/// lines, one per step. `scratch` is a folder for inputs too large for one
/// argument.
pub fn run_vector(adapter: &[String], vector: &Vector, plugin: &Path, scratch: &Path) -> Result<Vec<Value>, String> {
    let bytes = |b: &pabi_abi::vectors::Bytes| b.resolve().map_err(|e| format!("vector `{}`: {e}", vector.name));
    let calls = vector
        .steps()
        .map(|step| Ok(AdapterCall { function: step.function.clone(), input: bytes(&step.input)?, input_file: None }))
        .collect::<Result<Vec<_>, String>>()?;
    let config = vector.config.as_ref().map(bytes).transpose()?;
    let host_calls = match &vector.host_calls {
        Some(table) => {
            let path = scratch
                .join(format!("{}.host-calls.json", vector.name.replace(|c: char| !c.is_ascii_alphanumeric(), "-")));
            std::fs::write(&path, table.to_json()).map_err(|e| format!("cannot write a host-call table: {e}"))?;
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
        .args(&mut pabi_abi::adapter::spill_into(scratch, &vector.name))
        .map_err(|e| format!("vector `{}`: {e}", vector.name))?;
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
        // The requests the application received, from the line's
        // `host_calls`, against the step's `requests`.
        let made: Vec<(String, Vec<u8>)> = got["host_calls"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|call| {
                let name = call["name"].as_str().unwrap_or_default().to_string();
                (name, call["request_hex"].as_str().and_then(decode_hex).unwrap_or_default())
            })
            .collect();
        let ok = ok && step.requests_match(&made);
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
            let clause = first["clause"].as_str().and_then(Clause::from_id);
            return match (case.not_supported_allowed, clause) {
                (Some(allowed), Some(clause)) if allowed == clause => Verdict::NotSupported { clause },
                _ => Verdict::Fail {
                    reason: format!(
                        "the host answered NOT_SUPPORTED ({}) for a limit it must enforce",
                        first["clause"]
                    ),
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

/// The shared vectors of one plugin, run on every language's build.
#[derive(Clone, Debug, Serialize)]
pub struct VectorSummary {
    pub plugin: String,
    pub languages: Vec<String>,
    pub passed: u32,
    pub total: u32,
}

/// A whole `pabi host-test` run (`spec/schemas/host-test-report.schema.json`).
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub schema: &'static str,
    pub adapter: String,
    pub cases: Vec<CaseResult>,
    pub vectors: Vec<VectorSummary>,
    pub vector_failures: Vec<String>,
}

impl Report {
    pub fn new(adapter: String, cases: Vec<CaseResult>, vectors: Vec<VectorSummary>, failures: Vec<String>) -> Report {
        Report { schema: REPORT_SCHEMA_VERSION, adapter, cases, vectors, vector_failures: failures }
    }

    pub fn failed_cases(&self) -> usize {
        self.cases.iter().filter(|r| matches!(r.verdict, Verdict::Fail { .. })).count()
    }

    pub fn unsupported_cases(&self) -> usize {
        self.cases.iter().filter(|r| matches!(r.verdict, Verdict::NotSupported { .. })).count()
    }

    /// Every case passed or is allowed to be unsupported, and every vector
    /// passed identically in every language.
    pub fn passed(&self) -> bool {
        self.failed_cases() == 0 && self.vector_failures.is_empty()
    }
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
        let vectors = pabi_abi::vectors::VectorFile::parse(&bytes)
            .with_context(|| format!("{} is not a vector file", file.display()))?;
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
            let mut first: Option<(&str, Vec<Value>)> = None;
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
        summaries.push(VectorSummary {
            plugin: vectors.plugin.clone(),
            languages: builds.into_iter().map(|(l, _)| l).collect(),
            passed,
            total,
        });
    }
    Ok((summaries, failures))
}

fn short(value: &Value) -> String {
    let text = value.to_string();
    match text.char_indices().nth(240) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn case(expect: Vec<Value>, allowed: Option<&str>) -> Case {
        Case {
            name: "t".into(),
            description: String::new(),
            clauses: vec![Clause::Lim4],
            plugin: "io.wat".into(),
            config_hex: None,
            limits: serde_json::from_str(r#"{"fuel": 5}"#).unwrap(),
            grants: CaseGrants::default(),
            host_calls: None,
            abi: None,
            calls: expect
                .iter()
                .map(|_| Call { function: "f".into(), input_hex: "00".into(), input_file_len: None })
                .collect(),
            expect,
            not_supported_allowed: allowed.map(|c| c.parse().unwrap()),
        }
    }

    /// An adapter past the deadline is killed with the processes it
    /// started, and the failure shows its command and what it printed.
    #[cfg(unix)]
    #[test]
    fn an_adapter_past_the_deadline_is_killed_with_its_group_and_shown() {
        let scratch = tempfile::tempdir().unwrap();
        let pid_file = scratch.path().join("child.pid");
        // The adapter starts a child that holds both pipes, says where it
        // is, prints a result line, then hangs.
        let script = format!(
            "sleep 600 & echo $! > '{}'; echo '{{\"ok\":true,\"output_hex\":\"\"}}'; echo 'stuck in step 3' >&2; wait",
            pid_file.display()
        );
        let adapter = vec!["sh".to_owned(), "-c".to_owned(), script, "adapter".to_owned()];
        let err = invoke_within(&adapter, vec!["--input-hex".into(), "61".into()], Duration::from_secs(3)).unwrap_err();
        assert!(err.contains("ran longer than 3s and was killed"), "{err}");
        assert!(err.contains("stuck in step 3"), "{err}");
        assert!(err.contains(r#"{"ok":true,"output_hex":""}"#), "{err}");
        assert!(err.contains("--input-hex 61"), "{err}");
        // The child was killed with the adapter: it ends (it may linger as
        // a zombie until init reaps it, which is not running).
        let pid = std::fs::read_to_string(&pid_file).unwrap().trim().to_owned();
        let stat = std::path::PathBuf::from(format!("/proc/{pid}/stat"));
        let gone = || match std::fs::read_to_string(&stat) {
            Ok(stat) => stat.rsplit(')').next().is_some_and(|rest| rest.trim_start().starts_with('Z')),
            Err(_) => true,
        };
        let waited = Instant::now();
        while !gone() {
            assert!(waited.elapsed() < Duration::from_secs(30), "the adapter's child {pid} still runs");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// An adapter that exits and leaves a child holding its pipes still
    /// has its result lines read: the child is killed with its group.
    #[cfg(unix)]
    #[test]
    fn a_child_left_behind_does_not_hide_the_adapter_s_results() {
        let script = r#"sleep 600 & echo '{"ok":true,"output_hex":"61"}'"#.to_owned();
        let adapter = vec!["sh".to_owned(), "-c".to_owned(), script];
        let lines = invoke_within(&adapter, Vec::new(), Duration::from_secs(60)).unwrap();
        assert_eq!(lines, vec![json!({"ok": true, "output_hex": "61"})]);
    }

    #[test]
    fn adapter_commands_split_like_a_shell() {
        assert_eq!(adapter_words("pabi run").unwrap(), ["pabi", "run"]);
        assert_eq!(adapter_words("node '/opt/my hosts/pabi-node.js'").unwrap(), ["node", "/opt/my hosts/pabi-node.js"]);
        assert_eq!(adapter_words(r"a\ b c").unwrap(), ["a b", "c"]);
        assert!(adapter_words("node 'open").is_err());
        assert!(adapter_words("   ").is_err());
    }

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
        assert_eq!(judge_folders(&c, &folders), Verdict::Pass);
        // A file the plugin should not have been able to write fails the case.
        std::fs::write(folders.paths[0].join("new.txt"), "abc").unwrap();
        assert!(matches!(judge_folders(&c, &folders), Verdict::Fail { .. }));
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
        assert_eq!(judge(&c, &[unsupported]), Verdict::NotSupported { clause: Clause::Lim4 });
    }

    #[test]
    fn a_failed_load_answers_every_call() {
        let c = case(vec![json!({"ok": false, "kind": "TRAP"}), json!({"ok": false, "kind": "TRAP"})], None);
        assert_eq!(judge(&c, &[json!({"ok": false, "kind": "TRAP"})]), Verdict::Pass);
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

    #[test]
    fn lines_outside_the_protocol_are_refused() {
        assert!(read_line(r#"{"ok":true,"output_hex":"00"}"#).is_ok());
        assert!(read_line(r#"{"ok":false,"kind":"PLUGIN_ERROR","message":"m"}"#).unwrap_err().contains("protocol"));
        assert!(read_line(r#"{"ok":false,"kind":"TIMEOUT","message":"m","took":3}"#).is_err());
        assert!(read_line("ok").unwrap_err().contains("not JSON"));
    }

    #[test]
    fn the_report_follows_its_schema() {
        let schema: Value =
            serde_json::from_str(include_str!("../../spec/schemas/host-test-report.schema.json")).unwrap();
        let validator = jsonschema::validator_for(&schema).expect("the schema compiles");
        let result = |verdict| CaseResult { case: "c".into(), clauses: vec![Clause::Lim4], verdict, millis: 3 };
        let report = Report::new(
            "pabi run".into(),
            vec![
                result(Verdict::Pass),
                result(Verdict::Fail { reason: "r".into() }),
                result(Verdict::NotSupported { clause: Clause::Lim4 }),
            ],
            vec![VectorSummary { plugin: "text".into(), languages: vec!["c".into()], passed: 1, total: 2 }],
            vec!["c/text `x`: differs".into()],
        );
        let value = serde_json::to_value(&report).unwrap();
        let errors: Vec<String> = validator.iter_errors(&value).map(|e| e.to_string()).collect();
        assert!(errors.is_empty(), "{errors:?}");
        assert!(!report.passed());
        let mut broken = value.clone();
        broken["cases"][0]["verdict"] = "maybe".into();
        assert!(!validator.is_valid(&broken), "the schema must refuse an unknown verdict");
    }

    #[test]
    fn cases_with_an_undefined_clause_do_not_load() {
        let text = r#"{"description":"d","clauses":["MEM-99"],"plugin":"p.wat","calls":[],"expect":[]}"#; // not a clause ID on purpose
        let error = serde_json::from_str::<Case>(text).unwrap_err().to_string();
        assert!(error.contains("MEM-99"), "{error}"); // not a clause ID on purpose
    }
}
