//! Shared pieces of the fuzz targets: a realistic sample message and a short broker workout
//! that pushes what a parser accepted through the broker (send, receive, settle, timers), so a
//! value the parser lets through but the broker cannot handle (an overflowing duration, a
//! far-future date) shows up as a crash here rather than in production.

use localzure::broker::entity::{EntityProps, Rule};
use localzure::broker::message::{Message, MessageState, NewMessage};
use localzure::broker::op::{Op, OpRecord, QueuePath, ReceiveMode, Settlement};
use localzure::broker::value::Value;
use localzure::broker::{Broker, Outcome};
use localzure::time::{Millis, TimeSpan};
use std::collections::BTreeMap;

/// The time every workout starts at (2023-11-14).
pub const T0: Millis = 1_700_000_000_000;

/// The `(text, rest)` split of `data` at its first newline (`rest` empty without one).
pub fn split_line(data: &[u8]) -> (&[u8], &[u8]) {
    match data.iter().position(|b| *b == b'\n') {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[]),
    }
}

/// Application properties of every type a filter can see.
pub fn sample_properties() -> BTreeMap<String, Value> {
    let mut p = BTreeMap::new();
    p.insert("color".into(), Value::String("red".into()));
    p.insert("Quantity".into(), Value::Int(10));
    p.insert("price".into(), Value::Double(2.5));
    p.insert("active".into(), Value::Bool(true));
    p.insert("nothing".into(), Value::Null);
    p.insert("big".into(), Value::Int(i64::MAX));
    p.insert("small".into(), Value::Int(i64::MIN));
    p.insert("when".into(), Value::DateTime(T0));
    p.insert("unicode".into(), Value::String("héllo wörld ✓".into()));
    p.insert("pct".into(), Value::String("50%_off".into()));
    p
}

/// A stored message with every system property set, as filters and actions see it.
pub fn sample_message() -> Message {
    Message {
        sequence_number: 42,
        content: NewMessage {
            message_id: "msg-1".into(),
            body: b"hello".to_vec(),
            correlation_id: Some("corr-1".into()),
            session_id: Some("s1".into()),
            label: Some("Red bus".into()),
            to: Some("Store5".into()),
            reply_to: Some("replies".into()),
            reply_to_session_id: Some("rs".into()),
            content_type: Some("application/json".into()),
            partition_key: Some("pk".into()),
            time_to_live: Some(TimeSpan::from_secs(60)),
            scheduled_enqueue_time: Some(T0),
            properties: sample_properties(),
            body_section: None,
        }
        .into(),
        enqueued_time: T0,
        expires_at: T0 + 60_000,
        ttl: TimeSpan::from_secs(60),
        delivery_count: 3,
        state: MessageState::Active,
        lock: None,
        dead_letter_source: Some("q".into()),
        enqueued_sequence_number: 41,
    }
}

/// One operation at `at`; the result is ignored (refusals are fine, panics are not).
pub fn apply(broker: &mut Broker, at: Millis, op: Op) -> Option<Outcome> {
    broker.apply(&OpRecord { at, op }).result.ok()
}

/// A queue path (or a subscription path when `sub` is given).
pub fn path(entity: &str, sub: Option<&str>) -> QueuePath {
    QueuePath {
        entity: entity.to_string(),
        subscription: sub.map(str::to_string),
        dead_letter: false,
    }
}

/// Receives (peek-lock) from `from`, then abandons, dead-letters or completes what came, and
/// runs the timers at a few later times up to the end of the representable range. Returns the
/// messages received, for the caller to render.
pub fn workout(broker: &mut Broker, from: &QueuePath, mut now: Millis) -> Vec<Message> {
    let mut seen = Vec::new();
    for round in 0..3u8 {
        let tokens: Vec<uuid::Uuid> = (0..4).map(|_| uuid::Uuid::new_v4()).collect();
        let got = apply(
            broker,
            now,
            Op::Receive {
                from: from.clone(),
                mode: ReceiveMode::PeekLock,
                max: 4,
                lock_tokens: tokens,
                session: None,
            },
        );
        if let Some(Outcome::Received(msgs)) = got {
            for m in &msgs {
                if let Some(lock) = m.lock {
                    let _ = apply(
                        broker,
                        now,
                        Op::RenewLock {
                            from: from.clone(),
                            lock_token: lock.token,
                        },
                    );
                    let settlement = match round {
                        0 => Settlement::Abandon {
                            properties: sample_properties(),
                        },
                        1 => Settlement::DeadLetter {
                            reason: Some("r".into()),
                            description: None,
                            properties: BTreeMap::new(),
                        },
                        _ => Settlement::Complete,
                    };
                    let _ = apply(
                        broker,
                        now,
                        Op::Settle {
                            from: from.clone(),
                            lock_token: lock.token,
                            settlement,
                        },
                    );
                }
            }
            seen.extend(msgs);
        }
        now = now.saturating_add(3_600_000);
    }
    for later in [
        T0 + 86_400_000,
        T0 + 100 * 365 * 86_400_000,
        localzure::time::MAX_MILLIS,
    ] {
        let _ = apply(broker, later, Op::Tick);
    }
    seen
}

/// A broker with a queue `q` and a topic `t` whose subscription `s` has `rule` (if any) or
/// `$Default`.
pub fn broker_with(props: EntityProps, rule: Option<Rule>) -> Broker {
    let mut b = Broker::new(T0);
    let _ = apply(
        &mut b,
        T0,
        Op::CreateQueue {
            name: "q".into(),
            props: props.clone(),
        },
    );
    let _ = apply(
        &mut b,
        T0,
        Op::CreateTopic {
            name: "t".into(),
            props: props.clone(),
        },
    );
    let _ = apply(
        &mut b,
        T0,
        Op::CreateSubscription {
            topic: "t".into(),
            name: "s".into(),
            props,
            rule,
        },
    );
    b
}
