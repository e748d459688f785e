//! Subscription rules on the `$management` node (what `ServiceBusRuleManager` of the .NET and
//! Java SDKs sends): the request maps of `com.microsoft:add-rule` and the described types of
//! `com.microsoft:enumerate-rules`.
//!
//! add-rule body: `rule-name` and `rule-description`, a map holding `sql-filter`
//! (`{expression}`) or `correlation-filter` (`{correlation-id, message-id, to, reply-to, label,
//! session-id, reply-to-session-id, content-type, properties}`), and `sql-rule-action`
//! (`{expression}` or null).
//!
//! enumerate-rules answers `rules`: a list of maps `{rule-description: described}` where the
//! rule description (descriptor 0x0000013700000004) is the list `[filter, action, name,
//! created-at]`. The filter and action descriptors are the SDKs' constants, including the
//! filter codes' historical short form (0x000001370000006 = 0x1370000006 for the SQL filter,
//! which the SQL rule action's 0x0000013700000006 does not collide with).

use crate::amqp::convert::{
    described, map_get, opt_string, properties_from_entries, string_map, text_of, value_to_amqp,
};
use crate::broker::entity::{
    CorrelationFilter, Filter, Rule, SqlAction, SqlFilterDef, DEFAULT_COMPATIBILITY_LEVEL,
};
use crate::time::Millis;
use serde_amqp::primitives::{OrderedMap, Timestamp};
use serde_amqp::Value as AV;

/// `com.microsoft:rule-description:list`.
pub const RULE_DESCRIPTION: u64 = 0x0000_0137_0000_0004;
/// `com.microsoft:empty-rule-action:list`.
pub const EMPTY_RULE_ACTION: u64 = 0x0000_0137_0000_0005;
/// `com.microsoft:sql-rule-action:list`.
pub const SQL_RULE_ACTION: u64 = 0x0000_0137_0000_0006;
/// `com.microsoft:sql-filter:list` (0x000001370000006 in the SDKs).
pub const SQL_FILTER: u64 = 0x0000_0013_7000_0006;
/// `com.microsoft:true-filter:list` (0x000001370000007 in the SDKs).
pub const TRUE_FILTER: u64 = 0x0000_0013_7000_0007;
/// `com.microsoft:false-filter:list` (0x000001370000008 in the SDKs).
pub const FALSE_FILTER: u64 = 0x0000_0013_7000_0008;
/// `com.microsoft:correlation-filter:list` (0x000001370000009 in the SDKs).
pub const CORRELATION_FILTER: u64 = 0x0000_0013_7000_0009;

/// The rule an add-rule request body describes, or why it is not one.
pub fn rule_from_request(body: &AV, now: Millis) -> Result<Rule, String> {
    let name = map_get(body, "rule-name")
        .and_then(text_of)
        .ok_or("the request has no rule-name")?;
    let description =
        map_get(body, "rule-description").ok_or("the request has no rule-description")?;
    let sql = map_get(description, "sql-filter").filter(|v| !matches!(v, AV::Null));
    let correlation = map_get(description, "correlation-filter").filter(|v| !matches!(v, AV::Null));
    let filter = match (sql, correlation) {
        (Some(_), Some(_)) => {
            return Err("a rule has either a sql-filter or a correlation-filter, not both".into())
        }
        (Some(f), None) => Filter::Sql(SqlFilterDef {
            expression: expression(f, "sql-filter")?,
            parameters: Default::default(),
            compatibility_level: DEFAULT_COMPATIBILITY_LEVEL,
        }),
        (None, Some(f)) => Filter::Correlation(correlation_filter(f)),
        (None, None) => {
            return Err("the rule-description has no sql-filter or correlation-filter".into())
        }
    };
    let action = match map_get(description, "sql-rule-action") {
        None | Some(AV::Null) => None,
        Some(a) => Some(SqlAction {
            expression: expression(a, "sql-rule-action")?,
            parameters: Default::default(),
            compatibility_level: DEFAULT_COMPATIBILITY_LEVEL,
        }),
    };
    Ok(Rule {
        name,
        filter,
        action,
        created_at: now,
    })
}

fn expression(map: &AV, what: &str) -> Result<String, String> {
    map_get(map, "expression")
        .and_then(text_of)
        .ok_or_else(|| format!("the {what} has no expression"))
}

fn correlation_filter(map: &AV) -> CorrelationFilter {
    let text = |key: &str| map_get(map, key).and_then(text_of);
    let properties = match map_get(map, "properties") {
        Some(AV::Map(m)) => {
            let entries: Vec<(AV, AV)> = m.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
            properties_from_entries(&entries)
        }
        _ => Default::default(),
    };
    CorrelationFilter {
        correlation_id: text("correlation-id"),
        message_id: text("message-id"),
        to: text("to"),
        reply_to: text("reply-to"),
        label: text("label"),
        session_id: text("session-id"),
        reply_to_session_id: text("reply-to-session-id"),
        content_type: text("content-type"),
        properties,
    }
}

/// One entry of an enumerate-rules response: `{rule-description: described list}`.
pub fn rule_entry(rule: &Rule) -> AV {
    let filter = match &rule.filter {
        Filter::True => described(TRUE_FILTER, AV::List(Vec::new())),
        Filter::False => described(FALSE_FILTER, AV::List(Vec::new())),
        Filter::Sql(f) => described(
            SQL_FILTER,
            AV::List(vec![
                AV::String(f.expression.clone()),
                AV::Int(f.compatibility_level),
            ]),
        ),
        Filter::Correlation(c) => {
            let mut props: OrderedMap<AV, AV> = OrderedMap::new();
            for (k, v) in &c.properties {
                props.insert(AV::String(k.clone()), value_to_amqp(v));
            }
            described(
                CORRELATION_FILTER,
                AV::List(vec![
                    opt_string(c.correlation_id.as_deref()),
                    opt_string(c.message_id.as_deref()),
                    opt_string(c.to.as_deref()),
                    opt_string(c.reply_to.as_deref()),
                    opt_string(c.label.as_deref()),
                    opt_string(c.session_id.as_deref()),
                    opt_string(c.reply_to_session_id.as_deref()),
                    opt_string(c.content_type.as_deref()),
                    AV::Map(props),
                ]),
            )
        }
    };
    let action = match &rule.action {
        None => described(EMPTY_RULE_ACTION, AV::List(Vec::new())),
        Some(a) => described(
            SQL_RULE_ACTION,
            AV::List(vec![
                AV::String(a.expression.clone()),
                AV::Int(a.compatibility_level),
            ]),
        ),
    };
    let description = described(
        RULE_DESCRIPTION,
        AV::List(vec![
            filter,
            action,
            AV::String(rule.name.clone()),
            AV::Timestamp(Timestamp::from_milliseconds(rule.created_at)),
        ]),
    );
    string_map(vec![("rule-description", description)])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::broker::value::Value;

    fn map(entries: Vec<(&str, AV)>) -> AV {
        string_map(entries)
    }

    #[test]
    fn sql_and_correlation_requests_become_rules() {
        let body = map(vec![
            ("rule-name", AV::String("red".into())),
            (
                "rule-description",
                map(vec![
                    (
                        "sql-filter",
                        map(vec![("expression", AV::String("color = 'red'".into()))]),
                    ),
                    (
                        "sql-rule-action",
                        map(vec![("expression", AV::String("SET x = 1".into()))]),
                    ),
                ]),
            ),
        ]);
        let r = rule_from_request(&body, 5).unwrap();
        assert_eq!(r.name, "red");
        assert!(
            matches!(&r.filter, Filter::Sql(f) if f.expression == "color = 'red'" && f.compatibility_level == 20)
        );
        assert_eq!(r.action.map(|a| a.expression).as_deref(), Some("SET x = 1"));
        assert_eq!(r.created_at, 5);

        let mut props: OrderedMap<AV, AV> = OrderedMap::new();
        props.insert(AV::String("n".into()), AV::Int(7));
        let body = map(vec![
            ("rule-name", AV::String("corr".into())),
            (
                "rule-description",
                map(vec![
                    (
                        "correlation-filter",
                        map(vec![
                            ("correlation-id", AV::String("c1".into())),
                            ("message-id", AV::Null),
                            ("label", AV::String("L".into())),
                            ("properties", AV::Map(props)),
                        ]),
                    ),
                    ("sql-rule-action", AV::Null),
                ]),
            ),
        ]);
        let r = rule_from_request(&body, 0).unwrap();
        let Filter::Correlation(c) = &r.filter else {
            panic!("{r:?}")
        };
        assert_eq!(c.correlation_id.as_deref(), Some("c1"));
        assert_eq!(c.message_id, None);
        assert_eq!(c.label.as_deref(), Some("L"));
        assert_eq!(c.properties.get("n"), Some(&Value::Int(7)));
        assert!(r.action.is_none());
    }

    #[test]
    fn malformed_requests_say_what_is_missing() {
        let no_name = map(vec![("rule-description", map(vec![]))]);
        assert!(rule_from_request(&no_name, 0)
            .unwrap_err()
            .contains("rule-name"));
        let no_filter = map(vec![
            ("rule-name", AV::String("r".into())),
            ("rule-description", map(vec![])),
        ]);
        assert!(rule_from_request(&no_filter, 0)
            .unwrap_err()
            .contains("sql-filter"));
        let no_expr = map(vec![
            ("rule-name", AV::String("r".into())),
            ("rule-description", map(vec![("sql-filter", map(vec![]))])),
        ]);
        assert!(rule_from_request(&no_expr, 0)
            .unwrap_err()
            .contains("expression"));
    }

    #[test]
    fn entries_carry_the_sdk_descriptor_codes() {
        let rule = Rule {
            name: "$Default".into(),
            filter: Filter::True,
            action: None,
            created_at: 0,
        };
        let entry = rule_entry(&rule);
        let Some(AV::Described(d)) = map_get(&entry, "rule-description") else {
            panic!("{entry:?}")
        };
        assert_eq!(
            d.descriptor,
            serde_amqp::descriptor::Descriptor::Code(0x0000013700000004)
        );
        let AV::List(fields) = &d.value else {
            panic!("{d:?}")
        };
        let code = |v: &AV| match v {
            AV::Described(d) => d.descriptor.clone(),
            other => panic!("{other:?}"),
        };
        use serde_amqp::descriptor::Descriptor::Code;
        assert_eq!(code(&fields[0]), Code(0x000001370000007));
        assert_eq!(code(&fields[1]), Code(0x0000013700000005));
        assert_eq!(fields[2], AV::String("$Default".into()));
    }
}
