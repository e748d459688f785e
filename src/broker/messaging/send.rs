//! Sending: duplicate detection, enqueue on queues, topic fan-out through rules,
//! auto-forwarding, dead-lettering.

use super::*;
use crate::broker::txn::take_sequence_number;

impl Broker {
    pub(in crate::broker) fn send(
        &mut self,
        entity: &str,
        messages: &[NewMessage],
        now: Millis,
    ) -> Result<Outcome, BrokerError> {
        let k = self.check_send(entity, messages, 0)?;
        Ok(Outcome::Sent {
            sequence_numbers: self.enqueue_checked(&k, messages, now),
        })
    }

    /// Checks that a send can apply, without changing anything: the entity exists and accepts
    /// sends, every message fits and has an id, and the entity's quota holds the messages on
    /// top of `pending` bytes (what a transaction's earlier parts send to it). Returns the
    /// entity key for [`Broker::enqueue_checked`].
    pub(in crate::broker) fn check_send<'m>(
        &self,
        entity: &str,
        messages: impl IntoIterator<Item = &'m NewMessage>,
        pending: u64,
    ) -> Result<String, BrokerError> {
        let k = names::key(entity);
        let (props, size_now) = if let Some(q) = self.queues.get(&k) {
            (&q.props, q.q.size())
        } else if let Some(t) = self.topics.get(&k) {
            let size: u64 = t.subs.values().map(|s| s.q.size()).sum();
            (&t.props, size)
        } else {
            return Err(BrokerError::EntityNotFound(entity.to_string()));
        };
        match props.status {
            crate::broker::entity::EntityStatus::Disabled => {
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
        if size_now + pending + total > quota {
            return Err(BrokerError::QuotaExceeded(entity.to_string()));
        }
        Ok(k)
    }

    /// Enqueues messages [`Broker::check_send`] accepted for the entity key `k`; returns the
    /// sequence numbers stored (duplicates dropped by detection are absent).
    pub(in crate::broker) fn enqueue_checked(
        &mut self,
        k: &str,
        messages: &[NewMessage],
        now: Millis,
    ) -> Vec<u64> {
        let to_queue = self.queues.contains_key(k);
        messages
            .iter()
            .filter_map(|m| {
                // Stored from here on in the compact form, shared by every copy.
                let m = &Arc::new(Content::from(m.clone()));
                if to_queue {
                    self.enqueue_queue(k, m, now, 0, None)
                } else {
                    self.enqueue_topic(k, m, now, 0)
                }
            })
            .collect()
    }

    /// Records `id` in the duplicate history; `true` when it is a duplicate to drop.
    pub(in crate::broker) fn is_duplicate(
        dup: &mut crate::broker::DupHistory,
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
    pub(in crate::broker) fn enqueue_queue(
        &mut self,
        k: &str,
        m: &Arc<Content>,
        now: Millis,
        hops: usize,
        source: Option<&str>,
    ) -> Option<u64> {
        let q = self.queues.get_mut(k)?;
        self.deadlines.mark(EntityId::Queue(k.to_string()));
        if Self::is_duplicate(&mut q.dup, &q.props, m.message_id(), now) {
            self.touched = true;
            self.dirty_entities.insert(queue_key(&q.name));
            return None;
        }
        let seq = take_sequence_number(&mut q.next_seq, &mut self.reserved_seq);
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
        msg.dead_letter_source = source.map(Box::from);
        let visible = msg.state == MessageState::Active;
        q.q.main.insert(msg);
        if visible {
            self.wakeups
                .push(wake_key_of(&QueuePath::queue(&qname)).into());
        }
        Some(seq)
    }

    /// The ForwardTo target of a queue (by key) if forwarding applies.
    pub(in crate::broker) fn forward_target(&self, k: &str, hops: usize) -> Option<String> {
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
    pub(in crate::broker) fn forward(
        &mut self,
        target_key: &str,
        m: &Arc<Content>,
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
    pub(in crate::broker) fn enqueue_topic(
        &mut self,
        k: &str,
        m: &Arc<Content>,
        now: Millis,
        hops: usize,
    ) -> Option<u64> {
        let t = self.topics.get_mut(k)?;
        self.deadlines.mark(EntityId::Topic(k.to_string()));
        if Self::is_duplicate(&mut t.dup, &t.props, m.message_id(), now) {
            self.touched = true;
            self.dirty_entities.insert(topic_key(&t.name));
            return None;
        }
        let seq = take_sequence_number(&mut t.next_seq, &mut self.reserved_seq);
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
        let budget = crate::broker::filter::EvalBudget::per_message();
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
                                copy.edit_content(|c| {
                                    c.properties.insert(
                                        "RuleName".to_string(),
                                        Value::String(r.rule.name.clone()),
                                    )
                                });
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
        // takes the next topic number (EnqueuedSequenceNumber stays the original). A
        // subscription's deliveries are adjacent (pushed in one pass of the loop above).
        let extra: Vec<usize> = (1..deliveries.len())
            .filter(|&i| deliveries[i].0 == deliveries[i - 1].0)
            .collect();
        if !extra.is_empty() {
            let t = self.topics.get_mut(k)?;
            for i in extra {
                deliveries[i].1.sequence_number = t.next_seq;
                t.next_seq += 1;
            }
        }
        // Copies go straight into their subscription's store, walking the subscriptions in
        // step with the deliveries (both in subscription order), so a fan-out to many
        // subscriptions costs no per-copy lookups; copies for subscriptions with ForwardTo
        // are handed on afterwards (forwarding needs the whole broker).
        let mut forwarded: Vec<(String, Message)> = Vec::new();
        {
            let t = self.topics.get_mut(k)?;
            let mut subs = t.subs.iter_mut();
            let mut current = subs.next();
            for (sk, msg) in deliveries {
                while let Some((name, _)) = &current {
                    if **name == sk {
                        break;
                    }
                    current = subs.next();
                }
                let Some((_, s)) = current.as_mut() else {
                    break;
                };
                if s.props.forward_to.is_some() {
                    forwarded.push((sk, msg));
                    continue;
                }
                let (visible, deadline_moved) = store_copy(s, msg, now);
                if visible {
                    self.wakeups.push(s.wake_key.clone());
                }
                if deadline_moved {
                    self.deadlines
                        .mark(EntityId::Subscription(k.to_string(), sk));
                }
            }
        }
        for (sk, msg) in forwarded {
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
            // ForwardTo names nothing that exists (or too many hops): the copy stays here.
            let Some(s) = self.topics.get_mut(k).and_then(|t| t.subs.get_mut(&sk)) else {
                continue;
            };
            let (visible, _) = store_copy(s, msg, now);
            if visible {
                self.wakeups.push(s.wake_key.clone());
            }
            self.deadlines
                .mark(EntityId::Subscription(k.to_string(), sk));
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
    pub(in crate::broker) fn dead_letter_message(
        &mut self,
        path: &QueuePath,
        mut msg: Message,
        reason: Option<&str>,
        description: Option<&str>,
        now: Millis,
    ) {
        // Every dead-lettering passes here: settlement, TTL, max delivery, filter errors.
        self.events
            .push(crate::broker::Event::DeadLettered { from: path.clone() });
        msg.lock = None;
        msg.state = MessageState::Active;
        msg.expires_at = MAX_MILLIS;
        if reason.is_some() || description.is_some() {
            msg.edit_content(|c| {
                for (k, v) in [(PROP_DL_REASON, reason), (PROP_DL_DESCRIPTION, description)] {
                    if let Some(v) = v {
                        c.properties.insert(k.into(), Value::String(v.to_string()));
                    }
                }
            });
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
            self.wakeups.push(wake_key_of(&dl).into());
        }
    }
}

/// Stores one fanned-out copy in subscription `s`; returns whether it is visible (active) and
/// whether the subscription's earliest deadline may have moved (the copy expires, is scheduled,
/// or the subscription's idle deadline moved with its access time). Only then does the
/// deadline index need the subscription recomputed.
fn store_copy(s: &mut crate::broker::Subscription, mut msg: Message, now: Millis) -> (bool, bool) {
    // The subscription's own TTL default may be shorter than the topic's.
    let ttl = msg.ttl.min(s.props.default_message_time_to_live);
    msg.ttl = ttl;
    msg.expires_at = ttl.after(msg.enqueued_time);
    let visible = msg.state == MessageState::Active;
    let idle_before = crate::broker::idle_due(&s.props, &s.times);
    s.times.accessed_at = now;
    s.changed = true;
    let deadline_moved = !visible
        || msg.expires_at < MAX_MILLIS
        || crate::broker::idle_due(&s.props, &s.times) != idle_before;
    s.q.main.insert(msg);
    (visible, deadline_moved)
}

#[cfg(test)]
mod fanout_tests {
    use crate::broker::entity::{EntityProps, Filter, Rule, SqlAction};
    use crate::broker::message::NewMessage;
    use crate::broker::op::{Op, OpRecord, QueuePath};
    use crate::broker::value::Value;
    use crate::broker::Broker;
    use std::sync::Arc;

    const NOW: i64 = 1_700_000_000_000;

    fn apply(b: &mut Broker, op: Op) {
        b.apply(&OpRecord { at: NOW, op }).result.expect("op");
    }

    /// A topic with plain subscriptions `a`, `b` and `c` and, on `c`, a second rule whose
    /// action sets a property.
    fn topic() -> Broker {
        let mut b = Broker::new(NOW);
        apply(
            &mut b,
            Op::CreateTopic {
                name: "t".into(),
                props: EntityProps::default(),
            },
        );
        for s in ["a", "b", "c"] {
            apply(
                &mut b,
                Op::CreateSubscription {
                    topic: "t".into(),
                    name: s.into(),
                    props: EntityProps::default(),
                    rule: None,
                },
            );
        }
        apply(
            &mut b,
            Op::CreateRule {
                topic: "t".into(),
                subscription: "c".into(),
                rule: Rule {
                    name: "tag".into(),
                    filter: Filter::True,
                    action: Some(SqlAction {
                        expression: "SET tagged = 1".into(),
                        parameters: Default::default(),
                        compatibility_level: 20,
                    }),
                    created_at: NOW,
                },
            },
        );
        apply(
            &mut b,
            Op::Send {
                entity: "t".into(),
                messages: vec![NewMessage {
                    message_id: "m".into(),
                    body: vec![b'x'; 1024],
                    ..NewMessage::default()
                }],
            },
        );
        b
    }

    fn stored(b: &Broker, sub: &str) -> Vec<crate::broker::message::Message> {
        b.peek(&QueuePath::subscription("t", sub), 0, 10)
            .expect("peek")
    }

    #[test]
    fn plain_copies_share_one_content_and_action_copies_own_theirs() {
        let b = topic();
        let (a, bb, c) = (stored(&b, "a"), stored(&b, "b"), stored(&b, "c"));
        assert_eq!((a.len(), bb.len(), c.len()), (1, 1, 2));
        // The copies a TrueFilter delivers are one allocation, body and properties included.
        assert!(Arc::ptr_eq(&a[0].content, &bb[0].content));
        assert!(Arc::ptr_eq(&a[0].content, &c[0].content));
        // The action's copy was changed through `edit_content`: its own content, the others
        // untouched.
        let tagged = &c[1];
        assert!(!Arc::ptr_eq(&a[0].content, &tagged.content));
        assert_eq!(
            tagged.content.properties().get("tagged"),
            Some(&Value::Int(1))
        );
        assert_eq!(
            tagged.content.properties().get("RuleName"),
            Some(&Value::String("tag".into()))
        );
        assert!(a[0].content.properties().is_empty());
        assert_eq!(tagged.content.body(), a[0].content.body());
        // Distinct sequence numbers, the same EnqueuedSequenceNumber.
        assert_ne!(c[0].sequence_number, c[1].sequence_number);
        assert_eq!(c[0].enqueued_sequence_number, c[1].enqueued_sequence_number);
    }
}
