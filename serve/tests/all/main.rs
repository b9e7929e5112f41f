//! Integration tests of `pabi-serve`: the routes through the router itself
//! (no sockets), hot reload, pins and overload.

use std::path::Path;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use pabi_serve::{CallErrorBody, ServeConfig, Server};
use tower::ServiceExt;

mod connections;
mod files;
mod isolation;

fn fixture(folder: &str, name: &str) -> Vec<u8> {
    let path = pabi_fixtures::fixtures_dir().join(folder).join(format!("{name}.wat"));
    pabi_fixtures::compile_wat(&path).unwrap_or_else(|e| panic!("{e:#}")).wasm
}

/// The same module with a custom section appended: a new version by its
/// bytes, the same code.
fn new_version(wasm: &[u8], tag: u8) -> Vec<u8> {
    let mut out = wasm.to_vec();
    out.extend([0, 3, 1, b'v', tag]);
    out
}

fn server(dir: &Path, toml: &str) -> Server {
    let server = Server::new(dir.to_path_buf(), ServeConfig::from_toml(toml).unwrap());
    server.scan();
    server
}

struct Answer {
    status: StatusCode,
    retry_after: Option<String>,
    body: Vec<u8>,
}

impl Answer {
    fn error(&self) -> CallErrorBody {
        let value: serde_json::Value = serde_json::from_slice(&self.body).unwrap();
        let schema: serde_json::Value = serde_json::from_str(pabi_serve::SERVE_ERROR_SCHEMA).unwrap();
        let validator = jsonschema::validator_for(&schema).unwrap();
        assert!(validator.is_valid(&value), "{value} does not match serve-error.schema.json");
        serde_json::from_value(value).unwrap()
    }
}

async fn request(server: &Server, method: &str, uri: &str, body: Vec<u8>) -> Answer {
    let request = Request::builder().method(method).uri(uri).body(Body::from(body)).unwrap();
    let response = server.router().oneshot(request).await.unwrap();
    let status = response.status();
    let retry_after = response.headers().get("retry-after").map(|v| v.to_str().unwrap().to_string());
    let body = response.into_body().collect().await.unwrap().to_bytes().to_vec();
    Answer { status, retry_after, body }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
}

#[test]
fn calls_answer_outputs_and_every_error_kind_with_its_http_status() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("io.wasm"), fixture("host-conformance", "io")).unwrap();
    let server = server(dir.path(), "[plugins.io]\ntimeout = \"100ms\"\nmax_input = \"1 KiB\"\ninstances = 1");
    runtime().block_on(async {
        let ok = request(&server, "POST", "/v1/plugins/io/echo", b"hello".to_vec()).await;
        assert_eq!((ok.status, ok.body.as_slice()), (StatusCode::OK, &b"hello"[..]));

        let cases = [
            ("/v1/plugins/nope/echo", vec![], StatusCode::NOT_FOUND, "UNKNOWN_PLUGIN", None),
            ("/v1/plugins/io/nope", vec![], StatusCode::NOT_FOUND, "UNKNOWN_FUNCTION", None),
            ("/v1/plugins/io/fail", vec![], StatusCode::UNPROCESSABLE_ENTITY, "PLUGIN_ERROR", Some(1)),
            ("/v1/plugins/io/spin", vec![], StatusCode::GATEWAY_TIMEOUT, "TIMEOUT", None),
            ("/v1/plugins/io/trap", vec![], StatusCode::BAD_GATEWAY, "TRAP", None),
            ("/v1/plugins/io/echo", vec![b'x'; 1025], StatusCode::PAYLOAD_TOO_LARGE, "INPUT_LIMIT", None),
        ];
        for (uri, body, status, kind, plugin_status) in cases {
            let answer = request(&server, "POST", uri, body).await;
            let error = answer.error();
            assert_eq!((answer.status, error.kind.name(), error.status), (status, kind, plugin_status), "{uri}");
        }
        let fail = request(&server, "POST", "/v1/plugins/io/fail", vec![]).await.error();
        assert_eq!(fail.message, "bad input", "the plugin's own message");
        let unknown = request(&server, "POST", "/v1/plugins/nope/echo", vec![]).await.error();
        assert_eq!(unknown.message, "UNKNOWN_PLUGIN: no plugin `nope` is served; served: io");
        // The message names the plugin's cap, not the ABI's, and the
        // length the client declared.
        let declared = Request::builder()
            .method("POST")
            .uri("/v1/plugins/io/echo")
            .header("content-length", "1025")
            .body(Body::from(vec![b'x'; 1025]))
            .unwrap();
        let response = server.router().oneshot(declared).await.unwrap();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        let too_long: CallErrorBody = serde_json::from_slice(&body).unwrap();
        assert_eq!(
            too_long.message,
            "INPUT_LIMIT: the input is longer than the host accepts: 1025 bytes, past this host's cap of 1024"
        );
        // A body that breaks off is no INPUT_LIMIT: the caller ended it.
        let chunks: Vec<Result<&'static [u8], std::io::Error>> =
            vec![Ok(b"xx"), Err(std::io::Error::new(std::io::ErrorKind::ConnectionReset, "gone"))];
        let broken = Request::builder()
            .method("POST")
            .uri("/v1/plugins/io/echo")
            .body(Body::from_stream(futures_util::stream::iter(chunks)))
            .unwrap();
        let response = server.router().oneshot(broken).await.unwrap();
        assert_eq!(response.status().as_u16(), 499);
        let body = response.into_body().collect().await.unwrap().to_bytes();
        let broken: CallErrorBody = serde_json::from_slice(&body).unwrap();
        assert_eq!(broken.kind.name(), "CANCELLED", "{}", broken.message);
        // A body of exactly the cap is accepted.
        let at_cap = request(&server, "POST", "/v1/plugins/io/echo", vec![b'x'; 1024]).await;
        assert_eq!(at_cap.status, StatusCode::OK);
    });
}

#[test]
fn listing_health_and_metrics_report_what_happened() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("echo.wasm"), fixture("good", "core")).unwrap();
    std::fs::write(dir.path().join("broken.wasm"), b"not wasm").unwrap();
    let server = server(dir.path(), "[defaults]\ninstances = 2");
    runtime().block_on(async {
        for _ in 0..3 {
            assert_eq!(request(&server, "POST", "/v1/plugins/echo/echo", b"x".to_vec()).await.status, StatusCode::OK);
        }
        request(&server, "POST", "/v1/plugins/echo/nope", vec![]).await;
        request(&server, "POST", "/v1/plugins/a-new-name-each-time/echo", vec![]).await;
        let list: serde_json::Value =
            serde_json::from_slice(&request(&server, "GET", "/v1/plugins", vec![]).await.body).unwrap();
        assert_eq!(list["plugins"][0]["name"], "echo");
        assert_eq!(list["plugins"][0]["pool"]["size"], 2);
        assert_eq!(list["plugins"][0]["metadata"]["functions"][0]["name"], "echo");
        assert_eq!(list["refused"][0]["name"], "broken");
        assert!(list["refused"][0]["error"].as_str().unwrap().contains("INVALID_MODULE"), "{list}");

        let health = request(&server, "GET", "/healthz", vec![]).await;
        assert_eq!((health.status, health.body.as_slice()), (StatusCode::OK, &b"ok\n"[..]));

        let metrics = String::from_utf8(request(&server, "GET", "/metrics", vec![]).await.body).unwrap();
        for line in [
            r#"pabi_calls_total{plugin="echo",function="echo"} 3"#,
            r#"pabi_calls_total{plugin="echo",function="(unknown)"} 1"#,
            r#"pabi_call_errors_total{plugin="echo",kind="UNKNOWN_FUNCTION"} 1"#,
            r#"pabi_call_errors_total{plugin="(unknown)",kind="UNKNOWN_PLUGIN"} 1"#,
            r#"pabi_instances{plugin="echo"} 2"#,
            r#"pabi_queue_depth{plugin="echo"} 0"#,
            r#"pabi_call_duration_seconds_count{plugin="echo"} 4"#,
        ] {
            assert!(metrics.lines().any(|l| l == line), "no `{line}` in:\n{metrics}");
        }
    });
}

/// Five failing calls from one client disable a plugin (LIFE-7); it says
/// so in `/healthz` and `/metrics`, answers with the `Retry-After` of its
/// `crash_reset`, and serves again once that has passed.
#[test]
fn a_crash_loop_is_reported_and_reset_after_its_crash_reset() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("io.wasm"), fixture("host-conformance", "io")).unwrap();
    let server = server(dir.path(), "[plugins.io]\ninstances = 1\ncrash_reset = \"1500ms\"");
    runtime().block_on(async {
        for _ in 0..5 {
            let trapped = request(&server, "POST", "/v1/plugins/io/trap", vec![]).await;
            assert_eq!(trapped.error().kind.name(), "TRAP");
        }
        let refused = request(&server, "POST", "/v1/plugins/io/echo", b"x".to_vec()).await;
        assert_eq!((refused.status, refused.error().kind.name()), (StatusCode::SERVICE_UNAVAILABLE, "CRASH_LOOP"));
        assert_eq!(refused.retry_after.as_deref(), Some("2"), "1.5 s, rounded up");
        let health = request(&server, "GET", "/healthz", vec![]).await;
        let text = String::from_utf8(health.body).unwrap();
        assert_eq!(health.status, StatusCode::OK);
        assert!(text.lines().any(|l| l.starts_with("disabled: io (CRASH_LOOP")), "{text}");
        let metrics = String::from_utf8(request(&server, "GET", "/metrics", vec![]).await.body).unwrap();
        assert!(metrics.lines().any(|l| l == r#"pabi_plugin_disabled{plugin="io"} 1"#), "{metrics}");
        // Polled, with a bound only against a hang: the reset comes 1.5 s
        // after the plugin was disabled.
        let started = std::time::Instant::now();
        loop {
            let answer = request(&server, "POST", "/v1/plugins/io/echo", b"back".to_vec()).await;
            if answer.status == StatusCode::OK {
                assert_eq!(answer.body, b"back");
                break;
            }
            assert_eq!(answer.error().kind.name(), "CRASH_LOOP");
            assert!(started.elapsed() < Duration::from_secs(20), "the plugin was never tried again");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let health = request(&server, "GET", "/healthz", vec![]).await;
        assert_eq!(health.body, b"ok\n");
        let metrics = String::from_utf8(request(&server, "GET", "/metrics", vec![]).await.body).unwrap();
        assert!(metrics.lines().any(|l| l == r#"pabi_plugin_disabled{plugin="io"} 0"#), "{metrics}");
    });
}

#[test]
fn a_full_queue_answers_503_with_retry_after() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("io.wasm"), fixture("host-conformance", "io")).unwrap();
    let server = server(dir.path(), "[plugins.io]\ninstances = 1\nmax_queue = 0\ntimeout = \"2s\"");
    runtime().block_on(async {
        let spinning = {
            let server = server.clone();
            tokio::spawn(async move { request(&server, "POST", "/v1/plugins/io/spin", vec![]).await })
        };
        let pool = server.pool("io").unwrap();
        while pool.stats().busy == 0 {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        let refused = request(&server, "POST", "/v1/plugins/io/echo", b"x".to_vec()).await;
        assert_eq!((refused.status, refused.retry_after.as_deref()), (StatusCode::SERVICE_UNAVAILABLE, Some("1")));
        assert_eq!(refused.error().kind.name(), "HOST_FAILURE");
        assert_eq!(spinning.await.unwrap().status, StatusCode::GATEWAY_TIMEOUT);
        assert_eq!(request(&server, "POST", "/v1/plugins/io/echo", b"x".to_vec()).await.status, StatusCode::OK);
    });
}

#[test]
fn a_new_version_takes_over_with_its_state_and_a_bad_one_leaves_the_old_serving() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("life.wasm");
    let wasm = fixture("host-conformance", "lifecycle");
    std::fs::write(&file, &wasm).unwrap();
    let server = server(dir.path(), "[plugins.life]\ninstances = 1");
    runtime().block_on(async {
        assert_eq!(request(&server, "POST", "/v1/plugins/life/set", b"kept".to_vec()).await.status, StatusCode::OK);
    });
    std::fs::write(&file, new_version(&wasm, 1)).unwrap();
    let report = server.scan();
    assert_eq!(report.reloaded, ["life"]);
    assert!(server.scan().reloaded.is_empty(), "an unchanged file is not reloaded again");
    std::fs::write(&file, b"\0asm broken").unwrap();
    let report = server.scan();
    assert_eq!(report.refused.len(), 1, "{report:?}");
    runtime().block_on(async {
        let get = request(&server, "POST", "/v1/plugins/life/get", vec![]).await;
        assert_eq!((get.status, get.body.as_slice()), (StatusCode::OK, &b"kept"[..]), "state moved; old still serves");
    });
    assert_eq!(server.pool("life").unwrap().stats().reloads, 1);
    std::fs::remove_file(&file).unwrap();
    assert_eq!(server.scan().removed, ["life"]);
    assert!(server.plugins().is_empty());
}

#[test]
fn a_pinned_plugin_loads_only_with_its_hash() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("echo.wasm");
    let wasm = fixture("good", "core");
    std::fs::write(&file, &wasm).unwrap();
    let pin = {
        use sha2::Digest;
        format!("{:x}", sha2::Sha256::digest(&wasm))
    };
    let server = server(dir.path(), &format!("[plugins.echo]\nsha256 = \"{pin}\""));
    assert_eq!(server.plugins(), ["echo"]);
    // A changed file does not match the pin: refused, the pinned one serves.
    std::fs::write(&file, new_version(&wasm, 2)).unwrap();
    let report = server.scan();
    assert!(
        matches!(&report.refused[0].why, pabi_serve::Refusal::PinMismatch { pinned, .. } if *pinned == pin),
        "{report:?}"
    );
    assert_eq!(server.pool("echo").unwrap().stats().reloads, 0);
    let refused = |server: &Server| {
        let listing = runtime().block_on(request(server, "GET", "/v1/plugins", vec![]));
        let listing: serde_json::Value = serde_json::from_slice(&listing.body).unwrap();
        listing["refused"].as_array().unwrap().len()
    };
    assert_eq!(refused(&server), 1);
    // The pinned file put back: served as before, and no longer listed
    // as refused.
    std::fs::write(&file, &wasm).unwrap();
    assert_eq!(server.scan(), Default::default());
    assert_eq!(refused(&server), 0);
    // A wrong pin refuses the first load too.
    let other = tempfile::tempdir().unwrap();
    std::fs::write(other.path().join("echo.wasm"), new_version(&wasm, 3)).unwrap();
    let pinned = Server::new(
        other.path().to_path_buf(),
        ServeConfig::from_toml(&format!("[plugins.echo]\nsha256 = \"{pin}\"")).unwrap(),
    );
    assert_eq!(pinned.scan().refused.len(), 1);
    assert!(pinned.plugins().is_empty());
}

#[test]
fn reloads_under_load_fail_no_request() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("echo.wasm");
    let wasm = fixture("good", "core");
    std::fs::write(&file, &wasm).unwrap();
    let server = server(dir.path(), "[plugins.echo]\ninstances = 2");
    let runtime = runtime();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let load: Vec<_> = (0..4)
        .map(|i| {
            let (server, stop) = (server.clone(), stop.clone());
            runtime.spawn(async move {
                let mut n = 0u32;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let input = format!("{i}/{n}").into_bytes();
                    let answer = request(&server, "POST", "/v1/plugins/echo/echo", input.clone()).await;
                    assert_eq!((answer.status, answer.body), (StatusCode::OK, input));
                    n += 1;
                }
                n
            })
        })
        .collect();
    for tag in 0..20 {
        std::fs::write(&file, new_version(&wasm, tag)).unwrap();
        assert_eq!(server.scan().reloaded, ["echo"]);
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let served: u32 = runtime.block_on(async {
        let mut total = 0;
        for task in load {
            total += task.await.unwrap();
        }
        total
    });
    assert!(served > 0);
    assert_eq!(server.pool("echo").unwrap().stats().reloads, 20);
}

/// A SIGTERM sent before the shutdown future is first awaited (while the
/// plugins load) is kept: the future completes and the process lives on.
/// Were the handler installed only at the first poll, this test binary
/// would die of the signal.
#[cfg(unix)]
#[test]
fn stop_signal_keeps_a_sigterm_that_comes_before_it_is_awaited() {
    runtime().block_on(async {
        let stop = pabi_serve::stop_signal();
        let sent =
            std::process::Command::new("kill").args(["-TERM", &std::process::id().to_string()]).status().unwrap();
        assert!(sent.success());
        tokio::time::timeout(Duration::from_secs(10), stop).await.expect("the SIGTERM completes the future");
    });
}

#[test]
fn settings_that_match_nothing_are_reported_once() {
    let dir = tempfile::tempdir().unwrap();
    let pin = "ab".repeat(32);
    let toml = &format!("[plugins.ecoh]\nsha256 = \"{pin}\"\n[plugins.echo]\nhost_calls = [\"kv.get\"]");
    let server = Server::new(dir.path().to_path_buf(), ServeConfig::from_toml(toml).unwrap());
    let dir_text = dir.path().display();
    assert_eq!(
        server.scan().warnings,
        [
            format!("no plugin to serve: {dir_text} has no `*.wasm` file"),
            format!("[plugins.echo] configures no plugin: there is no {dir_text}/echo.wasm"),
            format!("[plugins.ecoh] configures no plugin: there is no {dir_text}/ecoh.wasm"),
            "[plugins.echo] host_calls names `kv.get`, which this server does not offer".to_string(),
        ]
    );
    assert_eq!(server.scan().warnings, Vec::<String>::new(), "already reported");
    // What changes is reported again: the folder gains `echo.wasm` only.
    std::fs::write(dir.path().join("echo.wasm"), fixture("good", "core")).unwrap();
    let report = server.scan();
    assert_eq!(report.loaded, ["echo"]);
    assert_eq!(report.warnings, Vec::<String>::new(), "fewer warnings, none new");
    std::fs::remove_file(dir.path().join("echo.wasm")).unwrap();
    assert_eq!(server.scan().warnings.len(), 2, "the empty folder and `echo` again");
}

/// With one permit (`[server] max_running = 1`), a call of a plugin that
/// burns CPU until its deadline does not hold a neighbour's call behind
/// it: the neighbour answers while the burner still runs.
#[test]
fn a_neighbour_answers_while_a_cpu_burner_holds_the_only_permit() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("io.wasm"), fixture("host-conformance", "io")).unwrap();
    std::fs::write(dir.path().join("echo.wasm"), fixture("good", "core")).unwrap();
    let toml = "[server]\nmax_running = 1\n[defaults]\ninstances = 1\n[plugins.io]\ntimeout = \"2s\"";
    let server = server(dir.path(), toml);
    let burner = server.pool("io").unwrap();
    runtime().block_on(async {
        let spinning = tokio::spawn({
            let server = server.clone();
            async move { request(&server, "POST", "/v1/plugins/io/spin", vec![]).await }
        });
        let started = std::time::Instant::now();
        while burner.stats().busy != 1 {
            assert!(started.elapsed() < Duration::from_secs(10), "the spin never ran");
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        let echo = request(&server, "POST", "/v1/plugins/echo/echo", b"my turn".to_vec()).await;
        assert_eq!((echo.status, echo.body.as_slice()), (StatusCode::OK, &b"my turn"[..]));
        assert_eq!(burner.stats().busy, 1, "the burner's call still runs");
        let metrics = String::from_utf8(request(&server, "GET", "/metrics", vec![]).await.body).unwrap();
        assert!(metrics.lines().any(|l| l == "pabi_calls_waiting_for_turn 0"), "{metrics}");
        assert_eq!(spinning.await.unwrap().error().kind.name(), "TIMEOUT");
    });
    let refused = ServeConfig::from_toml("[server]\nmax_running = 0").unwrap_err();
    assert!(refused.to_string().contains("max_running"), "{refused}");
}
