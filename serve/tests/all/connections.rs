//! The server on a real socket: what clients that stall, flood or leave
//! things unfinished can and cannot make it hold, and the drain.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use pabi_serve::{CallErrorBody, Server};

use crate::{fixture, request, server, Answer};

/// A bound against a hang, never an expected duration: every wait below
/// is for an event.
const GUARD: Duration = Duration::from_secs(20);

/// A server serving on `127.0.0.1:0` from a runtime of its own.
struct Running {
    server: Server,
    address: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    done: std::sync::mpsc::Receiver<std::io::Result<()>>,
    runtime: Option<tokio::runtime::Runtime>,
}

impl Running {
    fn start(dir: &std::path::Path, toml: &str) -> Running {
        let server = server(dir, toml);
        let runtime = crate::runtime();
        let listener = runtime.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
        let address = listener.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let (finished, done) = std::sync::mpsc::channel();
        let serving = server.clone();
        runtime.spawn(async move {
            let result = serving
                .serve(listener, Duration::ZERO, async {
                    let _ = stopped.await;
                })
                .await;
            let _ = finished.send(result);
        });
        Running { server, address, stop: Some(stop), done, runtime: Some(runtime) }
    }

    fn connect(&self) -> TcpStream {
        let stream = TcpStream::connect(self.address).unwrap();
        stream.set_read_timeout(Some(GUARD)).unwrap();
        stream
    }

    /// A connection that has sent `bytes`.
    fn send(&self, bytes: &[u8]) -> TcpStream {
        let mut stream = self.connect();
        stream.write_all(bytes).unwrap();
        stream
    }

    /// One of the server's metrics, read through its router; `None`
    /// until it has a value.
    fn try_metric(&self, name: &str) -> Option<i64> {
        let runtime = self.runtime.as_ref().unwrap();
        let text = runtime.block_on(request(&self.server, "GET", "/metrics", vec![])).body;
        let text = String::from_utf8(text).unwrap();
        text.lines().find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
    }

    fn metric(&self, name: &str) -> i64 {
        self.try_metric(name).unwrap_or_else(|| panic!("no metric `{name}`"))
    }

    /// Waits until the metric `name` satisfies `wanted`.
    fn wait_for(&self, name: &str, wanted: impl Fn(i64) -> bool) {
        let started = Instant::now();
        while !self.try_metric(name).is_some_and(&wanted) {
            assert!(started.elapsed() < GUARD, "{name} stayed at {:?}", self.try_metric(name));
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Completes the shutdown future: whether `serve` then returned
    /// within the guard, and returned Ok.
    fn stop(&mut self) -> bool {
        let _ = self.stop.take().unwrap().send(());
        matches!(self.done.recv_timeout(GUARD), Ok(Ok(())))
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        // A server that failed to stop must not hold the test up.
        self.runtime.take().unwrap().shutdown_background();
    }
}

/// The answer on `stream`: status, `Retry-After`, body. `None` if the
/// server closed the connection without one.
fn answer(stream: &mut TcpStream) -> Option<Answer> {
    let mut bytes = Vec::new();
    let mut buf = [0; 64 << 10];
    let head_end = loop {
        if let Some(end) = bytes.windows(4).position(|w| w == b"\r\n\r\n") {
            break end + 4;
        }
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => return None,
            Ok(n) => bytes.extend_from_slice(&buf[..n]),
        }
    };
    let head = String::from_utf8_lossy(&bytes[..head_end]).to_ascii_lowercase();
    let status = StatusCode::from_u16(head.split(' ').nth(1).unwrap().parse().unwrap()).unwrap();
    let header = |name: &str| {
        head.lines().find_map(|line| line.strip_prefix(&format!("{name}: ")).map(|value| value.trim().to_string()))
    };
    let len: usize = header("content-length").expect("a content-length").parse().unwrap();
    while bytes.len() < head_end + len {
        let n = stream.read(&mut buf).expect("the rest of the body");
        assert!(n > 0, "the body broke off");
        bytes.extend_from_slice(&buf[..n]);
    }
    Some(Answer { status, retry_after: header("retry-after"), body: bytes[head_end..head_end + len].to_vec() })
}

/// Whether the server closed `stream` (within the guard), reading and
/// dropping whatever comes before.
fn closed(stream: &mut TcpStream) -> bool {
    let mut buf = [0; 64 << 10];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(error) => return error.kind() == std::io::ErrorKind::ConnectionReset,
        }
    }
}

fn post_head(path: &str, extra: &str) -> String {
    format!("POST {path} HTTP/1.1\r\nHost: pabi\r\n{extra}\r\n")
}

/// A request for `pieces` × 64 KiB of output (`io`'s `flood`).
fn flood(pieces: u32) -> Vec<u8> {
    let mut request = post_head("/v1/plugins/io/flood", "Content-Length: 4\r\n").into_bytes();
    request.extend(pieces.to_le_bytes());
    request
}

fn plugin_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("io.wasm"), fixture("host-conformance", "io")).unwrap();
    dir
}

/// Clients that never finish what they started do not hold the drain:
/// it ends within its grace, the call still running is cancelled and
/// answered (also when it runs in place), every other connection is
/// closed.
#[test]
fn a_drain_ends_within_its_grace_whatever_the_clients_hold() {
    let dir = plugin_dir();
    let mut running = Running::start(
        dir.path(),
        "[server]\ngrace = \"1s\"\nheader_timeout = \"1h\"\nidle_timeout = \"1h\"\nbody_timeout = \"1h\"\n\
         send_timeout = \"1h\"\n[plugins.io]\ninstances = 2\ntimeout = \"1h\"\nmax_input = \"20 MiB\"\n\
         max_output = \"20 MiB\"",
    );
    let echo = "/v1/plugins/io/echo";
    let mut stalled = vec![
        // A head without its end.
        running.send(b"POST /v1/plugins/io/echo HTTP/1.1\r\nHost: pabi\r\n"),
        // A chunked body without its last chunk.
        running.send(format!("{}5\r\nhello\r\n", post_head(echo, "Transfer-Encoding: chunked\r\n")).as_bytes()),
        // A body shorter than its length.
        running.send(format!("{}0123456789", post_head(echo, "Content-Length: 100\r\n")).as_bytes()),
    ];
    // A large answer nobody reads.
    let unread = running.send(&flood(256));
    running.wait_for("pabi_call_duration_seconds_count{plugin=\"io\"}", |n| n == 1);
    stalled.push(unread);
    // Short calls until one runs in place, so that the next one does too,
    // where only a cancel, not a drop, can end it.
    let pool = running.server.pool("io").unwrap();
    for short in 0.. {
        if pool.stats().calls_in_place > 0 {
            break;
        }
        // A loaded machine may make a call long, which starts the count
        // again; a thousand are many times what it takes.
        assert!(short < 1000, "no short call ran in place");
        let mut client = running.send(format!("{}hi", post_head(echo, "Content-Length: 2\r\n")).as_bytes());
        assert_eq!(answer(&mut client).unwrap().status, StatusCode::OK);
    }
    // A call that would run for an hour.
    let mut spinning = running.send(post_head("/v1/plugins/io/spin", "Content-Length: 0\r\n").as_bytes());
    let started = Instant::now();
    while pool.stats().busy == 0 {
        assert!(started.elapsed() < GUARD, "the spinning call never started");
        std::thread::sleep(Duration::from_millis(2));
    }
    running.wait_for("pabi_connections", |n| n == 5);

    assert!(running.stop(), "the drain did not end");
    let cancelled = answer(&mut spinning).expect("the cancelled call is answered");
    assert_eq!((cancelled.status, cancelled.retry_after.as_deref()), (StatusCode::SERVICE_UNAVAILABLE, Some("1")));
    assert_eq!(cancelled.error().kind.name(), "CANCELLED");
    for (i, stream) in stalled.iter_mut().enumerate() {
        assert!(closed(stream), "stalled client {i} still connected");
    }
}

/// A head, a body or a wait for the next request that takes too long
/// ends: the connection closed, or the call answered 408.
#[test]
fn slow_heads_bodies_and_idle_connections_are_cut_off() {
    let dir = plugin_dir();
    let running = Running::start(
        dir.path(),
        "[server]\nheader_timeout = \"200ms\"\nidle_timeout = \"200ms\"\nbody_timeout = \"200ms\"\n\
         min_body_rate = \"1 MiB\"",
    );
    let echo = "/v1/plugins/io/echo";
    let mut half_head = running.send(b"POST /v1/plugins/io/echo HTTP/1.1\r\nHost: pabi\r\n");
    let mut silent = running.connect();
    let mut kept_alive = running.send(b"GET /healthz HTTP/1.1\r\nHost: pabi\r\n\r\n");
    let mut short = running.send(format!("{}0123456789", post_head(echo, "Content-Length: 100\r\n")).as_bytes());
    let mut unended =
        running.send(format!("{}5\r\nhello\r\n", post_head(echo, "Transfer-Encoding: chunked\r\n")).as_bytes());

    assert!(closed(&mut half_head), "a head that never ends");
    assert!(closed(&mut silent), "a connection that never sends");
    assert_eq!(answer(&mut kept_alive).unwrap().status, StatusCode::OK);
    assert!(closed(&mut kept_alive), "a kept-alive connection that sends nothing more");
    for stream in [&mut short, &mut unended] {
        let timed_out = answer(stream).expect("a slow body is answered");
        assert_eq!((timed_out.status, timed_out.error().kind.name()), (StatusCode::REQUEST_TIMEOUT, "REQUEST_TIMEOUT"));
    }
    assert!(running.metric("pabi_connections_timed_out_total") >= 3);
}

/// A declared length past `max_input` is refused before a byte of the
/// body is read.
#[test]
fn a_content_length_past_max_input_is_413_at_once() {
    let dir = plugin_dir();
    let running = Running::start(dir.path(), "[plugins.io]\nmax_input = \"1 KiB\"");
    let mut huge = running.send(post_head("/v1/plugins/io/echo", "Content-Length: 1073741824\r\n").as_bytes());
    let refused = answer(&mut huge).expect("answered without the body");
    let error = refused.error();
    assert_eq!((refused.status, error.kind.name()), (StatusCode::PAYLOAD_TOO_LARGE, "INPUT_LIMIT"));
    assert!(error.message.contains("1073741824 bytes"), "{}", error.message);
}

/// At the cap, a new connection pushes out the one idle the longest, so
/// that clients holding connections open cannot keep a normal client out;
/// only when every connection has a request in progress is a new one
/// refused, with 503 and `Retry-After`.
#[test]
fn at_the_cap_an_idle_connection_makes_room_and_busy_ones_refuse() {
    let dir = plugin_dir();
    let running = Running::start(dir.path(), "[server]\nmax_connections = 3");
    let _idle: Vec<_> = (0..3).map(|_| running.connect()).collect();
    running.wait_for("pabi_connections", |n| n == 3);
    let mut normal =
        running.send(format!("{}hi", post_head("/v1/plugins/io/echo", "Content-Length: 2\r\n")).as_bytes());
    let served = answer(&mut normal).expect("a normal client is served at the cap");
    assert_eq!((served.status, served.body.as_slice()), (StatusCode::OK, &b"hi"[..]));
    assert_eq!(running.metric("pabi_connections_pushed_out_total"), 1);
    drop(normal);
    running.wait_for("pabi_connections", |n| n <= 3);
    // Three requests in progress: each has sent its head and half its body.
    let head = post_head("/v1/plugins/io/echo", "Content-Length: 4\r\n");
    let busy: Vec<_> = (0..3).map(|_| running.send(format!("{head}ab").as_bytes())).collect();
    running.wait_for("pabi_connections", |n| n == 3);
    running.wait_for("pabi_held_bytes", |n| n >= 12);
    let mut extra = running.connect();
    let refused = answer(&mut extra).expect("a connection past the cap is answered");
    assert_eq!((refused.status, refused.retry_after.as_deref()), (StatusCode::SERVICE_UNAVAILABLE, Some("1")));
    let error: CallErrorBody = refused.error();
    assert!(error.message.contains("max_connections"), "{}", error.message);
    assert_eq!(running.metric("pabi_connections_refused_total"), 1);
    for mut client in busy {
        client.write_all(b"cd").unwrap();
        let answer = answer(&mut client).unwrap();
        assert_eq!((answer.status, answer.body.as_slice()), (StatusCode::OK, &b"abcd"[..]));
    }
}

/// However many clients send bodies at once, a plugin holds at most
/// `instances + max_queue` of them; the others are answered 503 before
/// their body is read; what was held is let go once they are answered.
#[test]
fn request_bodies_are_held_only_by_admitted_calls() {
    let dir = plugin_dir();
    let running = Running::start(dir.path(), "[plugins.io]\ninstances = 1\nmax_queue = 1\nmax_input = \"1 MiB\"");
    // `flood` reads a count of zero and writes nothing.
    let mut body = vec![0; 1 << 20];
    body[4..].fill(b'x');
    let head = post_head("/v1/plugins/io/flood", &format!("Content-Length: {}\r\n", body.len()));
    let mut admitted = Vec::new();
    let mut refused = 0;
    for _ in 0..6 {
        let mut client = running.send(head.as_bytes());
        // Admission is decided before the body is read: a refused client
        // is answered at once, without sending it; an admitted one sends
        // all of it but the last byte, and holds its place.
        if admitted.len() == 2 {
            let answer = answer(&mut client).expect("refused at once");
            assert_eq!((answer.status, answer.error().kind.name()), (StatusCode::SERVICE_UNAVAILABLE, "HOST_FAILURE"));
            refused += 1;
        } else {
            client.write_all(&body[..body.len() - 1]).unwrap();
            admitted.push(client);
            running.wait_for("pabi_held_bytes", |n| n as usize >= admitted.len() * body.len());
        }
        let held = running.metric("pabi_held_bytes");
        assert!(held as usize <= 2 * body.len(), "{held} bytes held for bodies, past 2 × max_input");
    }
    assert_eq!(refused, 4);
    for mut client in admitted {
        client.write_all(&body[body.len() - 1..]).unwrap();
        let answer = answer(&mut client).unwrap();
        assert_eq!(answer.status, StatusCode::OK, "{}", String::from_utf8_lossy(&answer.body));
    }
    running.wait_for("pabi_held_bytes", |n| n == 0);
}

/// An output its client does not read keeps its call's place, so that
/// the outputs held are bounded as the bodies are, until the send timeout
/// lets it go.
#[test]
fn unread_outputs_are_bounded_and_let_go_at_the_send_timeout() {
    let dir = plugin_dir();
    let running = Running::start(
        dir.path(),
        "[server]\nsend_timeout = \"2s\"\n[plugins.io]\ninstances = 1\nmax_queue = 1\nmax_input = \"20 MiB\"\n\
         max_output = \"20 MiB\"",
    );
    // 16 MiB each: more than loopback's socket buffers take.
    let mut readers: Vec<_> = (0..2).map(|_| running.send(&flood(256))).collect();
    running.wait_for("pabi_call_duration_seconds_count{plugin=\"io\"}", |n| n == 2);
    let held = running.metric("pabi_held_bytes");
    assert!(held <= 2 * (16 << 20), "{held} bytes held, past 2 × the output");
    // Both places are taken by outputs nobody reads: a third call is
    // refused, until the send timeout frees them.
    let refused = answer(&mut running.send(&flood(1))).unwrap();
    assert_eq!(refused.status, StatusCode::SERVICE_UNAVAILABLE);
    running.wait_for("pabi_connections_timed_out_total", |n| n == 2);
    running.wait_for("pabi_held_bytes", |n| n == 0);
    for client in &mut readers {
        assert!(closed(client));
    }
    let mut next = running.send(format!("{}hi", post_head("/v1/plugins/io/echo", "Content-Length: 2\r\n")).as_bytes());
    assert_eq!(answer(&mut next).unwrap().status, StatusCode::OK);
}

/// Requests the routes cannot take are answered with the documented JSON
/// body, of a kind that says why, and no call runs.
#[test]
fn malformed_requests_and_unknown_routes_are_answered_in_json() {
    let dir = plugin_dir();
    let running = Running::start(dir.path(), "");
    let mut bad_chunk = running.send(
        format!("{}zz\r\nhello\r\n", post_head("/v1/plugins/io/echo", "Transfer-Encoding: chunked\r\n")).as_bytes(),
    );
    let bad = answer(&mut bad_chunk).unwrap();
    assert_eq!((bad.status, bad.error().kind.name()), (StatusCode::BAD_REQUEST, "BAD_REQUEST"));
    for (method, uri, status, kind) in [
        ("POST", "/v1/plugins/%FF/echo", StatusCode::BAD_REQUEST, "BAD_REQUEST"),
        ("POST", "/v2/nothing", StatusCode::NOT_FOUND, "UNKNOWN_ROUTE"),
        ("GET", "/v1/plugins/io/echo", StatusCode::METHOD_NOT_ALLOWED, "UNKNOWN_ROUTE"),
    ] {
        let mut client =
            running.send(format!("{method} {uri} HTTP/1.1\r\nHost: pabi\r\nContent-Length: 0\r\n\r\n").as_bytes());
        let answer = answer(&mut client).unwrap();
        assert_eq!((answer.status, answer.error().kind.name()), (status, kind), "{method} {uri}");
    }
    assert_eq!(running.server.pool("io").unwrap().stats().calls, 0, "no call ran");
}

/// A head hyper cannot parse is answered by hyper itself, before any
/// route runs: the server gives that answer the documented JSON body too.
#[test]
fn heads_that_cannot_be_parsed_are_answered_in_json() {
    let dir = plugin_dir();
    let running = Running::start(dir.path(), "");
    let huge = format!("POST /v1/plugins/io/echo HTTP/1.1\r\nX-Pad: {}\r\n\r\n", "a".repeat(1 << 20));
    for (head, status) in [
        ("GARBAGE\r\n\r\n".to_string(), StatusCode::BAD_REQUEST),
        ("POST /v1/plugins/io/echo HTTP/1.1\r\nBad Header\r\n\r\n".to_string(), StatusCode::BAD_REQUEST),
        (huge, StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE),
    ] {
        let mut client = running.connect();
        // The server may answer and close before it has read all of a
        // huge head: the write's outcome is not what is tested.
        let _ = client.write_all(head.as_bytes());
        let answer = answer(&mut client).unwrap_or_else(|| panic!("no answer to {:?}", &head[..20.min(head.len())]));
        assert_eq!(
            (answer.status, answer.error().kind.name()),
            (status, "BAD_REQUEST"),
            "{:?}",
            &head[..20.min(head.len())]
        );
        assert!(answer.error().message.contains(status.as_str()), "{}", answer.error().message);
    }
    assert_eq!(running.server.pool("io").unwrap().stats().calls, 0, "no call ran");
}
