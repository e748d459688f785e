//! Prometheus metrics (`GET /metrics`): one process-wide registry of counters and histograms
//! fed where the service applies operations, plus per-entity gauges computed at scrape time
//! from the broker's state (the same counts `/$admin/stats` and the ATOM `CountDetails` give).
//!
//! Encoding is `prometheus-client`'s (the Prometheus project's Rust client), so the exposition
//! format is theirs, not ours (<https://prometheus.io/docs/instrumenting/exposition_formats/>).

use crate::broker::entity::EntityInfo;
use crate::broker::op::{Op, QueuePath, Settlement};
use crate::broker::Outcome;
use crate::sync::lock;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::{Family, MetricConstructor};
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

/// A message event counted in `localzure_messages_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    Sent,
    Scheduled,
    Received,
    Completed,
    Abandoned,
    DeadLettered,
    Expired,
    Deferred,
}

impl Event {
    fn label(self) -> &'static str {
        match self {
            Event::Sent => "sent",
            Event::Scheduled => "scheduled",
            Event::Received => "received",
            Event::Completed => "completed",
            Event::Abandoned => "abandoned",
            Event::DeadLettered => "dead_lettered",
            Event::Expired => "expired",
            Event::Deferred => "deferred",
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EventLabels {
    entity: String,
    event: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EntityLabels {
    entity: String,
    kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OpLabels {
    op: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    plane: String,
    operation: String,
}

/// Latency buckets from 100 µs to about 13 s (doubling), wide enough for an fsync-bound
/// journal and a long-poll receive alike.
#[derive(Clone)]
struct Latency;
impl MetricConstructor<Histogram> for Latency {
    fn new_metric(&self) -> Histogram {
        Histogram::new(exponential_buckets(0.0001, 2.0, 18))
    }
}

/// The per-entity gauges, refilled at each scrape.
struct EntityGauges {
    active: Family<EntityLabels, Gauge>,
    scheduled: Family<EntityLabels, Gauge>,
    deferred: Family<EntityLabels, Gauge>,
    dead_lettered: Family<EntityLabels, Gauge>,
    transfer_dead_lettered: Family<EntityLabels, Gauge>,
    size_bytes: Family<EntityLabels, Gauge>,
}

/// Every metric the server exports. One per process ([`global`]); tests build their own.
pub struct Metrics {
    registry: Registry,
    messages: Family<EventLabels, Counter>,
    operations: Family<OpLabels, Counter>,
    operation_seconds: Family<OpLabels, Histogram, Latency>,
    request_seconds: Family<RequestLabels, Histogram, Latency>,
    journal_commit_seconds: Histogram,
    journal_batch_records: Histogram,
    snapshot_seconds: Histogram,
    amqp_connections: Gauge,
    http_connections: Gauge,
    amqp_links: Gauge,
    parked_receives: Gauge,
    entities: EntityGauges,
    /// The highest LSN a waiter has seen durable, to size group-commit batches.
    durable_lsn: AtomicU64,
    /// Scrapes refill the entity gauges: one at a time.
    scrape: Mutex<()>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// A fresh registry with every metric registered (names without the `_total` suffix,
    /// which the encoder adds to counters).
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("localzure");
        let messages = Family::<EventLabels, Counter>::default();
        registry.register(
            "messages",
            "Messages by entity and event (sent, scheduled, received, completed, abandoned, dead_lettered, expired, deferred)",
            messages.clone(),
        );
        let operations = Family::<OpLabels, Counter>::default();
        registry.register(
            "operations",
            "Broker operations applied, by kind (both planes and the timer)",
            operations.clone(),
        );
        let operation_seconds = Family::new_with_constructor(Latency);
        registry.register(
            "operation_duration_seconds",
            "Time to apply an operation and make it durable, by kind (both planes)",
            operation_seconds.clone(),
        );
        let request_seconds = Family::new_with_constructor(Latency);
        registry.register(
            "request_duration_seconds",
            "Request latency by plane (http, amqp) and operation",
            request_seconds.clone(),
        );
        let journal_commit_seconds = Latency.new_metric();
        registry.register(
            "journal_commit_seconds",
            "Time from a journal append until the record is durable (the group-commit flush a request waits for)",
            journal_commit_seconds.clone(),
        );
        let journal_batch_records = Histogram::new(exponential_buckets(1.0, 2.0, 12));
        registry.register(
            "journal_batch_records",
            "Records made durable by one journal flush (group commit)",
            journal_batch_records.clone(),
        );
        let snapshot_seconds = Histogram::new(exponential_buckets(0.001, 2.0, 16));
        registry.register(
            "snapshot_duration_seconds",
            "Snapshot duration (capture and write)",
            snapshot_seconds.clone(),
        );
        let http_connections = Gauge::default();
        registry.register(
            "http_connections",
            "Open HTTP connections (REST, management, console; plain and TLS)",
            http_connections.clone(),
        );
        let amqp_connections = Gauge::default();
        registry.register(
            "amqp_connections",
            "Open AMQP connections",
            amqp_connections.clone(),
        );
        let amqp_links = Gauge::default();
        registry.register("amqp_links", "Attached AMQP links", amqp_links.clone());
        let parked_receives = Gauge::default();
        registry.register(
            "parked_receives",
            "Receives waiting for a message (REST long polls and AMQP receivers with credit)",
            parked_receives.clone(),
        );
        let mut gauge = |name: &str, help: &str| {
            let f = Family::<EntityLabels, Gauge>::default();
            registry.register(name, help, f.clone());
            f
        };
        let entities = EntityGauges {
            active: gauge("entity_active_messages", "Active messages per entity"),
            scheduled: gauge("entity_scheduled_messages", "Scheduled messages per entity"),
            deferred: gauge("entity_deferred_messages", "Deferred messages per entity"),
            dead_lettered: gauge(
                "entity_dead_lettered_messages",
                "Messages in the entity's dead-letter queue",
            ),
            transfer_dead_lettered: gauge(
                "entity_transfer_dead_lettered_messages",
                "Messages in the entity's transfer dead-letter queue",
            ),
            size_bytes: gauge("entity_size_bytes", "Bytes of the entity's stored messages"),
        };
        Metrics {
            registry,
            messages,
            operations,
            operation_seconds,
            request_seconds,
            journal_commit_seconds,
            journal_batch_records,
            snapshot_seconds,
            amqp_connections,
            http_connections,
            amqp_links,
            parked_receives,
            entities,
            durable_lsn: AtomicU64::new(0),
            scrape: Mutex::new(()),
        }
    }

    /// Counts `n` messages of `event` on `entity`.
    pub fn count(&self, entity: &str, event: Event, n: u64) {
        if n == 0 {
            return;
        }
        self.messages
            .get_or_create(&EventLabels {
                entity: entity.to_string(),
                event: event.label().to_string(),
            })
            .inc_by(n);
    }

    /// The counter of `event` on `entity` (tests).
    pub fn counted(&self, entity: &str, event: Event) -> u64 {
        self.messages
            .get_or_create(&EventLabels {
                entity: entity.to_string(),
                event: event.label().to_string(),
            })
            .get()
    }

    /// Records an applied operation: its kind, its latency, and the message events it caused.
    /// Called once per [`crate::service::ServiceBusBackend::execute`] that succeeded.
    pub fn applied(&self, op: &Op, outcome: &Outcome, now: i64, elapsed: Duration) {
        let labels = OpLabels {
            op: op.name().to_string(),
        };
        self.operations.get_or_create(&labels).inc();
        self.operation_seconds
            .get_or_create(&labels)
            .observe(elapsed.as_secs_f64());
        match (op, outcome) {
            (Op::Send { entity, messages }, Outcome::Sent { sequence_numbers }) => {
                let scheduled = messages
                    .iter()
                    .filter(|m| m.scheduled_enqueue_time.is_some_and(|t| t > now))
                    .count() as u64;
                self.count(entity, Event::Sent, sequence_numbers.len() as u64);
                self.count(entity, Event::Scheduled, scheduled);
            }
            (Op::Receive { from, .. } | Op::ReceiveDeferred { from, .. }, Outcome::Received(m)) => {
                self.count(&entity_label(from), Event::Received, m.len() as u64);
            }
            (
                Op::Settle {
                    from, settlement, ..
                },
                _,
            ) => {
                let event = match settlement {
                    Settlement::Complete => Event::Completed,
                    Settlement::Abandon { .. } => Event::Abandoned,
                    Settlement::Defer { .. } => Event::Deferred,
                    // Dead-lettering is counted from the broker's events (any cause).
                    Settlement::DeadLetter { .. } | Settlement::Release => return,
                };
                self.count(&entity_label(from), event, 1);
            }
            _ => {}
        }
    }

    /// Counts what a live operation did besides its outcome (dead-letterings and expiries, for
    /// any cause), as the broker reports them in [`crate::broker::Applied::events`].
    pub fn broker_events(&self, events: &[crate::broker::Event]) {
        for e in events {
            let (from, event) = match e {
                crate::broker::Event::DeadLettered { from } => (from, Event::DeadLettered),
                crate::broker::Event::Expired { from } => (from, Event::Expired),
            };
            self.count(&entity_label(from), event, 1);
        }
    }

    /// Records a request's latency on `plane` (`http`, `amqp`).
    pub fn request(&self, plane: &str, operation: &str, elapsed: Duration) {
        self.request_seconds
            .get_or_create(&RequestLabels {
                plane: plane.to_string(),
                operation: operation.to_string(),
            })
            .observe(elapsed.as_secs_f64());
    }

    /// Records a journal wait: `lsn` became durable after `elapsed`. The first waiter to see
    /// the durable LSN move past earlier ones sizes the batch (records since the last flush).
    pub fn journal_durable(&self, lsn: u64, elapsed: Duration) {
        self.journal_commit_seconds.observe(elapsed.as_secs_f64());
        let before = self.durable_lsn.fetch_max(lsn, Ordering::SeqCst);
        if lsn > before && before > 0 {
            self.journal_batch_records.observe((lsn - before) as f64);
        }
    }

    /// Records a snapshot's duration.
    pub fn snapshot(&self, elapsed_ms: f64) {
        self.snapshot_seconds.observe(elapsed_ms / 1000.0);
    }

    /// Sets the parked-receives gauge (read from the service at scrape time).
    pub fn set_parked_receives(&self, n: usize) {
        self.parked_receives
            .set(i64::try_from(n).unwrap_or(i64::MAX));
    }

    /// The text exposition, with the entity gauges set from `entities` first.
    pub fn render(&self, entities: &[EntityInfo]) -> String {
        let _one = lock(&self.scrape);
        let g = &self.entities;
        for f in [
            &g.active,
            &g.scheduled,
            &g.deferred,
            &g.dead_lettered,
            &g.transfer_dead_lettered,
            &g.size_bytes,
        ] {
            f.clear();
        }
        for e in entities {
            let labels = EntityLabels {
                entity: entity_name(e),
                kind: kind_label(e.kind).to_string(),
            };
            let set = |f: &Family<EntityLabels, Gauge>, v: u64| {
                f.get_or_create(&labels)
                    .set(i64::try_from(v).unwrap_or(i64::MAX));
            };
            set(&g.active, e.counts.active);
            set(&g.scheduled, e.counts.scheduled);
            set(&g.deferred, e.counts.deferred);
            set(&g.dead_lettered, e.counts.dead_letter);
            set(&g.transfer_dead_lettered, e.counts.transfer_dead_letter);
            set(&g.size_bytes, e.size_in_bytes);
        }
        let mut out = String::new();
        if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &self.registry) {
            tracing::warn!("cannot encode metrics: {e}");
        }
        out
    }
}

/// The entity label: the queue or topic name, or `topic/Subscriptions/sub` (the REST path).
pub fn entity_name(e: &EntityInfo) -> String {
    match &e.topic {
        Some(t) => format!("{t}/Subscriptions/{}", e.name),
        None => e.name.clone(),
    }
}

/// The `kind` label: `queue`, `topic` or `subscription`.
pub fn kind_label(kind: crate::storage::EntityKind) -> &'static str {
    use crate::storage::EntityKind;
    match kind {
        EntityKind::Queue => "queue",
        EntityKind::Topic => "topic",
        EntityKind::Subscription => "subscription",
    }
}

/// The entity label of a receive path (its dead-letter queue counts toward the entity).
pub fn entity_label(p: &QueuePath) -> String {
    match &p.subscription {
        Some(s) => format!("{}/Subscriptions/{s}", p.entity),
        None => p.entity.clone(),
    }
}

/// Counts one open AMQP connection or attached link in its gauge until dropped, so every
/// way out (close, error, cancellation) uncounts it.
#[must_use = "the gauge counts only while the guard is held"]
pub struct Open(Gauge);

impl Drop for Open {
    fn drop(&mut self) {
        self.0.dec();
    }
}

impl std::fmt::Debug for Open {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("metrics::Open")
    }
}

fn open(g: &Gauge) -> Open {
    g.inc();
    Open(g.clone())
}

/// An HTTP connection is being served: counted in `localzure_http_connections`.
pub fn http_connection_open() -> Open {
    open(&global().http_connections)
}

/// An AMQP connection passed its handshake: counted in `localzure_amqp_connections`.
pub fn amqp_connection_open() -> Open {
    open(&global().amqp_connections)
}

/// An AMQP link attached: counted in `localzure_amqp_links` while the link lives.
pub fn amqp_link_attached() -> Open {
    open(&global().amqp_links)
}

/// Observes the time until it is dropped in `localzure_request_duration_seconds`.
#[must_use = "the time is observed when the guard drops"]
pub struct Timed {
    plane: &'static str,
    operation: &'static str,
    started: std::time::Instant,
}

impl Drop for Timed {
    fn drop(&mut self) {
        global().request(self.plane, self.operation, self.started.elapsed());
    }
}

/// Times one request of `plane` (`amqp`, `http`) until the guard drops.
pub fn timer(plane: &'static str, operation: &'static str) -> Timed {
    Timed {
        plane,
        operation,
        started: std::time::Instant::now(),
    }
}

/// Times one AMQP `$management` request. The label is the operation without its
/// `com.microsoft:` prefix when it is one LocalZure answers, else `other` (a fixed label set
/// whatever clients send).
pub fn amqp_management_timer(operation: &str) -> Timed {
    use crate::amqp::symbols as sym;
    const KNOWN: &[&str] = &[
        sym::OP_PEEK_MESSAGE,
        sym::OP_RENEW_LOCK,
        sym::OP_SCHEDULE_MESSAGE,
        sym::OP_CANCEL_SCHEDULED_MESSAGE,
        sym::OP_UPDATE_DISPOSITION,
        sym::OP_RECEIVE_BY_SEQUENCE_NUMBER,
        sym::OP_RENEW_SESSION_LOCK,
        sym::OP_GET_SESSION_STATE,
        sym::OP_SET_SESSION_STATE,
        sym::OP_GET_MESSAGE_SESSIONS,
        sym::OP_ADD_RULE,
        sym::OP_REMOVE_RULE,
        sym::OP_ENUMERATE_RULES,
    ];
    let name = KNOWN
        .iter()
        .find(|k| **k == operation)
        .map_or("other", |k| k.trim_start_matches("com.microsoft:"));
    timer("amqp", name)
}

/// The process-wide metrics the server exports.
pub fn global() -> &'static Metrics {
    static METRICS: OnceLock<Metrics> = OnceLock::new();
    METRICS.get_or_init(Metrics::new)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::broker::op::ReceiveMode;

    #[test]
    fn counters_follow_applied_ops_and_render() {
        let m = Metrics::new();
        let send = Op::Send {
            entity: "q1".into(),
            messages: vec![Default::default(), Default::default()],
        };
        let sent = Outcome::Sent {
            sequence_numbers: vec![1, 2],
        };
        m.applied(&send, &sent, 0, Duration::from_millis(2));
        let recv = Op::Receive {
            from: QueuePath::queue("q1"),
            mode: ReceiveMode::PeekLock,
            max: 2,
            lock_tokens: vec![],
            session: None,
        };
        m.applied(&recv, &Outcome::Received(vec![]), 0, Duration::ZERO);
        let settle = Op::Settle {
            from: QueuePath::queue("q1"),
            lock_token: uuid::Uuid::nil(),
            settlement: Settlement::Complete,
        };
        m.applied(&settle, &Outcome::Done, 0, Duration::ZERO);
        m.count("q1", Event::Expired, 3);
        assert_eq!(m.counted("q1", Event::Sent), 2);
        assert_eq!(m.counted("q1", Event::Received), 0);
        assert_eq!(m.counted("q1", Event::Completed), 1);
        assert_eq!(m.counted("q1", Event::Expired), 3);
        m.journal_durable(5, Duration::from_millis(1));
        m.journal_durable(9, Duration::from_millis(1));
        let conn = open(&m.amqp_connections);
        m.request("http", "send", Duration::from_millis(3));
        let text = m.render(&[]);
        for needle in [
            "localzure_messages_total{entity=\"q1\",event=\"sent\"} 2",
            "localzure_messages_total{entity=\"q1\",event=\"completed\"} 1",
            "localzure_operations_total{op=\"Send\"} 1",
            "localzure_amqp_connections 1",
            "localzure_journal_batch_records_count 1",
            "localzure_journal_batch_records_sum 4.0",
            "localzure_request_duration_seconds_count{plane=\"http\",operation=\"send\"} 1",
            "# EOF",
        ] {
            assert!(text.contains(needle), "{needle} missing from:\n{text}");
        }
        drop(conn);
        drop(amqp_management_timer("com.microsoft:renew-lock"));
        drop(amqp_management_timer("com.microsoft:made-up"));
        let text = global().render(&[]);
        for needle in [
            "localzure_request_duration_seconds_count{plane=\"amqp\",operation=\"renew-lock\"} 1",
            "localzure_request_duration_seconds_count{plane=\"amqp\",operation=\"other\"} 1",
        ] {
            assert!(text.contains(needle), "{needle} missing from:\n{text}");
        }
        assert!(m.render(&[]).contains("localzure_amqp_connections 0"));
    }
}
