//! The HTTP routes and the mapping of host errors to HTTP answers.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use pabi_abi::HostErrorKind;
use pabi_host::Error;
use serde::Serialize;

use crate::metrics::{CallLabels, ErrorLabels, PluginLabel};
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

/// What kind of failure a call met: a host error kind (`ERR-6`), or a
/// plugin the server does not serve. It crosses HTTP as its name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum CallErrorKind {
    Host(HostErrorKind),
    /// `UNKNOWN_PLUGIN`: no plugin of that name is served (404).
    UnknownPlugin,
}

impl CallErrorKind {
    pub fn name(self) -> &'static str {
        match self {
            CallErrorKind::Host(kind) => kind.name(),
            CallErrorKind::UnknownPlugin => "UNKNOWN_PLUGIN",
        }
    }

    pub fn from_name(name: &str) -> Option<CallErrorKind> {
        match name {
            "UNKNOWN_PLUGIN" => Some(CallErrorKind::UnknownPlugin),
            other => HostErrorKind::from_name(other).map(CallErrorKind::Host),
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
/// | `HOST_FAILURE` (a full queue among them), `CRASH_LOOP` | 503, with `Retry-After` |
/// | `CANCELLED` (the client went away) | 499 |
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
        // The body is read in `call`, against the plugin's own cap.
        .layer(axum::extract::DefaultBodyLimit::disable())
        .with_state(state)
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

async fn call(
    State(state): State<Arc<Shared>>,
    Path((plugin, function)): Path<(String, String)>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let started = Instant::now();
    let found = {
        let plugins = read(&state.plugins);
        plugins.get(&plugin).cloned().ok_or_else(|| plugins.keys().cloned().collect::<Vec<_>>())
    };
    let loaded = match found {
        Ok(loaded) => loaded,
        Err(served) => {
            // Like unknown functions, unknown plugins share one label: a
            // client naming a new one per request cannot grow the metrics.
            state
                .metrics
                .errors
                .get_or_create(&ErrorLabels {
                    plugin: "(unknown)".into(),
                    kind: CallErrorKind::UnknownPlugin.name().into(),
                })
                .inc();
            let served = if served.is_empty() { "none".to_string() } else { served.join(", ") };
            let body = CallErrorBody {
                kind: CallErrorKind::UnknownPlugin,
                status: None,
                message: format!("{}: no plugin `{plugin}` is served; served: {served}", CallErrorKind::UnknownPlugin),
            };
            return error_response(StatusCode::NOT_FOUND, body, None);
        }
    };
    let known = loaded.pool.functions().contains(&function);
    // Unknown names share one label: a client cannot grow the metrics.
    let label = if known { function.clone() } else { "(unknown)".into() };
    state.metrics.calls.get_or_create(&CallLabels { plugin: plugin.clone(), function: label }).inc();
    let max_input = loaded.settings.max_input();
    let declared_len = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok()?.parse::<u64>().ok())
        .filter(|len| *len > max_input);
    let result = match axum::body::to_bytes(body, usize::try_from(max_input).unwrap_or(usize::MAX)).await {
        Ok(input) => loaded.pool.call_async(&function, input.to_vec()).await.map_err(|error| {
            let body = error_body(&error);
            (error, body)
        }),
        Err(unread) => {
            let unread = unread.into_inner();
            if unread.is::<http_body_util::LengthLimitError>() {
                // The body stops being read at the cap; its declared
                // length, when the client sent one, is what the message
                // can name.
                let error = Error::InputLimit { len: declared_len, limit: max_input };
                let body = error_body(&error);
                Err((error, body))
            } else {
                // The client stopped sending (gone, or a broken chunked
                // body): no call was made, and the caller is what ended it.
                let error = Error::Cancelled;
                let mut body = error_body(&error);
                body.message = format!("{}: the request body could not be read: {unread}", body.message);
                Err((error, body))
            }
        }
    };
    let plugin_label = PluginLabel { plugin: plugin.clone() };
    state.metrics.latency.get_or_create(&plugin_label).observe(started.elapsed().as_secs_f64());
    match result {
        Ok(output) => {
            let media = loaded
                .pool
                .metadata()
                .function(&function)
                .and_then(|f| f.output.clone())
                .unwrap_or_else(|| "application/octet-stream".into());
            let mut response = (StatusCode::OK, output).into_response();
            if let Ok(media) = HeaderValue::from_str(&media) {
                response.headers_mut().insert(header::CONTENT_TYPE, media);
            }
            response
        }
        Err((error, body)) => {
            if error.kind() == Some(HostErrorKind::HostFailure) {
                tracing::warn!(plugin = %plugin_label.plugin, "answered 503: {}", body.message);
            }
            let kind = CallErrorKind::of(&error).name().to_string();
            state.metrics.errors.get_or_create(&ErrorLabels { plugin, kind }).inc();
            failure_response(&error, body, loaded.settings.crash_reset())
        }
    }
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
    }
    let mut response = state.metrics.encode().into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8"),
    );
    response
}
