//! Tests of the ATOM format: service shapes, SDK bodies, round trips and malformed input.

use super::read::{find_description, parse_document, Node};
use super::values::{parse_duration_text, INFINITE_THRESHOLD_TICKS};
use super::write::esc;
use super::*;
use crate::broker::entity::{
    CorrelationFilter, CountDetails, EntityInfo, EntityStatus, EntityTimes, Filter, SqlAction,
    SqlFilterDef,
};
use crate::broker::value::Value;
use crate::time::{Millis, TimeSpan};
use proptest::prelude::*;
use std::collections::BTreeMap;

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
        assert_eq!(description_kind(&xml), Ok(Some(kind)), "{xml}");
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
    assert!(xml.starts_with(
        "<?xml version=\"1.0\" encoding=\"utf-8\"?><entry xmlns=\"http://www.w3.org/2005/Atom\">"
    ));
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
    assert!(xml
        .contains("<id>http://localhost:5300/events/Subscriptions/audit?api-version=2021-05</id>"));
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
    assert_eq!(
        description_kind(PY_CREATE_QUEUE),
        Ok(Some(EntityKind::Queue))
    );
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
        assert_eq!(description_kind(&xml), Ok(Some(kind)));
        let parsed = parse_entity(&xml, kind).expect("parses");
        assert_eq!(parsed.props, EntityProps::default());
    }
    assert_eq!(description_kind("<entry><content/></entry>"), Ok(None));
    assert!(description_kind("not xml").is_err());
    assert_eq!(
        description_kind(&format!(
            "<entry xmlns=\"{ATOM_NS}\"><content><RuleDescription xmlns=\"{SB_NS}\"/></content></entry>"
        )),
        Ok(None)
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
        Ok(Some(EntityKind::Subscription))
    );
    let parsed = parse_entity(NET_CREATE_SUBSCRIPTION, EntityKind::Subscription).expect("parses");
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
    let e =
        queue_error("<DefaultMessageTimeToLive>P99999999999999999999D</DefaultMessageTimeToLive>");
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
        assert!(description_kind(bad).is_err(), "{bad:?}");
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

/// An element with `n` distinct attributes `a0=""`, `a1=""`, … (base-36 names keep it short).
fn many_attributes(n: usize) -> String {
    let mut out = String::from("<entry xmlns=\"http://www.w3.org/2005/Atom\"");
    for i in 0..n {
        let mut name = String::new();
        let mut k = i;
        loop {
            name.insert(0, char::from_digit((k % 36) as u32, 36).unwrap_or('0'));
            k /= 36;
            if k == 0 {
                break;
            }
        }
        out.push_str(&format!(" a{name}=\"\""));
    }
    out.push_str("/>");
    out
}

#[test]
fn attributes_per_element_are_bounded_and_read_linearly() {
    // 63 attributes plus xmlns is the most accepted.
    assert!(description_kind(&many_attributes(63)).is_ok());
    let started = std::time::Instant::now();
    let e = description_kind(&many_attributes(100_000)).unwrap_err();
    assert!(e.0.contains("more than 64 attributes"), "{e}");
    assert!(started.elapsed() < std::time::Duration::from_secs(2));
    // Duplicates are still refused (the check runs on at most 64 keys).
    let e = description_kind("<entry a=\"1\" b=\"2\" a=\"3\"/>").unwrap_err();
    assert!(e.0.contains("duplicate attribute a"), "{e}");
}

#[test]
fn elements_per_document_are_bounded() {
    let ok = format!("<entry>{}</entry>", "<x/>".repeat(9_999));
    assert!(description_kind(&ok).is_ok());
    let too_many = format!("<entry>{}</entry>", "<x/>".repeat(10_000));
    let e = description_kind(&too_many).unwrap_err();
    assert!(e.0.contains("more than 10000 elements"), "{e}");
}
