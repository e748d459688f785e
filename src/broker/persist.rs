//! Snapshots of the broker: incremental deltas out, whole state in.
//!
//! Entity records carry the description, times, sequence counter, duplicate-detection history,
//! session state and (for subscriptions) rules. Message records are [`Message`] in serde JSON.
//! Both are opaque to the storage backends.

use super::entities::{queue_key, sub_key, topic_key};
use super::entity::{EntityKind, EntityProps, EntityTimes, Rule};
use super::filter::CompiledRule;
use super::message::Message;
use super::{Broker, DupHistory, Queue, QueuePath, Receivable, Session, Subscription, Topic};
use crate::names;
use crate::storage::{Delta, EntityKey, EntityRecord, MessageKey, MessageRecord, Snapshot};
use crate::time::Millis;
use serde::{Deserialize, Serialize};
use serde_json::value::{to_raw_value, RawValue};
use std::collections::BTreeMap;

#[derive(Serialize, Deserialize)]
struct QueueRecord {
    name: String,
    props: EntityProps,
    times: EntityTimes,
    next_seq: u64,
    #[serde(default)]
    dup: Vec<(String, Millis)>,
    #[serde(default)]
    sessions: BTreeMap<String, Session>,
}

#[derive(Serialize, Deserialize)]
struct TopicRecord {
    name: String,
    props: EntityProps,
    times: EntityTimes,
    next_seq: u64,
    #[serde(default)]
    dup: Vec<(String, Millis)>,
}

#[derive(Serialize, Deserialize)]
struct SubscriptionRecord {
    topic: String,
    name: String,
    props: EntityProps,
    times: EntityTimes,
    rules: Vec<Rule>,
    #[serde(default)]
    sessions: BTreeMap<String, Session>,
}

#[derive(Serialize, Deserialize)]
struct BrokerState {
    created_at: Millis,
}

fn raw<T: Serialize>(v: &T) -> Result<Box<RawValue>, String> {
    to_raw_value(v).map_err(|e| e.to_string())
}

/// Deserialises a record, naming the JSON path of the first bad field on error.
fn parse<T: serde::de::DeserializeOwned>(text: &str) -> Result<T, String> {
    // Fast path; the path-tracking parse only runs to explain a failure.
    if let Ok(v) = serde_json::from_str(text) {
        return Ok(v);
    }
    let de = &mut serde_json::Deserializer::from_str(text);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        format!("at '{path}': {}", e.inner())
    })
}

impl Broker {
    /// The entity records wanted by `want`, serialised.
    /// `want` gets an entity's key and whether it flagged itself changed (subscriptions do).
    fn entity_records(
        &self,
        want: impl Fn(&EntityKey, bool) -> bool,
    ) -> Result<Vec<EntityRecord>, String> {
        let mut out = Vec::new();
        for q in self.queues.values() {
            let key = queue_key(&q.name);
            if want(&key, false) {
                out.push(EntityRecord {
                    key,
                    data: raw(&QueueRecord {
                        name: q.name.clone(),
                        props: q.props.clone(),
                        times: q.times,
                        next_seq: q.next_seq,
                        dup: q.dup.entries(),
                        sessions: q.q.sessions.clone(),
                    })?,
                });
            }
        }
        for t in self.topics.values() {
            let key = topic_key(&t.name);
            if want(&key, false) {
                out.push(EntityRecord {
                    key,
                    data: raw(&TopicRecord {
                        name: t.name.clone(),
                        props: t.props.clone(),
                        times: t.times,
                        next_seq: t.next_seq,
                        dup: t.dup.entries(),
                    })?,
                });
            }
            for s in t.subs.values() {
                let key = sub_key(&t.name, &s.name);
                if want(&key, s.changed) {
                    out.push(EntityRecord {
                        key,
                        data: raw(&SubscriptionRecord {
                            topic: t.name.clone(),
                            name: s.name.clone(),
                            props: s.props.clone(),
                            times: s.times,
                            rules: s.rules.values().map(|r| r.rule.clone()).collect(),
                            sessions: s.q.sessions.clone(),
                        })?,
                    });
                }
            }
        }
        Ok(out)
    }

    fn receivables_mut(&mut self) -> Vec<(EntityKey, &mut Receivable)> {
        let mut out = Vec::new();
        for q in self.queues.values_mut() {
            out.push((queue_key(&q.name), &mut q.q));
        }
        for t in self.topics.values_mut() {
            for s in t.subs.values_mut() {
                out.push((sub_key(&t.name, &s.name), &mut s.q));
            }
        }
        out
    }

    fn receivables(&self) -> Vec<(EntityKey, &Receivable)> {
        let mut out = Vec::new();
        for q in self.queues.values() {
            out.push((queue_key(&q.name), &q.q));
        }
        for t in self.topics.values() {
            for s in t.subs.values() {
                out.push((sub_key(&t.name, &s.name), &s.q));
            }
        }
        out
    }

    fn state_record(&self) -> Result<Box<RawValue>, String> {
        raw(&BrokerState {
            created_at: self.created_at,
        })
    }

    /// Collects what changed since the last delta (or everything, when `full` or needed) and
    /// clears the change tracking. Runs under the state lock; its cost is proportional to the
    /// change, not the state, except for a full snapshot.
    pub fn take_delta(&mut self, full: bool, lsn: u64, taken_at: Millis) -> Result<Delta, String> {
        let full = full || self.full_needed;
        if full {
            let mut d = self.full_snapshot(lsn, taken_at)?;
            self.clear_changes();
            d.lsn = lsn;
            return Ok(Delta {
                full: true,
                entity_upserts: std::mem::take(&mut d.entities),
                message_upserts: std::mem::take(&mut d.messages),
                state: d.state,
                lsn,
                taken_at,
                ..Delta::default()
            });
        }
        let dirty = std::mem::take(&mut self.dirty_entities);
        let mut d = Delta {
            full: false,
            lsn,
            taken_at,
            state: Some(self.state_record()?),
            entity_deletes: std::mem::take(&mut self.deleted_entities)
                .into_iter()
                .collect(),
            entity_upserts: self.entity_records(|k, changed| changed || dirty.contains(k))?,
            ..Delta::default()
        };
        self.clear_changed_flags();
        for (key, rcv) in self.receivables_mut() {
            for (dead_letter, store) in [(false, &mut rcv.main), (true, &mut rcv.dlq)] {
                for seq in store.take_dirty() {
                    let mk = MessageKey {
                        entity: key.clone(),
                        dead_letter,
                        sequence_number: seq,
                    };
                    match store.get(seq) {
                        Some(m) => d.message_upserts.push(MessageRecord {
                            key: mk,
                            data: raw(m)?,
                        }),
                        None => d.message_deletes.push(mk),
                    }
                }
            }
        }
        Ok(d)
    }

    /// The whole state as a snapshot, without touching change tracking (export).
    pub fn full_snapshot(&self, lsn: u64, taken_at: Millis) -> Result<Snapshot, String> {
        let mut messages = Vec::new();
        for (key, rcv) in self.receivables() {
            for (dead_letter, store) in [(false, &rcv.main), (true, &rcv.dlq)] {
                for m in store.iter() {
                    messages.push(MessageRecord {
                        key: MessageKey {
                            entity: key.clone(),
                            dead_letter,
                            sequence_number: m.sequence_number,
                        },
                        data: raw(m)?,
                    });
                }
            }
        }
        Ok(Snapshot {
            entities: self.entity_records(|_, _| true)?,
            messages,
            state: Some(self.state_record()?),
            lsn,
            taken_at,
        })
    }

    fn clear_changed_flags(&mut self) {
        for t in self.topics.values_mut() {
            for s in t.subs.values_mut() {
                s.changed = false;
            }
        }
    }

    /// Forgets all change tracking (after a full snapshot was taken).
    fn clear_changes(&mut self) {
        self.clear_changed_flags();
        self.dirty_entities.clear();
        self.deleted_entities.clear();
        self.full_needed = false;
        for (_, rcv) in self.receivables_mut() {
            rcv.main.take_dirty();
            rcv.dlq.take_dirty();
        }
    }

    /// Turns the record of changes for incremental snapshots on or off, here and for
    /// entities created later (off for the in-memory backend, which never snapshots).
    pub fn set_change_tracking(&mut self, on: bool) {
        self.untracked = !on;
        for (_, rcv) in self.receivables_mut() {
            rcv.main.set_change_tracking(on);
            rcv.dlq.set_change_tracking(on);
        }
    }

    /// Marks everything for a full rewrite at the next snapshot (after an import).
    pub fn mark_full(&mut self) {
        self.full_needed = true;
    }

    /// After a failed delta write: the next snapshot must rewrite everything.
    pub fn require_full_snapshot(&mut self) {
        self.full_needed = true;
    }

    /// Is there anything a delta would write?
    pub fn has_changes(&self) -> bool {
        self.full_needed
            || !self.dirty_entities.is_empty()
            || !self.deleted_entities.is_empty()
            || self
                .queues
                .values()
                .any(|q| q.q.main.has_dirty() || q.q.dlq.has_dirty())
            || self.topics.values().any(|t| {
                t.subs
                    .values()
                    .any(|s| s.changed || s.q.main.has_dirty() || s.q.dlq.has_dirty())
            })
    }

    /// Rebuilds a broker from a stored snapshot. Nothing is marked dirty: the store already
    /// holds exactly this state.
    pub fn restore(snap: &Snapshot, now: Millis) -> Result<Broker, String> {
        let mut b = Broker::new(now);
        b.full_needed = false;
        if let Some(state) = &snap.state {
            let st: BrokerState = parse(state.get()).map_err(|e| format!("state {e}"))?;
            b.created_at = st.created_at;
        }
        for rec in &snap.entities {
            let data = rec.data.get();
            match rec.key.kind {
                EntityKind::Queue => {
                    let r: QueueRecord =
                        parse(data).map_err(|e| format!("queue '{}' {e}", rec.key.name))?;
                    let mut q = Receivable::new(r.props.requires_session, true);
                    q.sessions = r.sessions;
                    if b.queues.contains_key(&names::key(&r.name)) {
                        return Err(format!("duplicate queue '{}'", r.name));
                    }
                    b.queues.insert(
                        names::key(&r.name),
                        Queue {
                            name: r.name,
                            props: r.props,
                            times: r.times,
                            next_seq: r.next_seq,
                            dup: DupHistory::from_entries(r.dup),
                            q,
                        },
                    );
                }
                EntityKind::Topic => {
                    let r: TopicRecord =
                        parse(data).map_err(|e| format!("topic '{}' {e}", rec.key.name))?;
                    if b.topics.contains_key(&names::key(&r.name)) {
                        return Err(format!("duplicate topic '{}'", r.name));
                    }
                    b.topics.insert(
                        names::key(&r.name),
                        Topic {
                            name: r.name,
                            props: r.props,
                            times: r.times,
                            next_seq: r.next_seq,
                            dup: DupHistory::from_entries(r.dup),
                            subs: BTreeMap::new(),
                        },
                    );
                }
                EntityKind::Subscription => {}
            }
        }
        for rec in &snap.entities {
            if rec.key.kind != EntityKind::Subscription {
                continue;
            }
            let r: SubscriptionRecord = parse(rec.data.get())
                .map_err(|e| format!("subscription '{}' {e}", rec.key.name))?;
            let t = b.topics.get_mut(&names::key(&r.topic)).ok_or_else(|| {
                format!("subscription '{}' of missing topic '{}'", r.name, r.topic)
            })?;
            let mut rules = BTreeMap::new();
            for rule in r.rules {
                let c = CompiledRule::compile(rule).map_err(|e| e.to_string())?;
                rules.insert(names::key(&c.rule.name), c);
            }
            let mut q = Receivable::new(r.props.requires_session, true);
            q.sessions = r.sessions;
            if t.subs.contains_key(&names::key(&r.name)) {
                return Err(format!(
                    "duplicate subscription '{}' of topic '{}'",
                    r.name, r.topic
                ));
            }
            let wake_key =
                crate::broker::messaging::wake_key_of(&QueuePath::subscription(&t.name, &r.name))
                    .into();
            t.subs.insert(
                names::key(&r.name),
                Subscription {
                    name: r.name,
                    props: r.props,
                    times: r.times,
                    rules,
                    q,
                    wake_key,
                    changed: false,
                },
            );
        }
        // Parsing is the bulk of recovery: spread it over the cores. Messages are parsed
        // straight into runs of one entity, in the form the store's map is built from, so each
        // is moved once more (into the map), not copied through intermediate vectors.
        let mut groups: BTreeMap<(EntityKey, bool), Vec<(u64, Message)>> = BTreeMap::new();
        for (start, msgs) in parse_runs(&snap.messages)? {
            let first = &snap.messages[start].key;
            let key = EntityKey {
                kind: first.entity.kind,
                topic: first.entity.topic.as_deref().map(names::key),
                name: names::key(&first.entity.name),
            };
            add_group(&mut groups, (key, first.dead_letter), msgs);
        }
        for ((key, dead_letter), msgs) in groups {
            let rcv = b
                .receivable_for_key(&key)
                .ok_or_else(|| format!("message of missing entity '{}'", key.name))?;
            let store = if dead_letter {
                &mut rcv.dlq
            } else {
                &mut rcv.main
            };
            // Two records for one sequence number would silently collapse into one.
            store.bulk_load(msgs).map_err(|seq| {
                format!(
                    "duplicate message with sequence number {seq} in '{}'{}",
                    key.name,
                    if dead_letter {
                        " (dead-letter queue)"
                    } else {
                        ""
                    }
                )
            })?;
        }
        // Loading marked every message dirty; the store already has them. A sequence counter
        // never falls behind a stored message (a hand-edited store must not make a later send
        // overwrite one).
        let max_seq = |r: &Receivable| {
            r.main
                .iter()
                .chain(r.dlq.iter())
                .map(|m| m.sequence_number)
                .max()
                .unwrap_or(0)
        };
        for q in b.queues.values_mut() {
            q.q.main.take_dirty();
            q.q.dlq.take_dirty();
            q.next_seq = q.next_seq.max(max_seq(&q.q) + 1);
        }
        for t in b.topics.values_mut() {
            for s in t.subs.values_mut() {
                s.q.main.take_dirty();
                s.q.dlq.take_dirty();
                t.next_seq = t.next_seq.max(max_seq(&s.q) + 1);
            }
        }
        b.rebuild_deadlines();
        Ok(b)
    }

    fn receivable_for_key(&mut self, key: &EntityKey) -> Option<&mut Receivable> {
        match key.kind {
            EntityKind::Queue => self
                .queues
                .get_mut(&names::key(&key.name))
                .map(|q| &mut q.q),
            EntityKind::Subscription => self
                .topics
                .get_mut(&names::key(key.topic.as_deref().unwrap_or("")))
                .and_then(|t| t.subs.get_mut(&names::key(&key.name)))
                .map(|s| &mut s.q),
            EntityKind::Topic => None,
        }
    }
}

/// Adds a run of messages to its group (moving the vector when it is the group's first run).
fn add_group(
    groups: &mut BTreeMap<(EntityKey, bool), Vec<(u64, Message)>>,
    key: (EntityKey, bool),
    mut msgs: Vec<(u64, Message)>,
) {
    let slot = groups.entry(key).or_default();
    if slot.is_empty() {
        *slot = msgs;
    } else {
        slot.append(&mut msgs);
    }
}

/// Consecutive records of one entity's main or dead-letter queue, parsed: the index of the
/// first record and the messages keyed by sequence number.
type Run = (usize, Vec<(u64, Message)>);

/// Parses message records on every core (recovery of a million messages is mostly JSON),
/// one part per thread, the last on the calling thread. Its allocations then stay in the
/// calling thread's allocator arena: glibc grows a thread's own arena a page at a time (one
/// `mprotect` per page), which cost recovery of 1,000,000 messages most of a second.
fn parse_runs(records: &[MessageRecord]) -> Result<Vec<Run>, String> {
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .clamp(1, 16);
    if records.len() < 10_000 || threads == 1 {
        return parse_part(records, 0);
    }
    let chunk = records.len().div_ceil(threads);
    let mut parts: Vec<(usize, &[MessageRecord])> = records
        .chunks(chunk)
        .enumerate()
        .map(|(i, part)| (i * chunk, part))
        .collect();
    let Some((mine_at, mine)) = parts.pop() else {
        return Ok(Vec::new());
    };
    std::thread::scope(|scope| {
        let handles: Vec<_> = parts
            .into_iter()
            .map(|(at, part)| scope.spawn(move || parse_part(part, at)))
            .collect();
        let mine = parse_part(mine, mine_at);
        let mut runs = Vec::new();
        for h in handles {
            let part = h
                .join()
                .unwrap_or_else(|_| Err("a parser thread panicked".to_string()));
            runs.extend(part?);
        }
        runs.extend(mine?);
        Ok(runs)
    })
}

/// Parses `records` (starting at index `at` of the snapshot) into runs of one entity.
fn parse_part(records: &[MessageRecord], at: usize) -> Result<Vec<Run>, String> {
    let mut runs = Vec::new();
    let mut start = 0;
    while start < records.len() {
        let first = &records[start].key;
        let len = records[start..]
            .iter()
            .take_while(|r| r.key.dead_letter == first.dead_letter && r.key.entity == first.entity)
            .count();
        let mut msgs = Vec::with_capacity(len);
        for rec in &records[start..start + len] {
            let m = parse_message(rec)?;
            msgs.push((m.sequence_number, m));
        }
        runs.push((at + start, msgs));
        start += len;
    }
    Ok(runs)
}

fn parse_message(rec: &MessageRecord) -> Result<Message, String> {
    parse(rec.data.get()).map_err(|e| {
        format!(
            "message {} of '{}' {e}",
            rec.key.sequence_number, rec.key.entity.name
        )
    })
}
