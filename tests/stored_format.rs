//! The stored format survives upgrades: golden data directories written by an earlier binary
//! (`tests/fixtures/stored-format/v1/`, format version 1) open with the current code and hold
//! exactly the state they were written with; data written by a newer format version is
//! refused with an error naming both versions.
//!
//! The fixtures were written once by [`generate`] (ignored; run it only to add a new format
//! version's fixtures, never to rewrite old ones): the server as a library on a manual clock
//! fixed at [`T0`], so every time and lock token in them is deterministic. Each store holds a
//! snapshot plus journal records written after it (replayed on open), with messages in every
//! state: active, scheduled, deferred, peek-locked, dead-lettered, in sessions with session
//! state, with a time to live, on topic subscriptions with rules, with application properties
//! of several types.

use localzure::broker::entity::{
    CorrelationFilter, EntityProps, Filter, Rule, SqlAction, SqlFilterDef,
};
use localzure::broker::message::NewMessage;
use localzure::broker::op::{Op, QueuePath, ReceiveMode, SessionRef, SessionSelect, Settlement};
use localzure::broker::value::Value;
use localzure::config::{StorageConfig, StorageType};
use localzure::time::{ManualClock, TimeSpan};
use localzure::ServiceBusBackend;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The manual clock's time while the fixtures were written: 2026-01-01T00:00:00Z.
const T0: i64 = 1_767_225_600_000;

/// Where the golden fixtures of format version 1 live.
fn fixtures_v1() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/stored-format/v1")
}

fn storage_config(kind: StorageType, dir: &Path) -> StorageConfig {
    StorageConfig {
        storage_type: kind,
        sqlite_path: dir.join("servicebus.db"),
        json_path: dir.join("data"),
        json_pretty_print: true,
        snapshot_interval_seconds: 0,
        wal_enabled: true,
        auto_compact: false,
        ..StorageConfig::default()
    }
}

fn token(n: u128) -> uuid::Uuid {
    uuid::Uuid::from_u128(0x10ca_1200_0000_0000_0000_0000_0000_0000 | n)
}

fn props(pairs: &[(&str, Value)]) -> BTreeMap<String, Value> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect()
}

fn msg(id: &str, body: &str) -> NewMessage {
    NewMessage {
        message_id: id.to_string(),
        body: body.as_bytes().to_vec(),
        ..NewMessage::default()
    }
}

async fn run(b: &ServiceBusBackend, op: Op) {
    let name = op.name();
    if let Err(e) = b.execute(op).await {
        panic!("{name}: {e}");
    }
}

async fn send(b: &ServiceBusBackend, entity: &str, m: NewMessage) {
    run(
        b,
        Op::Send {
            entity: entity.to_string(),
            messages: vec![m],
        },
    )
    .await;
}

async fn peek_lock(b: &ServiceBusBackend, from: QueuePath, lock: uuid::Uuid) {
    run(
        b,
        Op::Receive {
            from,
            mode: ReceiveMode::PeekLock,
            max: 1,
            lock_tokens: vec![lock],
            session: None,
        },
    )
    .await;
}

async fn settle(b: &ServiceBusBackend, from: QueuePath, lock: uuid::Uuid, s: Settlement) {
    run(
        b,
        Op::Settle {
            from,
            lock_token: lock,
            settlement: s,
        },
    )
    .await;
}

/// The first half of the scenario: entities and messages that end up in the snapshot.
async fn before_snapshot(b: &ServiceBusBackend) {
    let orders = EntityProps {
        lock_duration: TimeSpan::from_secs(300),
        requires_duplicate_detection: true,
        default_message_time_to_live: TimeSpan::from_secs(10 * 86_400),
        dead_lettering_on_message_expiration: true,
        max_delivery_count: 2,
        user_metadata: Some("golden fixture".to_string()),
        ..EntityProps::default()
    };
    run(
        b,
        Op::CreateQueue {
            name: "orders".into(),
            props: orders,
        },
    )
    .await;
    let sessions = EntityProps {
        requires_session: true,
        ..EntityProps::default()
    };
    run(
        b,
        Op::CreateQueue {
            name: "Sessions".into(),
            props: sessions,
        },
    )
    .await;
    run(
        b,
        Op::CreateQueue {
            name: "work".into(),
            props: EntityProps::default(),
        },
    )
    .await;
    let events = EntityProps {
        default_message_time_to_live: TimeSpan::from_secs(86_400),
        ..EntityProps::default()
    };
    run(
        b,
        Op::CreateTopic {
            name: "events".into(),
            props: events,
        },
    )
    .await;
    let corr = Rule {
        name: "corr".into(),
        filter: Filter::Correlation(CorrelationFilter {
            label: Some("high".into()),
            properties: props(&[("region", Value::String("eu".into()))]),
            ..CorrelationFilter::default()
        }),
        action: None,
        created_at: T0,
    };
    run(
        b,
        Op::CreateSubscription {
            topic: "events".into(),
            name: "high".into(),
            props: EntityProps {
                lock_duration: TimeSpan::from_secs(120),
                ..EntityProps::default()
            },
            rule: Some(corr),
        },
    )
    .await;
    let sql = Rule {
        name: "sql".into(),
        filter: Filter::Sql(SqlFilterDef {
            expression: "amount > @min".into(),
            parameters: props(&[("@min", Value::Int(10))]),
            compatibility_level: 20,
        }),
        action: Some(SqlAction {
            expression: "SET tier = 'gold'".into(),
            parameters: BTreeMap::new(),
            compatibility_level: 20,
        }),
        created_at: T0,
    };
    run(
        b,
        Op::CreateSubscription {
            topic: "events".into(),
            name: "big".into(),
            props: EntityProps::default(),
            rule: Some(sql),
        },
    )
    .await;

    // Dead-lettered (received once, dead-lettered with a reason).
    let orders_path = QueuePath::queue("orders");
    send(
        b,
        "orders",
        NewMessage {
            label: Some("doomed".into()),
            properties: props(&[("customer", Value::String("carol".into()))]),
            ..msg("dlq-1", "to the dead-letter queue")
        },
    )
    .await;
    peek_lock(b, orders_path.clone(), token(1)).await;
    settle(
        b,
        orders_path.clone(),
        token(1),
        Settlement::DeadLetter {
            reason: Some("Golden".into()),
            description: Some("written by the fixture generator".into()),
            properties: props(&[("stage", Value::Int(2))]),
        },
    )
    .await;
    // Deferred.
    send(
        b,
        "orders",
        msg("deferred-1", "for later, by sequence number"),
    )
    .await;
    peek_lock(b, orders_path.clone(), token(2)).await;
    settle(
        b,
        orders_path.clone(),
        token(2),
        Settlement::Defer {
            properties: props(&[("deferred_by", Value::String("generator".into()))]),
        },
    )
    .await;
    // Active, with every system property and application properties of every type.
    send(
        b,
        "orders",
        NewMessage {
            correlation_id: Some("c-42".into()),
            label: Some("new".into()),
            to: Some("shipping".into()),
            reply_to: Some("replies".into()),
            content_type: Some("application/json".into()),
            partition_key: Some("pk".into()),
            time_to_live: Some(TimeSpan::from_secs(3600)),
            properties: props(&[
                ("customer", Value::String("alice".into())),
                ("priority", Value::Int(5)),
                ("vip", Value::Bool(true)),
                ("ratio", Value::Double(0.25)),
                ("due", Value::DateTime(T0 + 86_400_000)),
                ("nothing", Value::Null),
            ]),
            ..msg("active-1", "{\"order\": 1}")
        },
    )
    .await;
    // Scheduled an hour ahead.
    send(
        b,
        "orders",
        NewMessage {
            scheduled_enqueue_time: Some(T0 + 3_600_000),
            ..msg("scheduled-1", "later")
        },
    )
    .await;
    // A session with a message and session state.
    send(
        b,
        "Sessions",
        NewMessage {
            session_id: Some("s1".into()),
            ..msg("sess-1", "in session s1")
        },
    )
    .await;
    let sessions_path = QueuePath::queue("Sessions");
    run(
        b,
        Op::AcceptSession {
            from: sessions_path.clone(),
            select: SessionSelect::Id("s1".into()),
            token: token(3),
        },
    )
    .await;
    run(
        b,
        Op::SetSessionState {
            from: sessions_path,
            session: SessionRef {
                id: "s1".into(),
                token: token(3),
            },
            state: Some(b"state-1".to_vec()),
        },
    )
    .await;
}

/// The second half: operations only in the journal, replayed when the fixture is opened.
async fn after_snapshot(b: &ServiceBusBackend) {
    // Topic messages routed by the correlation and SQL rules.
    send(
        b,
        "events",
        NewMessage {
            label: Some("high".into()),
            properties: props(&[
                ("region", Value::String("eu".into())),
                ("amount", Value::Int(99)),
            ]),
            ..msg("ev-1", "high and big")
        },
    )
    .await;
    send(
        b,
        "events",
        NewMessage {
            label: Some("high".into()),
            properties: props(&[
                ("region", Value::String("eu".into())),
                ("amount", Value::Int(1)),
            ]),
            ..msg("ev-2", "high only")
        },
    )
    .await;
    // Peek-locked (binary body).
    send(
        b,
        "work",
        NewMessage {
            body: vec![0, 1, 2, 254, 255],
            ..msg("locked-1", "")
        },
    )
    .await;
    peek_lock(b, QueuePath::queue("work"), token(4)).await;
    // Session state changed after the snapshot; a second session.
    let sessions_path = QueuePath::queue("Sessions");
    run(
        b,
        Op::SetSessionState {
            from: sessions_path,
            session: SessionRef {
                id: "s1".into(),
                token: token(3),
            },
            state: Some(b"state-2".to_vec()),
        },
    )
    .await;
    send(
        b,
        "Sessions",
        NewMessage {
            session_id: Some("s2".into()),
            ..msg("sess-2", "in session s2")
        },
    )
    .await;
    // Dead-lettered on a subscription.
    let big = QueuePath::subscription("events", "big");
    peek_lock(b, big.clone(), token(5)).await;
    settle(
        b,
        big,
        token(5),
        Settlement::DeadLetter {
            reason: None,
            description: None,
            properties: BTreeMap::new(),
        },
    )
    .await;
}

/// Copies a store's files into `to`: a journal without its preallocated zero tail (the format
/// reads a journal that simply ends after its last record the same way), everything else as is.
fn copy_store(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name().to_string_lossy().to_string();
        let src = entry.path();
        let dst = to.join(&name);
        if entry.file_type().unwrap().is_dir() {
            copy_store(&src, &dst);
            continue;
        }
        if name == ".lock" || name.ends_with(".lock") || name.ends_with("-shm") {
            continue;
        }
        let mut bytes = std::fs::read(&src).unwrap();
        if name.ends_with(".wal") {
            while bytes.last() == Some(&0) {
                bytes.pop();
            }
        }
        std::fs::write(&dst, bytes).unwrap();
    }
}

/// Writes the golden fixtures with the code of the checkout it runs in. Run once per format
/// version: `cargo test --test stored_format -- --ignored generate`.
#[tokio::test]
#[ignore = "writes tests/fixtures; run only to add a new format version's fixtures"]
async fn generate() {
    let out = std::env::var("STORED_FORMAT_FIXTURES")
        .map(PathBuf::from)
        .unwrap_or_else(|_| fixtures_v1());
    for (kind, name) in [(StorageType::Sqlite, "sqlite"), (StorageType::Json, "json")] {
        let dir = tempfile::tempdir().unwrap();
        let clock = Arc::new(ManualClock::new(T0));
        let b =
            ServiceBusBackend::with_clock(Some(storage_config(kind, dir.path())), clock.clone());
        b.initialize_persistence().await.unwrap();
        before_snapshot(&b).await;
        b.snapshot().await.unwrap();
        clock.advance(1_000);
        after_snapshot(&b).await;
        // Copied while the server is up: what a crash (SIGKILL) leaves behind, the journal
        // holding everything after the snapshot.
        copy_store(dir.path(), &out.join(name));
        if kind == StorageType::Sqlite {
            let doc = b.export().unwrap();
            let mut text = Vec::new();
            doc.write_streaming(&mut text, |_| {}).unwrap();
            std::fs::write(out.join("export.json"), text).unwrap();
        }
        drop(b);
    }
}
