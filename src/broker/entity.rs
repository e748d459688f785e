//! Entity descriptions: the settings of queues, topics and subscriptions, and subscription rules.
//!
//! One [`EntityProps`] struct carries every setting any entity kind has; the ATOM layer reads and
//! writes the subset each kind exposes. Defaults are Azure's (see [`EntityProps::default`]).

use crate::time::{Millis, TimeSpan};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

use super::value::Value;

/// Which kind of entity a description belongs to. Defined with the stored record types (it is
/// part of every stored key) so that storage does not depend on the broker.
pub use crate::storage::EntityKind;

/// Azure's EntityStatus.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum EntityStatus {
    #[default]
    Active,
    Disabled,
    SendDisabled,
    ReceiveDisabled,
}

impl EntityStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            EntityStatus::Active => "Active",
            EntityStatus::Disabled => "Disabled",
            EntityStatus::SendDisabled => "SendDisabled",
            EntityStatus::ReceiveDisabled => "ReceiveDisabled",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        match s.trim() {
            "Active" => Some(EntityStatus::Active),
            "Disabled" => Some(EntityStatus::Disabled),
            "SendDisabled" => Some(EntityStatus::SendDisabled),
            "ReceiveDisabled" => Some(EntityStatus::ReceiveDisabled),
            _ => None,
        }
    }
    pub fn can_send(self) -> bool {
        matches!(self, EntityStatus::Active | EntityStatus::ReceiveDisabled)
    }
    pub fn can_receive(self) -> bool {
        matches!(self, EntityStatus::Active | EntityStatus::SendDisabled)
    }
}

/// Every user-settable property of a queue, topic or subscription.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct EntityProps {
    pub lock_duration: TimeSpan,
    pub max_size_in_megabytes: i64,
    pub requires_duplicate_detection: bool,
    pub duplicate_detection_history_time_window: TimeSpan,
    pub requires_session: bool,
    pub default_message_time_to_live: TimeSpan,
    pub dead_lettering_on_message_expiration: bool,
    pub dead_lettering_on_filter_evaluation_exceptions: bool,
    pub max_delivery_count: i32,
    pub enable_batched_operations: bool,
    pub status: EntityStatus,
    pub forward_to: Option<String>,
    pub forward_dead_lettered_messages_to: Option<String>,
    pub auto_delete_on_idle: TimeSpan,
    pub user_metadata: Option<String>,
    pub max_message_size_in_kilobytes: i64,
    pub enable_partitioning: bool,
    pub support_ordering: bool,
    pub enable_express: bool,
}

impl Default for EntityProps {
    fn default() -> Self {
        EntityProps {
            lock_duration: TimeSpan::from_secs(60),
            max_size_in_megabytes: 1024,
            requires_duplicate_detection: false,
            duplicate_detection_history_time_window: TimeSpan::from_secs(600),
            requires_session: false,
            default_message_time_to_live: TimeSpan::MAX,
            dead_lettering_on_message_expiration: false,
            dead_lettering_on_filter_evaluation_exceptions: true,
            max_delivery_count: 10,
            enable_batched_operations: true,
            status: EntityStatus::Active,
            forward_to: None,
            forward_dead_lettered_messages_to: None,
            auto_delete_on_idle: TimeSpan::MAX,
            user_metadata: None,
            max_message_size_in_kilobytes: 256,
            enable_partitioning: false,
            support_ordering: true,
            enable_express: false,
        }
    }
}

/// Times the service keeps about every entity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct EntityTimes {
    pub created_at: Millis,
    pub updated_at: Millis,
    pub accessed_at: Millis,
}

/// A subscription rule: a filter that selects messages and an optional action that edits the
/// copy delivered to this subscription.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Rule {
    pub name: String,
    pub filter: Filter,
    #[serde(default)]
    pub action: Option<SqlAction>,
    #[serde(default)]
    pub created_at: Millis,
}

impl Rule {
    /// The `$Default` rule every new subscription gets.
    pub fn default_rule(now: Millis) -> Rule {
        Rule {
            name: DEFAULT_RULE_NAME.to_string(),
            filter: Filter::True,
            action: None,
            created_at: now,
        }
    }
}

/// Name of the rule created with every subscription.
pub const DEFAULT_RULE_NAME: &str = "$Default";

/// Rule filters, as RuleDescription's `Filter` element names them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Filter {
    True,
    False,
    Correlation(CorrelationFilter),
    Sql(SqlFilterDef),
}

/// CorrelationFilter: every field that is set must equal the message's value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct CorrelationFilter {
    pub correlation_id: Option<String>,
    pub message_id: Option<String>,
    pub to: Option<String>,
    pub reply_to: Option<String>,
    pub label: Option<String>,
    pub session_id: Option<String>,
    pub reply_to_session_id: Option<String>,
    pub content_type: Option<String>,
    pub properties: BTreeMap<String, Value>,
}

/// The SQL compatibility level Service Bus gives filters and actions that name none.
pub const DEFAULT_COMPATIBILITY_LEVEL: i32 = 20;

/// A SqlFilter as stored: the expression text, its parameters and compatibility level.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct SqlFilterDef {
    pub expression: String,
    pub parameters: BTreeMap<String, Value>,
    pub compatibility_level: i32,
}

/// A SqlRuleAction as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct SqlAction {
    pub expression: String,
    pub parameters: BTreeMap<String, Value>,
    pub compatibility_level: i32,
}

/// Message counts by state, as CountDetails reports them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct CountDetails {
    pub active: u64,
    pub dead_letter: u64,
    pub scheduled: u64,
    pub transfer: u64,
    pub transfer_dead_letter: u64,
    /// Deferred messages count toward MessageCount but have no CountDetails field.
    pub deferred: u64,
}

impl CountDetails {
    /// MessageCount as Azure reports it: everything stored, including dead-lettered.
    pub fn total(&self) -> u64 {
        self.active + self.dead_letter + self.scheduled + self.deferred
    }
}

/// A read-only view of an entity with its runtime information, for the management API.
#[derive(Debug, Clone, PartialEq)]
pub struct EntityInfo {
    pub kind: EntityKind,
    /// Queue or topic name, or the subscription name.
    pub name: String,
    /// The topic of a subscription.
    pub topic: Option<String>,
    pub props: EntityProps,
    pub times: EntityTimes,
    pub counts: CountDetails,
    pub size_in_bytes: u64,
    /// Topics only.
    pub subscription_count: u32,
}
