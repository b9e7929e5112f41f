//! `pabi pipe --framing`: one call chain per record, streaming, with every
//! failing record reported by number under the chosen policy.

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};

use crate::{exit_code, write};

fn fixture(folder: &str, name: &str, dir: &std::path::Path) -> String {
    let path = pabi_fixtures::fixtures_dir().join(folder).join(format!("{name}.wat"));
    write(dir, &format!("{name}.wasm"), &pabi_fixtures::compile_wat(&path).unwrap().wasm)
}

/// `check` echoes its input, except that an input starting with `bad`
/// fails with status 1 (INVALID_INPUT) and one starting with `trap` traps
/// (`unreachable`), which kills its instance.
const CHECK: &str = r#"(module
  (import "pabi" "input_read" (func $read (param i32 i32 i32) (result i32)))
  (import "pabi" "output_write" (func $write (param i32 i32) (result i32)))
  (import "pabi" "error_write" (func $error (param i32 i32) (result i32)))
  (memory (export "memory") 2)
  (data (i32.const 0) "bad")
  (data (i32.const 16) "trap")
  (func (export "pabi_fn_check") (param $len i32) (result i32)
    (drop (call $read (i32.const 1024) (i32.const 0) (local.get $len)))
    (if (i32.and (i32.ge_u (local.get $len) (i32.const 4))
                 (i32.eq (i32.load (i32.const 1024)) (i32.load (i32.const 16))))
      (then unreachable))
    (if (i32.and (i32.ge_u (local.get $len) (i32.const 3))
                 (i32.eq (i32.load16_u (i32.const 1024)) (i32.load16_u (i32.const 0))))
      (then (drop (call $error (i32.const 0) (i32.const 3))) (return (i32.const 1))))
    (drop (call $write (i32.const 1024) (local.get $len)))
    (i32.const 0))
  (@custom "pabi" "{\"abi\":\"1.0\",\"name\":\"check\",\"version\":\"1.0.0\",\"profile\":\"core\",\"functions\":[{\"name\":\"check\"}],\"capabilities\":[]}"))"#;

fn pipe(args: &[&str], stdin: &[u8]) -> std::process::Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_pabi"))
        .arg("pipe")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // A pipe that fails before reading its input (a usage error) may have
    // exited already: its exit code and standard error tell the rest.
    match child.stdin.take().unwrap().write_all(stdin) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {}
        written => written.unwrap(),
    }
    child.wait_with_output().unwrap()
}

fn plugin(dir: &std::path::Path) -> String {
    format!("{}:check", write(dir, "check.wasm", &wat::parse_str(CHECK).unwrap()))
}

#[test]
fn each_line_goes_through_every_stage_and_failures_follow_the_policy() {
    let dir = tempfile::tempdir().unwrap();
    let stage = plugin(dir.path());
    let input = b"one\nbad two\nthree\nlast without newline";
    let ok = pipe(&["--framing", "lines", &stage, &stage], b"a\nb\n\nc");
    assert_eq!((exit_code(&ok), ok.stdout.as_slice()), (0, &b"a\nb\n\nc\n"[..]), "{ok:?}");

    let stop = pipe(&["--framing", "lines", &stage, &stage], input);
    assert_eq!((exit_code(&stop), stop.stdout.as_slice()), (1, &b"one\n"[..]));
    assert!(String::from_utf8_lossy(&stop.stderr).contains("record 2: stage"), "{stop:?}");

    let skip = pipe(&["--framing", "lines", "--on-error", "skip", &stage], input);
    assert_eq!((exit_code(&skip), skip.stdout.as_slice()), (1, &b"one\nthree\nlast without newline\n"[..]));
    assert!(String::from_utf8_lossy(&skip.stderr).contains("1 of 4 records failed"), "{skip:?}");

    let rejects = dir.path().join("rejects.txt");
    let policy = format!("reject={}", rejects.display());
    let reject = pipe(&["--framing", "lines", "--on-error", &policy, &stage], input);
    assert_eq!(exit_code(&reject), 1);
    assert_eq!(std::fs::read(&rejects).unwrap(), b"bad two\n", "the record as it came in");

    // A last line without its newline is rejected without one.
    std::fs::remove_file(&rejects).unwrap();
    let unterminated = pipe(&["--framing", "lines", "--on-error", &policy, &stage], b"one\nbad end");
    assert_eq!((exit_code(&unterminated), unterminated.stdout.as_slice()), (1, &b"one\n"[..]));
    assert_eq!(std::fs::read(&rejects).unwrap(), b"bad end");

    // A stage without its function is refused before any record, even
    // with no input at all.
    let nope = format!("{}:nope", stage.rsplit_once(':').unwrap().0);
    let refused = pipe(&["--framing", "lines", &stage, &nope], b"");
    assert_eq!(exit_code(&refused), 3, "{refused:?}");
    assert!(String::from_utf8_lossy(&refused.stderr).contains("UNKNOWN_FUNCTION"), "{refused:?}");
    // --max-record means nothing without --framing: a usage error.
    assert_eq!(exit_code(&pipe(&["--max-record", "4", &stage], b"x")), 2);
}

#[test]
fn nul_and_length_prefixed_records_round_trip_and_a_long_record_fails_alone() {
    let dir = tempfile::tempdir().unwrap();
    let stage = plugin(dir.path());
    let nul = pipe(&["--framing", "nul", &stage], b"a\nb\0c\0");
    assert_eq!((exit_code(&nul), nul.stdout.as_slice()), (0, &b"a\nb\0c\0"[..]));

    let mut framed = Vec::new();
    for record in [&b"x"[..], b"", &[0u8, 1, 2, 255]] {
        framed.extend((record.len() as u32).to_le_bytes());
        framed.extend(record);
    }
    let prefixed = pipe(&["--framing", "length-prefixed", &stage], &framed);
    assert_eq!((exit_code(&prefixed), prefixed.stdout), (0, framed.clone()));
    let cut = pipe(&["--framing", "length-prefixed", &stage], &framed[..framed.len() - 1]);
    assert_eq!(exit_code(&cut), 2, "a record cut short is an I/O error: {cut:?}");
    assert!(String::from_utf8_lossy(&cut.stderr).contains("record 3: the input ends inside it"), "{cut:?}");
    let mut cut_length = framed.clone();
    cut_length.extend([5, 0]);
    let cut_length = pipe(&["--framing", "length-prefixed", &stage], &cut_length);
    assert_eq!((exit_code(&cut_length), &cut_length.stdout), (2, &framed), "all records before it out");
    assert!(
        String::from_utf8_lossy(&cut_length.stderr).contains("record 4: the input ends inside its 4-byte length"),
        "{cut_length:?}"
    );

    // A record past --max-record goes to the reject file whole, as it
    // came in, under every framing.
    let rejects = dir.path().join("long-rejects");
    let policy = format!("reject={}", rejects.display());
    let long =
        pipe(&["--framing", "lines", "--max-record", "4", "--on-error", &policy, &stage], b"ab\nabcdefghij\ncd\n");
    assert_eq!((exit_code(&long), long.stdout.as_slice()), (1, &b"ab\ncd\n"[..]));
    assert_eq!(std::fs::read(&rejects).unwrap(), b"abcdefghij\n");
    std::fs::remove_file(&rejects).unwrap();
    let mut records = Vec::new();
    for record in [&b"ab"[..], b"abcdefghij", b"cd"] {
        records.extend((record.len() as u32).to_le_bytes());
        records.extend(record);
    }
    let long = pipe(&["--framing", "length-prefixed", "--max-record", "4", "--on-error", &policy, &stage], &records);
    assert_eq!(exit_code(&long), 1);
    assert_eq!(std::fs::read(&rejects).unwrap(), &records[6..20], "its length, then all of it");

    let long = pipe(&["--framing", "lines", "--max-record", "4", "--on-error", "skip", &stage], b"abcd\nabcde\nok\n");
    assert_eq!((exit_code(&long), long.stdout.as_slice()), (1, &b"abcd\nok\n"[..]));
    assert!(
        String::from_utf8_lossy(&long.stderr).contains("record 2")
            && String::from_utf8_lossy(&long.stderr)
                .contains("INPUT_LIMIT: the input is longer than the host accepts: past this host's cap of 4 bytes"),
        "{long:?}"
    );
}

#[test]
fn records_stream_out_before_the_input_ends() {
    let dir = tempfile::tempdir().unwrap();
    let stage = plugin(dir.path());
    let mut child = Command::new(env!("CARGO_BIN_EXE_pabi"))
        .args(["pipe", "--framing", "lines", &stage, &stage])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let stdout = BufReader::new(child.stdout.take().unwrap());
    // Lines are read on a thread, so a line that never comes fails the
    // test instead of hanging it.
    let (lines, answers) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || stdout.lines().map_while(Result::ok).try_for_each(|l| lines.send(l)));
    let next = || answers.recv_timeout(std::time::Duration::from_secs(60)).expect("a line of output");
    // The input is still open: each answer must come anyway, also while
    // part of the next record is already in.
    for (sent, answer) in [("first\n", "first"), ("second\n", "second"), ("third\nfou", "third")] {
        stdin.write_all(sent.as_bytes()).unwrap();
        stdin.flush().unwrap();
        assert_eq!(next(), answer);
    }
    stdin.write_all(b"rth\n").unwrap();
    drop(stdin);
    assert_eq!(next(), "fourth");
    assert!(child.wait().unwrap().success());
    let _ = reader.join();
}

/// More trapping records than the host's crash-loop limit (5 dead
/// instances, `LIFE-7`), then good ones: under `skip` and `reject` each
/// record is judged on its own, so the good records after them still run
/// on a fresh instance, and only the trapping ones are rejected.
#[test]
fn trapping_records_do_not_disable_the_stage_for_later_records() {
    let dir = tempfile::tempdir().unwrap();
    let stage = plugin(dir.path());
    let traps: String = (1..=7).map(|n| format!("trap {n}\n")).collect();
    let input = format!("one\n{traps}two\ntrap 8\nthree\n");

    let skip = pipe(&["--framing", "lines", "--on-error", "skip", &stage, &stage], input.as_bytes());
    let stderr = String::from_utf8_lossy(&skip.stderr);
    assert_eq!((exit_code(&skip), skip.stdout.as_slice()), (1, &b"one\ntwo\nthree\n"[..]), "{stderr}");
    assert!(stderr.contains("8 of 11 records failed") && !stderr.contains("CRASH_LOOP"), "{stderr}");
    assert_eq!(stderr.matches("TRAP").count(), 8, "each trapping record fails as itself: {stderr}");

    let rejects = dir.path().join("trap-rejects.txt");
    let policy = format!("reject={}", rejects.display());
    let reject = pipe(&["--framing", "lines", "--on-error", &policy, &stage], input.as_bytes());
    assert_eq!((exit_code(&reject), reject.stdout.as_slice()), (1, &b"one\ntwo\nthree\n"[..]), "{reject:?}");
    assert_eq!(std::fs::read_to_string(&rejects).unwrap(), format!("{traps}trap 8\n"), "the bad records alone");

    // Under `stop` the first trap ends the pipe: a host error, exit 3.
    let stop = pipe(&["--framing", "lines", &stage], input.as_bytes());
    assert_eq!((exit_code(&stop), stop.stdout.as_slice()), (3, &b"one\n"[..]), "{stop:?}");
    assert!(String::from_utf8_lossy(&stop.stderr).contains("record 2: stage"), "{stop:?}");
}

/// `kv.get` through the host-calls fixture's `call`: its input is the
/// reply offset and length to read, the name's length, the name and the
/// request, each record framed by its length.
fn host_call_records(requests: &[&str]) -> Vec<u8> {
    let mut framed = Vec::new();
    for request in requests {
        let mut record = Vec::new();
        for word in [0u32, 64, 6] {
            record.extend(word.to_le_bytes());
        }
        record.extend(b"kv.get");
        record.extend(request.as_bytes());
        framed.extend((record.len() as u32).to_le_bytes());
        framed.extend(record);
    }
    framed
}

/// What `call` outputs for one record: what host_call returned, what
/// reply_read returned, and the reply, framed by its length.
fn host_call_answer(code: i32, reply: &[u8]) -> Vec<u8> {
    let mut answer = Vec::new();
    answer.extend(((8 + reply.len()) as u32).to_le_bytes());
    answer.extend(code.to_le_bytes());
    answer.extend((reply.len() as u32).to_le_bytes());
    answer.extend(reply);
    answer
}

/// The host flags `pabi run` shares with `pabi pipe` act in a pipe too:
/// a host-call table or command serves an ABI 1.1 plugin's host calls,
/// the request cap holds, a table's re-entry is refused (`CALL-8`), and
/// `--abi 1.0` refuses the plugin with VERSION_MISMATCH.
#[test]
fn the_shared_host_flags_serve_a_pipe() {
    let dir = tempfile::tempdir().unwrap();
    let stage = format!("{}:call", fixture("host-conformance", "host-calls", dir.path()));
    let table = write(
        dir.path(),
        "table.json",
        br#"{"kv.get": [{"request": "apple", "reply": "red"}, {"request": "kiwi", "fail": "no such key"},
                        {"request": "again", "reenter": "call"}]}"#,
    );
    let records = host_call_records(&["apple", "kiwi", "again"]);
    let framing = ["--framing", "length-prefixed", "--no-cache"];

    let served = pipe(&[&framing[..], &["--host-calls", &table, &stage]].concat(), &records);
    let expected = [
        host_call_answer(3, b"red"),
        host_call_answer(-4, b"no such key"),
        host_call_answer(-4, pabi_testkit::host_calls::REENTRY_REFUSED.as_bytes()),
    ]
    .concat();
    assert_eq!((exit_code(&served), &served.stdout), (0, &expected), "{served:?}");

    let capped = pipe(&[&framing[..], &["--host-calls", &table, "--max-request", "4", &stage]].concat(), &records);
    let expected =
        [host_call_answer(-1, b""), host_call_answer(-4, b"no such key"), host_call_answer(-1, b"")].concat();
    assert_eq!((exit_code(&capped), &capped.stdout), (0, &expected), "a request past 4 bytes: E_LIMIT: {capped:?}");

    let command = pipe(&[&framing[..], &["--host-call-command", "kv.get=tr a-z A-Z", &stage]].concat(), &records[..27]);
    assert_eq!((exit_code(&command), &command.stdout), (0, &host_call_answer(5, b"APPLE")), "{command:?}");

    let old = pipe(&[&framing[..], &["--host-calls", &table, "--abi", "1.0", &stage]].concat(), &records);
    let stderr = String::from_utf8_lossy(&old.stderr);
    assert_eq!(exit_code(&old), 3, "a refused load is a host error: {stderr}");
    assert!(stderr.contains("VERSION_MISMATCH") && stderr.contains("1.1"), "{stderr}");
    assert!(old.stdout.is_empty(), "refused before any record: {old:?}");
}
