//! AMQP transactions: the per-transaction buffer ([`Transactions`]) and the all-or-nothing
//! application of a committed transaction ([`Op::Commit`]).
//!
//! Service Bus semantics followed here (learn.microsoft.com, "Overview of Service Bus transaction
//! processing", service-bus-transactions.md):
//! - A transaction groups sends and the settlements complete, abandon, dead-letter and defer of
//!   messages received in peek-lock; receives are not part of it.
//! - Operations are against one top-level entity (a queue, or a topic with its subscriptions);
//!   other entities are reached only by "send via" that entity (the AMQP link attaches to the
//!   via entity with `com.microsoft:transfer-destination-address` naming the destination, see
//!   "AMQP 1.0 in Azure Service Bus and Event Hubs protocol guide"). Anything else is refused
//!   with the service's text: "Local transactions cannot span multiple top-level entities such
//!   as queue or topic."
//! - Nothing is visible before commit: buffered sends are not in any entity, and a buffered
//!   settlement leaves the message locked to its receiver.
//! - "A transaction times out after 2 minutes. The transaction timer starts when the first
//!   operation in the transaction starts." A timed-out transaction is rolled back.
//!
//! The buffer lives in the service, in memory: a crash before commit loses it, which is a
//! rollback. The commit is one [`Op::Commit`] record, so the operation log holds a transaction
//! wholly or not at all.

use super::error::BrokerError;
use super::op::{Op, QueuePath, Settlement};
use super::{Broker, Outcome};
use crate::time::Millis;
use std::collections::BTreeMap;

/// The service's transaction timeout: two minutes from the first operation.
pub const DEFAULT_TIMEOUT_MS: i64 = 120_000;

/// How long a timed-out transaction's id is remembered (answers `timeout`, not `unknown-id`).
const TIMED_OUT_MEMORY_MS: i64 = 600_000;

/// The service's answer when a transaction reaches a second top-level entity.
pub const CROSS_ENTITY: &str =
    "Local transactions cannot span multiple top-level entities such as queue or topic.";

impl Broker {
    /// Applies a committed transaction: every part, or (if one fails) none. The parts run in
    /// order on the live state; a failure restores the state captured before the first part,
    /// so a refused commit changes nothing (and replays the same way: apply is deterministic).
    pub(super) fn commit(&mut self, ops: &[Op], now: Millis) -> Result<Outcome, BrokerError> {
        if let Some(bad) = ops.iter().find(|op| !enlistable(op)) {
            return Err(BrokerError::BadRequest(format!(
                "The operation {} cannot be part of a transaction.",
                bad.name()
            )));
        }
        let before = self.clone();
        let mut sequence_numbers = Vec::new();
        for op in ops {
            match self.apply_op(op, now) {
                Ok(Outcome::Sent {
                    sequence_numbers: s,
                }) => sequence_numbers.extend(s),
                Ok(_) => {}
                Err(e) => {
                    *self = before;
                    return Err(e);
                }
            }
        }
        Ok(Outcome::Sent { sequence_numbers })
    }
}

/// Operations a transaction may carry (see the module documentation).
fn enlistable(op: &Op) -> bool {
    match op {
        Op::Send { .. } | Op::CancelScheduled { .. } => true,
        Op::Settle { settlement, .. } => !matches!(settlement, Settlement::Release),
        _ => false,
    }
}

/// Why a transactional operation or a discharge is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TxnError {
    /// No such transaction (never declared, already discharged, or rolled back by timeout).
    UnknownId,
    /// The transaction timed out and was rolled back.
    Timeout,
    /// The operation reaches a second top-level entity.
    CrossEntity,
    /// The operation cannot be transactional (receive, release, management).
    NotAllowed(String),
}

impl std::fmt::Display for TxnError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TxnError::UnknownId => write!(f, "The transaction is unknown or already discharged."),
            TxnError::Timeout => write!(f, "The transaction timed out and was rolled back."),
            TxnError::CrossEntity => write!(f, "{CROSS_ENTITY}"),
            TxnError::NotAllowed(s) => write!(f, "{s}"),
        }
    }
}

/// One open transaction.
#[derive(Debug, Clone, Default)]
struct Txn {
    declared_at: Millis,
    /// When the first operation was enlisted (the service's timer starts there).
    first_op_at: Option<Millis>,
    /// The top-level entity (lowercased) the transaction is bound to.
    entity: Option<String>,
    ops: Vec<Op>,
}

/// The open transactions of the namespace, by id. Ids are never reused.
#[derive(Debug, Clone)]
pub struct Transactions {
    open: BTreeMap<u64, Txn>,
    next_id: u64,
    timeout_ms: i64,
    /// Ids rolled back by the timer, so a late discharge answers `timeout`, not `unknown-id`.
    timed_out: BTreeMap<u64, Millis>,
}

impl Default for Transactions {
    fn default() -> Self {
        Transactions::new(DEFAULT_TIMEOUT_MS)
    }
}

impl Transactions {
    /// A table whose transactions time out `timeout_ms` after their first operation.
    pub fn new(timeout_ms: i64) -> Self {
        Transactions {
            open: BTreeMap::new(),
            next_id: 1,
            timeout_ms,
            timed_out: BTreeMap::new(),
        }
    }

    /// Opens a transaction; returns its id.
    pub fn declare(&mut self, now: Millis) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        self.open.insert(
            id,
            Txn {
                declared_at: now,
                ..Txn::default()
            },
        );
        id
    }

    fn check(&self, id: u64) -> Result<(), TxnError> {
        if self.open.contains_key(&id) {
            Ok(())
        } else if self.timed_out.contains_key(&id) {
            Err(TxnError::Timeout)
        } else {
            Err(TxnError::UnknownId)
        }
    }

    /// Buffers a send to `destination`. `via` is the link's target when it sends via another
    /// entity (the transaction is then bound to the via entity).
    pub fn enlist_send(
        &mut self,
        id: u64,
        via: Option<&str>,
        op: Op,
        now: Millis,
    ) -> Result<(), TxnError> {
        let Op::Send { entity, .. } = &op else {
            return Err(TxnError::NotAllowed("not a send".into()));
        };
        let bound = via.unwrap_or(entity);
        self.enlist(id, top_level(bound), op, now)
    }

    /// Buffers a settlement of a message received from `from`.
    pub fn enlist_settle(
        &mut self,
        id: u64,
        from: &QueuePath,
        lock_token: uuid::Uuid,
        settlement: Settlement,
        now: Millis,
    ) -> Result<(), TxnError> {
        if settlement == Settlement::Release {
            return Err(TxnError::NotAllowed(
                "A release cannot be part of a transaction.".into(),
            ));
        }
        let op = Op::Settle {
            from: from.clone(),
            lock_token,
            settlement,
        };
        self.enlist(id, top_level(&from.entity), op, now)
    }

    fn enlist(&mut self, id: u64, entity: String, op: Op, now: Millis) -> Result<(), TxnError> {
        self.check(id)?;
        let t = self.open.get_mut(&id).ok_or(TxnError::UnknownId)?;
        match &t.entity {
            Some(e) if *e != entity => return Err(TxnError::CrossEntity),
            _ => t.entity = Some(entity),
        }
        t.first_op_at.get_or_insert(now);
        t.ops.push(op);
        Ok(())
    }

    /// Ends a transaction: `Ok(ops)` to commit (empty on rollback or an empty transaction).
    pub fn discharge(&mut self, id: u64, fail: bool) -> Result<Vec<Op>, TxnError> {
        self.check(id)?;
        let t = self.open.remove(&id).ok_or(TxnError::UnknownId)?;
        Ok(if fail { Vec::new() } else { t.ops })
    }

    /// Rolls back every transaction past its timeout; returns their ids.
    pub fn expire(&mut self, now: Millis) -> Vec<u64> {
        let timeout = self.timeout_ms;
        let due: Vec<u64> = self
            .open
            .iter()
            .filter(|(_, t)| {
                t.first_op_at
                    .unwrap_or(t.declared_at)
                    .saturating_add(timeout)
                    <= now
            })
            .map(|(id, _)| *id)
            .collect();
        for id in &due {
            self.open.remove(id);
            self.timed_out.insert(*id, now);
        }
        // Remember timed-out ids for a while (a late discharge answers `timeout`), then forget.
        let keep = timeout.max(TIMED_OUT_MEMORY_MS);
        self.timed_out.retain(|_, at| at.saturating_add(keep) > now);
        due
    }

    /// When the next transaction times out, if any is open.
    pub fn next_due(&self) -> Option<Millis> {
        self.open
            .values()
            .map(|t| {
                t.first_op_at
                    .unwrap_or(t.declared_at)
                    .saturating_add(self.timeout_ms)
            })
            .min()
    }

    /// How many transactions are open.
    pub fn len(&self) -> usize {
        self.open.len()
    }

    /// Is no transaction open?
    pub fn is_empty(&self) -> bool {
        self.open.is_empty()
    }
}

/// The top-level entity of a path (`t/Subscriptions/s` → `t`), lowercased like entity keys.
fn top_level(path: &str) -> String {
    let first = path.split('/').next().unwrap_or(path);
    crate::names::key(first)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::broker::entity::EntityProps;
    use crate::broker::message::NewMessage;
    use crate::broker::op::{OpRecord, ReceiveMode};

    fn send(entity: &str, id: &str) -> Op {
        Op::Send {
            entity: entity.into(),
            messages: vec![NewMessage {
                message_id: id.into(),
                ..NewMessage::default()
            }],
        }
    }

    fn apply(b: &mut Broker, at: Millis, op: Op) -> Result<Outcome, BrokerError> {
        b.apply(&OpRecord { at, op }).result
    }

    fn broker() -> Broker {
        let mut b = Broker::new(0);
        for q in ["a", "b"] {
            apply(
                &mut b,
                1,
                Op::CreateQueue {
                    name: q.into(),
                    props: EntityProps::default(),
                },
            )
            .expect("create");
        }
        b
    }

    fn receive(b: &mut Broker, q: &str) -> Vec<crate::broker::message::Message> {
        match apply(
            b,
            10,
            Op::Receive {
                from: QueuePath::queue(q),
                mode: ReceiveMode::PeekLock,
                max: 10,
                lock_tokens: (0..10).map(|_| uuid::Uuid::new_v4()).collect(),
                session: None,
            },
        ) {
            Ok(Outcome::Received(m)) => m,
            other => panic!("receive: {other:?}"),
        }
    }

    #[test]
    fn commit_applies_every_part() {
        let mut b = broker();
        apply(&mut b, 5, send("a", "in")).expect("send");
        let got = receive(&mut b, "a");
        let token = got[0].lock.expect("locked").token;
        let out = apply(
            &mut b,
            20,
            Op::Commit {
                ops: vec![
                    Op::Settle {
                        from: QueuePath::queue("a"),
                        lock_token: token,
                        settlement: Settlement::Complete,
                    },
                    send("b", "out"),
                ],
            },
        );
        assert!(matches!(out, Ok(Outcome::Sent { .. })), "{out:?}");
        assert_eq!(b.queue_info("a").expect("a").counts.active, 0);
        assert_eq!(b.queue_info("b").expect("b").counts.active, 1);
    }

    #[test]
    fn a_failing_part_undoes_the_parts_before_it() {
        let mut b = broker();
        let out = apply(
            &mut b,
            20,
            Op::Commit {
                ops: vec![
                    send("b", "first"),
                    Op::Settle {
                        from: QueuePath::queue("a"),
                        lock_token: uuid::Uuid::new_v4(),
                        settlement: Settlement::Complete,
                    },
                ],
            },
        );
        assert_eq!(out, Err(BrokerError::MessageLockLost));
        assert_eq!(b.queue_info("b").expect("b").counts.active, 0);
    }

    #[test]
    fn non_transactional_parts_are_refused() {
        let mut b = broker();
        let out = apply(
            &mut b,
            20,
            Op::Commit {
                ops: vec![send("a", "x"), Op::PurgeAll],
            },
        );
        assert!(matches!(out, Err(BrokerError::BadRequest(_))));
        assert_eq!(b.queue_info("a").expect("a").counts.active, 0);
    }

    #[test]
    fn the_buffer_binds_to_one_top_level_entity() {
        let mut t = Transactions::new(1000);
        let id = t.declare(0);
        t.enlist_send(id, None, send("a", "1"), 1).expect("first");
        let from = QueuePath::queue("A");
        t.enlist_settle(id, &from, uuid::Uuid::nil(), Settlement::Complete, 2)
            .expect("same entity, any case");
        assert_eq!(
            t.enlist_send(id, None, send("b", "2"), 3),
            Err(TxnError::CrossEntity)
        );
        t.enlist_send(id, Some("a"), send("b", "3"), 3)
            .expect("send via the bound entity");
        let sub = QueuePath::subscription("t", "s");
        let id2 = t.declare(0);
        t.enlist_settle(id2, &sub, uuid::Uuid::nil(), Settlement::Complete, 1)
            .expect("subscription binds its topic");
        t.enlist_send(id2, Some("t"), send("a", "x"), 1)
            .expect("send via the topic");
        assert_eq!(t.discharge(id, false).expect("commit").len(), 3);
        assert_eq!(t.discharge(id, false), Err(TxnError::UnknownId));
        assert!(t.discharge(id2, true).expect("rollback").is_empty());
    }

    #[test]
    fn transactions_time_out_from_their_first_operation() {
        let mut t = Transactions::new(1000);
        let id = t.declare(0);
        t.enlist_send(id, None, send("a", "1"), 500)
            .expect("enlist");
        assert_eq!(t.next_due(), Some(1500));
        assert!(t.expire(1499).is_empty());
        assert_eq!(t.expire(1500), vec![id]);
        assert_eq!(t.discharge(id, false), Err(TxnError::Timeout));
        assert_eq!(
            t.enlist_send(id, None, send("a", "2"), 1600),
            Err(TxnError::Timeout)
        );
        assert!(t.is_empty());
    }
}
