//! `process` isolation: plugins in worker processes, through the same
//! routes.

use std::time::Duration;

use axum::http::StatusCode;
use pabi_serve::protocol::{Failure, FromWorker, HostFunctionOffer, ToWorker};
use pabi_serve::{PluginSettings, ProcessPool, ServeConfig, Server, WorkerCommand, WorkerError};

use super::{fixture, new_version, request, runtime};

fn worker() -> WorkerCommand {
    WorkerCommand::new(env!("CARGO_BIN_EXE_pabi-serve-worker"), Vec::<String>::new())
}

fn isolated(dir: &std::path::Path, toml: &str) -> Server {
    let config = ServeConfig::from_toml(&format!("[defaults]\nisolation = \"process\"\n{toml}")).unwrap();
    let server = Server::new(dir.to_path_buf(), config).with_worker_command(worker());
    server.scan();
    server
}

fn settings(toml: &str) -> PluginSettings {
    ServeConfig::from_toml(&format!("[plugins.p]\n{toml}")).unwrap().settings("p")
}

fn spawn(plugin: &str, toml: &str, wasm: &[u8]) -> Result<ProcessPool, WorkerError> {
    ProcessPool::builder(plugin).settings(settings(toml)).command(worker()).spawn(wasm)
}

fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| !stat.contains(") Z "))
}

#[test]
fn a_worker_answers_every_call_as_the_in_process_pool_does() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("io.wasm"), fixture("host-conformance", "io")).unwrap();
    let toml = "[plugins.io]\ntimeout = \"100ms\"\nmax_input = \"1 KiB\"\ninstances = 1";
    let in_process = super::server(dir.path(), toml);
    let isolated = isolated(dir.path(), toml);
    assert!(isolated.pool("io").is_none() && isolated.process_pool("io").is_some(), "served by a worker");
    runtime().block_on(async {
        for (uri, body) in [
            ("/v1/plugins/io/echo", b"hello".to_vec()),
            ("/v1/plugins/io/nope", vec![]),
            ("/v1/plugins/io/fail", vec![]),
            ("/v1/plugins/io/spin", vec![]),
            ("/v1/plugins/io/trap", vec![]),
            ("/v1/plugins/io/echo", vec![b'x'; 1025]),
        ] {
            let expected = request(&in_process, "POST", uri, body.clone()).await;
            let answer = request(&isolated, "POST", uri, body).await;
            assert_eq!(answer.status, expected.status, "{uri}");
            if answer.status == StatusCode::OK {
                assert_eq!(answer.body, expected.body, "{uri}");
            } else {
                let (got, want) = (answer.error(), expected.error());
                assert_eq!((&got.kind, got.status), (&want.kind, want.status), "{uri}");
                if got.kind != "TRAP" {
                    // A trap's backtrace names the same frames, but the
                    // message is otherwise the same word for word too.
                    assert_eq!(got.message, want.message, "{uri}");
                }
            }
        }
        let list: serde_json::Value =
            serde_json::from_slice(&request(&isolated, "GET", "/v1/plugins", vec![]).await.body).unwrap();
        assert_eq!(list["plugins"][0]["pool"]["isolation"], "process");
        assert!(list["plugins"][0]["pool"]["worker"]["pid"].as_u64().is_some_and(|pid| pid > 0), "{list}");
    });
}

/// A call whose worker ended during it is `HOST_FAILURE` (ERR-6): the host
/// failed, whatever the plugin did.
#[test]
fn killing_a_worker_fails_only_the_calls_it_held_and_it_comes_back() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("io.wasm"), fixture("host-conformance", "io")).unwrap();
    std::fs::write(dir.path().join("echo.wasm"), fixture("good", "core")).unwrap();
    let server = isolated(dir.path(), "[plugins.io]\ntimeout = \"20s\"\ninstances = 1");
    let (io, echo) = (server.process_pool("io").unwrap(), server.process_pool("echo").unwrap());
    let (pid, echo_pid) = (io.stats().pid.unwrap(), echo.stats().pid.unwrap());
    assert_ne!(pid, echo_pid, "a worker per plugin");
    runtime().block_on(async {
        let spinning = {
            let server = server.clone();
            tokio::spawn(async move { request(&server, "POST", "/v1/plugins/io/spin", vec![]).await })
        };
        while io.stats().in_flight == 0 {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        // The call is in the worker (it spins until its 20 s deadline).
        tokio::time::sleep(Duration::from_millis(50)).await;
        std::process::Command::new("kill").args(["-9", &pid.to_string()]).status().unwrap();
        let killed = spinning.await.unwrap();
        assert_eq!(killed.status, StatusCode::SERVICE_UNAVAILABLE);
        let error = killed.error();
        assert_eq!(error.kind, "HOST_FAILURE");
        assert!(error.message.contains("ended during the call") && error.message.contains("SIGKILL"), "{error:?}");
        // Its neighbour never noticed, and the plugin is served again.
        let answer = request(&server, "POST", "/v1/plugins/echo/echo", b"next door".to_vec()).await;
        assert_eq!((answer.status, answer.body.as_slice()), (StatusCode::OK, &b"next door"[..]));
        let answer = request(&server, "POST", "/v1/plugins/io/echo", b"back".to_vec()).await;
        assert_eq!((answer.status, answer.body.as_slice()), (StatusCode::OK, &b"back"[..]));
    });
    let stats = io.stats();
    assert_eq!(stats.restarts, 1);
    assert!(stats.pid.is_some_and(|new| new != pid) && !alive(pid));
    assert_eq!((echo.stats().restarts, echo.stats().pid), (0, Some(echo_pid)));
    let metrics = runtime().block_on(request(&server, "GET", "/metrics", vec![]));
    let metrics = String::from_utf8(metrics.body).unwrap();
    assert!(metrics.lines().any(|l| l == r#"pabi_worker_restarts{plugin="io"} 1"#), "{metrics}");
}

#[cfg(target_os = "linux")]
#[test]
fn a_worker_runs_under_its_os_limits() {
    let wasm = fixture("good", "core");
    let pool = spawn("echo", "worker_cpu_time = \"30s\"\ninstances = 1", &wasm).unwrap();
    let pid = pool.stats().pid.unwrap();
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    assert!(status.lines().any(|l| l.split_whitespace().eq(["NoNewPrivs:", "1"])), "{status}");
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    let limit = |name: &str| -> Vec<String> {
        let line = limits.lines().find(|l| l.starts_with(name)).unwrap_or_else(|| panic!("{limits}"));
        line[name.len()..].split_whitespace().take(2).map(str::to_string).collect()
    };
    assert_eq!(limit("Max core file size"), ["0", "0"]);
    assert_eq!(limit("Max cpu time"), ["30", "31"]);
    let address_space: u64 = limit("Max address space")[0].parse().expect("a finite address space");
    let size_now: u64 =
        std::fs::read_to_string(format!("/proc/{pid}/statm")).unwrap().split(' ').next().unwrap().parse().unwrap();
    let size_now = size_now * 4096;
    assert!(address_space > size_now && address_space - size_now <= 1 << 30, "{address_space} vs {size_now}");
    assert_eq!(pool.call("echo", b"limited").unwrap(), b"limited");
}

#[test]
fn a_worker_reloads_with_state_and_refuses_what_the_host_refuses() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("life.wasm");
    let wasm = fixture("host-conformance", "lifecycle");
    std::fs::write(&file, &wasm).unwrap();
    std::fs::write(dir.path().join("broken.wasm"), b"\0asm broken").unwrap();
    let server = isolated(dir.path(), "[plugins.life]\ninstances = 1");
    let pool = server.process_pool("life").unwrap();
    assert_eq!(pool.call("set", b"kept").unwrap(), b"");
    std::fs::write(&file, new_version(&wasm, 1)).unwrap();
    assert_eq!(server.scan().reloaded, ["life"]);
    assert_eq!(pool.call("get", b"").unwrap(), b"kept", "the state moved to the new version in the worker");
    assert_eq!(pool.stats().generation, 1);
    std::fs::write(&file, b"\0asm broken too").unwrap();
    let report = server.scan();
    assert!(report.refused.iter().any(|(name, e)| name == "life" && e.contains("INVALID_MODULE")), "{report:?}");
    assert_eq!(pool.call("get", b"").unwrap(), b"kept", "the old version keeps serving");
    let list = runtime().block_on(request(&server, "GET", "/v1/plugins", vec![]));
    let list: serde_json::Value = serde_json::from_slice(&list.body).unwrap();
    let refused = list["refused"].as_array().unwrap();
    assert!(refused.iter().any(|r| r["name"] == "broken" && r["error"].as_str().unwrap().contains("INVALID_MODULE")));
    assert!(server.process_pool("broken").is_none());
}

#[test]
fn a_dropped_call_is_cancelled_in_the_worker() {
    let wasm = fixture("host-conformance", "io");
    let pool = spawn("io", "instances = 1\ntimeout = \"30s\"\nqueue_timeout = \"5s\"", &wasm).unwrap();
    runtime().block_on(async {
        // The client goes away after 100 ms; the spin would hold the only
        // instance for 30 s.
        let gone = tokio::time::timeout(Duration::from_millis(100), pool.call_async("spin", vec![])).await;
        assert!(gone.is_err(), "the spin cannot finish in 100 ms");
        // Only a cancelled spin frees the instance before the next call's
        // 5 s wait in the queue runs out.
        assert_eq!(pool.call_async("echo", b"free".to_vec()).await.unwrap(), b"free");
    });
    let cancel = pabi_serve::protocol::Failure::new(Some(pabi_abi::HostErrorKind::Cancelled), "");
    assert_eq!(WorkerError::Cancelled.failure().kind, cancel.kind);
}

#[test]
fn closing_a_pool_ends_its_worker_and_a_worker_that_cannot_start_is_an_error() {
    let wasm = fixture("good", "core");
    let pool = spawn("echo", "", &wasm).unwrap();
    let pid = pool.stats().pid.unwrap();
    let clone = pool.clone();
    drop(pool);
    assert!(alive(pid), "a clone keeps it");
    clone.shutdown();
    assert!(!alive(pid), "shutdown waits for the worker to end");
    assert!(matches!(clone.call("echo", b"x"), Err(WorkerError::Unavailable { .. })), "no call after shutdown");
    // The last clone dropped ends the worker too, without waiting for it.
    let pool = spawn("echo", "", &wasm).unwrap();
    let pid = pool.stats().pid.unwrap();
    drop(pool);
    let gone = (0..1000).any(|_| {
        std::thread::sleep(Duration::from_millis(10));
        !alive(pid)
    });
    assert!(gone, "worker {pid} outlived its pool");

    let missing = WorkerCommand::new("/nonexistent/pabi-worker", Vec::<String>::new());
    let error = ProcessPool::builder("echo").command(missing).spawn(&wasm).unwrap_err();
    assert!(matches!(&error, WorkerError::Unavailable { reason, .. } if reason.contains("cannot start")), "{error}");
    let refused = spawn("echo", "", b"\0asm\x01\0\0\0").unwrap_err();
    assert!(refused.to_string().contains("INVALID_MODULE"), "{refused}");
    // The failure has the HTTP layer's shape.
    let failure = error.failure();
    assert_eq!((failure.kind.as_deref(), failure.retry_after), (Some("HOST_FAILURE"), Some(1)));
}

#[test]
fn every_worker_message_matches_the_protocol_schema() {
    let schema: serde_json::Value = serde_json::from_str(pabi_serve::protocol::WORKER_PROTOCOL_SCHEMA).unwrap();
    let validator = jsonschema::validator_for(&schema).unwrap();
    let wasm = fixture("good", "core");
    let pool = spawn("echo", "", &wasm).unwrap();
    let metadata = Box::new((*pool.metadata()).clone());
    let full = settings(
        "instances = 2\nmax_queue = 3\nqueue_timeout = \"1s 500ms\"\ntimeout = \"2s\"\nmax_memory = \"1000000 B\"\n\
         max_output = \"1 MiB\"\nmax_input = \"2 KiB\"\nfuel = 5\nallow_clock = true\nallow_random = false\n\
         env = { A = \"1\" }\ndirs = [\"/tmp:/data:ro\"]\nconfig = \"c\"\nisolation = \"process\"\n\
         worker_cpu_time = \"1m\"\nworker_address_headroom = \"512 MiB\"\nhost_calls = [\"kv.get\"]",
    );
    let mut failure = Failure::new(Some(pabi_abi::HostErrorKind::PluginError), "bad input");
    failure.status = Some(1);
    let messages = [
        serde_json::to_value(ToWorker::Load {
            plugin: "echo".into(),
            settings: Box::new(full.clone()),
            host_functions: vec![HostFunctionOffer::of(
                &pabi_host::HostFunction::new("kv.get", |_, _| Ok(vec![])).unwrap().only_for(["enrich"]),
            )],
        })
        .unwrap(),
        serde_json::to_value(ToWorker::Load {
            plugin: "echo".into(),
            settings: Box::default(),
            host_functions: vec![],
        })
        .unwrap(),
        serde_json::to_value(ToWorker::Call { id: 1, function: "echo".into() }).unwrap(),
        serde_json::to_value(ToWorker::Cancel { id: 1 }).unwrap(),
        serde_json::to_value(ToWorker::Reload { id: 2 }).unwrap(),
        serde_json::to_value(ToWorker::HostReply { id: 3, error: None }).unwrap(),
        serde_json::to_value(ToWorker::HostReply { id: 3, error: Some("full".into()) }).unwrap(),
        serde_json::to_value(FromWorker::HostCall {
            id: 3,
            name: "kv.get".into(),
            plugin: "enrich".into(),
            function: "pabi_init".into(),
        })
        .unwrap(),
        serde_json::to_value(FromWorker::Ready { pid: 7, metadata: metadata.clone() }).unwrap(),
        serde_json::to_value(FromWorker::Refused { message: "no".into() }).unwrap(),
        serde_json::to_value(FromWorker::Output { id: 1 }).unwrap(),
        serde_json::to_value(FromWorker::Failed { id: 1, failure }).unwrap(),
        serde_json::to_value(FromWorker::Failed { id: 1, failure: Failure::new(None, "config") }).unwrap(),
        serde_json::to_value(FromWorker::Reloaded { id: 2, metadata }).unwrap(),
    ];
    for message in &messages {
        let errors: Vec<String> = validator.iter_errors(message).map(|e| e.to_string()).collect();
        assert!(errors.is_empty(), "{message}: {errors:?}");
    }
    // Settings cross exactly: sizes as byte counts, durations to the unit.
    let ToWorker::Load { settings, .. } = serde_json::from_value(messages[0].clone()).unwrap() else { panic!() };
    assert_eq!(*settings, full);
    assert_eq!(messages[0]["settings"]["max_memory"], 1_000_000);
    for bad in [
        serde_json::json!({"op": "call", "function": "echo"}),
        serde_json::json!({"op": "launch"}),
        serde_json::json!({"op": "failed", "id": 1, "failure": {"kind": "OOPS", "status": null, "message": "", "retry_after": null}}),
        serde_json::json!({"op": "load", "plugin": "p", "settings": {"max_memory": "64 MiB"}}),
        serde_json::json!({"op": "load", "plugin": "p", "settings": {}, "host_functions": [{"name": "Bad Name", "only_for": null}]}),
        serde_json::json!({"op": "host_reply", "id": 1}),
    ] {
        assert!(!validator.is_valid(&bad), "{bad} should not match");
    }
}

/// The `call` function of the host-calls fixture: it makes the host call
/// `name` with `request` and outputs the host call's code, the count
/// `reply_read` copied and the reply.
fn host_call_input(name: &str, request: &[u8]) -> Vec<u8> {
    let mut input = Vec::new();
    for word in [0u32, 256, name.len() as u32] {
        input.extend(word.to_le_bytes());
    }
    input.extend(name.as_bytes());
    input.extend(request);
    input
}

fn host_call_output(output: &[u8]) -> (i32, i32, Vec<u8>) {
    let word = |at: usize| i32::from_le_bytes(output[at..at + 4].try_into().unwrap());
    (word(0), word(4), output[8..].to_vec())
}

#[test]
fn host_functions_run_in_the_server_for_both_isolations_as_the_allow_list_says() {
    let dir = tempfile::tempdir().unwrap();
    let wasm = fixture("host-conformance", "host-calls");
    std::fs::write(dir.path().join("hc.wasm"), &wasm).unwrap();
    std::fs::write(dir.path().join("strict.wasm"), &wasm).unwrap();
    let toml = "[plugins.hc]\nhost_calls = [\"kv.get\", \"kv.note\"]\n[plugins.strict]\nhost_calls = []";
    let server_pid = std::process::id();
    let functions = || {
        let get = pabi_host::HostFunction::new("kv.get", move |cx, request| {
            // Where the handler runs: always the server's process.
            let mut reply =
                format!("{}/{}/{}/{}:", cx.plugin(), cx.function(), cx.host_call(), std::process::id() == server_pid);
            reply.push_str(std::str::from_utf8(request).unwrap());
            Ok(reply.into_bytes())
        })
        .unwrap();
        let note = pabi_host::HostFunction::new("kv.note", |_, _| Err(pabi_host::HostCallError::new("full"))).unwrap();
        let slow = pabi_host::HostFunction::new("kv.slow", |_, _| Ok(b"never offered".to_vec())).unwrap();
        [get, note, slow]
    };
    let mut outputs = Vec::new();
    for isolation in ["thread", "process"] {
        let config = ServeConfig::from_toml(&format!("[defaults]\nisolation = \"{isolation}\"\n{toml}")).unwrap();
        let mut server = Server::new(dir.path().to_path_buf(), config).with_worker_command(worker());
        for function in functions() {
            server = server.host_function(function);
        }
        let report = server.scan();
        assert_eq!(report.loaded, ["hc"], "{isolation}: {report:?}");
        let (name, why) = &report.refused[0];
        assert!(name == "strict" && why.contains("MISSING_CAPABILITY") && why.contains("host_call:kv.get"), "{why}");
        runtime().block_on(async {
            let mut answers = Vec::new();
            for (call, body) in [("kv.get", &b"apple"[..]), ("kv.note", b"x"), ("kv.slow", b"x")] {
                let answer = request(&server, "POST", "/v1/plugins/hc/call", host_call_input(call, body)).await;
                assert_eq!(answer.status, StatusCode::OK, "{isolation} {call}");
                answers.push(host_call_output(&answer.body));
            }
            let reply = b"host-calls/call/kv.get/true:apple".to_vec();
            let expected = [(reply.len() as i32, reply.len() as i32, reply), (-4, 4, b"full".to_vec()), (-5, 0, vec![])];
            assert_eq!(
                answers, expected,
                "{isolation}: kv.get served, kv.note failed (E_FAILED, its message the reply), kv.slow absent (E_ABSENT)"
            );
            outputs.push(answers);
        });
    }
    assert_eq!(outputs[0], outputs[1]);
}

/// A plugin that asks `kv.get` for "seed" in `pabi_init` (HOST-8 allows
/// host calls there) and whose `seed` function returns the reply.
const SEEDED: &str = r#"(module
  (import "pabi" "output_write" (func $write (param i32 i32) (result i32)))
  (import "pabi" "host_call" (func $host_call (param i32 i32 i32 i32) (result i32)))
  (import "pabi" "reply_read" (func $reply_read (param i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (global $len (mut i32) (i32.const 0))
  (data (i32.const 0) "kv.getseed")
  (func (export "pabi_init") (param i32) (result i32)
    (drop (call $host_call (i32.const 0) (i32.const 6) (i32.const 6) (i32.const 4)))
    (global.set $len (call $reply_read (i32.const 64) (i32.const 0) (i32.const 64)))
    (i32.const 0))
  (func (export "pabi_fn_seed") (param i32) (result i32)
    (drop (call $write (i32.const 64) (global.get $len)))
    (i32.const 0))
  (@custom "pabi" "{\"abi\":\"1.1\",\"name\":\"seeded\",\"version\":\"1.0.0\",\"profile\":\"core\",\"functions\":[{\"name\":\"seed\"}],\"capabilities\":[],\"host_calls\":[{\"name\":\"kv.get\",\"required\":true}]}"))"#;

#[test]
fn a_host_call_in_pabi_init_reaches_the_server_while_the_worker_loads() {
    let wasm = wat::parse_str(SEEDED).unwrap();
    let get = pabi_host::HostFunction::new("kv.get", |cx, key| {
        Ok(format!("{} {}", cx.function(), String::from_utf8_lossy(key)).into_bytes())
    })
    .unwrap();
    let pool = ProcessPool::builder("seeded")
        .settings(settings("instances = 2"))
        .command(worker())
        .host_function(get)
        .spawn(&wasm)
        .unwrap();
    assert_eq!(pool.call("seed", b"").unwrap(), b"pabi_init seed");
    // A worker started again runs `pabi_init` again, through the server.
    let pid = pool.stats().pid.unwrap();
    std::process::Command::new("kill").args(["-9", &pid.to_string()]).status().unwrap();
    let back = (0..1000).any(|_| {
        std::thread::sleep(Duration::from_millis(10));
        pool.stats().restarts == 1 && pool.stats().pid.is_some()
    });
    assert!(back, "the worker was not restarted");
    assert_eq!(pool.call("seed", b"").unwrap(), b"pabi_init seed");
}

#[test]
fn a_reload_with_no_worker_to_reload_in_starts_the_new_version() {
    let wasm = fixture("good", "core");
    let pool = spawn("echo", "", &wasm).unwrap();
    let pid = pool.stats().pid.unwrap();
    std::process::Command::new("kill").args(["-9", &pid.to_string()]).status().unwrap();
    // The worker was young: its restart waits 100 ms, and the reload comes
    // first (or the restart wins, and the reload goes to its worker).
    pool.reload(&new_version(&wasm, 9)).unwrap();
    assert_eq!(pool.stats().generation, 1);
    assert_eq!(pool.call("echo", b"new").unwrap(), b"new");
    std::thread::sleep(Duration::from_millis(300));
    let pid_now = pool.stats().pid.unwrap();
    assert_ne!(pid_now, pid);
    assert_eq!(pool.call("echo", b"still one").unwrap(), b"still one");
    assert_eq!(pool.stats().pid, Some(pid_now), "the restart left the reloaded worker serving");
}

/// A worker gone wrong claims to be another plugin to reach a host
/// function offered only to that one, and sends a request past the cap:
/// the server refuses both, by what it knows itself.
#[test]
fn the_server_checks_a_worker_s_host_calls_against_what_it_loaded() {
    let fake = r#"
import json, struct, sys
inp, out = sys.stdin.buffer, sys.stdout.buffer
def read():
    n = struct.unpack("<I", inp.read(4))[0]; header = json.loads(inp.read(n))
    n = struct.unpack("<I", inp.read(4))[0]; return header, inp.read(n)
def send(header, body=b""):
    h = json.dumps(header).encode()
    out.write(struct.pack("<I", len(h)) + h + struct.pack("<I", len(body)) + body); out.flush()
load, wasm = read()
send({"op": "host_call", "id": 1, "name": "kv.secret", "plugin": "other", "function": "x"}, b"k")
a, body = read()
send({"op": "host_call", "id": 2, "name": "kv.get", "plugin": "echo", "function": "x"}, b"x" * (1024 * 1024 + 1))
b, _ = read()
send({"op": "host_call", "id": 3, "name": "kv.get", "plugin": "echo", "function": "x"}, b"k")
c, reply = read()
send({"op": "refused", "message": json.dumps([a["error"], b["error"], c["error"], reply.decode()])})
"#;
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("fake_worker.py");
    std::fs::write(&script, fake).unwrap();
    let secret = pabi_host::HostFunction::new("kv.secret", |_, _| Ok(b"secret".to_vec())).unwrap().only_for(["other"]);
    let get = pabi_host::HostFunction::new("kv.get", |cx, _| Ok(cx.plugin().as_bytes().to_vec())).unwrap();
    let error = ProcessPool::builder("echo")
        .command(WorkerCommand::new("python3", [script.as_os_str()]))
        .host_function(secret)
        .host_function(get)
        .spawn(&fixture("good", "core"))
        .unwrap_err();
    let WorkerError::Unavailable { reason, .. } = error else { panic!("{error}") };
    let answers: Vec<Option<String>> = serde_json::from_str(&reason).unwrap();
    assert!(
        answers[0].as_deref().is_some_and(|e| e.contains("no host function `kv.secret` is offered to `core-fixture`")),
        "{answers:?}"
    );
    assert!(answers[1].as_deref().is_some_and(|e| e.contains("past the cap")), "{answers:?}");
    assert_eq!(
        (answers[2].as_deref(), answers[3].as_deref()),
        (None, Some("core-fixture")),
        "the plugin is who the server loaded"
    );
}

/// A worker that stops reading its input (here: stopped by a signal) is
/// ended after a second of no progress; the caller gets an error instead of
/// waiting forever, and the next worker serves.
#[test]
fn a_worker_that_reads_nothing_is_ended_and_replaced() {
    let pool = spawn("echo", "queue_timeout = \"20s\"", &fixture("good", "core")).unwrap();
    let pid = pool.stats().pid.unwrap();
    std::process::Command::new("kill").args(["-STOP", &pid.to_string()]).status().unwrap();
    let (done, result) = std::sync::mpsc::channel();
    {
        let pool = pool.clone();
        // Larger than a pipe holds: the write itself has to wait.
        std::thread::spawn(move || done.send(pool.call("count", &vec![b'x'; 1 << 20])));
    }
    // The stuck worker is ended, a new one started, and the call, which
    // never reached it, goes to the new one.
    let answer = result.recv_timeout(Duration::from_secs(30)).expect("the call did not come back");
    assert_eq!(answer.unwrap(), (1u32 << 20).to_le_bytes());
    assert!(!alive(pid), "the stuck worker was ended");
    assert!(pool.stats().pid.is_some_and(|new| new != pid));
    assert_eq!(pool.stats().restarts, 1);
}
