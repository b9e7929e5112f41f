//! Where a plugin's log text goes: `pabi.log` records and, for WASI
//! plugins, standard output and standard error (`WASI-8`). One budget per
//! call covers all three (`LIM-11`), and one rate per plugin covers its
//! calls together ([`crate::ConfigBuilder::log_rate`]), so no plugin can
//! flood the host's log, whether in one call or in many; every line is
//! escaped before it reaches a terminal (`SEC-3`).

use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use crate::config::LogRate;

use pabi_abi::text::escape_controls;

/// A log level of `pabi.log` (`HOST-7`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Level {
    Error,
    Warn,
    Info,
    Debug,
    Trace,
}

impl Level {
    pub fn from_code(code: i32) -> Option<Level> {
        Some(match code {
            0 => Level::Error,
            1 => Level::Warn,
            2 => Level::Info,
            3 => Level::Debug,
            4 => Level::Trace,
            _ => return None,
        })
    }
}

/// The log budget and partial stdio lines of one instance.
#[derive(Debug)]
pub(crate) struct LogSink {
    plugin: String,
    cap: u64,
    used: u64,
    dropped_records: u64,
    dropped_bytes: u64,
    /// Records and bytes of this call dropped by the plugin's log rate.
    rate_dropped_records: u64,
    rate_dropped_bytes: u64,
    /// Standard output and standard error text after the last line break.
    partial: [Vec<u8>; 2],
    /// What was dropped past the cap over the plugin's life, across its
    /// instances.
    drops: Arc<LogDrops>,
    /// The plugin's rate and drop counts, shared with its other instances.
    shared: Arc<PluginLog>,
}

/// One plugin's log across its calls and instances: the token bucket of
/// its log rate, and what was dropped, past the cap of a call or the rate.
#[derive(Debug)]
pub(crate) struct PluginLog {
    rate: Option<LogRate>,
    bucket: Mutex<Bucket>,
    /// Records and bytes dropped, for any reason, since the plugin was
    /// first loaded in this host (or worker).
    pub dropped_records: AtomicU64,
    pub dropped_bytes: AtomicU64,
}

#[derive(Debug)]
struct Bucket {
    records: f64,
    bytes: f64,
    filled: Instant,
    /// Rate drops not yet warned of, and when the last warning was.
    unreported: (u64, u64),
    warned: Option<Instant>,
}

/// Rate drops are warned of at most this often: the warning must not
/// become the flood.
const WARN_EVERY: Duration = Duration::from_secs(1);

impl PluginLog {
    pub fn new(rate: Option<LogRate>) -> PluginLog {
        let full = rate.unwrap_or_default();
        PluginLog {
            rate,
            bucket: Mutex::new(Bucket {
                records: full.records as f64,
                bytes: full.bytes as f64,
                filled: Instant::now(),
                unreported: (0, 0),
                warned: None,
            }),
            dropped_records: AtomicU64::new(0),
            dropped_bytes: AtomicU64::new(0),
        }
    }

    fn bucket(&self) -> std::sync::MutexGuard<'_, Bucket> {
        self.bucket.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether a record of `len` bytes may be written now; if so, its
    /// tokens are taken. The bucket holds one second's worth; a record
    /// larger than that passes when the bucket is full.
    fn admit(&self, len: usize) -> bool {
        let Some(rate) = self.rate else { return true };
        let mut bucket = self.bucket();
        let now = Instant::now();
        let elapsed = now.saturating_duration_since(bucket.filled).as_secs_f64();
        bucket.filled = now;
        bucket.records = (bucket.records + elapsed * rate.records as f64).min(rate.records as f64);
        bucket.bytes = (bucket.bytes + elapsed * rate.bytes as f64).min(rate.bytes as f64);
        let need = (len as f64).min(rate.bytes as f64);
        if bucket.records >= 1.0 && bucket.bytes >= need {
            bucket.records -= 1.0;
            bucket.bytes -= need;
            true
        } else {
            false
        }
    }

    /// Counts what a call dropped, and warns of rate drops at most once
    /// per [`WARN_EVERY`].
    fn count(&self, plugin: &str, records: u64, bytes: u64, rate_records: u64, rate_bytes: u64) {
        self.dropped_records.fetch_add(records + rate_records, Ordering::Relaxed);
        self.dropped_bytes.fetch_add(bytes + rate_bytes, Ordering::Relaxed);
        if rate_records == 0 {
            return;
        }
        let mut bucket = self.bucket();
        bucket.unreported.0 += rate_records;
        bucket.unreported.1 += rate_bytes;
        if bucket.warned.is_some_and(|at| at.elapsed() < WARN_EVERY) {
            return;
        }
        bucket.warned = Some(Instant::now());
        let (records, bytes) = std::mem::take(&mut bucket.unreported);
        drop(bucket);
        let rate = self.rate.unwrap_or_default();
        tracing::warn!(
            target: "pabi::host",
            plugin,
            "dropped {records} log records ({bytes} bytes) past the plugin's log rate of {} records and {} bytes per second",
            rate.records,
            rate.bytes
        );
    }
}

/// Log records and bytes (of records and of standard output and error)
/// dropped past the cap, over a plugin's life.
#[derive(Debug, Default)]
pub(crate) struct LogDrops {
    pub records: AtomicU64,
    pub bytes: AtomicU64,
}

/// The shared handle: the `pabi.log` import and the two WASI streams write
/// to the same sink.
pub(crate) type SharedSink = Arc<Mutex<LogSink>>;

/// An instance's sink: owned by its store for a core plugin, whose only
/// writer is the `log` import, so that the per-call path (`log`, the end of
/// every call) takes no lock and touches no atomic; shared with the WASI
/// streams otherwise.
pub(crate) enum LogHandle {
    Owned(LogSink),
    Shared(SharedSink),
}

impl LogHandle {
    pub fn with<R>(&mut self, f: impl FnOnce(&mut LogSink) -> R) -> R {
        match self {
            LogHandle::Owned(sink) => f(sink),
            LogHandle::Shared(sink) => f(&mut sink.lock().unwrap_or_else(|p| p.into_inner())),
        }
    }
}

impl LogSink {
    pub fn new(plugin: String, cap: u64, drops: Arc<LogDrops>, shared: Arc<PluginLog>) -> LogSink {
        LogSink {
            plugin,
            cap,
            used: 0,
            dropped_records: 0,
            dropped_bytes: 0,
            rate_dropped_records: 0,
            rate_dropped_bytes: 0,
            partial: [Vec::new(), Vec::new()],
            drops,
            shared,
        }
    }

    /// Writes a record or a line, if the plugin's log rate lets it.
    /// Dropped by the rate, it still counts against the cap of the call:
    /// what a call sees does not depend on other calls.
    fn emit(&mut self, level: Level, text: &[u8]) {
        if !enabled(level) {
            return;
        }
        if !self.shared.admit(text.len()) {
            self.rate_dropped_records += 1;
            self.rate_dropped_bytes += text.len() as u64;
            return;
        }
        emit(&self.plugin, level, text);
    }

    /// A `pabi.log` record: emitted whole, or dropped whole past the cap
    /// (`false`, and the import returns `E_LIMIT`).
    pub fn record(&mut self, level: Level, text: &[u8]) -> bool {
        if self.used + text.len() as u64 > self.cap {
            self.dropped_records += 1;
            self.dropped_bytes += text.len() as u64;
            return false;
        }
        self.used += text.len() as u64;
        self.emit(level, text);
        true
    }

    /// Standard output (`Info`) or error (`Warn`) text: what fits under the
    /// cap is logged a line at a time; the rest is dropped.
    fn stdio(&mut self, stream: Stdio, bytes: &[u8]) {
        let room = self.cap.saturating_sub(self.used).min(bytes.len() as u64) as usize;
        self.used += room as u64;
        if room < bytes.len() {
            self.dropped_bytes += (bytes.len() - room) as u64;
        }
        let level = stream.level();
        let partial = &mut self.partial[stream as usize];
        partial.extend_from_slice(&bytes[..room]);
        if let Some(last) = partial.iter().rposition(|b| *b == b'\n') {
            let rest = partial.split_off(last + 1);
            let lines = std::mem::replace(partial, rest);
            for line in lines[..last].split(|b| *b == b'\n') {
                self.emit(level, line);
            }
        }
    }

    /// Ends a call: flushes partial lines, reports what was dropped, and
    /// gives the next call a full budget.
    pub fn end_call(&mut self) {
        for stream in [Stdio::Out, Stdio::Err] {
            if !self.partial[stream as usize].is_empty() {
                let line = std::mem::take(&mut self.partial[stream as usize]);
                self.emit(stream.level(), &line);
            }
        }
        if self.used == 0 && self.dropped_records == 0 && self.dropped_bytes == 0 {
            // Nothing was logged: the common call pays no atomics.
            return;
        }
        if self.dropped_records > 0 || self.dropped_bytes > 0 {
            tracing::warn!(
                target: "pabi::host",
                plugin = %self.plugin,
                "dropped {} log records and {} bytes of log text past the {}-byte cap of a call (LIM-11)",
                self.dropped_records,
                self.dropped_bytes,
                self.cap
            );
        }
        self.drops.records.fetch_add(self.dropped_records, Ordering::Relaxed);
        self.drops.bytes.fetch_add(self.dropped_bytes, Ordering::Relaxed);
        if self.dropped_records + self.dropped_bytes + self.rate_dropped_records + self.rate_dropped_bytes > 0 {
            let (records, bytes) = (self.rate_dropped_records, self.rate_dropped_bytes);
            self.shared.count(&self.plugin, self.dropped_records, self.dropped_bytes, records, bytes);
        }
        self.used = 0;
        self.dropped_records = 0;
        self.dropped_bytes = 0;
        self.rate_dropped_records = 0;
        self.rate_dropped_bytes = 0;
    }
}

/// Whether the subscriber keeps records of `level`. Decoding and escaping
/// cost in proportion to the text, and the rate's lock is shared: both are
/// skipped when the subscriber drops the record anyway.
fn enabled(level: Level) -> bool {
    match level {
        Level::Error => tracing::enabled!(target: "pabi::plugin", tracing::Level::ERROR),
        Level::Warn => tracing::enabled!(target: "pabi::plugin", tracing::Level::WARN),
        Level::Info => tracing::enabled!(target: "pabi::plugin", tracing::Level::INFO),
        Level::Debug => tracing::enabled!(target: "pabi::plugin", tracing::Level::DEBUG),
        Level::Trace => tracing::enabled!(target: "pabi::plugin", tracing::Level::TRACE),
    }
}

fn emit(plugin: &str, level: Level, text: &[u8]) {
    let text = String::from_utf8_lossy(text);
    let text = escape_controls(&text);
    match level {
        Level::Error => tracing::error!(target: "pabi::plugin", plugin, "{text}"),
        Level::Warn => tracing::warn!(target: "pabi::plugin", plugin, "{text}"),
        Level::Info => tracing::info!(target: "pabi::plugin", plugin, "{text}"),
        Level::Debug => tracing::debug!(target: "pabi::plugin", plugin, "{text}"),
        Level::Trace => tracing::trace!(target: "pabi::plugin", plugin, "{text}"),
    }
}

/// Standard output or standard error of a WASI plugin.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Stdio {
    Out = 0,
    Err = 1,
}

impl Stdio {
    fn level(self) -> Level {
        match self {
            Stdio::Out => Level::Info,
            Stdio::Err => Level::Warn,
        }
    }
}

/// A WASI output stream into the sink. Every write reports all its bytes
/// as written, past the cap too, so that a language runtime neither retries
/// nor fails (`LIM-11`).
#[derive(Clone)]
pub(crate) struct StdioStream {
    pub sink: SharedSink,
    pub stream: Stdio,
}

impl tokio::io::AsyncWrite for StdioStream {
    fn poll_write(self: Pin<&mut Self>, _: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        self.sink.lock().unwrap_or_else(|p| p.into_inner()).stdio(self.stream, buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

impl wasmtime_wasi::cli::IsTerminal for StdioStream {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl wasmtime_wasi::cli::StdoutStream for StdioStream {
    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sink(cap: u64) -> LogSink {
        LogSink::new("p".into(), cap, Arc::default(), Arc::new(PluginLog::new(None)))
    }

    #[test]
    fn records_are_kept_or_dropped_whole_and_the_budget_is_per_call() {
        let mut sink = sink(10);
        assert!(sink.record(Level::Info, b"123456"));
        assert!(!sink.record(Level::Info, b"12345"), "6 + 5 passes 10");
        assert!(sink.record(Level::Info, b"1234"), "6 + 4 fits exactly");
        assert!(!sink.record(Level::Info, b"1"));
        assert_eq!((sink.dropped_records, sink.dropped_bytes), (2, 6));
        sink.end_call();
        assert!(sink.record(Level::Info, b"1234567890"), "a fresh budget");
    }

    #[test]
    fn stdio_counts_against_the_same_budget_and_keeps_partial_lines() {
        let mut sink = sink(10);
        sink.stdio(Stdio::Out, b"ab\ncd");
        assert_eq!(sink.partial[0], b"cd");
        assert_eq!(sink.used, 5);
        sink.stdio(Stdio::Err, b"0123456789");
        assert_eq!((sink.used, sink.dropped_bytes), (10, 5));
        assert!(!sink.record(Level::Error, b"x"), "stdio used the budget up");
        sink.end_call();
        assert!(sink.partial.iter().all(Vec::is_empty));
    }
}
