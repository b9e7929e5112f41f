//! The HTTP routes and the mapping of host errors to HTTP answers.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use http_body_util::BodyExt;
use hyper::body::{Frame, SizeHint};
use pabi_abi::HostErrorKind;
use pabi_host::Error;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use serde::Serialize;
use tokio::sync::OwnedSemaphorePermit;

use crate::metrics::{CallLabels, ErrorLabels, Metrics, PluginLabel};
use crate::{read, State as Shared};

/// The JSON Schema of [`CallErrorBody`].
pub const SERVE_ERROR_SCHEMA: &str = include_str!("../../spec/schemas/serve-error.schema.json");

/// The body of a failed call.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, serde::Deserialize)]
#[non_exhaustive]
pub struct CallErrorBody {
    pub kind: CallErrorKind,
    /// The plugin's status, for `PLUGIN_ERROR` and `UNKNOWN_STATUS`.
    pub status: Option<i32>,
    /// What happened, for people; a plugin's own message for `PLUGIN_ERROR`.
    pub message: String,
}

/// What kind of failure a request met: a host error kind (`ERR-6`), or
/// one of the server's own, for a request that reached no plugin. It
/// crosses HTTP as its name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum CallErrorKind {
    Host(HostErrorKind),
    /// `UNKNOWN_PLUGIN`: no plugin of that name is served (404).
    UnknownPlugin,
    /// `UNKNOWN_ROUTE`: no route has that path (404), or not with that
    /// method (405).
    UnknownRoute,
    /// `BAD_REQUEST`: the request cannot be read as one: a malformed
    /// chunked body, a path segment that is not UTF-8, a head that cannot
    /// be parsed (400); a path or a head too long (414, 431). No call ran.
    BadRequest,
    /// `REQUEST_TIMEOUT`: the request body came slower than the server's
    /// `body_timeout` and `min_body_rate` allow (408). No call ran.
    RequestTimeout,
}

impl CallErrorKind {
    pub fn name(self) -> &'static str {
        match self {
            CallErrorKind::Host(kind) => kind.name(),
            CallErrorKind::UnknownPlugin => "UNKNOWN_PLUGIN",
            CallErrorKind::UnknownRoute => "UNKNOWN_ROUTE",
            CallErrorKind::BadRequest => "BAD_REQUEST",
            CallErrorKind::RequestTimeout => "REQUEST_TIMEOUT",
        }
    }

    pub fn from_name(name: &str) -> Option<CallErrorKind> {
        match name {
            "UNKNOWN_PLUGIN" => Some(CallErrorKind::UnknownPlugin),
            "UNKNOWN_ROUTE" => Some(CallErrorKind::UnknownRoute),
            "BAD_REQUEST" => Some(CallErrorKind::BadRequest),
            "REQUEST_TIMEOUT" => Some(CallErrorKind::RequestTimeout),
            other => HostErrorKind::from_name(other).map(CallErrorKind::Host),
        }
    }

    /// The HTTP status this kind is answered with: [`http_status`] for a
    /// host error kind; 404, 404, 400 and 408 for the server's own (a
    /// route's path known but not its method is 405, [`UnknownRoute`]
    /// all the same).
    ///
    /// [`UnknownRoute`]: CallErrorKind::UnknownRoute
    pub fn http_status(self) -> StatusCode {
        match self {
            CallErrorKind::Host(kind) => http_status(Some(kind)),
            CallErrorKind::UnknownPlugin | CallErrorKind::UnknownRoute => StatusCode::NOT_FOUND,
            CallErrorKind::BadRequest => StatusCode::BAD_REQUEST,
            CallErrorKind::RequestTimeout => StatusCode::REQUEST_TIMEOUT,
        }
    }

    /// The kind of a host error; a configuration the host cannot apply has
    /// none, and the server cannot serve: `HOST_FAILURE`.
    pub fn of(error: &Error) -> CallErrorKind {
        CallErrorKind::Host(error.kind().unwrap_or(HostErrorKind::HostFailure))
    }
}

impl std::fmt::Display for CallErrorKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl Serialize for CallErrorKind {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.name())
    }
}

impl<'de> serde::Deserialize<'de> for CallErrorKind {
    fn deserialize<D: serde::Deserializer<'de>>(de: D) -> Result<CallErrorKind, D::Error> {
        let name = String::deserialize(de)?;
        CallErrorKind::from_name(&name)
            .ok_or_else(|| serde::de::Error::custom(format!("`{name}` is not an error kind")))
    }
}

/// The HTTP status of a failed call of each host error kind:
///
/// | kind | HTTP |
/// |---|---|
/// | `PLUGIN_ERROR` (the plugin refused the input) | 422 |
/// | `UNKNOWN_FUNCTION` | 404 |
/// | `INPUT_LIMIT` | 413 |
/// | `TIMEOUT` | 504 |
/// | `HOST_FAILURE` (a full queue, or the server's `max_connections`, among them), `CRASH_LOOP` | 503, with `Retry-After` |
/// | `CANCELLED` (the client went away) | 499; cancelled by the end of a drain's grace: 503, with `Retry-After` |
/// | anything else: the plugin trapped, broke the ABI or a limit | 502 |
///
/// 502 and 504 treat the plugin as the server's upstream: the request may
/// be fine, the code serving it failed or was too slow.
pub fn http_status(kind: Option<HostErrorKind>) -> StatusCode {
    match kind {
        Some(HostErrorKind::PluginError) => StatusCode::UNPROCESSABLE_ENTITY,
        Some(HostErrorKind::UnknownFunction) => StatusCode::NOT_FOUND,
        Some(HostErrorKind::InputLimit) => StatusCode::PAYLOAD_TOO_LARGE,
        Some(HostErrorKind::Timeout) => StatusCode::GATEWAY_TIMEOUT,
        Some(HostErrorKind::HostFailure | HostErrorKind::CrashLoop) | None => StatusCode::SERVICE_UNAVAILABLE,
        Some(HostErrorKind::Cancelled) => StatusCode::from_u16(499).expect("499 is a valid status"),
        Some(_) => StatusCode::BAD_GATEWAY,
    }
}

pub(crate) fn router(state: Arc<Shared>) -> Router {
    Router::new()
        .route("/v1/plugins/{plugin}/{function}", post(call))
        .route("/v1/plugins", get(list))
        .route("/healthz", get(health))
        .route("/metrics", get(metrics))
        .fallback(unknown_route)
        .method_not_allowed_fallback(method_not_allowed)
        // The body is read in `call`, against the plugin's own cap.
        .layer(axum::extract::DefaultBodyLimit::disable())
        .with_state(state)
}

async fn unknown_route(uri: axum::http::Uri) -> Response {
    let message = format!("{}: no route is `{}`", CallErrorKind::UnknownRoute, uri.path());
    answer(CallErrorKind::UnknownRoute, message, None)
}

async fn method_not_allowed(method: axum::http::Method, uri: axum::http::Uri) -> Response {
    let message = format!("{}: `{}` takes no {method}", CallErrorKind::UnknownRoute, uri.path());
    let mut response = answer(CallErrorKind::UnknownRoute, message, None);
    *response.status_mut() = StatusCode::METHOD_NOT_ALLOWED;
    response
}

/// An error answer of one of the kinds without a plugin status.
fn answer(kind: CallErrorKind, message: String, retry_after: Option<u64>) -> Response {
    error_response(kind.http_status(), CallErrorBody { kind, status: None, message }, retry_after)
}

/// The JSON body of an error answer written outside the routes (a
/// connection past the cap), as the routes write it.
pub(crate) fn error_json(kind: CallErrorKind, message: String) -> Vec<u8> {
    serde_json::to_vec(&CallErrorBody { kind, status: None, message }).expect("an error body serializes")
}

fn error_response(status: StatusCode, body: CallErrorBody, retry_after: Option<u64>) -> Response {
    let mut response = (status, axum::Json(body)).into_response();
    if let Some(seconds) = retry_after {
        response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(seconds));
    }
    response
}

/// The body of a failed call: a plugin's own message for `PLUGIN_ERROR`,
/// the host's words otherwise.
fn error_body(error: &Error) -> CallErrorBody {
    let message = match error {
        Error::PluginError { message, .. } => String::from_utf8_lossy(message).into_owned(),
        other => other.to_string(),
    };
    CallErrorBody { kind: CallErrorKind::of(error), status: error.status(), message }
}

/// Seconds after which trying again may succeed, for the failures that
/// pass: for a crash loop, the plugin's `crash_reset`, after which it is
/// tried again, in whole seconds rounded up.
fn retry_after(error: &Error, crash_reset: Duration) -> Option<u64> {
    match error {
        Error::CrashLoop { .. } => Some(whole_seconds(crash_reset)),
        Error::HostUnavailable(_) => Some(1),
        _ => None,
    }
}

/// A duration in whole seconds, rounded up, and at least 1: what
/// `Retry-After` can say.
fn whole_seconds(duration: Duration) -> u64 {
    duration.as_secs().saturating_add(u64::from(duration.subsec_nanos() > 0)).max(1)
}

fn failure_response(error: &Error, body: CallErrorBody, crash_reset: Duration) -> Response {
    error_response(http_status(error.kind()), body, retry_after(error, crash_reset))
}

/// Why a request body was not read to its end.
enum Unread {
    /// Past the plugin's `max_input`.
    TooLong,
    /// The client stopped sending: gone, or the connection broke.
    Broken(String),
    /// Not a body HTTP/1.1 can read: a malformed chunk.
    Malformed(String),
    /// Slower than `body_timeout` and `min_body_rate` allow.
    TooSlow { received: usize, allowed: Duration },
    /// The drain's grace ran out.
    Drained,
}

/// Bytes the server holds for a call, its request body and then its
/// output, counted in the `pabi_held_bytes` gauge while they are held.
pub(crate) struct Held {
    gauge: Gauge,
    bytes: i64,
}

impl Held {
    fn new(gauge: &Gauge) -> Held {
        Held { gauge: gauge.clone(), bytes: 0 }
    }

    fn set(&mut self, bytes: usize) {
        let bytes = i64::try_from(bytes).unwrap_or(i64::MAX);
        self.gauge.inc_by(bytes - self.bytes);
        self.bytes = bytes;
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        self.gauge.dec_by(self.bytes);
    }
}

/// The calls running, which the end of a drain's grace cancels where
/// they run: a call the pool runs in place cannot be dropped
/// (`pabi_host::Pool::call_async`), so `aborted` alone would not end it.
/// In shards, so that calls on different threads rarely share a lock.
#[derive(Default)]
pub(crate) struct CallsRunning {
    next: std::sync::atomic::AtomicU64,
    shards: [std::sync::Mutex<HashMap<u64, pabi_host::CancelHandle>>; 16],
}

impl CallsRunning {
    /// Counts `cancel`'s call as running until the guard drops; cancels it
    /// at once if the grace has run out already.
    fn enter<'a>(&'a self, cancel: &pabi_host::CancelHandle, state: &Shared) -> RunningCall<'a> {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let shard = &self.shards[id as usize % self.shards.len()];
        crate::lock(shard).insert(id, cancel.clone());
        // Looked at after the entry: a drain ending now either sees the
        // entry or is seen here.
        if *state.abort.borrow() {
            cancel.cancel();
        }
        RunningCall { shard, id }
    }

    /// Cancels every call running.
    pub(crate) fn cancel_all(&self) {
        for shard in &self.shards {
            for cancel in crate::lock(shard).values() {
                cancel.cancel();
            }
        }
    }
}

/// A call's entry in [`CallsRunning`], removed when it drops.
struct RunningCall<'a> {
    shard: &'a std::sync::Mutex<HashMap<u64, pabi_host::CancelHandle>>,
    id: u64,
}

impl Drop for RunningCall<'_> {
    fn drop(&mut self) {
        crate::lock(self.shard).remove(&self.id);
    }
}

/// Completes once the drain's grace has run out: what a call or a body
/// still in progress then gives way to.
pub(crate) async fn aborted(state: &Shared) {
    let mut abort = state.abort.subscribe();
    if abort.wait_for(|aborted| *aborted).await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// Reads a request body into a buffer of its own size, within the
/// plugin's cap and the server's body timeout and minimum rate, counting
/// what it holds in `held`.
async fn read_body(
    state: &Shared,
    mut body: Body,
    declared: Option<u64>,
    max_input: u64,
    held: &mut Held,
) -> Result<Vec<u8>, Unread> {
    let settings = &state.config.server;
    let started = tokio::time::Instant::now();
    let max_input = usize::try_from(max_input).unwrap_or(usize::MAX);
    // The declared length is at most the cap here: one allocation of the
    // body's size, where doubling would hold up to twice as much.
    let mut input = Vec::with_capacity(declared.and_then(|len| usize::try_from(len).ok()).unwrap_or(0));
    held.set(input.capacity());
    loop {
        // The body may take `body_timeout`, and the time its bytes take
        // at `min_body_rate`: a client that keeps sending fast enough is
        // never cut off, one that trickles is.
        let allowed =
            settings.body_timeout() + Duration::from_secs_f64(input.len() as f64 / settings.min_body_rate() as f64);
        let frame = tokio::select! {
            frame = body.frame() => frame,
            () = tokio::time::sleep_until(started + allowed) => {
                return Err(Unread::TooSlow { received: input.len(), allowed });
            }
            () = aborted(state) => return Err(Unread::Drained),
        };
        let data = match frame {
            None => return Ok(input),
            Some(Err(error)) => return Err(unread(error)),
            Some(Ok(frame)) => match frame.into_data() {
                Ok(data) => data,
                Err(_trailers) => continue,
            },
        };
        let needed = input.len() + data.len();
        if needed > max_input {
            return Err(Unread::TooLong);
        }
        if needed > input.capacity() {
            // Grows by doubling, but never past the cap.
            let target = needed.max(input.capacity() * 2).min(max_input);
            input.reserve_exact(target - input.len());
        }
        input.extend_from_slice(&data);
        held.set(input.capacity());
    }
}

/// A body that broke off, as the client's doing or a malformed body:
/// hyper reports a chunk it cannot parse as invalid data or input, and a
/// connection that ends early as an unexpected end of file.
fn unread(error: axum::Error) -> Unread {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&error);
    while let Some(cause) = source {
        if let Some(io) = cause.downcast_ref::<std::io::Error>() {
            if matches!(io.kind(), std::io::ErrorKind::InvalidData | std::io::ErrorKind::InvalidInput) {
                return Unread::Malformed(io.to_string());
            }
        }
        source = cause.source();
    }
    Unread::Broken(error.to_string())
}

/// A call's output as a response body: written out in pieces of 64 KiB,
/// each copied, so that hyper's buffers never hold more than a few of
/// them and the output itself is freed, with the call's admission permit,
/// as soon as its last piece is handed over. While the client does not
/// read, the output is held, counted, and keeps its permit.
struct Output {
    bytes: Vec<u8>,
    sent: usize,
    _held: Held,
    _permit: OwnedSemaphorePermit,
}

const PIECE: usize = 64 << 10;

impl hyper::body::Body for Output {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, std::convert::Infallible>>> {
        let this = self.get_mut();
        if this.sent == this.bytes.len() {
            return Poll::Ready(None);
        }
        let end = (this.sent + PIECE).min(this.bytes.len());
        let piece = Bytes::copy_from_slice(&this.bytes[this.sent..end]);
        this.sent = end;
        Poll::Ready(Some(Ok(Frame::data(piece))))
    }

    fn is_end_stream(&self) -> bool {
        self.sent == self.bytes.len()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact((self.bytes.len() - self.sent) as u64)
    }
}

/// What ended a call that did not return OK.
enum Failed {
    Host(Error, CallErrorBody),
    /// A failure of the server's own kinds, or one answered otherwise
    /// than its kind's status says.
    Server {
        status: StatusCode,
        body: CallErrorBody,
        retry_after: Option<u64>,
    },
}

impl Failed {
    fn server(kind: CallErrorKind, message: String) -> Failed {
        Failed::Server {
            status: kind.http_status(),
            body: CallErrorBody { kind, status: None, message },
            retry_after: None,
        }
    }

    fn host(error: Error) -> Failed {
        let body = error_body(&error);
        Failed::Host(error, body)
    }

    fn kind(&self) -> CallErrorKind {
        match self {
            Failed::Host(_, body) | Failed::Server { body, .. } => body.kind,
        }
    }
}

async fn call(
    State(state): State<Arc<Shared>>,
    path: Result<Path<(String, String)>, PathRejection>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let started = Instant::now();
    let (plugin, function) = match path {
        Ok(Path(names)) => names,
        Err(rejection) => {
            let message = format!("{}: {rejection}", CallErrorKind::BadRequest);
            state.metrics.errors.get_or_create(&unknown_plugin_labels(CallErrorKind::BadRequest)).inc();
            return answer(CallErrorKind::BadRequest, message, None);
        }
    };
    let found = {
        let plugins = read(&state.plugins);
        plugins.get(&plugin).cloned().ok_or_else(|| plugins.keys().cloned().collect::<Vec<_>>())
    };
    let loaded = match found {
        Ok(loaded) => loaded,
        Err(served) => {
            // Like unknown functions, unknown plugins share one label: a
            // client naming a new one per request cannot grow the metrics.
            state.metrics.errors.get_or_create(&unknown_plugin_labels(CallErrorKind::UnknownPlugin)).inc();
            let served = if served.is_empty() { "none".to_string() } else { served.join(", ") };
            let message = format!("{}: no plugin `{plugin}` is served; served: {served}", CallErrorKind::UnknownPlugin);
            return answer(CallErrorKind::UnknownPlugin, message, None);
        }
    };
    let known = loaded.calls.functions.get(&function);
    match known {
        Some(known) => {
            known.calls.inc();
        }
        // Unknown names share one label: a client cannot grow the metrics.
        None => {
            let labels = CallLabels { plugin: plugin.clone(), function: "(unknown)".into() };
            state.metrics.calls.get_or_create(&labels).inc();
        }
    }
    let result = admit_and_call(&state, &loaded, &function, &headers, body).await;
    loaded.calls.latency.observe(started.elapsed().as_secs_f64());
    match result {
        Ok(output) => {
            let mut response = (StatusCode::OK, Body::new(output)).into_response();
            if let Some(media) = known.and_then(|known| known.media.clone()) {
                response.headers_mut().insert(header::CONTENT_TYPE, media);
            }
            response
        }
        Err(failed) => {
            if failed.kind() == CallErrorKind::Host(HostErrorKind::HostFailure) {
                let message = match &failed {
                    Failed::Host(_, body) | Failed::Server { body, .. } => &body.message,
                };
                tracing::warn!(plugin = %plugin, "answered 503: {message}");
            }
            let kind = failed.kind().name().to_string();
            state.metrics.errors.get_or_create(&ErrorLabels { plugin, kind }).inc();
            match failed {
                Failed::Host(error, body) => failure_response(&error, body, loaded.settings.crash_reset()),
                Failed::Server { status, body, retry_after } => error_response(status, body, retry_after),
            }
        }
    }
}

/// What a call of one version of a plugin needs besides its pool, looked
/// up once when that version is taken in rather than on every request:
/// the handles of its metrics (a lookup by labels builds the labels, two
/// strings, and hashes them) and the media type of each function's
/// output as a header. A version whose functions changed under a reload
/// in progress falls back on the lookups.
pub(crate) struct CallPath {
    latency: Histogram,
    functions: HashMap<String, FunctionPath>,
}

struct FunctionPath {
    calls: Counter,
    /// `None`: a media type that cannot be a header value is left out.
    media: Option<HeaderValue>,
}

impl CallPath {
    pub(crate) fn new(metrics: &Metrics, plugin: &str, pool: &pabi_host::Pool) -> CallPath {
        let metadata = pool.metadata();
        let functions = pool
            .functions()
            .iter()
            .map(|function| {
                let labels = CallLabels { plugin: plugin.to_string(), function: function.clone() };
                let media = metadata.function(function).and_then(|f| f.output.as_deref());
                let media = HeaderValue::from_str(media.unwrap_or("application/octet-stream")).ok();
                (function.clone(), FunctionPath { calls: metrics.calls.get_or_create(&labels).clone(), media })
            })
            .collect();
        let latency = metrics.latency.get_or_create(&PluginLabel { plugin: plugin.to_string() }).clone();
        CallPath { latency, functions }
    }
}

fn unknown_plugin_labels(kind: CallErrorKind) -> ErrorLabels {
    ErrorLabels { plugin: "(unknown)".into(), kind: kind.name().into() }
}

/// Admits a call, reads its body and runs it.
///
/// A call is admitted, before a byte of its body is read, only with one
/// of its plugin's `instances + max_queue` permits, held until its output
/// is handed to the connection: however many clients send at once, a
/// plugin's calls hold at most that many bodies and outputs. A call
/// without one is answered at once, as a full queue is.
async fn admit_and_call(
    state: &Shared,
    loaded: &crate::Loaded,
    function: &str,
    headers: &HeaderMap,
    body: Body,
) -> Result<Output, Failed> {
    let max_input = loaded.settings.max_input();
    let declared = headers.get(header::CONTENT_LENGTH).and_then(|value| value.to_str().ok()?.parse::<u64>().ok());
    if let Some(len) = declared.filter(|len| *len > max_input) {
        // Answered before reading: the body would be refused anyway.
        return Err(Failed::host(Error::InputLimit { len: Some(len), limit: max_input }));
    }
    let Ok(permit) = loaded.admission.clone().try_acquire_owned() else {
        let admitted = loaded.settings.instances() + loaded.settings.max_queue();
        let message = format!(
            "{}: the queue is full: {admitted} calls admitted (instances + max_queue); try again",
            HostErrorKind::HostFailure.name()
        );
        let body = CallErrorBody { kind: CallErrorKind::Host(HostErrorKind::HostFailure), status: None, message };
        return Err(Failed::Server { status: StatusCode::SERVICE_UNAVAILABLE, body, retry_after: Some(1) });
    };
    let mut held = Held::new(&state.metrics.held_bytes);
    let input = read_body(state, body, declared, max_input, &mut held).await.map_err(|unread| match unread {
        Unread::TooLong => Failed::host(Error::InputLimit { len: declared, limit: max_input }),
        Unread::Broken(why) => {
            // The client stopped sending: no call was made, and the
            // caller is what ended it.
            let error = Error::Cancelled;
            let mut body = error_body(&error);
            body.message = format!("{}: the request body could not be read: {why}", body.message);
            Failed::Host(error, body)
        }
        Unread::Malformed(why) => {
            Failed::server(CallErrorKind::BadRequest, format!("BAD_REQUEST: the request body is malformed: {why}"))
        }
        Unread::TooSlow { received, allowed } => Failed::server(
            CallErrorKind::RequestTimeout,
            format!(
                "REQUEST_TIMEOUT: {received} bytes of the body came in {allowed:?}, slower than body_timeout and min_body_rate allow"
            ),
        ),
        Unread::Drained => drained(),
    })?;
    let cancel = pabi_host::CancelHandle::new();
    let _running = state.calls.enter(&cancel, state);
    let call = loaded.pool.call_async_cancellable(function, input, cancel);
    // The input moved into the call; it is held until the call returns.
    let output = tokio::select! {
        result = call => match result {
            // Cancelled by the drain's end, where it ran in place.
            Err(Error::Cancelled) if *state.abort.borrow() => return Err(drained()),
            result => result.map_err(Failed::host)?,
        },
        // Dropping the call cancels it.
        () = aborted(state) => return Err(drained()),
    };
    held.set(output.capacity());
    Ok(Output { bytes: output, sent: 0, _held: held, _permit: permit })
}

/// A call cancelled because the drain's grace ran out: `CANCELLED`, but
/// 503 with `Retry-After`, as the client is not the one who ended it.
fn drained() -> Failed {
    let body = CallErrorBody {
        kind: CallErrorKind::Host(HostErrorKind::Cancelled),
        status: None,
        message: "CANCELLED: the server is shutting down and its grace period ran out".into(),
    };
    Failed::Server { status: StatusCode::SERVICE_UNAVAILABLE, body, retry_after: Some(1) }
}

#[derive(Serialize)]
struct PluginEntry {
    name: String,
    file: String,
    sha256: String,
    metadata: pabi_abi::Metadata,
    pool: pabi_host::PoolStats,
}

#[derive(Serialize)]
struct RefusedEntry {
    name: String,
    error: String,
}

#[derive(Serialize)]
struct Listing {
    plugins: Vec<PluginEntry>,
    refused: Vec<RefusedEntry>,
}

async fn list(State(state): State<Arc<Shared>>) -> Response {
    let plugins = read(&state.plugins)
        .iter()
        .map(|(name, loaded)| PluginEntry {
            name: name.clone(),
            file: loaded.file.display().to_string(),
            sha256: loaded.sha256.clone(),
            metadata: (*loaded.pool.metadata()).clone(),
            pool: loaded.pool.stats(),
        })
        .collect();
    let refused = crate::lock(&state.refused)
        .iter()
        .map(|(name, refused)| RefusedEntry { name: name.clone(), error: refused.why.to_string() })
        .collect();
    axum::Json(Listing { plugins, refused }).into_response()
}

/// `200 ok` while the server serves, with a line for each plugin disabled
/// by a crash loop (`LIFE-7`): the server is up, and the operator sees
/// which plugin answers `CRASH_LOOP` and for how long at most.
async fn health(State(state): State<Arc<Shared>>) -> Response {
    if state.draining.load(Ordering::Relaxed) {
        return (StatusCode::SERVICE_UNAVAILABLE, "draining\n").into_response();
    }
    let mut text = String::from("ok\n");
    for (name, loaded) in read(&state.plugins).iter() {
        if loaded.pool.stats().disabled {
            let reset = whole_seconds(loaded.settings.crash_reset());
            text.push_str(&format!("disabled: {name} (CRASH_LOOP; tried again within {reset} s)\n"));
        }
    }
    (StatusCode::OK, text).into_response()
}

async fn metrics(State(state): State<Arc<Shared>>) -> Response {
    for (name, loaded) in read(&state.plugins).iter() {
        let stats = loaded.pool.stats();
        let label = PluginLabel { plugin: name.clone() };
        if let Some(worker) = &stats.worker {
            state.metrics.worker_restarts.get_or_create(&label).set(i64::try_from(worker.restarts).unwrap_or(i64::MAX));
        }
        let gauge = |value: usize| i64::try_from(value).unwrap_or(i64::MAX);
        state.metrics.instances.get_or_create(&label).set(gauge(stats.live));
        state.metrics.busy.get_or_create(&label).set(gauge(stats.busy));
        state.metrics.queued.get_or_create(&label).set(gauge(stats.waiting));
        state.metrics.disabled.get_or_create(&label).set(i64::from(stats.disabled));
        let count = |value: u64| i64::try_from(value).unwrap_or(i64::MAX);
        state.metrics.log_records_dropped.get_or_create(&label).set(count(stats.log_records_dropped));
        state.metrics.log_bytes_dropped.get_or_create(&label).set(count(stats.log_bytes_dropped));
        state.metrics.calls_in_place.get_or_create(&label).set(count(stats.calls_in_place));
        state.metrics.calls_handed_on.get_or_create(&label).set(count(stats.calls_handed_on));
    }
    state.metrics.waiting_for_turn.set(i64::try_from(state.gate.waiting()).unwrap_or(i64::MAX));
    let mut response = state.metrics.encode().into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8"),
    );
    response
}
