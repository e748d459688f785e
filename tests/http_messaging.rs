//! The REST data plane over HTTP: send, peek-lock, receive-and-delete, unlock, complete, renew,
//! lock expiry, dead-lettering, TTL, scheduling, duplicate detection, properties, batches,
//! fan-out, forwarding, entity status, long polling and the error cases.
//!
//! Time moves only through the manual clock ([`TestServer::advance`]); every receive applies
//! due work (lock expiry, TTL, scheduled activation) at the clock's now.

mod common;

use common::*;
use reqwest::{Method, StatusCode};
use serde_json::json;
use std::time::{Duration, Instant};

const SECOND: i64 = 1000;

/// A peek-lock receive issued from a spawned task (for long-poll tests).
fn spawn_peek_lock(
    s: &TestServer,
    path: &str,
    timeout: u64,
) -> tokio::task::JoinHandle<(StatusCode, String, Instant)> {
    let client = s.client.clone();
    let url = s.url(&format!("{path}/messages/head?timeout={timeout}"));
    tokio::spawn(async move {
        let resp = client.post(url).send().await.expect("receive answered");
        let status = resp.status();
        let body = resp.text().await.expect("body");
        (status, body, Instant::now())
    })
}

// ----- basic send and receive ----------------------------------------------------------------

#[tokio::test]
async fn send_peek_lock_complete() {
    let s = TestServer::start().await;
    s.create_queue("q", "<LockDuration>PT30S</LockDuration>")
        .await;
    let sent_at = s.now();
    s.send(
        "q",
        "hello",
        Some(json!({
            "MessageId": "m-1",
            "CorrelationId": "c-1",
            "Label": "greeting",
            "To": "someone",
            "ReplyTo": "back",
            "ReplyToSessionId": "rs",
            "PartitionKey": "pk",
            "TimeToLive": 3600
        })),
        &[("Content-Type", "text/plain")],
    )
    .await;

    let m = s.lock_one("q").await;
    assert_eq!(m.status, 201);
    assert_eq!(m.body, "hello");
    assert_eq!(m.header("content-type"), Some("text/plain"));
    let bp = &m.bp;
    assert_eq!(bp["MessageId"], "m-1");
    assert_eq!(bp["CorrelationId"], "c-1");
    assert_eq!(bp["Label"], "greeting");
    assert_eq!(bp["To"], "someone");
    assert_eq!(bp["ReplyTo"], "back");
    assert_eq!(bp["ReplyToSessionId"], "rs");
    assert_eq!(bp["PartitionKey"], "pk");
    assert_eq!(bp["DeliveryCount"], 1);
    assert_eq!(bp["SequenceNumber"], 1);
    assert_eq!(bp["EnqueuedSequenceNumber"], 1);
    assert_eq!(bp["State"], "Active");
    assert_eq!(bp["TimeToLive"].as_f64(), Some(3600.0));
    let enq = rfc1123_ms(bp["EnqueuedTimeUtc"].as_str().expect("EnqueuedTimeUtc"));
    assert!(
        (enq - sent_at).abs() < SECOND,
        "EnqueuedTimeUtc {enq} vs {sent_at}"
    );
    let until = rfc1123_ms(bp["LockedUntilUtc"].as_str().expect("LockedUntilUtc"));
    assert!(
        (until - (s.now() + 30 * SECOND)).abs() <= SECOND,
        "LockedUntilUtc {until} should be now + LockDuration"
    );
    let token = m.lock_token().to_string();
    assert!(uuid::Uuid::parse_str(&token).is_ok(), "{token}");
    assert_eq!(
        m.location(),
        format!("{}/q/messages/1/{token}", s.base_url),
        "Location names the message and its lock"
    );

    // Locked: not visible to another receiver.
    s.assert_empty("q").await;
    assert_eq!(s.complete(m.location()).await, 200);
    s.assert_empty("q").await;
    // Completing twice: the lock is gone.
    assert_eq!(s.complete(m.location()).await, 404);
    assert_eq!(s.counts("q").await.message_count, 0);
    s.stop().await;
}

#[tokio::test]
async fn receive_and_delete() {
    let s = TestServer::start().await;
    s.create_queue("q", "").await;
    s.send_id("q", "one", "a").await;
    s.send_id("q", "two", "b").await;
    let m = s.take_one("q").await;
    assert_eq!(m.status, 200);
    assert_eq!(m.body, "one");
    assert_eq!(m.message_id(), "a");
    assert_eq!(m.delivery_count(), 1);
    assert!(m.location.is_none(), "no Location for receive-and-delete");
    assert!(m.bp.get("LockToken").is_none(), "{}", m.bp);
    assert_eq!(s.take_one("q").await.body, "two");
    assert!(s.receive_delete("q", 0).await.is_none());
    assert_eq!(s.counts("q").await.message_count, 0);
    s.stop().await;
}

#[tokio::test]
async fn sequence_numbers_increase_per_entity() {
    let s = TestServer::start().await;
    s.create_queue("q1", "").await;
    s.create_queue("q2", "").await;
    for i in 0..3 {
        s.send_text("q1", &format!("a{i}")).await;
    }
    for i in 0..2 {
        s.send_text("q2", &format!("b{i}")).await;
    }
    let mut seqs = Vec::new();
    for _ in 0..3 {
        seqs.push(s.take_one("q1").await.sequence_number());
    }
    assert_eq!(seqs, vec![1, 2, 3]);
    assert_eq!(s.take_one("q2").await.sequence_number(), 1);
    assert_eq!(s.take_one("q2").await.sequence_number(), 2);
    // Numbers are not reused after the queue empties.
    s.send_text("q1", "later").await;
    assert_eq!(s.take_one("q1").await.sequence_number(), 4);

    // Subscription copies keep the topic's number.
    s.create_topic("t", "").await;
    s.create_subscription("t", "a", "").await;
    s.send_text("t", "x").await;
    s.create_subscription("t", "b", "").await;
    s.send_text("t", "y").await;
    assert_eq!(s.take_one("t/Subscriptions/a").await.sequence_number(), 1);
    assert_eq!(s.take_one("t/Subscriptions/a").await.sequence_number(), 2);
    assert_eq!(s.take_one("t/Subscriptions/b").await.sequence_number(), 2);
    s.stop().await;
}

#[tokio::test]
async fn messages_are_received_in_order() {
    let s = TestServer::start().await;
    s.create_queue("q", "").await;
    for i in 0..10 {
        s.send_text("q", &format!("m{i}")).await;
    }
    for i in 0..10 {
        assert_eq!(s.take_one("q").await.body, format!("m{i}"));
    }
    s.stop().await;
}

// ----- unlock, renew, lock expiry ------------------------------------------------------------

#[tokio::test]
async fn unlock_redelivers_with_delivery_count_plus_one() {
    let s = TestServer::start().await;
    s.create_queue("q", "").await;
    s.send_id("q", "body", "m").await;
    let first = s.lock_one("q").await;
    assert_eq!(first.delivery_count(), 1);
    assert_eq!(s.unlock(first.location()).await, 200);
    let second = s.lock_one("q").await;
    assert_eq!(second.delivery_count(), 2);
    assert_eq!(second.sequence_number(), first.sequence_number());
    assert_eq!(second.message_id(), "m");
    assert_ne!(
        second.lock_token(),
        first.lock_token(),
        "a new lock each time"
    );
    // The old lock no longer settles.
    assert_eq!(s.complete(first.location()).await, 404);
    assert_eq!(s.unlock(first.location()).await, 404);
    assert_eq!(s.complete(second.location()).await, 200);
    s.assert_empty("q").await;
    s.stop().await;
}

#[tokio::test]
async fn renew_extends_the_lock() {
    let s = TestServer::start().await;
    s.create_queue("q", "<LockDuration>PT30S</LockDuration>")
        .await;
    s.send_text("q", "x").await;
    let m = s.lock_one("q").await;
    let until = rfc1123_ms(m.bp["LockedUntilUtc"].as_str().unwrap());

    s.advance(20 * SECOND);
    let r = s.renew(m.location()).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let bp = broker_properties(&r.headers);
    let renewed = rfc1123_ms(bp["LockedUntilUtc"].as_str().expect("LockedUntilUtc"));
    assert!(
        renewed >= until + 19 * SECOND,
        "renew moves LockedUntilUtc from {until} to now + LockDuration, got {renewed}"
    );
    assert!((renewed - (s.now() + 30 * SECOND)).abs() <= SECOND);

    // Past the original lock time, the renewed lock still holds.
    s.advance(20 * SECOND);
    s.assert_empty("q").await;
    assert_eq!(s.complete(m.location()).await, 200);
    s.assert_empty("q").await;
    s.stop().await;
}

#[tokio::test]
async fn lock_expiry_redelivers_and_old_token_is_lost() {
    let s = TestServer::start().await;
    s.create_queue("q", "<LockDuration>PT30S</LockDuration>")
        .await;
    s.send_id("q", "x", "m").await;
    let first = s.lock_one("q").await;
    s.advance(29 * SECOND);
    s.assert_empty("q").await;
    s.advance(2 * SECOND);
    let second = s.lock_one("q").await;
    assert_eq!(second.message_id(), "m");
    assert_eq!(second.delivery_count(), 2);
    assert_eq!(s.complete(first.location()).await, 404);
    assert_eq!(s.renew(first.location()).await.status, 404);
    assert_eq!(s.complete(second.location()).await, 200);

    // An expired lock cannot be renewed either, even before anyone else takes the message.
    s.send_id("q", "y", "n").await;
    let m = s.lock_one("q").await;
    s.advance(31 * SECOND);
    assert_eq!(s.renew(m.location()).await.status, 404);
    assert_eq!(s.complete(m.location()).await, 404);
    assert_eq!(s.lock_one("q").await.delivery_count(), 2);
    s.stop().await;
}

// ----- dead-lettering ------------------------------------------------------------------------

#[tokio::test]
async fn max_delivery_count_exceeded_by_lock_expiry_dead_letters() {
    let s = TestServer::start().await;
    s.create_queue(
        "q",
        "<LockDuration>PT10S</LockDuration><MaxDeliveryCount>2</MaxDeliveryCount>",
    )
    .await;
    s.send(
        "q",
        "poison",
        Some(json!({"MessageId": "p", "Label": "bad"})),
        &[("tag", "\"t\"")],
    )
    .await;
    assert_eq!(s.lock_one("q").await.delivery_count(), 1);
    s.advance(11 * SECOND);
    assert_eq!(s.lock_one("q").await.delivery_count(), 2);
    s.advance(11 * SECOND);
    s.assert_empty("q").await;
    let c = s.counts("q").await;
    assert_eq!((c.active, c.dead_letter), (0, 1), "{c:?}");

    let d = s.lock_one("q/$DeadLetterQueue").await;
    assert_eq!(d.body, "poison");
    assert_eq!(d.message_id(), "p");
    assert_eq!(d.bp["Label"], "bad");
    assert_eq!(
        d.header("DeadLetterReason"),
        Some("\"MaxDeliveryCountExceeded\"")
    );
    assert!(d.header("DeadLetterErrorDescription").is_some());
    assert_eq!(d.header("tag"), Some("\"t\""), "user properties survive");
    assert!(
        d.location().contains("/q/$DeadLetterQueue/messages/"),
        "{}",
        d.location()
    );
    assert_eq!(s.complete(d.location()).await, 200);
    assert!(s.peek_lock("q/$DeadLetterQueue", 0).await.is_none());
    s.stop().await;
}

#[tokio::test]
async fn max_delivery_count_exceeded_by_abandon_dead_letters() {
    let s = TestServer::start().await;
    s.create_queue("q", "<MaxDeliveryCount>3</MaxDeliveryCount>")
        .await;
    s.send_id("q", "x", "m").await;
    for expected in 1..=3 {
        let m = s.lock_one("q").await;
        assert_eq!(m.delivery_count(), expected);
        assert_eq!(s.unlock(m.location()).await, 200);
    }
    s.assert_empty("q").await;
    // The lower-case path word works too, as in Azure.
    let d = s.take_one("q/$deadletterqueue").await;
    assert_eq!(d.message_id(), "m");
    assert_eq!(
        d.header("DeadLetterReason"),
        Some("\"MaxDeliveryCountExceeded\"")
    );
    s.stop().await;
}

#[tokio::test]
async fn subscription_dead_letter_queue() {
    let s = TestServer::start().await;
    s.create_topic("t", "").await;
    s.create_subscription("t", "s", "<MaxDeliveryCount>1</MaxDeliveryCount>")
        .await;
    s.send_id("t", "x", "m").await;
    let m = s.lock_one("t/Subscriptions/s").await;
    assert_eq!(s.unlock(m.location()).await, 200);
    s.assert_empty("t/Subscriptions/s").await;
    assert_eq!(s.counts("t/Subscriptions/s").await.dead_letter, 1);
    let d = s.lock_one("t/Subscriptions/s/$DeadLetterQueue").await;
    assert_eq!(d.message_id(), "m");
    assert_eq!(
        d.header("DeadLetterReason"),
        Some("\"MaxDeliveryCountExceeded\"")
    );
    // Abandoning in the dead-letter queue, past MaxDeliveryCount, keeps it there.
    assert_eq!(s.unlock(d.location()).await, 200);
    let d = s.lock_one("t/subscriptions/s/$deadletterqueue").await;
    assert_eq!(d.message_id(), "m");
    assert_eq!(s.unlock(d.location()).await, 200);
    assert_eq!(s.counts("t/Subscriptions/s").await.dead_letter, 1);
    let d = s.lock_one("t/Subscriptions/s/$DeadLetterQueue").await;
    assert_eq!(s.complete(d.location()).await, 200);
    assert_eq!(s.counts("t/Subscriptions/s").await.message_count, 0);
    s.stop().await;
}

// ----- TTL -----------------------------------------------------------------------------------

#[tokio::test]
async fn expired_messages_are_dropped_without_dead_lettering_on_expiration() {
    let s = TestServer::start().await;
    s.create_queue("q", "").await;
    s.send(
        "q",
        "short",
        Some(json!({"MessageId": "s", "TimeToLive": 10})),
        &[],
    )
    .await;
    s.send_id("q", "long", "l").await;
    s.advance(9 * SECOND);
    assert_eq!(s.counts("q").await.active, 2);
    s.advance(2 * SECOND);
    let m = s.take_one("q").await;
    assert_eq!(m.message_id(), "l", "the expired message is gone");
    s.assert_empty("q").await;
    assert!(s.peek_lock("q/$DeadLetterQueue", 0).await.is_none());
    assert_eq!(s.counts("q").await.message_count, 0);
    s.stop().await;
}

#[tokio::test]
async fn expired_messages_are_dead_lettered_with_dead_lettering_on_expiration() {
    let s = TestServer::start().await;
    s.create_queue(
        "q",
        "<DeadLetteringOnMessageExpiration>true</DeadLetteringOnMessageExpiration>",
    )
    .await;
    s.send(
        "q",
        "short",
        Some(json!({"MessageId": "s", "TimeToLive": 10})),
        &[],
    )
    .await;
    s.advance(11 * SECOND);
    s.assert_empty("q").await;
    let d = s.take_one("q/$DeadLetterQueue").await;
    assert_eq!(d.message_id(), "s");
    assert_eq!(d.body, "short");
    assert_eq!(
        d.header("DeadLetterReason"),
        Some("\"TTLExpiredException\"")
    );
    // Dead-lettered messages do not expire.
    s.send(
        "q",
        "again",
        Some(json!({"MessageId": "a", "TimeToLive": 5})),
        &[],
    )
    .await;
    s.advance(6 * SECOND);
    s.assert_empty("q").await;
    s.advance(3_600 * SECOND);
    assert_eq!(s.take_one("q/$DeadLetterQueue").await.message_id(), "a");
    s.stop().await;
}

#[tokio::test]
async fn ttl_is_the_minimum_of_message_and_entity_default() {
    let s = TestServer::start().await;
    s.create_queue(
        "q",
        "<DefaultMessageTimeToLive>PT1M</DefaultMessageTimeToLive>",
    )
    .await;
    // Longer than the default: capped to 60 s.
    s.send(
        "q",
        "capped",
        Some(json!({"MessageId": "c", "TimeToLive": 3600})),
        &[],
    )
    .await;
    // Shorter than the default: kept.
    s.send(
        "q",
        "short",
        Some(json!({"MessageId": "s", "TimeToLive": 20})),
        &[],
    )
    .await;
    // None: the default.
    s.send_id("q", "default", "d").await;

    let m = s.lock_one("q").await;
    assert_eq!(m.bp["TimeToLive"].as_f64(), Some(60.0), "{}", m.bp);
    assert_eq!(s.unlock(m.location()).await, 200);

    s.advance(21 * SECOND);
    let mut ids = Vec::new();
    while let Some(m) = s.receive_delete("q", 0).await {
        ids.push(m.message_id().to_string());
        if m.message_id() == "d" {
            assert_eq!(m.bp["TimeToLive"].as_f64(), Some(60.0));
        }
    }
    assert_eq!(ids, vec!["c", "d"], "the 20 s message expired");

    s.send(
        "q",
        "capped",
        Some(json!({"MessageId": "c2", "TimeToLive": 3600})),
        &[],
    )
    .await;
    s.advance(61 * SECOND);
    s.assert_empty("q").await;

    // Subscriptions: min(message, topic default, subscription default).
    s.create_topic(
        "t",
        "<DefaultMessageTimeToLive>PT10M</DefaultMessageTimeToLive>",
    )
    .await;
    s.create_subscription(
        "t",
        "s",
        "<DefaultMessageTimeToLive>PT30S</DefaultMessageTimeToLive>",
    )
    .await;
    s.create_subscription("t", "long", "").await;
    s.send(
        "t",
        "x",
        Some(json!({"MessageId": "x", "TimeToLive": 120})),
        &[],
    )
    .await;
    let m = s.lock_one("t/Subscriptions/s").await;
    assert_eq!(m.bp["TimeToLive"].as_f64(), Some(30.0));
    assert_eq!(s.unlock(m.location()).await, 200);
    let m = s.lock_one("t/Subscriptions/long").await;
    assert_eq!(m.bp["TimeToLive"].as_f64(), Some(120.0));
    assert_eq!(s.unlock(m.location()).await, 200);
    s.advance(31 * SECOND);
    s.assert_empty("t/Subscriptions/s").await;
    assert_eq!(s.take_one("t/Subscriptions/long").await.message_id(), "x");
    s.stop().await;
}

#[tokio::test]
async fn locked_messages_do_not_expire_until_released() {
    let s = TestServer::start().await;
    s.create_queue("q", "<LockDuration>PT1M</LockDuration>")
        .await;
    s.send(
        "q",
        "x",
        Some(json!({"MessageId": "m", "TimeToLive": 10})),
        &[],
    )
    .await;
    let m = s.lock_one("q").await;
    s.advance(30 * SECOND);
    // Past its TTL but still locked: it can be completed.
    assert_eq!(s.complete(m.location()).await, 200);
    s.stop().await;
}

// ----- scheduled messages --------------------------------------------------------------------

#[tokio::test]
async fn scheduled_message_becomes_visible_at_its_time() {
    let s = TestServer::start().await;
    s.create_queue("q", "").await;
    let at = s.now() + 60 * SECOND;
    s.send(
        "q",
        "later",
        Some(json!({"MessageId": "sch", "ScheduledEnqueueTimeUtc": rfc1123(at)})),
        &[],
    )
    .await;
    s.send_id("q", "now", "n").await;

    assert_eq!(s.take_one("q").await.message_id(), "n");
    s.assert_empty("q").await;
    let c = s.counts("q").await;
    assert_eq!((c.scheduled, c.active, c.message_count), (1, 0, 1), "{c:?}");

    s.advance(50 * SECOND);
    s.assert_empty("q").await;
    s.advance(11 * SECOND);
    let m = s.lock_one("q").await;
    assert_eq!(m.message_id(), "sch");
    assert_eq!(m.body, "later");
    assert_eq!(m.delivery_count(), 1);
    let sched = rfc1123_ms(
        m.bp["ScheduledEnqueueTimeUtc"]
            .as_str()
            .expect("ScheduledEnqueueTimeUtc"),
    );
    assert_eq!(sched / 1000, at / 1000);
    let enq = rfc1123_ms(m.bp["EnqueuedTimeUtc"].as_str().unwrap());
    assert_eq!(enq / 1000, at / 1000, "enqueued at its scheduled time");
    let c = s.counts("q").await;
    assert_eq!((c.scheduled, c.active), (0, 1), "{c:?}");

    // A schedule in the past is an immediate send.
    s.send(
        "q",
        "past",
        Some(json!({"MessageId": "p", "ScheduledEnqueueTimeUtc": rfc1123(s.now() - 3_600_000)})),
        &[],
    )
    .await;
    assert_eq!(s.complete(m.location()).await, 200);
    assert_eq!(s.take_one("q").await.message_id(), "p");
    s.stop().await;
}

#[tokio::test]
async fn scheduled_message_to_topic_reaches_subscriptions_at_its_time() {
    let s = TestServer::start().await;
    s.create_topic("t", "").await;
    s.create_subscription("t", "s", "").await;
    let at = s.now() + 120 * SECOND;
    s.send(
        "t",
        "x",
        Some(json!({"ScheduledEnqueueTimeUtc": rfc1123(at)})),
        &[],
    )
    .await;
    s.assert_empty("t/Subscriptions/s").await;
    assert_eq!(s.counts("t/Subscriptions/s").await.scheduled, 1);
    s.advance(121 * SECOND);
    assert_eq!(s.take_one("t/Subscriptions/s").await.body, "x");
    s.stop().await;
}

// ----- duplicate detection -------------------------------------------------------------------

#[tokio::test]
async fn duplicate_detection_within_the_window() {
    let s = TestServer::start().await;
    s.create_queue(
        "q",
        "<RequiresDuplicateDetection>true</RequiresDuplicateDetection>\
         <DuplicateDetectionHistoryTimeWindow>PT1M</DuplicateDetectionHistoryTimeWindow>",
    )
    .await;
    s.send_id("q", "first", "dup").await;
    // A duplicate is acknowledged (201) but dropped.
    s.send_id("q", "second", "dup").await;
    s.send_id("q", "other", "other").await;
    assert_eq!(s.counts("q").await.active, 2);
    assert_eq!(s.take_one("q").await.body, "first");
    assert_eq!(s.take_one("q").await.body, "other");
    s.assert_empty("q").await;

    // Still within the window after the original was consumed.
    s.advance(30 * SECOND);
    s.send_id("q", "third", "dup").await;
    s.assert_empty("q").await;

    // After the window has passed, the id is accepted again.
    s.advance(31 * SECOND);
    s.send_id("q", "fourth", "dup").await;
    assert_eq!(s.take_one("q").await.body, "fourth");

    // Without duplicate detection, the same id is two messages.
    s.create_queue("plain", "").await;
    s.send_id("plain", "a", "same").await;
    s.send_id("plain", "b", "same").await;
    assert_eq!(s.counts("plain").await.active, 2);
    s.stop().await;
}

#[tokio::test]
async fn duplicate_detection_on_topics() {
    let s = TestServer::start().await;
    s.create_topic(
        "t",
        "<RequiresDuplicateDetection>true</RequiresDuplicateDetection>\
         <DuplicateDetectionHistoryTimeWindow>PT30S</DuplicateDetectionHistoryTimeWindow>",
    )
    .await;
    s.create_subscription("t", "s", "").await;
    s.send_id("t", "a", "x").await;
    s.send_id("t", "b", "x").await;
    assert_eq!(s.take_one("t/Subscriptions/s").await.body, "a");
    s.assert_empty("t/Subscriptions/s").await;
    s.advance(31 * SECOND);
    s.send_id("t", "c", "x").await;
    assert_eq!(s.take_one("t/Subscriptions/s").await.body, "c");
    s.stop().await;
}

// ----- properties and batches ----------------------------------------------------------------

#[tokio::test]
async fn custom_properties_round_trip() {
    let s = TestServer::start().await;
    s.create_queue("q", "").await;
    s.send(
        "q",
        "x",
        None,
        &[
            ("color", "\"red\""),
            ("quoted-number", "\"12\""),
            ("count", "5"),
            ("ratio", "1.5"),
            ("flag", "true"),
            ("off", "false"),
            ("bare", "hello"),
        ],
    )
    .await;
    let m = s.take_one("q").await;
    assert_eq!(m.header("color"), Some("\"red\""));
    assert_eq!(
        m.header("quoted-number"),
        Some("\"12\""),
        "a quoted number stays a string"
    );
    assert_eq!(m.header("count"), Some("5"));
    assert_eq!(m.header("ratio"), Some("1.5"));
    assert_eq!(m.header("flag"), Some("true"));
    assert_eq!(m.header("off"), Some("false"));
    assert_eq!(
        m.header("bare"),
        Some("\"hello\""),
        "a bare word is a string"
    );
    // Standard headers are not properties.
    assert!(m.header("user-agent").is_none());
    assert!(m.header("host").is_none());
    // BrokerProperties is not echoed as a user property and standard request headers
    // are not stored.
    assert!(m.bp.get("color").is_none());

    // Any Authorization is accepted and is not a message property.
    s.send(
        "q",
        "sas",
        None,
        &[(
            "Authorization",
            "SharedAccessSignature sr=x&sig=y&se=1&skn=RootManageSharedAccessKey",
        )],
    )
    .await;
    s.send("q", "bearer", None, &[("Authorization", "Bearer abc")])
        .await;
    for body in ["sas", "bearer"] {
        let m = s.take_one("q").await;
        assert_eq!(m.body, body);
        assert!(m.header("authorization").is_none());
    }
    s.stop().await;
}

#[tokio::test]
async fn typed_properties_drive_correlation_filters() {
    let s = TestServer::start().await;
    s.create_topic("t", "").await;
    // An int property matches a bare number, not the quoted string.
    s.create_filtered_subscription(
        "t",
        "num",
        &correlation_filter(&[], &[("priority", "int", "5")]),
    )
    .await;
    s.create_filtered_subscription(
        "t",
        "str",
        &correlation_filter(&[], &[("priority", "string", "5")]),
    )
    .await;
    s.create_filtered_subscription(
        "t",
        "bool",
        &correlation_filter(&[], &[("urgent", "boolean", "true")]),
    )
    .await;
    s.send("t", "bare", None, &[("priority", "5")]).await;
    s.send("t", "quoted", None, &[("priority", "\"5\"")]).await;
    s.send("t", "urgent", None, &[("urgent", "true")]).await;
    s.send("t", "not-urgent", None, &[("urgent", "\"true\"")])
        .await;
    assert_eq!(s.take_one("t/Subscriptions/num").await.body, "bare");
    s.assert_empty("t/Subscriptions/num").await;
    assert_eq!(s.take_one("t/Subscriptions/str").await.body, "quoted");
    s.assert_empty("t/Subscriptions/str").await;
    assert_eq!(s.take_one("t/Subscriptions/bool").await.body, "urgent");
    s.assert_empty("t/Subscriptions/bool").await;
    s.stop().await;
}

#[tokio::test]
async fn batch_send() {
    let s = TestServer::start().await;
    s.create_queue("q", "").await;
    let batch = json!([
        {"Body": "first", "BrokerProperties": {"MessageId": "b1", "Label": "L1", "CorrelationId": "c"},
         "UserProperties": {"n": 1, "s": "x", "f": true}},
        {"Body": "second", "BrokerProperties": {"MessageId": "b2"}},
        {"Body": "third"}
    ]);
    let r = s.send_batch("q", &batch).await;
    assert_eq!(r.status, 201, "{}", r.body);
    let a = s.take_one("q").await;
    assert_eq!(a.body, "first");
    assert_eq!(a.message_id(), "b1");
    assert_eq!(a.bp["Label"], "L1");
    assert_eq!(a.bp["CorrelationId"], "c");
    assert_eq!(a.header("n"), Some("1"));
    assert_eq!(a.header("s"), Some("\"x\""));
    assert_eq!(a.header("f"), Some("true"));
    let b = s.take_one("q").await;
    assert_eq!((b.body.as_str(), b.message_id()), ("second", "b2"));
    assert_eq!(b.sequence_number(), a.sequence_number() + 1);
    let c = s.take_one("q").await;
    assert_eq!(c.body, "third");
    assert!(!c.message_id().is_empty(), "a MessageId is assigned");
    s.assert_empty("q").await;

    // A batch to a topic fans out.
    s.create_topic("t", "").await;
    s.create_subscription("t", "s", "").await;
    let r = s
        .send_batch("t", &json!([{"Body": "1"}, {"Body": "2"}]))
        .await;
    assert_eq!(r.status, 201);
    assert_eq!(s.take_one("t/Subscriptions/s").await.body, "1");
    assert_eq!(s.take_one("t/Subscriptions/s").await.body, "2");

    // Malformed batches: 400 and nothing enqueued.
    for bad in [
        "not json".to_string(),
        "{\"Body\": \"x\"}".to_string(),
        json!([{"Body": "x", "BrokerProperties": {"TimeToLive": "soon"}}]).to_string(),
        json!([{"NoBody": 1}]).to_string(),
    ] {
        let r = s
            .request(
                Method::POST,
                "q/messages",
                &[("Content-Type", BATCH_CT)],
                bad.clone(),
            )
            .await;
        assert_eq!(r.status, 400, "batch {bad}: {}", r.body);
    }
    s.assert_empty("q").await;
    s.stop().await;
}

// ----- topics: fan-out with filters ----------------------------------------------------------

#[tokio::test]
async fn topic_fan_out_with_correlation_filters() {
    let s = TestServer::start().await;
    s.create_topic("orders", "").await;
    s.create_subscription("orders", "all", "").await;
    s.create_filtered_subscription(
        "orders",
        "red",
        &correlation_filter(&[("Label", "red")], &[]),
    )
    .await;
    s.create_filtered_subscription(
        "orders",
        "corr",
        &correlation_filter(&[("CorrelationId", "c-42")], &[]),
    )
    .await;
    s.create_filtered_subscription(
        "orders",
        "eu",
        &correlation_filter(&[], &[("region", "string", "eu")]),
    )
    .await;
    s.create_filtered_subscription(
        "orders",
        "red-eu",
        &correlation_filter(&[("Label", "red")], &[("region", "string", "eu")]),
    )
    .await;
    // Several rules on one subscription are OR-ed, one copy per message.
    s.create_filtered_subscription(
        "orders",
        "either",
        &correlation_filter(&[("Label", "blue")], &[]),
    )
    .await;
    s.create_rule(
        "orders",
        "either",
        "second",
        &correlation_filter(&[("To", "shop")], &[]),
    )
    .await;
    // A subscription with no rules gets nothing.
    s.create_subscription("orders", "none", "").await;
    s.delete_rule("orders", "none", "$Default").await;

    s.send("orders", "m1", Some(json!({"Label": "red"})), &[])
        .await;
    s.send(
        "orders",
        "m2",
        Some(json!({"Label": "red"})),
        &[("region", "\"eu\"")],
    )
    .await;
    s.send("orders", "m3", Some(json!({"CorrelationId": "c-42"})), &[])
        .await;
    s.send(
        "orders",
        "m4",
        Some(json!({"Label": "blue", "To": "shop"})),
        &[("region", "\"us\"")],
    )
    .await;
    s.send("orders", "m5", Some(json!({"Label": "Red"})), &[])
        .await;

    async fn drain(s: &TestServer, sub: &str) -> Vec<String> {
        let mut out = Vec::new();
        while let Some(m) = s
            .receive_delete(&format!("orders/Subscriptions/{sub}"), 0)
            .await
        {
            out.push(m.body);
        }
        out
    }
    assert_eq!(drain(&s, "all").await, vec!["m1", "m2", "m3", "m4", "m5"]);
    assert_eq!(
        drain(&s, "red").await,
        vec!["m1", "m2"],
        "filters are case-sensitive"
    );
    assert_eq!(drain(&s, "corr").await, vec!["m3"]);
    assert_eq!(drain(&s, "eu").await, vec!["m2"]);
    assert_eq!(drain(&s, "red-eu").await, vec!["m2"]);
    assert_eq!(drain(&s, "either").await, vec!["m4"]);
    assert!(drain(&s, "none").await.is_empty());

    // A topic with no subscriptions accepts messages and drops them.
    s.create_topic("empty", "").await;
    s.send_text("empty", "void").await;
    s.stop().await;
}

#[tokio::test]
async fn topic_cannot_be_received_from_directly() {
    let s = TestServer::start().await;
    s.create_topic("t", "").await;
    let r = s
        .request(Method::POST, "t/messages/head?timeout=0", &[], "")
        .await;
    assert!(r.status.is_client_error(), "{} {}", r.status, r.body);
    s.stop().await;
}

// ----- forwarding ----------------------------------------------------------------------------

#[tokio::test]
async fn forward_to_queue_from_queue() {
    let s = TestServer::start().await;
    s.create_queue("dest", "").await;
    s.create_queue("src", "<ForwardTo>dest</ForwardTo>").await;
    s.send(
        "src",
        "hop",
        Some(json!({"MessageId": "f", "Label": "L"})),
        &[("k", "\"v\"")],
    )
    .await;
    s.assert_empty("src").await;
    let m = s.take_one("dest").await;
    assert_eq!(m.body, "hop");
    assert_eq!(m.message_id(), "f");
    assert_eq!(m.bp["Label"], "L");
    assert_eq!(m.header("k"), Some("\"v\""));
    assert!(
        m.bp.get("DeadLetterSource").is_none(),
        "DeadLetterSource is only for dead-lettered messages: {}",
        m.bp
    );
    assert_eq!(s.counts("src").await.message_count, 0);

    // Chains are followed.
    s.create_queue("c3", "").await;
    s.create_queue("c2", "<ForwardTo>c3</ForwardTo>").await;
    s.create_queue("c1", "<ForwardTo>c2</ForwardTo>").await;
    s.send_text("c1", "chain").await;
    s.assert_empty("c1").await;
    s.assert_empty("c2").await;
    assert_eq!(s.take_one("c3").await.body, "chain");
    s.stop().await;
}

/// README: "ForwardTo and ForwardDeadLetteredMessagesTo move messages on (up to 4 hops)"
/// (`MAX_FORWARD_HOPS`). A chain longer than that stops at the fourth hop, and a forwarding
/// cycle ends after four hops with the message kept once, neither lost nor copied.
#[tokio::test]
async fn forwarding_stops_after_four_hops_and_cycles_end() {
    let s = TestServer::start().await;
    // h0 -> h1 -> h2 -> h3 -> h4 -> h5, created from the end so each target exists.
    s.create_queue("h5", "").await;
    for i in (0..5).rev() {
        s.create_queue(
            &format!("h{i}"),
            &format!("<ForwardTo>h{}</ForwardTo>", i + 1),
        )
        .await;
    }
    s.send("h0", "far", Some(json!({"MessageId": "hops"})), &[])
        .await;
    assert_eq!(
        s.take_one("h4").await.message_id(),
        "hops",
        "rests after 4 hops"
    );
    for i in [0, 1, 2, 3, 5] {
        s.assert_empty(&format!("h{i}")).await;
    }

    // A cycle a -> b -> a: four hops (a, b, a, b, a) and the message rests in a, once.
    s.create_queue("ca", "").await;
    s.create_queue("cb", "<ForwardTo>ca</ForwardTo>").await;
    let r = s
        .put_atom("ca", &queue_xml("<ForwardTo>cb</ForwardTo>"), true)
        .await;
    assert_eq!(r.status, 200, "update ca: {}", r.body);
    s.send("ca", "loop", Some(json!({"MessageId": "cyc"})), &[])
        .await;
    assert_eq!(s.take_one("ca").await.message_id(), "cyc");
    s.assert_empty("ca").await;
    s.assert_empty("cb").await;

    // Through a topic: the queue -> topic -> subscription -> queue hops count too.
    s.create_topic("ft", "").await;
    s.create_queue("fq", "").await;
    s.create_subscription("ft", "fs", "<ForwardTo>fq</ForwardTo>")
        .await;
    let r = s
        .put_atom("fq", &queue_xml("<ForwardTo>ft</ForwardTo>"), true)
        .await;
    assert_eq!(r.status, 200, "update fq: {}", r.body);
    s.send("fq", "round", Some(json!({"MessageId": "tq"})), &[])
        .await;
    // fq -> ft (1) fans out to fs -> fq (2) -> ft (3) -> fs -> fq (4): rests in fq.
    assert_eq!(s.take_one("fq").await.message_id(), "tq");
    s.assert_empty("fq").await;
    s.assert_empty("ft/Subscriptions/fs").await;
    s.stop().await;
}

#[tokio::test]
async fn forward_to_queue_from_subscription() {
    let s = TestServer::start().await;
    s.create_queue("dest", "").await;
    s.create_topic("t", "").await;
    s.create_subscription("t", "fwd", "<ForwardTo>dest</ForwardTo>")
        .await;
    s.create_subscription("t", "keep", "").await;
    s.send("t", "x", Some(json!({"MessageId": "m"})), &[]).await;
    s.assert_empty("t/Subscriptions/fwd").await;
    assert_eq!(s.take_one("dest").await.message_id(), "m");
    assert_eq!(s.take_one("t/Subscriptions/keep").await.message_id(), "m");
    s.assert_empty("dest").await;

    // Queue to topic forwarding fans out.
    s.create_queue("in", "<ForwardTo>t</ForwardTo>").await;
    s.send_text("in", "via-queue").await;
    assert_eq!(s.take_one("t/Subscriptions/keep").await.body, "via-queue");
    assert_eq!(s.take_one("dest").await.body, "via-queue");
    s.stop().await;
}

#[tokio::test]
async fn forward_dead_lettered_messages_to() {
    let s = TestServer::start().await;
    s.create_queue("graveyard", "").await;
    s.create_queue(
        "q",
        "<MaxDeliveryCount>1</MaxDeliveryCount>\
         <DeadLetteringOnMessageExpiration>true</DeadLetteringOnMessageExpiration>\
         <ForwardDeadLetteredMessagesTo>graveyard</ForwardDeadLetteredMessagesTo>",
    )
    .await;
    s.send_id("q", "x", "m").await;
    let m = s.lock_one("q").await;
    assert_eq!(s.unlock(m.location()).await, 200);
    s.assert_empty("q").await;
    assert!(
        s.peek_lock("q/$DeadLetterQueue", 0).await.is_none(),
        "forwarded, not kept"
    );
    let d = s.take_one("graveyard").await;
    assert_eq!(d.message_id(), "m");
    assert_eq!(
        d.header("DeadLetterReason"),
        Some("\"MaxDeliveryCountExceeded\"")
    );
    assert_eq!(d.bp["DeadLetterSource"], "q");

    // Expiry dead-letters are forwarded too.
    s.send(
        "q",
        "y",
        Some(json!({"MessageId": "e", "TimeToLive": 5})),
        &[],
    )
    .await;
    s.advance(6 * SECOND);
    s.assert_empty("q").await;
    let d = s.take_one("graveyard").await;
    assert_eq!(d.message_id(), "e");
    assert_eq!(
        d.header("DeadLetterReason"),
        Some("\"TTLExpiredException\"")
    );

    // Subscriptions forward their dead letters as well.
    s.create_topic("t", "").await;
    s.create_subscription(
        "t",
        "s",
        "<MaxDeliveryCount>1</MaxDeliveryCount><ForwardDeadLetteredMessagesTo>graveyard</ForwardDeadLetteredMessagesTo>",
    )
    .await;
    s.send_id("t", "z", "sub-m").await;
    let m = s.lock_one("t/Subscriptions/s").await;
    assert_eq!(s.unlock(m.location()).await, 200);
    assert!(s
        .peek_lock("t/Subscriptions/s/$DeadLetterQueue", 0)
        .await
        .is_none());
    let d = s.take_one("graveyard").await;
    assert_eq!(d.message_id(), "sub-m");
    assert_eq!(d.bp["DeadLetterSource"], "t/Subscriptions/s");
    s.stop().await;
}

// ----- entity status -------------------------------------------------------------------------

async fn set_queue_status(s: &TestServer, name: &str, status: &str) {
    let r = s
        .put_atom(
            name,
            &queue_xml(&format!("<Status>{status}</Status>")),
            true,
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
}

#[tokio::test]
async fn entity_status_refuses_send_and_receive() {
    let s = TestServer::start().await;
    s.create_queue("q", "").await;
    s.send_text("q", "before").await;

    set_queue_status(&s, "q", "SendDisabled").await;
    let r = s.send_raw("q", "x", None, &[]).await;
    assert_eq!(r.status, 403, "{}", r.body);
    let m = s.lock_one("q").await;
    assert_eq!(m.body, "before");
    assert_eq!(s.unlock(m.location()).await, 200);

    set_queue_status(&s, "q", "ReceiveDisabled").await;
    s.send_text("q", "while-receive-disabled").await;
    for method in [Method::POST, Method::DELETE] {
        let r = s
            .request(method, "q/messages/head?timeout=0", &[], "")
            .await;
        assert_eq!(r.status, 403, "{}", r.body);
    }

    set_queue_status(&s, "q", "Disabled").await;
    assert_eq!(s.send_raw("q", "x", None, &[]).await.status, 403);
    let r = s
        .request(Method::POST, "q/messages/head?timeout=0", &[], "")
        .await;
    assert_eq!(r.status, 403, "{}", r.body);

    set_queue_status(&s, "q", "Active").await;
    assert_eq!(s.take_one("q").await.body, "before");
    assert_eq!(s.take_one("q").await.body, "while-receive-disabled");

    // Topics and subscriptions.
    s.create_topic("t", "<Status>SendDisabled</Status>").await;
    s.create_subscription("t", "s", "<Status>ReceiveDisabled</Status>")
        .await;
    assert_eq!(s.send_raw("t", "x", None, &[]).await.status, 403);
    let r = s
        .put_atom("t", &topic_xml("<Status>Active</Status>"), true)
        .await;
    assert_eq!(r.status, 200);
    s.send_text("t", "y").await;
    let r = s
        .request(
            Method::POST,
            "t/Subscriptions/s/messages/head?timeout=0",
            &[],
            "",
        )
        .await;
    assert_eq!(r.status, 403, "{}", r.body);
    s.stop().await;
}

// ----- long polling --------------------------------------------------------------------------

#[tokio::test]
async fn long_poll_wakes_when_a_message_arrives() {
    let s = TestServer::start().await;
    s.create_queue("q", "").await;
    let started = Instant::now();
    let waiting = spawn_peek_lock(&s, "q", 30);
    // The receive is parked before the send, so this checks the wake-up.
    s.wait_parked(1).await;
    s.send_id("q", "wake", "w").await;
    let (status, body, _) = waiting.await.expect("receive task");
    assert_eq!(status, 201, "{body}");
    assert_eq!(body, "wake");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "the receive returned on arrival, not at its 30 s timeout ({:?})",
        started.elapsed()
    );
    s.stop().await;
}

#[tokio::test]
async fn long_poll_on_a_subscription_wakes_on_topic_send() {
    let s = TestServer::start().await;
    s.create_topic("t", "").await;
    s.create_subscription("t", "s", "").await;
    let started = Instant::now();
    let waiting = spawn_peek_lock(&s, "t/Subscriptions/s", 30);
    s.wait_parked(1).await;
    s.send_text("t", "fan").await;
    let (status, body, _) = waiting.await.expect("receive task");
    assert_eq!(status, 201, "{body}");
    assert_eq!(body, "fan");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    s.stop().await;
}

#[tokio::test]
async fn long_poll_wakes_when_an_abandoned_message_returns() {
    let s = TestServer::start().await;
    s.create_queue("q", "").await;
    s.send_text("q", "x").await;
    let m = s.lock_one("q").await;
    let started = Instant::now();
    let waiting = spawn_peek_lock(&s, "q", 30);
    s.wait_parked(1).await;
    assert_eq!(s.unlock(m.location()).await, 200);
    let (status, body, _) = waiting.await.expect("receive task");
    assert_eq!(status, 201, "{body}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    s.stop().await;
}

#[tokio::test]
async fn long_poll_wakes_when_a_scheduled_message_falls_due() {
    let s = TestServer::start().await;
    s.create_queue("q", "").await;
    let at = s.now() + 60 * SECOND;
    s.send(
        "q",
        "sched",
        Some(json!({"ScheduledEnqueueTimeUtc": rfc1123(at)})),
        &[],
    )
    .await;
    let started = Instant::now();
    let waiting = spawn_peek_lock(&s, "q", 30);
    s.wait_parked(1).await;
    // The timer loop notices the jump of the manual clock within about a second.
    s.advance(61 * SECOND);
    let (status, body, _) = waiting.await.expect("receive task");
    assert_eq!(status, 201, "{body}");
    assert_eq!(body, "sched");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    s.stop().await;
}

#[tokio::test]
async fn long_poll_wakes_when_a_lock_expires() {
    let s = TestServer::start().await;
    s.create_queue("q", "<LockDuration>PT10S</LockDuration>")
        .await;
    s.send_id("q", "x", "m").await;
    let _held = s.lock_one("q").await;
    let started = Instant::now();
    let waiting = spawn_peek_lock(&s, "q", 30);
    s.wait_parked(1).await;
    // The timer loop notices the jump of the manual clock within about a second.
    s.advance(11 * SECOND);
    let (status, body, _) = waiting.await.expect("receive task");
    assert_eq!(status, 201, "{body}");
    assert_eq!(body, "x");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    s.stop().await;
}

#[tokio::test]
async fn empty_receive_answers_204_after_the_timeout() {
    let s = TestServer::start().await;
    s.create_queue("q", "").await;
    let t = Instant::now();
    assert!(s.peek_lock("q", 1).await.is_none());
    let waited = t.elapsed();
    assert!(
        waited >= Duration::from_millis(900),
        "returned early: {waited:?}"
    );
    assert!(
        waited < Duration::from_secs(10),
        "returned late: {waited:?}"
    );

    let t = Instant::now();
    assert!(s.receive_delete("q", 0).await.is_none());
    assert!(t.elapsed() < Duration::from_secs(5));
    s.stop().await;
}

// ----- errors --------------------------------------------------------------------------------

#[tokio::test]
async fn missing_entities_are_410_on_the_messaging_plane() {
    let s = TestServer::start().await;
    let r = s.send_raw("nothere", "x", None, &[]).await;
    assert_eq!(r.status, 410, "{}", r.body);
    assert!(r.body.contains("<Error>"), "{}", r.body);
    for path in ["nothere", "nothere/$DeadLetterQueue"] {
        let r = s
            .request(
                Method::POST,
                &format!("{path}/messages/head?timeout=0"),
                &[],
                "",
            )
            .await;
        assert_eq!(r.status, 410, "{path}: {}", r.body);
    }
    let r = s
        .request(Method::DELETE, "nothere/messages/head?timeout=0", &[], "")
        .await;
    assert_eq!(r.status, 410);
    s.create_topic("t", "").await;
    let r = s
        .request(
            Method::POST,
            "t/Subscriptions/nope/messages/head?timeout=0",
            &[],
            "",
        )
        .await;
    assert_eq!(r.status, 410, "{}", r.body);
    let r = s
        .request(
            Method::DELETE,
            &format!("nothere/messages/1/{}", uuid::Uuid::new_v4()),
            &[],
            "",
        )
        .await;
    assert_eq!(r.status, 410, "{}", r.body);
    s.stop().await;
}

#[tokio::test]
async fn oversized_body_is_413() {
    let s = TestServer::start().await;
    s.create_queue("q", "").await;
    let big = vec![b'x'; 256 * 1024 + 1];
    let r = s.send_raw("q", big, None, &[]).await;
    assert_eq!(r.status, 413, "{}", r.body);
    let huge = vec![b'x'; 1024 * 1024];
    assert_eq!(s.send_raw("q", huge, None, &[]).await.status, 413);
    // A large batch is limited too.
    let items: Vec<_> = (0..3)
        .map(|_| json!({"Body": "y".repeat(100 * 1024)}))
        .collect();
    assert_eq!(s.send_batch("q", &json!(items)).await.status, 413);
    s.assert_empty("q").await;
    // Just under the limit is fine.
    let ok = vec![b'x'; 200 * 1024];
    assert_eq!(s.send_raw("q", ok, None, &[]).await.status, 201);
    assert_eq!(s.take_one("q").await.body.len(), 200 * 1024);
    // The entity's own MaxMessageSizeInKilobytes applies.
    s.create_queue(
        "small",
        "<MaxMessageSizeInKilobytes>1</MaxMessageSizeInKilobytes>",
    )
    .await;
    assert_eq!(
        s.send_raw("small", vec![b'x'; 2048], None, &[])
            .await
            .status,
        413
    );
    s.stop().await;
}

#[tokio::test]
async fn malformed_broker_properties_are_400() {
    let s = TestServer::start().await;
    s.create_queue("q", "").await;
    for bad in [
        "not json",
        "{",
        "[1,2]",
        "{\"TimeToLive\": \"soon\"}",
        "{\"TimeToLive\": -5}",
        "{\"TimeToLive\": 0}",
        "{\"ScheduledEnqueueTimeUtc\": \"tomorrow-ish\"}",
        "{\"MessageId\": 12}",
        "{\"MessageId\": \"\"}",
        "{\"Label\": {\"nested\": true}}",
    ] {
        let r = s
            .request(
                Method::POST,
                "q/messages",
                &[("BrokerProperties", bad)],
                "x",
            )
            .await;
        assert_eq!(r.status, 400, "BrokerProperties {bad}: {}", r.body);
        assert!(r.body.contains("<Error>"), "{}", r.body);
    }
    s.assert_empty("q").await;
    // Unknown fields are tolerated, as the service does.
    let r = s
        .request(
            Method::POST,
            "q/messages",
            &[("BrokerProperties", "{\"Unknown\": 1, \"Label\": \"ok\"}")],
            "x",
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    s.stop().await;
}

#[tokio::test]
async fn bad_and_unknown_lock_tokens() {
    let s = TestServer::start().await;
    s.create_queue("q", "").await;
    s.send_text("q", "x").await;
    let m = s.lock_one("q").await;
    let seq = m.sequence_number();
    for method in [Method::DELETE, Method::PUT, Method::POST] {
        let r = s
            .request(
                method.clone(),
                &format!("q/messages/{seq}/not-a-guid"),
                &[],
                "",
            )
            .await;
        assert_eq!(r.status, 400, "{method} bad token: {}", r.body);
        let r = s
            .request(
                method.clone(),
                &format!("q/messages/{seq}/{}", uuid::Uuid::new_v4()),
                &[],
                "",
            )
            .await;
        assert_eq!(r.status, 404, "{method} unknown token: {}", r.body);
    }
    // The real lock still works after all that.
    assert_eq!(s.complete(m.location()).await, 200);
    s.stop().await;
}

#[tokio::test]
async fn bad_receive_timeout_is_400() {
    let s = TestServer::start().await;
    s.create_queue("q", "").await;
    for t in ["abc", "-1", "1.5"] {
        let r = s
            .request(
                Method::POST,
                &format!("q/messages/head?timeout={t}"),
                &[],
                "",
            )
            .await;
        assert_eq!(r.status, 400, "timeout={t}: {}", r.body);
    }
    s.stop().await;
}

#[tokio::test]
async fn server_stops_cleanly_with_a_receive_waiting() {
    let s = TestServer::start().await;
    s.create_queue("q", "").await;
    let waiting = spawn_peek_lock(&s, "q", 60);
    s.wait_parked(1).await;
    let t = Instant::now();
    s.stop().await;
    assert!(t.elapsed() < Duration::from_secs(15), "{:?}", t.elapsed());
    let (status, body, _) = waiting.await.expect("receive task");
    // Shutdown answers a parked receive as "no message" (`begin_drain`: the long poll ends as
    // if its timeout had passed), which README's table gives as 204.
    assert_eq!(
        status, 204,
        "a waiting receive is answered 204 at shutdown: {body}"
    );
}

// ----- topics: fan-out with SQL filters and actions ------------------------------------------

/// Receives and deletes everything in `path`.
async fn drain_all(s: &TestServer, path: &str) -> Vec<Received> {
    let mut out = Vec::new();
    while let Some(m) = s.receive_delete(path, 0).await {
        out.push(m);
    }
    out
}

/// A subscription whose only rule is the given SQL rule body.
async fn sql_subscription(s: &TestServer, topic: &str, sub: &str, rule: &str, body: &str) {
    s.create_subscription(topic, sub, "").await;
    s.delete_rule(topic, sub, "$Default").await;
    s.create_rule(topic, sub, rule, body).await;
}

#[tokio::test]
async fn topic_fan_out_with_sql_filters_and_actions() {
    let s = TestServer::start().await;
    let t = "shop";
    s.create_topic(t, "").await;
    s.create_subscription(t, "all", "").await;
    sql_subscription(
        &s,
        t,
        "param",
        "p",
        &sql_rule_body(
            "color = @c AND qty &gt;= @min",
            &[("@c", "string", "red"), ("@min", "int", "10")],
            None,
        ),
    )
    .await;
    sql_subscription(
        &s,
        t,
        "like",
        "l",
        &sql_rule_body(
            "sys.Label LIKE 'order-%' AND sys.Label NOT LIKE '%!_test' ESCAPE '!'",
            &[],
            None,
        ),
    )
    .await;
    sql_subscription(
        &s,
        t,
        "in",
        "i",
        &sql_rule_body(
            "region IN ('eu', 'uk') OR sys.To IN ('vip', 'gold')",
            &[],
            None,
        ),
    )
    .await;
    sql_subscription(
        &s,
        t,
        "exists",
        "e",
        &sql_rule_body("EXISTS(priority) AND NOT EXISTS(internal)", &[], None),
    )
    .await;
    sql_subscription(
        &s,
        t,
        "sys",
        "s",
        &sql_rule_body(
            "sys.CorrelationId = 'c-1' OR (sys.MessageId LIKE 'm4%' AND sys.SequenceNumber &gt; 0)",
            &[],
            None,
        ),
    )
    .await;
    sql_subscription(
        &s,
        t,
        "action",
        "stamp",
        &sql_rule_body(
            "color = 'red'",
            &[],
            Some("SET color = 'crimson'; SET sys.Label = 'relabelled'; REMOVE secret; SET touched = TRUE"),
        ),
    )
    .await;
    // A plain rule and a rule with an action on one subscription: two copies when both match.
    s.create_subscription(t, "mixed", "").await;
    s.create_rule(
        t,
        "mixed",
        "tag",
        &sql_rule_body("qty &gt; 100", &[], Some("SET big = qty * 2")),
    )
    .await;

    let send =
        |id: &'static str, bp: serde_json::Value, props: Vec<(&'static str, &'static str)>| {
            let s = &s;
            async move {
                let mut bp = bp;
                bp["MessageId"] = json!(id);
                s.send(t, id, Some(bp), &props).await;
            }
        };
    send(
        "m1",
        json!({"Label": "order-1"}),
        vec![
            ("color", "\"red\""),
            ("qty", "12"),
            ("region", "\"eu\""),
            ("secret", "\"s\""),
            ("priority", "1"),
        ],
    )
    .await;
    send(
        "m2",
        json!({"Label": "order-2_test", "To": "vip", "CorrelationId": "c-1"}),
        vec![
            ("color", "\"red\""),
            ("qty", "5"),
            ("region", "\"us\""),
            ("internal", "true"),
            ("priority", "2"),
        ],
    )
    .await;
    send(
        "m3",
        json!({"Label": "invoice"}),
        vec![("color", "\"blue\""), ("qty", "500")],
    )
    .await;
    send(
        "m4",
        json!({"Label": "order-4"}),
        vec![("color", "\"red\""), ("qty", "10.5"), ("region", "\"UK\"")],
    )
    .await;

    let bodies = |ms: &[Received]| ms.iter().map(|m| m.body.clone()).collect::<Vec<_>>();
    let sub = |name: &str| format!("{t}/Subscriptions/{name}");

    let all = drain_all(&s, &sub("all")).await;
    assert_eq!(bodies(&all), ["m1", "m2", "m3", "m4"]);
    // Other subscriptions' copies are untouched by the action.
    assert_eq!(all[0].header("color"), Some("\"red\""));
    assert_eq!(all[0].header("secret"), Some("\"s\""));
    assert_eq!(all[0].bp["Label"], "order-1");
    assert!(all.iter().all(|m| m.header("RuleName").is_none()));
    assert!(all.iter().all(|m| m.header("touched").is_none()));

    assert_eq!(
        bodies(&drain_all(&s, &sub("param")).await),
        ["m1", "m4"],
        "parameters, and 10.5 >= 10 across int and double"
    );
    assert_eq!(bodies(&drain_all(&s, &sub("like")).await), ["m1", "m4"]);
    assert_eq!(
        bodies(&drain_all(&s, &sub("in")).await),
        ["m1", "m2"],
        "IN is case-sensitive, and a missing region is unknown, not false"
    );
    assert_eq!(bodies(&drain_all(&s, &sub("exists")).await), ["m1"]);
    assert_eq!(bodies(&drain_all(&s, &sub("sys")).await), ["m2", "m4"]);

    let stamped = drain_all(&s, &sub("action")).await;
    assert_eq!(bodies(&stamped), ["m1", "m2", "m4"]);
    for m in &stamped {
        assert_eq!(m.header("color"), Some("\"crimson\""), "{:?}", m.headers);
        assert_eq!(m.header("touched"), Some("true"));
        assert_eq!(m.header("RuleName"), Some("\"stamp\""));
        assert_eq!(m.bp["Label"], "relabelled");
        assert!(m.header("secret").is_none());
    }
    assert_eq!(
        stamped[0].header("qty"),
        Some("12"),
        "other properties stay"
    );

    let mixed = drain_all(&s, &sub("mixed")).await;
    assert_eq!(bodies(&mixed), ["m1", "m2", "m3", "m3", "m4"]);
    let m3: Vec<&Received> = mixed.iter().filter(|m| m.body == "m3").collect();
    assert!(m3[0].header("RuleName").is_none() && m3[0].header("big").is_none());
    assert_eq!(m3[1].header("RuleName"), Some("\"tag\""));
    assert_eq!(m3[1].header("big"), Some("1000"));
    assert_ne!(m3[0].sequence_number(), m3[1].sequence_number());
    assert_eq!(m3[0].message_id(), m3[1].message_id());
    s.stop().await;
}

#[tokio::test]
async fn filter_evaluation_exceptions_dead_letter_unless_disabled() {
    let s = TestServer::start().await;
    s.create_topic("t", "").await;
    let failing = sql_rule_body("qty / 0 = 1", &[], None);
    // The default is on (as for the service's REST API and the .NET SDK).
    sql_subscription(&s, "t", "on", "div", &failing).await;
    let on = s.entity("t/Subscriptions/on").await;
    assert_eq!(
        xml_get(&on, "DeadLetteringOnFilterEvaluationExceptions"),
        "true"
    );
    s.create_subscription(
        "t",
        "off",
        "<DeadLetteringOnFilterEvaluationExceptions>false</DeadLetteringOnFilterEvaluationExceptions>",
    )
    .await;
    s.delete_rule("t", "off", "$Default").await;
    s.create_rule("t", "off", "div", &failing).await;
    // An action that fails (integer overflow) counts as well.
    sql_subscription(
        &s,
        "t",
        "act",
        "boom",
        &sql_rule_body("1=1", &[], Some("SET qty = qty * 9223372036854775807")),
    )
    .await;

    s.send(
        "t",
        "bad",
        with_id("bad"),
        &[("qty", "7"), ("tag", "\"x\"")],
    )
    .await;
    // qty missing: qty / 0 is unknown, not an error; the action sets NULL.
    s.send("t", "fine", with_id("fine"), &[]).await;

    s.assert_empty("t/Subscriptions/on").await;
    let d = s.take_one("t/Subscriptions/on/$DeadLetterQueue").await;
    assert_eq!(d.body, "bad");
    assert_eq!(
        d.header("DeadLetterReason"),
        Some("\"FilterEvaluationException\"")
    );
    let desc = d.header("DeadLetterErrorDescription").unwrap_or_default();
    assert!(desc.contains("div") && desc.contains('/'), "{desc}");
    assert_eq!(
        d.header("tag"),
        Some("\"x\""),
        "the message is kept as sent"
    );
    s.assert_empty("t/Subscriptions/on/$DeadLetterQueue").await;

    s.assert_empty("t/Subscriptions/off").await;
    s.assert_empty("t/Subscriptions/off/$DeadLetterQueue").await;

    let d = s.take_one("t/Subscriptions/act/$DeadLetterQueue").await;
    assert_eq!(d.body, "bad");
    assert_eq!(
        d.header("qty"),
        Some("7"),
        "the failed action changed nothing"
    );
    assert!(d.header("RuleName").is_none());
    let ok = s.take_one("t/Subscriptions/act").await;
    assert_eq!(ok.body, "fine");
    assert_eq!(ok.header("RuleName"), Some("\"boom\""));
    s.assert_empty("t/Subscriptions/act").await;
    assert_eq!(s.counts("t/Subscriptions/on").await.dead_letter, 0);
    s.stop().await;
}

/// The official emulator's Config.json with Sql rules and an Action, applied at start.
#[tokio::test]
async fn entity_file_sql_rules_and_actions_load_at_start() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("Config.json");
    std::fs::write(
        &path,
        r#"{
          "UserConfig": {
            "Namespaces": [{
              "Name": "sbemulatorns",
              "Topics": [{
                "Name": "topic.1",
                "Subscriptions": [
                  { "Name": "sql", "Rules": [
                    { "Name": "sql-filter-1", "Properties": { "FilterType": "Sql",
                      "SqlFilter": { "SqlExpression": "sys.MessageId = '123456' AND userProp1 = 'value1'" },
                      "Action": { "SqlExpression": "SET sys.To = 'Entity'; SET stamped = 1" } } },
                    { "Name": "sql-filter-2", "Properties": { "FilterType": "Sql",
                      "SqlFilter": { "SqlExpression": "sys.Label LIKE 'a%' OR amount > 10.5" } } } ] },
                  { "Name": "corr", "Rules": [
                    { "Name": "c", "Properties": { "FilterType": "Correlation",
                      "CorrelationFilter": { "Label": "b" } } } ] },
                  { "Name": "plain" }
                ]
              }],
              "Queues": []
            }],
            "Logging": { "Type": "File" }
          }
        }"#,
    )
    .expect("write Config.json");
    let (backend, clock) = TestServer::backend();
    let created = localzure::entities_config::apply(&backend, &path)
        .await
        .expect("the entity file loads");
    assert_eq!(created, 5, "topic, 3 subscriptions, 1 extra rule");
    let s = TestServer::start_on(localzure::config::Config::default(), backend, clock).await;

    let rules = s.get("topic.1/Subscriptions/sql/Rules").await;
    assert_eq!(
        feed_titles(&rules.body),
        vec!["sql-filter-1", "sql-filter-2"],
        "{}",
        rules.body
    );
    assert!(rules.body.contains("SqlRuleAction"), "{}", rules.body);

    s.send(
        "topic.1",
        "one",
        Some(json!({"MessageId": "123456"})),
        &[("userProp1", "\"value1\"")],
    )
    .await;
    s.send("topic.1", "two", Some(json!({"Label": "abc"})), &[])
        .await;
    s.send(
        "topic.1",
        "three",
        Some(json!({"Label": "b"})),
        &[("amount", "11")],
    )
    .await;
    s.send(
        "topic.1",
        "four",
        Some(json!({"Label": "b"})),
        &[("amount", "10.5")],
    )
    .await;

    let one = s.take_one("topic.1/Subscriptions/sql").await;
    assert_eq!(one.body, "one");
    assert_eq!(one.bp["To"], "Entity");
    assert_eq!(one.header("stamped"), Some("1"));
    assert_eq!(one.header("RuleName"), Some("\"sql-filter-1\""));
    for want in ["two", "three"] {
        let m = s.take_one("topic.1/Subscriptions/sql").await;
        assert_eq!(m.body, want);
        assert!(m.header("RuleName").is_none());
    }
    s.assert_empty("topic.1/Subscriptions/sql").await;
    for want in ["three", "four"] {
        assert_eq!(s.take_one("topic.1/Subscriptions/corr").await.body, want);
    }
    s.assert_empty("topic.1/Subscriptions/corr").await;
    for want in ["one", "two", "three", "four"] {
        assert_eq!(s.take_one("topic.1/Subscriptions/plain").await.body, want);
    }
    s.stop().await;
}

#[tokio::test]
async fn entity_file_with_a_broken_sql_rule_is_refused_with_the_place() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("Config.json");
    std::fs::write(
        &path,
        r#"{"UserConfig":{"Namespaces":[{"Topics":[{"Name":"t","Subscriptions":[{"Name":"s",
           "Rules":[{"Name":"r","Properties":{"FilterType":"Sql",
           "SqlFilter":{"SqlExpression":"a = = 1"}}}]}]}]}]}}"#,
    )
    .expect("write");
    let (backend, _clock) = TestServer::backend();
    let e = localzure::entities_config::apply(&backend, &path)
        .await
        .expect_err("a syntax error stops the load");
    assert!(
        e.contains("Config.json") && e.contains("column=4") && e.contains("Token in error= ="),
        "{e}"
    );
}
