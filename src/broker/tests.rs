//! Unit tests of broker semantics and of snapshot + replay equivalence.

use super::entity::{CorrelationFilter, EntityProps, EntityStatus, Filter, Rule, SqlAction};
use super::error::BrokerError;
use super::message::{MessageState, NewMessage};
use super::op::{Op, OpRecord, QueuePath, ReceiveMode, SessionRef, SessionSelect, Settlement};
use super::value::Value;
use super::{Broker, Outcome};
use crate::storage::{Delta, EntityKey, MessageKey, Snapshot};
use crate::time::{Millis, TimeSpan};
use proptest::prelude::*;
use std::collections::BTreeMap;
use uuid::Uuid;

const T0: Millis = 1_700_000_000_000;

fn apply(b: &mut Broker, at: Millis, op: Op) -> Result<Outcome, BrokerError> {
    b.apply(&OpRecord { at, op }).result
}

fn msg(id: &str) -> NewMessage {
    NewMessage {
        message_id: id.to_string(),
        body: id.as_bytes().to_vec(),
        ..Default::default()
    }
}

fn queue(b: &mut Broker, name: &str, props: EntityProps) {
    apply(
        b,
        T0,
        Op::CreateQueue {
            name: name.into(),
            props,
        },
    )
    .unwrap();
}

fn send(b: &mut Broker, at: Millis, entity: &str, m: NewMessage) -> Vec<u64> {
    match apply(
        b,
        at,
        Op::Send {
            entity: entity.into(),
            messages: vec![m],
        },
    )
    .unwrap()
    {
        Outcome::Sent { sequence_numbers } => sequence_numbers,
        o => panic!("unexpected {o:?}"),
    }
}

fn recv(b: &mut Broker, at: Millis, path: &QueuePath, mode: ReceiveMode) -> Vec<super::Message> {
    match apply(
        b,
        at,
        Op::Receive {
            from: path.clone(),
            mode,
            max: 1,
            lock_tokens: vec![Uuid::new_v4()],
            session: None,
        },
    )
    .unwrap()
    {
        Outcome::Received(m) => m,
        o => panic!("unexpected {o:?}"),
    }
}

fn lock_of(m: &super::Message) -> Uuid {
    m.lock.map(|l| l.token).unwrap()
}

#[test]
fn sequence_numbers_and_delivery_counts() {
    let mut b = Broker::new(T0);
    queue(&mut b, "q", EntityProps::default());
    assert_eq!(send(&mut b, T0, "q", msg("a")), vec![1]);
    assert_eq!(send(&mut b, T0, "q", msg("b")), vec![2]);
    let p = QueuePath::queue("q");
    let m = recv(&mut b, T0, &p, ReceiveMode::PeekLock);
    assert_eq!(m[0].sequence_number, 1);
    assert_eq!(m[0].delivery_count, 1);
    apply(
        &mut b,
        T0,
        Op::Settle {
            from: p.clone(),
            lock_token: lock_of(&m[0]),
            settlement: Settlement::Abandon {
                properties: BTreeMap::new(),
            },
        },
    )
    .unwrap();
    let m = recv(&mut b, T0, &p, ReceiveMode::PeekLock);
    assert_eq!(m[0].sequence_number, 1);
    assert_eq!(m[0].delivery_count, 2);
}

#[test]
fn lock_expiry_redelivers_then_dead_letters_at_max_delivery() {
    let mut b = Broker::new(T0);
    let props = EntityProps {
        max_delivery_count: 2,
        lock_duration: TimeSpan::from_secs(30),
        ..Default::default()
    };
    queue(&mut b, "q", props);
    send(&mut b, T0, "q", msg("a"));
    let p = QueuePath::queue("q");
    let m1 = recv(&mut b, T0, &p, ReceiveMode::PeekLock);
    assert!(recv(&mut b, T0 + 29_000, &p, ReceiveMode::PeekLock).is_empty());
    let m2 = recv(&mut b, T0 + 30_000, &p, ReceiveMode::PeekLock);
    assert_eq!(m2[0].delivery_count, 2);
    // The first token is gone.
    let err = apply(
        &mut b,
        T0 + 30_000,
        Op::Settle {
            from: p.clone(),
            lock_token: lock_of(&m1[0]),
            settlement: Settlement::Complete,
        },
    );
    assert_eq!(err, Err(BrokerError::MessageLockLost));
    // Second expiry at max delivery count: dead-lettered.
    assert!(recv(&mut b, T0 + 61_000, &p, ReceiveMode::PeekLock).is_empty());
    let dl = recv(
        &mut b,
        T0 + 61_000,
        &p.clone().dlq(),
        ReceiveMode::ReceiveAndDelete,
    );
    assert_eq!(
        dl[0].content.properties().get("DeadLetterReason"),
        Some(&Value::String("MaxDeliveryCountExceeded".into()))
    );
}

#[test]
fn ttl_expiry_drops_or_dead_letters() {
    let mut b = Broker::new(T0);
    queue(
        &mut b,
        "drop",
        EntityProps {
            default_message_time_to_live: TimeSpan::from_secs(60),
            ..Default::default()
        },
    );
    queue(
        &mut b,
        "dl",
        EntityProps {
            dead_lettering_on_message_expiration: true,
            ..Default::default()
        },
    );
    let mut m = msg("x");
    m.time_to_live = Some(TimeSpan::from_secs(120));
    send(&mut b, T0, "drop", m.clone());
    let info = b.queue_info("drop").unwrap();
    assert_eq!(info.counts.active, 1);
    apply(&mut b, T0 + 60_000, Op::Tick).unwrap();
    assert_eq!(b.queue_info("drop").unwrap().counts.total(), 0);
    m.time_to_live = Some(TimeSpan::from_secs(10));
    send(&mut b, T0, "dl", m);
    assert!(recv(
        &mut b,
        T0 + 10_000,
        &QueuePath::queue("dl"),
        ReceiveMode::PeekLock
    )
    .is_empty());
    let info = b.queue_info("dl").unwrap();
    assert_eq!(info.counts.dead_letter, 1);
    let dl = recv(
        &mut b,
        T0 + 10_000,
        &QueuePath::queue("dl").dlq(),
        ReceiveMode::PeekLock,
    );
    assert_eq!(
        dl[0].content.properties().get("DeadLetterReason"),
        Some(&Value::String("TTLExpiredException".into()))
    );
}

#[test]
fn scheduled_messages_appear_at_their_time() {
    let mut b = Broker::new(T0);
    queue(&mut b, "q", EntityProps::default());
    let mut m = msg("s");
    m.scheduled_enqueue_time = Some(T0 + 5_000);
    send(&mut b, T0, "q", m);
    assert_eq!(b.queue_info("q").unwrap().counts.scheduled, 1);
    assert_eq!(b.next_due(), Some(T0 + 5_000));
    let p = QueuePath::queue("q");
    assert!(recv(&mut b, T0 + 4_999, &p, ReceiveMode::PeekLock).is_empty());
    let got = recv(&mut b, T0 + 5_000, &p, ReceiveMode::PeekLock);
    assert_eq!(got[0].state, MessageState::Active);
    assert_eq!(got[0].enqueued_time, T0 + 5_000);
}

#[test]
fn cancel_scheduled_removes_it() {
    let mut b = Broker::new(T0);
    queue(&mut b, "q", EntityProps::default());
    let mut m = msg("s");
    m.scheduled_enqueue_time = Some(T0 + 5_000);
    let seq = send(&mut b, T0, "q", m);
    apply(
        &mut b,
        T0,
        Op::CancelScheduled {
            entity: "q".into(),
            sequence_numbers: seq.clone(),
        },
    )
    .unwrap();
    assert_eq!(b.queue_info("q").unwrap().counts.total(), 0);
    assert!(apply(
        &mut b,
        T0,
        Op::CancelScheduled {
            entity: "q".into(),
            sequence_numbers: seq,
        },
    )
    .is_err());
}

#[test]
fn duplicate_detection_within_window() {
    let mut b = Broker::new(T0);
    queue(
        &mut b,
        "q",
        EntityProps {
            requires_duplicate_detection: true,
            duplicate_detection_history_time_window: TimeSpan::from_secs(60),
            ..Default::default()
        },
    );
    assert_eq!(send(&mut b, T0, "q", msg("a")), vec![1]);
    assert!(send(&mut b, T0 + 1, "q", msg("a")).is_empty());
    assert_eq!(b.queue_info("q").unwrap().counts.active, 1);
    assert_eq!(send(&mut b, T0 + 61_000, "q", msg("a")), vec![2]);
}

#[test]
fn defer_and_receive_deferred() {
    let mut b = Broker::new(T0);
    queue(&mut b, "q", EntityProps::default());
    send(&mut b, T0, "q", msg("a"));
    let p = QueuePath::queue("q");
    let m = recv(&mut b, T0, &p, ReceiveMode::PeekLock);
    apply(
        &mut b,
        T0,
        Op::Settle {
            from: p.clone(),
            lock_token: lock_of(&m[0]),
            settlement: Settlement::Defer {
                properties: BTreeMap::new(),
            },
        },
    )
    .unwrap();
    assert!(recv(&mut b, T0, &p, ReceiveMode::PeekLock).is_empty());
    let got = apply(
        &mut b,
        T0,
        Op::ReceiveDeferred {
            from: p.clone(),
            sequence_numbers: vec![1],
            mode: ReceiveMode::PeekLock,
            lock_tokens: vec![Uuid::new_v4()],
        },
    )
    .unwrap();
    let Outcome::Received(got) = got else {
        panic!()
    };
    assert_eq!(got[0].state, MessageState::Deferred);
    apply(
        &mut b,
        T0,
        Op::Settle {
            from: p,
            lock_token: lock_of(&got[0]),
            settlement: Settlement::Complete,
        },
    )
    .unwrap();
    assert_eq!(b.queue_info("q").unwrap().counts.total(), 0);
}

#[test]
fn fan_out_with_correlation_filters_and_actions() {
    let mut b = Broker::new(T0);
    apply(
        &mut b,
        T0,
        Op::CreateTopic {
            name: "t".into(),
            props: EntityProps::default(),
        },
    )
    .unwrap();
    for (sub, label) in [("red", "red"), ("blue", "blue")] {
        apply(
            &mut b,
            T0,
            Op::CreateSubscription {
                topic: "t".into(),
                name: sub.into(),
                props: EntityProps::default(),
                rule: Some(Rule {
                    name: "bylabel".into(),
                    filter: Filter::Correlation(CorrelationFilter {
                        label: Some(label.into()),
                        ..Default::default()
                    }),
                    action: None,
                    created_at: 0,
                }),
            },
        )
        .unwrap();
    }
    apply(
        &mut b,
        T0,
        Op::CreateSubscription {
            topic: "t".into(),
            name: "all".into(),
            props: EntityProps::default(),
            rule: None,
        },
    )
    .unwrap();
    let mut m = msg("1");
    m.label = Some("red".into());
    send(&mut b, T0, "t", m);
    let count = |b: &Broker, s: &str| b.subscription_info("t", s).unwrap().counts.active;
    assert_eq!(
        (count(&b, "red"), count(&b, "blue"), count(&b, "all")),
        (1, 0, 1)
    );
    // A SQL action on a rule would produce its own copy; SQL is compiled by the filter module,
    // so a rule whose action fails to compile is refused at creation.
    let bad = apply(
        &mut b,
        T0,
        Op::CreateRule {
            topic: "t".into(),
            subscription: "all".into(),
            rule: Rule {
                name: "act".into(),
                filter: Filter::True,
                action: Some(SqlAction {
                    expression: "SET".into(),
                    ..Default::default()
                }),
                created_at: 0,
            },
        },
    );
    assert!(matches!(bad, Err(BrokerError::FilterSyntax(_))));
}

fn sql_rule(name: &str, filter: &str, action: Option<&str>) -> Rule {
    Rule {
        name: name.into(),
        filter: Filter::Sql(super::entity::SqlFilterDef {
            expression: filter.into(),
            ..Default::default()
        }),
        action: action.map(|a| SqlAction {
            expression: a.into(),
            ..Default::default()
        }),
        created_at: 0,
    }
}

fn sub_with_rules(b: &mut Broker, topic: &str, name: &str, props: EntityProps, rules: &[Rule]) {
    apply(
        b,
        T0,
        Op::CreateSubscription {
            topic: topic.into(),
            name: name.into(),
            props,
            rule: rules.first().cloned(),
        },
    )
    .unwrap();
    for r in rules.iter().skip(1) {
        apply(
            b,
            T0,
            Op::CreateRule {
                topic: topic.into(),
                subscription: name.into(),
                rule: r.clone(),
            },
        )
        .unwrap();
    }
}

#[test]
fn filter_evaluation_exceptions_dead_letter_once_per_subscription() {
    let mut b = Broker::new(T0);
    apply(
        &mut b,
        T0,
        Op::CreateTopic {
            name: "t".into(),
            props: EntityProps::default(),
        },
    )
    .unwrap();
    queue(&mut b, "sink", EntityProps::default());
    let bad = sql_rule("bad", "n / 0 = 1", None);
    // Default: DeadLetteringOnFilterEvaluationExceptions is on. Two failing rules, one good.
    sub_with_rules(
        &mut b,
        "t",
        "dl",
        EntityProps::default(),
        &[
            bad.clone(),
            sql_rule("bad2", "n / 0 = 2", None),
            sql_rule("ok", "n = 1", None),
        ],
    );
    // Switched off: the failure is ignored.
    let quiet = EntityProps {
        dead_lettering_on_filter_evaluation_exceptions: false,
        ..EntityProps::default()
    };
    sub_with_rules(&mut b, "t", "quiet", quiet, std::slice::from_ref(&bad));
    // An action that fails to evaluate counts as a rule evaluation failure too.
    sub_with_rules(
        &mut b,
        "t",
        "act",
        EntityProps::default(),
        &[sql_rule("act", "1=1", Some("SET x = n / 0"))],
    );
    // ForwardDeadLetteredMessagesTo applies to the dead-lettered copy.
    let fwd = EntityProps {
        forward_dead_lettered_messages_to: Some("sink".into()),
        ..EntityProps::default()
    };
    sub_with_rules(&mut b, "t", "fwd", fwd, std::slice::from_ref(&bad));

    let mut m = msg("1");
    m.properties.insert("n".into(), Value::Int(1));
    send(&mut b, T0, "t", m);
    let counts = |b: &Broker, s: &str| {
        let c = b.subscription_info("t", s).unwrap().counts;
        (c.active, c.dead_letter)
    };
    assert_eq!(counts(&b, "dl"), (1, 1), "the good rule still delivers");
    assert_eq!(counts(&b, "quiet"), (0, 0));
    assert_eq!(counts(&b, "act"), (0, 1));
    assert_eq!(counts(&b, "fwd"), (0, 0));
    assert_eq!(b.queue_info("sink").unwrap().counts.active, 1);

    let dlq = QueuePath {
        entity: "t".into(),
        subscription: Some("dl".into()),
        dead_letter: true,
    };
    let dead = b.peek(&dlq, 0, 10).unwrap();
    assert_eq!(dead.len(), 1);
    let p = dead[0].content.properties();
    assert_eq!(
        p.get("DeadLetterReason"),
        Some(&Value::String("FilterEvaluationException".into()))
    );
    let Some(Value::String(desc)) = p.get("DeadLetterErrorDescription") else {
        panic!("no description: {p:?}")
    };
    assert!(desc.contains("'bad'") && desc.contains("/"), "{desc}");
    assert_eq!(dead[0].expires_at, crate::time::MAX_MILLIS);
    let sink = QueuePath {
        entity: "sink".into(),
        subscription: None,
        dead_letter: false,
    };
    let fwded = b.peek(&sink, 0, 10).unwrap();
    assert_eq!(
        fwded[0].dead_letter_source.as_deref(),
        Some("t/Subscriptions/fwd")
    );

    // NULL / 0 is unknown, not an error: nothing more is dead-lettered; the action sets NULL.
    let mut m = msg("2");
    m.properties.insert("n".into(), Value::Null);
    send(&mut b, T0, "t", m);
    assert_eq!(counts(&b, "dl"), (1, 1));
    assert_eq!(counts(&b, "quiet"), (0, 0));
    assert_eq!(counts(&b, "act"), (1, 1));
}

#[test]
fn several_copies_in_one_subscription_all_survive_and_cancel_together() {
    let mut b = Broker::new(T0);
    apply(
        &mut b,
        T0,
        Op::CreateTopic {
            name: "t".into(),
            props: EntityProps::default(),
        },
    )
    .unwrap();
    sub_with_rules(
        &mut b,
        "t",
        "s",
        EntityProps::default(),
        &[
            sql_rule("plain", "1=1", None),
            sql_rule("a1", "1=1", Some("SET copy = 'a1'")),
            sql_rule("a2", "1=1", Some("SET copy = 'a2'")),
        ],
    );
    sub_with_rules(&mut b, "t", "other", EntityProps::default(), &[]);
    let seqs = send(&mut b, T0, "t", msg("1"));
    assert_eq!(seqs, vec![1]);
    let path = QueuePath {
        entity: "t".into(),
        subscription: Some("s".into()),
        dead_letter: false,
    };
    let got = b.peek(&path, 0, 10).unwrap();
    let view: Vec<(u64, u64, Option<Value>)> = got
        .iter()
        .map(|m| {
            (
                m.sequence_number,
                m.enqueued_sequence_number,
                m.content.properties().get("copy").cloned(),
            )
        })
        .collect();
    assert_eq!(
        view,
        vec![
            (1, 1, None),
            (2, 1, Some(Value::String("a1".into()))),
            (3, 1, Some(Value::String("a2".into()))),
        ]
    );
    // Another subscription's single copy keeps the topic's number.
    let other = QueuePath {
        subscription: Some("other".into()),
        ..path.clone()
    };
    let got = b.peek(&other, 0, 10).unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].sequence_number, 1);
    // The next message continues after the numbers the copies took.
    assert_eq!(send(&mut b, T0, "t", msg("2")), vec![4]);

    // A scheduled message's copies are all cancelled by the number the sender got.
    let mut m = msg("3");
    m.scheduled_enqueue_time = Some(T0 + 60_000);
    let seqs = send(&mut b, T0, "t", m);
    let scheduled = |b: &Broker| b.subscription_info("t", "s").unwrap().counts.scheduled;
    assert_eq!(scheduled(&b), 3);
    apply(
        &mut b,
        T0,
        Op::CancelScheduled {
            entity: "t".into(),
            sequence_numbers: seqs,
        },
    )
    .unwrap();
    assert_eq!(scheduled(&b), 0);
    assert_eq!(b.subscription_info("t", "s").unwrap().counts.active, 6);
}

#[test]
fn sql_text_longer_than_the_service_limit_is_refused() {
    let mut b = Broker::new(T0);
    apply(
        &mut b,
        T0,
        Op::CreateTopic {
            name: "t".into(),
            props: EntityProps::default(),
        },
    )
    .unwrap();
    sub_with_rules(&mut b, "t", "s", EntityProps::default(), &[]);
    let fits = format!("a = '{}'", "x".repeat(1024 - 6));
    assert_eq!(fits.chars().count(), 1024);
    let long = format!("a = '{}'", "x".repeat(1024 - 5));
    let create = |b: &mut Broker, name: &str, f: &str, a: Option<&str>| {
        apply(
            b,
            T0,
            Op::CreateRule {
                topic: "t".into(),
                subscription: "s".into(),
                rule: sql_rule(name, f, a),
            },
        )
    };
    assert!(create(&mut b, "fits", &fits, None).is_ok());
    match create(&mut b, "long", &long, None) {
        Err(BrokerError::FilterSyntax(m)) => {
            assert!(m.contains("1025") && m.contains("1024"), "{m}")
        }
        other => panic!("unexpected {other:?}"),
    }
    let long_action = format!("SET a = '{}'", "x".repeat(1024));
    assert!(matches!(
        create(&mut b, "act", "1=1", Some(&long_action)),
        Err(BrokerError::FilterSyntax(_))
    ));
}

#[test]
fn syntax_errors_name_line_column_and_token() {
    let mut b = Broker::new(T0);
    apply(
        &mut b,
        T0,
        Op::CreateTopic {
            name: "t".into(),
            props: EntityProps::default(),
        },
    )
    .unwrap();
    sub_with_rules(&mut b, "t", "s", EntityProps::default(), &[]);
    let r = apply(
        &mut b,
        T0,
        Op::CreateRule {
            topic: "t".into(),
            subscription: "s".into(),
            rule: sql_rule("r", "a = 1 AND\n  b = = 2", None),
        },
    );
    let Err(BrokerError::FilterSyntax(m)) = r else {
        panic!("unexpected {r:?}")
    };
    assert!(
        m.starts_with("There was an error parsing the SQL expression. [Token line=2, column=6, Token in error= =, Additional details= "),
        "{m}"
    );
    assert!(m.contains("position 16"), "{m}");
}

#[test]
fn forwarding_moves_messages() {
    let mut b = Broker::new(T0);
    queue(&mut b, "dest", EntityProps::default());
    queue(
        &mut b,
        "src",
        EntityProps {
            forward_to: Some("dest".into()),
            ..Default::default()
        },
    );
    send(&mut b, T0, "src", msg("a"));
    assert_eq!(b.queue_info("src").unwrap().counts.total(), 0);
    let got = recv(
        &mut b,
        T0,
        &QueuePath::queue("dest"),
        ReceiveMode::ReceiveAndDelete,
    );
    assert_eq!(got[0].dead_letter_source, None);
    // Forwarding to a missing entity is refused at creation.
    let err = apply(
        &mut b,
        T0,
        Op::CreateQueue {
            name: "x".into(),
            props: EntityProps {
                forward_to: Some("nope".into()),
                ..Default::default()
            },
        },
    );
    assert!(matches!(err, Err(BrokerError::EntityNotFound(_))));
}

#[test]
fn status_refuses_send_and_receive() {
    let mut b = Broker::new(T0);
    queue(
        &mut b,
        "q",
        EntityProps {
            status: EntityStatus::SendDisabled,
            ..Default::default()
        },
    );
    let err = apply(
        &mut b,
        T0,
        Op::Send {
            entity: "q".into(),
            messages: vec![msg("a")],
        },
    );
    assert!(matches!(err, Err(BrokerError::SendDisabled(_))));
}

#[test]
fn sessions_lock_and_state() {
    let mut b = Broker::new(T0);
    queue(
        &mut b,
        "q",
        EntityProps {
            requires_session: true,
            ..Default::default()
        },
    );
    for (id, sid) in [("1", "s1"), ("2", "s2"), ("3", "s1")] {
        let mut m = msg(id);
        m.session_id = Some(sid.into());
        send(&mut b, T0, "q", m);
    }
    let p = QueuePath::queue("q");
    // A plain receive is refused on a session entity.
    let err = apply(
        &mut b,
        T0,
        Op::Receive {
            from: p.clone(),
            mode: ReceiveMode::PeekLock,
            max: 1,
            lock_tokens: vec![],
            session: None,
        },
    );
    assert!(matches!(err, Err(BrokerError::SessionRequired(_))));
    let tok = Uuid::new_v4();
    let Outcome::SessionAccepted { session_id, .. } = apply(
        &mut b,
        T0,
        Op::AcceptSession {
            from: p.clone(),
            select: SessionSelect::Next,
            token: tok,
        },
    )
    .unwrap() else {
        panic!()
    };
    assert_eq!(session_id, "s1");
    let other = apply(
        &mut b,
        T0,
        Op::AcceptSession {
            from: p.clone(),
            select: SessionSelect::Id("s1".into()),
            token: Uuid::new_v4(),
        },
    );
    assert!(matches!(other, Err(BrokerError::SessionCannotBeLocked(_))));
    let sref = SessionRef {
        id: "s1".into(),
        token: tok,
    };
    let Outcome::Received(got) = apply(
        &mut b,
        T0,
        Op::Receive {
            from: p.clone(),
            mode: ReceiveMode::ReceiveAndDelete,
            max: 10,
            lock_tokens: vec![],
            session: Some(sref.clone()),
        },
    )
    .unwrap() else {
        panic!()
    };
    assert_eq!(
        got.iter()
            .map(|m| m.content.message_id())
            .collect::<Vec<_>>(),
        vec!["1", "3"]
    );
    apply(
        &mut b,
        T0,
        Op::SetSessionState {
            from: p.clone(),
            session: sref.clone(),
            state: Some(b"st".to_vec()),
        },
    )
    .unwrap();
    assert_eq!(b.session_state(&p, "s1").unwrap(), Some(b"st".to_vec()));
    // The session lock expires after the lock duration.
    let late = apply(
        &mut b,
        T0 + 61_000,
        Op::RenewSessionLock {
            from: p.clone(),
            session: sref,
        },
    );
    assert!(matches!(late, Err(BrokerError::SessionLockLost(_))));
}

// ----- snapshot + replay equivalence ------------------------------------------------------------

/// A map-backed store applying deltas the way the real backends must.
#[derive(Default)]
struct MapStore {
    entities: BTreeMap<EntityKey, String>,
    messages: BTreeMap<MessageKey, String>,
    state: Option<String>,
    lsn: u64,
}

fn lower(k: &EntityKey) -> EntityKey {
    EntityKey {
        kind: k.kind,
        topic: k.topic.as_ref().map(|t| t.to_ascii_lowercase()),
        name: k.name.to_ascii_lowercase(),
    }
}

impl MapStore {
    fn apply(&mut self, d: &Delta) {
        if d.full {
            self.entities.clear();
            self.messages.clear();
        }
        for k in &d.entity_deletes {
            let k = lower(k);
            self.entities.retain(|e, _| {
                !(*e == k
                    || (k.kind == super::entity::EntityKind::Topic
                        && e.topic.as_deref() == Some(k.name.as_str())))
            });
            self.messages.retain(|m, _| {
                let e = &m.entity;
                !(*e == k
                    || (k.kind == super::entity::EntityKind::Topic
                        && e.topic.as_deref() == Some(k.name.as_str())))
            });
        }
        for r in &d.entity_upserts {
            self.entities
                .insert(lower(&r.key), r.data.get().to_string());
        }
        for k in &d.message_deletes {
            let mut k = k.clone();
            k.entity = lower(&k.entity);
            self.messages.remove(&k);
        }
        for r in &d.message_upserts {
            let mut k = r.key.clone();
            k.entity = lower(&k.entity);
            self.messages.insert(k, r.data.get().to_string());
        }
        self.state = d.state.as_ref().map(|s| s.get().to_string());
        self.lsn = d.lsn;
    }

    fn snapshot(&self) -> Snapshot {
        let raw = |s: &String| serde_json::value::RawValue::from_string(s.clone()).unwrap();
        Snapshot {
            entities: self
                .entities
                .iter()
                .map(|(k, v)| crate::storage::EntityRecord {
                    key: k.clone(),
                    data: raw(v),
                })
                .collect(),
            messages: self
                .messages
                .iter()
                .map(|(k, v)| crate::storage::MessageRecord {
                    key: k.clone(),
                    data: raw(v),
                })
                .collect(),
            state: self.state.as_ref().map(raw),
            lsn: self.lsn,
            taken_at: 0,
        }
    }
}

/// Everything observable, as sorted JSON.
fn dump(b: &Broker) -> (Vec<String>, Vec<String>) {
    let d = b.clone().take_delta(true, 0, 0).unwrap();
    let mut e: Vec<String> = d
        .entity_upserts
        .iter()
        .map(|r| r.data.get().to_string())
        .collect();
    let mut m: Vec<String> = d
        .message_upserts
        .iter()
        .map(|r| {
            format!(
                "{:?}{}{}",
                r.key.entity.kind,
                r.key.dead_letter,
                r.data.get()
            )
        })
        .collect();
    e.sort();
    m.sort();
    (e, m)
}

/// A small random workload over two queues and a topic with two subscriptions.
fn arb_op() -> impl Strategy<Value = (u8, u8, u8)> {
    (0u8..12, 0u8..4, 0u8..8)
}

fn make_op(b: &Broker, kind: u8, target: u8, n: u8, seq_tokens: &mut Vec<(QueuePath, Uuid)>) -> Op {
    let paths = [
        QueuePath::queue("q1"),
        QueuePath::queue("Q2"),
        QueuePath::subscription("t", "s1"),
        QueuePath::subscription("t", "S2"),
    ];
    let p = paths[target as usize % 4].clone();
    let _ = b;
    match kind {
        0..=3 => {
            let mut m = msg(&format!("m{n}"));
            if n.is_multiple_of(3) {
                m.time_to_live = Some(TimeSpan::from_secs(5));
            }
            if n % 4 == 1 {
                m.scheduled_enqueue_time = Some(T0 + 7_000);
            }
            m.label = Some(if n.is_multiple_of(2) { "even" } else { "odd" }.into());
            Op::Send {
                entity: if target < 2 {
                    p.entity.clone()
                } else {
                    "t".into()
                },
                messages: vec![m],
            }
        }
        4 | 5 => {
            let tok = Uuid::from_u64_pair(n as u64, kind as u64 + target as u64 * 17);
            seq_tokens.push((p.clone(), tok));
            Op::Receive {
                from: p,
                mode: if kind == 4 {
                    ReceiveMode::PeekLock
                } else {
                    ReceiveMode::ReceiveAndDelete
                },
                max: 1 + (n as u32 % 2),
                lock_tokens: vec![tok, Uuid::from_u64_pair(n as u64 + 99, 7)],
                session: None,
            }
        }
        6..=9 => {
            let (from, tok) = seq_tokens
                .get(n as usize % seq_tokens.len().max(1))
                .cloned()
                .unwrap_or((p, Uuid::nil()));
            let settlement = match kind {
                6 => Settlement::Complete,
                7 => Settlement::Abandon {
                    properties: BTreeMap::new(),
                },
                8 => Settlement::DeadLetter {
                    reason: Some("r".into()),
                    description: None,
                    properties: BTreeMap::new(),
                },
                _ => Settlement::Defer {
                    properties: BTreeMap::new(),
                },
            };
            Op::Settle {
                from,
                lock_token: tok,
                settlement,
            }
        }
        10 => Op::Tick,
        _ => Op::RenewLock {
            from: p,
            lock_token: seq_tokens.last().map(|x| x.1).unwrap_or(Uuid::nil()),
        },
    }
}

fn setup() -> Vec<OpRecord> {
    let props = EntityProps {
        max_delivery_count: 2,
        lock_duration: TimeSpan::from_secs(3),
        ..Default::default()
    };
    let dl = EntityProps {
        dead_lettering_on_message_expiration: true,
        requires_duplicate_detection: true,
        ..props.clone()
    };
    vec![
        Op::CreateQueue {
            name: "q1".into(),
            props: props.clone(),
        },
        Op::CreateQueue {
            name: "Q2".into(),
            props: dl.clone(),
        },
        Op::CreateTopic {
            name: "t".into(),
            props: EntityProps::default(),
        },
        Op::CreateSubscription {
            topic: "t".into(),
            name: "s1".into(),
            props: props.clone(),
            rule: None,
        },
        Op::CreateSubscription {
            topic: "t".into(),
            name: "S2".into(),
            props: dl,
            rule: Some(Rule {
                name: "odd".into(),
                filter: Filter::Correlation(CorrelationFilter {
                    label: Some("odd".into()),
                    ..Default::default()
                }),
                action: None,
                created_at: 0,
            }),
        },
    ]
    .into_iter()
    .map(|op| OpRecord { at: T0, op })
    .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Applying a workload, snapshotting (incrementally, several times) into a store and
    /// restoring + replaying the journal tail gives exactly the state of the live broker.
    #[test]
    fn snapshot_plus_replay_equals_live_state(
        ops in proptest::collection::vec(arb_op(), 1..80),
        cuts in proptest::collection::vec(0usize..80, 0..4),
        deletes in any::<bool>(),
    ) {
        let mut live = Broker::new(T0);
        let mut store = MapStore::default();
        let mut journal: Vec<(u64, OpRecord)> = Vec::new();
        let mut lsn = 0u64;
        let mut tokens = Vec::new();
        let mut records = setup();
        let mut at = T0;
        for (i, (k, t, n)) in ops.iter().enumerate() {
            at += 700;
            let op = make_op(&live, *k, *t, *n, &mut tokens);
            records.push(OpRecord { at, op });
            if deletes && i == ops.len() / 2 {
                records.push(OpRecord { at, op: Op::DeleteSubscription { topic: "t".into(), name: "s2".into() } });
                records.push(OpRecord { at, op: Op::CreateSubscription { topic: "t".into(), name: "s2".into(), props: EntityProps::default(), rule: None } });
            }
        }
        for (i, rec) in records.iter().enumerate() {
            if live.apply(rec).changed {
                lsn += 1;
                journal.push((lsn, rec.clone()));
            }
            if cuts.contains(&i) {
                let d = live.take_delta(false, lsn, rec.at).unwrap();
                store.apply(&d);
            }
        }
        let snap = store.snapshot();
        let mut restored = Broker::restore(&snap, T0).unwrap();
        for (l, rec) in &journal {
            if *l > snap.lsn {
                let _ = restored.apply(rec);
            }
        }
        prop_assert_eq!(dump(&restored), dump(&live));
    }
}
