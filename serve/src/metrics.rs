//! What `GET /metrics` reports, in the Prometheus text format, through the
//! Prometheus project's own client crate.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct CallLabels {
    pub plugin: String,
    pub function: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct ErrorLabels {
    pub plugin: String,
    /// The host error kind (`ERR-6`), or `UNKNOWN_PLUGIN`.
    pub kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct PluginLabel {
    pub plugin: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct ReloadLabels {
    pub plugin: String,
    /// `ok` or `refused`.
    pub result: String,
}

pub(crate) struct Metrics {
    registry: Registry,
    pub calls: Family<CallLabels, Counter>,
    pub errors: Family<ErrorLabels, Counter>,
    pub latency: Family<PluginLabel, Histogram>,
    pub instances: Family<PluginLabel, Gauge>,
    pub busy: Family<PluginLabel, Gauge>,
    pub queued: Family<PluginLabel, Gauge>,
    pub reloads: Family<ReloadLabels, Counter>,
    /// A gauge set from the pool's own count at each scrape: the count
    /// lives in the pool, which restarts workers on its own threads.
    pub worker_restarts: Family<PluginLabel, Gauge>,
    /// Bytes of request bodies and call outputs the server holds.
    pub held_bytes: Gauge,
    /// Connections open.
    pub connections: Gauge,
    /// Calls waiting for their turn at `max_running`, set at each scrape.
    pub waiting_for_turn: Gauge,
    /// Connections refused at `max_connections`.
    pub connections_refused: Counter,
    /// Connections closed, idle, to make room at `max_connections`.
    pub connections_pushed_out: Counter,
    /// Connections closed by a timeout: header, idle or send.
    pub connections_timed_out: Counter,
    /// 1 while a plugin is disabled by a crash loop (`LIFE-7`), else 0.
    pub disabled: Family<PluginLabel, Gauge>,
    /// Set from the pool's counts at each scrape, as `worker_restarts`.
    pub log_records_dropped: Family<PluginLabel, Gauge>,
    pub log_bytes_dropped: Family<PluginLabel, Gauge>,
    /// Set from the pool's count at each scrape.
    pub calls_in_place: Family<PluginLabel, Gauge>,
    /// Set from the pool's count at each scrape.
    pub calls_handed_on: Family<PluginLabel, Gauge>,
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("pabi");
        let calls = Family::<CallLabels, Counter>::default();
        let errors = Family::<ErrorLabels, Counter>::default();
        // 50 µs to about 27 s, doubling.
        let latency = Family::<PluginLabel, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.000_05, 2.0, 20))
        });
        let (instances, busy, queued) = (Family::default(), Family::default(), Family::default());
        let reloads = Family::<ReloadLabels, Counter>::default();
        registry.register("calls", "Calls received, by plugin and function", calls.clone());
        registry.register("call_errors", "Calls that failed, by plugin and host error kind", errors.clone());
        registry.register("call_duration_seconds", "Time from request to response of a call", latency.clone());
        registry.register("instances", "Live instances of a plugin", instances.clone());
        registry.register("instances_busy", "Instances serving a call", busy.clone());
        registry.register("queue_depth", "Calls waiting for an instance", queued.clone());
        registry.register("reloads", "Reloads of a plugin, by result", reloads.clone());
        let worker_restarts = Family::<PluginLabel, Gauge>::default();
        registry.register(
            "worker_restarts",
            "Worker processes started again after one ended (process isolation)",
            worker_restarts.clone(),
        );
        let (held_bytes, connections) = (Gauge::default(), Gauge::default());
        let (connections_refused, connections_timed_out) = (Counter::default(), Counter::default());
        let connections_pushed_out = Counter::default();
        registry.register(
            "connections_pushed_out",
            "Idle connections closed to make room for a new one at max_connections",
            connections_pushed_out.clone(),
        );
        registry.register(
            "held_bytes",
            "Bytes of request bodies and call outputs held; at most instances + max_queue calls per plugin hold one",
            held_bytes.clone(),
        );
        registry.register("connections", "Connections open", connections.clone());
        let waiting_for_turn = Gauge::default();
        registry.register(
            "calls_waiting_for_turn",
            "In-process calls waiting for one of the max_running permits, across plugins",
            waiting_for_turn.clone(),
        );
        registry.register(
            "connections_refused",
            "Connections refused with 503 at max_connections",
            connections_refused.clone(),
        );
        registry.register(
            "connections_timed_out",
            "Connections closed by the header, idle or send timeout",
            connections_timed_out.clone(),
        );
        let disabled = Family::<PluginLabel, Gauge>::default();
        registry.register(
            "plugin_disabled",
            "1 while a plugin is disabled by a crash loop (LIFE-7) and answers CRASH_LOOP until its crash_reset",
            disabled.clone(),
        );
        let (log_records_dropped, log_bytes_dropped) = (Family::default(), Family::default());
        registry.register(
            "log_records_dropped",
            "Log records of a plugin dropped, past the log cap of a call (LIM-11) or the plugin's log rate",
            log_records_dropped.clone(),
        );
        registry.register("log_bytes_dropped", "Bytes of log text of a plugin dropped", log_bytes_dropped.clone());
        let calls_in_place = Family::<PluginLabel, Gauge>::default();
        registry.register(
            "calls_in_place",
            "Calls of a plugin run on the thread that read their request, without a hop to a blocking thread (short calls, in process)",
            calls_in_place.clone(),
        );
        let calls_handed_on = Family::<PluginLabel, Gauge>::default();
        registry.register(
            "calls_handed_on",
            "Calls of a plugin that waited in its queue and ran on the thread that ended the call before them (in process)",
            calls_handed_on.clone(),
        );
        Metrics {
            registry,
            calls,
            errors,
            latency,
            instances,
            busy,
            queued,
            reloads,
            worker_restarts,
            held_bytes,
            connections,
            waiting_for_turn,
            connections_refused,
            connections_pushed_out,
            connections_timed_out,
            disabled,
            log_records_dropped,
            log_bytes_dropped,
            calls_in_place,
            calls_handed_on,
        }
    }

    pub fn encode(&self) -> String {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry).expect("writing to a String cannot fail");
        text
    }
}
