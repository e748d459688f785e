//! Persistence, end to end, against the real binary: state survives SIGTERM and SIGKILL for the
//! SQLite and JSON backends; crash safety of acknowledged sends; torn and corrupt journals;
//! fallback to memory; schema versions; configuration precedence; the data-directory lock.

mod process;

use process::*;
use reqwest::Method;
use serde_json::json;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

/// A future `ScheduledEnqueueTimeUtc` (an hour from now).
fn in_an_hour() -> String {
    let t = chrono::Utc::now() + chrono::Duration::hours(1);
    t.format("%a, %d %b %Y %H:%M:%S GMT").to_string()
}

/// Creates entities and messages in every state reachable over REST. Returns the lock
/// `Location` path (without the base URL) of the message left locked.
async fn populate(http: &Http) -> String {
    // A queue with non-default properties; MaxDeliveryCount 1 so one abandon dead-letters.
    http.create_queue(
        "orders",
        "<LockDuration>PT5M</LockDuration>\
         <RequiresDuplicateDetection>true</RequiresDuplicateDetection>\
         <DefaultMessageTimeToLive>P10D</DefaultMessageTimeToLive>\
         <DeadLetteringOnMessageExpiration>true</DeadLetteringOnMessageExpiration>\
         <MaxDeliveryCount>1</MaxDeliveryCount>",
    )
    .await;
    http.create_queue("retries", "<MaxDeliveryCount>5</MaxDeliveryCount>")
        .await;
    http.create_topic("events", "<DefaultMessageTimeToLive>P1D</DefaultMessageTimeToLive>")
        .await;
    http.create_subscription("events", "high", "<LockDuration>PT2M</LockDuration>")
        .await;
    http.create_subscription("events", "big", "").await;
    for sub in ["high", "big"] {
        let r = http
            .delete_path(&format!("events/Subscriptions/{sub}/Rules/$Default"))
            .await;
        assert_eq!(r.status, 200, "delete $Default: {}", r.body);
    }
    http.create_rule(
        "events",
        "high",
        "corr",
        &correlation_filter(&[("Label", "high")], &[("region", "string", "eu")]),
    )
    .await;
    http.create_rule("events", "big", "sql", &sql_filter("amount &gt; 10"))
        .await;

    // Dead-lettered: delivered once, abandoned at MaxDeliveryCount 1.
    http.send(
        "orders",
        "to the dead-letter queue",
        json!({"MessageId": "dlq-1", "Label": "doomed"}),
        &[("customer", "\"carol\"")],
    )
    .await;
    let m = http.peek_lock("orders").await.expect("dlq-1");
    let loc = m.header("Location").expect("Location").to_string();
    let r = http.at_location(Method::PUT, &loc).await;
    assert_eq!(r.status, 200, "unlock: {}", r.body);

    // Locked (peek-locked, not completed).
    http.send(
        "orders",
        "held under a lock",
        json!({"MessageId": "locked-1", "CorrelationId": "c-42"}),
        &[("attempt", "3")],
    )
    .await;
    let m = http.peek_lock("orders").await.expect("locked-1");
    assert_eq!(m.bp()["MessageId"], "locked-1");
    let locked_loc = m.header("Location").expect("Location").to_string();

    // Active with custom properties of several types.
    http.send(
        "orders",
        "{\"order\": 1}",
        json!({"MessageId": "active-1", "Label": "new", "ContentType": "application/json",
               "ReplyTo": "replies", "TimeToLive": 3600}),
        &[("customer", "\"alice\""), ("priority", "5"), ("vip", "true")],
    )
    .await;
    // Scheduled in the future.
    http.send(
        "orders",
        "later",
        json!({"MessageId": "scheduled-1", "ScheduledEnqueueTimeUtc": in_an_hour()}),
        &[],
    )
    .await;
    // Active with DeliveryCount 2 (two abandons in a queue with MaxDeliveryCount 5).
    http.send("retries", "retry me", json!({"MessageId": "retry-1"}), &[])
        .await;
    for _ in 0..2 {
        let m = http.peek_lock("retries").await.expect("retry-1");
        let loc = m.header("Location").expect("Location").to_string();
        assert_eq!(http.at_location(Method::PUT, &loc).await.status, 200);
    }
    // Topic messages routed by the correlation and SQL rules.
    http.send(
        "events",
        "high and big",
        json!({"MessageId": "ev-1", "Label": "high"}),
        &[("region", "\"eu\""), ("amount", "99")],
    )
    .await;
    http.send(
        "events",
        "small",
        json!({"MessageId": "ev-2", "Label": "high"}),
        &[("region", "\"eu\""), ("amount", "1")],
    )
    .await;
    http.send(
        "events",
        "nowhere",
        json!({"MessageId": "ev-3", "Label": "low"}),
        &[("region", "\"us\""), ("amount", "5")],
    )
    .await;
    locked_loc
        .strip_prefix(&http.base_url)
        .expect("Location under the base URL")
        .to_string()
}

/// Checks the populated state is really there (beyond the export comparison).
fn check_populated(doc: &serde_json::Value) {
    let msgs = messages(doc);
    let by_id: BTreeMap<String, &serde_json::Value> = msgs
        .iter()
        .map(|m| {
            let name = m["entity"]["name"].as_str().unwrap_or("").to_string();
            let id = m["message"]["content"]["message_id"]
                .as_str()
                .unwrap_or("")
                .to_string();
            (format!("{name}/{id}"), m)
        })
        .collect();
    let get = |k: &str| {
        by_id
            .get(k)
            .unwrap_or_else(|| panic!("no message {k} in export: {doc:#}"))
    };
    let dlq = get("orders/dlq-1");
    assert_eq!(dlq["deadLetter"], true);
    assert_eq!(dlq["message"]["delivery_count"], 1);
    let locked = get("orders/locked-1");
    assert!(locked["message"]["lock"].is_object(), "{locked}");
    let active = get("orders/active-1");
    assert_eq!(active["message"]["state"], "Active");
    assert!(active["message"]["content"]["properties"]["customer"]
        .to_string()
        .contains("alice"));
    assert_eq!(get("orders/scheduled-1")["message"]["state"], "Scheduled");
    assert_eq!(get("retries/retry-1")["message"]["delivery_count"], 2);
    assert_eq!(get("high/ev-1")["message"]["sequence_number"], 1);
    assert_eq!(get("high/ev-2")["message"]["sequence_number"], 2);
    assert_eq!(get("big/ev-1")["message"]["sequence_number"], 1);
    assert!(!by_id.contains_key("big/ev-2"), "the SQL rule routes ev-2 away");
    assert!(!by_id.keys().any(|k| k.ends_with("/ev-3")), "no rule matches ev-3");
    assert_eq!(doc["entities"].as_array().map(Vec::len), Some(5));
}

async fn state_survives_restarts(kind: Kind) {
    let store = Store::new(kind);
    let server = Server::start(&store.env());
    let locked_path = populate(&server.http).await;
    let before = server.http.export().await;
    check_populated(&before);

    // Graceful stop: final snapshot and compaction are logged, exit 0.
    let logs = server.terminate();
    assert!(logs.contains("final snapshot written"), "{}", logs.text());
    assert!(logs.contains("storage compacted"), "{}", logs.text());
    assert!(logs.contains("shutdown complete"), "{}", logs.text());

    let server = Server::start(&store.env());
    assert!(
        server.logs.contains("Replayed 0 operations from WAL"),
        "a graceful stop leaves nothing to replay: {}",
        server.logs.text()
    );
    let after = server.http.export().await;
    assert_same_state(&before, &after, "after SIGTERM and restart");

    // The lock survived: its token still completes the message.
    let r = server
        .http
        .request(Method::DELETE, &locked_path, &[], "")
        .await;
    assert_eq!(r.status, 200, "complete with the pre-restart lock: {}", r.body);
    // More work, then a crash: the journal carries it.
    server
        .http
        .send("orders", "after restart", json!({"MessageId": "active-2"}), &[])
        .await;
    let before_kill = server.http.export().await;
    let logs = server.kill();
    assert!(!logs.contains("final snapshot written"));

    let server = Server::start(&store.env());
    let line = server
        .logs
        .wait_for(Duration::ZERO, |l| l.contains("Replayed "))
        .expect("replay line");
    let n: u64 = line
        .split("Replayed ")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("count in {line:?}"));
    assert!(n >= 2, "complete + send replayed, got {line:?}");
    let after_kill = server.http.export().await;
    assert_same_state(&before_kill, &after_kill, "after SIGKILL and replay");
    // Sequence numbers continue past everything the queue ever assigned.
    server
        .http
        .send("orders", "next", json!({"MessageId": "active-3"}), &[])
        .await;
    let doc = server.http.export().await;
    let seqs: Vec<u64> = messages(&doc)
        .iter()
        .filter(|m| m["entity"]["name"] == "orders" && m["deadLetter"] == false)
        .map(|m| {
            (
                m["message"]["content"]["message_id"].clone(),
                m["message"]["sequence_number"].as_u64().unwrap(),
            )
        })
        .filter(|(id, _)| id == "active-3")
        .map(|(_, s)| s)
        .collect();
    assert_eq!(seqs, vec![6], "orders assigned 1..=5 before");
    server.terminate();
}

#[tokio::test]
async fn sqlite_state_survives_sigterm_and_sigkill() {
    state_survives_restarts(Kind::Sqlite).await;
}

#[tokio::test]
async fn json_state_survives_sigterm_and_sigkill() {
    state_survives_restarts(Kind::Json).await;
}
