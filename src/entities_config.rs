//! The official Service Bus emulator's entity file (`Config.json`), so LocalZure is a drop-in:
//! `UserConfig.Namespaces[].Queues|Topics[].Subscriptions[].Rules` with their `Properties`.
//! Entities are created at start; existing ones are kept as they are.
//!
//! The official file carries `//` comments (its sample correlation filter lists the other
//! supported properties as commented-out lines), which the official emulator skips: comments
//! (`//` and `/* */`) are stripped before parsing, keeping line and column numbers in errors.

use crate::broker::entity::{
    CorrelationFilter, EntityKind, EntityProps, EntityStatus, Filter, Rule, SqlAction,
    SqlFilterDef, DEFAULT_RULE_NAME,
};
use crate::broker::error::BrokerError;
use crate::broker::op::Op;
use crate::broker::value::Value;
use crate::http::atom::properties::{Access, Property, PROPERTIES};
use crate::service::{ServiceBusBackend, ServiceError};
use crate::time::TimeSpan;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The path the official emulator image mounts its entity file at.
pub const OFFICIAL_CONFIG_PATH: &str = "/ServiceBus_Emulator/ConfigFiles/Config.json";

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct File {
    user_config: UserConfig,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct UserConfig {
    #[serde(default)]
    namespaces: Vec<Namespace>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Namespace {
    #[serde(default)]
    queues: Vec<QueueDef>,
    #[serde(default)]
    topics: Vec<TopicDef>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct QueueDef {
    name: String,
    #[serde(default)]
    properties: PropsDef,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct TopicDef {
    name: String,
    #[serde(default)]
    properties: PropsDef,
    #[serde(default)]
    subscriptions: Vec<SubscriptionDef>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct SubscriptionDef {
    name: String,
    #[serde(default)]
    properties: PropsDef,
    #[serde(default)]
    rules: Vec<RuleDef>,
}

/// An entity's `Properties`: read through the property table
/// ([`crate::http::atom::properties`]), which names the keys `Config.json` may set.
type PropsDef = serde_json::Map<String, serde_json::Value>;

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct RuleDef {
    name: String,
    #[serde(default)]
    properties: RulePropsDef,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct RulePropsDef {
    filter_type: Option<String>,
    correlation_filter: Option<CorrelationDef>,
    sql_filter: Option<SqlDef>,
    action: Option<SqlDef>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct CorrelationDef {
    content_type: Option<String>,
    correlation_id: Option<String>,
    label: Option<String>,
    subject: Option<String>,
    message_id: Option<String>,
    reply_to: Option<String>,
    reply_to_session_id: Option<String>,
    session_id: Option<String>,
    to: Option<String>,
    #[serde(default)]
    properties: BTreeMap<String, serde_json::Value>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct SqlDef {
    sql_expression: Option<String>,
}

/// Sets one table property from its JSON value; `null` and an empty string leave the default.
fn set_property(e: &mut EntityProps, prop: &Property, v: &serde_json::Value) -> Result<(), String> {
    use serde_json::Value as J;
    let name = prop.name;
    let text = match v {
        J::Null => return Ok(()),
        J::String(s) if s.trim().is_empty() => return Ok(()),
        J::String(s) => Some(s.trim()),
        _ => None,
    };
    let expected = |what: &str| format!("{name}: expected {what}, found {v}");
    match prop.access {
        Access::Bool(_, set) => set(e, v.as_bool().ok_or_else(|| expected("true or false"))?),
        Access::Int64(_, set) => set(e, v.as_i64().ok_or_else(|| expected("an integer"))?),
        Access::Int32(_, set) => set(
            e,
            v.as_i64()
                .and_then(|n| i32::try_from(n).ok())
                .ok_or_else(|| expected("a 32-bit integer"))?,
        ),
        Access::Duration(_, set) => {
            let s = text.ok_or_else(|| expected("an ISO 8601 duration string"))?;
            set(
                e,
                TimeSpan::parse_xsd(s)
                    .ok_or_else(|| format!("{name}: '{s}' is not an ISO 8601 duration"))?,
            )
        }
        Access::Status(_, set) => {
            let s = text.ok_or_else(|| expected("an entity status"))?;
            set(
                e,
                EntityStatus::parse(s).ok_or_else(|| expected("an entity status"))?,
            )
        }
        Access::Address(_, set) | Access::Text(_, set) => set(
            e,
            Some(text.ok_or_else(|| expected("a string"))?.to_string()),
        ),
    }
    Ok(())
}

/// The settings of one entity of `kind`: the table's `Config.json` properties that the kind
/// has; other keys are ignored, as the official emulator's own loader ignores them.
fn props(p: &PropsDef, kind: EntityKind, what: &str) -> Result<EntityProps, String> {
    let mut e = EntityProps::default();
    for prop in PROPERTIES.iter().filter(|x| x.in_config && x.accepts(kind)) {
        if let Some(v) = p.get(prop.name) {
            set_property(&mut e, prop, v).map_err(|m| format!("{what}: {m}"))?;
        }
    }
    Ok(e)
}

fn rule(r: &RuleDef, what: &str) -> Result<Rule, String> {
    let p = &r.properties;
    let kind = p
        .filter_type
        .as_deref()
        .unwrap_or(if p.sql_filter.is_some() {
            "Sql"
        } else {
            "Correlation"
        });
    let filter = if kind.eq_ignore_ascii_case("sql") {
        let expr = p
            .sql_filter
            .as_ref()
            .and_then(|s| s.sql_expression.clone())
            .ok_or_else(|| format!("{what}: FilterType Sql needs SqlFilter.SqlExpression"))?;
        Filter::Sql(SqlFilterDef {
            expression: expr,
            parameters: BTreeMap::new(),
            compatibility_level: 20,
        })
    } else if kind.eq_ignore_ascii_case("correlation") {
        let c = p
            .correlation_filter
            .as_ref()
            .ok_or_else(|| format!("{what}: FilterType Correlation needs a CorrelationFilter"))?;
        Filter::Correlation(CorrelationFilter {
            correlation_id: c.correlation_id.clone(),
            message_id: c.message_id.clone(),
            to: c.to.clone(),
            reply_to: c.reply_to.clone(),
            label: c.label.clone().or_else(|| c.subject.clone()),
            session_id: c.session_id.clone(),
            reply_to_session_id: c.reply_to_session_id.clone(),
            content_type: c.content_type.clone(),
            properties: c
                .properties
                .iter()
                .map(|(k, v)| (k.clone(), Value::from_json(v)))
                .collect(),
        })
    } else {
        return Err(format!(
            "{what}: unknown FilterType '{kind}' (Correlation or Sql)"
        ));
    };
    let action = p
        .action
        .as_ref()
        .and_then(|a| a.sql_expression.clone())
        .filter(|s| !s.trim().is_empty())
        .map(|expression| SqlAction {
            expression,
            parameters: BTreeMap::new(),
            compatibility_level: 20,
        });
    Ok(Rule {
        name: r.name.clone(),
        filter,
        action,
        created_at: 0,
    })
}

/// The operations that create what the file describes, in dependency order (queues and
/// topics before subscriptions; forwarding targets are created before their sources as far
/// as the file's order allows, and a missing target is reported by the broker).
fn plan(text: &str) -> Result<Vec<Op>, String> {
    // StripComments replaces each comment with spaces, so positions stay those of the file.
    let stripped = json_comments::StripComments::with_settings(
        json_comments::CommentSettings::c_style(),
        text.as_bytes(),
    );
    let de = &mut serde_json::Deserializer::from_reader(stripped);
    let file: File = serde_path_to_error::deserialize(de)
        .map_err(|e| format!("at '{}': {}", e.path(), e.inner()))?;
    let mut entities = Vec::new();
    let mut forwarding = Vec::new();
    let mut subs = Vec::new();
    for ns in &file.user_config.namespaces {
        for q in &ns.queues {
            let p = props(
                &q.properties,
                EntityKind::Queue,
                &format!("queue '{}'", q.name),
            )?;
            let op = Op::CreateQueue {
                name: q.name.clone(),
                props: p.clone(),
            };
            if p.forward_to.is_some() || p.forward_dead_lettered_messages_to.is_some() {
                forwarding.push(op);
            } else {
                entities.push(op);
            }
        }
        for t in &ns.topics {
            entities.push(Op::CreateTopic {
                name: t.name.clone(),
                props: props(
                    &t.properties,
                    EntityKind::Topic,
                    &format!("topic '{}'", t.name),
                )?,
            });
            for s in &t.subscriptions {
                let what = format!("subscription '{}/{}'", t.name, s.name);
                let p = props(&s.properties, EntityKind::Subscription, &what)?;
                let mut rules = s
                    .rules
                    .iter()
                    .map(|r| rule(r, &format!("{what} rule '{}'", r.name)))
                    .collect::<Result<Vec<_>, _>>()?;
                // With rules given, they replace `$Default` (the first one is created with the
                // subscription); a rule named `$Default` is used as the default rule.
                if let Some(i) = rules.iter().position(|r| r.name == DEFAULT_RULE_NAME) {
                    let d = rules.remove(i);
                    rules.insert(0, d);
                }
                let first = if rules.is_empty() {
                    None
                } else {
                    Some(rules.remove(0))
                };
                subs.push(Op::CreateSubscription {
                    topic: t.name.clone(),
                    name: s.name.clone(),
                    props: p,
                    rule: first,
                });
                for r in rules {
                    subs.push(Op::CreateRule {
                        topic: t.name.clone(),
                        subscription: s.name.clone(),
                        rule: r,
                    });
                }
            }
        }
    }
    entities.extend(forwarding);
    entities.extend(subs);
    Ok(entities)
}

/// Which entity file applies: `LOCALZURE_ENTITIES_CONFIG`, else the official mount path when
/// it exists.
pub fn configured_path(explicit: Option<&str>) -> Option<PathBuf> {
    match explicit {
        Some(p) if !p.is_empty() => Some(PathBuf::from(p)),
        _ => Some(PathBuf::from(OFFICIAL_CONFIG_PATH)).filter(|p| p.exists()),
    }
}

/// Creates the file's entities; existing ones are kept. Returns how many were created.
pub async fn apply(backend: &ServiceBusBackend, path: &Path) -> Result<usize, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let ops = plan(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut created = 0;
    for op in ops {
        match backend.execute(op).await {
            Ok(_) => created += 1,
            Err(ServiceError::Broker(BrokerError::EntityExists(_))) => {}
            Err(e) => return Err(format!("{}: {e}", path.display())),
        }
    }
    Ok(created)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = r#"{
      "UserConfig": {
        "Namespaces": [{
          "Name": "sbemulatorns",
          "Queues": [{ "Name": "queue.1", "Properties": {
              "DeadLetteringOnMessageExpiration": false, "DefaultMessageTimeToLive": "PT1H",
              "DuplicateDetectionHistoryTimeWindow": "PT20S", "ForwardDeadLetteredMessagesTo": "",
              "ForwardTo": "", "LockDuration": "PT1M", "MaxDeliveryCount": 3,
              "RequiresDuplicateDetection": false, "RequiresSession": false } }],
          "Topics": [{ "Name": "topic.1",
            "Properties": { "DefaultMessageTimeToLive": "PT1H" },
            "Subscriptions": [
              { "Name": "subscription.1", "Properties": { "MaxDeliveryCount": 10 },
                "Rules": [{ "Name": "app-prop-filter-1", "Properties": { "FilterType": "Correlation",
                  "CorrelationFilter": { "ContentType": "application/text", "Label": "subject1",
                    "Properties": { "prop3": "value3" } } } }] },
              { "Name": "subscription.2",
                "Rules": [{ "Name": "sql-1", "Properties": { "FilterType": "Sql",
                  "SqlFilter": { "SqlExpression": "sys.Label = 'x'" },
                  "Action": { "SqlExpression": "SET sys.To = 'y'" } } },
                  { "Name": "sql-2", "Properties": { "FilterType": "Sql",
                  "SqlFilter": { "SqlExpression": "1=1" } } }] },
              { "Name": "subscription.3" }
            ] }]
        }],
        "Logging": { "Type": "File" }
      }
    }"#;

    #[test]
    fn the_official_sample_plans_every_entity() {
        let ops = plan(SAMPLE).unwrap();
        let names: Vec<&str> = ops.iter().map(|o| o.name()).collect();
        assert_eq!(
            names,
            vec![
                "CreateQueue",
                "CreateTopic",
                "CreateSubscription",
                "CreateSubscription",
                "CreateRule",
                "CreateSubscription"
            ]
        );
        let Op::CreateQueue { props, .. } = &ops[0] else {
            panic!()
        };
        assert_eq!(props.max_delivery_count, 3);
        assert_eq!(
            props.default_message_time_to_live,
            TimeSpan::from_secs(3600)
        );
        assert_eq!(props.forward_to, None);
        let Op::CreateSubscription { rule: Some(r), .. } = &ops[3] else {
            panic!()
        };
        assert!(matches!(r.filter, Filter::Sql(_)));
        assert!(r.action.is_some());
    }

    /// A file shaped as the official emulator's `Config.json` (queues, topics, subscriptions,
    /// correlation and SQL rules, a SQL action, `//` comments inside objects) loads.
    #[test]
    fn the_official_file_shape_with_comments_loads() {
        let text = include_str!("../tests/fixtures/official-config/Config.json");
        assert!(text.contains("//"), "the fixture keeps its comments");
        let ops = plan(text).unwrap();
        let names: Vec<(&str, String)> = ops
            .iter()
            .map(|o| {
                let what = match o {
                    Op::CreateQueue { name, .. } | Op::CreateTopic { name, .. } => name.clone(),
                    Op::CreateSubscription { topic, name, .. } => format!("{topic}/{name}"),
                    Op::CreateRule {
                        subscription, rule, ..
                    } => format!("{subscription}/{}", rule.name),
                    _ => String::new(),
                };
                (o.name(), what)
            })
            .collect();
        assert_eq!(
            names,
            vec![
                ("CreateQueue", "orders".to_string()),
                ("CreateQueue", "payments".to_string()),
                ("CreateTopic", "events".to_string()),
                ("CreateSubscription", "events/by-content-type".to_string()),
                ("CreateSubscription", "events/by-user-property".to_string()),
                ("CreateSubscription", "events/everything".to_string()),
                ("CreateSubscription", "events/sql-routed".to_string()),
                ("CreateRule", "sql-routed/second-sql".to_string()),
            ]
        );
        let Op::CreateSubscription { rule: Some(r), .. } = &ops[3] else {
            panic!("{ops:?}")
        };
        let Filter::Correlation(c) = &r.filter else {
            panic!("{r:?}")
        };
        // The commented-out properties stay unset.
        assert_eq!(c.content_type.as_deref(), Some("application/json"));
        assert_eq!(c.correlation_id, None);
        assert_eq!(c.label, None);
        let Op::CreateSubscription { rule: Some(r), .. } = &ops[6] else {
            panic!("{ops:?}")
        };
        assert!(matches!(r.filter, Filter::Sql(_)));
        assert!(r.action.is_some());
        // Without comment stripping this file is not JSON.
        assert!(serde_json::from_str::<serde_json::Value>(text).is_err());
        // Errors after a comment still name the file's own line.
        let e = plan("{\n// one\n// two\n\"UserConfig\": {\"Namespaces\": [{\"Queues\": [{}]}]}}")
            .unwrap_err();
        assert!(e.contains("line 4"), "{e}");
    }

    #[test]
    fn errors_name_the_place() {
        let e = plan(r#"{"UserConfig":{"Namespaces":[{"Queues":[{"Name":"q","Properties":{"LockDuration":"soon"}}]}]}}"#).unwrap_err();
        assert!(e.contains("queue 'q'") && e.contains("LockDuration"), "{e}");
        let e =
            plan(r#"{"UserConfig":{"Namespaces":[{"Queues":[{"Properties":{}}]}]}}"#).unwrap_err();
        assert!(e.contains("Queues[0]"), "{e}");
    }

    #[test]
    fn properties_come_from_the_shared_table() {
        let ops = plan(
            r#"{"UserConfig":{"Namespaces":[{"Queues":[{"Name":"q","Properties":{
            "ForwardTo":"target","MaxSizeInMegabytes":2048,"RequiresSession":true,"Unknown":1}}],
            "Topics":[{"Name":"t","Properties":{"LockDuration":"PT5M"}}]}]}}"#,
        )
        .unwrap();
        let Op::CreateQueue { props, .. } = &ops[1] else {
            panic!("{ops:?}")
        };
        assert_eq!(props.forward_to.as_deref(), Some("target"));
        assert_eq!(props.max_size_in_megabytes, 2048);
        assert!(props.requires_session);
        // A topic has no lock duration: the key is ignored, as in an ATOM description.
        let Op::CreateTopic { props, .. } = &ops[0] else {
            panic!("{ops:?}")
        };
        assert_eq!(props.lock_duration, EntityProps::default().lock_duration);
        let e = plan(r#"{"UserConfig":{"Namespaces":[{"Queues":[{"Name":"q","Properties":{"MaxDeliveryCount":"many"}}]}]}}"#).unwrap_err();
        assert!(
            e.contains("queue 'q'") && e.contains("MaxDeliveryCount"),
            "{e}"
        );
    }
}
