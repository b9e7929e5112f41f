//! `pabi serve` as a process: it announces its address, serves, reloads a
//! changed file, and on SIGTERM lets the call in flight finish before it
//! exits 0.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::Duration;

/// A raw HTTP/1.1 request; the answer's status code and body.
fn http(address: &str, method: &str, path: &str, body: &[u8]) -> (u16, Vec<u8>) {
    let mut stream = TcpStream::connect(address).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {address}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).unwrap();
    stream.write_all(body).unwrap();
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).unwrap();
    let split = answer.windows(4).position(|w| w == b"\r\n\r\n").expect("a complete answer");
    let head = String::from_utf8_lossy(&answer[..split]).to_string();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    (status, answer[split + 4..].to_vec())
}

fn fixture(folder: &str, name: &str) -> Vec<u8> {
    let path = pabi_fixtures::fixtures_dir().join(folder).join(format!("{name}.wat"));
    pabi_fixtures::compile_wat(&path).unwrap().wasm
}

/// `pabi serve ARGS --listen 127.0.0.1:0`: the child, its address, and the
/// thread that reads its log to the end.
fn start_serve(args: &[&str]) -> (std::process::Child, String, std::thread::JoinHandle<String>) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_pabi"))
        .arg("serve")
        .args(args)
        .args(["--listen", "127.0.0.1:0"])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let address = loop {
        let mut line = String::new();
        assert!(stderr.read_line(&mut line).unwrap() > 0, "pabi serve exited before listening");
        if let Some(address) = line.trim().strip_prefix("listening on http://") {
            break address.to_string();
        }
    };
    // Keep reading the log so the server never blocks on a full pipe.
    let log = std::thread::spawn(move || {
        let mut rest = String::new();
        stderr.read_to_string(&mut rest).unwrap();
        rest
    });
    (child, address, log)
}

/// A host call of a plugin in a worker process reaches the command that
/// `--host-call-command` names, run by the server; `host_calls` narrows
/// what a plugin is offered.
#[test]
fn serve_offers_host_call_commands_to_isolated_plugins_by_allow_list() {
    let dir = tempfile::tempdir().unwrap();
    let plugins = dir.path().join("plugins");
    std::fs::create_dir(&plugins).unwrap();
    let wasm = fixture("host-conformance", "host-calls");
    std::fs::write(plugins.join("hc.wasm"), &wasm).unwrap();
    std::fs::write(plugins.join("strict.wasm"), &wasm).unwrap();
    std::fs::write(dir.path().join("plugins.toml"), "[plugins.strict]\nhost_calls = [\"kv.note\"]\n").unwrap();
    let (mut child, address, log) = start_serve(&[
        plugins.to_str().unwrap(),
        "--isolation",
        "worker_process",
        "--host-call-command",
        "kv.get=tr a-z A-Z",
    ]);
    let mut input = Vec::new();
    for word in [0u32, 64, 6] {
        input.extend(word.to_le_bytes());
    }
    input.extend(b"kv.getapple");
    let (status, output) = http(&address, "POST", "/v1/plugins/hc/call", &input);
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&output));
    assert_eq!(&output[8..], b"APPLE", "the reply of `tr`, run by the server");
    let (_, list) = http(&address, "GET", "/v1/plugins", b"");
    let list = String::from_utf8(list).unwrap();
    assert!(list.contains("host_call:kv.get"), "strict is refused: its allow list leaves out kv.get: {list}");
    Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    assert_eq!(child.wait().unwrap().code(), Some(0));
    log.join().unwrap();
}

#[test]
fn serve_answers_reloads_and_drains_on_sigterm() {
    serve_scenario(&[]);
}

/// The same through worker processes started from `pabi` itself; they end
/// with the server.
#[test]
fn serve_with_worker_process_isolation_answers_reloads_and_drains_on_sigterm() {
    serve_scenario(&["--isolation", "worker_process"]);
}

fn serve_scenario(extra: &[&str]) {
    let dir = tempfile::tempdir().unwrap();
    let plugins = dir.path().join("plugins");
    std::fs::create_dir(&plugins).unwrap();
    let life = fixture("host-conformance", "lifecycle");
    std::fs::write(plugins.join("life.wasm"), &life).unwrap();
    std::fs::write(plugins.join("io.wasm"), fixture("host-conformance", "io")).unwrap();
    // Found beside the folder, without --config.
    std::fs::write(dir.path().join("plugins.toml"), "[defaults]\ninstances = 1\n[plugins.io]\ntimeout = \"1500ms\"\n")
        .unwrap();
    let mut args = vec![plugins.to_str().unwrap(), "--watch", "50ms"];
    args.extend(extra);
    let (mut child, address, log) = start_serve(&args);

    assert_eq!(http(&address, "POST", "/v1/plugins/life/set", b"state"), (200, vec![]));
    assert_eq!(http(&address, "GET", "/healthz", b""), (200, b"ok\n".to_vec()));
    let (_, list) = http(&address, "GET", "/v1/plugins", b"");
    let list: serde_json::Value = serde_json::from_slice(&list).unwrap();
    let workers: Vec<u64> = list["plugins"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|plugin| plugin["pool"]["worker"]["pid"].as_u64())
        .collect();
    let isolated = extra.contains(&"worker_process");
    assert_eq!(workers.len(), if isolated { 2 } else { 0 }, "{list}");

    // A new version of the file: reloaded within a few scans, state kept.
    let mut next = life.clone();
    next.extend([0, 3, 1, b'v', 1]);
    std::fs::write(plugins.join("life.wasm"), &next).unwrap();
    let reloaded = (0..200).any(|_| {
        std::thread::sleep(Duration::from_millis(25));
        let (_, list) = http(&address, "GET", "/v1/plugins", b"");
        String::from_utf8_lossy(&list).contains("\"reloads\":1")
    });
    assert!(reloaded, "the changed file was not reloaded");
    assert_eq!(http(&address, "POST", "/v1/plugins/life/get", b""), (200, b"state".to_vec()));

    // A call that runs into its deadline (1.5 s) is in flight when SIGTERM
    // arrives: it still gets its answer, then the server exits 0.
    let slow = {
        let address = address.clone();
        std::thread::spawn(move || http(&address, "POST", "/v1/plugins/io/spin", b""))
    };
    let in_flight = (0..2000).any(|_| {
        let (_, list) = http(&address, "GET", "/v1/plugins", b"");
        let list: serde_json::Value = serde_json::from_slice(&list).unwrap();
        let io = list["plugins"].as_array().unwrap().iter().find(|p| p["name"] == "io").cloned().unwrap();
        io["pool"]["busy"] == 1 || {
            std::thread::sleep(Duration::from_millis(1));
            false
        }
    });
    assert!(in_flight, "the slow call never started");
    let killed = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    assert!(killed.success());
    let (status, body) = slow.join().unwrap();
    assert_eq!(status, 504, "{}", String::from_utf8_lossy(&body));
    let exit = child.wait().unwrap();
    assert_eq!(exit.code(), Some(0));
    let log = log.join().unwrap();
    assert!(log.contains("draining") && log.contains("stopped"), "{log}");
    for pid in workers {
        assert!(!std::path::Path::new(&format!("/proc/{pid}")).exists(), "worker {pid} outlived the server");
    }
}

/// Clients that stall (a head without its end, a chunked body without its
/// last chunk) do not keep the server up after SIGTERM: it exits 0 once
/// its grace is over.
#[test]
fn serve_exits_within_its_grace_after_sigterm_while_clients_stall() {
    let dir = tempfile::tempdir().unwrap();
    let plugins = dir.path().join("plugins");
    std::fs::create_dir(&plugins).unwrap();
    std::fs::write(plugins.join("io.wasm"), fixture("host-conformance", "io")).unwrap();
    // The timeouts that would close the stalled connections on their own
    // are longer than the guard: only the grace can end them.
    let (mut child, address, log) =
        start_serve(&[plugins.to_str().unwrap(), "--grace", "1s", "--header-timeout", "1h", "--body-timeout", "1h"]);
    let mut half_head = TcpStream::connect(&address).unwrap();
    half_head.write_all(b"POST /v1/plugins/io/echo HTTP/1.1\r\nHost: pabi\r\n").unwrap();
    let mut unended = TcpStream::connect(&address).unwrap();
    unended
        .write_all(
            b"POST /v1/plugins/io/echo HTTP/1.1\r\nHost: pabi\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n",
        )
        .unwrap();
    // Both are being served before the signal: a request on a third
    // connection is answered after theirs were accepted.
    assert_eq!(http(&address, "GET", "/healthz", b"").0, 200);
    assert!(Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap().success());
    // A bound against a hang, far past the grace.
    let guard = std::time::Instant::now() + Duration::from_secs(20);
    let exit = loop {
        if let Some(exit) = child.try_wait().unwrap() {
            break exit;
        }
        if std::time::Instant::now() > guard {
            child.kill().unwrap();
            panic!("pabi serve still running 20 s after SIGTERM with a 1 s grace");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(exit.code(), Some(0));
    let log = log.join().unwrap();
    assert!(log.contains("stopped"), "{log}");
    drop((half_head, unended));
}

#[test]
fn serve_refuses_a_missing_folder_and_bad_settings_with_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope");
    let out = crate::pabi(&["serve", missing.to_str().unwrap(), "--listen", "127.0.0.1:0"]);
    assert_eq!(crate::exit_code(&out), 2);
    assert!(String::from_utf8_lossy(&out.stderr).contains("is not a folder"));
    let config = crate::write(dir.path(), "bad.toml", b"[plugins.x]\ninstances = 0\n");
    let out = crate::pabi(&["serve", dir.path().to_str().unwrap(), "--config", &config, "--listen", "127.0.0.1:0"]);
    assert_eq!(crate::exit_code(&out), 2);
    assert!(String::from_utf8_lossy(&out.stderr).contains("instances must be at least 1"), "{out:?}");
}
