//! Sessions: accepting a session, its state, its lock renewal and release.

use super::*;

impl Broker {
    pub(in crate::broker) fn accept_session(
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

    pub(in crate::broker) fn with_session(
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

    pub(in crate::broker) fn set_session_state(
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

    pub(in crate::broker) fn renew_session_lock(
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
                        m.content.session_id() == Some(sref.id.as_str()) && m.lock.is_some()
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

    pub(in crate::broker) fn release_session(
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
