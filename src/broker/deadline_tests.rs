//! The deadline index against the full scan it replaces: after every operation of random
//! workloads (sends with TTL and schedules, locks, sessions, forwarding, auto-delete on idle,
//! entity create/update/delete, purge, restore) the index holds exactly each entity's due time.

use super::deadlines::Deadlines;
use super::entity::{EntityProps, Rule};
use super::message::NewMessage;
use super::op::{Op, OpRecord, QueuePath, ReceiveMode, SessionRef, SessionSelect, Settlement};
use super::{Broker, Outcome};
use crate::time::{Millis, TimeSpan};
use proptest::prelude::*;
use std::collections::BTreeMap;
use uuid::Uuid;

const T0: Millis = 1_700_000_000_000;
fn idle() -> TimeSpan {
    TimeSpan::from_secs(5 * 60)
}

/// Every entity's due time, recomputed from scratch.
fn rebuilt(b: &Broker) -> Deadlines {
    let mut c = b.clone();
    c.rebuild_deadlines();
    c.deadlines
}

/// The broker's whole state in a comparable form: every entity and message record (their JSON
/// parsed, so map order does not matter) and the broker-wide state.
fn state_of(b: &Broker, at: Millis) -> Result<Vec<String>, TestCaseError> {
    let snap = b.full_snapshot(1, at).map_err(TestCaseError::fail)?;
    let json = |raw: &serde_json::value::RawValue| {
        serde_json::from_str::<serde_json::Value>(raw.get())
            .map(|v| v.to_string())
            .map_err(|e| TestCaseError::fail(e.to_string()))
    };
    let mut out = Vec::new();
    for e in &snap.entities {
        out.push(format!("{:?} {}", e.key, json(&e.data)?));
    }
    for m in &snap.messages {
        out.push(format!("{:?} {}", m.key, json(&m.data)?));
    }
    if let Some(state) = &snap.state {
        out.push(json(state)?);
    }
    Ok(out)
}

fn check(b: &Broker) -> Result<(), TestCaseError> {
    prop_assert_eq!(b.next_due(), b.next_due_scan());
    prop_assert_eq!(b.deadlines.entries(), rebuilt(b).entries());
    Ok(())
}

fn props() -> EntityProps {
    EntityProps {
        max_delivery_count: 2,
        lock_duration: TimeSpan::from_secs(3),
        auto_delete_on_idle: idle(),
        ..Default::default()
    }
}

fn setup() -> Vec<Op> {
    let session = EntityProps {
        requires_session: true,
        ..props()
    };
    vec![
        Op::CreateQueue {
            name: "B".into(),
            props: EntityProps {
                dead_lettering_on_message_expiration: true,
                ..props()
            },
        },
        Op::CreateQueue {
            name: "a".into(),
            props: EntityProps {
                forward_dead_lettered_messages_to: Some("b".into()),
                ..props()
            },
        },
        Op::CreateQueue {
            name: "sq".into(),
            props: session.clone(),
        },
        Op::CreateTopic {
            name: "t".into(),
            props: props(),
        },
        Op::CreateSubscription {
            topic: "t".into(),
            name: "S1".into(),
            props: props(),
            rule: None,
        },
        Op::CreateSubscription {
            topic: "t".into(),
            name: "s2".into(),
            props: session,
            rule: None,
        },
        Op::CreateQueue {
            name: "f".into(),
            props: EntityProps {
                forward_to: Some("t".into()),
                ..props()
            },
        },
    ]
}

/// Remembered lock tokens and session locks, to settle and renew with.
#[derive(Default)]
struct Held {
    locks: Vec<(QueuePath, Uuid)>,
    sessions: Vec<(QueuePath, SessionRef)>,
}

fn make_op(kind: u8, target: u8, n: u8, held: &mut Held) -> Op {
    let plain = [
        QueuePath::queue("a"),
        QueuePath::queue("b"),
        QueuePath::subscription("t", "s1"),
        QueuePath::queue("a").dlq(),
        QueuePath::queue("B").dlq(),
    ];
    let sessionful = [QueuePath::queue("sq"), QueuePath::subscription("T", "S2")];
    let p = plain[target as usize % plain.len()].clone();
    let sp = sessionful[target as usize % 2].clone();
    let tok = Uuid::from_u64_pair(n as u64, kind as u64 * 31 + target as u64);
    match kind {
        0..=2 => {
            let mut m = NewMessage {
                message_id: format!("m{n}"),
                body: vec![n],
                ..Default::default()
            };
            if n.is_multiple_of(3) {
                m.time_to_live = Some(TimeSpan::from_secs(4));
            }
            if n % 4 == 1 {
                m.scheduled_enqueue_time = Some(T0 + 2_000 * n as i64);
            }
            let entity = ["a", "b", "sq", "t", "f"][target as usize % 5];
            if entity == "sq" || entity == "t" {
                m.session_id = Some(format!("s{}", n % 2));
            }
            Op::Send {
                entity: entity.into(),
                messages: vec![m],
            }
        }
        3 => {
            held.locks.push((p.clone(), tok));
            Op::Receive {
                from: p,
                mode: if n.is_multiple_of(5) {
                    ReceiveMode::ReceiveAndDelete
                } else {
                    ReceiveMode::PeekLock
                },
                max: 1 + n as u32 % 2,
                lock_tokens: vec![tok, Uuid::from_u64_pair(tok.as_u64_pair().0, 1)],
                session: None,
            }
        }
        4 => Op::AcceptSession {
            from: sp,
            select: if n.is_multiple_of(2) {
                SessionSelect::Next
            } else {
                SessionSelect::Id(format!("s{}", n % 2))
            },
            token: tok,
        },
        5 => match held
            .sessions
            .get(n as usize % held.sessions.len().max(1))
            .cloned()
        {
            Some((from, sref)) => {
                held.locks.push((from.clone(), tok));
                Op::Receive {
                    from,
                    mode: ReceiveMode::PeekLock,
                    max: 2,
                    lock_tokens: vec![tok],
                    session: Some(sref),
                }
            }
            None => Op::Tick,
        },
        6 => {
            let (from, lock_token) = held
                .locks
                .get(n as usize % held.locks.len().max(1))
                .cloned()
                .unwrap_or((p, Uuid::nil()));
            let settlement = match n % 5 {
                0 => Settlement::Complete,
                1 => Settlement::Abandon {
                    properties: BTreeMap::new(),
                },
                2 => Settlement::DeadLetter {
                    reason: None,
                    description: None,
                    properties: BTreeMap::new(),
                },
                3 => Settlement::Defer {
                    properties: BTreeMap::new(),
                },
                _ => Settlement::Release,
            };
            Op::Settle {
                from,
                lock_token,
                settlement,
            }
        }
        7 => {
            let (from, lock_token) = held.locks.last().cloned().unwrap_or((p, Uuid::nil()));
            Op::RenewLock { from, lock_token }
        }
        8 => match held
            .sessions
            .get(n as usize % held.sessions.len().max(1))
            .cloned()
        {
            Some((from, session)) => match n % 3 {
                0 => Op::RenewSessionLock { from, session },
                1 => Op::ReleaseSession { from, session },
                _ => Op::SetSessionState {
                    from,
                    session,
                    state: Some(vec![n]),
                },
            },
            None => Op::Tick,
        },
        9 => Op::Tick,
        10 => Op::CancelScheduled {
            entity: ["a", "t"][target as usize % 2].into(),
            sequence_numbers: vec![n as u64 % 6 + 1],
        },
        11 => Op::UpdateQueue {
            name: "A".into(),
            props: EntityProps {
                auto_delete_on_idle: if n.is_multiple_of(2) {
                    idle()
                } else {
                    TimeSpan::MAX
                },
                lock_duration: TimeSpan::from_secs(1 + n as i64 % 4),
                ..props()
            },
        },
        12 => match n % 6 {
            0 => Op::DeleteSubscription {
                topic: "t".into(),
                name: "s1".into(),
            },
            1 => Op::CreateSubscription {
                topic: "t".into(),
                name: "s1".into(),
                props: props(),
                rule: None,
            },
            2 => Op::DeleteTopic { name: "T".into() },
            3 => Op::CreateTopic {
                name: "t".into(),
                props: props(),
            },
            4 => Op::DeleteQueue { name: "a".into() },
            _ => Op::CreateRule {
                topic: "t".into(),
                subscription: "s1".into(),
                rule: Rule::default_rule(0),
            },
        },
        13 => Op::ReceiveDeferred {
            from: p,
            sequence_numbers: vec![n as u64 % 6 + 1],
            mode: ReceiveMode::PeekLock,
            lock_tokens: vec![tok],
        },
        _ if n == 0 => Op::PurgeAll,
        _ => Op::Tick,
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// After every operation the index equals a from-scratch recompute, so `next_due` equals
    /// the full scan; a snapshot restored at any point rebuilds the same index.
    #[test]
    fn deadline_index_matches_full_scan(
        ops in proptest::collection::vec((0u8..15, 0u8..10, 0u8..40, 0u8..8), 1..120),
        restore_at in 0usize..120,
    ) {
        let mut b = Broker::new(T0);
        for op in setup() {
            let ok = b.apply(&OpRecord { at: T0, op }).result.is_ok();
            prop_assert!(ok);
        }
        check(&b)?;
        let mut held = Held::default();
        let mut at = T0;
        for (i, (kind, target, n, gap)) in ops.into_iter().enumerate() {
            // Mostly small steps; now and then past the auto-delete-on-idle window.
            at += if gap == 7 { idle().as_millis() + 1 } else { gap as i64 * 600 };
            let op = make_op(kind, target, n, &mut held);
            // The indexed tick must do exactly what a tick over every entity does.
            let scanned = match op {
                Op::Tick => {
                    let mut c = b.clone();
                    c.tick_scan(at);
                    Some(state_of(&c, at)?)
                }
                _ => None,
            };
            let res = b.apply(&OpRecord { at, op: op.clone() }).result;
            if let Some(scanned) = scanned {
                prop_assert_eq!(state_of(&b, at)?, scanned);
            }
            if let (Op::AcceptSession { from, token, .. }, Ok(Outcome::SessionAccepted { session_id, .. })) = (&op, &res) {
                held.sessions.push((from.clone(), SessionRef { id: session_id.clone(), token: *token }));
            }
            check(&b)?;
            if i == restore_at {
                let snap = b.full_snapshot(1, at).map_err(TestCaseError::fail)?;
                let r = Broker::restore(&snap, at).map_err(TestCaseError::fail)?;
                prop_assert_eq!(r.deadlines.entries(), b.deadlines.entries());
                b = r;
            }
        }
    }
}

/// Cost of `next_due` with 10,000 queues, each with a locked message: the index against the
/// full scan it replaced. Run with
/// `cargo test --release --lib deadline_tests::bench -- --ignored --nocapture`.
#[test]
#[ignore]
fn bench_next_due_10k_queues() {
    let mut b = Broker::new(T0);
    let n = 10_000;
    for i in 0..n {
        let name = format!("q{i}");
        let rec = |op| OpRecord { at: T0, op };
        b.apply(&rec(Op::CreateQueue {
            name: name.clone(),
            props: EntityProps::default(),
        }));
        b.apply(&rec(Op::Send {
            entity: name.clone(),
            messages: vec![NewMessage {
                message_id: "m".into(),
                ..Default::default()
            }],
        }));
        b.apply(&rec(Op::Receive {
            from: QueuePath::queue(&name),
            mode: ReceiveMode::PeekLock,
            max: 1,
            lock_tokens: vec![],
            session: None,
        }));
    }
    let rounds = 2_000;
    let time = |f: &dyn Fn() -> Option<Millis>| {
        let start = std::time::Instant::now();
        for _ in 0..rounds {
            std::hint::black_box(f());
        }
        start.elapsed() / rounds
    };
    assert_eq!(b.next_due(), b.next_due_scan());
    let scan = time(&|| b.next_due_scan());
    let index = time(&|| b.next_due());
    println!("next_due with {n} queues: full scan {scan:?}, index {index:?} per call");
}
