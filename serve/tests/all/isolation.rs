//! `worker_process` isolation: plugins in worker processes, through the
//! same routes. The pool itself is tested in `pabi-host`.

use std::time::Duration;

use axum::http::StatusCode;
use pabi_host::worker::WorkerCommand;
use pabi_host::HostErrorKind;
use pabi_serve::{CallErrorKind, Refusal, ServeConfig, Server};

use super::{fixture, new_version, request, runtime};

/// The `pabi-worker` program of `pabi-host`, which a build of the
/// workspace puts beside this test's folder of executables.
fn worker() -> WorkerCommand {
    let test = std::env::current_exe().expect("this test's executable");
    let program = test.parent().and_then(|deps| deps.parent()).expect("a target folder").join("pabi-worker");
    assert!(
        program.exists(),
        "{} is missing: build it with `cargo build -p pabi-host --features worker-process --bin pabi-worker`",
        program.display()
    );
    WorkerCommand::new(program, Vec::<String>::new())
}

fn isolated(dir: &std::path::Path, toml: &str) -> Server {
    let config = ServeConfig::from_toml(&format!("[defaults]\nisolation = \"worker_process\"\n{toml}")).unwrap();
    let server = Server::new(dir.to_path_buf(), config).with_worker_command(worker());
    server.scan();
    server
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
    assert!(isolated.pool("io").unwrap().stats().worker.is_some(), "served by a worker");
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
                if got.kind != CallErrorKind::Host(HostErrorKind::Trap) {
                    // A trap's backtrace names the same frames, but the
                    // message is otherwise the same word for word too.
                    assert_eq!(got.message, want.message, "{uri}");
                }
            }
        }
        let list: serde_json::Value =
            serde_json::from_slice(&request(&isolated, "GET", "/v1/plugins", vec![]).await.body).unwrap();
        assert_eq!(list["plugins"][0]["pool"]["isolation"], "worker_process");
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
    let (io, echo) = (server.pool("io").unwrap(), server.pool("echo").unwrap());
    let pid_of = |pool: &pabi_host::Pool| pool.stats().worker.and_then(|w| w.pid);
    let (pid, echo_pid) = (pid_of(&io).unwrap(), pid_of(&echo).unwrap());
    assert_ne!(pid, echo_pid, "a worker per plugin");
    runtime().block_on(async {
        let spinning = {
            let server = server.clone();
            tokio::spawn(async move { request(&server, "POST", "/v1/plugins/io/spin", vec![]).await })
        };
        // Sent to the worker, where it would spin until its 20 s deadline.
        while io.stats().busy == 0 {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        std::process::Command::new("kill").args(["-9", &pid.to_string()]).status().unwrap();
        let killed = spinning.await.unwrap();
        assert_eq!(killed.status, StatusCode::SERVICE_UNAVAILABLE);
        let error = killed.error();
        assert_eq!(error.kind, CallErrorKind::Host(HostErrorKind::HostFailure));
        assert!(error.message.contains("ended during the call") && error.message.contains("SIGKILL"), "{error:?}");
        // Its neighbour never noticed, and the plugin is served again.
        let answer = request(&server, "POST", "/v1/plugins/echo/echo", b"next door".to_vec()).await;
        assert_eq!((answer.status, answer.body.as_slice()), (StatusCode::OK, &b"next door"[..]));
        let answer = request(&server, "POST", "/v1/plugins/io/echo", b"back".to_vec()).await;
        assert_eq!((answer.status, answer.body.as_slice()), (StatusCode::OK, &b"back"[..]));
    });
    let worker = io.stats().worker.unwrap();
    assert_eq!(worker.restarts, 1);
    assert!(worker.pid.is_some_and(|new| new != pid) && !alive(pid));
    let echo_worker = echo.stats().worker.unwrap();
    assert_eq!((echo_worker.restarts, echo_worker.pid), (0, Some(echo_pid)));
    let metrics = runtime().block_on(request(&server, "GET", "/metrics", vec![]));
    let metrics = String::from_utf8(metrics.body).unwrap();
    assert!(metrics.lines().any(|l| l == r#"pabi_worker_restarts{plugin="io"} 1"#), "{metrics}");
}

#[test]
fn a_worker_reloads_with_state_and_refuses_what_the_host_refuses() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("life.wasm");
    let wasm = fixture("host-conformance", "lifecycle");
    std::fs::write(&file, &wasm).unwrap();
    std::fs::write(dir.path().join("broken.wasm"), b"\0asm broken").unwrap();
    let server = isolated(dir.path(), "[plugins.life]\ninstances = 1");
    let pool = server.pool("life").unwrap();
    assert_eq!(pool.call("set", b"kept").unwrap(), b"");
    std::fs::write(&file, new_version(&wasm, 1)).unwrap();
    assert_eq!(server.scan().reloaded, ["life"]);
    assert_eq!(pool.call("get", b"").unwrap(), b"kept", "the state moved to the new version in the worker");
    assert_eq!(pool.stats().reloads, 1);
    std::fs::write(&file, b"\0asm broken too").unwrap();
    let report = server.scan();
    let invalid = |why: &Refusal| matches!(why, Refusal::Host { error, .. } if error.kind() == Some(HostErrorKind::InvalidModule));
    assert!(report.refused.iter().any(|r| r.plugin == "life" && invalid(&r.why)), "{report:?}");
    assert_eq!(pool.call("get", b"").unwrap(), b"kept", "the old version keeps serving");
    let list = runtime().block_on(request(&server, "GET", "/v1/plugins", vec![]));
    let list: serde_json::Value = serde_json::from_slice(&list.body).unwrap();
    let refused = list["refused"].as_array().unwrap();
    assert!(refused.iter().any(|r| r["name"] == "broken" && r["error"].as_str().unwrap().contains("INVALID_MODULE")));
    assert!(server.pool("broken").is_none());
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
        });
        let note = pabi_host::HostFunction::new("kv.note", |_, _| Err(pabi_host::HostCallError::new("full")));
        let slow = pabi_host::HostFunction::new("kv.slow", |_, _| Ok(b"never offered".to_vec()));
        [get, note, slow]
    };
    let mut outputs = Vec::new();
    for isolation in ["in_process", "worker_process"] {
        let config = ServeConfig::from_toml(&format!("[defaults]\nisolation = \"{isolation}\"\n{toml}")).unwrap();
        let mut server = Server::new(dir.path().to_path_buf(), config).with_worker_command(worker());
        for function in functions() {
            server = server.host_function(function);
        }
        let report = server.scan();
        assert_eq!(report.loaded, ["hc"], "{isolation}: {report:?}");
        let (name, why) = (&report.refused[0].plugin, &report.refused[0].why);
        let Refusal::Host { error: pabi_host::Error::MissingCapability { host_calls, .. }, .. } = why else {
            panic!("{why}")
        };
        assert_eq!((name.as_str(), host_calls.as_slice()), ("strict", &["kv.get".to_string()][..]));
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

/// Many calls of a plugin that floods its log: each call stays within its
/// cap (LIM-11), and together they are held to the plugin's log rate, in
/// the worker, which logs; `/metrics` counts what was dropped.
#[test]
fn a_plugin_flooding_its_log_from_many_calls_is_held_to_its_log_rate() {
    let dir = tempfile::tempdir().unwrap();
    let flood = fixture("hostile", "log-flood-short");
    std::fs::write(dir.path().join("flood.wasm"), flood).unwrap();
    let server = isolated(dir.path(), "[plugins.flood]\ninstances = 2\nlog_records_per_second = 3");
    let calls = 3u64;
    runtime().block_on(async {
        let started = std::time::Instant::now();
        for _ in 0..calls {
            assert_eq!(request(&server, "POST", "/v1/plugins/flood/flood", vec![]).await.status, StatusCode::OK);
        }
        let elapsed = started.elapsed();
        let metrics = String::from_utf8(request(&server, "GET", "/metrics", vec![]).await.body).unwrap();
        let value = |name: &str| -> u64 {
            let prefix = format!("{name}{{plugin=\"flood\"}} ");
            let line = metrics.lines().find(|l| l.starts_with(&prefix)).unwrap_or_else(|| panic!("{metrics}"));
            line[prefix.len()..].parse().unwrap()
        };
        let dropped = value("pabi_log_records_dropped");
        let (within_cap, past_cap) = (65_536 * calls, calls);
        let through_rate = within_cap + past_cap - dropped;
        let bound = 3 + (elapsed.as_secs_f64() * 3.0).ceil() as u64;
        assert!((3..=bound).contains(&through_rate), "{through_rate} records written, bound {bound}:\n{metrics}");
        assert_eq!(value("pabi_log_bytes_dropped"), 16 * dropped);
    });
}

/// Every instance waits in a slow host call: a queued call is refused
/// after the queue timeout, `503`, in both isolations.
#[test]
fn a_queued_call_is_refused_while_every_instance_waits_in_a_host_call() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("hc.wasm"), fixture("host-conformance", "host-calls")).unwrap();
    for isolation in ["in_process", "worker_process"] {
        let toml = format!(
            "[defaults]\nisolation = \"{isolation}\"\n[plugins.hc]\ninstances = 1\ntimeout = \"30s\"\nqueue_timeout = \"300ms\""
        );
        let gate = std::sync::Arc::new((std::sync::Mutex::new(false), std::sync::Condvar::new()));
        let held = gate.clone();
        let slow = pabi_host::HostFunction::new("kv.get", move |_, _| {
            let (lock, changed) = &*held;
            let released = lock.lock().unwrap();
            let _ = changed.wait_timeout_while(released, Duration::from_secs(10), |r| !*r).unwrap();
            Ok(b"late".to_vec())
        });
        let server = Server::new(dir.path().to_path_buf(), ServeConfig::from_toml(&toml).unwrap())
            .with_worker_command(worker())
            .host_function(slow);
        assert_eq!(server.scan().loaded, ["hc"]);
        runtime().block_on(async {
            let stuck = {
                let server = server.clone();
                tokio::spawn(async move {
                    request(&server, "POST", "/v1/plugins/hc/call", host_call_input("kv.get", b"apple")).await
                })
            };
            let pool = server.pool("hc").unwrap();
            let started = std::time::Instant::now();
            while pool.stats().busy == 0 {
                assert!(started.elapsed() < Duration::from_secs(10), "{isolation}: the first call never ran");
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            let queued = request(&server, "POST", "/v1/plugins/hc/call", host_call_input("kv.get", b"pear"));
            let queued = tokio::time::timeout(Duration::from_secs(15), queued).await.expect("an answer");
            assert_eq!(queued.status, StatusCode::SERVICE_UNAVAILABLE, "{isolation}");
            *gate.0.lock().unwrap() = true;
            gate.1.notify_all();
            assert_eq!(stuck.await.unwrap().status, StatusCode::OK, "{isolation}");
        });
    }
}
