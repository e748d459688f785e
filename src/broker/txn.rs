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
//! - `schedule-message` is answered at once with the sequence numbers, before commit (the .NET
//!   SDK's live tests `TransactionalSendMultipleSessions` and
//!   `TransactionalSendMultipleSessionsRollback`, Azure.Messaging.ServiceBus
//!   tests/Transactions/TransactionLiveTests.cs, schedule inside a `TransactionScope`): the
//!   numbers are reserved at once ([`Op::ReserveSequenceNumbers`]) and the messages are stored
//!   with them at commit ([`Op::SendReserved`]); a rollback leaves a gap in the numbering.
//! - "A transaction times out after 2 minutes. The transaction timer starts when the first
//!   operation in the transaction starts." A timed-out transaction is rolled back.
//!
//! The buffer lives in the service, in memory: a crash before commit loses it, which is a
//! rollback. The commit is one [`Op::Commit`] record, so the operation log holds a transaction
//! wholly or not at all.

use super::entities::{queue_key, topic_key};
use super::error::BrokerError;
use super::message::{Content, MessageState};
use super::messaging::{check_session_lock, wake_key_of};
use super::op::{Op, QueuePath, ReservedMessage, Settlement};
use super::store::MessageStore;
use super::{Broker, Outcome};
use crate::time::Millis;
use std::collections::{BTreeMap, BTreeSet};

/// The service's transaction timeout: two minutes from the first operation.
pub const DEFAULT_TIMEOUT_MS: i64 = 120_000;

/// How long a timed-out transaction's id is remembered (answers `timeout`, not `unknown-id`).
const TIMED_OUT_MEMORY_MS: i64 = 600_000;

/// The service's answer when a transaction reaches a second top-level entity.
pub const CROSS_ENTITY: &str =
    "Local transactions cannot span multiple top-level entities such as queue or topic.";

impl Broker {
    /// Applies a committed transaction: every part, or (if one cannot apply) none.
    ///
    /// Validate, then apply: every part is first checked against the current state without
    /// changing it ([`Broker::check_commit`]: entities exist and accept the operation, locks
    /// are held at `now` and not settled twice within the transaction, sizes and quotas hold,
    /// scheduled messages are still scheduled); only then are the parts applied in order. No
    /// copy of the state is taken, so a commit costs what its parts cost, however many
    /// messages the namespace stores. Replay runs the same checks on the same state, so a
    /// refused commit is refused again and an applied one applies the same way.
    pub(super) fn commit(&mut self, ops: &[Op], now: Millis) -> Result<Outcome, BrokerError> {
        if let Some(bad) = ops.iter().find(|op| !enlistable(op)) {
            return Err(BrokerError::BadRequest(format!(
                "The operation {} cannot be part of a transaction.",
                bad.name()
            )));
        }
        self.check_commit(ops, now)?;
        let mut sequence_numbers = Vec::new();
        for op in ops {
            let out = match op {
                // Checked above (quota included, counting the transaction's earlier sends).
                Op::Send { entity, messages } => {
                    let k = crate::names::key(entity);
                    sequence_numbers.extend(self.enqueue_checked(&k, messages, now));
                    continue;
                }
                Op::SendReserved { entity, messages } => {
                    let k = crate::names::key(entity);
                    sequence_numbers.extend(self.enqueue_reserved(&k, messages, now));
                    continue;
                }
                other => self.apply_op(other, now),
            };
            // Cannot fail once checked; if it ever did, say so loudly in tests rather than
            // leave the failure unseen.
            debug_assert!(out.is_ok(), "checked commit part failed: {op:?} → {out:?}");
            out?;
        }
        Ok(Outcome::Sent { sequence_numbers })
    }

    /// Checks that every part of a transaction can apply, in order, without changing the
    /// state. What an earlier part changes that a later one depends on is tracked: the bytes
    /// sent to each entity (quota), the locks already settled, the scheduled messages
    /// already cancelled and the reserved sequence numbers already used. A message the
    /// transaction itself schedules does not exist before commit, so it is not cancellable
    /// within the transaction (a `cancel-scheduled-message` for it is refused when made).
    /// A reserved number a stored message holds is refused even if an earlier part removes
    /// that message (a reserved number is never held, so this errs only on the refusing side). Timers that fall due at `now` run before a settlement applies, so a
    /// lock counts as held only while `locked_until > now` (what they leave held), and only
    /// messages scheduled after `now` count as cancellable (at `now` they are enqueued).
    pub fn check_commit(&self, ops: &[Op], now: Millis) -> Result<(), BrokerError> {
        let mut sent: BTreeMap<String, u64> = BTreeMap::new();
        let mut settled: BTreeSet<(String, uuid::Uuid)> = BTreeSet::new();
        let mut cancelled: BTreeSet<(String, u64)> = BTreeSet::new();
        let mut reserved: BTreeSet<(String, u64)> = BTreeSet::new();
        for op in ops {
            match op {
                Op::Send { entity, messages } => {
                    let k = crate::names::key(entity);
                    let pending = sent.get(&k).copied().unwrap_or(0);
                    self.check_send(entity, messages, pending)?;
                    let bytes: u64 = messages.iter().map(|m| m.size() as u64).sum();
                    *sent.entry(k).or_default() += bytes;
                }
                Op::SendReserved { entity, messages } => {
                    let k = crate::names::key(entity);
                    let pending = sent.get(&k).copied().unwrap_or(0);
                    self.check_reserved(entity, messages, pending, &mut reserved)?;
                    let bytes: u64 = messages.iter().map(|r| r.message.size() as u64).sum();
                    *sent.entry(k).or_default() += bytes;
                }
                Op::Settle {
                    from,
                    lock_token,
                    settlement,
                } => {
                    let (rcv, _) = self.receivable(from)?;
                    let store = if from.dead_letter {
                        &rcv.dlq
                    } else {
                        &rcv.main
                    };
                    Self::locked_seq(store, lock_token, now)?;
                    // Every settlement releases the lock: a second one has none to use.
                    if !settled.insert((wake_key_of(from), *lock_token)) {
                        return Err(BrokerError::MessageLockLost);
                    }
                    if from.dead_letter && matches!(settlement, Settlement::DeadLetter { .. }) {
                        return Err(BrokerError::BadRequest(
                            "A message in a dead-letter queue cannot be dead-lettered.".into(),
                        ));
                    }
                }
                Op::CancelScheduled {
                    entity,
                    sequence_numbers,
                } => {
                    let k = crate::names::key(entity);
                    let stores: Vec<&MessageStore> = if let Some(q) = self.queues.get(&k) {
                        vec![&q.q.main]
                    } else if let Some(t) = self.topics.get(&k) {
                        t.subs.values().map(|s| &s.q.main).collect()
                    } else {
                        return Err(BrokerError::EntityNotFound(entity.to_string()));
                    };
                    let mut found = false;
                    for seq in sequence_numbers {
                        let scheduled = stores.iter().any(|st| {
                            st.get(*seq).is_some_and(|m| {
                                m.state == MessageState::Scheduled && m.enqueued_time > now
                            })
                        });
                        found |= scheduled && cancelled.insert((k.clone(), *seq));
                    }
                    if let (false, Some(first)) = (found, sequence_numbers.first()) {
                        return Err(BrokerError::MessageNotFound(*first));
                    }
                }
                Op::SetSessionState { from, session, .. } => {
                    let (rcv, _) = self.receivable(from)?;
                    check_session_lock(rcv, session, now)?;
                }
                other => {
                    return Err(BrokerError::BadRequest(format!(
                        "The operation {} cannot be part of a transaction.",
                        other.name()
                    )))
                }
            }
        }
        Ok(())
    }

    /// [`Op::ReserveSequenceNumbers`]: takes the next `count` sequence numbers of a queue or
    /// topic; nothing is stored.
    pub(super) fn reserve_sequence_numbers(
        &mut self,
        entity: &str,
        count: u32,
    ) -> Result<Outcome, BrokerError> {
        let k = crate::names::key(entity);
        let (counter, key) = if let Some(q) = self.queues.get_mut(&k) {
            (&mut q.next_seq, queue_key(&q.name))
        } else if let Some(t) = self.topics.get_mut(&k) {
            (&mut t.next_seq, topic_key(&t.name))
        } else {
            return Err(BrokerError::EntityNotFound(entity.to_string()));
        };
        let first = *counter;
        let end = first
            .checked_add(u64::from(count))
            .ok_or_else(|| BrokerError::BadRequest("Too many sequence numbers.".into()))?;
        *counter = end;
        if count > 0 {
            // The counter is part of the entity's snapshot.
            self.touch_entity(key);
        }
        Ok(Outcome::Sent {
            sequence_numbers: (first..end).collect(),
        })
    }

    /// [`Op::SendReserved`] on its own (a commit checks and applies it as one of its parts).
    pub(super) fn send_reserved(
        &mut self,
        entity: &str,
        messages: &[ReservedMessage],
        now: Millis,
    ) -> Result<Outcome, BrokerError> {
        let k = self.check_reserved(entity, messages, 0, &mut BTreeSet::new())?;
        Ok(Outcome::Sent {
            sequence_numbers: self.enqueue_reserved(&k, messages, now),
        })
    }

    /// Checks messages stored with reserved sequence numbers: as a send ([`Broker::check_send`],
    /// `pending` bytes already sent by the transaction), and each number was reserved on the
    /// entity (below its counter), is not held by a stored message (the entity was not deleted
    /// and created again past it), and is not used twice (`used` holds the numbers earlier
    /// parts of the transaction used). Returns the entity key.
    fn check_reserved(
        &self,
        entity: &str,
        messages: &[ReservedMessage],
        pending: u64,
        used: &mut BTreeSet<(String, u64)>,
    ) -> Result<String, BrokerError> {
        let k = self.check_send(entity, messages.iter().map(|r| &r.message), pending)?;
        let (next, stores): (u64, Vec<&MessageStore>) = if let Some(q) = self.queues.get(&k) {
            (q.next_seq, vec![&q.q.main, &q.q.dlq])
        } else if let Some(t) = self.topics.get(&k) {
            let stores = t.subs.values().flat_map(|s| [&s.q.main, &s.q.dlq]);
            (t.next_seq, stores.collect())
        } else {
            return Err(BrokerError::EntityNotFound(entity.to_string()));
        };
        for r in messages {
            let seq = r.sequence_number;
            let stored = stores.iter().any(|st| st.get(seq).is_some());
            if seq >= next || stored || !used.insert((k.clone(), seq)) {
                return Err(BrokerError::BadRequest(format!(
                    "The sequence number {seq} is not reserved on {entity}."
                )));
            }
        }
        Ok(k)
    }

    /// Stores messages [`Broker::check_reserved`] accepted, each with its reserved number;
    /// returns the numbers stored (duplicates dropped by detection are absent).
    fn enqueue_reserved(&mut self, k: &str, messages: &[ReservedMessage], now: Millis) -> Vec<u64> {
        let to_queue = self.queues.contains_key(k);
        messages
            .iter()
            .filter_map(|r| {
                // Taken by the first entity the message is stored in (not by a ForwardTo
                // target, nor by a further copy a rule action makes).
                self.reserved_seq = Some(r.sequence_number);
                let content = std::sync::Arc::new(Content::from(r.message.clone()));
                let stored = if to_queue {
                    self.enqueue_queue(k, &content, now, 0, None)
                } else {
                    self.enqueue_topic(k, &content, now, 0)
                };
                self.reserved_seq = None;
                stored
            })
            .collect()
    }
}

/// The sequence number a newly stored message takes: the one reserved for it (taken, so only
/// the first entity it is stored in uses it; see [`Op::SendReserved`]), else its entity's next.
pub(super) fn take_sequence_number(next: &mut u64, reserved: &mut Option<u64>) -> u64 {
    reserved.take().unwrap_or_else(|| {
        let seq = *next;
        *next += 1;
        seq
    })
}

/// Operations a transaction may carry (see the module documentation).
fn enlistable(op: &Op) -> bool {
    match op {
        Op::Send { .. }
        | Op::SendReserved { .. }
        | Op::CancelScheduled { .. }
        | Op::SetSessionState { .. } => true,
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
        self.enlist(id, top_level(bound), Some(op), now)
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
        self.enlist(id, top_level(&from.entity), Some(op), now)
    }

    /// Buffers another part (a cancellation of scheduled messages, a session state) made on
    /// the entity `on`.
    pub fn enlist_op(&mut self, id: u64, on: &str, op: Op, now: Millis) -> Result<(), TxnError> {
        if !enlistable(&op) {
            return Err(TxnError::NotAllowed(format!(
                "The operation {} cannot be part of a transaction.",
                op.name()
            )));
        }
        self.enlist(id, top_level(on), Some(op), now)
    }

    /// Counts an operation that takes effect at once (a lock renewal) as part of the
    /// transaction: the id must be open, the entity `on` must be the transaction's, and the
    /// timer starts if this is the first operation.
    pub fn touch(&mut self, id: u64, on: &str, now: Millis) -> Result<(), TxnError> {
        self.enlist(id, top_level(on), None, now)
    }

    fn enlist(
        &mut self,
        id: u64,
        entity: String,
        op: Option<Op>,
        now: Millis,
    ) -> Result<(), TxnError> {
        self.check(id)?;
        let t = self.open.get_mut(&id).ok_or(TxnError::UnknownId)?;
        match &t.entity {
            Some(e) if *e != entity => return Err(TxnError::CrossEntity),
            _ => t.entity = Some(entity),
        }
        t.first_op_at.get_or_insert(now);
        t.ops.extend(op);
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

    /// A tiny deterministic generator (xorshift) for the randomized check below.
    struct Rng(u64);
    impl Rng {
        fn below(&mut self, n: u64) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0 % n
        }
    }

    /// What a test can observe of queues `a` (and its dead-letter queue) and `b`.
    fn observed(b: &Broker) -> String {
        let dlq = QueuePath {
            dead_letter: true,
            ..QueuePath::queue("a")
        };
        [QueuePath::queue("a"), dlq, QueuePath::queue("b")]
            .iter()
            .map(|p| format!("{:?}", b.peek(p, 0, 1000)))
            .collect()
    }

    /// The check agrees with applying the parts one by one on a copy, over random
    /// transactions of sends (to present, missing and full entities, with and without ids),
    /// settlements (held, unknown and repeated locks; dead-lettering from the dead-letter
    /// queue) and cancellations (scheduled, active and unknown messages); and an accepted
    /// commit leaves exactly the state the one-by-one application leaves.
    #[test]
    fn the_check_agrees_with_applying_the_parts_in_order() {
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
        for _ in 0..400 {
            let mut b = broker();
            for i in 0..4 {
                apply(&mut b, 5, send("a", &format!("m{i}"))).expect("send");
            }
            let later = NewMessage {
                message_id: "later".into(),
                scheduled_enqueue_time: Some(10_000),
                ..NewMessage::default()
            };
            let scheduled = match apply(
                &mut b,
                5,
                Op::Send {
                    entity: "a".into(),
                    messages: vec![later],
                },
            ) {
                Ok(Outcome::Sent { sequence_numbers }) => sequence_numbers[0],
                other => panic!("schedule: {other:?}"),
            };
            let tokens: Vec<uuid::Uuid> = receive(&mut b, "a")
                .iter()
                .filter_map(|m| m.lock.map(|l| l.token))
                .collect();
            // Two numbers reserved on `a` (a transaction's scheduled messages).
            let reserved = match apply(
                &mut b,
                6,
                Op::ReserveSequenceNumbers {
                    entity: "a".into(),
                    count: 2,
                },
            ) {
                Ok(Outcome::Sent { sequence_numbers }) => sequence_numbers,
                other => panic!("reserve: {other:?}"),
            };
            let mut ops = Vec::new();
            for _ in 0..1 + rng.below(4) {
                ops.push(match rng.below(4) {
                    // Reserved numbers (twice, or on another entity) and a never reserved one;
                    // scheduled for later or for now. (A number a stored message holds is
                    // refused even when an earlier part removes that message, where applying
                    // one by one would accept it: a reserved number is never held, and
                    // refusing more is the safe side. `reserved_numbers_are_used_at_commit…`
                    // covers a taken number.)
                    3 => Op::SendReserved {
                        entity: ["a", "a", "b", "missing"][rng.below(4) as usize].into(),
                        messages: vec![ReservedMessage {
                            sequence_number: [reserved[0], reserved[1], 999][rng.below(3) as usize],
                            message: NewMessage {
                                message_id: "r".into(),
                                scheduled_enqueue_time: [None, Some(10_000)][rng.below(2) as usize],
                                ..NewMessage::default()
                            },
                        }],
                    },
                    0 => {
                        let entity = ["a", "b", "missing"][rng.below(3) as usize];
                        let mut m = NewMessage {
                            message_id: ["x", ""][usize::from(rng.below(8) == 0)].into(),
                            ..NewMessage::default()
                        };
                        if rng.below(4) == 0 {
                            // Half a megabyte: the third such send in one commit passes the
                            // 1 MB quota set below.
                            m.body = vec![0; 512 * 1024];
                        }
                        Op::Send {
                            entity: entity.into(),
                            messages: vec![m],
                        }
                    }
                    1 => {
                        let token = match rng.below(5) {
                            4 => uuid::Uuid::new_v4(),
                            n => tokens[n as usize % tokens.len()],
                        };
                        let settlement = match rng.below(4) {
                            0 => Settlement::Complete,
                            1 => Settlement::Abandon {
                                properties: Default::default(),
                            },
                            2 => Settlement::Defer {
                                properties: Default::default(),
                            },
                            _ => Settlement::DeadLetter {
                                reason: None,
                                description: None,
                                properties: Default::default(),
                            },
                        };
                        Op::Settle {
                            from: QueuePath {
                                dead_letter: rng.below(6) == 0,
                                ..QueuePath::queue("a")
                            },
                            lock_token: token,
                            settlement,
                        }
                    }
                    _ => Op::CancelScheduled {
                        entity: ["a", "missing"][usize::from(rng.below(6) == 0)].into(),
                        sequence_numbers: vec![[scheduled, 1, 99][rng.below(3) as usize]],
                    },
                });
            }
            // A small quota on b, so sends can run out of room within one commit.
            if let Some(q) = b.queues.get_mut("b") {
                q.props.max_size_in_megabytes = 1;
                q.props.max_message_size_in_kilobytes = 1024;
            }
            let now = 20;
            let checked = b.check_commit(&ops, now);
            let mut one_by_one = b.clone();
            let stepwise: Result<Vec<Outcome>, BrokerError> =
                ops.iter().map(|op| one_by_one.apply_op(op, now)).collect();
            assert_eq!(
                checked.is_ok(),
                stepwise.is_ok(),
                "{ops:?}: check {checked:?}, one by one {stepwise:?}"
            );
            if checked.is_ok() {
                apply(&mut b, now, Op::Commit { ops: ops.clone() }).expect("commit");
                assert_eq!(observed(&b), observed(&one_by_one), "{ops:?}");
            } else {
                let before = observed(&b);
                assert!(apply(&mut b, now, Op::Commit { ops }).is_err());
                assert_eq!(observed(&b), before, "a refused commit changes nothing");
            }
        }
    }

    /// The commit no longer copies the namespace: its cost stays flat when another queue
    /// holds 100 times more messages (a copy of the state would make it ~100 times slower).
    #[test]
    fn commit_cost_does_not_grow_with_stored_messages() {
        fn median_commit(stored: usize) -> std::time::Duration {
            let mut b = broker();
            apply(
                &mut b,
                1,
                Op::CreateQueue {
                    name: "big".into(),
                    props: EntityProps::default(),
                },
            )
            .expect("create");
            for chunk in 0..stored / 1000 {
                let messages = (0..1000)
                    .map(|i| NewMessage {
                        message_id: format!("s{chunk}-{i}"),
                        ..NewMessage::default()
                    })
                    .collect();
                apply(
                    &mut b,
                    2,
                    Op::Send {
                        entity: "big".into(),
                        messages,
                    },
                )
                .expect("fill");
            }
            let mut times = Vec::new();
            for i in 0..31 {
                apply(&mut b, 5, send("a", &format!("in{i}"))).expect("send");
                let token = receive(&mut b, "a")[0].lock.expect("locked").token;
                let ops = vec![
                    Op::Settle {
                        from: QueuePath::queue("a"),
                        lock_token: token,
                        settlement: Settlement::Complete,
                    },
                    send("b", &format!("out{i}")),
                ];
                let started = std::time::Instant::now();
                apply(&mut b, 20, Op::Commit { ops }).expect("commit");
                times.push(started.elapsed());
            }
            times.sort();
            times[times.len() / 2]
        }
        let small = median_commit(1_000);
        let large = median_commit(100_000);
        eprintln!("median commit: 1,000 stored {small:?}, 100,000 stored {large:?}");
        assert!(
            large <= small * 10 + std::time::Duration::from_millis(1),
            "commit with 100,000 stored messages took {large:?} vs {small:?} with 1,000"
        );
    }

    /// Session state set in a transaction (the .NET SDK's Sample06 `SetSessionStateAsync` in a
    /// scope) applies at commit while the session lock is held; with a lock the receiver does
    /// not hold, the whole commit is refused and its send is not applied either.
    #[test]
    fn session_state_commits_only_under_the_session_lock() {
        let mut b = broker();
        apply(
            &mut b,
            1,
            Op::CreateQueue {
                name: "s".into(),
                props: EntityProps {
                    requires_session: true,
                    ..EntityProps::default()
                },
            },
        )
        .expect("create");
        let m = NewMessage {
            message_id: "m".into(),
            session_id: Some("s1".into()),
            ..NewMessage::default()
        };
        apply(
            &mut b,
            2,
            Op::Send {
                entity: "s".into(),
                messages: vec![m],
            },
        )
        .expect("send");
        let token = uuid::Uuid::new_v4();
        let from = QueuePath::queue("s");
        apply(
            &mut b,
            3,
            Op::AcceptSession {
                from: from.clone(),
                select: crate::broker::op::SessionSelect::Id("s1".into()),
                token,
            },
        )
        .expect("accept");
        let set = |token| Op::SetSessionState {
            from: from.clone(),
            session: crate::broker::op::SessionRef {
                id: "s1".into(),
                token,
            },
            state: Some(b"state".to_vec()),
        };
        let refused = apply(
            &mut b,
            4,
            Op::Commit {
                ops: vec![send("b", "x"), set(uuid::Uuid::new_v4())],
            },
        );
        assert!(
            matches!(refused, Err(BrokerError::SessionLockLost(_))),
            "{refused:?}"
        );
        assert_eq!(b.queue_info("b").expect("b").counts.active, 0);
        assert_eq!(b.session_state(&from, "s1").expect("state"), None);
        apply(
            &mut b,
            5,
            Op::Commit {
                ops: vec![send("b", "x"), set(token)],
            },
        )
        .expect("commit");
        assert_eq!(
            b.session_state(&from, "s1").expect("state"),
            Some(b"state".to_vec())
        );
        assert_eq!(b.queue_info("b").expect("b").counts.active, 1);
    }

    /// A transaction's scheduled message: its number is reserved at once (answered before
    /// commit), it is stored with exactly that number at commit (even when due now, it is not
    /// there before), a reservation never committed leaves a gap, and replaying the records
    /// (what recovery does with the operation log) gives the same state and counter.
    #[test]
    fn reserved_numbers_are_used_at_commit_and_replay_the_same() {
        let mut records = Vec::new();
        let mut b = broker();
        // What the service journals: the records that changed the state.
        let mut run = |b: &mut Broker, at: Millis, op: Op| {
            let rec = OpRecord { at, op };
            let applied = b.apply(&rec);
            if applied.changed {
                records.push(rec);
            }
            applied.result
        };
        run(&mut b, 2, send("a", "first")).expect("send");
        let reserve = || Op::ReserveSequenceNumbers {
            entity: "A".into(),
            count: 1,
        };
        let seq = match run(&mut b, 3, reserve()) {
            Ok(Outcome::Sent { sequence_numbers }) => sequence_numbers[0],
            other => panic!("reserve: {other:?}"),
        };
        assert_eq!(seq, 2);
        assert_eq!(
            b.peek(&QueuePath::queue("a"), 0, 10).expect("peek").len(),
            1
        );
        run(&mut b, 4, send("a", "after")).expect("send");
        let scheduled_now = Op::SendReserved {
            entity: "a".into(),
            messages: vec![ReservedMessage {
                sequence_number: seq,
                message: NewMessage {
                    message_id: "scheduled".into(),
                    scheduled_enqueue_time: Some(3),
                    ..NewMessage::default()
                },
            }],
        };
        let out = run(
            &mut b,
            5,
            Op::Commit {
                ops: vec![scheduled_now.clone()],
            },
        );
        assert_eq!(
            out,
            Ok(Outcome::Sent {
                sequence_numbers: vec![seq]
            })
        );
        // Committed once: the number is taken now.
        let again = run(
            &mut b,
            6,
            Op::Commit {
                ops: vec![scheduled_now],
            },
        );
        assert!(
            matches!(again, Err(BrokerError::BadRequest(_))),
            "{again:?}"
        );
        // A reservation never committed (a rollback): a gap.
        run(&mut b, 7, reserve()).expect("reserve");
        let last = run(&mut b, 8, send("a", "last"));
        assert_eq!(
            last,
            Ok(Outcome::Sent {
                sequence_numbers: vec![5]
            })
        );
        let seqs = |b: &Broker| -> Vec<(u64, String)> {
            b.peek(&QueuePath::queue("a"), 0, 10)
                .expect("peek")
                .iter()
                .map(|m| (m.sequence_number, m.content.message_id().to_string()))
                .collect()
        };
        let want: Vec<(u64, String)> = [(1, "first"), (2, "scheduled"), (3, "after"), (5, "last")]
            .iter()
            .map(|(n, id)| (*n, id.to_string()))
            .collect();
        assert_eq!(seqs(&b), want);
        // Replay from the encoded records on a fresh broker.
        let mut replayed = broker();
        for rec in &records {
            let json = serde_json::to_vec(rec).expect("encode");
            let back: OpRecord = serde_json::from_slice(&json).expect("decode");
            let _ = replayed.apply(&back);
        }
        assert_eq!(seqs(&replayed), want);
        assert_eq!(observed(&replayed), observed(&b));
        assert_eq!(
            apply(&mut replayed, 9, send("a", "next")),
            apply(&mut b, 9, send("a", "next")),
            "the counter replays the same"
        );
        // A number never reserved, or one reserved before the entity was deleted and created
        // again (a message holds it now), is refused.
        let reserved_on = |b: &mut Broker, seq| {
            let ops = vec![Op::SendReserved {
                entity: "a".into(),
                messages: vec![ReservedMessage {
                    sequence_number: seq,
                    message: NewMessage {
                        message_id: "x".into(),
                        ..NewMessage::default()
                    },
                }],
            }];
            apply(b, 10, Op::Commit { ops })
        };
        let never = reserved_on(&mut b, 99);
        assert!(
            matches!(never, Err(BrokerError::BadRequest(_))),
            "{never:?}"
        );
        let seq = match apply(&mut b, 11, reserve()) {
            Ok(Outcome::Sent { sequence_numbers }) => sequence_numbers[0],
            other => panic!("reserve: {other:?}"),
        };
        apply(&mut b, 12, Op::DeleteQueue { name: "a".into() }).expect("delete");
        let create = Op::CreateQueue {
            name: "a".into(),
            props: EntityProps::default(),
        };
        apply(&mut b, 12, create).expect("create");
        for i in 0..seq {
            apply(&mut b, 13, send("a", &format!("new{i}"))).expect("send");
        }
        let reused = reserved_on(&mut b, seq);
        assert!(
            matches!(reused, Err(BrokerError::BadRequest(_))),
            "{reused:?}"
        );
    }

    /// On a topic, the reserved number is the topic's: the subscription's copy has it, and a
    /// ForwardTo target (here of the other subscription) numbers the message itself.
    #[test]
    fn a_reserved_number_on_a_topic_goes_to_every_subscription() {
        let mut b = broker();
        apply(
            &mut b,
            1,
            Op::CreateTopic {
                name: "t".into(),
                props: EntityProps::default(),
            },
        )
        .expect("topic");
        for (sub, forward_to) in [("s1", None), ("s2", Some("b".to_string()))] {
            apply(
                &mut b,
                1,
                Op::CreateSubscription {
                    topic: "t".into(),
                    name: sub.into(),
                    props: EntityProps {
                        forward_to,
                        ..EntityProps::default()
                    },
                    rule: None,
                },
            )
            .expect("subscription");
        }
        apply(&mut b, 2, send("b", "b1")).expect("send");
        let seq = match apply(
            &mut b,
            2,
            Op::ReserveSequenceNumbers {
                entity: "t".into(),
                count: 1,
            },
        ) {
            Ok(Outcome::Sent { sequence_numbers }) => sequence_numbers[0],
            other => panic!("reserve: {other:?}"),
        };
        apply(&mut b, 3, send("t", "plain")).expect("send");
        let ops = vec![Op::SendReserved {
            entity: "t".into(),
            messages: vec![ReservedMessage {
                sequence_number: seq,
                message: NewMessage {
                    message_id: "r".into(),
                    ..NewMessage::default()
                },
            }],
        }];
        apply(&mut b, 4, Op::Commit { ops }).expect("commit");
        let ids = |p: &QueuePath| -> Vec<(u64, String)> {
            b.peek(p, 0, 10)
                .expect("peek")
                .iter()
                .map(|m| (m.sequence_number, m.content.message_id().to_string()))
                .collect()
        };
        let s1 = ids(&QueuePath::subscription("t", "s1"));
        assert_eq!(s1, vec![(1, "r".into()), (2, "plain".into())]);
        let forwarded = ids(&QueuePath::queue("b"));
        assert_eq!(
            forwarded,
            vec![(1, "b1".into()), (2, "plain".into()), (3, "r".into())]
        );
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
