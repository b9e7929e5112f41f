//! What only `Isolation::WorkerProcess` has: the worker's OS limits, its
//! death and restart, its protocol, and a pool's side that trusts nothing
//! the worker says. What both isolations share is tested in `pool.rs`.

use std::time::Duration;

use pabi_host::worker::protocol::{FromWorker, HostFunctionOffer, PoolSettings, ToWorker, WORKER_PROTOCOL_SCHEMA};
use pabi_host::worker::WorkerCommand;
use pabi_host::{Config, Error, Host, HostFunction, Isolation, Pool, PoolBuilder, Unavailable};

use crate::pool::{builder, wait_until};
use crate::{fixture, host_with};

/// This crate's `pabi-worker` program.
pub fn command() -> WorkerCommand {
    WorkerCommand::new(env!("CARGO_BIN_EXE_pabi-worker"), Vec::<String>::new())
}

fn worker_pool() -> PoolBuilder {
    builder(Isolation::WorkerProcess)
}

fn pid(pool: &Pool) -> u32 {
    pool.stats().worker.and_then(|w| w.pid).expect("a live worker")
}

fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| !stat.contains(") Z "))
}

fn kill(pid: u32, signal: &str) {
    std::process::Command::new("kill").args([signal, &pid.to_string()]).status().unwrap();
}

/// The same plugin gives the same value, error or output, from a worker as
/// from this process: errors cross the protocol as they are.
#[test]
fn every_answer_of_a_worker_equals_the_in_process_answer() {
    let host = host_with(|c| c.timeout(Duration::from_millis(100)).max_output(1024));
    let wasm = fixture("host-conformance", "io");
    let here = builder(Isolation::InProcess).instances(1).build(&host, &wasm).unwrap();
    let there = worker_pool().instances(1).build(&host, &wasm).unwrap();
    for (function, input) in [
        ("echo", b"hello".to_vec()),
        ("nope", vec![]),
        ("fail", vec![]),
        ("spin", vec![]),
        ("trap", vec![]),
        ("flood", vec![]),
        ("bigerror", vec![]),
        ("status", 7i32.to_le_bytes().to_vec()),
    ] {
        assert_eq!(there.call(function, &input), here.call(function, &input), "{function}");
    }
    assert_eq!(there.metadata(), here.metadata());
    let refused = worker_pool().build(&host, b"\0asm\x01\0\0\0").unwrap_err();
    assert_eq!(refused, builder(Isolation::InProcess).build(&host, b"\0asm\x01\0\0\0").unwrap_err());
}

/// A call whose worker ended during it is `HOST_FAILURE` (ERR-6): the host
/// failed, whatever the plugin did.
#[test]
fn killing_a_worker_fails_only_the_calls_it_held_and_it_comes_back() {
    let host = host_with(|c| c.timeout(Duration::from_secs(20)));
    let pool = worker_pool().instances(1).build(&host, &fixture("host-conformance", "io")).unwrap();
    let first = pid(&pool);
    let spinner = {
        let pool = pool.clone();
        std::thread::spawn(move || pool.call("spin", b""))
    };
    wait_until("the spin is sent", || pool.stats().busy == 1);
    kill(first, "-9");
    let error = spinner.join().unwrap().unwrap_err();
    let Error::HostUnavailable(Unavailable::WorkerExited { pid, status }) = &error else { panic!("{error}") };
    assert_eq!(*pid, first);
    assert!(status.contains("SIGKILL"), "{status}");
    assert!(error.to_string().starts_with("HOST_FAILURE"), "{error}");
    assert_eq!(pool.call("echo", b"back").unwrap(), b"back");
    let worker = pool.stats().worker.unwrap();
    assert_eq!(worker.restarts, 1);
    assert!(worker.pid.is_some_and(|new| new != first) && !alive(first));
}

#[cfg(target_os = "linux")]
#[test]
fn a_worker_runs_under_its_os_limits() {
    let host = host_with(|c| c);
    let pool =
        worker_pool().instances(1).worker_cpu_time(Duration::from_secs(30)).build(&host, &fixture("good", "core"));
    let pool = pool.unwrap();
    let pid = pid(&pool);
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
fn dropping_the_last_clone_ends_the_worker_and_a_worker_that_cannot_start_is_an_error() {
    let host = host_with(|c| c);
    let wasm = fixture("good", "core");
    let pool = worker_pool().build(&host, &wasm).unwrap();
    let (pid, clone) = (pid(&pool), pool.clone());
    drop(pool);
    assert!(alive(pid), "a clone keeps it");
    // The last clone dropped ends the worker, without waiting for it.
    drop(clone);
    wait_until("the worker ends", || !alive(pid));

    let missing = WorkerCommand::new("/nonexistent/pabi-worker", Vec::<String>::new());
    let error = Pool::builder().isolation(Isolation::WorkerProcess).worker_command(missing).build(&host, &wasm);
    let error = error.unwrap_err();
    assert!(
        matches!(&error, Error::HostUnavailable(Unavailable::WorkerDown { reason }) if reason.contains("cannot start")),
        "{error}"
    );
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
fn a_host_call_in_pabi_init_reaches_this_process_while_the_worker_loads() {
    let this_process = std::process::id();
    let get = HostFunction::new("kv.get", move |cx, key| {
        let here = std::process::id() == this_process;
        Ok(format!("{} {} {here}", cx.function(), String::from_utf8_lossy(key)).into_bytes())
    });
    let host = host_with(|c| c.host_function(get));
    let pool = worker_pool().instances(2).build(&host, &wat::parse_str(SEEDED).unwrap()).unwrap();
    assert_eq!(pool.call("seed", b"").unwrap(), b"pabi_init seed true");
    // A worker started again runs `pabi_init` again, through this process.
    kill(pid(&pool), "-9");
    wait_until("the worker is restarted", || pool.stats().worker.is_some_and(|w| w.restarts == 1 && w.pid.is_some()));
    assert_eq!(pool.call("seed", b"").unwrap(), b"pabi_init seed true");
}

#[test]
fn a_reload_with_no_worker_to_reload_in_starts_the_new_version() {
    let host = host_with(|c| c);
    let wasm = fixture("good", "core");
    let pool = worker_pool().build(&host, &wasm).unwrap();
    let first = pid(&pool);
    kill(first, "-9");
    wait_until("the pool sees the death", || pool.stats().worker.is_some_and(|w| w.pid != Some(first)));
    // The worker was young: its restart waits 100 ms, and the reload comes
    // first (or the restart wins, and the reload goes to its worker).
    let mut new = wasm.clone();
    new.extend([0, 3, 1, b'v', 9]);
    pool.reload(&new).unwrap();
    assert_eq!(pool.stats().reloads, 1);
    assert_eq!(pool.call("echo", b"new").unwrap(), b"new");
    let serving = pid(&pool);
    assert_ne!(serving, first);
    // A restart still pending finds a worker serving and starts none.
    pool.call("echo", b"").unwrap();
    assert_eq!(pool.stats().worker.unwrap().restarts + pool.stats().reloads, 1 + u64::from(serving != pid(&pool)));
    assert_eq!(pid(&pool), serving, "the restart left the reloaded worker serving");
}

/// A worker gone wrong claims to be another plugin to reach a host
/// function offered only to that one, and sends a request past the cap:
/// the pool's side refuses both, by what it knows itself.
#[test]
fn the_pool_checks_a_worker_s_host_calls_against_what_it_loaded() {
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
answers = json.dumps([a["error"], b["error"], c["error"], reply.decode()])
send({"op": "refused", "error": {"kind": "HOST_UNAVAILABLE", "detail": {"worker_down": {"reason": answers}}}})
"#;
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("fake_worker.py");
    std::fs::write(&script, fake).unwrap();
    let secret = HostFunction::new("kv.secret", |_, _| Ok(b"secret".to_vec())).only_for(["other"]);
    let get = HostFunction::new("kv.get", |cx, _| Ok(cx.plugin().as_bytes().to_vec()));
    let host = Host::new(Config::builder().host_function(secret).host_function(get).build()).unwrap();
    let error = Pool::builder()
        .isolation(Isolation::WorkerProcess)
        .worker_command(WorkerCommand::new("python3", [script.as_os_str()]))
        .build(&host, &fixture("good", "core"))
        .unwrap_err();
    let Error::HostUnavailable(Unavailable::WorkerDown { reason }) = error else { panic!("{error}") };
    let answers: Vec<Option<String>> = serde_json::from_str(&reason).unwrap();
    assert!(
        answers[0].as_deref().is_some_and(|e| e.contains("no host function `kv.secret` is offered to `core-fixture`")),
        "{answers:?}"
    );
    assert!(answers[1].as_deref().is_some_and(|e| e.contains("past the cap")), "{answers:?}");
    assert_eq!(
        (answers[2].as_deref(), answers[3].as_deref()),
        (None, Some("core-fixture")),
        "the plugin is who the pool's side loaded"
    );
}

/// A worker that stops reading its input (here: stopped by a signal) is
/// ended after a second of no progress; the caller gets an answer instead
/// of waiting forever, and the next worker serves.
#[test]
fn a_worker_that_reads_nothing_is_ended_and_replaced() {
    let host = host_with(|c| c);
    let pool = worker_pool().queue_timeout(Duration::from_secs(20)).build(&host, &fixture("good", "core")).unwrap();
    let stopped = pid(&pool);
    kill(stopped, "-STOP");
    // Larger than a pipe holds: the write itself has to wait. The call
    // never reached the stuck worker, so it goes to the new one.
    let answer = pool.call("count", &vec![b'x'; 1 << 20]);
    assert_eq!(answer.unwrap(), (1u32 << 20).to_le_bytes());
    // Killed, it dies as soon as the kernel runs it: not always before
    // the call that found it stuck returns.
    wait_until("the stuck worker was ended", || !alive(stopped));
    let worker = pool.stats().worker.unwrap();
    assert!(worker.pid.is_some_and(|new| new != stopped));
    assert_eq!(worker.restarts, 1);
}

/// A stopped worker whose calls all fit in the pipe never makes a write
/// wait: the pool's liveness check finds it silent, ends it, fails the
/// calls it held and starts another.
#[test]
fn a_stopped_worker_is_found_by_its_silence_when_calls_are_small() {
    let host = host_with(|c| c.timeout(Duration::from_secs(20)));
    let pool = worker_pool().instances(1).queue_timeout(Duration::from_secs(20)).build(&host, &fixture("good", "core"));
    let pool = pool.unwrap();
    let stopped = pid(&pool);
    kill(stopped, "-STOP");
    let (sender, answered) = std::sync::mpsc::channel();
    {
        let pool = pool.clone();
        std::thread::spawn(move || sender.send(pool.call("echo", b"small")));
    }
    // A guard against a hang, not a speed check: the liveness check takes
    // about a second.
    let answer = answered.recv_timeout(Duration::from_secs(15)).expect("the call is answered");
    let error = answer.unwrap_err();
    assert_eq!(error.kind(), Some(pabi_abi::HostErrorKind::HostFailure), "{error}");
    assert!(
        matches!(error, Error::HostUnavailable(Unavailable::WorkerExited { pid, .. }) if pid == stopped),
        "{error}"
    );
    wait_until("a new worker serves", || pool.stats().worker.is_some_and(|w| w.restarts == 1 && w.pid.is_some()));
    assert!(!alive(stopped), "the stopped worker was ended");
    assert_eq!(pool.call("echo", b"back").unwrap(), b"back");
}

/// A worker whose every instance waits in a host call longer than the
/// liveness bound (2 s) still answers the pool's pings: it is not taken
/// for stuck.
#[test]
fn a_worker_busy_in_a_long_host_call_is_not_taken_for_stuck() {
    let slow = HostFunction::new("app.reenter", |_, _| {
        std::thread::sleep(Duration::from_millis(2500));
        Ok(b"slow".to_vec())
    });
    let host = host_with(|c| c.host_function(slow).timeout(Duration::from_secs(20)));
    let pool = worker_pool().instances(1).build(&host, &crate::pool::asker()).unwrap();
    let first = pid(&pool);
    assert_eq!(pool.call("ask", b"").unwrap(), b"slow");
    assert_eq!((pid(&pool), pool.stats().worker.unwrap().restarts), (first, 0));
}

#[test]
fn resizing_a_worker_s_pool_changes_the_instances_it_serves_with() {
    let host = host_with(|c| c);
    let pool = worker_pool().instances(3).build(&host, &fixture("good", "core")).unwrap();
    pool.resize(1);
    assert_eq!((pool.stats().size, pool.stats().live), (1, 1));
    pool.resize(10);
    assert_eq!(pool.stats().size, 3, "at most the instances it was built with");
    assert_eq!(pool.call("echo", b"x").unwrap(), b"x");
}

#[test]
fn every_worker_message_matches_the_protocol_schema() {
    let schema: serde_json::Value = serde_json::from_str(WORKER_PROTOCOL_SCHEMA).unwrap();
    let validator = jsonschema::validator_for(&schema).unwrap();
    let host = host_with(|c| c);
    let pool = worker_pool().build(&host, &fixture("good", "core")).unwrap();
    let metadata = Box::new((*pool.metadata()).clone());
    let config = Config::builder()
        .timeout(Duration::from_millis(1500))
        .max_memory(1_000_000)
        .fuel(Some(5))
        .allow_clock(true)
        .allow_env("A", "1")
        .allow_dir(pabi_host::DirGrant::parse("/tmp:/data:ro").unwrap())
        .cache_dir(Some("/var/cache/pabi".into()))
        .build();
    let offer = HostFunctionOffer::of(&HostFunction::new("kv.get", |_, _| Ok(vec![])).only_for(["enrich"]));
    let load = |config: &Config, host_functions: Vec<HostFunctionOffer>| {
        let mut settings = serde_json::json!({"instances": 2, "max_queue": 3,
            "queue_timeout": {"secs": 1, "nanos": 500_000_000}, "plugin_config": [99]});
        let pool: PoolSettings = serde_json::from_value(settings.take()).unwrap();
        let limits =
            serde_json::from_value(serde_json::json!({"cpu_time": {"secs": 60, "nanos": 0}, "address_headroom": 1024}))
                .unwrap();
        ToWorker::Load { plugin: "echo".into(), config: Box::new(config.clone()), pool, limits, host_functions }
    };
    let messages = [
        serde_json::to_value(load(&config, vec![offer])).unwrap(),
        serde_json::to_value(load(&Config::default(), vec![])).unwrap(),
        serde_json::to_value(load(&Config::builder().log_rate(None).build(), vec![])).unwrap(),
        serde_json::to_value(ToWorker::Call { id: 1, function: "echo".into() }).unwrap(),
        serde_json::to_value(ToWorker::Cancel { id: 1 }).unwrap(),
        serde_json::to_value(ToWorker::Reload { id: 2 }).unwrap(),
        serde_json::to_value(ToWorker::Resize { instances: 1 }).unwrap(),
        serde_json::to_value(ToWorker::Ping).unwrap(),
        serde_json::to_value(FromWorker::Pong).unwrap(),
        serde_json::to_value(FromWorker::LogDropped { records: 3, bytes: 48 }).unwrap(),
        serde_json::to_value(ToWorker::HostReply { id: 3, error: None }).unwrap(),
        serde_json::to_value(ToWorker::HostReply { id: 3, error: Some("full".into()) }).unwrap(),
        serde_json::to_value(FromWorker::HostCall {
            id: 3,
            name: "kv.get".into(),
            plugin: "enrich".into(),
            function: "pabi_init".into(),
            time_left: Some(Duration::from_millis(900)),
        })
        .unwrap(),
        serde_json::to_value(FromWorker::HostCall {
            id: 4,
            name: "kv.get".into(),
            plugin: "enrich".into(),
            function: "upper".into(),
            time_left: None,
        })
        .unwrap(),
        serde_json::to_value(FromWorker::Ready { pid: 7, metadata: metadata.clone() }).unwrap(),
        serde_json::to_value(FromWorker::Refused { error: pool.call("nope", b"").unwrap_err() }).unwrap(),
        serde_json::to_value(FromWorker::Output { id: 1 }).unwrap(),
        serde_json::to_value(FromWorker::Failed { id: 1, error: Error::PluginError { status: 1, message: vec![] } })
            .unwrap(),
        serde_json::to_value(FromWorker::Failed { id: 1, error: Error::Cancelled }).unwrap(),
        serde_json::to_value(FromWorker::Failed {
            id: 1,
            error: Error::HostUnavailable(Unavailable::QueueFull { limit: 3 }),
        })
        .unwrap(),
        serde_json::to_value(FromWorker::Reloaded { id: 2, metadata }).unwrap(),
    ];
    for message in &messages {
        let errors: Vec<String> = validator.iter_errors(message).map(|e| e.to_string()).collect();
        assert!(errors.is_empty(), "{message}: {errors:?}");
    }
    // The configuration crosses exactly.
    let ToWorker::Load { config: crossed, .. } = serde_json::from_value(messages[0].clone()).unwrap() else { panic!() };
    assert_eq!(format!("{crossed:?}"), format!("{config:?}"));
    for bad in [
        serde_json::json!({"op": "call", "function": "echo"}),
        serde_json::json!({"op": "launch"}),
        serde_json::json!({"op": "failed", "id": 1, "error": {"kind": "OOPS"}}),
        serde_json::json!({"op": "resize"}),
        serde_json::json!({"op": "host_reply", "id": 1}),
    ] {
        assert!(!validator.is_valid(&bad), "{bad} should not match");
    }
    let mut bad_name = messages[0].clone();
    bad_name["host_functions"][0]["name"] = "Bad Name".into();
    assert!(!validator.is_valid(&bad_name), "{bad_name} should not match");
}

/// A handler's failure message of 2 MiB is cut to the 65,536 bytes the
/// plugin reads before it crosses to the worker (CALL-4), which serves on:
/// no frame it reads is past its cap, so none ends it.
#[test]
fn a_huge_failure_message_is_cut_before_it_crosses_and_the_worker_lives() {
    let fail = HostFunction::new("kv.get", |_, _| Err(pabi_host::HostCallError::new("x".repeat(2 << 20))));
    let host = host_with(|c| c.host_function(fail.clone()));
    let pool = worker_pool().instances(1).build(&host, &fixture("host-conformance", "host-calls")).unwrap();
    let before = pool.stats().worker.expect("a worker");
    let mut input = Vec::new();
    for word in [65_530u32, 64, 6] {
        input.extend(word.to_le_bytes());
    }
    input.extend(b"kv.get");
    for _ in 0..3 {
        let output = pool.call("call", &input).unwrap();
        assert_eq!(output[..8], [(-4i32).to_le_bytes(), 6i32.to_le_bytes()].concat()[..], "E_FAILED, cut at 65,536");
        assert_eq!(&output[8..], b"xxxxxx");
    }
    let after = pool.stats().worker.expect("a worker");
    assert_eq!((after.restarts, after.pid), (before.restarts, before.pid), "the same worker served every call");
}

/// The nice value of every thread of process `pid`.
#[cfg(target_os = "linux")]
fn priority_of_threads(pid: u32) -> Vec<(i64, i64)> {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).unwrap();
    tasks
        .filter_map(|task| std::fs::read_to_string(task.unwrap().path().join("stat")).ok())
        .map(|stat| {
            // Fields 19 (nice) and 41 (policy) of `stat`; the fields after
            // the name's `)` start at 3.
            let fields: Vec<&str> = stat.rsplit_once(") ").unwrap().1.split(' ').collect();
            (fields[19 - 3].parse().unwrap(), fields[41 - 3].parse().unwrap())
        })
        .collect()
}

/// A worker keeps its priority while its calls are short, or one at a
/// time computes long; once two in a row do, every thread of the worker
/// runs 10 nice levels lower, as a thread that runs an in-process call
/// under the CPU gate does (`gate.rs`), so that the system lets a light
/// plugin's worker run first.
#[cfg(target_os = "linux")]
#[test]
fn a_worker_whose_call_computes_long_lowers_its_priority() {
    let ours = priority_of_threads(std::process::id())[0];
    let host = host_with(|c| c.timeout(Duration::from_millis(50)));
    let pool = worker_pool().instances(1).build(&host, &fixture("host-conformance", "io")).unwrap();
    assert_eq!(pool.call("echo", b"hi").unwrap(), b"hi");
    let worker = pid(&pool);
    let unchanged = |worker| priority_of_threads(worker).iter().all(|&priority| priority == ours);
    assert!(unchanged(worker), "{:?}", priority_of_threads(worker));
    // It spins to its deadline, 50 ms of computing; one such call could
    // be the new instance after a trap: two in a row lower the worker.
    assert!(pool.call("spin", b"").is_err());
    assert_eq!(pool.call("echo", b"hi").unwrap(), b"hi");
    assert!(pool.call("spin", b"").is_err());
    assert!(unchanged(worker), "{:?}", priority_of_threads(worker));
    assert!(pool.call("spin", b"").is_err());
    let lowered = priority_of_threads(worker);
    assert!(lowered.iter().all(|&(nice, policy)| (nice, policy) == ((ours.0 + 10).min(19), ours.1)), "{lowered:?}");
    assert_eq!(pool.call("echo", b"still").unwrap(), b"still");
    assert_eq!(pid(&pool), worker, "the same worker");
}
