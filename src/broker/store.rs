//! One message store (a queue's or subscription's main queue, or its dead-letter sub-queue)
//! with the indexes receive and the timers need.
//!
//! Messages live in a [`SeqLog`]: a deque in sequence-number order, because a store almost
//! always receives its messages in increasing order (a queue or topic numbers them as they
//! arrive) and loses them from the front (receive order). Appending costs no tree node and
//! no rebalancing, which is most of a topic's fan-out cost and about 100 bytes of memory per
//! stored message against a `BTreeMap`. A message that arrives out of order (a dead-letter
//! queue receives messages under their old numbers) goes to a small ordered map beside it.
//!
//! All index maintenance goes through [`MessageStore::insert`], [`MessageStore::remove`] and
//! [`MessageStore::modify`] (unindex, change, re-index), so no caller can leave an index stale.
//! Every change also marks the sequence number dirty for the next incremental snapshot, unless
//! change tracking is off (the in-memory backend never snapshots).

use super::message::{Message, MessageState};
use crate::time::{Millis, MAX_MILLIS};
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use uuid::Uuid;

/// A place in the log: a message, or the number of one removed from the middle (kept so the
/// deque stays sorted and searchable until the holes are compacted away).
#[derive(Debug, Clone)]
enum Slot {
    Live(Message),
    Gone(u64),
}

impl Slot {
    fn seq(&self) -> u64 {
        match self {
            Slot::Live(m) => m.sequence_number,
            Slot::Gone(seq) => *seq,
        }
    }
    fn live(&self) -> Option<&Message> {
        match self {
            Slot::Live(m) => Some(m),
            Slot::Gone(_) => None,
        }
    }
}

/// Holes are compacted away once they are more than half the log and at least this many.
const MIN_HOLES_TO_COMPACT: usize = 64;

/// Messages by sequence number: in-order arrivals in a sorted deque, the rest in a map. A
/// number is in at most one of the two.
#[derive(Debug, Default, Clone)]
struct SeqLog {
    log: VecDeque<Slot>,
    /// `Slot::Gone` entries in `log`.
    holes: usize,
    /// Messages that arrived with a number below the log's last.
    others: BTreeMap<u64, Message>,
}

impl SeqLog {
    fn from_sorted(msgs: Vec<(u64, Message)>) -> Self {
        SeqLog {
            log: msgs.into_iter().map(|(_, m)| Slot::Live(m)).collect(),
            ..SeqLog::default()
        }
    }

    fn pos(&self, seq: u64) -> Result<usize, usize> {
        // New messages come after the last (every send, every fan-out copy): no search.
        match self.log.back() {
            Some(last) if seq > last.seq() => Err(self.log.len()),
            None => Err(0),
            Some(_) => self.log.binary_search_by_key(&seq, Slot::seq),
        }
    }

    fn len(&self) -> usize {
        self.log.len() - self.holes + self.others.len()
    }

    fn get(&self, seq: u64) -> Option<&Message> {
        match self.pos(seq) {
            Ok(i) => self.log[i].live(),
            Err(_) => self.others.get(&seq),
        }
    }

    /// Is `seq` a message of the log (not of the map) numbered from `from` on?
    fn in_log_from(&self, seq: u64, from: Option<u64>) -> bool {
        from.is_some_and(|f| seq >= f) && self.pos(seq).is_ok()
    }

    fn get_mut(&mut self, seq: u64) -> Option<&mut Message> {
        match self.pos(seq) {
            Ok(i) => match &mut self.log[i] {
                Slot::Live(m) => Some(m),
                Slot::Gone(_) => None,
            },
            Err(_) => self.others.get_mut(&seq),
        }
    }

    /// Stores a message whose number is not stored (the caller takes an old one out first);
    /// says whether it went to the end of the log.
    fn put(&mut self, m: Message) -> bool {
        let seq = m.sequence_number;
        if let Some(old) = self.others.get_mut(&seq) {
            *old = m;
            return false;
        }
        match self.pos(seq) {
            Ok(i) => {
                if let Slot::Gone(_) = std::mem::replace(&mut self.log[i], Slot::Live(m)) {
                    self.holes -= 1;
                }
                false
            }
            Err(i) if i == self.log.len() => {
                self.log.push_back(Slot::Live(m));
                true
            }
            Err(_) => {
                self.others.insert(seq, m);
                false
            }
        }
    }

    fn take(&mut self, seq: u64) -> Option<Message> {
        let Ok(i) = self.pos(seq) else {
            return self.others.remove(&seq);
        };
        let Slot::Live(m) = std::mem::replace(&mut self.log[i], Slot::Gone(seq)) else {
            return None;
        };
        self.holes += 1;
        self.trim();
        Some(m)
    }

    /// Drops holes at both ends, and all of them once they are most of the log (amortised:
    /// a compaction follows at least as many removals as it visits slots).
    fn trim(&mut self) {
        while let Some(Slot::Gone(_)) = self.log.front() {
            self.log.pop_front();
            self.holes -= 1;
        }
        while let Some(Slot::Gone(_)) = self.log.back() {
            self.log.pop_back();
            self.holes -= 1;
        }
        if self.holes >= MIN_HOLES_TO_COMPACT && self.holes * 2 > self.log.len() {
            self.log.retain(|s| matches!(s, Slot::Live(_)));
            self.holes = 0;
        }
    }

    fn iter(&self) -> impl Iterator<Item = &Message> {
        merged(self.log.iter().filter_map(Slot::live), self.others.values())
    }

    fn range_from(&self, from: u64) -> impl Iterator<Item = &Message> {
        let start = self.log.partition_point(|s| s.seq() < from);
        merged(
            self.log.range(start..).filter_map(Slot::live),
            self.others.range(from..).map(|(_, m)| m),
        )
    }

    /// Numbers of the log's messages from `from` on.
    fn log_seqs_from(&self, from: u64) -> impl Iterator<Item = u64> + '_ {
        let start = self.log.partition_point(|s| s.seq() < from);
        self.log
            .range(start..)
            .filter_map(Slot::live)
            .map(|m| m.sequence_number)
    }
}

/// Two iterators in sequence-number order, merged into one.
fn merged<'a>(
    a: impl Iterator<Item = &'a Message>,
    b: impl Iterator<Item = &'a Message>,
) -> impl Iterator<Item = &'a Message> {
    let (mut a, mut b) = (a.peekable(), b.peekable());
    std::iter::from_fn(move || match (a.peek(), b.peek()) {
        (Some(x), Some(y)) if y.sequence_number < x.sequence_number => b.next(),
        (Some(_), _) => a.next(),
        (None, _) => b.next(),
    })
}

/// What changed since the last snapshot: messages appended to the log since then are the
/// log's tail from one number on (no entry per message); every other change is a number in
/// a set. Off for the in-memory backend, which never takes a snapshot.
#[derive(Debug, Clone)]
struct Changes {
    on: bool,
    appended_from: Option<u64>,
    set: HashSet<u64>,
}

impl Default for Changes {
    fn default() -> Self {
        Changes {
            on: true,
            appended_from: None,
            set: HashSet::new(),
        }
    }
}

/// The indexes over a store's messages, apart from the messages so a message can be
/// re-indexed while it is borrowed from the log.
#[derive(Debug, Default, Clone)]
struct Indexes {
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
}

impl Indexes {
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
}

/// Messages by sequence number plus the indexes over them.
#[derive(Debug, Default, Clone)]
pub struct MessageStore {
    messages: SeqLog,
    idx: Indexes,
    changes: Changes,
}

impl MessageStore {
    /// `track_changes`: record changes for incremental snapshots (off when nothing will ever
    /// take them, or the record only grows).
    pub fn new(sessions_enabled: bool, track_changes: bool) -> Self {
        MessageStore {
            idx: Indexes {
                sessions_enabled,
                ..Indexes::default()
            },
            changes: Changes {
                on: track_changes,
                ..Changes::default()
            },
            ..Default::default()
        }
    }

    /// Turns change tracking on or off (off forgets what was recorded).
    pub fn set_change_tracking(&mut self, on: bool) {
        self.changes = Changes {
            on,
            ..Changes::default()
        };
    }

    /// Records a change of `seq` (`appended`: it was just added at the log's end).
    fn note(&mut self, seq: u64, appended: bool) {
        let c = &mut self.changes;
        if !c.on {
            return;
        }
        if appended {
            // An append is above every number in the log, so the log's entries from the
            // lowest append on are exactly the appended ones (the log may have emptied and
            // restarted lower since the first).
            c.appended_from = Some(c.appended_from.map_or(seq, |f| f.min(seq)));
        } else if !self.messages.in_log_from(seq, c.appended_from) {
            c.set.insert(seq);
        }
    }

    /// Adds a message (replacing one with the same sequence number).
    pub fn insert(&mut self, m: Message) {
        let seq = m.sequence_number;
        if let Some(old) = self.messages.take(seq) {
            self.idx.unindex(&old);
            self.note_removed(seq);
        }
        self.idx.index(&m);
        let appended = self.messages.put(m);
        self.note(seq, appended);
    }

    fn note_removed(&mut self, seq: u64) {
        if self.changes.on {
            self.changes.set.insert(seq);
        }
    }

    /// Loads messages into an empty store in bulk (recovery): sorted input builds the log in
    /// one pass, and nothing is marked dirty since storage already holds them. Fails on a
    /// repeated sequence number.
    /// Takes `(sequence number, message)` pairs: the log is built from that vector.
    pub fn bulk_load(&mut self, mut msgs: Vec<(u64, Message)>) -> Result<(), u64> {
        msgs.sort_unstable_by_key(|(seq, _)| *seq);
        if let Some(w) = msgs.windows(2).find(|w| w[0].0 == w[1].0) {
            return Err(w[0].0);
        }
        if let Some((seq, _)) = msgs.first() {
            if self.messages.len() > 0 {
                return Err(*seq);
            }
        }
        for (_, m) in &msgs {
            self.idx.index(m);
        }
        self.messages = SeqLog::from_sorted(msgs);
        Ok(())
    }

    /// Removes and returns a message.
    pub fn remove(&mut self, seq: u64) -> Option<Message> {
        let m = self.messages.take(seq)?;
        self.idx.unindex(&m);
        self.note_removed(seq);
        Some(m)
    }

    /// Changes a message in place, keeping every index right. `f` must not change the
    /// sequence number.
    pub fn modify<R>(&mut self, seq: u64, f: impl FnOnce(&mut Message) -> R) -> Option<R> {
        let m = self.messages.get_mut(seq)?;
        self.idx.unindex(m);
        let r = f(m);
        self.idx.index(m);
        self.note(seq, false);
        Some(r)
    }

    pub fn get(&self, seq: u64) -> Option<&Message> {
        self.messages.get(seq)
    }

    pub fn by_lock(&self, token: &Uuid) -> Option<u64> {
        self.idx.locks.get(token).copied()
    }

    /// The first available message outside sessions.
    pub fn first_available(&self) -> Option<u64> {
        self.idx.available.iter().next().copied()
    }

    /// The first available message of a session.
    pub fn first_in_session(&self, session: &str) -> Option<u64> {
        self.idx
            .session_available
            .get(session)
            .and_then(|s| s.iter().next().copied())
    }

    /// Sessions that have available messages, in order of their oldest message.
    pub fn sessions_with_messages(&self) -> Vec<(u64, String)> {
        let mut v: Vec<(u64, String)> = self
            .idx
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
            .iter()
            .filter_map(|m| m.content.session_id().map(str::to_string))
            .collect()
    }

    /// The earliest time something in this store falls due (lock expiry, TTL, schedule).
    pub fn next_due(&self) -> Option<Millis> {
        [
            self.idx.lock_expiry.iter().next().map(|x| x.0),
            self.idx.ttl_expiry.iter().next().map(|x| x.0),
            self.idx.scheduled.iter().next().map(|x| x.0),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Sequence numbers whose lock has expired at `now`.
    pub fn expired_locks(&self, now: Millis) -> Vec<u64> {
        due(&self.idx.lock_expiry, now)
    }

    /// Sequence numbers past their TTL at `now` (locked ones are skipped by the caller).
    pub fn expired_ttl(&self, now: Millis) -> Vec<u64> {
        due(&self.idx.ttl_expiry, now)
    }

    /// Scheduled messages due at `now`.
    pub fn due_scheduled(&self, now: Millis) -> Vec<u64> {
        due(&self.idx.scheduled, now)
    }

    /// Every message, in sequence-number order.
    pub fn iter(&self) -> impl Iterator<Item = &Message> {
        self.messages.iter()
    }

    /// Messages from `from_seq` on, in order (peek).
    pub fn range_from(&self, from_seq: u64) -> impl Iterator<Item = &Message> {
        self.messages.range_from(from_seq)
    }

    pub fn len(&self) -> usize {
        self.messages.len()
    }
    pub fn is_empty(&self) -> bool {
        self.messages.len() == 0
    }
    pub fn active_count(&self) -> u64 {
        self.idx.active
    }
    pub fn deferred_count(&self) -> u64 {
        self.idx.deferred
    }
    pub fn scheduled_count(&self) -> u64 {
        self.idx.scheduled_count
    }
    pub fn size_bytes(&self) -> u64 {
        self.idx.size
    }

    /// Takes the sequence numbers changed since the last call, in order.
    pub fn take_dirty(&mut self) -> Vec<u64> {
        let on = self.changes.on;
        let c = std::mem::replace(
            &mut self.changes,
            Changes {
                on,
                ..Changes::default()
            },
        );
        let mut v: Vec<u64> = c.set.into_iter().collect();
        if let Some(from) = c.appended_from {
            v.extend(self.messages.log_seqs_from(from));
        }
        v.sort_unstable();
        v.dedup();
        v
    }
    pub fn has_dirty(&self) -> bool {
        !self.changes.set.is_empty() || self.changes.appended_from.is_some()
    }
    /// Marks every message dirty (for a full snapshot after a failed one).
    pub fn mark_all_dirty(&mut self) {
        if self.changes.on {
            let seqs: Vec<u64> = self.messages.iter().map(|m| m.sequence_number).collect();
            self.changes.set.extend(seqs);
        }
    }
}

/// The numbers of a deadline index's entries due at `now`.
fn due(index: &BTreeSet<(Millis, u64)>, now: Millis) -> Vec<u64> {
    index.range(..=(now, u64::MAX)).map(|x| x.1).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::broker::message::NewMessage;
    use proptest::prelude::*;
    use std::sync::Arc;

    fn msg(seq: u64, delivery_count: u32) -> Message {
        Message {
            sequence_number: seq,
            content: Arc::new(NewMessage::default().into()),
            enqueued_time: 0,
            expires_at: MAX_MILLIS,
            ttl: crate::time::TimeSpan(i64::MAX),
            delivery_count,
            state: MessageState::Active,
            lock: None,
            dead_letter_source: None,
            enqueued_sequence_number: seq,
        }
    }

    /// Applies a store's dirty numbers to a copy of "what storage holds", as a snapshot does.
    fn persist(store: &mut MessageStore, stored: &mut BTreeMap<u64, u32>) {
        for seq in store.take_dirty() {
            match store.get(seq) {
                Some(m) => stored.insert(seq, m.delivery_count),
                None => stored.remove(&seq),
            };
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        /// The log + map store behaves as one ordered map (get, order, ranges, counts,
        /// available index), and snapshots built from its dirty numbers always reproduce it:
        /// appends, out-of-order inserts (a dead-letter queue's old numbers), replacements,
        /// removals from the front, the middle and the end, compactions of holes.
        #[test]
        fn store_matches_an_ordered_map_and_its_snapshots_match_it(
            ops in proptest::collection::vec((0u8..10, 0u64..400), 1..600),
        ) {
            let mut store = MessageStore::new(false, true);
            let mut model: BTreeMap<u64, u32> = BTreeMap::new();
            let mut stored: BTreeMap<u64, u32> = BTreeMap::new();
            let mut next = 1u64;
            for (i, (kind, x)) in ops.into_iter().enumerate() {
                let tag = i as u32;
                match kind {
                    // Mostly appends, as a queue receives.
                    0..=3 => {
                        store.insert(msg(next, tag));
                        model.insert(next, tag);
                        next += 1 + x % 3;
                    }
                    // Any number, below the last too (or a replacement).
                    4 => {
                        store.insert(msg(x, tag));
                        model.insert(x, tag);
                        next = next.max(x + 1);
                    }
                    // Remove the oldest (receive order) or any.
                    5 | 6 => {
                        let seq = if kind == 5 { model.keys().next().copied() } else { Some(x) };
                        if let Some(seq) = seq {
                            prop_assert_eq!(
                                store.remove(seq).map(|m| m.delivery_count),
                                model.remove(&seq)
                            );
                        }
                    }
                    7 => {
                        let r = store.modify(x, |m| {
                            m.delivery_count = tag;
                        });
                        prop_assert_eq!(r.is_some(), model.contains_key(&x));
                        if let Some(v) = model.get_mut(&x) {
                            *v = tag;
                        }
                    }
                    _ => persist(&mut store, &mut stored),
                }
                prop_assert_eq!(store.len(), model.len());
                prop_assert_eq!(store.get(x).map(|m| m.delivery_count), model.get(&x).copied());
            }
            let all: Vec<(u64, u32)> =
                store.iter().map(|m| (m.sequence_number, m.delivery_count)).collect();
            let want: Vec<(u64, u32)> = model.iter().map(|(k, v)| (*k, *v)).collect();
            prop_assert_eq!(&all, &want);
            let from: Vec<u64> = store.range_from(100).map(|m| m.sequence_number).collect();
            let want_from: Vec<u64> = model.range(100..).map(|(k, _)| *k).collect();
            prop_assert_eq!(from, want_from);
            prop_assert_eq!(store.first_available(), model.keys().next().copied());
            prop_assert_eq!(store.active_count(), model.len() as u64);
            persist(&mut store, &mut stored);
            prop_assert_eq!(stored, model);
            prop_assert!(!store.has_dirty());
        }
    }

    /// A hole costs no more than a message: the slot enum stores its tag in the message's
    /// niche (the content pointer), so the log is exactly one message wide per entry.
    #[test]
    fn a_slot_is_the_size_of_a_message() {
        println!(
            "Message {} B, Slot {} B",
            std::mem::size_of::<Message>(),
            std::mem::size_of::<Slot>()
        );
        assert_eq!(std::mem::size_of::<Slot>(), std::mem::size_of::<Message>());
    }

    #[test]
    fn appends_are_one_range_of_changes_not_an_entry_each() {
        let mut store = MessageStore::new(false, true);
        for seq in 1..=10_000 {
            store.insert(msg(seq, 0));
        }
        assert!(store.changes.set.is_empty(), "appends recorded one by one");
        assert_eq!(store.changes.appended_from, Some(1));
        let dirty = store.take_dirty();
        assert_eq!(dirty.len(), 10_000);
        assert!(!store.has_dirty());
        // Receiving from the front empties the log without holes left behind.
        for seq in 1..=10_000 {
            store.remove(seq);
        }
        assert_eq!(store.messages.log.len(), 0);
        assert_eq!(store.take_dirty().len(), 10_000);
    }

    #[test]
    fn holes_in_the_middle_are_compacted() {
        let mut store = MessageStore::new(false, true);
        for seq in 1..=1_000 {
            store.insert(msg(seq, 0));
        }
        // Keep the first and the last, remove everything between (completions out of order).
        for seq in (2..1_000).rev() {
            store.remove(seq);
        }
        assert!(
            store.messages.log.len() < 200,
            "{}",
            store.messages.log.len()
        );
        let seqs: Vec<u64> = store.iter().map(|m| m.sequence_number).collect();
        assert_eq!(seqs, vec![1, 1_000]);
    }

    #[test]
    fn without_tracking_nothing_is_recorded() {
        let mut store = MessageStore::new(false, false);
        for seq in 1..=100 {
            store.insert(msg(seq, 0));
        }
        store.modify(5, |m| m.delivery_count = 1);
        store.remove(6);
        assert!(!store.has_dirty());
        assert!(store.take_dirty().is_empty());
        assert!(store.changes.set.is_empty());
    }
}
