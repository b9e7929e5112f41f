//! `pabi run`, `pabi pipe`, `pabi conform` and `pabi host-test`.

use crate::{exit_code, pabi, write};

fn fixture(folder: &str, name: &str, dir: &std::path::Path) -> String {
    let path = pabi_fixtures::fixtures_dir().join(folder).join(format!("{name}.wat"));
    let wasm = pabi_fixtures::compile_wat(&path).unwrap().wasm;
    write(dir, &format!("{name}.wasm"), &wasm)
}

#[test]
fn run_prints_the_output_and_exits_by_result_kind() {
    let dir = tempfile::tempdir().unwrap();
    let io = fixture("host-conformance", "io", dir.path());
    let ok = pabi(&["run", &io, "echo", "--input-hex", "68690a", "--no-cache"]);
    assert_eq!((exit_code(&ok), ok.stdout.as_slice()), (0, b"hi\n".as_slice()));

    // status 1 from `fail`: a plugin error, exit 1, message on stderr.
    let failed = pabi(&["run", &io, "fail", "--no-cache"]);
    assert_eq!(exit_code(&failed), 1, "{}", String::from_utf8_lossy(&failed.stderr));
    assert!(String::from_utf8_lossy(&failed.stderr).starts_with("error: PLUGIN_ERROR"));

    let spin = pabi(&["run", &io, "spin", "--timeout", "50ms", "--no-cache"]);
    assert_eq!(exit_code(&spin), 3);
    assert!(String::from_utf8_lossy(&spin.stderr).contains("TIMEOUT"));

    let usage = pabi(&["run", &io, "echo", "--input-hex", "zz"]);
    assert_eq!(exit_code(&usage), 2);
    let missing = pabi(&["run", "/nonexistent.wasm", "echo"]);
    assert_eq!(exit_code(&missing), 2);
    assert!(String::from_utf8_lossy(&missing.stderr).contains("error: failed to read"));
}

/// A host-call cap above `LIM-14`'s maximum is a usage error (exit 2), as
/// the adapter protocol has it, not a run under a lower cap.
#[test]
fn a_host_call_cap_past_the_abi_maximum_is_a_usage_error() {
    let dir = tempfile::tempdir().unwrap();
    let io = fixture("host-conformance", "io", dir.path());
    for flag in ["--max-request", "--max-reply"] {
        let over =
            pabi(&["run", &io, "count", "--input-hex", "", flag, "2147483648", "--format", "json", "--no-cache"]);
        assert_eq!(exit_code(&over), 2, "{flag}: {}", String::from_utf8_lossy(&over.stderr));
        assert!(over.stdout.is_empty() && String::from_utf8_lossy(&over.stderr).contains("LIM-14"), "{flag}");
        let max = pabi(&["run", &io, "count", "--input-hex", "", flag, "2147483647", "--format", "json", "--no-cache"]);
        assert_eq!(exit_code(&max), 0, "{flag}: {}", String::from_utf8_lossy(&max.stderr));
    }
}

#[test]
fn run_in_json_prints_one_line_per_call() {
    let dir = tempfile::tempdir().unwrap();
    let io = fixture("host-conformance", "io", dir.path());
    let out = pabi(&[
        "run",
        &io,
        "count",
        "--input-hex",
        "",
        "--then",
        "trap:",
        "--then",
        "count:",
        "--format",
        "json",
        "--no-cache",
    ]);
    assert_eq!(exit_code(&out), 0);
    let lines: Vec<serde_json::Value> =
        String::from_utf8_lossy(&out.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 3);
    assert_eq!(lines[0], serde_json::json!({"ok": true, "output_hex": "01000000"}));
    assert_eq!((lines[1]["kind"].as_str(), lines[1]["trap"].as_str()), (Some("TRAP"), Some("unreachable")));
    assert_eq!(lines[2], serde_json::json!({"ok": true, "output_hex": "01000000"}), "a fresh instance after the trap");
}

#[test]
fn pipe_chains_stages() {
    let dir = tempfile::tempdir().unwrap();
    let io = fixture("host-conformance", "io", dir.path());
    let core = fixture("good", "core", dir.path());
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_pabi"))
        .args(["pipe", &format!("{io}:echo"), &format!("{core}:count"), "--no-cache"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), b"seven!!").unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!((exit_code(&out), out.stdout.as_slice()), (0, 7u32.to_le_bytes().as_slice()));
    let bad = pabi(&["pipe", "no-colon"]);
    assert_eq!(exit_code(&bad), 2);
}

#[test]
fn a_pipe_longer_than_the_default_pool_runs() {
    let dir = tempfile::tempdir().unwrap();
    let io = fixture("host-conformance", "io", dir.path());
    let stage = format!("{io}:echo");
    let mut args = vec!["pipe".to_string(), "--no-cache".to_string()];
    args.extend(std::iter::repeat_n(stage, 65));
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_pabi"))
        .args(&args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), b"through 65 stages").unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(exit_code(&out), 0, "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.stdout, b"through 65 stages");
}

#[test]
fn conform_exits_by_verdict() {
    let dir = tempfile::tempdir().unwrap();
    let good = fixture("good", "core", dir.path());
    let out = pabi(&["conform", "--cases", "32", &good]);
    assert_eq!(exit_code(&out), 0, "{}", String::from_utf8_lossy(&out.stdout));
    let broken = fixture("broken", "status-200", dir.path());
    let out = pabi(&["conform", "--cases", "32", "--format", "junit", &broken]);
    assert_eq!(exit_code(&out), 1);
    let junit = String::from_utf8_lossy(&out.stdout);
    assert!(junit.contains("<failure") && junit.contains("status"), "{junit}");
    let out = pabi(&["conform", "--only", "nope", &good]);
    assert_eq!(exit_code(&out), 2);
}

#[test]
fn host_test_fails_an_adapter_that_ignores_the_output_cap() {
    let dir = tempfile::tempdir().unwrap();
    let pabi_bin = env!("CARGO_BIN_EXE_pabi");
    let cases = pabi_fixtures::fixtures_dir().join("host-conformance");
    let cases = cases.to_str().unwrap();
    let honest = pabi(&[
        "host-test",
        "--adapter",
        &format!("{pabi_bin} run --no-cache"),
        "--cases",
        cases,
        "--only",
        "output-cap",
    ]);
    assert_eq!(exit_code(&honest), 0, "{}", String::from_utf8_lossy(&honest.stdout));
    // An adapter that drops --max-output: the host keeps its 16 MiB default.
    let script = write(
        dir.path(),
        "lax-adapter.sh",
        format!(
            "#!/bin/sh\nargs=\"\"\nskip=0\nfor a in \"$@\"; do\n  if [ $skip = 1 ]; then skip=0; continue; fi\n  if [ \"$a\" = --max-output ]; then skip=1; continue; fi\n  args=\"$args $a\"\ndone\nexec {pabi_bin} run --no-cache $args\n"
        )
        .as_bytes(),
    );
    let lax = pabi(&["host-test", "--adapter", &format!("sh {script}"), "--cases", cases, "--only", "output-cap"]);
    assert_eq!(exit_code(&lax), 1);
    let report = String::from_utf8_lossy(&lax.stdout);
    assert!(report.contains("FAIL  output-cap [LIM-5"), "{report}");
}

/// The adapter command is split like shell words, so a script in a folder
/// with a space runs; and an adapter that grants another folder than the
/// one it was given fails `grant-fs-rw`, whose folder is checked after the
/// run.
#[test]
fn host_test_quotes_adapter_paths_and_checks_granted_folders() {
    let dir = tempfile::tempdir().unwrap();
    let spaced = dir.path().join("my adapters");
    std::fs::create_dir(&spaced).unwrap();
    let pabi_bin = env!("CARGO_BIN_EXE_pabi");
    let cases = pabi_fixtures::fixtures_dir().join("host-conformance");
    let cases = cases.to_str().unwrap();
    let honest = write(&spaced, "adapter.sh", format!("#!/bin/sh\nexec {pabi_bin} run --no-cache \"$@\"\n").as_bytes());
    let out = pabi(&["host-test", "--adapter", &format!("sh '{honest}'"), "--cases", cases, "--only", "grant-fs-ro"]);
    assert_eq!(exit_code(&out), 0, "{}", String::from_utf8_lossy(&out.stdout));
    // Grants a copy of each folder instead: the plugin's write lands in the
    // copy, and the folder the case checks stays as it was.
    let lax = write(
        &spaced,
        "lax.sh",
        format!(
            "#!/bin/sh\nfor a in \"$@\"; do\n  case \"$a\" in *:/data) cp -r \"${{a%:/data}}\" \"${{a%:/data}}-copy\"; a=\"${{a%:/data}}-copy:/data\";; esac\n  set -- \"$@\" \"$a\"\n  shift\ndone\nexec {pabi_bin} run --no-cache \"$@\"\n"
        )
        .as_bytes(),
    );
    let out = pabi(&["host-test", "--adapter", &format!("sh '{lax}'"), "--cases", cases, "--only", "grant-fs-rw"]);
    assert_eq!(exit_code(&out), 1, "{}", String::from_utf8_lossy(&out.stdout));
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(report.contains("FAIL  grant-fs-rw"), "{report}");
}

#[test]
fn host_test_fails_when_languages_disagree() {
    let dir = tempfile::tempdir().unwrap();
    // Two "languages" whose builds both return status 1, as the vector
    // expects, but with different messages: the results are not identical.
    let plugin = |message: &str| {
        wat::parse_str(format!(
            r#"(module
              (import "pabi" "error_write" (func $err (param i32 i32) (result i32)))
              (memory (export "memory") 1)
              (data (i32.const 0) "{message}")
              (func (export "pabi_fn_f") (param i32) (result i32)
                (drop (call $err (i32.const 0) (i32.const {len})))
                (i32.const 1))
              (@custom "pabi" "{{\"abi\":\"1.0\",\"name\":\"p\",\"version\":\"1.0.0\",\"profile\":\"core\",\"functions\":[{{\"name\":\"f\"}}],\"capabilities\":[]}}"))"#,
            len = message.len()
        ))
        .unwrap()
    };
    for (language, message) in [("a", "bad input"), ("b", "bad input!")] {
        std::fs::create_dir_all(dir.path().join("plugins").join(language)).unwrap();
        write(&dir.path().join("plugins").join(language), "p.wasm", &plugin(message));
    }
    std::fs::create_dir_all(dir.path().join("vectors")).unwrap();
    let vectors = r#"{"plugin": "p", "vectors": [{"name": "rejects", "function": "f", "input": {"text": "x"}, "expect": {"status": 1}}]}"#;
    write(&dir.path().join("vectors"), "p.json", vectors.as_bytes());
    let empty_cases = dir.path().join("cases");
    std::fs::create_dir_all(&empty_cases).unwrap();
    let args = |plugins: &str| {
        pabi(&[
            "host-test",
            "--adapter",
            &format!("{} run --no-cache", env!("CARGO_BIN_EXE_pabi")),
            "--cases",
            empty_cases.to_str().unwrap(),
            "--vectors",
            dir.path().join("vectors").to_str().unwrap(),
            "--plugins",
            plugins,
        ])
    };
    let out = args(dir.path().join("plugins").to_str().unwrap());
    let report = String::from_utf8_lossy(&out.stdout);
    assert_eq!(exit_code(&out), 1, "{report}");
    assert!(report.contains("b/p `rejects`: differs from a"), "{report}");
    // One language alone agrees with itself.
    std::fs::remove_dir_all(dir.path().join("plugins/b")).unwrap();
    let out = args(dir.path().join("plugins").to_str().unwrap());
    assert_eq!(exit_code(&out), 0, "{}", String::from_utf8_lossy(&out.stdout));
}

#[test]
fn run_reads_a_large_input_from_stdin() {
    let dir = tempfile::tempdir().unwrap();
    let core = fixture("good", "core", dir.path());
    // Larger than one command-line argument may be.
    let input = vec![b'x'; 200 << 10];
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_pabi"))
        .args(["run", &core, "count", "--input", "-", "--no-cache"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let writer = std::thread::spawn(move || std::io::Write::write_all(&mut stdin, &input).map(|()| input));
    let out = child.wait_with_output().unwrap();
    let input = writer.join().unwrap().unwrap();
    assert_eq!(exit_code(&out), 0, "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.stdout, (input.len() as u32).to_le_bytes());
    let help = String::from_utf8(pabi(&["run", "--help"]).stdout).unwrap();
    let hex_help = help.split("--input-hex").nth(1).unwrap();
    assert!(hex_help.contains("128 KiB") && hex_help.contains("--input -"), "{help}");
}

/// `text.wasm` is conformed with `text.vectors.json` beside it.
#[test]
fn conform_picks_up_vectors_beside_the_plugin() {
    let dir = tempfile::tempdir().unwrap();
    let core = fixture("good", "core", dir.path());
    let vectors = |expected: &str| {
        format!(
            r#"{{"plugin": "core", "vectors": [{{"name": "echoes", "function": "echo", "input": {{"text": "hi"}}, "expect": {{"output": {{"text": "{expected}"}}}}}}]}}"#
        )
    };
    write(dir.path(), "core.vectors.json", vectors("hi").as_bytes());
    let out = pabi(&["conform", "--only", "vectors", "--format", "json", &core]);
    assert_eq!(exit_code(&out), 0, "{}", String::from_utf8_lossy(&out.stdout));
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(!report.contains("no --vectors file given"), "{report}");
    write(dir.path(), "core.vectors.json", vectors("ho").as_bytes());
    let out = pabi(&["conform", "--only", "vectors", &core]);
    assert_eq!(exit_code(&out), 1, "the wrong vector beside the plugin is used");
    assert!(String::from_utf8_lossy(&out.stdout).contains("echoes"));
}

/// Runs a reproducer command as a shell would, with this build's `pabi`.
fn replay(reproducer: &str) -> std::process::Output {
    let command = reproducer.strip_prefix("pabi ").unwrap_or_else(|| panic!("not a pabi command: {reproducer}"));
    std::process::Command::new("sh")
        .arg("-c")
        .arg(format!("\"$PABI\" {command} --no-cache"))
        .env("PABI", env!("CARGO_BIN_EXE_pabi"))
        .output()
        .unwrap()
}

/// A failure on an input of many KiB fits a terminal: the input is written
/// to a file of `--report-dir`, which the human, JUnit and JSON reports
/// name, and the `reproduce:` command replays the failure from it.
#[test]
fn conform_writes_a_long_failing_input_to_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let plugin = fixture("broken", "status-200-large-input", dir.path());
    // By default, in a new temporary folder that the report names.
    let human = pabi(&["conform", "--cases", "32", &plugin]);
    assert_eq!(exit_code(&human), 1, "{}", String::from_utf8_lossy(&human.stderr));
    for stream in [&human.stdout, &human.stderr] {
        let text = String::from_utf8_lossy(stream);
        let longest = text.lines().map(|line| line.chars().count()).max().unwrap_or(0);
        assert!(longest <= 500, "a line of {longest} characters:\n{text}");
    }
    let text = String::from_utf8_lossy(&human.stdout);
    let (size, input) = text
        .lines()
        .find_map(|line| line.trim().strip_prefix("minimal input: ")?.split_once(" bytes, starting "))
        .unwrap_or_else(|| panic!("{text}"));
    let input = std::path::PathBuf::from(input.split_once(", in ").unwrap().1);
    let len = std::fs::metadata(&input).unwrap().len();
    assert!(len > 5000 && size == len.to_string(), "{size} bytes shown, {len} in the file");
    let reproducer = text.lines().find_map(|line| line.trim().strip_prefix("reproduce: ")).unwrap();
    assert!(reproducer.ends_with(&format!("--input {}", input.display())), "{reproducer}");
    let replayed = replay(reproducer);
    assert_eq!(exit_code(&replayed), 3, "{}", String::from_utf8_lossy(&replayed.stderr));
    assert!(String::from_utf8_lossy(&replayed.stderr).contains("UNKNOWN_STATUS"));
    std::fs::remove_dir_all(input.parent().unwrap()).unwrap();

    // With --report-dir, there.
    let reports = dir.path().join("reproducers");
    let conform = |format: &str| {
        let out =
            pabi(&["conform", "--cases", "32", "--format", format, "--report-dir", reports.to_str().unwrap(), &plugin]);
        assert_eq!(exit_code(&out), 1, "{}", String::from_utf8_lossy(&out.stderr));
        out
    };
    let input = reports.join("status-200-large-input-status-f.input");
    let junit = String::from_utf8(conform("junit").stdout).unwrap();
    let len = std::fs::metadata(&input).unwrap().len();
    assert!(junit.contains(&format!("input: {len} bytes in {}", input.display())), "{junit}");
    let json: serde_json::Value = serde_json::from_slice(&conform("json").stdout).unwrap();
    let status = &json["plugins"][0]["checks"][1];
    assert_eq!((status["input_file"].as_str(), status["input_len"].as_u64()), (input.to_str(), Some(len)), "{status}");
}

/// A failing vector's reproducer gives the vector's host-call table, so
/// that the replay offers the required call and gives what the vector got
/// (without it, the plugin does not load: MISSING_CAPABILITY).
#[test]
fn conform_reproduces_a_failing_vector_with_its_host_call_table() {
    let dir = tempfile::tempdir().unwrap();
    let plugin = fixture("broken", "host-call-traps-on-failure", dir.path());
    let vectors = write(
        dir.path(),
        "vectors.json",
        br#"{"plugin":"p","vectors":[{"name":"shouts","host_calls":{"kv.get":[{"reply":"v"}]},"function":"f","input":{"text":"hi"},"expect":{"output":{"text":"HI"}}}]}"#,
    );
    let out = pabi(&["conform", "--only", "vectors", "--vectors", &vectors, "--format", "json", &plugin]);
    assert_eq!(exit_code(&out), 1, "{}", String::from_utf8_lossy(&out.stderr));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let vectors_check = &json["plugins"][0]["checks"][0];
    assert_eq!(vectors_check["vectors"], 1, "{vectors_check}");
    assert_eq!(vectors_check["message"], r#"vector `shouts`: expected output text "HI", got output (empty)"#);
    let reproducer = vectors_check["reproducer"].as_str().unwrap();
    let (command, table) = reproducer.split_once(", with FILE holding ").unwrap_or_else(|| panic!("{reproducer}"));
    let table_file = write(dir.path(), "table.json", table.as_bytes());
    let replayed = replay(&command.replace("--host-calls FILE", &format!("--host-calls {table_file}")));
    let stderr = String::from_utf8_lossy(&replayed.stderr);
    assert_eq!((exit_code(&replayed), replayed.stdout.as_slice()), (0, b"".as_slice()), "{stderr}");
}

/// The traps `pabi conform` provokes on purpose make the host warn; those
/// warnings stay out of the way unless asked for by target.
#[test]
fn conform_keeps_host_warnings_quiet() {
    let dir = tempfile::tempdir().unwrap();
    let trapping = fixture("broken", "trap-on-empty", dir.path());
    let run = |log: &str| {
        std::process::Command::new(env!("CARGO_BIN_EXE_pabi"))
            .args(["conform", "--cases", "16", &trapping])
            .env("PABI_LOG", log)
            .output()
            .unwrap()
    };
    let quiet = String::from_utf8(run("warn").stderr).unwrap();
    assert!(!quiet.contains("pabi_host"), "{quiet}");
    let asked = String::from_utf8(run("pabi_host=warn").stderr).unwrap();
    assert!(asked.contains("instance discarded"), "{asked}");
    assert!(!asked.contains('\u{1b}'), "no colour codes off a terminal: {asked:?}");
}

#[test]
fn run_on_an_unknown_function_lists_the_plugins_functions() {
    let dir = tempfile::tempdir().unwrap();
    let core = fixture("good", "core", dir.path());
    let out = pabi(&["run", &core, "nope", "--no-cache"]);
    assert_eq!(exit_code(&out), 3);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("UNKNOWN_FUNCTION") && stderr.contains("it has: echo, count"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn an_input_past_the_abi_length_is_input_limit_without_reading_it() {
    let dir = tempfile::tempdir().unwrap();
    let io = fixture("host-conformance", "io", dir.path());
    // A sparse file: 2 GiB long, no disk used, and never read (LIM-13).
    let big = dir.path().join("big.bin");
    std::fs::File::create(&big).unwrap().set_len(1 << 31).unwrap();
    let big = big.to_str().unwrap();
    let out = pabi(&["run", &io, "count", "--input", big, "--then", "count:", "--format", "json", "--no-cache"]);
    assert_eq!(exit_code(&out), 0, "{}", String::from_utf8_lossy(&out.stderr));
    let lines: Vec<serde_json::Value> =
        String::from_utf8_lossy(&out.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines[0]["kind"], "INPUT_LIMIT", "{lines:?}");
    assert_eq!(lines[1], serde_json::json!({"ok": true, "output_hex": "01000000"}), "no plugin code ran");
    // The same for a configuration: the load fails with that kind.
    let config = pabi(&["run", &io, "count", "--config", big, "--format", "json", "--no-cache"]);
    assert!(String::from_utf8_lossy(&config.stdout).contains("\"kind\":\"INPUT_LIMIT\""));
}

/// `pabi conform` is safe on a CI machine whatever the plugin: each hostile
/// plugin ends the run with a finding, within bounded time and disk.
#[test]
fn conform_is_bounded_on_hostile_plugins() {
    let dir = tempfile::tempdir().unwrap();
    for (name, finding) in [
        ("disk-filler", "conformance quota"),
        ("log-flood", "log cap"),
        // Sleeps 5 s, and forever, on the clock it declares: the run gives it
        // virtual time, so both return at once.
        ("real-sleeper", ""),
    ] {
        let plugin = fixture("hostile", name, dir.path());
        // A plugin that the run did not bound would hold it forever: the
        // outcome below is reached only if it was.
        let out = pabi(&["conform", "--cases", "16", "--format", "json", &plugin]);
        let report = String::from_utf8_lossy(&out.stdout);
        assert!(out.stderr.len() < 64 << 10, "{name}: {} bytes on stderr", out.stderr.len());
        if finding.is_empty() {
            assert_eq!(exit_code(&out), 0, "{name}: {report}");
        } else {
            assert_eq!(exit_code(&out), 1, "{name}: {report}");
            assert!(report.contains(finding), "{name}: {report}");
        }
    }
}

/// Plugin text reaches the terminal escaped: an error message and a log
/// record with escape sequences and line breaks (`SEC-3`).
#[test]
fn plugin_text_is_escaped_before_it_reaches_the_terminal() {
    let dir = tempfile::tempdir().unwrap();
    let wasm = wat::parse_str(
        r#"(module
          (import "pabi" "error_write" (func $error_write (param i32 i32) (result i32)))
          (import "pabi" "log" (func $log (param i32 i32 i32) (result i32)))
          (memory (export "memory") 1)
          (data (i32.const 0) "\1b[2J\1b[Hforged\nerror: all good\07")
          (func (export "pabi_fn_f") (param i32) (result i32)
            (drop (call $log (i32.const 0) (i32.const 0) (i32.const 30)))
            (drop (call $error_write (i32.const 0) (i32.const 30)))
            (i32.const 1))
          (@custom "pabi" "{\"abi\":\"1.0\",\"name\":\"evil\",\"version\":\"1.0.0\",\"profile\":\"core\",\"functions\":[{\"name\":\"f\"}],\"capabilities\":[]}"))"#,
    )
    .unwrap();
    let plugin = write(dir.path(), "evil.wasm", &wasm);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_pabi"))
        .args(["run", &plugin, "f", "--no-cache"])
        .env("PABI_LOG", "info")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(exit_code(&out), 1, "{stderr}");
    assert!(!stderr.contains('\x1b') && !stderr.contains('\x07'), "raw control characters: {stderr:?}");
    assert!(!stderr.lines().any(|l| l.starts_with("error: all good")), "a forged line: {stderr}");
    assert_eq!(stderr.matches("\\u{1b}[2J\\u{1b}[Hforged\\nerror: all good\\u{7}").count(), 2, "{stderr}");
}

/// A sparse plugin file of 1 TiB: refused by its size, since reading it
/// into memory would fail or take far longer than a test (an allocation
/// of 1 TiB is refused by a kernel that does not overcommit).
fn terabyte_plugin(dir: &std::path::Path) -> String {
    let path = dir.join("big.wasm");
    std::fs::File::create(&path).unwrap().set_len(1 << 40).unwrap();
    path.to_str().unwrap().to_string()
}

#[test]
fn run_refuses_a_plugin_file_past_the_compile_budget_by_its_size() {
    let dir = tempfile::tempdir().unwrap();
    let big = terabyte_plugin(dir.path());
    let raw = pabi(&["run", &big, "echo", "--no-cache"]);
    let stderr = String::from_utf8_lossy(&raw.stderr);
    assert_eq!(exit_code(&raw), 3, "a host error, as for any module past the budget: {stderr}");
    assert!(stderr.contains("MODULE_LIMIT") && stderr.contains(&(1u64 << 40).to_string()), "{stderr}");
    let json = pabi(&["run", &big, "echo", "--no-cache", "--format", "json"]);
    assert_eq!(exit_code(&json), 0, "{}", String::from_utf8_lossy(&json.stderr));
    let line: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!((line["ok"].as_bool(), line["kind"].as_str()), (Some(false), Some("MODULE_LIMIT")), "{line}");
}

/// `--host-call-command` is held to the call's bounds: `yes` is read to the
/// reply cap and one byte and the plugin sees E_LIMIT (LIM-14); a command
/// past the deadline is ended there and the call is a TIMEOUT (CALL-7).
#[test]
fn run_holds_host_call_commands_to_the_reply_cap_and_the_deadline() {
    let dir = tempfile::tempdir().unwrap();
    let plugin = fixture("host-conformance", "host-calls", dir.path());
    // `call`: read 16 reply bytes from 0 after calling kv.get with nothing.
    let input = "000000001000000006000000".to_string() + "6b762e676574";
    let bounded = |command: &str, timeout: &str| {
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_pabi"))
            .args(["run", &plugin, "call", "--input-hex", &input, "--no-cache", "--max-reply", "4KiB"])
            .args(["--timeout", timeout, "--host-call-command", command])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        // A bound against a hang only: before the bounds, both ran on.
        let started = std::time::Instant::now();
        while child.try_wait().unwrap().is_none() {
            if started.elapsed() > std::time::Duration::from_secs(15) {
                child.kill().unwrap();
                child.wait().unwrap();
                panic!("`pabi run` with --host-call-command {command} did not end");
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        child.wait_with_output().unwrap()
    };
    let flood = bounded("kv.get=yes", "10s");
    assert_eq!(exit_code(&flood), 0, "{}", String::from_utf8_lossy(&flood.stderr));
    assert_eq!(flood.stdout[..8], [(-1i32).to_le_bytes(), 0i32.to_le_bytes()].concat()[..], "E_LIMIT");
    let slow = bounded("kv.get=sleep 30", "300ms");
    assert_eq!(exit_code(&slow), 3, "{}", String::from_utf8_lossy(&slow.stderr));
    assert!(String::from_utf8_lossy(&slow.stderr).contains("TIMEOUT"));
}

/// A host killed with `SIGKILL` takes the process groups of its
/// `--host-call-command`s with it, what the commands started included: no
/// code of the host runs then, so the reaper it started ends them.
#[cfg(target_os = "linux")]
#[test]
fn host_call_commands_die_with_a_killed_host() {
    use std::io::Read;
    use std::time::Duration;
    // A bound against a hang only: every wait below is for an event.
    const GUARD: Duration = Duration::from_secs(15);
    let dir = tempfile::tempdir().unwrap();
    let plugin = fixture("host-conformance", "host-calls", dir.path());
    // `call`: read 16 reply bytes from 0 after calling kv.get with nothing.
    let input = "000000001000000006000000".to_string() + "6b762e676574";
    // The command says its own pid and its child's through a FIFO once
    // both run.
    let fifo = dir.path().join("pids");
    assert!(std::process::Command::new("mkfifo").arg(&fifo).status().unwrap().success());
    let told = {
        let (send, told) = std::sync::mpsc::channel();
        let fifo = fifo.clone();
        std::thread::spawn(move || {
            let mut line = String::new();
            std::fs::File::open(fifo).and_then(|mut f| f.read_to_string(&mut line)).unwrap();
            let _ = send.send(line);
        });
        told
    };
    let mut host = std::process::Command::new(env!("CARGO_BIN_EXE_pabi"))
        .args(["run", &plugin, "call", "--input-hex", &input, "--no-cache", "--timeout", "60s"])
        // The command reads its request to the end first: the host closes
        // it after it has told the reaper of the command's group, so the
        // sleep starts only once the group is covered.
        .arg("--host-call-command")
        .arg(format!("kv.get=sh -c 'cat >/dev/null; sleep 3600 & echo $$ $! >{}; exec sleep 3600'", fifo.display()))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let Ok(line) = told.recv_timeout(GUARD) else {
        let _ = host.kill();
        panic!("the command and its child did not start");
    };
    let pids: Vec<i32> = line.split_whitespace().map(|pid| pid.parse().unwrap()).collect();
    assert_eq!(pids.len(), 2, "{line:?}");
    // Opened before the host dies: a pid the system gives to another
    // process later cannot be mistaken for them.
    let exits: Vec<_> = pids
        .iter()
        .map(|&pid| {
            rustix::process::pidfd_open(
                rustix::process::Pid::from_raw(pid).unwrap(),
                rustix::process::PidfdFlags::empty(),
            )
        })
        .collect::<Result<_, _>>()
        .expect("the command and its child run");
    host.kill().unwrap();
    host.wait().unwrap();
    let guard = rustix::time::Timespec { tv_sec: GUARD.as_secs() as _, tv_nsec: 0 };
    for (pid, exit) in pids.iter().zip(&exits) {
        let mut ended = [rustix::event::PollFd::new(exit, rustix::event::PollFlags::IN)];
        if rustix::event::poll(&mut ended, Some(&guard)).unwrap() == 0 {
            for pid in &pids {
                let _ = std::process::Command::new("kill").args(["-KILL", &pid.to_string()]).status();
            }
            panic!("{pid}, the command or its child, outlived its host");
        }
    }
}
