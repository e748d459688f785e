//! Sending, fan-out, forwarding, receiving, settling, sessions and timers.
//!
//! Semantics follow Azure Service Bus:
//! - sequence numbers increase per queue/topic from 1; subscription copies keep the topic's
//!   (a second copy in one subscription, from a rule action, takes the next topic number);
//! - DeliveryCount counts deliveries: the first receive sees 1; an abandon or lock expiry at
//!   DeliveryCount ≥ MaxDeliveryCount dead-letters with `MaxDeliveryCountExceeded`;
//! - TTL is min(message, entity default); an expired message is dropped, or dead-lettered with
//!   `TTLExpiredException` when DeadLetteringOnMessageExpiration is set; locked messages do not
//!   expire until their lock is released; dead-lettered messages never expire;
//! - rules without actions are OR-ed into one copy; each matching rule with an action makes its
//!   own copy carrying a `RuleName` property;
//! - a rule whose filter or action fails to evaluate (e.g. `a / 0 = 1`) delivers nothing; when
//!   the subscription has DeadLetteringOnFilterEvaluationExceptions (the default), one copy goes
//!   to its dead-letter queue with reason `FilterEvaluationException` and the error as
//!   description, otherwise the failure is ignored. Other rules still deliver as usual;
//! - ForwardTo moves a message on arrival (up to 4 hops); ForwardDeadLetteredMessagesTo moves
//!   dead-lettered messages.

use super::deadlines::EntityId;
use super::entities::{queue_key, topic_key};
use super::entity::EntityProps;
use super::error::BrokerError;
use super::message::{Lock, Message, MessageState, NewMessage};
use super::op::{QueuePath, ReceiveMode, SessionRef, SessionSelect, Settlement};
use super::store::MessageStore;
use super::value::Value;
use super::{Broker, Outcome, Receivable, Session};
use crate::constants::MAX_FORWARD_HOPS;
use crate::names;
use crate::time::{Millis, MAX_MILLIS};
use std::collections::BTreeMap;
use uuid::Uuid;

/// Dead-letter reason for too many deliveries.
pub const REASON_MAX_DELIVERY: &str = "MaxDeliveryCountExceeded";
/// Dead-letter reason for expiry.
pub const REASON_TTL: &str = "TTLExpiredException";
/// Dead-letter reason for a subscription rule whose filter or action failed to evaluate
/// (DeadLetteringOnFilterEvaluationExceptions).
pub const REASON_FILTER: &str = "FilterEvaluationException";
/// Application property names the service sets on dead-lettered messages.
pub const PROP_DL_REASON: &str = "DeadLetterReason";
pub const PROP_DL_DESCRIPTION: &str = "DeadLetterErrorDescription";

/// The key long-pollers of a path wait on.
pub fn wake_key_of(path: &QueuePath) -> String {
    path.display().to_ascii_lowercase()
}

/// Builds a stored message from what a sender gave.
fn materialize(m: &NewMessage, seq: u64, props: &EntityProps, now: Millis) -> Message {
    let ttl = match m.time_to_live {
        Some(t) if t.0 > 0 => t.min(props.default_message_time_to_live),
        _ => props.default_message_time_to_live,
    };
    let scheduled = matches!(m.scheduled_enqueue_time, Some(t) if t > now);
    let enqueued = if scheduled {
        m.scheduled_enqueue_time.unwrap_or(now)
    } else {
        now
    };
    Message {
        sequence_number: seq,
        content: m.clone(),
        enqueued_time: enqueued,
        expires_at: ttl.after(enqueued),
        ttl,
        delivery_count: 0,
        state: if scheduled {
            MessageState::Scheduled
        } else {
            MessageState::Active
        },
        lock: None,
        dead_letter_source: None,
        enqueued_sequence_number: seq,
    }
}

fn merge_props(m: &mut Message, props: &BTreeMap<String, Value>) {
    for (k, v) in props {
        m.content.properties.insert(k.clone(), v.clone());
    }
}

impl Broker {
    // ----- send ------------------------------------------------------------------------------

    pub(super) fn send(
        &mut self,
        entity: &str,
        messages: &[NewMessage],
        now: Millis,
    ) -> Result<Outcome, BrokerError> {
        let k = names::key(entity);
        let (props, size_now) = if let Some(q) = self.queues.get(&k) {
            (q.props.clone(), q.q.size())
        } else if let Some(t) = self.topics.get(&k) {
            let size: u64 = t.subs.values().map(|s| s.q.size()).sum();
            (t.props.clone(), size)
        } else {
            return Err(BrokerError::EntityNotFound(entity.to_string()));
        };
        match props.status {
            super::entity::EntityStatus::Disabled => {
                return Err(BrokerError::EntityDisabled(entity.to_string()))
            }
            s if !s.can_send() => return Err(BrokerError::SendDisabled(entity.to_string())),
            _ => {}
        }
        let limit = (props.max_message_size_in_kilobytes.max(1) as usize) * 1024;
        let mut total = 0u64;
        for m in messages {
            let size = m.size();
            if size > limit {
                return Err(BrokerError::MessageTooLarge { size, max: limit });
            }
            if m.message_id.is_empty() {
                return Err(BrokerError::BadRequest(
                    "MessageId must not be empty.".into(),
                ));
            }
            total += size as u64;
        }
        let quota = (props.max_size_in_megabytes.max(1) as u64) * 1024 * 1024;
        if size_now + total > quota {
            return Err(BrokerError::QuotaExceeded(entity.to_string()));
        }
        if self.queues.contains_key(&k) {
            let mut seqs = Vec::new();
            for m in messages {
                if let Some(seq) = self.enqueue_queue(&k, m, now, 0, None) {
                    seqs.push(seq);
                }
            }
            Ok(Outcome::Sent {
                sequence_numbers: seqs,
            })
        } else {
            let mut seqs = Vec::new();
            for m in messages {
                if let Some(seq) = self.enqueue_topic(&k, m, now, 0) {
                    seqs.push(seq);
                }
            }
            Ok(Outcome::Sent {
                sequence_numbers: seqs,
            })
        }
    }

    /// Records `id` in the duplicate history; `true` when it is a duplicate to drop.
    fn is_duplicate(
        dup: &mut super::DupHistory,
        props: &EntityProps,
        id: &str,
        now: Millis,
    ) -> bool {
        if !props.requires_duplicate_detection {
            return false;
        }
        dup.prune(
            now,
            props.duplicate_detection_history_time_window.as_millis(),
        );
        if dup.contains(id) {
            return true;
        }
        dup.record(id, now);
        false
    }

    /// Sends into a queue (following ForwardTo); returns the sequence number in the queue first
    /// addressed, or `None` for a dropped duplicate.
    fn enqueue_queue(
        &mut self,
        k: &str,
        m: &NewMessage,
        now: Millis,
        hops: usize,
        source: Option<&str>,
    ) -> Option<u64> {
        let q = self.queues.get_mut(k)?;
        self.deadlines.mark(EntityId::Queue(k.to_string()));
        if Self::is_duplicate(&mut q.dup, &q.props, &m.message_id, now) {
            self.touched = true;
            self.dirty_entities.insert(queue_key(&q.name));
            return None;
        }
        let seq = q.next_seq;
        q.next_seq += 1;
        q.times.accessed_at = now;
        let key = queue_key(&q.name);
        let qname = q.name.clone();
        self.touched = true;
        self.dirty_entities.insert(key);
        if let Some(target) = self.forward_target(k, hops) {
            self.forward(&target, m, now, hops + 1, source);
            return Some(seq);
        }
        let q = self.queues.get_mut(k)?;
        let mut msg = materialize(m, seq, &q.props, now);
        msg.dead_letter_source = source.map(str::to_string);
        let visible = msg.state == MessageState::Active;
        q.q.main.insert(msg);
        if visible {
            self.wakeups.insert(wake_key_of(&QueuePath::queue(&qname)));
        }
        Some(seq)
    }

    /// The ForwardTo target of a queue (by key) if forwarding applies.
    fn forward_target(&self, k: &str, hops: usize) -> Option<String> {
        let q = self.queues.get(k)?;
        let target = q.props.forward_to.as_ref()?;
        let tk = names::key(target);
        if hops >= MAX_FORWARD_HOPS || tk == k {
            return None;
        }
        if self.queues.contains_key(&tk) || self.topics.contains_key(&tk) {
            Some(tk)
        } else {
            None
        }
    }

    /// Moves a message on to `target_key`. `dead_letter_source` is set only when a
    /// dead-lettered message is forwarded (ForwardDeadLetteredMessagesTo): it names the entity
    /// whose dead-letter queue it left, and becomes the message's DeadLetterSource. Plain
    /// ForwardTo passes it through unchanged.
    fn forward(
        &mut self,
        target_key: &str,
        m: &NewMessage,
        now: Millis,
        hops: usize,
        dead_letter_source: Option<&str>,
    ) {
        if self.queues.contains_key(target_key) {
            self.enqueue_queue(target_key, m, now, hops, dead_letter_source);
        } else if self.topics.contains_key(target_key) {
            self.enqueue_topic(target_key, m, now, hops);
        }
    }

    /// Sends into a topic: assigns the topic's sequence number and fans out.
    fn enqueue_topic(&mut self, k: &str, m: &NewMessage, now: Millis, hops: usize) -> Option<u64> {
        let t = self.topics.get_mut(k)?;
        self.deadlines.mark(EntityId::Topic(k.to_string()));
        if Self::is_duplicate(&mut t.dup, &t.props, &m.message_id, now) {
            self.touched = true;
            self.dirty_entities.insert(topic_key(&t.name));
            return None;
        }
        let seq = t.next_seq;
        t.next_seq += 1;
        t.times.accessed_at = now;
        let tname = t.name.clone();
        let topic_props = t.props.clone();
        self.touched = true;
        self.dirty_entities.insert(topic_key(&tname));
        let base = materialize(m, seq, &topic_props, now);
        // Evaluate every subscription's rules first, then deliver (forwarding may need &mut self).
        let mut deliveries: Vec<(String, Message)> = Vec::new();
        let mut filter_failures: Vec<(String, String)> = Vec::new();
        let t = self.topics.get(k)?;
        let budget = super::filter::EvalBudget::per_message();
        for (sk, s) in &t.subs {
            let mut plain_match = false;
            let mut action_copies: Vec<Message> = Vec::new();
            // The first rule of this subscription whose filter or action failed to evaluate.
            let mut failure: Option<String> = None;
            for r in s.rules.values() {
                match r.matches_within(&base, &budget) {
                    Ok(true) if r.has_action() => {
                        let mut copy = base.clone();
                        match r.apply_action_within(&mut copy, &budget) {
                            Ok(()) => {
                                copy.content.properties.insert(
                                    "RuleName".to_string(),
                                    Value::String(r.rule.name.clone()),
                                );
                                action_copies.push(copy);
                            }
                            Err(e) => {
                                failure.get_or_insert_with(|| {
                                    format!("Rule '{}': action failed: {e}", r.rule.name)
                                });
                            }
                        }
                    }
                    Ok(true) => plain_match = true,
                    Ok(false) => {}
                    Err(e) => {
                        failure.get_or_insert_with(|| {
                            format!("Rule '{}': filter failed: {e}", r.rule.name)
                        });
                    }
                }
            }
            if plain_match {
                deliveries.push((sk.clone(), base.clone()));
            }
            deliveries.extend(action_copies.into_iter().map(|m| (sk.clone(), m)));
            if let Some(e) = failure {
                if s.props.dead_lettering_on_filter_evaluation_exceptions {
                    filter_failures.push((s.name.clone(), e));
                }
            }
        }
        // A subscription's store is keyed by sequence number: when several rules deliver
        // copies to one subscription, the first keeps the topic's number and each further one
        // takes the next topic number (EnqueuedSequenceNumber stays the original).
        let mut extra = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for (i, (sk, _)) in deliveries.iter().enumerate() {
            if !seen.insert(sk.as_str()) {
                extra.push(i);
            }
        }
        if !extra.is_empty() {
            let t = self.topics.get_mut(k)?;
            for i in extra {
                deliveries[i].1.sequence_number = t.next_seq;
                t.next_seq += 1;
            }
        }
        for (sk, mut msg) in deliveries {
            let forward = {
                let Some(s) = self.topics.get(k).and_then(|t| t.subs.get(&sk)) else {
                    continue;
                };
                s.props.forward_to.as_deref().map(names::key).filter(|tk| {
                    hops < MAX_FORWARD_HOPS
                        && (self.queues.contains_key(tk) || self.topics.contains_key(tk))
                })
            };
            if let Some(target) = forward {
                self.forward(&target, &msg.content, now, hops + 1, None);
                continue;
            }
            let Some(s) = self.topics.get_mut(k).and_then(|t| t.subs.get_mut(&sk)) else {
                continue;
            };
            self.deadlines
                .mark(EntityId::Subscription(k.to_string(), sk.clone()));
            // The subscription's own TTL default may be shorter than the topic's.
            let ttl = msg.ttl.min(s.props.default_message_time_to_live);
            msg.ttl = ttl;
            msg.expires_at = ttl.after(msg.enqueued_time);
            let visible = msg.state == MessageState::Active;
            s.times.accessed_at = now;
            s.q.main.insert(msg);
            let sname = s.name.clone();
            self.dirty_entities
                .insert(super::entities::sub_key(&tname, &sname));
            if visible {
                self.wakeups
                    .insert(wake_key_of(&QueuePath::subscription(&tname, &sname)));
            }
        }
        // One dead-lettered copy per subscription whose rules failed to evaluate (the rules
        // that did evaluate still deliver); ForwardDeadLetteredMessagesTo applies.
        for (sname, err) in filter_failures {
            let path = QueuePath {
                entity: tname.clone(),
                subscription: Some(sname),
                dead_letter: false,
            };
            self.dead_letter_message(&path, base.clone(), Some(REASON_FILTER), Some(&err), now);
        }
        Some(seq)
    }

    // ----- dead-lettering ----------------------------------------------------------------------

    /// Moves a message (already removed from its store) to the dead-letter queue of `path`, or
    /// on to ForwardDeadLetteredMessagesTo.
    fn dead_letter_message(
        &mut self,
        path: &QueuePath,
        mut msg: Message,
        reason: Option<&str>,
        description: Option<&str>,
        now: Millis,
    ) {
        // Every dead-lettering passes here: settlement, TTL, max delivery, filter errors.
        crate::metrics::global().count(
            &crate::metrics::entity_label(path),
            crate::metrics::Event::DeadLettered,
            1,
        );
        msg.lock = None;
        msg.state = MessageState::Active;
        msg.expires_at = MAX_MILLIS;
        if let Some(r) = reason {
            msg.content
                .properties
                .insert(PROP_DL_REASON.into(), Value::String(r.to_string()));
        }
        if let Some(d) = description {
            msg.content
                .properties
                .insert(PROP_DL_DESCRIPTION.into(), Value::String(d.to_string()));
        }
        let fwd = self
            .receivable(path)
            .ok()
            .and_then(|(_, p)| p.forward_dead_lettered_messages_to.clone())
            .map(|t| names::key(&t))
            .filter(|tk| self.queues.contains_key(tk) || self.topics.contains_key(tk));
        if let Some(target) = fwd {
            let src = path.display();
            self.forward(&target, &msg.content, now, 1, Some(&src));
            return;
        }
        let dl = path.clone().dlq();
        if let Ok(rcv) = self.receivable_mut(path) {
            rcv.dlq.insert(msg);
            self.wakeups.insert(wake_key_of(&dl));
        }
    }

    // ----- timers ------------------------------------------------------------------------------

    /// Processes everything due at `now` in one receivable path (main queue and its DLQ).
    fn process_due(&mut self, path: &QueuePath, now: Millis) {
        let main_path = QueuePath {
            dead_letter: false,
            ..path.clone()
        };
        let Ok((rcv, props, _)) = self.receivable_with_props_mut(&main_path) else {
            return;
        };
        let max_delivery = props.max_delivery_count.max(1) as u32;
        let dl_on_expiry = props.dead_lettering_on_message_expiration;
        if rcv.main.next_due().is_none_or(|t| t > now)
            && rcv.dlq.next_due().is_none_or(|t| t > now)
            && !rcv
                .sessions
                .values()
                .any(|s| s.lock.is_some_and(|l| l.locked_until <= now))
        {
            return;
        }
        let mut to_dead_letter: Vec<(Message, &'static str, String)> = Vec::new();
        let mut woke = false;
        // Session locks.
        for s in rcv.sessions.values_mut() {
            if s.lock.is_some_and(|l| l.locked_until <= now) {
                s.lock = None;
            }
        }
        rcv.sessions
            .retain(|_, s| s.lock.is_some() || s.state.is_some());
        // Lock expiry.
        for seq in rcv.main.expired_locks(now) {
            let over = rcv
                .main
                .get(seq)
                .map(|m| m.delivery_count >= max_delivery && m.state == MessageState::Active)
                .unwrap_or(false);
            if over {
                if let Some(m) = rcv.main.remove(seq) {
                    let d = format!(
                        "Message could not be consumed after {max_delivery} delivery attempts."
                    );
                    to_dead_letter.push((m, REASON_MAX_DELIVERY, d));
                }
            } else {
                rcv.main.modify(seq, |m| m.lock = None);
                woke = true;
            }
        }
        for seq in rcv.dlq.expired_locks(now) {
            rcv.dlq.modify(seq, |m| m.lock = None);
        }
        // Scheduled messages becoming visible.
        for seq in rcv.main.due_scheduled(now) {
            rcv.main.modify(seq, |m| {
                m.state = MessageState::Active;
                m.enqueued_time = m.content.scheduled_enqueue_time.unwrap_or(now);
                m.expires_at = m.ttl.after(m.enqueued_time);
            });
            woke = true;
        }
        // TTL expiry (not while locked).
        for seq in rcv.main.expired_ttl(now) {
            if rcv.main.get(seq).is_some_and(|m| m.is_locked_at(now)) {
                continue;
            }
            if let Some(m) = rcv.main.remove(seq) {
                crate::metrics::global().count(
                    &crate::metrics::entity_label(&main_path),
                    crate::metrics::Event::Expired,
                    1,
                );
                if dl_on_expiry {
                    to_dead_letter.push((
                        m,
                        REASON_TTL,
                        "The message expired and was dead lettered.".to_string(),
                    ));
                }
            }
        }
        self.touched = true;
        if woke {
            self.wakeups.insert(wake_key_of(&main_path));
        }
        self.dirty_entities.insert(self.entity_key_of(&main_path));
        for (m, reason, desc) in to_dead_letter {
            self.dead_letter_message(&main_path, m, Some(reason), Some(&desc), now);
        }
    }

    /// The timer operation: processes due work and auto-delete-on-idle, for the entities the
    /// deadline index says are due (it is current: refreshed at the end of every operation), so
    /// a tick costs O(due entities), not O(all entities).
    pub(super) fn tick(&mut self, now: Millis) {
        let due_ids = self.deadlines.due_by(now);
        self.tick_entities(now, &due_ids);
    }

    /// The tick over every entity (what `tick` did before the index), for tests comparing the
    /// two.
    #[cfg(test)]
    pub(super) fn tick_scan(&mut self, now: Millis) {
        let all = self.all_entity_ids();
        self.tick_entities(now, &all);
    }

    fn tick_entities(&mut self, now: Millis, ids: &std::collections::BTreeSet<EntityId>) {
        let mut paths = Vec::new();
        for id in ids {
            match id {
                EntityId::Queue(k) => {
                    if let Some(q) = self.queues.get(k).filter(|q| due(&q.q, now)) {
                        paths.push(QueuePath::queue(&q.name));
                    }
                }
                EntityId::Subscription(tk, sk) => {
                    if let Some(t) = self.topics.get(tk) {
                        if let Some(s) = t.subs.get(sk).filter(|s| due(&s.q, now)) {
                            paths.push(QueuePath::subscription(&t.name, &s.name));
                        }
                    }
                }
                EntityId::Topic(_) => {}
            }
        }
        for p in paths {
            self.process_due(&p, now);
        }
        self.auto_delete_idle(now, ids);
    }

    // ----- receive -----------------------------------------------------------------------------

    fn check_receive(props: &EntityProps, path: &QueuePath) -> Result<(), BrokerError> {
        use super::entity::EntityStatus;
        match props.status {
            EntityStatus::Disabled => Err(BrokerError::EntityDisabled(path.display())),
            s if !s.can_receive() => Err(BrokerError::ReceiveDisabled(path.display())),
            _ => Ok(()),
        }
    }

    pub(super) fn receive(
        &mut self,
        path: &QueuePath,
        mode: ReceiveMode,
        max: u32,
        tokens: &[Uuid],
        session: Option<&SessionRef>,
        now: Millis,
    ) -> Result<Outcome, BrokerError> {
        self.process_due(path, now);
        let (rcv, props, times) = self.receivable_with_props_mut(path)?;
        Self::check_receive(props, path)?;
        let lock_ms = props.lock_duration.as_millis();
        let session_mode = props.requires_session && !path.dead_letter;
        if session_mode {
            let Some(sref) = session else {
                return Err(BrokerError::SessionRequired(path.display()));
            };
            check_session_lock(rcv, sref, now)?;
        }
        let store = if path.dead_letter {
            &mut rcv.dlq
        } else {
            &mut rcv.main
        };
        let session_locked_until = session
            .and_then(|s| rcv_session_until(&rcv.sessions, s))
            .unwrap_or(0);
        let mut out = Vec::new();
        for i in 0..max as usize {
            let next = match (session_mode, session) {
                (true, Some(s)) => store.first_in_session(&s.id),
                _ => store.first_available(),
            };
            let Some(seq) = next else { break };
            match mode {
                ReceiveMode::PeekLock => {
                    let token = tokens
                        .get(i)
                        .copied()
                        .unwrap_or_else(|| derive_token(seq, now));
                    let until = if session_mode {
                        session_locked_until
                    } else {
                        now.saturating_add(lock_ms)
                    };
                    if let Some(m) = store.modify(seq, |m| {
                        m.delivery_count += 1;
                        m.lock = Some(Lock {
                            token,
                            locked_until: until,
                        });
                        m.clone()
                    }) {
                        out.push(m);
                    }
                }
                ReceiveMode::ReceiveAndDelete => {
                    if let Some(mut m) = store.remove(seq) {
                        m.delivery_count += 1;
                        out.push(m);
                    }
                }
            }
        }
        if !out.is_empty() {
            times.accessed_at = now;
            self.touched = true;
            let key = self.entity_key_of(path);
            self.dirty_entities.insert(key);
        }
        Ok(Outcome::Received(out))
    }

    pub(super) fn receive_deferred(
        &mut self,
        path: &QueuePath,
        seqs: &[u64],
        mode: ReceiveMode,
        tokens: &[Uuid],
        now: Millis,
    ) -> Result<Outcome, BrokerError> {
        self.process_due(path, now);
        let (rcv, props, _) = self.receivable_with_props_mut(path)?;
        Self::check_receive(props, path)?;
        let lock_ms = props.lock_duration.as_millis();
        let store = if path.dead_letter {
            &mut rcv.dlq
        } else {
            &mut rcv.main
        };
        for seq in seqs {
            match store.get(*seq) {
                Some(m) if m.state == MessageState::Deferred && !m.is_locked_at(now) => {}
                _ => return Err(BrokerError::MessageNotFound(*seq)),
            }
        }
        let mut out = Vec::new();
        for (i, seq) in seqs.iter().enumerate() {
            match mode {
                ReceiveMode::PeekLock => {
                    let token = tokens
                        .get(i)
                        .copied()
                        .unwrap_or_else(|| derive_token(*seq, now));
                    if let Some(m) = store.modify(*seq, |m| {
                        m.delivery_count += 1;
                        m.lock = Some(Lock {
                            token,
                            locked_until: now.saturating_add(lock_ms),
                        });
                        m.clone()
                    }) {
                        out.push(m);
                    }
                }
                ReceiveMode::ReceiveAndDelete => {
                    if let Some(mut m) = store.remove(*seq) {
                        m.delivery_count += 1;
                        out.push(m);
                    }
                }
            }
        }
        self.touched = true;
        Ok(Outcome::Received(out))
    }

    // ----- settlement --------------------------------------------------------------------------

    /// Finds the locked message of a token, failing with lock-lost when absent or expired.
    fn locked_seq(store: &MessageStore, token: &Uuid, now: Millis) -> Result<u64, BrokerError> {
        let seq = store.by_lock(token).ok_or(BrokerError::MessageLockLost)?;
        match store.get(seq) {
            Some(m) if m.is_locked_at(now) => Ok(seq),
            _ => Err(BrokerError::MessageLockLost),
        }
    }

    pub(super) fn settle(
        &mut self,
        path: &QueuePath,
        token: &Uuid,
        settlement: &Settlement,
        now: Millis,
    ) -> Result<Outcome, BrokerError> {
        self.process_due(path, now);
        let (rcv, props, _) = self.receivable_with_props_mut(path)?;
        let max_delivery = props.max_delivery_count.max(1) as u32;
        let store = if path.dead_letter {
            &mut rcv.dlq
        } else {
            &mut rcv.main
        };
        let seq = Self::locked_seq(store, token, now)?;
        let mut dead: Option<(Message, Option<String>, Option<String>)> = None;
        let mut woke = false;
        match settlement {
            Settlement::Complete => {
                store.remove(seq);
            }
            Settlement::Abandon { properties } => {
                let over = store.get(seq).is_some_and(|m| {
                    !path.dead_letter
                        && m.state == MessageState::Active
                        && m.delivery_count >= max_delivery
                });
                if over {
                    if let Some(mut m) = store.remove(seq) {
                        merge_props(&mut m, properties);
                        dead = Some((
                            m,
                            Some(REASON_MAX_DELIVERY.to_string()),
                            Some(format!(
                                "Message could not be consumed after {max_delivery} delivery attempts."
                            )),
                        ));
                    }
                } else {
                    store.modify(seq, |m| {
                        m.lock = None;
                        merge_props(m, properties);
                    });
                    woke = true;
                }
            }
            Settlement::DeadLetter {
                reason,
                description,
                properties,
            } => {
                if path.dead_letter {
                    return Err(BrokerError::BadRequest(
                        "A message in a dead-letter queue cannot be dead-lettered.".into(),
                    ));
                }
                if let Some(mut m) = store.remove(seq) {
                    merge_props(&mut m, properties);
                    dead = Some((m, reason.clone(), description.clone()));
                }
            }
            Settlement::Release => {
                store.modify(seq, |m| {
                    m.lock = None;
                    m.delivery_count = m.delivery_count.saturating_sub(1);
                });
                woke = true;
            }
            Settlement::Defer { properties } => {
                store.modify(seq, |m| {
                    m.lock = None;
                    m.state = MessageState::Deferred;
                    merge_props(m, properties);
                });
            }
        }
        self.touched = true;
        let key = self.entity_key_of(path);
        self.dirty_entities.insert(key);
        if woke {
            self.wakeups.insert(wake_key_of(path));
        }
        if let Some((m, r, d)) = dead {
            self.dead_letter_message(path, m, r.as_deref(), d.as_deref(), now);
        }
        Ok(Outcome::Done)
    }

    pub(super) fn renew_lock(
        &mut self,
        path: &QueuePath,
        token: &Uuid,
        now: Millis,
    ) -> Result<Outcome, BrokerError> {
        self.process_due(path, now);
        let (rcv, props, _) = self.receivable_with_props_mut(path)?;
        let lock_ms = props.lock_duration.as_millis();
        let store = if path.dead_letter {
            &mut rcv.dlq
        } else {
            &mut rcv.main
        };
        let seq = Self::locked_seq(store, token, now)?;
        let until = now.saturating_add(lock_ms);
        store.modify(seq, |m| {
            if let Some(l) = m.lock.as_mut() {
                l.locked_until = until;
            }
        });
        self.touched = true;
        Ok(Outcome::LockRenewed {
            locked_until: until,
        })
    }

    pub(super) fn cancel_scheduled(
        &mut self,
        entity: &str,
        seqs: &[u64],
    ) -> Result<Outcome, BrokerError> {
        let k = names::key(entity);
        let mut found = 0usize;
        let mut stores: Vec<&mut MessageStore> = Vec::new();
        if let Some(q) = self.queues.get_mut(&k) {
            self.deadlines.mark(EntityId::Queue(k.clone()));
            stores.push(&mut q.q.main);
        } else if let Some(t) = self.topics.get_mut(&k) {
            for (sk, s) in t.subs.iter_mut() {
                self.deadlines
                    .mark(EntityId::Subscription(k.clone(), sk.clone()));
                stores.push(&mut s.q.main);
            }
        } else {
            return Err(BrokerError::EntityNotFound(entity.to_string()));
        }
        for store in stores {
            for seq in seqs {
                if store
                    .get(*seq)
                    .is_some_and(|m| m.state == MessageState::Scheduled)
                {
                    store.remove(*seq);
                    found += 1;
                }
            }
            // Extra copies a rule action made in a subscription carry their own sequence
            // number; the one the sender got back is their EnqueuedSequenceNumber.
            let copies: Vec<u64> = store
                .due_scheduled(MAX_MILLIS)
                .into_iter()
                .filter(|s| {
                    store.get(*s).is_some_and(|m| {
                        m.sequence_number != m.enqueued_sequence_number
                            && seqs.contains(&m.enqueued_sequence_number)
                    })
                })
                .collect();
            for seq in copies {
                store.remove(seq);
            }
        }
        if found == 0 && !seqs.is_empty() {
            return Err(BrokerError::MessageNotFound(seqs[0]));
        }
        self.touched = true;
        Ok(Outcome::Done)
    }

    // ----- sessions ----------------------------------------------------------------------------

    pub(super) fn accept_session(
        &mut self,
        path: &QueuePath,
        select: &SessionSelect,
        token: Uuid,
        now: Millis,
    ) -> Result<Outcome, BrokerError> {
        self.process_due(path, now);
        let (rcv, props, _) = self.receivable_with_props_mut(path)?;
        Self::check_receive(props, path)?;
        if !props.requires_session {
            return Err(BrokerError::BadRequest(format!(
                "The entity '{}' does not require sessions.",
                path.display()
            )));
        }
        let lock_ms = props.lock_duration.as_millis();
        let free = |sessions: &BTreeMap<String, Session>, id: &str| {
            sessions
                .get(id)
                .and_then(|s| s.lock)
                .is_none_or(|l| l.locked_until <= now)
        };
        let id = match select {
            SessionSelect::Id(id) => {
                if !free(&rcv.sessions, id) {
                    return Err(BrokerError::SessionCannotBeLocked(id.clone()));
                }
                id.clone()
            }
            SessionSelect::Next => {
                let candidates = rcv.main.sessions_with_messages();
                match candidates
                    .into_iter()
                    .map(|(_, id)| id)
                    .find(|id| free(&rcv.sessions, id))
                {
                    Some(id) => id,
                    None => return Ok(Outcome::Done),
                }
            }
        };
        let until = now.saturating_add(lock_ms);
        rcv.sessions.entry(id.clone()).or_default().lock = Some(Lock {
            token,
            locked_until: until,
        });
        self.touched = true;
        let key = self.entity_key_of(path);
        self.dirty_entities.insert(key);
        Ok(Outcome::SessionAccepted {
            session_id: id,
            locked_until: until,
        })
    }

    fn with_session(
        &mut self,
        path: &QueuePath,
        sref: &SessionRef,
        now: Millis,
        f: impl FnOnce(&mut Session, &EntityProps) -> Outcome,
    ) -> Result<Outcome, BrokerError> {
        self.process_due(path, now);
        let (rcv, props, _) = self.receivable_with_props_mut(path)?;
        check_session_lock(rcv, sref, now)?;
        let props = props.clone();
        let out = match rcv.sessions.get_mut(&sref.id) {
            Some(s) => f(s, &props),
            None => return Err(BrokerError::SessionLockLost(sref.id.clone())),
        };
        self.touched = true;
        let key = self.entity_key_of(path);
        self.dirty_entities.insert(key);
        Ok(out)
    }

    pub(super) fn set_session_state(
        &mut self,
        path: &QueuePath,
        sref: &SessionRef,
        state: Option<Vec<u8>>,
        now: Millis,
    ) -> Result<Outcome, BrokerError> {
        self.with_session(path, sref, now, |s, _| {
            s.state = state;
            Outcome::Done
        })
    }

    pub(super) fn renew_session_lock(
        &mut self,
        path: &QueuePath,
        sref: &SessionRef,
        now: Millis,
    ) -> Result<Outcome, BrokerError> {
        let out = self.with_session(path, sref, now, |s, props| {
            let until = now.saturating_add(props.lock_duration.as_millis());
            if let Some(l) = s.lock.as_mut() {
                l.locked_until = until;
            }
            Outcome::LockRenewed {
                locked_until: until,
            }
        })?;
        // Messages locked under the session follow the session lock.
        if let Outcome::LockRenewed { locked_until } = out {
            if let Ok(rcv) = self.receivable_mut(path) {
                let seqs: Vec<u64> = rcv
                    .main
                    .iter()
                    .filter(|m| {
                        m.content.session_id.as_deref() == Some(sref.id.as_str())
                            && m.lock.is_some()
                    })
                    .map(|m| m.sequence_number)
                    .collect();
                for seq in seqs {
                    rcv.main.modify(seq, |m| {
                        if let Some(l) = m.lock.as_mut() {
                            l.locked_until = locked_until;
                        }
                    });
                }
            }
        }
        Ok(out)
    }

    pub(super) fn release_session(
        &mut self,
        path: &QueuePath,
        sref: &SessionRef,
        now: Millis,
    ) -> Result<Outcome, BrokerError> {
        self.with_session(path, sref, now, |s, _| {
            s.lock = None;
            Outcome::Done
        })
    }
}

fn due(r: &Receivable, now: Millis) -> bool {
    r.main.next_due().is_some_and(|t| t <= now)
        || r.dlq.next_due().is_some_and(|t| t <= now)
        || r.sessions
            .values()
            .any(|s| s.lock.is_some_and(|l| l.locked_until <= now))
}

fn check_session_lock(rcv: &Receivable, sref: &SessionRef, now: Millis) -> Result<(), BrokerError> {
    match rcv.sessions.get(&sref.id).and_then(|s| s.lock) {
        Some(l) if l.token == sref.token && l.locked_until > now => Ok(()),
        _ => Err(BrokerError::SessionLockLost(sref.id.clone())),
    }
}

fn rcv_session_until(sessions: &BTreeMap<String, Session>, sref: &SessionRef) -> Option<Millis> {
    sessions
        .get(&sref.id)
        .and_then(|s| s.lock)
        .map(|l| l.locked_until)
}

/// A deterministic lock token when the caller supplied too few (replay stays exact).
fn derive_token(seq: u64, now: Millis) -> Uuid {
    Uuid::from_u64_pair(seq, now as u64)
}
