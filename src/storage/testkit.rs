//! Test support shared by the backend tests: record builders, a reference model of what a
//! backend must store after a series of deltas, and one conformance scenario every persistent
//! backend runs.

use super::keys::{entity_key_string, prefix_upper_bound, subscriptions_prefix};
use super::{Backend, Delta, EntityKey, EntityRecord, MessageKey, MessageRecord, Snapshot};
use crate::storage::EntityKind;
use serde_json::value::RawValue;
use serde_json::Value;
use std::collections::BTreeMap;

pub fn raw(s: &str) -> Box<RawValue> {
    RawValue::from_string(s.to_string()).unwrap()
}

pub fn queue(name: &str) -> EntityKey {
    EntityKey {
        kind: EntityKind::Queue,
        topic: None,
        name: name.to_string(),
    }
}

pub fn topic(name: &str) -> EntityKey {
    EntityKey {
        kind: EntityKind::Topic,
        topic: None,
        name: name.to_string(),
    }
}

pub fn sub(topic: &str, name: &str) -> EntityKey {
    EntityKey {
        kind: EntityKind::Subscription,
        topic: Some(topic.to_string()),
        name: name.to_string(),
    }
}

pub fn entity(key: &EntityKey, data: &str) -> EntityRecord {
    EntityRecord {
        key: key.clone(),
        data: raw(data),
    }
}

pub fn mkey(entity: &EntityKey, dead_letter: bool, seq: u64) -> MessageKey {
    MessageKey {
        entity: entity.clone(),
        dead_letter,
        sequence_number: seq,
    }
}

pub fn msg(entity: &EntityKey, dead_letter: bool, seq: u64) -> MessageRecord {
    MessageRecord {
        key: mkey(entity, dead_letter, seq),
        data: raw(&format!(
            r#"{{"body":"m{seq} of {}","dl":{dead_letter},"n":[1,2,{{"x":null}}]}}"#,
            entity.name.replace('"', "")
        )),
    }
}

/// A snapshot in a comparable form: entity keys compared case-insensitively (by storage key),
/// JSON compared as values so pretty-printing doesn't matter.
#[derive(Debug, PartialEq)]
pub struct Canon {
    pub entities: Vec<(String, EntityKey, Value)>,
    pub messages: Vec<(String, bool, u64, Value)>,
    pub state: Option<Value>,
    pub lsn: u64,
    pub taken_at: i64,
}

fn value(r: &RawValue) -> Value {
    serde_json::from_str(r.get()).unwrap()
}

pub fn canon(s: &Snapshot) -> Canon {
    let mut entities: Vec<_> = s
        .entities
        .iter()
        .map(|e| (entity_key_string(&e.key), e.key.clone(), value(&e.data)))
        .collect();
    entities.sort_by(|a, b| a.0.cmp(&b.0));
    let mut messages: Vec<_> = s
        .messages
        .iter()
        .map(|m| {
            (
                entity_key_string(&m.key.entity),
                m.key.dead_letter,
                m.key.sequence_number,
                value(&m.data),
            )
        })
        .collect();
    messages.sort_by(|a, b| (&a.0, a.1, a.2).cmp(&(&b.0, b.1, b.2)));
    Canon {
        entities,
        messages,
        state: s.state.as_deref().map(value),
        lsn: s.lsn,
        taken_at: s.taken_at,
    }
}

/// What a backend must hold after a series of deltas (the semantics in `Delta`'s docs).
#[derive(Default)]
pub struct Model {
    entities: BTreeMap<String, EntityRecord>,
    messages: BTreeMap<(String, bool, u64), MessageRecord>,
    state: Option<Box<RawValue>>,
    lsn: u64,
    taken_at: i64,
    present: bool,
}

impl Model {
    pub fn apply(&mut self, d: &Delta) {
        if d.full {
            *self = Model::default();
        }
        for k in &d.entity_deletes {
            let ks = entity_key_string(k);
            self.entities.remove(&ks);
            self.messages.retain(|m, _| m.0 != ks);
            if k.kind == EntityKind::Topic {
                let lo = subscriptions_prefix(&k.name);
                let hi = prefix_upper_bound(&lo);
                let inside = |s: &String| s.as_str() >= lo.as_str() && s.as_str() < hi.as_str();
                self.entities.retain(|s, _| !inside(s));
                self.messages.retain(|m, _| !inside(&m.0));
            }
        }
        for e in &d.entity_upserts {
            self.entities.insert(entity_key_string(&e.key), e.clone());
        }
        for m in &d.message_deletes {
            self.messages.remove(&(
                entity_key_string(&m.entity),
                m.dead_letter,
                m.sequence_number,
            ));
        }
        for m in &d.message_upserts {
            let k = &m.key;
            self.messages.insert(
                (
                    entity_key_string(&k.entity),
                    k.dead_letter,
                    k.sequence_number,
                ),
                m.clone(),
            );
        }
        if d.state.is_some() {
            self.state = d.state.clone();
        }
        self.lsn = d.lsn;
        self.taken_at = d.taken_at;
        self.present = true;
    }

    pub fn snapshot(&self) -> Option<Snapshot> {
        self.present.then(|| Snapshot {
            entities: self.entities.values().cloned().collect(),
            // Messages whose entity is absent are not loadable (backends skip orphans).
            messages: self
                .messages
                .iter()
                .filter(|(k, _)| self.entities.contains_key(&k.0))
                .map(|(_, m)| m.clone())
                .collect(),
            state: self.state.clone(),
            lsn: self.lsn,
            taken_at: self.taken_at,
        })
    }
}

pub fn assert_same(got: Option<Snapshot>, want: Option<Snapshot>, ctx: &str) {
    match (got, want) {
        (None, None) => {}
        (Some(g), Some(w)) => {
            let (g, w) = (canon(&g), canon(&w));
            assert_eq!(g.entities, w.entities, "{ctx}: entities");
            assert_eq!(g.messages, w.messages, "{ctx}: messages");
            assert_eq!(g.state, w.state, "{ctx}: state");
            assert_eq!((g.lsn, g.taken_at), (w.lsn, w.taken_at), "{ctx}: lsn");
        }
        (g, w) => panic!(
            "{ctx}: got {:?} snapshot, want {:?}",
            g.is_some(),
            w.is_some()
        ),
    }
}

/// The deltas of the conformance scenario, in order.
pub fn scenario() -> Vec<Delta> {
    let orders = queue("Orders");
    let slash = queue("a/b");
    let odd = queue("x_y%z.Q-1");
    let t1 = topic("T/1");
    let t1s1 = sub("T/1", "S1");
    let t1s2 = sub("t/1", "sub_2");
    // Two subscriptions whose naive `{topic}_{sub}` file names would collide.
    let tx = topic("t_1");
    let txs = sub("t_1", "s");
    let ty = topic("t");
    let tys = sub("t", "1_s");
    let long = queue(&"_/".repeat(130));

    let mut full = Delta {
        full: true,
        lsn: 10,
        taken_at: 1_000,
        state: Some(raw(r#"{"nextSeq":{"orders":5},"dedup":[]}"#)),
        ..Delta::default()
    };
    for k in [
        &orders, &slash, &odd, &t1, &t1s1, &t1s2, &tx, &txs, &ty, &tys, &long,
    ] {
        full.entity_upserts.push(entity(
            k,
            &format!(
                r#"{{"props":{{"lockDuration":"PT1M"}},"name":{:?}}}"#,
                k.name
            ),
        ));
    }
    for k in [&orders, &slash, &odd, &t1s1, &t1s2, &txs, &tys, &long] {
        for seq in 1..=3 {
            full.message_upserts.push(msg(k, false, seq));
        }
        full.message_upserts.push(msg(k, true, 9));
    }

    let incremental = Delta {
        lsn: 20,
        taken_at: 2_000,
        // A case-changed upsert of an existing queue replaces it.
        entity_upserts: vec![
            entity(&queue("ORDERS"), r#"{"props":{"lockDuration":"PT2M"}}"#),
            entity(&queue("new/q"), r#"{}"#),
        ],
        entity_deletes: vec![topic("t/1"), slash.clone()],
        message_upserts: vec![
            msg(&queue("orders"), false, 4),
            msg(&orders, false, 1), // rewrite
            msg(&queue("NEW/q"), false, 1),
            msg(&txs, true, 10),
        ],
        message_deletes: vec![mkey(&orders, false, 2), mkey(&odd, true, 9)],
        state: None, // unchanged
        ..Delta::default()
    };

    // Re-create the deleted topic: its old subscriptions and messages must not come back.
    let recreate = Delta {
        lsn: 30,
        taken_at: 3_000,
        entity_upserts: vec![
            entity(&t1, r#"{"again":true}"#),
            entity(&t1s1, r#"{"again":true}"#),
        ],
        message_upserts: vec![msg(&t1s1, false, 100)],
        // Deleting every message of an entity empties (removes) its message file.
        message_deletes: vec![
            mkey(&tys, false, 1),
            mkey(&tys, false, 2),
            mkey(&tys, false, 3),
            mkey(&tys, true, 9),
        ],
        state: Some(raw(r#"{"nextSeq":{"orders":6}}"#)),
        ..Delta::default()
    };

    let replace = Delta {
        full: true,
        lsn: 40,
        taken_at: 4_000,
        entity_upserts: vec![entity(&queue("only"), r#"{"v":1}"#)],
        message_upserts: vec![msg(&queue("only"), false, 1)],
        state: None,
        ..Delta::default()
    };
    vec![full, incremental, recreate, replace]
}

/// Runs the conformance scenario against a backend; `open` opens the same store afresh.
pub fn conformance(open: &dyn Fn() -> Box<dyn Backend>) {
    let mut b = open();
    assert!(b.load().unwrap().is_none(), "a new store is empty");
    let mut model = Model::default();
    for (i, delta) in scenario().iter().enumerate() {
        b.apply(delta).unwrap();
        model.apply(delta);
        assert_same(b.load().unwrap(), model.snapshot(), &format!("delta {i}"));
        let mut fresh = open();
        assert_same(
            fresh.load().unwrap(),
            model.snapshot(),
            &format!("delta {i}, reopened"),
        );
        // An incremental delta on a freshly opened (not yet loaded) instance works too.
        drop(fresh);
    }
    let stats = b.stats();
    assert!(stats.size_bytes > 0);
    assert_eq!(stats.last_snapshot, Some(4_000));
    b.compact().unwrap();
    assert_same(b.load().unwrap(), model.snapshot(), "after compact");

    // Incremental deltas applied by a fresh instance that never loaded.
    let mut b2 = open();
    let d = Delta {
        lsn: 50,
        taken_at: 5_000,
        message_upserts: vec![msg(&queue("Only"), true, 7)],
        ..Delta::default()
    };
    b2.apply(&d).unwrap();
    model.apply(&d);
    assert_same(
        open().load().unwrap(),
        model.snapshot(),
        "fresh instance delta",
    );

    b2.purge().unwrap();
    assert!(b2.load().unwrap().is_none(), "purged");
    assert!(open().load().unwrap().is_none(), "purged, reopened");
}
