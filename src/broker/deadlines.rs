//! The deadline index: when each queue, topic and subscription next needs the timer.
//!
//! The timer asks [`super::Broker::next_due`] after every state-changing operation, under the
//! broker lock. Scanning every entity there costs O(entities) per operation; this index keeps
//! each entity's earliest deadline (lock expiry, TTL, schedule, session lock, auto-delete on
//! idle) in a `BTreeSet`, so the answer is its first element.
//!
//! Upkeep: every code path that mutates an entity marks it ([`Deadlines::mark`]); at the end
//! of each `apply` the broker recomputes the due time of just the marked entities from their
//! stores, sessions and idle time, and stores it with [`Deadlines::set`]. Marking too much only
//! costs a recompute; marking too little would delay a deadline, which the unit tests guard
//! against by comparing the index with a full scan after every operation.

use crate::time::Millis;
use std::collections::{BTreeSet, HashMap};

/// An entity, by the lowercased keys the broker's maps use. The derived order (queues, then
/// topics, then subscriptions by topic and name) is the broker's own iteration order.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum EntityId {
    Queue(String),
    Topic(String),
    /// Topic key, subscription key.
    Subscription(String, String),
}

/// Each entity's earliest deadline, ordered by time.
#[derive(Debug, Clone, Default)]
pub struct Deadlines {
    by_time: BTreeSet<(Millis, EntityId)>,
    due_of: HashMap<EntityId, Millis>,
    /// Entities the current operation touched; their due times are recomputed at its end.
    pending: BTreeSet<EntityId>,
}

impl Deadlines {
    /// Notes that an operation touched `id`, so its due time must be recomputed.
    pub fn mark(&mut self, id: EntityId) {
        self.pending.insert(id);
    }

    /// The entities marked since the last call.
    pub fn take_pending(&mut self) -> BTreeSet<EntityId> {
        std::mem::take(&mut self.pending)
    }

    /// Records `id`'s earliest deadline; `None` (nothing due, or the entity is gone) drops it.
    pub fn set(&mut self, id: EntityId, due: Option<Millis>) {
        match due {
            Some(t) => {
                if let Some(old) = self.due_of.insert(id.clone(), t) {
                    if old == t {
                        return;
                    }
                    self.by_time.remove(&(old, id.clone()));
                }
                self.by_time.insert((t, id));
            }
            None => {
                if let Some(old) = self.due_of.remove(&id) {
                    self.by_time.remove(&(old, id));
                }
            }
        }
    }

    /// The earliest deadline of any entity.
    pub fn first(&self) -> Option<Millis> {
        self.by_time.first().map(|(t, _)| *t)
    }

    /// Entities with a deadline at or before `now`, in entity order.
    pub fn due_by(&self, now: Millis) -> BTreeSet<EntityId> {
        self.by_time
            .iter()
            .take_while(|(t, _)| *t <= now)
            .map(|(_, id)| id.clone())
            .collect()
    }

    /// Forgets everything (purge; rebuild).
    pub fn clear(&mut self) {
        *self = Deadlines::default();
    }

    /// Every (due, entity) entry in order, for tests comparing indexes.
    #[cfg(test)]
    pub fn entries(&self) -> Vec<(Millis, EntityId)> {
        self.by_time.iter().cloned().collect()
    }

    /// Number of entities with a deadline.
    pub fn len(&self) -> usize {
        self.due_of.len()
    }

    /// No entity has a deadline.
    pub fn is_empty(&self) -> bool {
        self.due_of.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_moves_and_drops_entries() {
        let mut d = Deadlines::default();
        let q = EntityId::Queue("a".into());
        let s = EntityId::Subscription("t".into(), "s".into());
        d.set(q.clone(), Some(50));
        d.set(s.clone(), Some(20));
        assert_eq!(d.first(), Some(20));
        d.set(s.clone(), Some(90));
        assert_eq!(d.first(), Some(50));
        assert_eq!(d.len(), 2);
        d.set(q.clone(), None);
        assert_eq!(d.first(), Some(90));
        assert_eq!(d.due_by(89).len(), 0);
        assert_eq!(d.due_by(90), BTreeSet::from([s.clone()]));
        d.set(s, None);
        assert!(d.is_empty());
        assert_eq!(d.first(), None);
    }
}
