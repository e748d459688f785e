//! Rule descriptions: filters and actions, parsed from PUT bodies and rendered as entries.

use std::collections::BTreeMap;

use super::feed::resource_url;
use super::read::{clip, find_description, parse_document, Node};
use super::values::*;
use super::write::*;
use super::*;
use crate::broker::entity::{
    CorrelationFilter, Filter, SqlAction, SqlFilterDef, DEFAULT_COMPATIBILITY_LEVEL,
};
use crate::broker::value::Value;
use crate::time::Millis;

/// Parses a rule PUT body (`RuleDescription`). The rule is named `name` (the URL's rule name,
/// whatever the body's `<Name>` says) and stamped `now`. A missing `Filter` means a TrueFilter,
/// a missing or `EmptyRuleAction` action means none.
pub fn parse_rule(xml: &str, name: &str, now: Millis) -> Result<Rule, AtomError> {
    let root = parse_document(xml)?;
    let desc = match find_description(&root) {
        Some(d) if d.name == "RuleDescription" => d,
        Some(d) => {
            return err(format!(
                "expected a RuleDescription in the request body, found <{}>",
                clip(&d.name)
            ))
        }
        None => return err("the request body has no RuleDescription inside <entry><content>"),
    };
    rule_from_node(desc, name.to_string(), now)
}

pub(super) fn rule_from_node(desc: &Node, name: String, now: Millis) -> Result<Rule, AtomError> {
    let filter = match desc.child("Filter") {
        Some(f) => parse_filter(f)?,
        None => Filter::True,
    };
    let action = match desc.child("Action") {
        Some(a) => parse_action(a)?,
        None => None,
    };
    Ok(Rule {
        name,
        filter,
        action,
        created_at: now,
    })
}

pub(super) fn compatibility_level(el: &Node) -> Result<i32, AtomError> {
    match el.child("CompatibilityLevel") {
        Some(c) if !c.text.trim().is_empty() => int32(c),
        _ => Ok(DEFAULT_COMPATIBILITY_LEVEL),
    }
}

pub(super) fn parameters(el: &Node) -> Result<BTreeMap<String, Value>, AtomError> {
    match el.child("Parameters") {
        Some(p) => key_values(p),
        None => Ok(BTreeMap::new()),
    }
}

pub(super) fn sql_expression(el: &Node) -> Option<String> {
    el.child("SqlExpression")
        .map(|e| e.text.clone())
        .filter(|t| !t.trim().is_empty())
}

pub(super) fn parse_sql_filter(f: &Node) -> Result<SqlFilterDef, AtomError> {
    let expression = match sql_expression(f) {
        Some(e) => e,
        None => return err("invalid Filter: a SqlFilter needs a non-empty SqlExpression"),
    };
    Ok(SqlFilterDef {
        expression,
        parameters: parameters(f)?,
        compatibility_level: compatibility_level(f)?,
    })
}

pub(super) fn optional_text(el: &Node) -> Option<String> {
    if el.is_nil() || el.text.trim().is_empty() {
        None
    } else {
        Some(el.text.clone())
    }
}

pub(super) fn parse_correlation(f: &Node) -> Result<CorrelationFilter, AtomError> {
    let mut c = CorrelationFilter::default();
    for el in &f.children {
        match el.name.as_str() {
            "CorrelationId" => c.correlation_id = optional_text(el),
            "MessageId" => c.message_id = optional_text(el),
            "To" => c.to = optional_text(el),
            "ReplyTo" => c.reply_to = optional_text(el),
            "Label" => c.label = optional_text(el),
            "SessionId" => c.session_id = optional_text(el),
            "ReplyToSessionId" => c.reply_to_session_id = optional_text(el),
            "ContentType" => c.content_type = optional_text(el),
            "Properties" => c.properties = key_values(el)?,
            _ => {}
        }
    }
    Ok(c)
}

pub(super) fn parse_filter(f: &Node) -> Result<Filter, AtomError> {
    match f.xsi_type() {
        Some("TrueFilter") => Ok(Filter::True),
        Some("FalseFilter") => Ok(Filter::False),
        Some("SqlFilter") => Ok(Filter::Sql(parse_sql_filter(f)?)),
        Some("CorrelationFilter") => Ok(Filter::Correlation(parse_correlation(f)?)),
        Some(other) => err(format!(
            "invalid Filter: unsupported filter type '{}' (expected SqlFilter, CorrelationFilter, \
             TrueFilter or FalseFilter)",
            clip(other)
        )),
        None if f.child("SqlExpression").is_some() => Ok(Filter::Sql(parse_sql_filter(f)?)),
        None if f.children.is_empty() => Ok(Filter::True),
        None => Ok(Filter::Correlation(parse_correlation(f)?)),
    }
}

pub(super) fn parse_action(a: &Node) -> Result<Option<SqlAction>, AtomError> {
    match a.xsi_type() {
        Some("EmptyRuleAction") => Ok(None),
        Some("SqlRuleAction") => match sql_expression(a) {
            Some(expression) => Ok(Some(SqlAction {
                expression,
                parameters: parameters(a)?,
                compatibility_level: compatibility_level(a)?,
            })),
            None => err("invalid Action: a SqlRuleAction needs a non-empty SqlExpression"),
        },
        Some(other) => err(format!(
            "invalid Action: unsupported action type '{}' (expected SqlRuleAction or \
             EmptyRuleAction)",
            clip(other)
        )),
        None => match sql_expression(a) {
            Some(expression) => Ok(Some(SqlAction {
                expression,
                parameters: parameters(a)?,
                compatibility_level: compatibility_level(a)?,
            })),
            None => Ok(None),
        },
    }
}

pub(super) fn rule_path(topic: &str, sub: &str, rule: &str) -> String {
    format!("{topic}/Subscriptions/{sub}/Rules/{rule}")
}

pub(super) fn sql_body(
    out: &mut String,
    expression: &str,
    level: i32,
    params: &BTreeMap<String, Value>,
) {
    el(out, "SqlExpression", expression);
    el(out, "CompatibilityLevel", &level.to_string());
    if !params.is_empty() {
        key_values_xml(out, "Parameters", params);
    }
}

pub(super) fn render_rule_description(rule: &Rule) -> String {
    let mut o = String::with_capacity(512);
    o.push_str(&format!(
        "<RuleDescription xmlns=\"{SB_NS}\" xmlns:i=\"{XSI_NS}\">"
    ));
    match &rule.filter {
        Filter::True => {
            o.push_str("<Filter i:type=\"TrueFilter\">");
            sql_body(&mut o, "1=1", DEFAULT_COMPATIBILITY_LEVEL, &BTreeMap::new());
            o.push_str("</Filter>");
        }
        Filter::False => {
            o.push_str("<Filter i:type=\"FalseFilter\">");
            sql_body(&mut o, "1=0", DEFAULT_COMPATIBILITY_LEVEL, &BTreeMap::new());
            o.push_str("</Filter>");
        }
        Filter::Sql(f) => {
            o.push_str("<Filter i:type=\"SqlFilter\">");
            sql_body(&mut o, &f.expression, f.compatibility_level, &f.parameters);
            o.push_str("</Filter>");
        }
        Filter::Correlation(c) => {
            o.push_str("<Filter i:type=\"CorrelationFilter\">");
            let fields = [
                ("CorrelationId", &c.correlation_id),
                ("MessageId", &c.message_id),
                ("To", &c.to),
                ("ReplyTo", &c.reply_to),
                ("Label", &c.label),
                ("SessionId", &c.session_id),
                ("ReplyToSessionId", &c.reply_to_session_id),
                ("ContentType", &c.content_type),
            ];
            for (name, value) in fields {
                if let Some(v) = value {
                    el(&mut o, name, v);
                }
            }
            key_values_xml(&mut o, "Properties", &c.properties);
            o.push_str("</Filter>");
        }
    }
    match &rule.action {
        Some(a) => {
            o.push_str("<Action i:type=\"SqlRuleAction\">");
            sql_body(&mut o, &a.expression, a.compatibility_level, &a.parameters);
            o.push_str("</Action>");
        }
        None => o.push_str("<Action i:type=\"EmptyRuleAction\"/>"),
    }
    el(&mut o, "CreatedAt", &date_or_never(rule.created_at));
    el(&mut o, "Name", &rule.name);
    o.push_str("</RuleDescription>");
    o
}

pub(super) fn rule_entry_into(
    out: &mut String,
    with_ns: bool,
    rule: &Rule,
    topic: &str,
    sub: &str,
    base_url: &str,
) {
    let url = resource_url(base_url, &rule_path(topic, sub, &rule.name));
    render_entry(
        out,
        with_ns,
        &url,
        &rule.name,
        Some(rule.created_at),
        rule.created_at,
        None,
        &render_rule_description(rule),
    );
}

/// A rule of subscription `topic/sub` as a full entry document (GET, and PUT responses).
/// Its id is `{base_url}/topic/Subscriptions/sub/Rules/rule?api-version=2021-05`.
pub fn rule_entry(rule: &Rule, topic: &str, sub: &str, base_url: &str) -> String {
    let mut out = String::from(XML_DECL);
    rule_entry_into(&mut out, true, rule, topic, sub, base_url);
    out
}
