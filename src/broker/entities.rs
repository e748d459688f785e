//! Create, update and delete of queues, topics, subscriptions and rules.

use super::deadlines::EntityId;
use super::entity::{EntityKind, EntityProps, EntityTimes, Rule};
use super::error::BrokerError;
use super::filter::CompiledRule;
use super::{Broker, DupHistory, Outcome, Queue, Receivable, Subscription, Topic};
use crate::names;
use crate::storage::EntityKey;
use crate::time::Millis;
use std::collections::{BTreeMap, BTreeSet};

fn bad(e: String) -> BrokerError {
    BrokerError::BadRequest(e)
}

fn times(now: Millis) -> EntityTimes {
    EntityTimes {
        created_at: now,
        updated_at: now,
        accessed_at: now,
    }
}

/// Checks the settings Azure validates on every entity kind.
fn validate_props(props: &EntityProps) -> Result<(), BrokerError> {
    if props.max_delivery_count < 1 {
        return Err(bad(format!(
            "MaxDeliveryCount must be at least 1, got {}.",
            props.max_delivery_count
        )));
    }
    if props.lock_duration.0 <= 0 || props.lock_duration.as_millis() > 5 * 60 * 1000 {
        return Err(bad(
            "LockDuration must be greater than zero and at most 5 minutes.".to_string(),
        ));
    }
    if props.default_message_time_to_live.0 <= 0 {
        return Err(bad("DefaultMessageTimeToLive must be positive.".to_string()));
    }
    if props.max_size_in_megabytes < 1 {
        return Err(bad("MaxSizeInMegabytes must be positive.".to_string()));
    }
    if props.auto_delete_on_idle.as_millis() < 5 * 60 * 1000 {
        return Err(bad(
            "AutoDeleteOnIdle must be at least 5 minutes.".to_string()
        ));
    }
    let w = props.duplicate_detection_history_time_window.as_millis();
    if !(20_000..=7 * 86_400_000).contains(&w) {
        return Err(bad(
            "DuplicateDetectionHistoryTimeWindow must be between 20 seconds and 7 days."
                .to_string(),
        ));
    }
    Ok(())
}

/// Azure refuses to change RequiresSession after creation.
fn session_unchanged(old: &EntityProps, new: &EntityProps, kind: &str) -> Result<(), BrokerError> {
    if old.requires_session == new.requires_session {
        return Ok(());
    }
    Err(bad(format!(
        "The value for RequiresSession cannot be changed after the {kind} is created."
    )))
}

impl Broker {
    /// Records a deleted entity for the next snapshot (its stored messages go with it).
    fn forget_entity(&mut self, key: EntityKey) {
        self.dirty_entities.remove(&key);
        self.deleted_entities.insert(key);
        self.touched = true;
    }

    fn name_taken(&self, name: &str) -> bool {
        let k = names::key(name);
        self.queues.contains_key(&k) || self.topics.contains_key(&k)
    }

    /// ForwardTo targets must exist and not be the entity itself.
    fn validate_forwarding(&self, own: &str, props: &EntityProps) -> Result<(), BrokerError> {
        for target in [&props.forward_to, &props.forward_dead_lettered_messages_to]
            .into_iter()
            .flatten()
        {
            if names::key(target) == names::key(own) {
                return Err(bad(format!("The entity '{own}' cannot forward to itself.")));
            }
            if !self.name_taken(target) {
                return Err(BrokerError::EntityNotFound(target.clone()));
            }
        }
        Ok(())
    }

    pub(super) fn create_queue(
        &mut self,
        name: &str,
        props: &EntityProps,
        now: Millis,
    ) -> Result<Outcome, BrokerError> {
        names::validate_entity_name(name).map_err(bad)?;
        validate_props(props)?;
        if self.name_taken(name) {
            return Err(BrokerError::EntityExists(name.to_string()));
        }
        self.validate_forwarding(name, props)?;
        self.queues.insert(
            names::key(name),
            Queue {
                name: name.to_string(),
                props: props.clone(),
                times: times(now),
                next_seq: 1,
                dup: DupHistory::default(),
                q: Receivable::new(props.requires_session, !self.untracked),
            },
        );
        self.deadlines.mark(EntityId::Queue(names::key(name)));
        self.touch_entity(queue_key(name));
        Ok(Outcome::Done)
    }

    pub(super) fn update_queue(
        &mut self,
        name: &str,
        props: &EntityProps,
        now: Millis,
    ) -> Result<Outcome, BrokerError> {
        validate_props(props)?;
        self.validate_forwarding(name, props)?;
        let q = self
            .queues
            .get_mut(&names::key(name))
            .ok_or_else(|| BrokerError::EntityNotFound(name.to_string()))?;
        session_unchanged(&q.props, props, "queue")?;
        self.deadlines.mark(EntityId::Queue(names::key(name)));
        q.props = props.clone();
        q.times.updated_at = now;
        let key = queue_key(&q.name);
        self.touch_entity(key);
        Ok(Outcome::Done)
    }

    pub(super) fn delete_queue(&mut self, name: &str) -> Result<Outcome, BrokerError> {
        let q = self
            .queues
            .remove(&names::key(name))
            .ok_or_else(|| BrokerError::EntityNotFound(name.to_string()))?;
        self.deadlines.mark(EntityId::Queue(names::key(name)));
        self.forget_entity(queue_key(&q.name));
        Ok(Outcome::Done)
    }

    pub(super) fn create_topic(
        &mut self,
        name: &str,
        props: &EntityProps,
        now: Millis,
    ) -> Result<Outcome, BrokerError> {
        names::validate_entity_name(name).map_err(bad)?;
        validate_props(props)?;
        if self.name_taken(name) {
            return Err(BrokerError::EntityExists(name.to_string()));
        }
        self.topics.insert(
            names::key(name),
            Topic {
                name: name.to_string(),
                props: props.clone(),
                times: times(now),
                next_seq: 1,
                dup: DupHistory::default(),
                subs: BTreeMap::new(),
            },
        );
        self.deadlines.mark(EntityId::Topic(names::key(name)));
        self.touch_entity(topic_key(name));
        Ok(Outcome::Done)
    }

    pub(super) fn update_topic(
        &mut self,
        name: &str,
        props: &EntityProps,
        now: Millis,
    ) -> Result<Outcome, BrokerError> {
        validate_props(props)?;
        let t = self
            .topics
            .get_mut(&names::key(name))
            .ok_or_else(|| BrokerError::EntityNotFound(name.to_string()))?;
        t.props = props.clone();
        t.times.updated_at = now;
        self.deadlines.mark(EntityId::Topic(names::key(name)));
        let key = topic_key(&t.name);
        self.touch_entity(key);
        Ok(Outcome::Done)
    }

    pub(super) fn delete_topic(&mut self, name: &str) -> Result<Outcome, BrokerError> {
        let t = self
            .topics
            .remove(&names::key(name))
            .ok_or_else(|| BrokerError::EntityNotFound(name.to_string()))?;
        let tk = names::key(name);
        for (sk, s) in &t.subs {
            let k = sub_key(&t.name, &s.name);
            self.dirty_entities.remove(&k);
            self.deadlines
                .mark(EntityId::Subscription(tk.clone(), sk.clone()));
        }
        self.deadlines.mark(EntityId::Topic(tk));
        self.forget_entity(topic_key(&t.name));
        Ok(Outcome::Done)
    }

    pub(super) fn create_subscription(
        &mut self,
        topic: &str,
        name: &str,
        props: &EntityProps,
        rule: Option<Rule>,
        now: Millis,
    ) -> Result<Outcome, BrokerError> {
        names::validate_subscription_name(name).map_err(bad)?;
        validate_props(props)?;
        self.validate_forwarding(&format!("{topic}/Subscriptions/{name}"), props)?;
        let rule = match rule {
            Some(mut r) => {
                names::validate_rule_name(&r.name).map_err(bad)?;
                r.created_at = now;
                r
            }
            None => Rule::default_rule(now),
        };
        let compiled = CompiledRule::create(rule)?;
        let t = self
            .topics
            .get_mut(&names::key(topic))
            .ok_or_else(|| BrokerError::EntityNotFound(topic.to_string()))?;
        if t.subs.contains_key(&names::key(name)) {
            return Err(BrokerError::EntityExists(format!(
                "{}/Subscriptions/{name}",
                t.name
            )));
        }
        let mut rules = BTreeMap::new();
        rules.insert(names::key(&compiled.rule.name), compiled);
        t.subs.insert(
            names::key(name),
            Subscription {
                name: name.to_string(),
                props: props.clone(),
                times: times(now),
                rules,
                q: Receivable::new(props.requires_session, !self.untracked),
                wake_key: crate::broker::messaging::wake_key_of(
                    &crate::broker::QueuePath::subscription(&t.name, name),
                )
                .into(),
                changed: false,
            },
        );
        let key = sub_key(&t.name, name);
        self.deadlines
            .mark(EntityId::Subscription(names::key(topic), names::key(name)));
        self.touch_entity(key);
        Ok(Outcome::Done)
    }

    fn sub_mut(
        &mut self,
        topic: &str,
        name: &str,
    ) -> Result<(&mut Subscription, EntityKey), BrokerError> {
        let t = self
            .topics
            .get_mut(&names::key(topic))
            .ok_or_else(|| BrokerError::EntityNotFound(topic.to_string()))?;
        let tname = t.name.clone();
        let s = t
            .subs
            .get_mut(&names::key(name))
            .ok_or_else(|| BrokerError::EntityNotFound(format!("{tname}/Subscriptions/{name}")))?;
        let key = sub_key(&tname, &s.name);
        self.deadlines
            .mark(EntityId::Subscription(names::key(topic), names::key(name)));
        Ok((s, key))
    }

    pub(super) fn update_subscription(
        &mut self,
        topic: &str,
        name: &str,
        props: &EntityProps,
        now: Millis,
    ) -> Result<Outcome, BrokerError> {
        validate_props(props)?;
        self.validate_forwarding(&format!("{topic}/Subscriptions/{name}"), props)?;
        let (s, key) = self.sub_mut(topic, name)?;
        session_unchanged(&s.props, props, "subscription")?;
        s.props = props.clone();
        s.times.updated_at = now;
        self.touch_entity(key);
        Ok(Outcome::Done)
    }

    pub(super) fn delete_subscription(
        &mut self,
        topic: &str,
        name: &str,
    ) -> Result<Outcome, BrokerError> {
        let t = self
            .topics
            .get_mut(&names::key(topic))
            .ok_or_else(|| BrokerError::EntityNotFound(topic.to_string()))?;
        let s = t
            .subs
            .remove(&names::key(name))
            .ok_or_else(|| BrokerError::EntityNotFound(format!("{topic}/Subscriptions/{name}")))?;
        let key = sub_key(&t.name, &s.name);
        self.deadlines
            .mark(EntityId::Subscription(names::key(topic), names::key(name)));
        self.forget_entity(key);
        Ok(Outcome::Done)
    }

    pub(super) fn create_rule(
        &mut self,
        topic: &str,
        sub: &str,
        rule: &Rule,
        now: Millis,
        update: bool,
    ) -> Result<Outcome, BrokerError> {
        names::validate_rule_name(&rule.name).map_err(bad)?;
        let mut rule = rule.clone();
        let (s, key) = self.sub_mut(topic, sub)?;
        let rk = names::key(&rule.name);
        match (s.rules.get(&rk), update) {
            (Some(_), false) => {
                return Err(BrokerError::EntityExists(format!(
                    "{topic}/Subscriptions/{sub}/Rules/{}",
                    rule.name
                )))
            }
            (None, true) => {
                return Err(BrokerError::EntityNotFound(format!(
                    "{topic}/Subscriptions/{sub}/Rules/{}",
                    rule.name
                )))
            }
            (Some(old), true) => rule.created_at = old.rule.created_at,
            (None, false) => rule.created_at = now,
        }
        let compiled = CompiledRule::create(rule)?;
        s.rules.insert(rk, compiled);
        s.times.updated_at = now;
        self.touch_entity(key);
        Ok(Outcome::Done)
    }

    pub(super) fn delete_rule(
        &mut self,
        topic: &str,
        sub: &str,
        name: &str,
    ) -> Result<Outcome, BrokerError> {
        let (s, key) = self.sub_mut(topic, sub)?;
        if s.rules.remove(&names::key(name)).is_none() {
            return Err(BrokerError::EntityNotFound(format!(
                "{topic}/Subscriptions/{sub}/Rules/{name}"
            )));
        }
        self.touch_entity(key);
        Ok(Outcome::Done)
    }

    pub(super) fn purge_all(&mut self) {
        for q in self.queues.values() {
            self.deleted_entities.insert(queue_key(&q.name));
        }
        for t in self.topics.values() {
            self.deleted_entities.insert(topic_key(&t.name));
        }
        self.queues.clear();
        self.topics.clear();
        self.deadlines.clear();
        self.dirty_entities.clear();
        self.wakeups.clear();
        self.full_needed = true;
        self.touched = true;
    }

    /// Deletes entities idle past AutoDeleteOnIdle.
    /// Deletes the entities among `candidates` whose auto-delete-on-idle time has passed
    /// (queues, then topics, then subscriptions of topics still there).
    pub(super) fn auto_delete_idle(&mut self, now: Millis, candidates: &BTreeSet<EntityId>) {
        let idle = |p: &EntityProps, t: &EntityTimes| {
            !p.auto_delete_on_idle.is_infinite()
                && p.auto_delete_on_idle.after(t.accessed_at) <= now
        };
        // Names found first, deleted after: deleting a topic removes its subscriptions, which
        // then are simply not found.
        let mut queues = Vec::new();
        let mut topics = Vec::new();
        let mut subs = Vec::new();
        for id in candidates {
            match id {
                EntityId::Queue(k) => {
                    if let Some(q) = self.queues.get(k).filter(|q| idle(&q.props, &q.times)) {
                        queues.push(q.name.clone());
                    }
                }
                EntityId::Topic(k) => {
                    if let Some(t) = self.topics.get(k).filter(|t| idle(&t.props, &t.times)) {
                        topics.push(t.name.clone());
                    }
                }
                EntityId::Subscription(tk, sk) => subs.push((tk, sk)),
            }
        }
        for q in queues {
            let _ = self.delete_queue(&q);
        }
        for t in topics {
            let _ = self.delete_topic(&t);
        }
        let subs: Vec<(String, String)> = subs
            .into_iter()
            .filter_map(|(tk, sk)| {
                let t = self.topics.get(tk)?;
                let s = t.subs.get(sk).filter(|s| idle(&s.props, &s.times))?;
                Some((t.name.clone(), s.name.clone()))
            })
            .collect();
        for (t, s) in subs {
            let _ = self.delete_subscription(&t, &s);
        }
    }

    /// Every entity, for the full-scan tick the tests compare with the indexed one.
    #[cfg(test)]
    pub(super) fn all_entity_ids(&self) -> BTreeSet<EntityId> {
        let mut ids: BTreeSet<EntityId> =
            self.queues.keys().cloned().map(EntityId::Queue).collect();
        for (tk, t) in &self.topics {
            ids.insert(EntityId::Topic(tk.clone()));
            for sk in t.subs.keys() {
                ids.insert(EntityId::Subscription(tk.clone(), sk.clone()));
            }
        }
        ids
    }
}

pub(crate) fn queue_key(name: &str) -> EntityKey {
    EntityKey {
        kind: EntityKind::Queue,
        topic: None,
        name: name.to_string(),
    }
}

pub(crate) fn topic_key(name: &str) -> EntityKey {
    EntityKey {
        kind: EntityKind::Topic,
        topic: None,
        name: name.to_string(),
    }
}

pub(crate) fn sub_key(topic: &str, name: &str) -> EntityKey {
    EntityKey {
        kind: EntityKind::Subscription,
        topic: Some(topic.to_string()),
        name: name.to_string(),
    }
}
