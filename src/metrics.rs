//! Prometheus metrics, served at `GET /metrics` (text format, from the
//! `prometheus` crate).
//!
//! Counters and gauges are updated where the events happen (`NotifyServer`,
//! the sessions, the publish handler); each update is an atomic add, never a
//! lock.

use prometheus::{
    Encoder, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};

pub struct Metrics {
    registry: Registry,
    /// Open sessions, by transport (`ws`, `sse`, `poll`).
    pub sessions: IntGaugeVec,
    /// Registered ids with at least one session.
    pub ids: IntGauge,
    /// Channels with at least one subscriber.
    pub channels: IntGauge,
    /// Messages accepted by `POST /`, by target (`broadcast`, `direct`,
    /// `channel`).
    pub published: IntCounterVec,
    /// Messages handed to sessions.
    pub deliveries: IntCounter,
    /// Sessions dropped because their queue was full.
    pub slow_consumers: IntCounter,
    /// `POST /` refused, by error code (`unauthorized`, `body_too_large`, …).
    pub rejected: IntCounterVec,
    /// Seconds from routing a message to handing it to a session's socket.
    pub publish_to_write: Histogram,
    /// 1 when the broker is usable (always with `memory`; Redis subscribed).
    pub broker_up: IntGauge,
    /// Accepted TCP connections open, of any kind.
    pub tcp_connections: IntGauge,
    /// TCP connections closed at accept, by the cap they hit
    /// (`max_tcp_connections`, `max_tcp_connections_per_ip`).
    pub tcp_refused: IntCounterVec,
    /// Publishes answered as duplicates of an earlier one with the same
    /// idempotency key (delivered to nobody), by this node.
    pub idempotent_duplicates: IntCounter,
    /// Idempotency keys remembered now (with Redis: by the cluster), read
    /// from the broker at each scrape.
    pub idempotency_keys: IntGauge,
    /// Idempotency keys forgotten before their window ended, to stay
    /// within `idempotency_max_keys` (with Redis: by this node's publishes).
    pub idempotency_evictions: IntCounter,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// A fresh set of metrics in its own registry.
    pub fn new() -> Self {
        match Self::build() {
            Ok(metrics) => metrics,
            // Only a name registered twice fails, and each name is once here.
            Err(e) => panic!("metrics: {e}"),
        }
    }

    fn build() -> Result<Self, prometheus::Error> {
        let registry = Registry::new();
        let sessions = IntGaugeVec::new(
            Opts::new("herald_sessions", "Open sessions by transport"),
            &["transport"],
        )?;
        let ids = IntGauge::new("herald_ids", "Registered ids with at least one session")?;
        let channels = IntGauge::new("herald_channels", "Channels with at least one subscriber")?;
        let published = IntCounterVec::new(
            Opts::new(
                "herald_published_total",
                "Messages accepted by POST /, by target",
            ),
            &["target"],
        )?;
        let deliveries = IntCounter::new("herald_deliveries_total", "Messages handed to sessions")?;
        let slow_consumers = IntCounter::new(
            "herald_slow_consumer_disconnects_total",
            "Sessions dropped because their queue was full",
        )?;
        let rejected = IntCounterVec::new(
            Opts::new(
                "herald_rejected_publishes_total",
                "POST / refused, by error code",
            ),
            &["reason"],
        )?;
        let publish_to_write = Histogram::with_opts(
            HistogramOpts::new(
                "herald_publish_to_write_seconds",
                "From routing a message to handing it to a session's socket",
            )
            .buckets(vec![
                0.000_1, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
            ]),
        )?;
        let broker_up = IntGauge::new("herald_broker_up", "1 when the broker is usable")?;
        let tcp_connections = IntGauge::new(
            "herald_tcp_connections",
            "Accepted TCP connections open, of any kind",
        )?;
        let tcp_refused = IntCounterVec::new(
            Opts::new(
                "herald_tcp_refused_total",
                "TCP connections closed at accept, by the cap they hit",
            ),
            &["limit"],
        )?;
        let idempotent_duplicates = IntCounter::new(
            "herald_idempotent_duplicates_total",
            "Publishes answered as duplicates of an earlier one with the same idempotency key",
        )?;
        let idempotency_keys = IntGauge::new(
            "herald_idempotency_keys",
            "Idempotency keys remembered now (with Redis: by the cluster)",
        )?;
        let idempotency_evictions = IntCounter::new(
            "herald_idempotency_evictions_total",
            "Idempotency keys forgotten before their window ended (idempotency_max_keys)",
        )?;
        registry.register(Box::new(sessions.clone()))?;
        registry.register(Box::new(ids.clone()))?;
        registry.register(Box::new(channels.clone()))?;
        registry.register(Box::new(published.clone()))?;
        registry.register(Box::new(deliveries.clone()))?;
        registry.register(Box::new(slow_consumers.clone()))?;
        registry.register(Box::new(rejected.clone()))?;
        registry.register(Box::new(publish_to_write.clone()))?;
        registry.register(Box::new(broker_up.clone()))?;
        registry.register(Box::new(tcp_connections.clone()))?;
        registry.register(Box::new(tcp_refused.clone()))?;
        registry.register(Box::new(idempotent_duplicates.clone()))?;
        registry.register(Box::new(idempotency_keys.clone()))?;
        registry.register(Box::new(idempotency_evictions.clone()))?;
        for limit in ["max_tcp_connections", "max_tcp_connections_per_ip"] {
            tcp_refused.with_label_values(&[limit]).reset();
        }
        for transport in ["ws", "sse", "poll"] {
            sessions.with_label_values(&[transport]).set(0);
        }
        broker_up.set(1);
        Ok(Self {
            registry,
            sessions,
            ids,
            channels,
            published,
            deliveries,
            slow_consumers,
            rejected,
            publish_to_write,
            broker_up,
            tcp_connections,
            tcp_refused,
            idempotent_duplicates,
            idempotency_keys,
            idempotency_evictions,
        })
    }

    /// The text exposition format.
    pub fn render(&self) -> String {
        let mut out = Vec::new();
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut out) {
            log::error!("could not encode metrics: {e}");
        }
        String::from_utf8(out).unwrap_or_default()
    }
}
