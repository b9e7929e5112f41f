//! The adapter as a process: its command's words, spawning it in a process
//! group of its own, the deadline, draining its output, and reading its
//! result lines under the protocol.

use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use pabi_testkit::adapter::{ResultLine, RESULT_LINE_SCHEMA};
use serde_json::Value;

use crate::error::{LineError, Pipe, SuiteError};

/// Splits an adapter command into words as a POSIX shell does, quotes and
/// backslashes included, without expanding anything: a path with spaces
/// is written in quotes (`node '/opt/my hosts/pabi-node.js'`).
pub fn adapter_words(command: &str) -> Result<Vec<String>, SuiteError> {
    let words = shlex::split(command).ok_or_else(|| SuiteError::UnclosedQuote(command.to_string()))?;
    if words.is_empty() {
        return Err(SuiteError::EmptyCommand);
    }
    Ok(words)
}

/// The longest an adapter may take for one case.
pub(crate) const CASE_DEADLINE: Duration = Duration::from_secs(60);

/// The compiled schema of one result line.
fn line_schema() -> &'static jsonschema::Validator {
    static SCHEMA: OnceLock<jsonschema::Validator> = OnceLock::new();
    SCHEMA.get_or_init(|| {
        let schema: Value = serde_json::from_str(RESULT_LINE_SCHEMA).expect("the result-line schema is JSON");
        jsonschema::validator_for(&schema).expect("the result-line schema compiles")
    })
}

/// Reads one line the adapter printed: JSON, valid under the schema, and a
/// [`ResultLine`]. Anything else is a protocol violation of the host. The
/// schema is checked as well as the type because hosts in other languages
/// are written against the schema: a line the two disagree on is a bug in
/// one of them, and the suite should not let it pass.
pub fn read_line(line: &str) -> Result<ResultLine, LineError> {
    let value: Value =
        serde_json::from_str(line).map_err(|e| LineError::NotJson { reason: e.to_string(), line: line.to_string() })?;
    if let Some(error) = line_schema().iter_errors(&value).next() {
        return Err(LineError::OutsideSchema {
            reason: error.to_string(),
            at: error.instance_path().to_string(),
            line: line.to_string(),
        });
    }
    ResultLine::parse(line).map_err(|e| LineError::OutsideType { reason: e.to_string() })
}

/// Runs the adapter with `args` and reads its result lines.
pub(crate) fn invoke_with(adapter: &[String], args: Vec<String>) -> Result<Vec<ResultLine>, SuiteError> {
    invoke_within(adapter, args, CASE_DEADLINE)
}

/// As [`invoke_with`], with the deadline given.
fn invoke_within(adapter: &[String], args: Vec<String>, deadline: Duration) -> Result<Vec<ResultLine>, SuiteError> {
    let (program, words) = adapter.split_first().ok_or(SuiteError::EmptyCommand)?;
    let mut command = Command::new(program);
    command.args(words).args(&args).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    // A group of its own, so that an adapter past the deadline is killed
    // with every process it started, and none keeps the pipes open.
    #[cfg(unix)]
    std::os::unix::process::CommandExt::process_group(&mut command, 0);
    let mut child = command.spawn().map_err(|source| SuiteError::Start { program: program.clone(), source })?;
    // Drain both pipes while waiting: a large result would fill a pipe and
    // block the adapter.
    let stdout = drain(child.stdout.take().map(|p| Box::new(p) as Box<dyn std::io::Read + Send>));
    let stderr = drain(child.stderr.take().map(|p| Box::new(p) as Box<dyn std::io::Read + Send>));
    let started = Instant::now();
    let status = loop {
        match child.try_wait().map_err(SuiteError::Wait)? {
            Some(status) => break status,
            None if started.elapsed() > deadline => {
                kill_group(child.id());
                let _ = child.kill();
                let _ = child.wait();
                let (stdout, stderr) = (stdout.take().unwrap_or_default(), stderr.take().unwrap_or_default());
                return Err(SuiteError::PastDeadline {
                    deadline,
                    command: shlex::try_join(adapter.iter().chain(&args).map(String::as_str))
                        .unwrap_or_else(|_| format!("{:?}", adapter.iter().chain(&args).collect::<Vec<_>>())),
                    stdout: shown(&stdout),
                    stderr: shown(&stderr),
                });
            }
            None => std::thread::sleep(Duration::from_millis(2)),
        }
    };
    // A process the adapter started and left running would hold the pipes
    // open; the adapter has exited, so nothing of its group may still run.
    kill_group(child.id());
    let stdout = stdout.take().ok_or(SuiteError::PipeHeldOpen(Pipe::Output))?;
    let stderr = stderr.take().ok_or(SuiteError::PipeHeldOpen(Pipe::Error))?;
    if status.code() != Some(0) {
        let stderr = String::from_utf8_lossy(&stderr).trim().to_string();
        return Err(SuiteError::Exited { code: status.code(), stderr });
    }
    let lines = String::from_utf8_lossy(&stdout);
    Ok(lines.lines().filter(|l| !l.trim().is_empty()).map(read_line).collect::<Result<_, _>>()?)
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

#[cfg(test)]
mod tests {
    use super::*;

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
        assert!(matches!(err, SuiteError::PastDeadline { .. }), "{err:?}");
        let err = err.to_string();
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
        assert_eq!(lines, [ResultLine::Ok { output: b"a".to_vec(), host_calls: Vec::new() }]);
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
    fn lines_outside_the_protocol_are_refused() {
        assert!(read_line(r#"{"ok":true,"output_hex":"00"}"#).is_ok());
        assert!(matches!(
            read_line(r#"{"ok":false,"kind":"PLUGIN_ERROR","message":"m"}"#),
            Err(LineError::OutsideSchema { .. })
        ));
        assert!(read_line(r#"{"ok":false,"kind":"TIMEOUT","message":"m","took":3}"#).is_err());
        assert!(matches!(read_line("ok"), Err(LineError::NotJson { .. })));
    }
}
