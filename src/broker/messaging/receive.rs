//! Receiving and settling: peek-lock and receive-and-delete, deferred receive, settlement,
//! lock renewal, cancelling scheduled messages.

use super::*;

impl Broker {
    pub(in crate::broker) fn check_receive(
        props: &EntityProps,
        path: &QueuePath,
    ) -> Result<(), BrokerError> {
        use crate::broker::entity::EntityStatus;
        match props.status {
            EntityStatus::Disabled => Err(BrokerError::EntityDisabled(path.display())),
            s if !s.can_receive() => Err(BrokerError::ReceiveDisabled(path.display())),
            _ => Ok(()),
        }
    }

    pub(in crate::broker) fn receive(
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

    pub(in crate::broker) fn receive_deferred(
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
    pub(in crate::broker) fn locked_seq(
        store: &MessageStore,
        token: &Uuid,
        now: Millis,
    ) -> Result<u64, BrokerError> {
        let seq = store.by_lock(token).ok_or(BrokerError::MessageLockLost)?;
        match store.get(seq) {
            Some(m) if m.is_locked_at(now) => Ok(seq),
            _ => Err(BrokerError::MessageLockLost),
        }
    }

    pub(in crate::broker) fn settle(
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
            self.wakeups.push(wake_key_of(path).into());
        }
        if let Some((m, r, d)) = dead {
            self.dead_letter_message(path, m, r.as_deref(), d.as_deref(), now);
        }
        Ok(Outcome::Done)
    }

    pub(in crate::broker) fn renew_lock(
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

    pub(in crate::broker) fn cancel_scheduled(
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
}
