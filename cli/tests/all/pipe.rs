//! `pabi pipe --framing`: one call chain per record, streaming, with every
//! failing record reported by number under the chosen policy.

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};

use crate::{exit_code, write};

/// `check` echoes its input, except that an input starting with `bad`
/// fails with status 1 (INVALID_INPUT).
const CHECK: &str = r#"(module
  (import "pabi" "input_read" (func $read (param i32 i32 i32) (result i32)))
  (import "pabi" "output_write" (func $write (param i32 i32) (result i32)))
  (import "pabi" "error_write" (func $error (param i32 i32) (result i32)))
  (memory (export "memory") 2)
  (data (i32.const 0) "bad")
  (func (export "pabi_fn_check") (param $len i32) (result i32)
    (drop (call $read (i32.const 1024) (i32.const 0) (local.get $len)))
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
