//! The one table of entity settings: for each property of a queue, topic or subscription, its
//! element name (the same name in ATOM descriptions and in the official emulator's
//! `Config.json`), which kinds accept it, whether `Config.json` may set it, and how to read and
//! write it on [`EntityProps`]. The ATOM parser and renderer and the `Config.json` loader all
//! walk this table, so adding a setting is one line in [`PROPERTIES`].
//!
//! Names and kinds follow the service's descriptions (`QueueDescription`, `TopicDescription`,
//! `SubscriptionDescription` in the management API) and the official emulator's `Config.json`
//! schema (<https://learn.microsoft.com/azure/service-bus-messaging/overview-emulator>).

use crate::broker::entity::{EntityKind, EntityProps, EntityStatus};
use crate::time::TimeSpan;

/// Which kinds accept a property, as a bit set of [`QUEUE`], [`TOPIC`], [`SUBSCRIPTION`].
pub type Kinds = u8;
pub const QUEUE: Kinds = 1;
pub const TOPIC: Kinds = 2;
pub const SUBSCRIPTION: Kinds = 4;
pub const ALL: Kinds = QUEUE | TOPIC | SUBSCRIPTION;

/// The bit of `kind` in [`Kinds`].
pub fn kind_bit(kind: EntityKind) -> Kinds {
    match kind {
        EntityKind::Queue => QUEUE,
        EntityKind::Topic => TOPIC,
        EntityKind::Subscription => SUBSCRIPTION,
    }
}

/// A property's type on the wires with its getter and setter.
#[derive(Clone, Copy)]
pub enum Access {
    Bool(fn(&EntityProps) -> &bool, fn(&mut EntityProps, bool)),
    Int64(fn(&EntityProps) -> &i64, fn(&mut EntityProps, i64)),
    Int32(fn(&EntityProps) -> &i32, fn(&mut EntityProps, i32)),
    /// An xsd:duration (`PT1M`); TimeSpan.MaxValue and beyond mean infinite.
    Duration(
        fn(&EntityProps) -> &TimeSpan,
        fn(&mut EntityProps, TimeSpan),
    ),
    Status(
        fn(&EntityProps) -> &EntityStatus,
        fn(&mut EntityProps, EntityStatus),
    ),
    /// An entity path; written as an absolute address, absent when unset (`ForwardTo`).
    Address(
        fn(&EntityProps) -> &Option<String>,
        fn(&mut EntityProps, Option<String>),
    ),
    /// Free text, absent when unset (`UserMetadata`).
    Text(
        fn(&EntityProps) -> &Option<String>,
        fn(&mut EntityProps, Option<String>),
    ),
}

/// One entity setting.
#[derive(Clone, Copy)]
pub struct Property {
    /// The element name in ATOM descriptions and the key in `Config.json`'s `Properties`.
    pub name: &'static str,
    /// The kinds whose descriptions carry it.
    pub kinds: Kinds,
    /// Whether the official emulator's `Config.json` may set it.
    pub in_config: bool,
    pub access: Access,
}

impl Property {
    /// Whether descriptions of `kind` carry this property.
    pub fn accepts(&self, kind: EntityKind) -> bool {
        self.kinds & kind_bit(kind) != 0
    }
}

/// One table row: `prop!(Name, kinds, in Config.json, type, field)`.
macro_rules! prop {
    ($name:literal, $kinds:expr, $config:expr, $access:ident, $field:ident) => {
        Property {
            name: $name,
            kinds: $kinds,
            in_config: $config,
            access: Access::$access(|p| &p.$field, |p, v| p.$field = v),
        }
    };
}

const QT: Kinds = QUEUE | TOPIC;
const QS: Kinds = QUEUE | SUBSCRIPTION;

/// Every entity setting. Order here does not matter on the wire: the renderer follows the
/// service's element order ([`super::entity`]), appending any property it does not place.
#[rustfmt::skip]
pub const PROPERTIES: &[Property] = &[
    prop!("LockDuration", QS, true, Duration, lock_duration),
    prop!("MaxSizeInMegabytes", QT, true, Int64, max_size_in_megabytes),
    prop!("RequiresDuplicateDetection", QT, true, Bool, requires_duplicate_detection),
    prop!("DuplicateDetectionHistoryTimeWindow", QT, true, Duration, duplicate_detection_history_time_window),
    prop!("RequiresSession", QS, true, Bool, requires_session),
    prop!("DefaultMessageTimeToLive", ALL, true, Duration, default_message_time_to_live),
    prop!("DeadLetteringOnMessageExpiration", QS, true, Bool, dead_lettering_on_message_expiration),
    prop!("DeadLetteringOnFilterEvaluationExceptions", SUBSCRIPTION, false, Bool, dead_lettering_on_filter_evaluation_exceptions),
    prop!("MaxDeliveryCount", QS, true, Int32, max_delivery_count),
    prop!("EnableBatchedOperations", ALL, false, Bool, enable_batched_operations),
    prop!("Status", ALL, false, Status, status),
    prop!("ForwardTo", QS, true, Address, forward_to),
    prop!("ForwardDeadLetteredMessagesTo", QS, true, Address, forward_dead_lettered_messages_to),
    prop!("UserMetadata", ALL, false, Text, user_metadata),
    prop!("AutoDeleteOnIdle", ALL, false, Duration, auto_delete_on_idle),
    prop!("EnablePartitioning", QT, false, Bool, enable_partitioning),
    prop!("SupportOrdering", QT, false, Bool, support_ordering),
    prop!("EnableExpress", QT, false, Bool, enable_express),
    prop!("MaxMessageSizeInKilobytes", QT, false, Int64, max_message_size_in_kilobytes),
];

/// The property called `name` that descriptions of `kind` carry.
pub fn find(name: &str, kind: EntityKind) -> Option<&'static Property> {
    PROPERTIES
        .iter()
        .find(|p| p.name == name && p.accepts(kind))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_every_setter_round_trips_its_getter() {
        for (i, p) in PROPERTIES.iter().enumerate() {
            assert!(
                PROPERTIES[i + 1..].iter().all(|q| q.name != p.name),
                "{} twice",
                p.name
            );
            let mut e = EntityProps::default();
            let before = e.clone();
            match p.access {
                Access::Bool(get, set) => set(&mut e, !*get(&before)),
                Access::Int64(get, set) => set(&mut e, get(&before) + 1),
                Access::Int32(get, set) => set(&mut e, get(&before) + 1),
                Access::Duration(get, set) => set(&mut e, TimeSpan(get(&before).0 / 2)),
                Access::Status(_, set) => set(&mut e, EntityStatus::Disabled),
                Access::Address(_, set) | Access::Text(_, set) => set(&mut e, Some("x".into())),
            }
            assert_ne!(e, before, "{} sets nothing", p.name);
        }
    }
}
