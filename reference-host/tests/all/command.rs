//! `HostFunction::command`: a command serving host calls is held to the
//! call's bounds, in both isolations: its reply to the reply cap and one
//! byte (`LIM-14`), its standard error to the failure message cap
//! (`CALL-4`), its time to the call's deadline (`CALL-7`); and when it
//! ends, for whatever reason, its process group ends with it.

use std::path::Path;
use std::time::Duration;

use pabi_abi::HostErrorKind;
use pabi_host::{CancelHandle, Error, HostFunction, Isolation, Pool};

use crate::pool::{builder, wait_until};
use crate::{fixture, host_with};

/// A pool of the host-calls fixture whose `kv.get` runs `sh -c script`.
fn pool(isolation: Isolation, timeout: Duration, max_reply: u64, script: &str) -> Pool {
    let function = HostFunction::command("kv.get", "sh", ["-c", script]);
    let host =
        host_with(|c| c.timeout(timeout).max_host_call_bytes(1 << 20, max_reply).host_function(function.clone()));
    builder(isolation).instances(1).build(&host, &fixture("host-conformance", "host-calls")).unwrap()
}

/// The fixture's `call` input: read `len` reply bytes from `offset` after
/// calling `kv.get` with `request`.
fn call_input(offset: u32, len: u32, request: &[u8]) -> Vec<u8> {
    let mut input = Vec::new();
    for word in [offset, len, 6] {
        input.extend(word.to_le_bytes());
    }
    input.extend(b"kv.get");
    input.extend(request);
    input
}

/// What `host_call` returned, what `reply_read` returned, and the bytes.
fn outcome(output: &[u8]) -> (i32, i32, Vec<u8>) {
    let word = |at: usize| i32::from_le_bytes(output[at..at + 4].try_into().unwrap());
    (word(0), word(4), output[8..].to_vec())
}

/// `pool.call("call", input)`, failing the test instead of hanging when
/// the call does not end within a bound far past any of these calls'
/// deadlines: a command that holds a call is what these tests look for.
fn call(pool: &Pool, input: Vec<u8>) -> Result<Vec<u8>, Error> {
    let (done, answer) = std::sync::mpsc::channel();
    let pool = pool.clone();
    std::thread::spawn(move || done.send(pool.call("call", &input)));
    answer.recv_timeout(Duration::from_secs(15)).expect("the call ended: the command did not hold it")
}

/// The process ids the script wrote to `file`, one a line, once it has
/// written `count`.
fn pids(file: &Path, count: usize) -> Vec<u32> {
    let read = || -> Vec<u32> {
        let text = std::fs::read_to_string(file).unwrap_or_default();
        text.lines().filter_map(|l| l.trim().parse().ok()).collect()
    };
    wait_until("the command wrote its pids", || read().len() >= count);
    read()
}

/// Whether `pid` is a process that still runs (a zombie does not).
fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| !stat.contains(") Z "))
}

fn assert_gone(pids: &[u32]) {
    for &pid in pids {
        // Reaped by whoever reaps orphans; killed, it goes at once.
        wait_until(&format!("process {pid} is gone"), || !alive(pid));
    }
}

both_isolations! {
    /// `yes` would fill the host's memory: it is read to the reply cap and
    /// one byte, ended, and the plugin sees E_LIMIT.
    fn a_command_flooding_its_output_gets_e_limit(isolation) {
        let pool = pool(isolation, Duration::from_secs(10), 4096, "exec yes");
        let output = call(&pool, call_input(0, 16, b"")).unwrap();
        assert_eq!(outcome(&output), (-1, 0, vec![]), "E_LIMIT with an empty reply (LIM-14)");
    }

    /// A flood on standard error is read to the 65,536 bytes the plugin
    /// can read of a failure message, and the command ended: E_FAILED with
    /// the message cut there (CALL-4).
    fn a_command_flooding_its_error_stream_fails_with_the_cut_message(isolation) {
        let pool = pool(isolation, Duration::from_secs(10), 4096, "exec yes >&2");
        let output = call(&pool, call_input(65_530, 64, b"")).unwrap();
        assert_eq!(outcome(&output), (-4, 6, b"y\ny\ny\n".to_vec()), "the message ends at 65,536 bytes");
    }

    /// A command that runs past the call's deadline is ended there with
    /// what it started, and the call ends with TIMEOUT (CALL-7).
    fn a_command_past_the_deadline_is_ended_with_its_group(isolation) {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("pids");
        let script = format!("sleep 30 & echo $! > {0}; echo $$ >> {0}; wait", file.display());
        let pool = pool(isolation, Duration::from_millis(500), 4096, &script);
        let error = call(&pool, call_input(0, 16, b"")).unwrap_err();
        assert_eq!(error.kind(), Some(HostErrorKind::Timeout), "{error}");
        assert_gone(&pids(&file, 2));
    }

    /// A command that exits while a child it started keeps its standard
    /// output open answers when it exits, and the child is ended.
    fn a_command_whose_child_keeps_its_output_open_still_ends(isolation) {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("pids");
        let script = format!("sleep 30 & echo $! > {}; echo hi", file.display());
        let pool = pool(isolation, Duration::from_secs(10), 4096, &script);
        let output = call(&pool, call_input(0, 16, b"")).unwrap();
        assert_eq!(outcome(&output), (3, 3, b"hi\n".to_vec()));
        assert_gone(&pids(&file, 1));
    }

    /// The request reaches the command and its output is the reply, as
    /// before the bounds.
    fn a_command_answers_with_its_output(isolation) {
        let upper = pool(isolation, Duration::from_secs(10), 4096, "tr a-z A-Z");
        let output = call(&upper, call_input(0, 16, b"apple")).unwrap();
        assert_eq!(outcome(&output), (5, 5, b"APPLE".to_vec()));
        let failing = pool(isolation, Duration::from_secs(10), 4096, "echo no such key >&2; exit 3");
        let output = call(&failing, call_input(0, 64, b"kiwi")).unwrap();
        assert_eq!(outcome(&output), (-4, 11, b"no such key".to_vec()));
    }

    /// A cancelled call ends its command and what it started at once, not
    /// at the call's deadline: in a worker, the handler runs in the pool's
    /// process, and the worker says when its call stopped waiting.
    fn a_cancelled_call_ends_its_command(isolation) {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("pids");
        let script = format!("sleep 30 & echo $! > {0}; echo $$ >> {0}; wait", file.display());
        let pool = pool(isolation, Duration::from_secs(30), 4096, &script);
        let cancel = CancelHandle::new();
        let (done, answer) = std::sync::mpsc::channel();
        {
            let (pool, cancel) = (pool.clone(), cancel.clone());
            std::thread::spawn(move || done.send(pool.call_cancellable("call", &call_input(0, 16, b""), &cancel)));
        }
        let started = pids(&file, 2);
        cancel.cancel();
        // A bound against a hang only: the command runs for 30 s if not ended.
        let error = answer.recv_timeout(Duration::from_secs(15)).expect("the cancel ended the call").unwrap_err();
        assert!(matches!(error, Error::Cancelled), "{error}");
        assert_gone(&started);
    }
}
