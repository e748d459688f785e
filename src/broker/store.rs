//! One message store (a queue's or subscription's main queue, or its dead-letter sub-queue)
//! with the indexes receive and the timers need.
//!
//! All index maintenance goes through [`MessageStore::insert`], [`MessageStore::remove`] and
//! [`MessageStore::modify`] (unindex, change, re-index), so no caller can leave an index stale.
//! Every change also marks the sequence number dirty for the next incremental snapshot.

use super::message::{Message, MessageState};
use crate::time::{Millis, MAX_MILLIS};
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use uuid::Uuid;

/// Messages by sequence number plus the indexes over them.
#[derive(Debug, Default, Clone)]
pub struct MessageStore {
    messages: BTreeMap<u64, Message>,
    /// Active, unlocked messages without a session (or in a store that ignores sessions).
    available: BTreeSet<u64>,
    /// Active, unlocked messages per session id (session-enabled stores only).
    session_available: BTreeMap<String, BTreeSet<u64>>,
    locks: HashMap<Uuid, u64>,
    lock_expiry: BTreeSet<(Millis, u64)>,
    ttl_expiry: BTreeSet<(Millis, u64)>,
    scheduled: BTreeSet<(Millis, u64)>,
    active: u64,
    deferred: u64,
    scheduled_count: u64,
    size: u64,
    sessions_enabled: bool,
    /// Sequence numbers changed since the last snapshot.
    dirty: HashSet<u64>,
}

impl MessageStore {
    pub fn new(sessions_enabled: bool) -> Self {
        MessageStore {
            sessions_enabled,
            ..Default::default()
        }
    }

    fn index(&mut self, m: &Message) {
        let seq = m.sequence_number;
        self.size += m.size() as u64;
        match m.state {
            MessageState::Scheduled => {
                self.scheduled_count += 1;
                let at = m
                    .content
                    .scheduled_enqueue_time()
                    .unwrap_or(m.enqueued_time);
                self.scheduled.insert((at, seq));
                return;
            }
            MessageState::Active => self.active += 1,
            MessageState::Deferred => self.deferred += 1,
        }
        if m.expires_at < MAX_MILLIS {
            self.ttl_expiry.insert((m.expires_at, seq));
        }
        match m.lock {
            Some(l) => {
                self.locks.insert(l.token, seq);
                self.lock_expiry.insert((l.locked_until, seq));
            }
            None if m.state == MessageState::Active => {
                match (m.content.session_id(), self.sessions_enabled) {
                    (Some(sid), true) => {
                        self.session_available
                            .entry(sid.to_string())
                            .or_default()
                            .insert(seq);
                    }
                    _ => {
                        self.available.insert(seq);
                    }
                }
            }
            None => {}
        }
    }

    fn unindex(&mut self, m: &Message) {
        let seq = m.sequence_number;
        self.size = self.size.saturating_sub(m.size() as u64);
        match m.state {
            MessageState::Scheduled => {
                self.scheduled_count = self.scheduled_count.saturating_sub(1);
                let at = m
                    .content
                    .scheduled_enqueue_time()
                    .unwrap_or(m.enqueued_time);
                self.scheduled.remove(&(at, seq));
                return;
            }
            MessageState::Active => self.active = self.active.saturating_sub(1),
            MessageState::Deferred => self.deferred = self.deferred.saturating_sub(1),
        }
        self.ttl_expiry.remove(&(m.expires_at, seq));
        if let Some(l) = m.lock {
            self.locks.remove(&l.token);
            self.lock_expiry.remove(&(l.locked_until, seq));
        }
        self.available.remove(&seq);
        if let Some(sid) = m.content.session_id() {
            if let Some(set) = self.session_available.get_mut(sid) {
                set.remove(&seq);
                if set.is_empty() {
                    self.session_available.remove(sid);
                }
            }
        }
    }

    /// Adds a message (replacing one with the same sequence number).
    pub fn insert(&mut self, m: Message) {
        let seq = m.sequence_number;
        if let Some(old) = self.messages.remove(&seq) {
            self.unindex(&old);
        }
        self.index(&m);
        self.messages.insert(seq, m);
        self.dirty.insert(seq);
    }

    /// Loads messages into an empty store in bulk (recovery): sorted input builds the map in
    /// one pass, and nothing is marked dirty since storage already holds them. Fails on a
    /// repeated sequence number.
    /// Takes `(sequence number, message)` pairs: the map is built from that vector in place.
    pub fn bulk_load(&mut self, mut msgs: Vec<(u64, Message)>) -> Result<(), u64> {
        msgs.sort_unstable_by_key(|(seq, _)| *seq);
        if let Some(w) = msgs.windows(2).find(|w| w[0].0 == w[1].0) {
            return Err(w[0].0);
        }
        if let Some((seq, _)) = msgs.first() {
            if self.messages.contains_key(seq) || !self.messages.is_empty() {
                return Err(*seq);
            }
        }
        for (_, m) in &msgs {
            self.index(m);
        }
        self.messages = BTreeMap::from_iter(msgs);
        Ok(())
    }

    /// Removes and returns a message.
    pub fn remove(&mut self, seq: u64) -> Option<Message> {
        let m = self.messages.remove(&seq)?;
        self.unindex(&m);
        self.dirty.insert(seq);
        Some(m)
    }

    /// Changes a message in place, keeping every index right.
    pub fn modify<R>(&mut self, seq: u64, f: impl FnOnce(&mut Message) -> R) -> Option<R> {
        let mut m = self.messages.remove(&seq)?;
        self.unindex(&m);
        let r = f(&mut m);
        self.index(&m);
        self.messages.insert(seq, m);
        self.dirty.insert(seq);
        Some(r)
    }

    pub fn get(&self, seq: u64) -> Option<&Message> {
        self.messages.get(&seq)
    }

    pub fn by_lock(&self, token: &Uuid) -> Option<u64> {
        self.locks.get(token).copied()
    }

    /// The first available message outside sessions.
    pub fn first_available(&self) -> Option<u64> {
        self.available.iter().next().copied()
    }

    /// The first available message of a session.
    pub fn first_in_session(&self, session: &str) -> Option<u64> {
        self.session_available
            .get(session)
            .and_then(|s| s.iter().next().copied())
    }

    /// Sessions that have available messages, in order of their oldest message.
    pub fn sessions_with_messages(&self) -> Vec<(u64, String)> {
        let mut v: Vec<(u64, String)> = self
            .session_available
            .iter()
            .filter_map(|(sid, set)| set.iter().next().map(|s| (*s, sid.clone())))
            .collect();
        v.sort();
        v
    }

    /// Every session id that has any message (for get-message-sessions).
    pub fn session_ids(&self) -> BTreeSet<String> {
        self.messages
            .values()
            .filter_map(|m| m.content.session_id().map(str::to_string))
            .collect()
    }

    /// The earliest time something in this store falls due (lock expiry, TTL, schedule).
    pub fn next_due(&self) -> Option<Millis> {
        [
            self.lock_expiry.iter().next().map(|x| x.0),
            self.ttl_expiry.iter().next().map(|x| x.0),
            self.scheduled.iter().next().map(|x| x.0),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Sequence numbers whose lock has expired at `now`.
    pub fn expired_locks(&self, now: Millis) -> Vec<u64> {
        self.lock_expiry
            .range(..=(now, u64::MAX))
            .map(|x| x.1)
            .collect()
    }

    /// Sequence numbers past their TTL at `now` (locked ones are skipped by the caller).
    pub fn expired_ttl(&self, now: Millis) -> Vec<u64> {
        self.ttl_expiry
            .range(..=(now, u64::MAX))
            .map(|x| x.1)
            .collect()
    }

    /// Scheduled messages due at `now`.
    pub fn due_scheduled(&self, now: Millis) -> Vec<u64> {
        self.scheduled
            .range(..=(now, u64::MAX))
            .map(|x| x.1)
            .collect()
    }

    pub fn iter(&self) -> impl Iterator<Item = &Message> {
        self.messages.values()
    }

    /// Messages from `from_seq` on, in order (peek).
    pub fn range_from(&self, from_seq: u64) -> impl Iterator<Item = &Message> {
        self.messages.range(from_seq..).map(|(_, m)| m)
    }

    pub fn len(&self) -> usize {
        self.messages.len()
    }
    pub fn is_empty(&self) -> bool {
        self.messages.is_empty()
    }
    pub fn active_count(&self) -> u64 {
        self.active
    }
    pub fn deferred_count(&self) -> u64 {
        self.deferred
    }
    pub fn scheduled_count(&self) -> u64 {
        self.scheduled_count
    }
    pub fn size_bytes(&self) -> u64 {
        self.size
    }

    /// Takes the set of sequence numbers changed since the last call.
    pub fn take_dirty(&mut self) -> HashSet<u64> {
        std::mem::take(&mut self.dirty)
    }
    pub fn has_dirty(&self) -> bool {
        !self.dirty.is_empty()
    }
    /// Marks every message dirty (for a full snapshot after a failed one).
    pub fn mark_all_dirty(&mut self) {
        self.dirty.extend(self.messages.keys().copied());
    }
}
