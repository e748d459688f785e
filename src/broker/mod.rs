//! The broker: pure Service Bus state, no I/O, no clock.
//!
//! [`Broker::apply`] is the only way state changes: it takes an [`op::OpRecord`] (an operation
//! and its timestamp) and is deterministic, so replaying the operation log rebuilds the same
//! state. Read-only queries (entity info, peek, session state) take `&self`.
//!
//! - [`entities`]: create/update/delete of queues, topics, subscriptions and rules.
//! - [`messaging`]: send, fan-out, forwarding, receive, settle, locks, sessions and timers.
//! - [`persist`]: incremental snapshot deltas and restore from a snapshot.
//! - [`store`]: one message store with its indexes.
//! - [`txn`]: AMQP transactions: the per-transaction buffer and the all-or-nothing commit.

pub mod deadlines;
pub mod entities;
pub mod entity;
pub mod error;
pub mod filter;
pub mod message;
pub mod messaging;
pub mod op;
pub mod persist;
pub mod store;
pub mod txn;
pub mod value;

use crate::storage::EntityKey;
use crate::time::Millis;
use deadlines::{Deadlines, EntityId};
use entity::{CountDetails, EntityInfo, EntityKind, EntityProps, EntityTimes, Rule};
use error::BrokerError;
use filter::CompiledRule;
use message::Message;
use op::{Op, OpRecord, QueuePath};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use store::MessageStore;

/// What an operation produced, for the wire layer to answer with.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Done,
    /// Sequence numbers of the messages stored (duplicates dropped by detection are absent).
    Sent {
        sequence_numbers: Vec<u64>,
    },
    Received(Vec<Message>),
    LockRenewed {
        locked_until: Millis,
    },
    SessionAccepted {
        session_id: String,
        locked_until: Millis,
    },
}

/// A session's state and lock.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Session {
    #[serde(default)]
    pub state: Option<Vec<u8>>,
    #[serde(default)]
    pub lock: Option<message::Lock>,
}

/// Duplicate-detection history: message id → time it was first seen.
#[derive(Debug, Clone, Default)]
pub struct DupHistory {
    seen: BTreeMap<String, Millis>,
    by_time: BTreeSet<(Millis, String)>,
}

impl DupHistory {
    fn prune(&mut self, now: Millis, window_ms: i64) {
        let cutoff = now.saturating_sub(window_ms);
        while let Some((t, id)) = self.by_time.iter().next().cloned() {
            if t > cutoff {
                break;
            }
            self.by_time.remove(&(t, id.clone()));
            self.seen.remove(&id);
        }
    }
    fn contains(&self, id: &str) -> bool {
        self.seen.contains_key(id)
    }
    fn record(&mut self, id: &str, now: Millis) {
        if self.seen.insert(id.to_string(), now).is_none() {
            self.by_time.insert((now, id.to_string()));
        }
    }
    fn entries(&self) -> Vec<(String, Millis)> {
        self.by_time
            .iter()
            .map(|(t, id)| (id.clone(), *t))
            .collect()
    }
    fn from_entries(entries: Vec<(String, Millis)>) -> Self {
        let mut d = DupHistory::default();
        for (id, t) in entries {
            d.record(&id, t);
        }
        d
    }
}

/// The message-holding part shared by queues and subscriptions.
#[derive(Debug, Clone)]
pub struct Receivable {
    pub main: MessageStore,
    pub dlq: MessageStore,
    pub sessions: BTreeMap<String, Session>,
}

impl Receivable {
    fn new(requires_session: bool, track_changes: bool) -> Self {
        Receivable {
            main: MessageStore::new(requires_session, track_changes),
            dlq: MessageStore::new(false, track_changes),
            sessions: BTreeMap::new(),
        }
    }
    fn counts(&self) -> CountDetails {
        CountDetails {
            active: self.main.active_count(),
            dead_letter: self.dlq.len() as u64,
            scheduled: self.main.scheduled_count(),
            transfer: 0,
            transfer_dead_letter: 0,
            deferred: self.main.deferred_count(),
        }
    }
    fn size(&self) -> u64 {
        self.main.size_bytes() + self.dlq.size_bytes()
    }
}

/// A queue.
#[derive(Debug, Clone)]
pub struct Queue {
    pub name: String,
    pub props: EntityProps,
    pub times: EntityTimes,
    pub next_seq: u64,
    pub dup: DupHistory,
    pub q: Receivable,
}

/// A topic with its subscriptions.
#[derive(Debug, Clone)]
pub struct Topic {
    pub name: String,
    pub props: EntityProps,
    pub times: EntityTimes,
    pub next_seq: u64,
    pub dup: DupHistory,
    pub subs: BTreeMap<String, Subscription>,
}

/// A subscription with its compiled rules (ordered by name).
#[derive(Debug, Clone)]
pub struct Subscription {
    pub name: String,
    pub props: EntityProps,
    pub times: EntityTimes,
    pub rules: BTreeMap<String, CompiledRule>,
    pub q: Receivable,
    /// Its wake key ([`messaging::wake_key_of`]), spelled once: a topic's fan-out wakes every
    /// subscription it delivers to, and would otherwise format this for every copy.
    pub wake_key: Arc<str>,
    /// Its description or times changed since the last snapshot. A flag here, not a key in
    /// [`Broker`]'s set of dirty entities, because every fan-out copy sets it (one set insert
    /// of a string key per copy was a quarter of a 100-subscription fan-out).
    pub changed: bool,
}

/// The whole Service Bus namespace state.
#[derive(Debug, Clone, Default)]
pub struct Broker {
    queues: BTreeMap<String, Queue>,
    topics: BTreeMap<String, Topic>,
    created_at: Millis,
    /// Entities whose description changed since the last snapshot.
    dirty_entities: BTreeSet<EntityKey>,
    /// Entities deleted since the last snapshot (their stored messages go with them).
    deleted_entities: BTreeSet<EntityKey>,
    /// The next snapshot must rewrite everything (first snapshot, purge, failed delta).
    full_needed: bool,
    /// Receivable paths (lowercased display form) that gained available messages.
    wakeups: Vec<Arc<str>>,
    /// Set by any mutation during the current `apply`.
    touched: bool,
    /// Each entity's earliest deadline, so [`Broker::next_due`] need not scan every entity.
    deadlines: Deadlines,
    /// What the current `apply` did that the service counts (see [`Event`]).
    events: Vec<Event>,
    /// The sequence number the next stored message takes instead of its entity's next one,
    /// set only while a commit stores a transaction's scheduled message ([`Op::SendReserved`]).
    reserved_seq: Option<u64>,
    /// Nothing will take snapshots of this broker (the in-memory backend): its stores keep
    /// no record of changed messages, which would only grow.
    untracked: bool,
}

/// Something an operation did that is not in its outcome, reported so the service can count
/// it (the broker stays pure: it never touches the metrics registry). Replayed operations
/// report them too; the service counts only live ones.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A message moved to the dead-letter queue of `from` (or on to its
    /// ForwardDeadLetteredMessagesTo): settlement, TTL, max delivery or a filter error.
    DeadLettered { from: QueuePath },
    /// A message's time to live ran out on `from` (dead-lettered or dropped).
    Expired { from: QueuePath },
}

/// Result of an apply: the outcome, and whether state changed. A refused operation can still
/// have changed state (timers that fell due at its time were processed first), so `changed`
/// decides journaling, not success: replaying the record reproduces both.
#[derive(Debug)]
pub struct Applied {
    pub result: Result<Outcome, BrokerError>,
    pub changed: bool,
    /// What the operation did besides its outcome, in order.
    pub events: Vec<Event>,
}

impl Broker {
    pub fn new(now: Millis) -> Self {
        Broker {
            created_at: now,
            full_needed: true,
            ..Default::default()
        }
    }

    /// Applies one operation at its recorded time. Deterministic: the same state and record
    /// always give the same result, which is what makes replay correct.
    pub fn apply(&mut self, rec: &OpRecord) -> Applied {
        self.touched = false;
        self.events.clear();
        let now = rec.at;
        let result = self.apply_op(&rec.op, now);
        self.refresh_deadlines();
        // Every unit test checks the index against the full scan after every operation (small
        // brokers only: the scan is what the index exists to avoid).
        #[cfg(test)]
        if self.queues.len() + self.topics.len() <= 1_000 {
            assert_eq!(
                self.deadlines.first(),
                self.next_due_scan(),
                "deadline index out of date after {rec:?}"
            );
        }
        Applied {
            result,
            changed: self.touched,
            events: std::mem::take(&mut self.events),
        }
    }

    /// One operation's effect (the body of [`Broker::apply`], also used by a commit's parts).
    fn apply_op(&mut self, op: &Op, now: Millis) -> Result<Outcome, BrokerError> {
        match op {
            Op::CreateQueue { name, props } => self.create_queue(name, props, now),
            Op::UpdateQueue { name, props } => self.update_queue(name, props, now),
            Op::DeleteQueue { name } => self.delete_queue(name),
            Op::CreateTopic { name, props } => self.create_topic(name, props, now),
            Op::UpdateTopic { name, props } => self.update_topic(name, props, now),
            Op::DeleteTopic { name } => self.delete_topic(name),
            Op::CreateSubscription {
                topic,
                name,
                props,
                rule,
            } => self.create_subscription(topic, name, props, rule.clone(), now),
            Op::UpdateSubscription { topic, name, props } => {
                self.update_subscription(topic, name, props, now)
            }
            Op::DeleteSubscription { topic, name } => self.delete_subscription(topic, name),
            Op::CreateRule {
                topic,
                subscription,
                rule,
            } => self.create_rule(topic, subscription, rule, now, false),
            Op::UpdateRule {
                topic,
                subscription,
                rule,
            } => self.create_rule(topic, subscription, rule, now, true),
            Op::DeleteRule {
                topic,
                subscription,
                name,
            } => self.delete_rule(topic, subscription, name),
            Op::Send { entity, messages } => self.send(entity, messages, now),
            Op::Receive {
                from,
                mode,
                max,
                lock_tokens,
                session,
            } => self.receive(from, *mode, *max, lock_tokens, session.as_ref(), now),
            Op::ReceiveDeferred {
                from,
                sequence_numbers,
                mode,
                lock_tokens,
            } => self.receive_deferred(from, sequence_numbers, *mode, lock_tokens, now),
            Op::Settle {
                from,
                lock_token,
                settlement,
            } => self.settle(from, lock_token, settlement, now),
            Op::RenewLock { from, lock_token } => self.renew_lock(from, lock_token, now),
            Op::CancelScheduled {
                entity,
                sequence_numbers,
            } => self.cancel_scheduled(entity, sequence_numbers),
            Op::AcceptSession {
                from,
                select,
                token,
            } => self.accept_session(from, select, *token, now),
            Op::SetSessionState {
                from,
                session,
                state,
            } => self.set_session_state(from, session, state.clone(), now),
            Op::RenewSessionLock { from, session } => self.renew_session_lock(from, session, now),
            Op::ReleaseSession { from, session } => self.release_session(from, session, now),
            Op::Tick => {
                self.tick(now);
                Ok(Outcome::Done)
            }
            Op::PurgeAll => {
                self.purge_all();
                Ok(Outcome::Done)
            }
            Op::Commit { ops } => self.commit(ops, now),
            Op::ReserveSequenceNumbers { entity, count } => {
                self.reserve_sequence_numbers(entity, *count)
            }
            Op::SendReserved { entity, messages } => self.send_reserved(entity, messages, now),
        }
    }

    /// Recomputes the due time of every entity the last operation marked.
    fn refresh_deadlines(&mut self) {
        for id in self.deadlines.take_pending() {
            let due = self.due_of(&id);
            self.deadlines.set(id, due);
        }
    }

    /// Rebuilds the deadline index from scratch (after restore).
    pub(crate) fn rebuild_deadlines(&mut self) {
        self.deadlines.clear();
        let mut ids: Vec<EntityId> = Vec::new();
        for k in self.queues.keys() {
            ids.push(EntityId::Queue(k.clone()));
        }
        for (tk, t) in &self.topics {
            ids.push(EntityId::Topic(tk.clone()));
            for sk in t.subs.keys() {
                ids.push(EntityId::Subscription(tk.clone(), sk.clone()));
            }
        }
        for id in ids {
            let due = self.due_of(&id);
            self.deadlines.set(id, due);
        }
    }

    /// One entity's earliest deadline (`None` when nothing is due or it does not exist).
    fn due_of(&self, id: &EntityId) -> Option<Millis> {
        match id {
            EntityId::Queue(k) => self.queues.get(k).and_then(|q| {
                min_due([
                    q.q.main.next_due(),
                    q.q.dlq.next_due(),
                    idle_due(&q.props, &q.times),
                    session_lock_due(&q.q),
                ])
            }),
            EntityId::Topic(k) => self
                .topics
                .get(k)
                .and_then(|t| idle_due(&t.props, &t.times)),
            EntityId::Subscription(tk, sk) => self
                .topics
                .get(tk)
                .and_then(|t| t.subs.get(sk))
                .and_then(|s| {
                    min_due([
                        s.q.main.next_due(),
                        s.q.dlq.next_due(),
                        idle_due(&s.props, &s.times),
                        session_lock_due(&s.q),
                    ])
                }),
        }
    }

    /// Marks the entity a receivable path names for a deadline recompute.
    fn mark_path(&mut self, path: &QueuePath) {
        let ek = crate::names::key(&path.entity);
        self.deadlines.mark(match &path.subscription {
            None => EntityId::Queue(ek),
            Some(sub) => EntityId::Subscription(ek, crate::names::key(sub)),
        });
    }

    /// Paths (lowercased) that gained available messages since the last call (a path may
    /// repeat).
    pub fn take_wakeups(&mut self) -> Vec<Arc<str>> {
        std::mem::take(&mut self.wakeups)
    }

    pub fn created_at(&self) -> Millis {
        self.created_at
    }

    fn touch_entity(&mut self, key: EntityKey) {
        self.touched = true;
        self.dirty_entities.insert(key);
    }

    // ----- lookups ---------------------------------------------------------------------------

    fn receivable_mut(&mut self, path: &QueuePath) -> Result<&mut Receivable, BrokerError> {
        let (rcv, _, _) = self.receivable_with_props_mut(path)?;
        Ok(rcv)
    }

    /// The receivable a path names, with its props and times.
    fn receivable_with_props_mut(
        &mut self,
        path: &QueuePath,
    ) -> Result<(&mut Receivable, &EntityProps, &mut EntityTimes), BrokerError> {
        self.mark_path(path);
        let ek = crate::names::key(&path.entity);
        match &path.subscription {
            None => match self.queues.get_mut(&ek) {
                Some(q) => Ok((&mut q.q, &q.props, &mut q.times)),
                None => Err(BrokerError::EntityNotFound(path.entity.clone())),
            },
            Some(sub) => {
                let t = self
                    .topics
                    .get_mut(&ek)
                    .ok_or_else(|| BrokerError::EntityNotFound(path.entity.clone()))?;
                let s = t
                    .subs
                    .get_mut(&crate::names::key(sub))
                    .ok_or_else(|| BrokerError::EntityNotFound(path.display()))?;
                Ok((&mut s.q, &s.props, &mut s.times))
            }
        }
    }

    fn receivable(&self, path: &QueuePath) -> Result<(&Receivable, &EntityProps), BrokerError> {
        let ek = crate::names::key(&path.entity);
        match &path.subscription {
            None => self
                .queues
                .get(&ek)
                .map(|q| (&q.q, &q.props))
                .ok_or_else(|| BrokerError::EntityNotFound(path.entity.clone())),
            Some(sub) => {
                let t = self
                    .topics
                    .get(&ek)
                    .ok_or_else(|| BrokerError::EntityNotFound(path.entity.clone()))?;
                t.subs
                    .get(&crate::names::key(sub))
                    .map(|s| (&s.q, &s.props))
                    .ok_or_else(|| BrokerError::EntityNotFound(path.display()))
            }
        }
    }

    /// The storage key of the entity a path names.
    fn entity_key_of(&self, path: &QueuePath) -> EntityKey {
        let ek = crate::names::key(&path.entity);
        match &path.subscription {
            None => EntityKey {
                kind: EntityKind::Queue,
                topic: None,
                name: self
                    .queues
                    .get(&ek)
                    .map(|q| q.name.clone())
                    .unwrap_or_else(|| path.entity.clone()),
            },
            Some(sub) => {
                let t = self.topics.get(&ek);
                EntityKey {
                    kind: EntityKind::Subscription,
                    topic: Some(
                        t.map(|t| t.name.clone())
                            .unwrap_or_else(|| path.entity.clone()),
                    ),
                    name: t
                        .and_then(|t| t.subs.get(&crate::names::key(sub)))
                        .map(|s| s.name.clone())
                        .unwrap_or_else(|| sub.clone()),
                }
            }
        }
    }

    // ----- read-only queries -----------------------------------------------------------------

    fn queue_info_of(q: &Queue) -> EntityInfo {
        EntityInfo {
            kind: EntityKind::Queue,
            name: q.name.clone(),
            topic: None,
            props: q.props.clone(),
            times: q.times,
            counts: q.q.counts(),
            size_in_bytes: q.q.size(),
            subscription_count: 0,
        }
    }

    fn topic_info_of(t: &Topic) -> EntityInfo {
        let mut counts = CountDetails::default();
        let mut size = 0;
        for s in t.subs.values() {
            let c = s.q.counts();
            counts.active += c.active;
            counts.dead_letter += c.dead_letter;
            counts.scheduled += c.scheduled;
            counts.deferred += c.deferred;
            size += s.q.size();
        }
        EntityInfo {
            kind: EntityKind::Topic,
            name: t.name.clone(),
            topic: None,
            props: t.props.clone(),
            times: t.times,
            counts,
            size_in_bytes: size,
            subscription_count: t.subs.len() as u32,
        }
    }

    fn sub_info_of(t: &Topic, s: &Subscription) -> EntityInfo {
        EntityInfo {
            kind: EntityKind::Subscription,
            name: s.name.clone(),
            topic: Some(t.name.clone()),
            props: s.props.clone(),
            times: s.times,
            counts: s.q.counts(),
            size_in_bytes: s.q.size(),
            subscription_count: 0,
        }
    }

    pub fn queue_info(&self, name: &str) -> Option<EntityInfo> {
        self.queues
            .get(&crate::names::key(name))
            .map(Self::queue_info_of)
    }

    pub fn topic_info(&self, name: &str) -> Option<EntityInfo> {
        self.topics
            .get(&crate::names::key(name))
            .map(Self::topic_info_of)
    }

    pub fn subscription_info(&self, topic: &str, name: &str) -> Result<EntityInfo, BrokerError> {
        let t = self
            .topics
            .get(&crate::names::key(topic))
            .ok_or_else(|| BrokerError::EntityNotFound(topic.to_string()))?;
        t.subs
            .get(&crate::names::key(name))
            .map(|s| Self::sub_info_of(t, s))
            .ok_or_else(|| BrokerError::EntityNotFound(format!("{topic}/Subscriptions/{name}")))
    }

    pub fn list_queues(&self) -> Vec<EntityInfo> {
        self.queues.values().map(Self::queue_info_of).collect()
    }

    pub fn list_topics(&self) -> Vec<EntityInfo> {
        self.topics.values().map(Self::topic_info_of).collect()
    }

    pub fn list_subscriptions(&self, topic: &str) -> Result<Vec<EntityInfo>, BrokerError> {
        let t = self
            .topics
            .get(&crate::names::key(topic))
            .ok_or_else(|| BrokerError::EntityNotFound(topic.to_string()))?;
        Ok(t.subs.values().map(|s| Self::sub_info_of(t, s)).collect())
    }

    pub fn rules(&self, topic: &str, sub: &str) -> Result<Vec<Rule>, BrokerError> {
        let t = self
            .topics
            .get(&crate::names::key(topic))
            .ok_or_else(|| BrokerError::EntityNotFound(topic.to_string()))?;
        let s = t
            .subs
            .get(&crate::names::key(sub))
            .ok_or_else(|| BrokerError::EntityNotFound(format!("{topic}/Subscriptions/{sub}")))?;
        Ok(s.rules.values().map(|r| r.rule.clone()).collect())
    }

    /// Peeks up to `max` messages from sequence number `from_seq` on, without locking.
    pub fn peek(
        &self,
        path: &QueuePath,
        from_seq: u64,
        max: usize,
    ) -> Result<Vec<Message>, BrokerError> {
        let (rcv, _) = self.receivable(path)?;
        let store = if path.dead_letter {
            &rcv.dlq
        } else {
            &rcv.main
        };
        Ok(store.range_from(from_seq).take(max).cloned().collect())
    }

    /// Peeks the messages of one session.
    pub fn peek_session(
        &self,
        path: &QueuePath,
        session_id: &str,
        from_seq: u64,
        max: usize,
    ) -> Result<Vec<Message>, BrokerError> {
        let (rcv, _) = self.receivable(path)?;
        Ok(rcv
            .main
            .range_from(from_seq)
            .filter(|m| m.content.session_id() == Some(session_id))
            .take(max)
            .cloned()
            .collect())
    }

    pub fn session_state(
        &self,
        path: &QueuePath,
        session_id: &str,
    ) -> Result<Option<Vec<u8>>, BrokerError> {
        let (rcv, _) = self.receivable(path)?;
        Ok(rcv.sessions.get(session_id).and_then(|s| s.state.clone()))
    }

    /// Session ids with messages or state.
    pub fn list_sessions(&self, path: &QueuePath) -> Result<Vec<String>, BrokerError> {
        let (rcv, _) = self.receivable(path)?;
        let mut ids = rcv.main.session_ids();
        ids.extend(
            rcv.sessions
                .iter()
                .filter(|(_, s)| s.state.is_some())
                .map(|(k, _)| k.clone()),
        );
        Ok(ids.into_iter().collect())
    }

    /// Does the path exist and what lock duration / kind applies (for wire-side checks).
    pub fn receivable_props(&self, path: &QueuePath) -> Result<EntityProps, BrokerError> {
        self.receivable(path).map(|(_, p)| p.clone())
    }

    /// Totals for stats: (queues, topics, subscriptions, active messages, dead-lettered).
    pub fn totals(&self) -> Totals {
        let mut t = Totals {
            queues: self.queues.len() as u64,
            topics: self.topics.len() as u64,
            ..Totals::default()
        };
        let mut add = |r: &Receivable| {
            t.messages += r.main.len() as u64;
            t.active += r.main.active_count();
            t.dead_letter += r.dlq.len() as u64;
            t.scheduled += r.main.scheduled_count();
            t.deferred += r.main.deferred_count();
        };
        for q in self.queues.values() {
            add(&q.q);
        }
        let mut subs = 0;
        for tp in self.topics.values() {
            subs += tp.subs.len() as u64;
            for s in tp.subs.values() {
                add(&s.q);
            }
        }
        t.subscriptions = subs;
        t
    }

    /// The earliest time any timer falls due (locks, TTL, schedules, auto-delete): the first
    /// entry of the deadline index, O(log entities).
    pub fn next_due(&self) -> Option<Millis> {
        self.deadlines.first()
    }

    /// The same answer by scanning every entity: the reference the index is tested against.
    #[cfg(test)]
    pub(crate) fn next_due_scan(&self) -> Option<Millis> {
        let mut best: Option<Millis> = None;
        let mut consider = |t: Option<Millis>| {
            if let Some(t) = t {
                best = Some(best.map_or(t, |b: Millis| b.min(t)));
            }
        };
        for q in self.queues.values() {
            consider(q.q.main.next_due());
            consider(q.q.dlq.next_due());
            consider(idle_due(&q.props, &q.times));
            consider(session_lock_due(&q.q));
        }
        for t in self.topics.values() {
            consider(idle_due(&t.props, &t.times));
            for s in t.subs.values() {
                consider(s.q.main.next_due());
                consider(s.q.dlq.next_due());
                consider(idle_due(&s.props, &s.times));
                consider(session_lock_due(&s.q));
            }
        }
        best
    }
}

fn min_due(dues: [Option<Millis>; 4]) -> Option<Millis> {
    dues.into_iter().flatten().min()
}

fn idle_due(props: &EntityProps, times: &EntityTimes) -> Option<Millis> {
    if props.auto_delete_on_idle.is_infinite() {
        None
    } else {
        Some(props.auto_delete_on_idle.after(times.accessed_at))
    }
}

fn session_lock_due(r: &Receivable) -> Option<Millis> {
    r.sessions
        .values()
        .filter_map(|s| s.lock.map(|l| l.locked_until))
        .min()
}

/// Namespace-wide counts for `storage stats`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Totals {
    pub queues: u64,
    pub topics: u64,
    pub subscriptions: u64,
    pub messages: u64,
    pub active: u64,
    pub dead_letter: u64,
    pub scheduled: u64,
    pub deferred: u64,
}

#[cfg(test)]
mod deadline_tests;
#[cfg(test)]
mod tests;
