//! The ATOM management format of Azure Service Bus: parsing request bodies and rendering
//! responses for queues, topics, subscriptions, rules and the namespace.
//!
//! The shapes follow what the real service returns and what the Azure SDKs
//! (`Azure.Messaging.ServiceBus.Administration` for .NET, `azure-servicebus` for Python,
//! `@azure/service-bus` for JavaScript) send and read:
//!
//! - A single resource is an Atom `<entry>` whose `<content type="application/xml">` holds a
//!   `QueueDescription`, `TopicDescription`, `SubscriptionDescription`, `RuleDescription` or
//!   `NamespaceInfo` in the `.../2010/10/servicebus/connect` namespace.
//! - Lists are an Atom `<feed>` of such entries.
//! - Description elements are rendered in the order the service uses (taken from recorded
//!   service responses); the SDK parsers look elements up by local name, so parsing here is
//!   order-independent and prefix-agnostic (the Python SDK sends `ns0:entry` with the connect
//!   namespace as default, .NET sends `entry` with explicit namespaces).
//! - Rule filters and actions are told apart by their `xsi:type` attribute (`SqlFilter`,
//!   `CorrelationFilter`, `TrueFilter`, `FalseFilter`, `SqlRuleAction`, `EmptyRuleAction`);
//!   typed values (correlation properties, SQL parameters) are `KeyValueOfstringanyType`
//!   items whose `Value` carries `xsi:type="d6p1:int"` etc. with `d6p1` bound to the
//!   XML Schema namespace.
//!
//! Parsing never panics: malformed XML and bad values become an [`AtomError`] whose message
//! names the offending element and value, meant for a 400 response body.

use std::collections::BTreeMap;
use std::fmt;

use quick_xml::escape::resolve_predefined_entity;
use quick_xml::events::{BytesStart, Event};
use quick_xml::Reader;

use crate::broker::entity::{
    CorrelationFilter, EntityInfo, EntityKind, EntityProps, EntityStatus, Filter, Rule, SqlAction,
    SqlFilterDef, DEFAULT_RULE_NAME,
};
use crate::broker::value::Value;
use crate::time::{iso8601, parse_date, Millis, TimeSpan};

/// The Atom namespace of `<entry>` and `<feed>`.
pub const ATOM_NS: &str = "http://www.w3.org/2005/Atom";
/// The namespace of the entity descriptions.
pub const SB_NS: &str = "http://schemas.microsoft.com/netservices/2010/10/servicebus/connect";
/// The namespace of the `CountDetails` children.
pub const SB_COUNTS_NS: &str = "http://schemas.microsoft.com/netservices/2011/06/servicebus";
/// The XML Schema instance namespace (`xsi:type`, `xsi:nil`).
pub const XSI_NS: &str = "http://www.w3.org/2001/XMLSchema-instance";
/// The XML Schema namespace that typed values' `xsi:type` prefixes are bound to.
pub const XSD_NS: &str = "http://www.w3.org/2001/XMLSchema";
/// The management API version written into entry ids and links.
pub const API_VERSION: &str = "2021-05";

/// Deepest element nesting accepted; real bodies are at most 8 levels deep.
const MAX_DEPTH: usize = 64;
/// Longest duration text accepted (the longest real one, TimeSpan.MaxValue, has 26 chars).
const MAX_DURATION_LEN: usize = 64;
/// Rules' SQL compatibility level when the body gives none (the SDKs always send 20).
use crate::broker::entity::DEFAULT_COMPATIBILITY_LEVEL;
/// Durations at or above this many ticks mean "infinite": .NET's TimeSpan.MaxValue is
/// `P10675199DT2H48M5.4775807S`, and Python sends `P10675199DT2H48M5.477539S` for it.
const INFINITE_THRESHOLD_TICKS: i64 = 10_675_199 * 86_400 * 10_000_000;
/// What the service reports for a time that never happened (e.g. AccessedAt of an unused queue).
const NEVER: &str = "0001-01-01T00:00:00Z";

/// A request body the ATOM layer cannot accept; the message names the element and value and is
/// meant for a 400 Bad Request [`error_body`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AtomError(pub String);

impl fmt::Display for AtomError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for AtomError {}

fn err<T>(msg: impl Into<String>) -> Result<T, AtomError> {
    Err(AtomError(msg.into()))
}

/// A parsed queue, topic or subscription PUT body.
#[derive(Debug, Clone, PartialEq)]
pub struct ParsedEntity {
    /// Every setting, with [`EntityProps::default`] for elements the body leaves out.
    pub props: EntityProps,
    /// Subscriptions only: the `DefaultRuleDescription` to create instead of the `$Default`
    /// true-filter rule. Its `created_at` is 0; the caller stamps it.
    pub default_rule: Option<Rule>,
}

// ---------------------------------------------------------------------------------------------
// A minimal element tree, built with quick-xml.
// ---------------------------------------------------------------------------------------------

/// An XML attribute: its prefix (if any), local name and unescaped value.
#[derive(Debug)]
struct Attr {
    prefix: Option<String>,
    name: String,
    value: String,
}

/// An XML element: local name, attributes, child elements and concatenated text.
#[derive(Debug)]
struct Node {
    name: String,
    attrs: Vec<Attr>,
    children: Vec<Node>,
    text: String,
}

impl Node {
    /// The first child element with this local name.
    fn child(&self, name: &str) -> Option<&Node> {
        self.children.iter().find(|c| c.name == name)
    }

    /// The local part of the `xsi:type` attribute (any prefix), e.g. `SqlFilter` or `int`.
    fn xsi_type(&self) -> Option<&str> {
        self.attrs
            .iter()
            .find(|a| a.name == "type" && matches!(&a.prefix, Some(p) if p != "xmlns"))
            .map(|a| local_part(a.value.trim()))
    }

    /// Whether the element carries `xsi:nil="true"`.
    fn is_nil(&self) -> bool {
        self.attrs.iter().any(|a| {
            a.name == "nil"
                && matches!(&a.prefix, Some(p) if p != "xmlns")
                && a.value.trim() == "true"
        })
    }
}

fn local_part(qname: &str) -> &str {
    match qname.rfind(':') {
        Some(i) => &qname[i + 1..],
        None => qname,
    }
}

fn split_qname(raw: &[u8]) -> Result<(Option<String>, String), AtomError> {
    let s = std::str::from_utf8(raw)
        .map_err(|_| AtomError("malformed XML: a name is not valid UTF-8".to_string()))?;
    Ok(match s.find(':') {
        Some(i) => (Some(s[..i].to_string()), s[i + 1..].to_string()),
        None => (None, s.to_string()),
    })
}

fn node_from_start(e: &BytesStart<'_>) -> Result<Node, AtomError> {
    let (_, name) = split_qname(e.name().as_ref())?;
    let mut attrs = Vec::new();
    for a in e.attributes() {
        let a = a.map_err(|e| AtomError(format!("malformed XML in <{name}>: {e}")))?;
        let (prefix, local) = split_qname(a.key.as_ref())?;
        let value = a
            .unescape_value()
            .map_err(|e| {
                AtomError(format!(
                    "malformed XML in attribute {local} of <{name}>: {e}"
                ))
            })?
            .into_owned();
        attrs.push(Attr {
            prefix,
            name: local,
            value,
        });
    }
    Ok(Node {
        name,
        attrs,
        children: Vec::new(),
        text: String::new(),
    })
}

fn attach(stack: &mut [Node], root: &mut Option<Node>, node: Node) -> Result<(), AtomError> {
    if let Some(parent) = stack.last_mut() {
        parent.children.push(node);
        Ok(())
    } else if root.is_none() {
        *root = Some(node);
        Ok(())
    } else {
        err("malformed XML: more than one root element")
    }
}

fn push_text(stack: &mut [Node], text: &str) -> Result<(), AtomError> {
    match stack.last_mut() {
        Some(top) => {
            top.text.push_str(text);
            Ok(())
        }
        None if text.trim().is_empty() => Ok(()),
        None => err("malformed XML: text outside the root element"),
    }
}

/// Parses a whole document into its root element.
fn parse_document(xml: &str) -> Result<Node, AtomError> {
    let mut reader = Reader::from_str(xml);
    let mut stack: Vec<Node> = Vec::new();
    let mut root: Option<Node> = None;
    loop {
        let event = reader.read_event().map_err(|e| {
            AtomError(format!(
                "malformed XML at byte {}: {e}",
                reader.error_position()
            ))
        })?;
        match event {
            Event::Start(e) => {
                if stack.is_empty() && root.is_some() {
                    return err("malformed XML: more than one root element");
                }
                if stack.len() >= MAX_DEPTH {
                    return err(format!(
                        "malformed XML: elements nested deeper than {MAX_DEPTH} levels"
                    ));
                }
                stack.push(node_from_start(&e)?);
            }
            Event::Empty(e) => {
                let node = node_from_start(&e)?;
                attach(&mut stack, &mut root, node)?;
            }
            Event::End(_) => {
                let node = stack
                    .pop()
                    .ok_or_else(|| AtomError("malformed XML: unexpected end tag".to_string()))?;
                attach(&mut stack, &mut root, node)?;
            }
            Event::Text(t) => {
                let s = t
                    .xml10_content()
                    .map_err(|e| AtomError(format!("malformed XML text: {e}")))?;
                push_text(&mut stack, &s)?;
            }
            Event::CData(c) => {
                let s = c
                    .decode()
                    .map_err(|e| AtomError(format!("malformed XML CDATA: {e}")))?;
                push_text(&mut stack, &s)?;
            }
            Event::GeneralRef(r) => {
                let resolved = match r
                    .resolve_char_ref()
                    .map_err(|e| AtomError(format!("malformed XML character reference: {e}")))?
                {
                    Some(c) => c.to_string(),
                    None => {
                        let name = r
                            .decode()
                            .map_err(|e| AtomError(format!("malformed XML reference: {e}")))?;
                        match resolve_predefined_entity(&name) {
                            Some(s) => s.to_string(),
                            None => {
                                return err(format!(
                                    "malformed XML: unknown entity reference &{}; ",
                                    clip(&name)
                                ))
                            }
                        }
                    }
                };
                push_text(&mut stack, &resolved)?;
            }
            Event::Eof => break,
            Event::Decl(_) | Event::PI(_) | Event::Comment(_) | Event::DocType(_) => {}
        }
    }
    if let Some(open) = stack.last() {
        return err(format!(
            "malformed XML: document ends before <{}> is closed",
            clip(&open.name)
        ));
    }
    root.ok_or_else(|| AtomError("malformed XML: the body has no root element".to_string()))
}

/// The description element of an `<entry><content>` (or a bare description document).
fn find_description(root: &Node) -> Option<&Node> {
    if root.name == "entry" {
        root.child("content")?.children.first()
    } else {
        Some(root)
    }
}

/// Shortens a value for an error message (at most 100 characters).
fn clip(s: &str) -> String {
    const MAX: usize = 100;
    if s.chars().count() <= MAX {
        s.to_string()
    } else {
        let mut out: String = s.chars().take(MAX).collect();
        out.push('…');
        out
    }
}

// ---------------------------------------------------------------------------------------------
// Value parsing.
// ---------------------------------------------------------------------------------------------

fn bad_value<T>(el: &Node, what: &str) -> Result<T, AtomError> {
    err(format!(
        "invalid value for {}: '{}' is not {what}",
        el.name,
        clip(el.text.trim())
    ))
}

fn parse_bool_text(s: &str) -> Option<bool> {
    let t = s.trim();
    if t.eq_ignore_ascii_case("true") || t == "1" {
        Some(true)
    } else if t.eq_ignore_ascii_case("false") || t == "0" {
        Some(false)
    } else {
        None
    }
}

fn boolean(el: &Node) -> Result<bool, AtomError> {
    match parse_bool_text(&el.text) {
        Some(b) => Ok(b),
        None => bad_value(el, "a boolean (true or false)"),
    }
}

fn int64(el: &Node) -> Result<i64, AtomError> {
    match el.text.trim().parse::<i64>() {
        Ok(v) => Ok(v),
        Err(_) => bad_value(el, "an integer"),
    }
}

fn int32(el: &Node) -> Result<i32, AtomError> {
    match el.text.trim().parse::<i32>() {
        Ok(v) => Ok(v),
        Err(_) => bad_value(el, "a 32-bit integer"),
    }
}

/// Parses an xsd:duration, guarding against inputs that could overflow the parser and mapping
/// anything at or above TimeSpan.MaxValue's day count to [`TimeSpan::MAX`].
fn parse_duration_text(s: &str) -> Option<TimeSpan> {
    let t = s.trim();
    if t.is_empty() || t.len() > MAX_DURATION_LEN {
        return None;
    }
    let mut run = 0usize;
    for c in t.chars() {
        if c.is_ascii_digit() {
            run += 1;
            if run > 18 {
                return None;
            }
        } else {
            run = 0;
        }
    }
    let ts = TimeSpan::parse_xsd(t)?;
    if ts.0 >= INFINITE_THRESHOLD_TICKS {
        Some(TimeSpan::MAX)
    } else {
        Some(ts)
    }
}

fn duration(el: &Node) -> Result<TimeSpan, AtomError> {
    match parse_duration_text(&el.text) {
        Some(d) => Ok(d),
        None => bad_value(el, "an xsd:duration such as PT1M or P14D"),
    }
}

/// Reduces a `ForwardTo` value to an entity path: the SDKs send absolute addresses
/// (`sb://ns.servicebus.windows.net/queue`, `https://host/queue`) or bare names.
fn forward_target(el: &Node) -> Result<Option<String>, AtomError> {
    let raw = el.text.trim();
    if raw.is_empty() || el.is_nil() {
        return Ok(None);
    }
    let path = match raw.find("://") {
        Some(i) => {
            let after = &raw[i + 3..];
            match after.find('/') {
                Some(j) => &after[j + 1..],
                None => "",
            }
        }
        None => raw,
    };
    let path = path.split(['?', '#']).next().unwrap_or_default();
    let path = path.trim_matches('/');
    if path.is_empty() {
        return bad_value(el, "an entity name or address with an entity path");
    }
    let decoded = percent_encoding::percent_decode_str(path)
        .decode_utf8()
        .map(|c| c.into_owned())
        .unwrap_or_else(|_| path.to_string());
    Ok(Some(decoded))
}

fn parse_double_text(s: &str) -> Option<f64> {
    match s.trim() {
        "INF" => Some(f64::INFINITY),
        "-INF" => Some(f64::NEG_INFINITY),
        "NaN" => Some(f64::NAN),
        t => t.parse::<f64>().ok(),
    }
}

/// Parses a typed `Value` element of a `KeyValueOfstringanyType` item.
fn typed_value(el: &Node, key: &str) -> Result<Value, AtomError> {
    if el.is_nil() {
        return Ok(Value::Null);
    }
    let text = el.text.as_str();
    let bad = |ty: &str| {
        AtomError(format!(
            "invalid value for property '{}': '{}' is not a valid {ty}",
            clip(key),
            clip(text.trim())
        ))
    };
    match el.xsi_type() {
        None => Ok(Value::String(text.to_string())),
        Some(
            ty @ ("int" | "long" | "short" | "byte" | "unsignedByte" | "unsignedShort"
            | "unsignedInt" | "unsignedLong" | "integer"),
        ) => text
            .trim()
            .parse::<i64>()
            .map(Value::Int)
            .map_err(|_| bad(ty)),
        Some(ty @ ("double" | "float" | "decimal")) => parse_double_text(text)
            .map(Value::Double)
            .ok_or_else(|| bad(ty)),
        Some("boolean") => parse_bool_text(text)
            .map(Value::Bool)
            .ok_or_else(|| bad("boolean")),
        Some("dateTime") => parse_date(text)
            .map(Value::DateTime)
            .ok_or_else(|| bad("dateTime")),
        // string, char, guid, anyURI, duration (no duration Value exists; the xsd text is kept)
        // and anything else the SDKs might send are kept as text, as the .NET SDK does.
        Some(_) => Ok(Value::String(text.to_string())),
    }
}

/// Parses a `Parameters` / `Properties` list of `KeyValueOfstringanyType` items.
fn key_values(el: &Node) -> Result<BTreeMap<String, Value>, AtomError> {
    let mut out = BTreeMap::new();
    for item in el
        .children
        .iter()
        .filter(|c| c.name == "KeyValueOfstringanyType")
    {
        let key = match item.child("Key") {
            Some(k) if !k.text.is_empty() => k.text.clone(),
            _ => {
                return err(format!(
                    "invalid {}: a KeyValueOfstringanyType item has no Key",
                    el.name
                ))
            }
        };
        let value = match item.child("Value") {
            Some(v) => typed_value(v, &key)?,
            None => Value::Null,
        };
        out.insert(key, value);
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------------------
// Entity parsing.
// ---------------------------------------------------------------------------------------------

fn description_name(kind: EntityKind) -> &'static str {
    match kind {
        EntityKind::Queue => "QueueDescription",
        EntityKind::Topic => "TopicDescription",
        EntityKind::Subscription => "SubscriptionDescription",
    }
}

/// Which description a PUT body holds: `Some(Queue | Topic | Subscription)` for a
/// `QueueDescription`, `TopicDescription` or `SubscriptionDescription` inside
/// `<entry><content>`; `None` for anything else (including malformed XML and
/// `RuleDescription`, which [`parse_rule`] handles).
pub fn description_kind(xml: &str) -> Option<EntityKind> {
    let root = parse_document(xml).ok()?;
    match find_description(&root)?.name.as_str() {
        "QueueDescription" => Some(EntityKind::Queue),
        "TopicDescription" => Some(EntityKind::Topic),
        "SubscriptionDescription" => Some(EntityKind::Subscription),
        _ => None,
    }
}

/// Parses a queue, topic or subscription PUT body (create or update).
///
/// Elements the body leaves out take [`EntityProps::default`]; elements the kind does not have,
/// read-only runtime elements (`MessageCount`, `CountDetails`, `CreatedAt`, ...) and unknown
/// elements are ignored. `ForwardTo` / `ForwardDeadLetteredMessagesTo` addresses are reduced to
/// entity paths. Durations at or beyond TimeSpan.MaxValue's day count become [`TimeSpan::MAX`].
pub fn parse_entity(xml: &str, kind: EntityKind) -> Result<ParsedEntity, AtomError> {
    let root = parse_document(xml)?;
    let expected = description_name(kind);
    let desc = match find_description(&root) {
        Some(d) => d,
        None => {
            return err(format!(
                "the request body has no {expected} inside <entry><content>"
            ))
        }
    };
    if desc.name != expected {
        return err(format!(
            "expected a {expected} in the request body, found <{}>",
            clip(&desc.name)
        ));
    }
    let q = kind == EntityKind::Queue;
    let t = kind == EntityKind::Topic;
    let s = kind == EntityKind::Subscription;
    let mut p = EntityProps::default();
    let mut default_rule = None;
    for el in &desc.children {
        match el.name.as_str() {
            "LockDuration" if q || s => p.lock_duration = duration(el)?,
            "MaxSizeInMegabytes" if q || t => p.max_size_in_megabytes = int64(el)?,
            "RequiresDuplicateDetection" if q || t => p.requires_duplicate_detection = boolean(el)?,
            "DuplicateDetectionHistoryTimeWindow" if q || t => {
                p.duplicate_detection_history_time_window = duration(el)?
            }
            "RequiresSession" if q || s => p.requires_session = boolean(el)?,
            "DefaultMessageTimeToLive" => p.default_message_time_to_live = duration(el)?,
            "DeadLetteringOnMessageExpiration" if q || s => {
                p.dead_lettering_on_message_expiration = boolean(el)?
            }
            "DeadLetteringOnFilterEvaluationExceptions" if s => {
                p.dead_lettering_on_filter_evaluation_exceptions = boolean(el)?
            }
            "MaxDeliveryCount" if q || s => p.max_delivery_count = int32(el)?,
            "EnableBatchedOperations" => p.enable_batched_operations = boolean(el)?,
            "Status" => {
                p.status =
                    match EntityStatus::parse(&el.text) {
                        Some(st) => st,
                        None => return bad_value(
                            el,
                            "an entity status (Active, Disabled, SendDisabled or ReceiveDisabled)",
                        ),
                    }
            }
            "ForwardTo" if q || s => p.forward_to = forward_target(el)?,
            "ForwardDeadLetteredMessagesTo" if q || s => {
                p.forward_dead_lettered_messages_to = forward_target(el)?
            }
            "UserMetadata" => {
                p.user_metadata = if el.is_nil() {
                    None
                } else {
                    Some(el.text.clone())
                }
            }
            "AutoDeleteOnIdle" => p.auto_delete_on_idle = duration(el)?,
            "EnablePartitioning" if q || t => p.enable_partitioning = boolean(el)?,
            "SupportOrdering" if q || t => p.support_ordering = boolean(el)?,
            "EnableExpress" if q || t => p.enable_express = boolean(el)?,
            "MaxMessageSizeInKilobytes" if q || t => p.max_message_size_in_kilobytes = int64(el)?,
            "DefaultRuleDescription" if s => {
                let name = match el.child("Name") {
                    Some(n) if !n.text.trim().is_empty() => n.text.trim().to_string(),
                    _ => DEFAULT_RULE_NAME.to_string(),
                };
                default_rule = Some(rule_from_node(el, name, 0)?);
            }
            _ => {}
        }
    }
    Ok(ParsedEntity {
        props: p,
        default_rule,
    })
}

// ---------------------------------------------------------------------------------------------
// Rule parsing.
// ---------------------------------------------------------------------------------------------

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

fn rule_from_node(desc: &Node, name: String, now: Millis) -> Result<Rule, AtomError> {
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

fn compatibility_level(el: &Node) -> Result<i32, AtomError> {
    match el.child("CompatibilityLevel") {
        Some(c) if !c.text.trim().is_empty() => int32(c),
        _ => Ok(DEFAULT_COMPATIBILITY_LEVEL),
    }
}

fn parameters(el: &Node) -> Result<BTreeMap<String, Value>, AtomError> {
    match el.child("Parameters") {
        Some(p) => key_values(p),
        None => Ok(BTreeMap::new()),
    }
}

fn sql_expression(el: &Node) -> Option<String> {
    el.child("SqlExpression")
        .map(|e| e.text.clone())
        .filter(|t| !t.trim().is_empty())
}

fn parse_sql_filter(f: &Node) -> Result<SqlFilterDef, AtomError> {
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

fn optional_text(el: &Node) -> Option<String> {
    if el.is_nil() || el.text.trim().is_empty() {
        None
    } else {
        Some(el.text.clone())
    }
}

fn parse_correlation(f: &Node) -> Result<CorrelationFilter, AtomError> {
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

fn parse_filter(f: &Node) -> Result<Filter, AtomError> {
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

fn parse_action(a: &Node) -> Result<Option<SqlAction>, AtomError> {
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

// ---------------------------------------------------------------------------------------------
// Rendering.
// ---------------------------------------------------------------------------------------------

/// Escapes text for element content and attribute values.
fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\r' => out.push_str("&#xD;"),
            '\n' => out.push_str("&#xA;"),
            '\t' => out.push_str("&#x9;"),
            // Characters XML 1.0 cannot carry at all are dropped rather than producing a
            // document no parser accepts.
            c if (c as u32) < 0x20 || c == '\u{FFFE}' || c == '\u{FFFF}' => {}
            c => out.push(c),
        }
    }
    out
}

/// Appends `<name>text</name>` with `text` escaped.
fn el(out: &mut String, name: &str, text: &str) {
    out.push('<');
    out.push_str(name);
    out.push('>');
    out.push_str(&esc(text));
    out.push_str("</");
    out.push_str(name);
    out.push('>');
}

fn el_bool(out: &mut String, name: &str, v: bool) {
    el(out, name, if v { "true" } else { "false" });
}

fn el_dur(out: &mut String, name: &str, v: TimeSpan) {
    el(out, name, &v.to_xsd());
}

/// ISO 8601 with 7 fractional digits; times at or before the epoch render as the service's
/// "never" value.
fn date_or_never(ms: Millis) -> String {
    if ms <= 0 {
        NEVER.to_string()
    } else {
        iso8601(ms)
    }
}

/// ISO 8601 to the second, as the Atom `<published>` / `<updated>` elements carry dates.
fn atom_date(ms: Millis) -> String {
    let full = iso8601(ms.max(0));
    match full.find('.') {
        Some(i) => format!("{}Z", &full[..i]),
        None => full,
    }
}

fn trim_base(base_url: &str) -> &str {
    base_url.trim_end_matches('/')
}

/// The namespace name shown as an entry's author: the first label of the base URL's host.
fn namespace_name(base_url: &str) -> String {
    let rest = match base_url.find("://") {
        Some(i) => &base_url[i + 3..],
        None => base_url,
    };
    let host = rest.split(['/', ':', '?']).next().unwrap_or_default();
    host.split('.').next().unwrap_or_default().to_string()
}

fn resource_url(base_url: &str, path: &str) -> String {
    format!("{}/{}?api-version={API_VERSION}", trim_base(base_url), path)
}

/// The entity path of an entity: the queue or topic name, or `topic/Subscriptions/sub`.
fn entity_path(info: &EntityInfo) -> String {
    match (&info.kind, &info.topic) {
        (EntityKind::Subscription, Some(topic)) => format!("{topic}/Subscriptions/{}", info.name),
        _ => info.name.clone(),
    }
}

fn rule_path(topic: &str, sub: &str, rule: &str) -> String {
    format!("{topic}/Subscriptions/{sub}/Rules/{rule}")
}

fn count_details(out: &mut String, info: &EntityInfo) {
    let c = &info.counts;
    out.push_str("<CountDetails xmlns:d2p1=\"");
    out.push_str(SB_COUNTS_NS);
    out.push_str("\">");
    el(out, "d2p1:ActiveMessageCount", &c.active.to_string());
    el(
        out,
        "d2p1:DeadLetterMessageCount",
        &c.dead_letter.to_string(),
    );
    el(out, "d2p1:ScheduledMessageCount", &c.scheduled.to_string());
    el(out, "d2p1:TransferMessageCount", &c.transfer.to_string());
    el(
        out,
        "d2p1:TransferDeadLetterMessageCount",
        &c.transfer_dead_letter.to_string(),
    );
    out.push_str("</CountDetails>");
}

fn forward_address(base_url: &str, target: &str) -> String {
    format!("{}/{}", trim_base(base_url), target)
}

fn user_metadata(out: &mut String, p: &EntityProps) {
    if let Some(m) = &p.user_metadata {
        el(out, "UserMetadata", m);
    }
}

fn times(out: &mut String, info: &EntityInfo) {
    el(out, "CreatedAt", &date_or_never(info.times.created_at));
    el(out, "UpdatedAt", &date_or_never(info.times.updated_at));
    el(out, "AccessedAt", &date_or_never(info.times.accessed_at));
}

/// The `QueueDescription` / `TopicDescription` / `SubscriptionDescription` element, in the
/// element order of the service's responses.
fn render_description(info: &EntityInfo, base_url: &str) -> String {
    let p = &info.props;
    let mut o = String::with_capacity(2048);
    let tag = description_name(info.kind);
    o.push_str(&format!("<{tag} xmlns=\"{SB_NS}\" xmlns:i=\"{XSI_NS}\">"));
    match info.kind {
        EntityKind::Queue => {
            el_dur(&mut o, "LockDuration", p.lock_duration);
            el(
                &mut o,
                "MaxSizeInMegabytes",
                &p.max_size_in_megabytes.to_string(),
            );
            el_bool(
                &mut o,
                "RequiresDuplicateDetection",
                p.requires_duplicate_detection,
            );
            el_bool(&mut o, "RequiresSession", p.requires_session);
            el_dur(
                &mut o,
                "DefaultMessageTimeToLive",
                p.default_message_time_to_live,
            );
            el_bool(
                &mut o,
                "DeadLetteringOnMessageExpiration",
                p.dead_lettering_on_message_expiration,
            );
            el_dur(
                &mut o,
                "DuplicateDetectionHistoryTimeWindow",
                p.duplicate_detection_history_time_window,
            );
            el(
                &mut o,
                "MaxDeliveryCount",
                &p.max_delivery_count.to_string(),
            );
            el_bool(
                &mut o,
                "EnableBatchedOperations",
                p.enable_batched_operations,
            );
            el(&mut o, "SizeInBytes", &info.size_in_bytes.to_string());
            el(&mut o, "MessageCount", &info.counts.total().to_string());
            el_bool(&mut o, "IsAnonymousAccessible", false);
            o.push_str("<AuthorizationRules></AuthorizationRules>");
            el(&mut o, "Status", p.status.as_str());
            times(&mut o, info);
            el_bool(&mut o, "SupportOrdering", p.support_ordering);
            user_metadata(&mut o, p);
            count_details(&mut o, info);
            el_dur(&mut o, "AutoDeleteOnIdle", p.auto_delete_on_idle);
            el_bool(&mut o, "EnablePartitioning", p.enable_partitioning);
            el(&mut o, "EntityAvailabilityStatus", "Available");
            el_bool(&mut o, "EnableExpress", p.enable_express);
            if let Some(f) = &p.forward_to {
                el(&mut o, "ForwardTo", &forward_address(base_url, f));
            }
            if let Some(f) = &p.forward_dead_lettered_messages_to {
                el(
                    &mut o,
                    "ForwardDeadLetteredMessagesTo",
                    &forward_address(base_url, f),
                );
            }
            el(
                &mut o,
                "MaxMessageSizeInKilobytes",
                &p.max_message_size_in_kilobytes.to_string(),
            );
        }
        EntityKind::Topic => {
            el_dur(
                &mut o,
                "DefaultMessageTimeToLive",
                p.default_message_time_to_live,
            );
            el(
                &mut o,
                "MaxSizeInMegabytes",
                &p.max_size_in_megabytes.to_string(),
            );
            el_bool(
                &mut o,
                "RequiresDuplicateDetection",
                p.requires_duplicate_detection,
            );
            el_dur(
                &mut o,
                "DuplicateDetectionHistoryTimeWindow",
                p.duplicate_detection_history_time_window,
            );
            el_bool(
                &mut o,
                "EnableBatchedOperations",
                p.enable_batched_operations,
            );
            el(&mut o, "SizeInBytes", &info.size_in_bytes.to_string());
            el_bool(&mut o, "FilteringMessagesBeforePublishing", false);
            el_bool(&mut o, "IsAnonymousAccessible", false);
            o.push_str("<AuthorizationRules></AuthorizationRules>");
            el(&mut o, "Status", p.status.as_str());
            times(&mut o, info);
            el_bool(&mut o, "SupportOrdering", p.support_ordering);
            user_metadata(&mut o, p);
            count_details(&mut o, info);
            el(
                &mut o,
                "SubscriptionCount",
                &info.subscription_count.to_string(),
            );
            el_dur(&mut o, "AutoDeleteOnIdle", p.auto_delete_on_idle);
            el_bool(&mut o, "EnablePartitioning", p.enable_partitioning);
            el(&mut o, "EntityAvailabilityStatus", "Available");
            el_bool(&mut o, "EnableSubscriptionPartitioning", false);
            el_bool(&mut o, "EnableExpress", p.enable_express);
            el(
                &mut o,
                "MaxMessageSizeInKilobytes",
                &p.max_message_size_in_kilobytes.to_string(),
            );
        }
        EntityKind::Subscription => {
            el_dur(&mut o, "LockDuration", p.lock_duration);
            el_bool(&mut o, "RequiresSession", p.requires_session);
            el_dur(
                &mut o,
                "DefaultMessageTimeToLive",
                p.default_message_time_to_live,
            );
            el_bool(
                &mut o,
                "DeadLetteringOnMessageExpiration",
                p.dead_lettering_on_message_expiration,
            );
            el_bool(
                &mut o,
                "DeadLetteringOnFilterEvaluationExceptions",
                p.dead_lettering_on_filter_evaluation_exceptions,
            );
            el(&mut o, "MessageCount", &info.counts.total().to_string());
            el(
                &mut o,
                "MaxDeliveryCount",
                &p.max_delivery_count.to_string(),
            );
            el_bool(
                &mut o,
                "EnableBatchedOperations",
                p.enable_batched_operations,
            );
            el(&mut o, "Status", p.status.as_str());
            if let Some(f) = &p.forward_to {
                el(&mut o, "ForwardTo", &forward_address(base_url, f));
            }
            times(&mut o, info);
            count_details(&mut o, info);
            user_metadata(&mut o, p);
            if let Some(f) = &p.forward_dead_lettered_messages_to {
                el(
                    &mut o,
                    "ForwardDeadLetteredMessagesTo",
                    &forward_address(base_url, f),
                );
            }
            el_dur(&mut o, "AutoDeleteOnIdle", p.auto_delete_on_idle);
            el(&mut o, "EntityAvailabilityStatus", "Available");
        }
    }
    o.push_str(&format!("</{tag}>"));
    o
}

/// Renders an `<entry>` (without XML declaration). `author` is omitted for subscriptions and
/// rules, as the service does.
#[allow(clippy::too_many_arguments)]
fn render_entry(
    out: &mut String,
    with_ns: bool,
    url: &str,
    title: &str,
    published: Option<Millis>,
    updated: Millis,
    author: Option<&str>,
    content: &str,
) {
    if with_ns {
        out.push_str(&format!("<entry xmlns=\"{ATOM_NS}\">"));
    } else {
        out.push_str("<entry>");
    }
    el(out, "id", url);
    out.push_str("<title type=\"text\">");
    out.push_str(&esc(title));
    out.push_str("</title>");
    if let Some(p) = published {
        el(out, "published", &atom_date(p));
    }
    el(out, "updated", &atom_date(updated));
    if let Some(a) = author {
        out.push_str("<author>");
        el(out, "name", a);
        out.push_str("</author>");
    }
    out.push_str(&format!("<link rel=\"self\" href=\"{}\"/>", esc(url)));
    out.push_str("<content type=\"application/xml\">");
    out.push_str(content);
    out.push_str("</content></entry>");
}

const XML_DECL: &str = "<?xml version=\"1.0\" encoding=\"utf-8\"?>";

fn entity_entry_into(out: &mut String, with_ns: bool, info: &EntityInfo, base_url: &str) {
    let url = resource_url(base_url, &entity_path(info));
    let ns = namespace_name(base_url);
    let author = match info.kind {
        EntityKind::Subscription => None,
        _ => Some(ns.as_str()),
    };
    render_entry(
        out,
        with_ns,
        &url,
        &info.name,
        Some(info.times.created_at),
        info.times.updated_at,
        author,
        &render_description(info, base_url),
    );
}

/// A queue, topic or subscription as a full entry document (GET, and PUT responses).
///
/// The id and self link are `{base_url}/{entity path}?api-version=2021-05`, where a
/// subscription's path is `topic/Subscriptions/sub`; the title is the entity's own name.
pub fn entity_entry(info: &EntityInfo, base_url: &str) -> String {
    let mut out = String::from(XML_DECL);
    entity_entry_into(&mut out, true, info, base_url);
    out
}

fn typed_value_xml(out: &mut String, v: &Value) {
    let (ty, text) = match v {
        Value::Null => {
            out.push_str("<Value i:nil=\"true\"/>");
            return;
        }
        Value::String(s) => ("string", s.clone()),
        Value::Int(i) if i32::try_from(*i).is_ok() => ("int", i.to_string()),
        Value::Int(i) => ("long", i.to_string()),
        Value::Double(d) => (
            "double",
            if d.is_nan() {
                "NaN".to_string()
            } else if d.is_infinite() {
                if *d > 0.0 { "INF" } else { "-INF" }.to_string()
            } else {
                d.to_string()
            },
        ),
        Value::Bool(b) => ("boolean", b.to_string()),
        Value::DateTime(ms) => ("dateTime", iso8601(*ms)),
    };
    out.push_str(&format!(
        "<Value i:type=\"d6p1:{ty}\" xmlns:d6p1=\"{XSD_NS}\">{}</Value>",
        esc(&text)
    ));
}

fn key_values_xml(out: &mut String, tag: &str, items: &BTreeMap<String, Value>) {
    if items.is_empty() {
        out.push_str(&format!("<{tag}/>"));
        return;
    }
    out.push_str(&format!("<{tag}>"));
    for (k, v) in items {
        out.push_str("<KeyValueOfstringanyType>");
        el(out, "Key", k);
        typed_value_xml(out, v);
        out.push_str("</KeyValueOfstringanyType>");
    }
    out.push_str(&format!("</{tag}>"));
}

fn sql_body(out: &mut String, expression: &str, level: i32, params: &BTreeMap<String, Value>) {
    el(out, "SqlExpression", expression);
    el(out, "CompatibilityLevel", &level.to_string());
    if !params.is_empty() {
        key_values_xml(out, "Parameters", params);
    }
}

fn render_rule_description(rule: &Rule) -> String {
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

fn rule_entry_into(
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

fn feed_head(out: &mut String, title: &str, url: &str, now: Millis) {
    out.push_str(XML_DECL);
    out.push_str(&format!("<feed xmlns=\"{ATOM_NS}\">"));
    out.push_str("<title type=\"text\">");
    out.push_str(&esc(title));
    out.push_str("</title>");
    el(out, "id", url);
    el(out, "updated", &atom_date(now));
    out.push_str(&format!("<link rel=\"self\" href=\"{}\"/>", esc(url)));
}

/// A list of queues, topics or subscriptions as a feed document. `title` is `Queues`, `Topics`
/// or `Subscriptions`; `self_path` is the request path and query without the leading slash
/// (e.g. `$Resources/queues?$skip=0&$top=100&api-version=2021-05`), used as the feed's id and
/// self link; `now` is the feed's `updated` time.
pub fn entity_feed(
    title: &str,
    infos: &[EntityInfo],
    base_url: &str,
    self_path: &str,
    now: Millis,
) -> String {
    let url = format!(
        "{}/{}",
        trim_base(base_url),
        self_path.trim_start_matches('/')
    );
    let mut out = String::with_capacity(512 + infos.len() * 2048);
    feed_head(&mut out, title, &url, now);
    for info in infos {
        entity_entry_into(&mut out, false, info, base_url);
    }
    out.push_str("</feed>");
    out
}

/// The rules of subscription `topic/sub` as a feed document; `now` is the feed's `updated` time.
pub fn rule_feed(rules: &[Rule], topic: &str, sub: &str, base_url: &str, now: Millis) -> String {
    let url = resource_url(base_url, &format!("{topic}/Subscriptions/{sub}/Rules"));
    let mut out = String::with_capacity(512 + rules.len() * 1024);
    feed_head(&mut out, "Rules", &url, now);
    for rule in rules {
        rule_entry_into(&mut out, false, rule, topic, sub, base_url);
    }
    out.push_str("</feed>");
    out
}

/// The `NamespaceInfo` entry `GET /$namespaceinfo` returns: a Standard-tier messaging namespace
/// called `name`, created (and last modified) at `created`.
pub fn namespace_info(name: &str, created: Millis, base_url: &str) -> String {
    let url = resource_url(base_url, "$namespaceinfo");
    let mut info = format!("<NamespaceInfo xmlns=\"{SB_NS}\" xmlns:i=\"{XSI_NS}\">");
    el(&mut info, "CreatedTime", &iso8601(created));
    el(&mut info, "MessagingSKU", "Standard");
    el(&mut info, "ModifiedTime", &iso8601(created));
    el(&mut info, "Name", name);
    el(&mut info, "NamespaceType", "Messaging");
    info.push_str("</NamespaceInfo>");
    let mut out = String::from(XML_DECL);
    render_entry(&mut out, true, &url, name, None, created, Some(name), &info);
    out
}

/// Azure's management error body: `<Error><Code>404</Code><Detail>...</Detail></Error>`.
pub fn error_body(code: u16, detail: &str) -> String {
    let mut out = String::from("<Error>");
    el(&mut out, "Code", &code.to_string());
    el(&mut out, "Detail", detail);
    out.push_str("</Error>");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::broker::entity::{CountDetails, EntityTimes};
    use proptest::prelude::*;

    const BASE: &str = "http://localhost:5300";
    const T0: Millis = 1_764_098_270_123;

    fn info(kind: EntityKind, props: EntityProps) -> EntityInfo {
        EntityInfo {
            kind,
            name: match kind {
                EntityKind::Queue => "orders".into(),
                EntityKind::Topic => "events".into(),
                EntityKind::Subscription => "audit".into(),
            },
            topic: (kind == EntityKind::Subscription).then(|| "events".to_string()),
            props,
            times: EntityTimes {
                created_at: T0,
                updated_at: T0 + 1_000,
                accessed_at: T0 + 2_000,
            },
            counts: CountDetails {
                active: 3,
                dead_letter: 2,
                scheduled: 1,
                transfer: 0,
                transfer_dead_letter: 0,
                deferred: 4,
            },
            size_in_bytes: 12_345,
            subscription_count: 7,
        }
    }

    /// Non-default values for every field the kind has; other fields stay at their defaults.
    fn custom_props(kind: EntityKind) -> EntityProps {
        let q = kind == EntityKind::Queue;
        let t = kind == EntityKind::Topic;
        let s = kind == EntityKind::Subscription;
        let mut p = EntityProps {
            default_message_time_to_live: TimeSpan::from_secs(3_600 * 25 + 1),
            enable_batched_operations: false,
            status: EntityStatus::SendDisabled,
            auto_delete_on_idle: TimeSpan::from_millis(600_500),
            user_metadata: Some("meta <&> \"quoted\" 'x'\nline2".into()),
            ..EntityProps::default()
        };
        if q || s {
            p.lock_duration = TimeSpan::from_secs(45);
            p.requires_session = true;
            p.dead_lettering_on_message_expiration = true;
            p.max_delivery_count = 3;
            p.forward_to = Some("target-q".into());
            p.forward_dead_lettered_messages_to = Some("dlq-target".into());
        }
        if q || t {
            p.max_size_in_megabytes = 5_120;
            p.requires_duplicate_detection = true;
            p.duplicate_detection_history_time_window = TimeSpan::from_secs(90);
            p.enable_partitioning = true;
            p.support_ordering = false;
            p.enable_express = true;
            p.max_message_size_in_kilobytes = 1_024;
        }
        if s {
            p.dead_lettering_on_filter_evaluation_exceptions = false;
        }
        p
    }

    #[test]
    fn entities_round_trip_render_then_parse() {
        for kind in [
            EntityKind::Queue,
            EntityKind::Topic,
            EntityKind::Subscription,
        ] {
            let props = custom_props(kind);
            let xml = entity_entry(&info(kind, props.clone()), BASE);
            assert_eq!(description_kind(&xml), Some(kind), "{xml}");
            let parsed = parse_entity(&xml, kind).expect("parses");
            assert_eq!(parsed.props, props, "kind {kind:?}: {xml}");
            assert_eq!(parsed.default_rule, None);
            // Defaults round-trip too, including the infinite durations.
            let xml = entity_entry(&info(kind, EntityProps::default()), BASE);
            assert_eq!(
                parse_entity(&xml, kind).expect("parses").props,
                EntityProps::default()
            );
        }
    }

    #[test]
    fn queue_entry_has_the_service_shape() {
        let xml = entity_entry(
            &info(EntityKind::Queue, custom_props(EntityKind::Queue)),
            BASE,
        );
        assert!(xml.starts_with("<?xml version=\"1.0\" encoding=\"utf-8\"?><entry xmlns=\"http://www.w3.org/2005/Atom\">"));
        assert!(xml.contains("<id>http://localhost:5300/orders?api-version=2021-05</id>"));
        assert!(xml.contains("<title type=\"text\">orders</title>"));
        assert!(xml.contains("<published>2025-11-25T19:17:50Z</published>"));
        assert!(xml.contains("<author><name>localhost</name></author>"));
        assert!(xml.contains(
            "<link rel=\"self\" href=\"http://localhost:5300/orders?api-version=2021-05\"/>"
        ));
        assert!(xml.contains("<content type=\"application/xml\"><QueueDescription xmlns=\"http://schemas.microsoft.com/netservices/2010/10/servicebus/connect\" xmlns:i=\"http://www.w3.org/2001/XMLSchema-instance\"><LockDuration>PT45S</LockDuration>"));
        assert!(xml.contains("<MessageCount>10</MessageCount>"));
        assert!(xml.contains("<SizeInBytes>12345</SizeInBytes>"));
        assert!(xml.contains("<CreatedAt>2025-11-25T19:17:50.1230000Z</CreatedAt>"));
        assert!(xml.contains("<CountDetails xmlns:d2p1=\"http://schemas.microsoft.com/netservices/2011/06/servicebus\"><d2p1:ActiveMessageCount>3</d2p1:ActiveMessageCount><d2p1:DeadLetterMessageCount>2</d2p1:DeadLetterMessageCount><d2p1:ScheduledMessageCount>1</d2p1:ScheduledMessageCount><d2p1:TransferMessageCount>0</d2p1:TransferMessageCount><d2p1:TransferDeadLetterMessageCount>0</d2p1:TransferDeadLetterMessageCount></CountDetails>"));
        assert!(xml.contains("<ForwardTo>http://localhost:5300/target-q</ForwardTo>"));
        assert!(xml.contains(
            "<UserMetadata>meta &lt;&amp;&gt; &quot;quoted&quot; &apos;x&apos;&#xA;line2</UserMetadata>"
        ));
        // Element order as the service returns it.
        let order = [
            "<LockDuration>",
            "<MaxSizeInMegabytes>",
            "<RequiresDuplicateDetection>",
            "<RequiresSession>",
            "<DefaultMessageTimeToLive>",
            "<DeadLetteringOnMessageExpiration>",
            "<DuplicateDetectionHistoryTimeWindow>",
            "<MaxDeliveryCount>",
            "<EnableBatchedOperations>",
            "<SizeInBytes>",
            "<MessageCount>",
            "<IsAnonymousAccessible>",
            "<AuthorizationRules>",
            "<Status>",
            "<CreatedAt>",
            "<UpdatedAt>",
            "<AccessedAt>",
            "<SupportOrdering>",
            "<UserMetadata>",
            "<CountDetails ",
            "<AutoDeleteOnIdle>",
            "<EnablePartitioning>",
            "<EntityAvailabilityStatus>",
            "<EnableExpress>",
            "<ForwardTo>",
            "<ForwardDeadLetteredMessagesTo>",
            "<MaxMessageSizeInKilobytes>",
        ];
        assert_in_order(&xml, &order);
    }

    fn assert_in_order(xml: &str, order: &[&str]) {
        let mut at = 0;
        for tag in order {
            let pos = xml[at..]
                .find(tag)
                .unwrap_or_else(|| panic!("{tag} missing or out of order in {xml}"));
            at += pos + tag.len();
        }
    }

    #[test]
    fn topic_and_subscription_entries_have_the_service_shape() {
        let xml = entity_entry(&info(EntityKind::Topic, EntityProps::default()), BASE);
        assert!(xml.contains("<SubscriptionCount>7</SubscriptionCount>"));
        assert!(!xml.contains("<MessageCount>"));
        assert!(!xml.contains("<LockDuration>"));
        assert!(xml.contains(
            "<DefaultMessageTimeToLive>P10675199DT2H48M5.4775807S</DefaultMessageTimeToLive>"
        ));
        assert_in_order(
            &xml,
            &[
                "<DefaultMessageTimeToLive>",
                "<MaxSizeInMegabytes>",
                "<RequiresDuplicateDetection>",
                "<DuplicateDetectionHistoryTimeWindow>",
                "<EnableBatchedOperations>",
                "<SizeInBytes>",
                "<FilteringMessagesBeforePublishing>",
                "<Status>",
                "<CreatedAt>",
                "<SupportOrdering>",
                "<CountDetails ",
                "<SubscriptionCount>",
                "<AutoDeleteOnIdle>",
                "<EnablePartitioning>",
                "<EntityAvailabilityStatus>",
                "<EnableSubscriptionPartitioning>",
                "<EnableExpress>",
                "<MaxMessageSizeInKilobytes>",
            ],
        );

        let mut sub = info(
            EntityKind::Subscription,
            custom_props(EntityKind::Subscription),
        );
        sub.times.accessed_at = 0;
        let xml = entity_entry(&sub, BASE);
        assert!(xml.contains(
            "<id>http://localhost:5300/events/Subscriptions/audit?api-version=2021-05</id>"
        ));
        assert!(xml.contains("<title type=\"text\">audit</title>"));
        assert!(!xml.contains("<author>"));
        assert!(xml.contains("<AccessedAt>0001-01-01T00:00:00Z</AccessedAt>"));
        assert_in_order(
            &xml,
            &[
                "<LockDuration>",
                "<RequiresSession>",
                "<DefaultMessageTimeToLive>",
                "<DeadLetteringOnMessageExpiration>",
                "<DeadLetteringOnFilterEvaluationExceptions>",
                "<MessageCount>",
                "<MaxDeliveryCount>",
                "<EnableBatchedOperations>",
                "<Status>",
                "<ForwardTo>",
                "<CreatedAt>",
                "<UpdatedAt>",
                "<AccessedAt>",
                "<CountDetails ",
                "<UserMetadata>",
                "<ForwardDeadLetteredMessagesTo>",
                "<AutoDeleteOnIdle>",
                "<EntityAvailabilityStatus>",
            ],
        );
    }

    /// The shape azure-servicebus (Python) sends for create_queue with options: an `ns0:`
    /// prefixed Atom entry with the connect namespace as default namespace.
    const PY_CREATE_QUEUE: &str = concat!(
        "<?xml version='1.0' encoding='utf-8'?>\n",
        "<ns0:entry xmlns:ns0=\"http://www.w3.org/2005/Atom\" ",
        "xmlns=\"http://schemas.microsoft.com/netservices/2010/10/servicebus/connect\">",
        "<ns0:content type=\"application/xml\"><QueueDescription>",
        "<LockDuration>PT13S</LockDuration><MaxSizeInMegabytes>3072</MaxSizeInMegabytes>",
        "<RequiresSession>true</RequiresSession>",
        "<DefaultMessageTimeToLive>PT11M2S</DefaultMessageTimeToLive>",
        "<DeadLetteringOnMessageExpiration>true</DeadLetteringOnMessageExpiration>",
        "<DuplicateDetectionHistoryTimeWindow>PT12M3S</DuplicateDetectionHistoryTimeWindow>",
        "<MaxDeliveryCount>14</MaxDeliveryCount>",
        "<EnableBatchedOperations>true</EnableBatchedOperations>",
        "<AuthorizationRules />",
        "<AutoDeleteOnIdle>P10675199DT2H48M5.477539S</AutoDeleteOnIdle>",
        "<EnablePartitioning>true</EnablePartitioning><EnableExpress>true</EnableExpress>",
        "<ForwardTo>sb://myns.servicebus.windows.net/fwd-target</ForwardTo>",
        "<ForwardDeadLetteredMessagesTo>sb://myns.servicebus.windows.net/dlq%20x</ForwardDeadLetteredMessagesTo>",
        "<MaxMessageSizeInKilobytes>12345</MaxMessageSizeInKilobytes>",
        "<SomeFutureElement>whatever</SomeFutureElement>",
        "</QueueDescription></ns0:content></ns0:entry>"
    );

    #[test]
    fn parses_the_python_create_queue_body() {
        assert_eq!(description_kind(PY_CREATE_QUEUE), Some(EntityKind::Queue));
        let p = parse_entity(PY_CREATE_QUEUE, EntityKind::Queue)
            .expect("parses")
            .props;
        assert_eq!(p.lock_duration, TimeSpan::from_secs(13));
        assert_eq!(p.max_size_in_megabytes, 3072);
        assert!(p.requires_session);
        assert_eq!(p.default_message_time_to_live, TimeSpan::from_secs(662));
        assert!(p.dead_lettering_on_message_expiration);
        assert_eq!(
            p.duplicate_detection_history_time_window,
            TimeSpan::from_secs(723)
        );
        assert_eq!(p.max_delivery_count, 14);
        assert_eq!(p.auto_delete_on_idle, TimeSpan::MAX);
        assert!(p.enable_partitioning && p.enable_express);
        assert_eq!(p.forward_to.as_deref(), Some("fwd-target"));
        assert_eq!(
            p.forward_dead_lettered_messages_to.as_deref(),
            Some("dlq x")
        );
        assert_eq!(p.max_message_size_in_kilobytes, 12345);
        // Absent elements keep their defaults.
        assert!(!p.requires_duplicate_detection);
        assert_eq!(p.status, EntityStatus::Active);
        assert_eq!(p.user_metadata, None);
        // The same body is not a topic.
        assert!(parse_entity(PY_CREATE_QUEUE, EntityKind::Topic).is_err());
    }

    #[test]
    fn parses_empty_descriptions_as_defaults() {
        for (tag, kind) in [
            ("QueueDescription", EntityKind::Queue),
            ("TopicDescription", EntityKind::Topic),
            ("SubscriptionDescription", EntityKind::Subscription),
        ] {
            let xml = format!(
                "<ns0:entry xmlns:ns0=\"{ATOM_NS}\" xmlns=\"{SB_NS}\"><ns0:content type=\"application/xml\"><{tag} /></ns0:content></ns0:entry>"
            );
            assert_eq!(description_kind(&xml), Some(kind));
            let parsed = parse_entity(&xml, kind).expect("parses");
            assert_eq!(parsed.props, EntityProps::default());
        }
        assert_eq!(description_kind("<entry><content/></entry>"), None);
        assert_eq!(description_kind("not xml"), None);
        assert_eq!(
            description_kind(&format!(
                "<entry xmlns=\"{ATOM_NS}\"><content><RuleDescription xmlns=\"{SB_NS}\"/></content></entry>"
            )),
            None
        );
    }

    /// The shape the .NET SDK sends for CreateSubscriptionAsync(options, rule).
    const NET_CREATE_SUBSCRIPTION: &str = concat!(
        "<?xml version=\"1.0\" encoding=\"utf-8\"?>",
        "<entry xmlns=\"http://www.w3.org/2005/Atom\"><content type=\"application/xml\">",
        "<SubscriptionDescription xmlns=\"http://schemas.microsoft.com/netservices/2010/10/servicebus/connect\">",
        "<LockDuration>PT30S</LockDuration><RequiresSession>false</RequiresSession>",
        "<DeadLetteringOnMessageExpiration>False</DeadLetteringOnMessageExpiration>",
        "<DeadLetteringOnFilterEvaluationExceptions>false</DeadLetteringOnFilterEvaluationExceptions>",
        "<DefaultRuleDescription>",
        "<Filter xmlns:p4=\"http://www.w3.org/2001/XMLSchema-instance\" p4:type=\"SqlFilter\">",
        "<SqlExpression>color = @c AND size &gt; 3</SqlExpression>",
        "<Parameters><KeyValueOfstringanyType><Key>@c</Key>",
        "<Value p4:type=\"l28:string\" xmlns:l28=\"http://www.w3.org/2001/XMLSchema\">blue</Value>",
        "</KeyValueOfstringanyType></Parameters></Filter>",
        "<Name>only-blue</Name></DefaultRuleDescription>",
        "<MaxDeliveryCount>5</MaxDeliveryCount><EnableBatchedOperations>true</EnableBatchedOperations>",
        "<Status>ReceiveDisabled</Status>",
        "<UserMetadata>hello</UserMetadata>",
        "</SubscriptionDescription></content></entry>"
    );

    #[test]
    fn parses_the_dotnet_create_subscription_body_with_a_default_rule() {
        assert_eq!(
            description_kind(NET_CREATE_SUBSCRIPTION),
            Some(EntityKind::Subscription)
        );
        let parsed =
            parse_entity(NET_CREATE_SUBSCRIPTION, EntityKind::Subscription).expect("parses");
        let p = parsed.props;
        assert_eq!(p.lock_duration, TimeSpan::from_secs(30));
        assert!(!p.dead_lettering_on_filter_evaluation_exceptions);
        assert_eq!(p.max_delivery_count, 5);
        assert_eq!(p.status, EntityStatus::ReceiveDisabled);
        assert_eq!(p.user_metadata.as_deref(), Some("hello"));
        let rule = parsed.default_rule.expect("default rule");
        assert_eq!(rule.name, "only-blue");
        assert_eq!(rule.action, None);
        match rule.filter {
            Filter::Sql(f) => {
                assert_eq!(f.expression, "color = @c AND size > 3");
                assert_eq!(f.compatibility_level, 20);
                assert_eq!(f.parameters.get("@c"), Some(&Value::String("blue".into())));
            }
            other => panic!("unexpected filter {other:?}"),
        }
    }

    /// The shape azure-servicebus (Python) sends for create_rule with a CorrelationRuleFilter
    /// carrying typed properties and a SqlRuleAction with a parameter.
    const PY_CREATE_CORRELATION_RULE: &str = concat!(
        "<?xml version='1.0' encoding='utf-8'?>\n",
        "<ns0:entry xmlns:ns0=\"http://www.w3.org/2005/Atom\" ",
        "xmlns=\"http://schemas.microsoft.com/netservices/2010/10/servicebus/connect\" ",
        "xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\">",
        "<ns0:content type=\"application/xml\"><RuleDescription>",
        "<Filter xsi:type=\"CorrelationFilter\"><CorrelationId>cid-1</CorrelationId>",
        "<Label>invoice</Label><ContentType>application/json</ContentType>",
        "<Properties>",
        "<KeyValueOfstringanyType><Key>k_str</Key><Value xmlns:d6p1=\"http://www.w3.org/2001/XMLSchema\" xsi:type=\"d6p1:string\">str1</Value></KeyValueOfstringanyType>",
        "<KeyValueOfstringanyType><Key>k_int</Key><Value xmlns:d6p1=\"http://www.w3.org/2001/XMLSchema\" xsi:type=\"d6p1:int\">2</Value></KeyValueOfstringanyType>",
        "<KeyValueOfstringanyType><Key>k_long</Key><Value xmlns:d6p1=\"http://www.w3.org/2001/XMLSchema\" xsi:type=\"d6p1:long\">2147483650</Value></KeyValueOfstringanyType>",
        "<KeyValueOfstringanyType><Key>k_bool</Key><Value xmlns:d6p1=\"http://www.w3.org/2001/XMLSchema\" xsi:type=\"d6p1:boolean\">false</Value></KeyValueOfstringanyType>",
        "<KeyValueOfstringanyType><Key>k_double</Key><Value xmlns:d6p1=\"http://www.w3.org/2001/XMLSchema\" xsi:type=\"d6p1:double\">1.5</Value></KeyValueOfstringanyType>",
        "<KeyValueOfstringanyType><Key>k_date</Key><Value xmlns:d6p1=\"http://www.w3.org/2001/XMLSchema\" xsi:type=\"d6p1:dateTime\">2020-07-05T11:12:13</Value></KeyValueOfstringanyType>",
        "<KeyValueOfstringanyType><Key>k_dur</Key><Value xmlns:d6p1=\"http://www.w3.org/2001/XMLSchema\" xsi:type=\"d6p1:duration\">P1DT2H3M</Value></KeyValueOfstringanyType>",
        "</Properties></Filter>",
        "<Action xsi:type=\"SqlRuleAction\"><SqlExpression>SET Priority = @param</SqlExpression>",
        "<CompatibilityLevel>20</CompatibilityLevel><Parameters><KeyValueOfstringanyType>",
        "<Key>@param</Key><Value xmlns:d6p1=\"http://www.w3.org/2001/XMLSchema\" xsi:type=\"d6p1:int\">7</Value>",
        "</KeyValueOfstringanyType></Parameters></Action>",
        "<Name>ignored-body-name</Name></RuleDescription></ns0:content></ns0:entry>"
    );

    #[test]
    fn parses_the_python_create_rule_body_with_a_correlation_filter() {
        let rule = parse_rule(PY_CREATE_CORRELATION_RULE, "rule1", T0).expect("parses");
        assert_eq!(rule.name, "rule1");
        assert_eq!(rule.created_at, T0);
        let Filter::Correlation(c) = &rule.filter else {
            panic!("unexpected filter {:?}", rule.filter)
        };
        assert_eq!(c.correlation_id.as_deref(), Some("cid-1"));
        assert_eq!(c.label.as_deref(), Some("invoice"));
        assert_eq!(c.content_type.as_deref(), Some("application/json"));
        assert_eq!(c.message_id, None);
        let props = &c.properties;
        assert_eq!(props["k_str"], Value::String("str1".into()));
        assert_eq!(props["k_int"], Value::Int(2));
        assert_eq!(props["k_long"], Value::Int(2_147_483_650));
        assert_eq!(props["k_bool"], Value::Bool(false));
        assert_eq!(props["k_double"], Value::Double(1.5));
        assert_eq!(props["k_date"], Value::DateTime(1_593_947_533_000));
        assert_eq!(props["k_dur"], Value::String("P1DT2H3M".into()));
        let action = rule.action.as_ref().expect("action");
        assert_eq!(action.expression, "SET Priority = @param");
        assert_eq!(action.compatibility_level, 20);
        assert_eq!(action.parameters["@param"], Value::Int(7));
    }

    /// The Python shape for a SqlRuleFilter with parameters and no action.
    const PY_CREATE_SQL_RULE: &str = concat!(
        "<?xml version='1.0' encoding='utf-8'?>\n",
        "<ns0:entry xmlns:ns0=\"http://www.w3.org/2005/Atom\" ",
        "xmlns=\"http://schemas.microsoft.com/netservices/2010/10/servicebus/connect\" ",
        "xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\">",
        "<ns0:content type=\"application/xml\"><RuleDescription>",
        "<Filter xsi:type=\"SqlFilter\"><SqlExpression>Priority = @param1 AND x &lt; @param2</SqlExpression>",
        "<CompatibilityLevel>20</CompatibilityLevel><Parameters>",
        "<KeyValueOfstringanyType><Key>@param1</Key><Value xmlns:d6p1=\"http://www.w3.org/2001/XMLSchema\" xsi:type=\"d6p1:string\">str1</Value></KeyValueOfstringanyType>",
        "<KeyValueOfstringanyType><Key>@param2</Key><Value xmlns:d6p1=\"http://www.w3.org/2001/XMLSchema\" xsi:type=\"d6p1:long\">-12</Value></KeyValueOfstringanyType>",
        "</Parameters></Filter><Action xsi:type=\"EmptyRuleAction\" />",
        "<Name>test_rule_2</Name></RuleDescription></ns0:content></ns0:entry>"
    );

    #[test]
    fn parses_the_python_create_rule_body_with_a_sql_filter() {
        let rule = parse_rule(PY_CREATE_SQL_RULE, "test_rule_2", T0).expect("parses");
        assert_eq!(rule.action, None);
        let Filter::Sql(f) = &rule.filter else {
            panic!("unexpected filter {:?}", rule.filter)
        };
        assert_eq!(f.expression, "Priority = @param1 AND x < @param2");
        assert_eq!(f.parameters["@param1"], Value::String("str1".into()));
        assert_eq!(f.parameters["@param2"], Value::Int(-12));
    }

    #[test]
    fn parses_true_false_and_untyped_filters() {
        let body = |filter: &str| {
            format!(
                "<entry xmlns=\"{ATOM_NS}\"><content type=\"application/xml\"><RuleDescription xmlns=\"{SB_NS}\" xmlns:i=\"{XSI_NS}\">{filter}<Name>r</Name></RuleDescription></content></entry>"
            )
        };
        let parse = |f: &str| parse_rule(&body(f), "r", 0).expect("parses").filter;
        assert_eq!(
            parse("<Filter i:type=\"TrueFilter\"><SqlExpression>1=1</SqlExpression><CompatibilityLevel>20</CompatibilityLevel><RequiresPreprocessing>true</RequiresPreprocessing></Filter>"),
            Filter::True
        );
        assert_eq!(
            parse("<Filter i:type=\"FalseFilter\"><SqlExpression>1=0</SqlExpression></Filter>"),
            Filter::False
        );
        assert_eq!(parse(""), Filter::True);
        assert!(matches!(
            parse("<Filter><SqlExpression>a = 1</SqlExpression></Filter>"),
            Filter::Sql(_)
        ));
        assert!(matches!(
            parse("<Filter><To>x</To></Filter>"),
            Filter::Correlation(_)
        ));
    }

    fn sample_rules() -> Vec<Rule> {
        let mut props = BTreeMap::new();
        props.insert("s".to_string(), Value::String("a<b>&\"c\"".into()));
        props.insert("i".to_string(), Value::Int(-5));
        props.insert("l".to_string(), Value::Int(9_000_000_000));
        props.insert("d".to_string(), Value::Double(2.25));
        props.insert("b".to_string(), Value::Bool(true));
        props.insert("t".to_string(), Value::DateTime(T0));
        props.insert("n".to_string(), Value::Null);
        vec![
            Rule::default_rule(T0),
            Rule {
                name: "never".into(),
                filter: Filter::False,
                action: None,
                created_at: T0,
            },
            Rule {
                name: "sql".into(),
                filter: Filter::Sql(SqlFilterDef {
                    expression: "color = 'red' AND size >= @min OR x <> 'a&b'".into(),
                    parameters: props.clone(),
                    compatibility_level: 20,
                }),
                action: Some(SqlAction {
                    expression: "SET sys.Label = 'x'; SET y = @p".into(),
                    parameters: props.clone(),
                    compatibility_level: 20,
                }),
                created_at: T0,
            },
            Rule {
                name: "corr".into(),
                filter: Filter::Correlation(CorrelationFilter {
                    correlation_id: Some("c".into()),
                    message_id: Some("m".into()),
                    to: Some("t".into()),
                    reply_to: Some("r".into()),
                    label: Some("l".into()),
                    session_id: Some("s".into()),
                    reply_to_session_id: Some("rs".into()),
                    content_type: Some("ct".into()),
                    properties: props,
                }),
                action: None,
                created_at: T0,
            },
            Rule {
                name: "corr-empty".into(),
                filter: Filter::Correlation(CorrelationFilter::default()),
                action: None,
                created_at: T0,
            },
        ]
    }

    #[test]
    fn rules_round_trip_render_then_parse() {
        for rule in sample_rules() {
            let xml = rule_entry(&rule, "events", "audit", BASE);
            let parsed = parse_rule(&xml, &rule.name, rule.created_at).expect("parses");
            assert_eq!(parsed, rule, "{xml}");
        }
    }

    #[test]
    fn rule_entry_has_the_service_shape() {
        let rules = sample_rules();
        let xml = rule_entry(&rules[0], "events", "audit", BASE);
        assert!(xml.contains("<id>http://localhost:5300/events/Subscriptions/audit/Rules/$Default?api-version=2021-05</id>"));
        assert!(xml.contains("<title type=\"text\">$Default</title>"));
        assert!(xml.contains("<RuleDescription xmlns=\"http://schemas.microsoft.com/netservices/2010/10/servicebus/connect\" xmlns:i=\"http://www.w3.org/2001/XMLSchema-instance\"><Filter i:type=\"TrueFilter\"><SqlExpression>1=1</SqlExpression><CompatibilityLevel>20</CompatibilityLevel></Filter><Action i:type=\"EmptyRuleAction\"/><CreatedAt>2025-11-25T19:17:50.1230000Z</CreatedAt><Name>$Default</Name></RuleDescription>"));
        let xml = rule_entry(&rules[3], "events", "audit", BASE);
        assert!(xml.contains("<KeyValueOfstringanyType><Key>i</Key><Value i:type=\"d6p1:int\" xmlns:d6p1=\"http://www.w3.org/2001/XMLSchema\">-5</Value></KeyValueOfstringanyType>"));
        assert!(xml.contains("<Value i:type=\"d6p1:long\" xmlns:d6p1=\"http://www.w3.org/2001/XMLSchema\">9000000000</Value>"));
        assert!(xml.contains("<Value i:type=\"d6p1:string\" xmlns:d6p1=\"http://www.w3.org/2001/XMLSchema\">a&lt;b&gt;&amp;&quot;c&quot;</Value>"));
        assert_in_order(
            &xml,
            &[
                "<Filter i:type=\"CorrelationFilter\">",
                "<CorrelationId>",
                "<MessageId>",
                "<To>",
                "<ReplyTo>",
                "<Label>",
                "<SessionId>",
                "<ReplyToSessionId>",
                "<ContentType>",
                "<Properties>",
                "<Action i:type=\"EmptyRuleAction\"/>",
                "<CreatedAt>",
                "<Name>",
            ],
        );
        let xml = rule_entry(&rules[2], "events", "audit", BASE);
        assert!(xml.contains("<SqlExpression>color = &apos;red&apos; AND size &gt;= @min OR x &lt;&gt; &apos;a&amp;b&apos;</SqlExpression>"));
        assert!(xml.contains("<Action i:type=\"SqlRuleAction\"><SqlExpression>"));
    }

    #[test]
    fn feeds_list_every_entry() {
        let infos = vec![
            info(EntityKind::Queue, EntityProps::default()),
            EntityInfo {
                name: "second & <q>".into(),
                ..info(EntityKind::Queue, custom_props(EntityKind::Queue))
            },
        ];
        let xml = entity_feed(
            "Queues",
            &infos,
            BASE,
            "$Resources/queues?$skip=0&$top=100&api-version=2021-05",
            T0,
        );
        assert!(xml.starts_with("<?xml version=\"1.0\" encoding=\"utf-8\"?><feed xmlns=\"http://www.w3.org/2005/Atom\"><title type=\"text\">Queues</title><id>http://localhost:5300/$Resources/queues?$skip=0&amp;$top=100&amp;api-version=2021-05</id><updated>2025-11-25T19:17:50Z</updated><link rel=\"self\" href=\"http://localhost:5300/$Resources/queues?$skip=0&amp;$top=100&amp;api-version=2021-05\"/><entry>"));
        let root = parse_document(&xml).expect("well-formed");
        assert_eq!(root.name, "feed");
        let entries: Vec<&Node> = root.children.iter().filter(|c| c.name == "entry").collect();
        assert_eq!(entries.len(), 2);
        let titles: Vec<&str> = entries
            .iter()
            .filter_map(|e| e.child("title").map(|t| t.text.as_str()))
            .collect();
        assert_eq!(titles, vec!["orders", "second & <q>"]);
        for e in &entries {
            let desc = find_description(e).expect("description");
            assert_eq!(desc.name, "QueueDescription");
        }

        let empty = entity_feed("Topics", &[], BASE, "/$Resources/topics", T0);
        let root = parse_document(&empty).expect("well-formed");
        assert!(root.children.iter().all(|c| c.name != "entry"));

        let xml = rule_feed(&sample_rules(), "events", "audit", BASE, T0);
        let root = parse_document(&xml).expect("well-formed");
        let entries: Vec<&Node> = root.children.iter().filter(|c| c.name == "entry").collect();
        assert_eq!(entries.len(), sample_rules().len());
        assert!(xml.contains(
            "<id>http://localhost:5300/events/Subscriptions/audit/Rules?api-version=2021-05</id>"
        ));
    }

    #[test]
    fn namespace_info_and_error_body() {
        let xml = namespace_info("localzure", T0, BASE);
        assert!(xml.contains("<id>http://localhost:5300/$namespaceinfo?api-version=2021-05</id>"));
        assert!(xml.contains("<content type=\"application/xml\"><NamespaceInfo xmlns=\"http://schemas.microsoft.com/netservices/2010/10/servicebus/connect\" xmlns:i=\"http://www.w3.org/2001/XMLSchema-instance\"><CreatedTime>2025-11-25T19:17:50.1230000Z</CreatedTime><MessagingSKU>Standard</MessagingSKU><ModifiedTime>2025-11-25T19:17:50.1230000Z</ModifiedTime><Name>localzure</Name><NamespaceType>Messaging</NamespaceType></NamespaceInfo></content>"));
        parse_document(&xml).expect("well-formed");
        assert_eq!(
            error_body(404, "Entity 'a<b>' not found & gone"),
            "<Error><Code>404</Code><Detail>Entity &apos;a&lt;b&gt;&apos; not found &amp; gone</Detail></Error>"
        );
    }

    fn queue_body(inner: &str) -> String {
        format!(
            "<entry xmlns=\"{ATOM_NS}\"><content type=\"application/xml\"><QueueDescription xmlns=\"{SB_NS}\">{inner}</QueueDescription></content></entry>"
        )
    }

    fn queue_error(inner: &str) -> String {
        match parse_entity(&queue_body(inner), EntityKind::Queue) {
            Ok(p) => panic!("expected an error for {inner}, got {p:?}"),
            Err(e) => e.0,
        }
    }

    #[test]
    fn bad_values_name_the_element() {
        let e = queue_error("<MaxDeliveryCount>abc</MaxDeliveryCount>");
        assert!(e.contains("MaxDeliveryCount") && e.contains("abc"), "{e}");
        let e = queue_error("<LockDuration>1 minute</LockDuration>");
        assert!(e.contains("LockDuration") && e.contains("1 minute"), "{e}");
        let e = queue_error(
            "<DefaultMessageTimeToLive>P99999999999999999999D</DefaultMessageTimeToLive>",
        );
        assert!(e.contains("DefaultMessageTimeToLive"), "{e}");
        let e = queue_error("<RequiresSession>yes</RequiresSession>");
        assert!(e.contains("RequiresSession") && e.contains("yes"), "{e}");
        let e = queue_error("<Status>Sleeping</Status>");
        assert!(e.contains("Status") && e.contains("Sleeping"), "{e}");
        let e = queue_error("<MaxSizeInMegabytes>1.5</MaxSizeInMegabytes>");
        assert!(e.contains("MaxSizeInMegabytes"), "{e}");
        let e = queue_error("<ForwardTo>sb://host/</ForwardTo>");
        assert!(e.contains("ForwardTo"), "{e}");
        let e = queue_error("<MaxDeliveryCount>99999999999</MaxDeliveryCount>");
        assert!(e.contains("MaxDeliveryCount"), "{e}");
    }

    #[test]
    fn malformed_documents_are_errors() {
        for bad in [
            "",
            "   ",
            "not xml at all",
            "<entry>",
            "<entry></content>",
            "<a></a><b></b>",
            "<entry>&bogus;</entry>",
            "<entry a=\"1\" a=\"2\"/>",
            "<entry><content><QueueDescription><LockDuration>PT1M</LockDuration></content></entry>",
        ] {
            assert!(parse_entity(bad, EntityKind::Queue).is_err(), "{bad:?}");
            assert!(parse_rule(bad, "r", 0).is_err(), "{bad:?}");
            assert_eq!(description_kind(bad), None, "{bad:?}");
        }
        let deep = format!("{}{}", "<a>".repeat(10_000), "</a>".repeat(10_000));
        let e = parse_entity(&deep, EntityKind::Queue).expect_err("too deep");
        assert!(e.0.contains("nested"), "{e}");
        let wrong = parse_entity(&queue_body(""), EntityKind::Subscription).expect_err("wrong");
        assert!(wrong.0.contains("SubscriptionDescription"), "{wrong}");
    }

    #[test]
    fn bad_rules_are_errors() {
        let body = |inner: &str| {
            format!(
                "<entry xmlns=\"{ATOM_NS}\"><content><RuleDescription xmlns=\"{SB_NS}\" xmlns:i=\"{XSI_NS}\">{inner}</RuleDescription></content></entry>"
            )
        };
        for (inner, needle) in [
            ("<Filter i:type=\"MagicFilter\"/>", "MagicFilter"),
            ("<Filter i:type=\"SqlFilter\"><SqlExpression> </SqlExpression></Filter>", "SqlExpression"),
            ("<Action i:type=\"SqlRuleAction\"/>", "SqlExpression"),
            ("<Action i:type=\"OtherAction\"/>", "OtherAction"),
            (
                "<Filter i:type=\"CorrelationFilter\"><Properties><KeyValueOfstringanyType><Key>k</Key><Value i:type=\"x:int\" xmlns:x=\"http://www.w3.org/2001/XMLSchema\">nope</Value></KeyValueOfstringanyType></Properties></Filter>",
                "nope",
            ),
            (
                "<Filter i:type=\"SqlFilter\"><SqlExpression>a=1</SqlExpression><CompatibilityLevel>x</CompatibilityLevel></Filter>",
                "CompatibilityLevel",
            ),
            (
                "<Filter i:type=\"CorrelationFilter\"><Properties><KeyValueOfstringanyType><Value>v</Value></KeyValueOfstringanyType></Properties></Filter>",
                "Key",
            ),
        ] {
            let e = parse_rule(&body(inner), "r", 0).expect_err(inner);
            assert!(e.0.contains(needle), "{inner}: {e}");
        }
        let e = parse_rule(&queue_body(""), "r", 0).expect_err("not a rule");
        assert!(e.0.contains("RuleDescription"), "{e}");
    }

    #[test]
    fn text_escapes_and_cdata_and_char_refs_are_decoded() {
        let p = parse_entity(
            &queue_body("<UserMetadata>a &amp; b &#x41;&#66; <![CDATA[<raw>&]]></UserMetadata>"),
            EntityKind::Queue,
        )
        .expect("parses")
        .props;
        assert_eq!(p.user_metadata.as_deref(), Some("a & b AB <raw>&"));
    }

    proptest! {
        #[test]
        fn arbitrary_strings_never_panic(s in ".{0,400}") {
            let _ = parse_entity(&s, EntityKind::Queue);
            let _ = parse_entity(&s, EntityKind::Subscription);
            let _ = parse_rule(&s, "r", 0);
            let _ = description_kind(&s);
        }

        #[test]
        fn arbitrary_element_values_never_panic(v in ".{0,80}", pick in 0usize..8) {
            let tags = [
                "LockDuration", "MaxDeliveryCount", "Status", "ForwardTo",
                "RequiresSession", "MaxSizeInMegabytes", "AutoDeleteOnIdle", "UserMetadata",
            ];
            let tag = tags[pick];
            let body = queue_body(&format!("<{tag}>{}</{tag}>", esc(&v)));
            let _ = parse_entity(&body, EntityKind::Queue);
            let rule = format!(
                "<entry><content><RuleDescription xmlns:i=\"{XSI_NS}\"><Filter i:type=\"CorrelationFilter\"><Properties><KeyValueOfstringanyType><Key>k</Key><Value i:type=\"d:{tag}\">{}</Value></KeyValueOfstringanyType></Properties></Filter></RuleDescription></content></entry>",
                esc(&v)
            );
            let _ = parse_rule(&rule, "r", 0);
        }

        #[test]
        fn durations_never_panic_and_round_trip(ticks in 0i64..i64::MAX, junk in "[PTDHMS0-9.]{0,40}") {
            let _ = parse_duration_text(&junk);
            let ts = TimeSpan(ticks);
            let back = parse_duration_text(&ts.to_xsd());
            if ticks >= INFINITE_THRESHOLD_TICKS {
                prop_assert_eq!(back, Some(TimeSpan::MAX));
            } else {
                prop_assert_eq!(back, Some(ts));
            }
        }

        #[test]
        fn user_metadata_round_trips(m in "[^\u{0}-\u{8}\u{b}\u{c}\u{e}-\u{1f}\u{fffe}\u{ffff}\r]{0,60}") {
            let props = EntityProps { user_metadata: Some(m.clone()), ..EntityProps::default() };
            let xml = entity_entry(&info(EntityKind::Queue, props), BASE);
            let parsed = parse_entity(&xml, EntityKind::Queue).expect("parses");
            prop_assert_eq!(parsed.props.user_metadata, Some(m));
        }
    }
}
