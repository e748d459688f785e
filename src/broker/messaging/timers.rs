//! Timers: scheduled enqueue, TTL expiry and lock expiry of the entities the deadline index
//! lists as due.

use super::*;

impl Broker {
    /// Processes everything due at `now` in one receivable path (main queue and its DLQ).
    pub(in crate::broker) fn process_due(&mut self, path: &QueuePath, now: Millis) {
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
                m.enqueued_time = m.content.scheduled_enqueue_time().unwrap_or(now);
                m.expires_at = m.ttl.after(m.enqueued_time);
            });
            woke = true;
        }
        // TTL expiry (not while locked).
        let mut expired = 0;
        for seq in rcv.main.expired_ttl(now) {
            if rcv.main.get(seq).is_some_and(|m| m.is_locked_at(now)) {
                continue;
            }
            if let Some(m) = rcv.main.remove(seq) {
                expired += 1;
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
        for _ in 0..expired {
            self.events.push(crate::broker::Event::Expired {
                from: main_path.clone(),
            });
        }
        if woke {
            self.wakeups.push(wake_key_of(&main_path).into());
        }
        self.dirty_entities.insert(self.entity_key_of(&main_path));
        for (m, reason, desc) in to_dead_letter {
            self.dead_letter_message(&main_path, m, Some(reason), Some(&desc), now);
        }
    }

    /// The timer operation: processes due work and auto-delete-on-idle, for the entities the
    /// deadline index says are due (it is current: refreshed at the end of every operation), so
    /// a tick costs O(due entities), not O(all entities).
    pub(in crate::broker) fn tick(&mut self, now: Millis) {
        let due_ids = self.deadlines.due_by(now);
        self.tick_entities(now, &due_ids);
    }

    /// The tick over every entity (what `tick` did before the index), for tests comparing the
    /// two.
    #[cfg(test)]
    pub(in crate::broker) fn tick_scan(&mut self, now: Millis) {
        let all = self.all_entity_ids();
        self.tick_entities(now, &all);
    }

    pub(in crate::broker) fn tick_entities(
        &mut self,
        now: Millis,
        ids: &std::collections::BTreeSet<EntityId>,
    ) {
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
}
