//! The connections: accepted up to `max_connections`, each served as
//! HTTP/1.1 by hyper under a watchdog for its header, idle and send
//! timeouts, and drained within the grace period.
//!
//! At the cap, a new connection takes the place of the one that has
//! waited longest with no request in progress (idle, or still sending a
//! head): clients that only hold connections open cannot keep a normal
//! client out, since each new connection pushes the oldest idle one out,
//! not the newest. The new connection takes the old one's place at once;
//! the old one, with nothing in progress, closes at its next poll. Only
//! when every connection has a request in progress is the new one
//! refused.
//!
//! axum's own `serve` bounds neither the number of connections nor their
//! time, and hyper's `header_read_timeout` also runs while a kept-alive
//! connection waits for its next request, so it cannot tell a slow head
//! from an idle connection: the watchdog here does both, from what the
//! connection reads and writes and when its requests start and end.

use std::convert::Infallible;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use hyper::body::{Frame, Incoming, SizeHint};
use hyper_util::rt::TokioIo;
use pabi_abi::HostErrorKind;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tower::ServiceExt;

use crate::http::{error_json, CallErrorKind};
use crate::{lock, ServerSettings, State};

/// How long to wait before accepting again after `accept` failed (out of
/// file descriptors, most often): the error would come back at once.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// The connections open, each with its phase, its place under
/// `max_connections` and the signal that closes it, so that a new
/// connection at the cap can take the place of the longest idle.
#[derive(Default)]
struct Registry {
    next: u64,
    open: std::collections::HashMap<u64, Entry>,
}

struct Entry {
    phase: Shared,
    close: Arc<tokio::sync::Notify>,
    slot: OwnedSemaphorePermit,
}

type Connections = Arc<Mutex<Registry>>;

/// Whether a connection just accepted may be served.
enum Place {
    /// A free place under the cap.
    Free(OwnedSemaphorePermit),
    /// The place of the connection that waited longest with no request
    /// in progress, which has been told to close.
    PushedOut(OwnedSemaphorePermit),
    /// Every connection has a request in progress.
    Full,
}

impl Registry {
    /// A place for a new connection. Decided under the registry's lock,
    /// which a connection also takes to give its place back, so that a
    /// place given back as this runs is never missed.
    fn place(registry: &Connections, slots: &Arc<Semaphore>) -> Place {
        let mut open = lock(registry);
        if let Ok(slot) = slots.clone().try_acquire_owned() {
            return Place::Free(slot);
        }
        let oldest = open
            .open
            .iter()
            .filter_map(|(id, entry)| {
                let phase = lock(&entry.phase);
                (phase.in_flight == 0).then(|| (phase.head_since.or(phase.idle_since), *id))
            })
            // `None` (waiting on neither) sorts first: nothing to wait for.
            .min();
        match oldest.and_then(|(_, id)| open.open.remove(&id)) {
            // The place moves to the new connection at once: waiting for
            // the old one to close could take long on a loaded machine,
            // and the old one, with nothing in progress, closes at its
            // next poll.
            Some(Entry { close, slot, .. }) => {
                close.notify_one();
                Place::PushedOut(slot)
            }
            None => Place::Full,
        }
    }

    fn enter(
        registry: &Connections,
        phase: &Shared,
        slot: OwnedSemaphorePermit,
    ) -> (Registered, Arc<tokio::sync::Notify>) {
        let close = Arc::new(tokio::sync::Notify::new());
        let mut open = lock(registry);
        let id = open.next;
        open.next += 1;
        open.open.insert(id, Entry { phase: phase.clone(), close: close.clone(), slot });
        (Registered { registry: registry.clone(), id }, close)
    }
}

/// A connection's entry in the registry, removed when it ends, which
/// gives its place back (if it was not pushed out).
struct Registered {
    registry: Connections,
    id: u64,
}

impl Drop for Registered {
    fn drop(&mut self) {
        let mut open = lock(&self.registry);
        // The place is given back under the lock: see `Registry::place`.
        open.open.remove(&self.id);
    }
}

/// Serves `app` on `listener` until `shutdown` completes, then drains:
/// no new connection; connections with no request in progress are closed;
/// the calls in flight have the grace period to finish, and past it they
/// are cancelled, answered, and every connection left is closed.
pub(crate) async fn serve(
    state: Arc<State>,
    listener: TcpListener,
    app: axum::Router,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let settings = state.config.server.clone();
    let slots = Arc::new(Semaphore::new(settings.max_connections()));
    let registry: Connections = Arc::default();
    let (drain, draining) = watch::channel(false);
    let mut connections = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            // Finished connections are reaped as they end.
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    let slot = match Registry::place(&registry, &slots) {
                        Place::Free(slot) => slot,
                        Place::PushedOut(slot) => {
                            state.metrics.connections_pushed_out.inc();
                            slot
                        }
                        Place::Full => {
                            refuse(&state, stream, settings.max_connections());
                            continue;
                        }
                    };
                    connections.spawn(connection(state.clone(), app.clone(), stream, draining.clone(), slot, registry.clone()));
                }
                Err(error) => {
                    tracing::warn!("cannot accept a connection: {error}");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                }
            },
        }
    }
    drop(listener);
    state.draining.store(true, std::sync::atomic::Ordering::Relaxed);
    let grace = settings.grace();
    tracing::info!(?grace, "draining: finishing the calls in flight");
    let _ = drain.send(true);
    // A part of the grace, at most 1 s, is kept to write the answers of
    // the calls cancelled at its end.
    let answering = (grace / 4).min(Duration::from_secs(1));
    let cancel_at = Instant::now() + (grace - answering);
    if !join_all(&mut connections, cancel_at).await {
        tracing::warn!(open = connections.len(), "grace period over: cancelling the calls in flight");
        let _ = state.abort.send(true);
        state.calls.cancel_all();
        if !join_all(&mut connections, cancel_at + answering).await {
            tracing::warn!(open = connections.len(), "closing the connections still open");
            // Aborted, not awaited: a task whose call runs in place, in a
            // host function that does not look at its cancel, would hold
            // the drain until that function returns.
            connections.abort_all();
        }
    }
    Ok(())
}

/// Waits for every connection to end, until `deadline`: whether they did.
async fn join_all(connections: &mut JoinSet<()>, deadline: Instant) -> bool {
    tokio::time::timeout_at(deadline, async { while connections.join_next().await.is_some() {} }).await.is_ok()
}

/// A connection past `max_connections` while every connection has a
/// request in progress: answered `503` with `Retry-After` and closed, so
/// that the client knows, and the server holds no more than the cap (and,
/// for a moment, the connections it pushed out, which close at their next
/// poll). The answer goes out in one write to the fresh socket's
/// empty send buffer; a client that sent its request already may see the
/// connection reset before it reads it.
fn refuse(state: &State, stream: TcpStream, max: usize) {
    state.metrics.connections_refused.inc();
    let kind = CallErrorKind::Host(HostErrorKind::HostFailure);
    let body =
        error_json(kind, format!("{kind}: the server has {max} connections open, its max_connections; try again"));
    let head = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\nretry-after: 1\r\n\
         content-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    );
    let _ = stream.try_write(&[head.as_bytes(), &body].concat());
}

/// Where a connection is in its life, for its timeouts.
struct Phase {
    /// Requests whose response is not yet handed over.
    in_flight: usize,
    /// Since when the connection waits for a request's head, with a byte
    /// of it read (or the connection fresh): the header timeout runs.
    head_since: Option<Instant>,
    /// Since when the connection has waited, with nothing of a next
    /// request read: the idle timeout runs.
    idle_since: Option<Instant>,
    /// Since when a write has waited for the client to read.
    write_blocked_since: Option<Instant>,
    /// Whether bytes of a response may still be in hyper's buffer: from a
    /// request's start until hyper flushes with no request in progress.
    unflushed: bool,
}

/// Why the watchdog closed a connection.
#[derive(Debug)]
enum Expired {
    Header,
    Idle,
    Send,
}

impl Phase {
    /// A fresh connection's: waiting for its first request's head.
    fn fresh() -> Phase {
        Phase {
            in_flight: 0,
            head_since: Some(Instant::now()),
            idle_since: None,
            write_blocked_since: None,
            unflushed: false,
        }
    }

    /// See [`Watched::waits_for_a_head`].
    fn waits_for_a_head(&self) -> bool {
        self.in_flight == 0 && !self.unflushed
    }

    fn expired(&self, settings: &ServerSettings, now: Instant) -> Option<Expired> {
        let past = |since: Option<Instant>, limit: Duration| since.is_some_and(|since| now >= since + limit);
        if past(self.write_blocked_since, settings.send_timeout()) {
            return Some(Expired::Send);
        }
        if self.in_flight > 0 {
            // A request in progress has its body timeout and its call
            // its deadline.
            return None;
        }
        if past(self.head_since, settings.header_timeout()) {
            return Some(Expired::Header);
        }
        past(self.idle_since, settings.idle_timeout()).then_some(Expired::Idle)
    }
}

type Shared = Arc<Mutex<Phase>>;

/// One connection, until it ends, a timeout closes it, or the drain does.
async fn connection(
    state: Arc<State>,
    app: axum::Router,
    stream: TcpStream,
    mut draining: watch::Receiver<bool>,
    slot: OwnedSemaphorePermit,
    registry: Connections,
) {
    let _open = Open::new(&state);
    let settings = state.config.server.clone();
    let phase: Shared = Arc::new(Mutex::new(Phase::fresh()));
    let (_registered, pushed_out) = Registry::enter(&registry, &phase, slot);
    let io = TokioIo::new(Watched { stream, phase: phase.clone(), replacing: None });
    let service = {
        let phase = phase.clone();
        hyper::service::service_fn(move |request: Request<Incoming>| {
            let guard = InFlight::start(&phase);
            let app = app.clone();
            async move {
                let response = app.oneshot(request.map(Body::new)).await?;
                Ok::<_, Infallible>(response.map(|body| Body::new(Tracked { body, _request: guard })))
            }
        })
    };
    let mut http = hyper::server::conn::http1::Builder::new();
    // The watchdog keeps the header timeout (see the module's comment).
    http.header_read_timeout(None);
    let served = http.serve_connection(io, service);
    tokio::pin!(served);
    // Often enough to close a connection soon after its timeout.
    let tick = [settings.header_timeout(), settings.idle_timeout(), settings.send_timeout()]
        .into_iter()
        .min()
        .unwrap_or(Duration::from_secs(1))
        .div_f64(4.0)
        .clamp(Duration::from_millis(5), Duration::from_secs(1));
    let mut drained = *draining.borrow();
    if drained {
        served.as_mut().graceful_shutdown();
    }
    loop {
        if drained && lock(&phase).in_flight == 0 {
            // Nothing in progress: nothing to finish.
            return;
        }
        tokio::select! {
            result = served.as_mut() => {
                if let Err(error) = result {
                    tracing::debug!("connection ended: {error}");
                }
                return;
            }
            () = tokio::time::sleep(tick) => {
                if let Some(expired) = lock(&phase).expired(&settings, Instant::now()) {
                    tracing::debug!(?expired, "connection closed: timeout");
                    state.metrics.connections_timed_out.inc();
                    return;
                }
            }
            () = pushed_out.notified() => {
                tracing::debug!("connection closed: pushed out by a new one at max_connections");
                return;
            }
            changed = draining.changed(), if !drained => {
                drained = true;
                if changed.is_ok() {
                    served.as_mut().graceful_shutdown();
                }
            }
        }
    }
}

/// Counts an open connection in the `pabi_connections` gauge.
struct Open(prometheus_client::metrics::gauge::Gauge);

impl Open {
    fn new(state: &State) -> Open {
        state.metrics.connections.inc();
        Open(state.metrics.connections.clone())
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// A request in progress on its connection, until its response body is
/// handed over (or dropped).
struct InFlight(Shared);

impl InFlight {
    fn start(phase: &Shared) -> InFlight {
        let mut p = lock(phase);
        p.in_flight += 1;
        p.unflushed = true;
        p.head_since = None;
        p.idle_since = None;
        drop(p);
        InFlight(phase.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let mut p = lock(&self.0);
        p.in_flight -= 1;
        if p.in_flight == 0 {
            p.idle_since = Some(Instant::now());
        }
    }
}

/// A response body that ends its request when it is dropped.
struct Tracked {
    body: Body,
    _request: InFlight,
}

impl hyper::body::Body for Tracked {
    type Data = axum::body::Bytes;
    type Error = axum::Error;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.get_mut().body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// The socket, telling the watchdog when the next request's first byte
/// comes and how long a write has waited, and giving hyper's own answer
/// to a head it cannot parse the documented JSON body.
struct Watched {
    stream: TcpStream,
    phase: Shared,
    /// The answer written in place of hyper's, and how much of it is out.
    replacing: Option<(Vec<u8>, usize)>,
}

impl Watched {
    fn wrote<T>(&self, poll: Poll<io::Result<T>>) -> Poll<io::Result<T>> {
        let mut phase = lock(&self.phase);
        if poll.is_pending() {
            phase.write_blocked_since.get_or_insert_with(Instant::now);
        } else {
            phase.write_blocked_since = None;
        }
        poll
    }

    /// Writes `len` bytes of hyper's, which begin with `first`: as they
    /// are, or, for hyper's answer to a head it could not parse, as the
    /// JSON answer that stands for them.
    fn poll_answer(
        &mut self,
        cx: &mut Context<'_>,
        first: &[u8],
        len: usize,
        write: impl FnOnce(Pin<&mut TcpStream>, &mut Context<'_>) -> Poll<io::Result<usize>>,
    ) -> Poll<io::Result<usize>> {
        if self.replacing.is_none() {
            match self.waits_for_a_head().then(|| hypers_own_answer(first, len)).flatten() {
                Some(status) => self.replacing = Some((parse_error_answer(status), 0)),
                None => {
                    let poll = write(Pin::new(&mut self.stream), cx);
                    return self.wrote(poll);
                }
            }
        }
        let (bytes, written) = self.replacing.as_mut().expect("set above");
        if *written == bytes.len() {
            // hyper writes nothing after its answer; should it, the
            // connection is over all the same.
            return Poll::Ready(Err(io::ErrorKind::BrokenPipe.into()));
        }
        while *written < bytes.len() {
            match Pin::new(&mut self.stream).poll_write(cx, &bytes[*written..]) {
                Poll::Ready(Ok(n)) => *written += n,
                Poll::Ready(Err(error)) => return self.wrote(Poll::Ready(Err(error))),
                Poll::Pending => return self.wrote(Poll::Pending),
            }
        }
        // hyper's bytes stand replaced; the connection closes after them.
        self.wrote(Poll::Ready(Ok(len)))
    }

    /// Whether hyper is reading a request's head, with no request of the
    /// connection in progress and every response written: the only time
    /// it answers on its own. (A response's last bytes may be written
    /// after its request has ended, and a plugin's output may look like
    /// anything.)
    fn waits_for_a_head(&self) -> bool {
        lock(&self.phase).waits_for_a_head()
    }
}

/// The status of a write of `len` bytes that begin with `bytes`, if it is
/// hyper's automatic answer to a head it could not parse: exactly one head
/// of `400`, `414` or `431` with no body. The server's own answers with
/// those statuses always have a JSON body, so an empty one is hyper's.
fn hypers_own_answer(bytes: &[u8], len: usize) -> Option<StatusCode> {
    let rest = bytes.strip_prefix(b"HTTP/1.1 ")?;
    let status = StatusCode::from_bytes(rest.get(..3)?).ok()?;
    let automatic = [StatusCode::BAD_REQUEST, StatusCode::URI_TOO_LONG, StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE];
    if !automatic.contains(&status) {
        // Every answer but these is the server's own, and is left alone
        // without reading further.
        return None;
    }
    let head_end = rest.windows(4).position(|w| w == b"\r\n\r\n")?;
    if b"HTTP/1.1 ".len() + head_end + 4 != len {
        return None;
    }
    let empty =
        rest[..head_end + 2].split(|&b| b == b'\n').any(|line| line.eq_ignore_ascii_case(b"content-length: 0\r"));
    empty.then_some(status)
}

/// The JSON answer to a head that could not be parsed, with `status`.
fn parse_error_answer(status: StatusCode) -> Vec<u8> {
    let why = match status {
        StatusCode::URI_TOO_LONG => "the request's path is too long",
        StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE => "the request's head is too large",
        _ => "the request's head is malformed",
    };
    let body = error_json(CallErrorKind::BadRequest, format!("BAD_REQUEST: {status}: {why}. No call ran."));
    let head = format!(
        "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    );
    [head.into_bytes(), body].concat()
}

impl AsyncRead for Watched {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let poll = Pin::new(&mut this.stream).poll_read(cx, buf);
        if buf.filled().len() > before {
            let mut phase = lock(&this.phase);
            if phase.in_flight == 0 && phase.idle_since.is_some() {
                // The first byte of the next request: its head is due.
                phase.idle_since = None;
                phase.head_since = Some(Instant::now());
            }
        }
        poll
    }
}

impl AsyncWrite for Watched {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        self.get_mut().poll_answer(cx, buf, buf.len(), |stream, cx| stream.poll_write(cx, buf))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let first = bufs.iter().find(|buf| !buf.is_empty()).map_or(&[][..], |buf| &buf[..]);
        let len = bufs.iter().map(|buf| buf.len()).sum();
        self.get_mut().poll_answer(cx, first, len, |stream, cx| stream.poll_write_vectored(cx, bufs))
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let poll = Pin::new(&mut this.stream).poll_flush(cx);
        if poll.is_ready() {
            // hyper flushes the socket once its buffer is written: with no
            // request in progress, every response is out.
            let mut phase = lock(&this.phase);
            if phase.in_flight == 0 {
                phase.unflushed = false;
            }
        }
        poll
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HYPERS: &[u8] = b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\ndate: now\r\n\r\n";

    #[test]
    fn only_a_whole_bodiless_parse_error_head_is_hypers_own_answer() {
        assert_eq!(hypers_own_answer(HYPERS, HYPERS.len()), Some(StatusCode::BAD_REQUEST));
        let too_large = b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-length: 0\r\n\r\n";
        assert_eq!(hypers_own_answer(too_large, too_large.len()), Some(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE));
        // More bytes in the same write than the head: not an answer alone.
        assert_eq!(hypers_own_answer(HYPERS, HYPERS.len() + 1), None);
        // The server's own 400 has a JSON body.
        let own = b"HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\ncontent-length: 10\r\n\r\n";
        assert_eq!(hypers_own_answer(own, own.len()), None);
        let ok = b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n";
        assert_eq!(hypers_own_answer(ok, ok.len()), None);
        assert_eq!(hypers_own_answer(b"HTTP/1.1 400 Bad", 16), None);
    }

    /// A response's last bytes may be written after its request ended:
    /// hyper answers on its own only once every response is flushed.
    #[test]
    fn hyper_answers_on_its_own_only_with_every_response_flushed() {
        let phase: Shared = Arc::new(Mutex::new(Phase::fresh()));
        assert!(lock(&phase).waits_for_a_head(), "a fresh connection");
        let request = InFlight::start(&phase);
        assert!(!lock(&phase).waits_for_a_head(), "a request in progress");
        drop(request);
        assert!(!lock(&phase).waits_for_a_head(), "its response not flushed yet");
        lock(&phase).unflushed = false;
        assert!(lock(&phase).waits_for_a_head(), "flushed");
    }
}
