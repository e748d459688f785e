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
        sqlite: localzure::storage::settings::SqliteConfig {
            path: dir.join("servicebus.db"),
            wal_enabled: true,
        },
        json: localzure::storage::settings::JsonConfig {
            path: dir.join("data"),
            pretty_print: true,
        },
        snapshot_interval_seconds: 0,
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
/// version, into that version's own directory (`STORED_FORMAT_FIXTURES=tests/fixtures/
/// stored-format/v2 cargo test --test stored_format -- --ignored generate`); the fixtures of
/// earlier versions stay as they were written.
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

// ----- opening the fixtures -------------------------------------------------------------------

/// A copy of a fixture store in a temp dir (the open migrates, replays and snapshots in place).
fn fixture_copy(name: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    copy_store(&fixtures_v1().join(name), dir.path());
    dir
}

/// The server as a library on a manual clock just after the fixtures were written (nothing in
/// them has expired or come due).
fn backend_at_fixture_time(cfg: Option<StorageConfig>) -> ServiceBusBackend {
    ServiceBusBackend::with_clock(cfg, Arc::new(ManualClock::new(T0 + 2_000)))
}

/// The export document of a backend, as JSON without the export time.
fn state_of(b: &ServiceBusBackend) -> serde_json::Value {
    let mut text = Vec::new();
    b.export()
        .unwrap()
        .write_streaming(&mut text, |_| {})
        .unwrap();
    without_export_time(serde_json::from_slice(&text).unwrap())
}

fn without_export_time(mut doc: serde_json::Value) -> serde_json::Value {
    if let Some(o) = doc.as_object_mut() {
        o.remove("exportedAt");
    }
    doc
}

/// The state every fixture holds, written out: entities with their properties and rules, and
/// every message with its place, state, sequence number, body and properties.
fn check_state(doc: &serde_json::Value) {
    use base64::Engine;
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    let entities: Vec<(String, String)> = doc["entities"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            let topic = e["topic"]
                .as_str()
                .map(|t| format!("{t}/"))
                .unwrap_or_default();
            (
                e["kind"].as_str().unwrap().to_string(),
                format!("{topic}{}", e["name"].as_str().unwrap()),
            )
        })
        .collect();
    let want: Vec<(String, String)> = [
        ("Queue", "orders"),
        ("Queue", "Sessions"),
        ("Queue", "work"),
        ("Topic", "events"),
        ("Subscription", "events/big"),
        ("Subscription", "events/high"),
    ]
    .iter()
    .map(|(k, n)| (k.to_string(), n.to_string()))
    .collect();
    let mut sorted = entities.clone();
    sorted.sort();
    let mut want_sorted = want;
    want_sorted.sort();
    assert_eq!(sorted, want_sorted, "entities");
    let entity = |name: &str| {
        doc["entities"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["name"] == name)
            .map(|e| e["description"].clone())
            .unwrap_or_else(|| panic!("no entity {name}"))
    };
    let orders = entity("orders");
    assert_eq!(orders["props"]["lock_duration"], 300 * 10_000_000i64);
    assert_eq!(orders["props"]["requires_duplicate_detection"], true);
    assert_eq!(
        orders["props"]["dead_lettering_on_message_expiration"],
        true
    );
    assert_eq!(orders["props"]["max_delivery_count"], 2);
    assert_eq!(orders["props"]["user_metadata"], "golden fixture");
    assert_eq!(orders["next_seq"], 5, "orders assigned 1..=4");
    assert_eq!(
        orders["dup"].as_array().map(Vec::len),
        Some(4),
        "duplicate-detection history: {orders}"
    );
    let sessions = entity("Sessions");
    assert_eq!(sessions["props"]["requires_session"], true);
    let s1 = &sessions["sessions"]["s1"];
    assert_eq!(
        s1["state"],
        serde_json::json!(b"state-2".to_vec()),
        "{sessions}"
    );
    assert_eq!(s1["lock"]["token"], token(3).to_string());
    assert_eq!(
        entity("events")["props"]["default_message_time_to_live"],
        86_400 * 10_000_000i64
    );
    let high = entity("high");
    assert_eq!(high["props"]["lock_duration"], 120 * 10_000_000i64);
    assert_eq!(high["rules"][0]["name"], "corr");
    assert_eq!(high["rules"][0]["filter"]["Correlation"]["label"], "high");
    let big = entity("big");
    assert_eq!(big["rules"][0]["name"], "sql");
    assert_eq!(
        big["rules"][0]["filter"]["Sql"]["expression"],
        "amount > @min"
    );
    assert_eq!(big["rules"][0]["action"]["expression"], "SET tier = 'gold'");

    // Every message: (entity, dead-letter, id) -> (state, sequence number, delivery count,
    // locked by, body).
    let mut got = BTreeMap::new();
    for m in doc["messages"].as_array().unwrap() {
        let msg = &m["message"];
        got.insert(
            (
                m["entity"]["name"].as_str().unwrap().to_string(),
                m["deadLetter"].as_bool().unwrap(),
                msg["content"]["message_id"].as_str().unwrap().to_string(),
            ),
            (
                msg["state"].as_str().unwrap().to_string(),
                msg["sequence_number"].as_u64().unwrap(),
                msg["delivery_count"].as_u64().unwrap(),
                msg["lock"]["token"].as_str().map(str::to_string),
                msg["content"]["body"].as_str().unwrap().to_string(),
            ),
        );
    }
    let key = |e: &str, dl: bool, id: &str| (e.to_string(), dl, id.to_string());
    let val = |state: &str, seq: u64, dc: u64, lock: Option<u128>, body: String| {
        (
            state.to_string(),
            seq,
            dc,
            lock.map(|n| token(n).to_string()),
            body,
        )
    };
    let bin = base64::engine::general_purpose::STANDARD.encode([0u8, 1, 2, 254, 255]);
    let want: BTreeMap<_, _> = [
        (
            key("orders", true, "dlq-1"),
            val("Active", 1, 1, None, b64("to the dead-letter queue")),
        ),
        (
            key("orders", false, "deferred-1"),
            val("Deferred", 2, 1, None, b64("for later, by sequence number")),
        ),
        (
            key("orders", false, "active-1"),
            val("Active", 3, 0, None, b64("{\"order\": 1}")),
        ),
        (
            key("orders", false, "scheduled-1"),
            val("Scheduled", 4, 0, None, b64("later")),
        ),
        (
            key("Sessions", false, "sess-1"),
            val("Active", 1, 0, None, b64("in session s1")),
        ),
        (
            key("Sessions", false, "sess-2"),
            val("Active", 2, 0, None, b64("in session s2")),
        ),
        (
            key("work", false, "locked-1"),
            val("Active", 1, 1, Some(4), bin),
        ),
        (
            key("high", false, "ev-1"),
            val("Active", 1, 0, None, b64("high and big")),
        ),
        (
            key("high", false, "ev-2"),
            val("Active", 2, 0, None, b64("high only")),
        ),
        (
            key("big", true, "ev-1"),
            val("Active", 1, 1, None, b64("high and big")),
        ),
    ]
    .into_iter()
    .collect();
    assert_eq!(got, want, "messages");

    let find = |e: &str, dl: bool, id: &str| {
        doc["messages"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| {
                m["entity"]["name"] == e
                    && m["deadLetter"] == dl
                    && m["message"]["content"]["message_id"] == id
            })
            .map(|m| m["message"].clone())
            .unwrap()
    };
    let active = find("orders", false, "active-1");
    let c = &active["content"];
    for (field, value) in [
        ("correlation_id", "c-42"),
        ("label", "new"),
        ("to", "shipping"),
        ("reply_to", "replies"),
        ("content_type", "application/json"),
        ("partition_key", "pk"),
    ] {
        assert_eq!(c[field], value, "{field}: {active}");
    }
    assert_eq!(c["time_to_live"], 3600 * 10_000_000i64);
    assert_eq!(active["expires_at"], T0 + 3_600_000);
    let p = &c["properties"];
    assert_eq!(
        p["customer"],
        serde_json::json!({"t": "String", "v": "alice"}),
        "{p}"
    );
    assert_eq!(p["priority"], serde_json::json!({"t": "Int", "v": 5}));
    assert_eq!(p["vip"], serde_json::json!({"t": "Bool", "v": true}));
    assert_eq!(p["ratio"], serde_json::json!({"t": "Double", "v": 0.25}));
    assert_eq!(
        p["due"],
        serde_json::json!({"t": "DateTime", "v": T0 + 86_400_000})
    );
    assert_eq!(p["nothing"], serde_json::json!({"t": "Null"}));
    assert_eq!(
        find("orders", false, "scheduled-1")["content"]["scheduled_enqueue_time"],
        T0 + 3_600_000
    );
    let dlq = find("orders", true, "dlq-1");
    assert_eq!(
        dlq["content"]["properties"]["DeadLetterReason"],
        serde_json::json!({"t": "String", "v": "Golden"}),
        "{dlq}"
    );
    assert_eq!(
        dlq["content"]["properties"]["stage"],
        serde_json::json!({"t": "Int", "v": 2})
    );
    assert_eq!(
        find("orders", false, "deferred-1")["content"]["properties"]["deferred_by"],
        serde_json::json!({"t": "String", "v": "generator"})
    );
    assert_eq!(
        find("Sessions", false, "sess-2")["content"]["session_id"],
        "s2"
    );
    let locked = find("work", false, "locked-1");
    assert_eq!(locked["lock"]["locked_until"], T0 + 1_000 + 60_000);
    assert_eq!(
        find("high", false, "ev-1")["content"]["properties"]["region"],
        serde_json::json!({"t": "String", "v": "eu"})
    );
    assert_eq!(
        find("big", true, "ev-1")["content"]["properties"]["tier"],
        serde_json::json!({"t": "String", "v": "gold"}),
        "the SQL rule's action ran"
    );
}

/// The golden export document, as JSON without the export time.
fn golden_export() -> serde_json::Value {
    let text = std::fs::read_to_string(fixtures_v1().join("export.json")).unwrap();
    without_export_time(serde_json::from_str(&text).unwrap())
}

/// Opens a fixture store as the service does at start-up and checks the whole state.
async fn opens_with_full_state(kind: StorageType, name: &str) {
    let dir = fixture_copy(name);
    let b = backend_at_fixture_time(Some(storage_config(kind, dir.path())));
    let status = b.initialize_persistence().await.unwrap();
    assert_eq!(status.degraded, None, "{status:?}");
    assert!(
        status.replayed >= 8,
        "the journal records after the snapshot are replayed: {status:?}"
    );
    let doc = state_of(&b);
    check_state(&doc);
    assert_eq!(
        doc,
        golden_export(),
        "{name} fixture against the golden export"
    );
    b.shutdown_persistence().await.unwrap();
}

#[tokio::test]
async fn sqlite_fixture_opens_with_its_full_state() {
    opens_with_full_state(StorageType::Sqlite, "sqlite").await;
}

#[tokio::test]
async fn json_fixture_opens_with_its_full_state() {
    opens_with_full_state(StorageType::Json, "json").await;
}

#[tokio::test]
async fn export_fixture_imports_with_its_full_state() {
    let text = std::fs::read_to_string(fixtures_v1().join("export.json")).unwrap();
    let doc = localzure::storage::export::ExportDocument::parse(&text).unwrap();
    let b = backend_at_fixture_time(None);
    b.import(doc).await.unwrap();
    let state = state_of(&b);
    check_state(&state);
    assert_eq!(state, golden_export());
}

// ----- data from a newer format version is refused --------------------------------------------

/// Asserts `text` names the version found and the newest supported one.
fn names_both_versions(text: &str, found: i64, supported: i64) {
    assert!(
        text.contains(&format!("version {found}")),
        "names the version found ({found}): {text}"
    );
    assert!(
        text.contains(&format!("newer than this binary supports ({supported})")),
        "names the supported version ({supported}): {text}"
    );
}

/// Opening a store the service cannot read falls back to memory, degraded: the error is in
/// the log and in `/health` (`storage.degraded`), as for every storage failure at start-up.
async fn falls_back_naming(cfg: StorageConfig, found: i64, supported: i64) {
    let b = backend_at_fixture_time(Some(cfg));
    let status = b.initialize_persistence().await.unwrap();
    let degraded = status.degraded.expect("a newer format refuses the store");
    names_both_versions(&degraded, found, supported);
    assert_eq!(
        b.read(|broker| broker.totals().queues),
        0,
        "nothing of the newer store was read"
    );
}

#[tokio::test]
async fn sqlite_fixture_with_a_newer_schema_is_refused() {
    let dir = fixture_copy("sqlite");
    let cfg = storage_config(StorageType::Sqlite, dir.path());
    let conn = rusqlite::Connection::open(&cfg.sqlite.path).unwrap();
    conn.execute("INSERT INTO schema_version (version) VALUES (2)", [])
        .unwrap();
    drop(conn);
    falls_back_naming(cfg, 2, localzure::storage::schema::SQLITE_SCHEMA.current).await;
}

#[tokio::test]
async fn json_fixture_with_a_newer_layout_is_refused() {
    let dir = fixture_copy("json");
    let cfg = storage_config(StorageType::Json, dir.path());
    let state = cfg.json.path.join("state.json");
    let mut doc: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&state).unwrap()).unwrap();
    assert_eq!(doc["version"], 1, "the fixture is version 1");
    doc["version"] = 2.into();
    std::fs::write(&state, doc.to_string()).unwrap();
    falls_back_naming(cfg, 2, localzure::storage::schema::JSON_DIR.current).await;
}

/// Rewrites the journal at `path` with each payload passed through `f` (same LSNs).
fn rewrite_journal(path: &Path, f: impl Fn(u64, Vec<u8>) -> Vec<u8>) {
    use localzure::storage::journal::{decode, Journal};
    let replay = decode(&std::fs::read(path).unwrap()).unwrap();
    let first = replay.records.first().map(|r| r.0).unwrap();
    std::fs::remove_file(path).unwrap();
    let (j, _) = Journal::open(path, first).unwrap();
    for (lsn, payload) in replay.records {
        assert_eq!(j.append_and_flush(f(lsn, payload)).unwrap(), lsn);
    }
    j.close();
}

#[tokio::test]
async fn journal_records_of_a_newer_version_are_refused() {
    for (kind, name) in [(StorageType::Sqlite, "sqlite"), (StorageType::Json, "json")] {
        let dir = fixture_copy(name);
        let cfg = storage_config(kind, dir.path());
        let journal = match kind {
            StorageType::Json => cfg.json.path.join("operations.wal"),
            _ => dir.path().join("servicebus.db.wal"),
        };
        // Today's fixture records have no version field: version 1.
        let newer = localzure::storage::schema::RECORD_VERSION + 1;
        // The first record after the snapshot is bumped; the rest stay version 1.
        let bumped = std::cell::Cell::new(false);
        rewrite_journal(&journal, |_, payload| {
            let rest = payload.strip_prefix(b"{").expect("a JSON object").to_vec();
            assert!(rest.starts_with(b"\"at\":"), "a version 1 record");
            if bumped.replace(true) {
                return payload;
            }
            [format!("{{\"v\":{newer},").into_bytes(), rest].concat()
        });
        let b = backend_at_fixture_time(Some(cfg));
        let err = b
            .initialize_persistence()
            .await
            .expect_err("a newer record refuses the start");
        let text = err.to_string();
        names_both_versions(
            &text,
            i64::from(newer),
            i64::from(localzure::storage::schema::RECORD_VERSION),
        );
        assert!(text.contains("record LSN"), "{text}");
    }
}

#[tokio::test]
async fn journal_file_of_a_newer_framing_is_refused() {
    let dir = fixture_copy("sqlite");
    let cfg = storage_config(StorageType::Sqlite, dir.path());
    let path = dir.path().join("servicebus.db.wal");
    let mut bytes = std::fs::read(&path).unwrap();
    let supported = localzure::storage::journal::FORMAT_VERSION;
    bytes[6..8].copy_from_slice(&(supported + 1).to_le_bytes());
    std::fs::write(&path, bytes).unwrap();
    let b = backend_at_fixture_time(Some(cfg));
    let err = b.initialize_persistence().await.expect_err("refused");
    names_both_versions(
        &err.to_string(),
        i64::from(supported + 1),
        i64::from(supported),
    );
}

#[test]
fn export_of_a_newer_version_is_refused() {
    let text = std::fs::read_to_string(fixtures_v1().join("export.json")).unwrap();
    let mut doc: serde_json::Value = serde_json::from_str(&text).unwrap();
    let supported = localzure::storage::export::EXPORT_VERSION;
    doc["version"] = (supported + 1).into();
    let err =
        localzure::storage::export::ExportDocument::parse(&doc.to_string()).expect_err("refused");
    names_both_versions(&err, i64::from(supported + 1), i64::from(supported));
}

/// What this binary writes names its version: the operation log's records and the stores.
#[tokio::test]
async fn new_records_carry_their_version() {
    let dir = fixture_copy("json");
    let cfg = storage_config(StorageType::Json, dir.path());
    let journal = cfg.json.path.join("operations.wal");
    let b = backend_at_fixture_time(Some(cfg.clone()));
    b.initialize_persistence().await.unwrap();
    send(&b, "work", msg("new-1", "written by this binary")).await;
    let replay = localzure::storage::journal::decode(&std::fs::read(&journal).unwrap()).unwrap();
    let (_, last) = replay.records.last().expect("the send is journaled");
    let want = format!("{{\"v\":{},", localzure::storage::schema::RECORD_VERSION);
    assert!(
        last.starts_with(want.as_bytes()),
        "{}",
        String::from_utf8_lossy(last)
    );
    b.shutdown_persistence().await.unwrap();
    let state: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(cfg.json.path.join("state.json")).unwrap())
            .unwrap();
    assert_eq!(
        state["version"],
        localzure::storage::schema::JSON_DIR.current
    );
}
