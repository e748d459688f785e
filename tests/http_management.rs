//! The ATOM management API over HTTP: queues, topics, subscriptions, rules, lists, namespace
//! info, name rules, malformed bodies, runtime counts and property round trips.

mod common;

use common::*;
use reqwest::Method;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Infinite TimeSpan as Azure writes it.
const INFINITE: &str = "P10675199DT2H48M5.4775807S";

/// Sends a request byte for byte (no URL normalisation, unlike reqwest), returning the status
/// and body. Used for paths such as `/%2e%2e` that a URL library would rewrite.
async fn raw_request(
    server: &TestServer,
    method: &str,
    raw_path: &str,
    body: &[u8],
) -> (u16, String) {
    let addr = server.base_url.trim_start_matches("http://").to_string();
    let mut stream = tokio::net::TcpStream::connect(&addr)
        .await
        .expect("connect");
    let head = format!(
        "{method} {raw_path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: {ATOM_CT}\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await.expect("write head");
    stream.write_all(body).await.expect("write body");
    let mut buf = Vec::new();
    stream.read_to_end(&mut buf).await.expect("read answer");
    let text = String::from_utf8_lossy(&buf).into_owned();
    let status: u16 = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {text:?}"));
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

fn assert_entry(body: &str, description: &str, title: &str) {
    assert!(body.contains("<entry"), "not an Atom entry: {body}");
    assert_eq!(xml_get(body, "title"), title, "{body}");
    assert!(
        !xml_all(body, description).is_empty() || body.contains(&format!("<{description}")),
        "no {description} in {body}"
    );
    assert!(
        body.contains(SB_NS),
        "description not in the connect namespace: {body}"
    );
}

// ----- queues --------------------------------------------------------------------------------

#[tokio::test]
async fn queue_crud() {
    let s = TestServer::start().await;

    let created = s.put_atom("orders", &queue_xml(""), false).await;
    assert_eq!(created.status, 201, "{}", created.body);
    assert!(
        created
            .header("content-type")
            .is_some_and(|c| c.starts_with("application/atom+xml")),
        "{:?}",
        created.headers
    );
    assert_entry(&created.body, "QueueDescription", "orders");
    // Azure's defaults.
    assert_eq!(xml_get(&created.body, "LockDuration"), "PT1M");
    assert_eq!(xml_get(&created.body, "MaxDeliveryCount"), "10");
    assert_eq!(xml_get(&created.body, "DefaultMessageTimeToLive"), INFINITE);
    assert_eq!(xml_get(&created.body, "Status"), "Active");
    assert_eq!(xml_get(&created.body, "MessageCount"), "0");
    assert!(xml_text(&created.body, "CreatedAt").is_some());
    assert!(xml_text(&created.body, "SizeInBytes").is_some());

    let got = s.get("orders").await;
    assert_eq!(got.status, 200, "{}", got.body);
    assert_entry(&got.body, "QueueDescription", "orders");

    // Names are case-insensitive.
    assert_eq!(s.get("ORDERS").await.status, 200);

    // Create of an existing queue: 409.
    let again = s.put_atom("orders", &queue_xml(""), false).await;
    assert_eq!(again.status, 409, "{}", again.body);
    assert!(again.body.contains("<Error>"), "{}", again.body);
    // Also when a topic of the same name is attempted.
    assert_eq!(
        s.put_atom("orders", &topic_xml(""), false).await.status,
        409
    );

    // Update with If-Match: *.
    let updated = s
        .put_atom(
            "orders",
            &queue_xml("<LockDuration>PT30S</LockDuration><MaxDeliveryCount>3</MaxDeliveryCount>"),
            true,
        )
        .await;
    assert_eq!(updated.status, 200, "{}", updated.body);
    assert_eq!(xml_get(&updated.body, "LockDuration"), "PT30S");
    assert_eq!(xml_get(&updated.body, "MaxDeliveryCount"), "3");
    let got = s.entity("orders").await;
    assert_eq!(xml_get(&got, "LockDuration"), "PT30S");
    assert_eq!(xml_get(&got, "MaxDeliveryCount"), "3");

    // Update of a missing queue: 404.
    assert_eq!(
        s.put_atom("nothere", &queue_xml(""), true).await.status,
        404
    );

    // Missing: 404 (management plane).
    let missing = s.get("nothere").await;
    assert_eq!(missing.status, 404, "{}", missing.body);
    assert!(missing.body.contains("<Error>"), "{}", missing.body);

    let deleted = s.delete("orders").await;
    assert_eq!(deleted.status, 200, "{}", deleted.body);
    assert_eq!(s.get("orders").await.status, 404);
    assert_eq!(s.delete("orders").await.status, 404);

    // The name is free again.
    s.create_queue("orders", "").await;
    s.stop().await;
}

#[tokio::test]
async fn queue_names_with_slashes_work() {
    let s = TestServer::start().await;
    let body = s.create_queue("sales/eu/orders", "").await;
    assert_entry(&body, "QueueDescription", "sales/eu/orders");
    assert_eq!(s.get("sales/eu/orders").await.status, 200);
    s.send_text("sales/eu/orders", "hello").await;
    let m = s.take_one("sales/eu/orders").await;
    assert_eq!(m.body, "hello");
    assert_eq!(s.delete("sales/eu/orders").await.status, 200);
    assert_eq!(s.get("sales/eu/orders").await.status, 404);
    s.stop().await;
}

#[tokio::test]
async fn python_style_prefixed_entry_is_accepted() {
    let s = TestServer::start().await;
    // The Python SDK writes `ns0:entry` with the description namespace as the default.
    let body = format!(
        "<?xml version='1.0' encoding='utf-8'?>\
         <ns0:entry xmlns:ns0=\"http://www.w3.org/2005/Atom\"><ns0:content type=\"application/xml\">\
         <QueueDescription xmlns=\"{SB_NS}\" xmlns:i=\"{XSI_NS}\">\
         <MaxDeliveryCount>7</MaxDeliveryCount></QueueDescription></ns0:content></ns0:entry>"
    );
    let r = s.put_atom("py", &body, false).await;
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(xml_get(&r.body, "MaxDeliveryCount"), "7");
    s.stop().await;
}

// ----- topics --------------------------------------------------------------------------------

#[tokio::test]
async fn topic_crud() {
    let s = TestServer::start().await;
    let created = s.put_atom("events", &topic_xml(""), false).await;
    assert_eq!(created.status, 201, "{}", created.body);
    assert_entry(&created.body, "TopicDescription", "events");
    assert_eq!(xml_get(&created.body, "SubscriptionCount"), "0");

    let got = s.get("events").await;
    assert_eq!(got.status, 200);
    assert_entry(&got.body, "TopicDescription", "events");

    assert_eq!(
        s.put_atom("events", &topic_xml(""), false).await.status,
        409
    );
    assert_eq!(
        s.put_atom("events", &queue_xml(""), false).await.status,
        409
    );

    let updated = s
        .put_atom(
            "events",
            &topic_xml("<DefaultMessageTimeToLive>PT1H</DefaultMessageTimeToLive>"),
            true,
        )
        .await;
    assert_eq!(updated.status, 200, "{}", updated.body);
    assert_eq!(xml_get(&updated.body, "DefaultMessageTimeToLive"), "PT1H");
    assert_eq!(
        xml_get(&s.entity("events").await, "DefaultMessageTimeToLive"),
        "PT1H"
    );

    // Updating a topic as a queue is a 404, as in Azure.
    assert_eq!(s.put_atom("events", &queue_xml(""), true).await.status, 404);

    s.create_subscription("events", "s1", "").await;
    assert_eq!(xml_get(&s.entity("events").await, "SubscriptionCount"), "1");

    assert_eq!(s.delete("events").await.status, 200);
    assert_eq!(s.get("events").await.status, 404);
    // Its subscriptions went with it.
    assert_eq!(s.get("events/Subscriptions/s1").await.status, 404);
    assert_eq!(s.delete("events").await.status, 404);
    s.stop().await;
}

// ----- subscriptions -------------------------------------------------------------------------

#[tokio::test]
async fn subscription_crud_and_default_rule() {
    let s = TestServer::start().await;
    s.create_topic("t", "").await;

    let created = s
        .put_atom("t/Subscriptions/sub1", &subscription_xml(""), false)
        .await;
    assert_eq!(created.status, 201, "{}", created.body);
    assert_entry(&created.body, "SubscriptionDescription", "sub1");
    assert_eq!(xml_get(&created.body, "LockDuration"), "PT1M");
    assert_eq!(xml_get(&created.body, "MaxDeliveryCount"), "10");

    let got = s.get("t/Subscriptions/sub1").await;
    assert_eq!(got.status, 200, "{}", got.body);
    assert_entry(&got.body, "SubscriptionDescription", "sub1");
    // Path words are case-insensitive.
    assert_eq!(s.get("t/subscriptions/SUB1").await.status, 200);

    // The $Default rule with a TrueFilter.
    let rule = s.get("t/Subscriptions/sub1/Rules/$Default").await;
    assert_eq!(rule.status, 200, "{}", rule.body);
    assert_eq!(xml_get(&rule.body, "Name"), "$Default");
    assert!(
        rule.body.contains("i:type=\"TrueFilter\""),
        "not a TrueFilter: {}",
        rule.body
    );
    let rules = s.get("t/Subscriptions/sub1/Rules").await;
    assert_eq!(rules.status, 200);
    assert_eq!(feed_titles(&rules.body), vec!["$Default"]);

    assert_eq!(
        s.put_atom("t/Subscriptions/sub1", &subscription_xml(""), false)
            .await
            .status,
        409
    );
    let updated = s
        .put_atom(
            "t/Subscriptions/sub1",
            &subscription_xml(
                "<LockDuration>PT45S</LockDuration><MaxDeliveryCount>4</MaxDeliveryCount>",
            ),
            true,
        )
        .await;
    assert_eq!(updated.status, 200, "{}", updated.body);
    assert_eq!(xml_get(&updated.body, "LockDuration"), "PT45S");
    assert_eq!(
        xml_get(&s.entity("t/Subscriptions/sub1").await, "MaxDeliveryCount"),
        "4"
    );
    // Update keeps the rules.
    assert_eq!(
        s.get("t/Subscriptions/sub1/Rules/$Default").await.status,
        200
    );

    assert_eq!(s.get("t/Subscriptions/nope").await.status, 404);
    assert_eq!(
        s.put_atom("t/Subscriptions/nope", &subscription_xml(""), true)
            .await
            .status,
        404
    );
    // Subscription of a missing topic: 404.
    assert_eq!(
        s.put_atom("missing/Subscriptions/s", &subscription_xml(""), false)
            .await
            .status,
        404
    );
    assert_eq!(s.get("missing/Subscriptions").await.status, 404);

    assert_eq!(s.delete("t/Subscriptions/sub1").await.status, 200);
    assert_eq!(s.get("t/Subscriptions/sub1").await.status, 404);
    assert_eq!(s.delete("t/Subscriptions/sub1").await.status, 404);
    s.stop().await;
}

#[tokio::test]
async fn subscription_with_default_rule_description() {
    let s = TestServer::start().await;
    s.create_topic("t", "").await;
    let filter = correlation_filter(&[("Label", "red")], &[]);
    let body = subscription_xml(&format!(
        "<DefaultRuleDescription>{filter}<Name>onlyred</Name></DefaultRuleDescription>"
    ));
    let r = s.put_atom("t/Subscriptions/s", &body, false).await;
    assert_eq!(r.status, 201, "{}", r.body);
    let rules = s.get("t/Subscriptions/s/Rules").await;
    assert_eq!(feed_titles(&rules.body), vec!["onlyred"], "{}", rules.body);
    s.send("t", "r", Some(json!({"Label": "red"})), &[]).await;
    s.send("t", "b", Some(json!({"Label": "blue"})), &[]).await;
    assert_eq!(s.take_one("t/Subscriptions/s").await.body, "r");
    s.assert_empty("t/Subscriptions/s").await;
    s.stop().await;
}

// ----- rules ---------------------------------------------------------------------------------

#[tokio::test]
async fn correlation_rule_crud() {
    let s = TestServer::start().await;
    s.create_topic("t", "").await;
    s.create_subscription("t", "s", "").await;

    let filter = correlation_filter(
        &[("CorrelationId", "abc"), ("Label", "l1")],
        &[("color", "string", "red"), ("size", "int", "3")],
    );
    let created = s.put_rule("t", "s", "corr", &filter).await;
    assert_eq!(created.status, 201, "{}", created.body);
    assert_eq!(xml_get(&created.body, "Name"), "corr");
    assert!(
        created.body.contains("CorrelationFilter"),
        "{}",
        created.body
    );

    let got = s.get("t/Subscriptions/s/Rules/corr").await;
    assert_eq!(got.status, 200, "{}", got.body);
    assert_eq!(xml_get(&got.body, "CorrelationId"), "abc");
    assert_eq!(xml_get(&got.body, "Label"), "l1");
    assert_eq!(xml_all(&got.body, "Key"), vec!["color", "size"]);
    assert_eq!(xml_all(&got.body, "Value"), vec!["red", "3"]);
    assert!(
        got.body.contains(":int\""),
        "typed value lost: {}",
        got.body
    );

    // Duplicate: 409; update with If-Match: 200.
    assert_eq!(s.put_rule("t", "s", "corr", &filter).await.status, 409);
    let updated = s
        .put_atom(
            "t/Subscriptions/s/Rules/corr",
            &rule_xml("corr", &correlation_filter(&[("Label", "l2")], &[])),
            true,
        )
        .await;
    assert_eq!(updated.status, 200, "{}", updated.body);
    let got = s.get("t/Subscriptions/s/Rules/corr").await;
    assert_eq!(xml_get(&got.body, "Label"), "l2");
    assert_eq!(xml_text(&got.body, "CorrelationId"), None);

    // False and true filters.
    s.create_rule(
        "t",
        "s",
        "never",
        "<Filter i:type=\"FalseFilter\"><SqlExpression>1=0</SqlExpression></Filter>",
    )
    .await;
    let never = s.get("t/Subscriptions/s/Rules/never").await;
    assert!(never.body.contains("FalseFilter"), "{}", never.body);

    // Missing rule: 404; missing subscription: 404.
    assert_eq!(s.get("t/Subscriptions/s/Rules/nope").await.status, 404);
    assert_eq!(s.delete("t/Subscriptions/s/Rules/nope").await.status, 404);
    assert_eq!(s.put_rule("t", "nosub", "r", &filter).await.status, 404);

    assert_eq!(s.delete("t/Subscriptions/s/Rules/corr").await.status, 200);
    assert_eq!(s.get("t/Subscriptions/s/Rules/corr").await.status, 404);
    s.stop().await;
}

#[tokio::test]
async fn sql_filter_rule_filters() {
    let s = TestServer::start().await;
    s.create_topic("t", "").await;
    s.create_subscription("t", "s", "").await;
    s.delete_rule("t", "s", "$Default").await;
    s.create_rule("t", "s", "sql", &sql_filter("color = 'red'"))
        .await;
    s.send("t", "red", None, &[("color", "\"red\"")]).await;
    s.send("t", "blue", None, &[("color", "\"blue\"")]).await;
    s.send("t", "none", None, &[]).await;
    assert_eq!(s.take_one("t/Subscriptions/s").await.body, "red");
    s.assert_empty("t/Subscriptions/s").await;
    s.stop().await;
}

#[tokio::test]
async fn sql_rule_action_runs_on_the_copy() {
    let s = TestServer::start().await;
    s.create_topic("t", "").await;
    s.create_subscription("t", "s", "").await;
    s.delete_rule("t", "s", "$Default").await;
    let body = "<Filter i:type=\"TrueFilter\"><SqlExpression>1=1</SqlExpression></Filter>\
                <Action i:type=\"SqlRuleAction\"><SqlExpression>SET stamped = 'yes'</SqlExpression>\
                <CompatibilityLevel>20</CompatibilityLevel></Action>";
    s.create_rule("t", "s", "act", body).await;
    s.send_text("t", "x").await;
    let m = s.take_one("t/Subscriptions/s").await;
    assert_eq!(m.header("stamped"), Some("\"yes\""), "the action ran");
    assert_eq!(m.header("RuleName"), Some("\"act\""));
    s.stop().await;
}

/// The `<Detail>` of a 400 answer to a rule PUT.
async fn rule_error(s: &TestServer, path: &str, body: &str, update: bool) -> String {
    let r = s.put_atom(path, body, update).await;
    assert_eq!(r.status, 400, "{path}: {}", r.body);
    xml_get(&r.body, "Detail")
}

#[tokio::test]
async fn sql_syntax_errors_are_400_with_line_column_and_token() {
    let s = TestServer::start().await;
    s.create_topic("t", "").await;
    s.create_subscription("t", "s", "").await;
    let path = "t/Subscriptions/s/Rules/r";
    // (filter, action, what the detail must contain)
    let cases: &[(&str, Option<&str>, &[&str])] = &[
        (
            "color = = 'red'",
            None,
            &[
                "There was an error parsing the SQL expression.",
                "[Token line=1, column=8, Token in error= =, Additional details= ",
                "position 8",
            ],
        ),
        (
            "a = 1 AND\n  b LIKE 'x' ESCAPE 'xy'",
            None,
            &["line=2, column=20", "Token in error= 'xy'"],
        ),
        (
            "color = 'red' AND",
            None,
            &["column=17", "Token in error= <end of expression>"],
        ),
        ("sys.Nope = 1", None, &["column=4", "Token in error= Nope"]),
        ("x = @missing", None, &["Token in error= @missing"]),
        ("a = 1 # 2", None, &["column=6", "Token in error= #"]),
        ("1=1", Some("SET x 1"), &["column=6", "Token in error= 1"]),
        (
            "1=1",
            Some("SET sys.SequenceNumber = 1"),
            &["Token in error= SequenceNumber"],
        ),
    ];
    for (filter, action, wants) in cases {
        let body = rule_xml(
            "r",
            &sql_rule_body(&xml_escape(filter), &[], action.map(xml_escape).as_deref()),
        );
        let detail = rule_error(&s, path, &body, false).await;
        for w in *wants {
            assert!(
                detail.contains(w),
                "{filter:?}/{action:?}: {w:?} not in {detail:?}"
            );
        }
    }
    // The service's length limit (1024 characters) on filter and action text.
    let long = format!("a = '{}'", "x".repeat(1019));
    let detail = rule_error(&s, path, &rule_xml("r", &sql_filter(&long)), false).await;
    assert!(
        detail.contains("1025") && detail.contains("maximum length of 1024"),
        "{detail}"
    );
    let long_action = rule_xml(
        "r",
        &sql_rule_body("1=1", &[], Some(&format!("SET {long}"))),
    );
    rule_error(&s, path, &long_action, false).await;
    assert_eq!(
        s.get(path).await.status,
        404,
        "a refused rule is not stored"
    );

    // An update to a broken expression is refused and the rule stays as it was.
    s.create_rule("t", "s", "r", &sql_filter("a = 1")).await;
    let detail = rule_error(&s, path, &rule_xml("r", &sql_filter("a = ")), true).await;
    assert!(detail.contains("column=4"), "{detail}");
    assert_eq!(xml_get(&s.get(path).await.body, "SqlExpression"), "a = 1");

    // A subscription whose DefaultRuleDescription does not compile is not created.
    let body = subscription_xml(&format!(
        "<DefaultRuleDescription>{}<Name>bad</Name></DefaultRuleDescription>",
        sql_filter("a IN ()")
    ));
    let r = s.put_atom("t/Subscriptions/s2", &body, false).await;
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(
        xml_get(&r.body, "Detail").contains("Token in error= )"),
        "{}",
        r.body
    );
    assert_eq!(s.get("t/Subscriptions/s2").await.status, 404);
    s.stop().await;
}

/// Escapes text for an XML element.
fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[tokio::test]
async fn sql_rule_with_parameters_round_trips_through_atom() {
    let s = TestServer::start().await;
    s.create_topic("t", "").await;
    s.create_subscription("t", "s", "").await;
    let filter = "color = @color AND qty &gt;= @min AND big &lt; @big AND ratio &gt; @ratio \
                  AND flag = @flag AND sys.EnqueuedTimeUtc &gt; @since AND note &lt;&gt; 'a&amp;b'";
    let params = [
        ("@color", "string", "red"),
        ("@min", "int", "10"),
        ("@big", "long", "2147483650"),
        ("@ratio", "double", "1.5"),
        ("@flag", "boolean", "true"),
        ("@since", "dateTime", "2020-07-05T11:12:13Z"),
    ];
    let body = sql_rule_body(filter, &params, Some("SET seen = @stamp; REMOVE secret"));
    // The action's parameters go inside its element, after the expression.
    let body = body.replace(
        "<CompatibilityLevel>20</CompatibilityLevel></Action>",
        &format!(
            "<CompatibilityLevel>20</CompatibilityLevel>{}</Action>",
            sql_parameters(&[("@stamp", "string", "yes")])
        ),
    );
    let created = s.create_rule("t", "s", "p", &body).await;
    let got = s.entity("t/Subscriptions/s/Rules/p").await;
    for entry in [&created, &got] {
        assert!(entry.contains("<Filter i:type=\"SqlFilter\">"), "{entry}");
        assert!(
            entry.contains("<Action i:type=\"SqlRuleAction\">"),
            "{entry}"
        );
        assert_eq!(
            xml_all(entry, "SqlExpression"),
            vec![
                "color = @color AND qty >= @min AND big < @big AND ratio > @ratio AND flag = @flag \
                 AND sys.EnqueuedTimeUtc > @since AND note <> 'a&b'",
                "SET seen = @stamp; REMOVE secret",
            ]
        );
        assert_eq!(xml_all(entry, "CompatibilityLevel"), vec!["20", "20"]);
        // Keys come back sorted, each value with its xsd type.
        assert_eq!(
            xml_all(entry, "Key"),
            vec!["@big", "@color", "@flag", "@min", "@ratio", "@since", "@stamp"]
        );
        for (ty, value) in [
            ("long", "2147483650"),
            ("string", "red"),
            ("boolean", "true"),
            ("int", "10"),
            ("double", "1.5"),
            ("string", "yes"),
        ] {
            let typed = format!("i:type=\"d6p1:{ty}\" xmlns:d6p1=\"{XSD_NS}\">{value}</Value>");
            assert!(entry.contains(&typed), "{typed} not in {entry}");
        }
        assert!(entry.contains("i:type=\"d6p1:dateTime\""), "{entry}");
        let values = xml_all(entry, "Value");
        assert!(values[5].starts_with("2020-07-05T11:12:13"), "{values:?}");
    }

    // What GET returns can be PUT back unchanged (the SDKs' get-modify-update).
    let r = s.put_atom("t/Subscriptions/s/Rules/p", &got, true).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let again = s.entity("t/Subscriptions/s/Rules/p").await;
    assert_eq!(
        xml_all(&again, "RuleDescription"),
        xml_all(&got, "RuleDescription")
    );
    assert_eq!(xml_all(&again, "Value"), xml_all(&got, "Value"));
    assert_eq!(
        xml_all(&again, "SqlExpression"),
        xml_all(&got, "SqlExpression")
    );
    // The rules feed carries the same description.
    let feed = s.get("t/Subscriptions/s/Rules").await;
    assert!(
        feed_titles(&feed.body).contains(&"p".to_string()),
        "{}",
        feed.body
    );
    assert!(feed.body.contains("<Key>@since</Key>"), "{}", feed.body);

    // A parameter value that is not of its declared type is a 400.
    let bad = sql_rule_body("a = @n", &[("@n", "int", "ten")], None);
    let r = s.put_rule("t", "s", "bad", &bad).await;
    assert_eq!(r.status, 400, "{}", r.body);
    s.stop().await;
}

/// A deterministic generator for the garbage test (no extra dependency).
struct XorShift(u64);
impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// A random filter (or, with `action`, SET/REMOVE statements) that is usually valid.
fn well_formed(rng: &mut XorShift, action: bool) -> String {
    const OPERANDS: &[&str] = &[
        "x",
        "color",
        "sys.Label",
        "user.x",
        "[q]",
        "@p",
        "sys.SequenceNumber",
        "x + 1",
        "x * 2",
        "x / 0",
        "x % 3",
        "-x",
        "'red'",
        "1",
        "2.5",
        "NULL",
        "TRUE",
        "sys.MessageId",
        "sys.EnqueuedTimeUtc",
        "sys.TimeToLive",
        "color + 'x'",
        "newid()",
        "property('x')",
    ];
    const PREDICATES: &[&str] = &[
        "{a} = {b}",
        "{a} <> {b}",
        "{a} < {b}",
        "{a} >= {b}",
        "{a} LIKE 'r%'",
        "{a} NOT LIKE '%!_%' ESCAPE '!'",
        "{a} IN ({b}, 'red', 1)",
        "{a} NOT IN ({b})",
        "{a} IS NULL",
        "{a} IS NOT NULL",
        "EXISTS(x)",
        "NOT EXISTS(color)",
        "q",
    ];
    let operand = |rng: &mut XorShift| OPERANDS[rng.below(OPERANDS.len())];
    if action {
        let mut out = Vec::new();
        for _ in 0..1 + rng.below(3) {
            let target = ["x", "color", "sys.Label", "sys.To", "user.y", "[q]"][rng.below(6)];
            if rng.below(4) == 0 {
                out.push(format!("REMOVE {target}"));
            } else {
                out.push(format!("SET {target} = {}", operand(rng)));
            }
        }
        return out.join("; ");
    }
    let mut out = String::new();
    for k in 0..1 + rng.below(4) {
        if k > 0 {
            out.push_str([" AND ", " OR "][rng.below(2)]);
        }
        let p = PREDICATES[rng.below(PREDICATES.len())]
            .replace("{a}", operand(rng))
            .replace("{b}", operand(rng));
        match rng.below(4) {
            0 => out.push_str(&format!("NOT ({p})")),
            1 => out.push_str(&format!("({p})")),
            _ => out.push_str(&p),
        }
    }
    out
}

#[tokio::test]
async fn random_sql_through_rule_creation_never_5xx() {
    const FRAGMENTS: &[&str] = &[
        "AND",
        "OR",
        "NOT",
        "(",
        ")",
        "=",
        "<>",
        "!=",
        "<",
        "<=",
        ">",
        ">=",
        "+",
        "-",
        "*",
        "/",
        "%",
        "IN",
        "LIKE",
        "ESCAPE",
        "IS",
        "NULL",
        "EXISTS",
        "TRUE",
        "FALSE",
        "SET",
        "REMOVE",
        ";",
        ",",
        "'a'",
        "'%_'",
        "''",
        "'",
        "1",
        "0",
        "-1",
        "1.5",
        ".5",
        "1e308",
        "1e309",
        "9223372036854775807",
        "9223372036854775808",
        "x",
        "color",
        "sys.Label",
        "sys.To",
        "sys.SequenceNumber",
        "sys.EnqueuedTimeUtc",
        "sys.Nope",
        "user.x",
        "sys.",
        "user.",
        "[q]",
        "[",
        "]",
        "\"d\"",
        "\"",
        "@p",
        "@",
        "newid()",
        "property('x')",
        "p(",
        "é",
        "\u{1F600}",
        "\\",
        "#",
        "$",
        "&",
        "<",
        ">",
        "\t",
        "\n",
        " ",
    ];
    let s = TestServer::start().await;
    s.create_topic("t", "").await;
    s.create_subscription("t", "s", "").await;
    // A longer bounded run: SQL_FUZZ_ITERATIONS=20000 SQL_FUZZ_SEED=7 cargo test random_sql
    let iterations: usize = std::env::var("SQL_FUZZ_ITERATIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(400);
    let seed: u64 = std::env::var("SQL_FUZZ_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0x5eed_1234_abcd_0042);
    let mut rng = XorShift(seed | 1);
    let mut created = 0;
    for i in 0..iterations {
        let mut text = String::new();
        for _ in 0..1 + rng.below(14) {
            if rng.below(8) == 0 {
                // A raw character, including ones XML cannot carry.
                text.push(char::from_u32(rng.below(0x3000) as u32).unwrap_or('?'));
            } else {
                text.push_str(FRAGMENTS[rng.below(FRAGMENTS.len())]);
            }
            if rng.below(3) != 0 {
                text.push(' ');
            }
        }
        if i % 2 == 1 && rng.below(2) == 0 {
            // Mostly well-formed: predicates joined by AND/OR, so that many rules compile and
            // get evaluated below (including ones that fail at evaluation time).
            text = well_formed(&mut rng, i % 4 == 1);
            if rng.below(4) == 0 {
                // ... with one random fragment spliced in.
                let at = text
                    .char_indices()
                    .map(|(i, _)| i)
                    .nth(rng.below(text.chars().count().max(1)))
                    .unwrap_or(0);
                text.insert_str(at, FRAGMENTS[rng.below(FRAGMENTS.len())]);
            }
        }
        if i % 50 == 0 {
            // Deep nesting.
            text = format!("{}1{} = 1", "(".repeat(300 + i), ")".repeat(300 + i));
        }
        let escaped = xml_escape(&text);
        // Odd i ≡ 1 (mod 4) is an action; everything else a filter.
        let body = if i % 4 != 1 {
            sql_rule_body(&escaped, &[("@p", "int", "1")], None)
        } else {
            sql_rule_body("1=1", &[], Some(&escaped))
        };
        let name = format!("r{i}");
        let r = s.put_rule("t", "s", &name, &body).await;
        match r.status.as_u16() {
            201 => created += 1,
            400 => {
                let detail = xml_text(&r.body, "Detail").unwrap_or_default();
                assert!(
                    !detail.is_empty(),
                    "{text:?}: 400 without detail: {}",
                    r.body
                );
            }
            other => panic!("{text:?}: {other}: {}", r.body),
        }
    }
    // Whatever compiled is now evaluated against messages: still no 5xx, and the server
    // keeps answering.
    for (label, props) in [
        ("a", vec![("x", "1"), ("color", "\"red\"")]),
        ("b", vec![("x", "\"s\""), ("q", "true")]),
        ("c", vec![]),
    ] {
        let r = s
            .send_raw("t", "m", Some(json!({"Label": label})), &props)
            .await;
        assert_eq!(r.status, 201, "{}", r.body);
    }
    let got = s.get("t/Subscriptions/s").await;
    assert_eq!(got.status, 200);
    println!("{created} of {iterations} random rules compiled (seed {seed})");
    s.stop().await;
}

// ----- lists ---------------------------------------------------------------------------------

#[tokio::test]
async fn list_queues_and_topics_with_paging() {
    let s = TestServer::start().await;
    for n in ["q1", "q2", "q3", "q4", "q5"] {
        s.create_queue(n, "").await;
    }
    s.create_topic("t1", "").await;
    s.create_topic("t2", "").await;

    let all = s.get("$Resources/Queues").await;
    assert_eq!(all.status, 200, "{}", all.body);
    assert!(all.body.contains("<feed"), "{}", all.body);
    let mut names = feed_titles(&all.body);
    assert_eq!(names.len(), 5, "{}", all.body);
    let full = names.clone();
    names.sort();
    assert_eq!(names, vec!["q1", "q2", "q3", "q4", "q5"]);
    // Every entry carries a QueueDescription.
    assert_eq!(all.body.matches("<QueueDescription").count(), 5);

    let page = s.get("$Resources/Queues?$skip=1&$top=2").await;
    assert_eq!(page.status, 200);
    assert_eq!(feed_titles(&page.body), full[1..3].to_vec());
    let tail = s.get("$Resources/Queues?$skip=4&$top=10").await;
    assert_eq!(feed_titles(&tail.body), full[4..].to_vec());
    let none = s.get("$Resources/Queues?$skip=10").await;
    assert_eq!(none.status, 200);
    assert!(feed_titles(&none.body).is_empty());
    // Case-insensitive resource words.
    assert_eq!(feed_titles(&s.get("$resources/queues").await.body).len(), 5);

    let topics = s.get("$Resources/Topics").await;
    assert_eq!(topics.status, 200);
    let mut t = feed_titles(&topics.body);
    t.sort();
    assert_eq!(t, vec!["t1", "t2"]);
    assert_eq!(topics.body.matches("<TopicDescription").count(), 2);
    assert_eq!(
        feed_titles(&s.get("$Resources/Topics?$top=1").await.body).len(),
        1
    );

    // Bad paging values: 400.
    assert_eq!(s.get("$Resources/Queues?$top=x").await.status, 400);
    assert_eq!(s.get("$Resources/Queues?$skip=-1").await.status, 400);
    s.stop().await;
}

#[tokio::test]
async fn list_subscriptions_and_rules_with_paging() {
    let s = TestServer::start().await;
    s.create_topic("t", "").await;
    for n in ["a", "b", "c"] {
        s.create_subscription("t", n, "").await;
    }
    let subs = s.get("t/Subscriptions").await;
    assert_eq!(subs.status, 200, "{}", subs.body);
    let full = feed_titles(&subs.body);
    let mut sorted = full.clone();
    sorted.sort();
    assert_eq!(sorted, vec!["a", "b", "c"]);
    assert_eq!(subs.body.matches("<SubscriptionDescription").count(), 3);
    let page = s.get("t/Subscriptions?$skip=1&$top=1").await;
    assert_eq!(feed_titles(&page.body), full[1..2].to_vec());

    for r in ["r1", "r2"] {
        s.create_rule("t", "a", r, &correlation_filter(&[("Label", r)], &[]))
            .await;
    }
    let rules = s.get("t/Subscriptions/a/Rules").await;
    assert_eq!(rules.status, 200);
    let all_rules = feed_titles(&rules.body);
    let mut sorted = all_rules.clone();
    sorted.sort();
    assert_eq!(sorted, vec!["$Default", "r1", "r2"]);
    assert_eq!(rules.body.matches("<RuleDescription").count(), 3);
    let page = s.get("t/Subscriptions/a/Rules?$skip=1&$top=1").await;
    assert_eq!(feed_titles(&page.body), all_rules[1..2].to_vec());
    let page = s.get("t/Subscriptions/a/Rules?$top=2").await;
    assert_eq!(feed_titles(&page.body), all_rules[..2].to_vec());

    assert_eq!(s.get("t/Subscriptions/zz/Rules").await.status, 404);
    s.stop().await;
}

#[tokio::test]
async fn namespace_info_and_health() {
    let s = TestServer::start().await;
    let r = s.get("$namespaceinfo").await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.body.contains("<NamespaceInfo"), "{}", r.body);
    assert_eq!(xml_get(&r.body, "NamespaceType"), "Messaging");
    assert_eq!(xml_get(&r.body, "MessagingSKU"), "Standard");
    assert!(!xml_get(&r.body, "Name").is_empty());
    assert!(xml_text(&r.body, "CreatedTime").is_some());

    let h = s.get("health").await;
    assert_eq!(h.status, 200);
    let v: serde_json::Value = serde_json::from_str(&h.body).expect("health is JSON");
    assert_eq!(v["status"], "healthy");
    // The official emulator's schema (HealthCheckApiSchema.md), storage facts beside it.
    assert_eq!(v["message"], "Service is healthy.");
    assert!(v["storage"]["type"].is_string(), "{v}");
    s.stop().await;
}

// ----- names ---------------------------------------------------------------------------------

#[tokio::test]
async fn invalid_entity_names_are_400() {
    let s = TestServer::start().await;
    let long = "a".repeat(300);
    for name in [
        "-x",
        "x-",
        ".x",
        "x.",
        "a b",
        "a:b",
        "a*b",
        "a%5Cb",
        long.as_str(),
    ] {
        let r = s.put_atom(name, &queue_xml(""), false).await;
        assert_eq!(r.status, 400, "queue {name:?}: {}", r.body);
        let r = s.put_atom(name, &topic_xml(""), false).await;
        assert_eq!(r.status, 400, "topic {name:?}: {}", r.body);
    }
    // Nothing was created.
    assert!(feed_titles(&s.get("$Resources/Queues").await.body).is_empty());
    assert!(feed_titles(&s.get("$Resources/Topics").await.body).is_empty());

    // Names at the limit are fine.
    s.create_queue(&"a".repeat(260), "").await;
    assert_eq!(
        s.put_atom(&"b".repeat(261), &queue_xml(""), false)
            .await
            .status,
        400
    );

    // Subscription and rule names: no slashes, at most 50 characters.
    s.create_topic("t", "").await;
    let long_sub = "s".repeat(51);
    for sub in ["-s", "s-", long_sub.as_str(), "a%2Fb", "a b"] {
        let r = s
            .put_atom(
                &format!("t/Subscriptions/{sub}"),
                &subscription_xml(""),
                false,
            )
            .await;
        assert_eq!(r.status, 400, "subscription {sub:?}: {}", r.body);
    }
    s.create_subscription("t", "s", "").await;
    for rule in ["-r", long_sub.as_str(), "a%2Fb", "$Other"] {
        let r = s
            .put_atom(
                &format!("t/Subscriptions/s/Rules/{rule}"),
                &rule_xml("x", &correlation_filter(&[("Label", "x")], &[])),
                false,
            )
            .await;
        assert_eq!(r.status, 400, "rule {rule:?}: {}", r.body);
    }
    s.stop().await;
}

#[tokio::test]
async fn path_escapes_are_400_never_5xx() {
    let s = TestServer::start().await;
    let body = queue_xml("");
    // Sent byte for byte: a URL library would normalise these away.
    for path in [
        "/%2e%2e",
        "/..",
        "/a/%2e%2e/b",
        "/a/../b",
        "/%2e%2e/x",
        "/a/./b",
        "/a%00b",
        "/%2e",
    ] {
        let (status, resp) = raw_request(&s, "PUT", path, body.as_bytes()).await;
        assert_eq!(status, 400, "PUT {path}: {resp}");
    }
    for path in ["/%2e%2e/messages", "/a/%2e%2e/b/messages"] {
        let (status, resp) = raw_request(&s, "POST", path, b"x").await;
        assert!(
            status == 400 || status == 404 || status == 410,
            "POST {path}: {status} {resp}"
        );
    }
    assert!(feed_titles(&s.get("$Resources/Queues").await.body).is_empty());
    s.stop().await;
}

// ----- malformed bodies ----------------------------------------------------------------------

#[tokio::test]
async fn malformed_xml_is_400_never_5xx() {
    let s = TestServer::start().await;
    s.create_topic("t", "").await;
    s.create_subscription("t", "s", "").await;
    let deep = format!("{}{}", "<a>".repeat(200), "</a>".repeat(200));
    let bodies: Vec<Vec<u8>> = vec![
        b"".to_vec(),
        b"not xml at all".to_vec(),
        b"<entry".to_vec(),
        b"<entry xmlns=\"http://www.w3.org/2005/Atom\"><content>".to_vec(),
        b"<entry></wrong>".to_vec(),
        b"<a/><b/>".to_vec(),
        b"<entry>&bogus;</entry>".to_vec(),
        deep.into_bytes(),
        vec![0xff, 0xfe, 0x00, 0x3c],
        queue_xml("<LockDuration>soon</LockDuration>").into_bytes(),
        queue_xml("<MaxDeliveryCount>many</MaxDeliveryCount>").into_bytes(),
        queue_xml("<MaxDeliveryCount>0</MaxDeliveryCount>").into_bytes(),
        queue_xml("<RequiresDuplicateDetection>maybe</RequiresDuplicateDetection>").into_bytes(),
        queue_xml("<Status>Sleeping</Status>").into_bytes(),
        queue_xml("<LockDuration>PT10M</LockDuration>").into_bytes(),
        queue_xml("<DefaultMessageTimeToLive>P99999999999999999999D</DefaultMessageTimeToLive>")
            .into_bytes(),
        atom_entry("RuleDescription", "").into_bytes(),
    ];
    for (i, body) in bodies.iter().enumerate() {
        let r = s
            .request(
                Method::PUT,
                &format!("q{i}"),
                &[("Content-Type", ATOM_CT)],
                body.clone(),
            )
            .await;
        assert_eq!(
            r.status,
            400,
            "queue body #{i} {:?}: {}",
            String::from_utf8_lossy(body),
            r.body
        );
        assert!(
            r.body.contains("<Error>"),
            "Azure-style error body: {}",
            r.body
        );
    }
    // Nothing got created by the failures.
    assert!(feed_titles(&s.get("$Resources/Queues").await.body).is_empty());

    for body in [
        b"<entry".to_vec(),
        subscription_xml("<MaxDeliveryCount>x</MaxDeliveryCount>").into_bytes(),
        queue_xml("").into_bytes(),
    ] {
        let r = s
            .request(
                Method::PUT,
                "t/Subscriptions/s2",
                &[("Content-Type", ATOM_CT)],
                body,
            )
            .await;
        assert_eq!(r.status, 400, "subscription: {}", r.body);
    }
    for body in [
        b"<entry".to_vec(),
        queue_xml("").into_bytes(),
        rule_xml("r", "<Filter i:type=\"MagicFilter\"/>").into_bytes(),
        rule_xml("r", "<Filter i:type=\"SqlFilter\"><SqlExpression></SqlExpression></Filter>")
            .into_bytes(),
        rule_xml(
            "r",
            "<Filter i:type=\"CorrelationFilter\"><Properties><KeyValueOfstringanyType><Key>n</Key>\
             <Value i:type=\"d6p1:int\" xmlns:d6p1=\"http://www.w3.org/2001/XMLSchema\">abc</Value>\
             </KeyValueOfstringanyType></Properties></Filter>",
        )
        .into_bytes(),
    ] {
        let r = s
            .request(Method::PUT, "t/Subscriptions/s/Rules/r", &[("Content-Type", ATOM_CT)], body)
            .await;
        assert_eq!(r.status, 400, "rule: {}", r.body);
    }
    assert_eq!(s.get("t/Subscriptions/s/Rules/r").await.status, 404);
    s.stop().await;
}

// ----- runtime counts ------------------------------------------------------------------------

#[tokio::test]
async fn runtime_counts_reflect_messages() {
    let s = TestServer::start().await;
    s.create_queue("q", "<MaxDeliveryCount>1</MaxDeliveryCount>")
        .await;
    assert_eq!(
        s.counts("q").await,
        Counts {
            message_count: 0,
            active: 0,
            dead_letter: 0,
            scheduled: 0
        }
    );
    for i in 0..3 {
        s.send_text("q", &format!("m{i}")).await;
    }
    let later = rfc1123(s.now() + 3_600_000);
    s.send(
        "q",
        "sched",
        Some(json!({"ScheduledEnqueueTimeUtc": later})),
        &[],
    )
    .await;
    assert_eq!(
        s.counts("q").await,
        Counts {
            message_count: 4,
            active: 3,
            dead_letter: 0,
            scheduled: 1
        }
    );
    // Abandon at MaxDeliveryCount=1 dead-letters.
    let m = s.lock_one("q").await;
    assert_eq!(s.unlock(m.location()).await, 200);
    let c = s.counts("q").await;
    assert_eq!((c.active, c.dead_letter, c.scheduled), (2, 1, 1), "{c:?}");
    assert_eq!(c.message_count, 4);
    // Completing removes one.
    let m = s.lock_one("q").await;
    assert_eq!(s.complete(m.location()).await, 200);
    let c = s.counts("q").await;
    assert_eq!(
        (c.message_count, c.active, c.dead_letter, c.scheduled),
        (3, 1, 1, 1)
    );
    // The size grows with messages.
    assert!(xml_u64(&s.entity("q").await, "SizeInBytes") > 0);

    // Subscriptions and topics count too.
    s.create_topic("t", "").await;
    s.create_subscription("t", "a", "").await;
    s.create_subscription("t", "b", "").await;
    s.send_text("t", "x").await;
    s.send_text("t", "y").await;
    assert_eq!(s.counts("t/Subscriptions/a").await.active, 2);
    assert_eq!(s.counts("t/Subscriptions/b").await.message_count, 2);
    s.take_one("t/Subscriptions/a").await;
    assert_eq!(s.counts("t/Subscriptions/a").await.active, 1);
    assert_eq!(s.counts("t/Subscriptions/b").await.active, 2);
    s.stop().await;
}

// ----- property round trip -------------------------------------------------------------------

#[tokio::test]
async fn queue_properties_round_trip() {
    let s = TestServer::start().await;
    s.create_queue("target", "").await;
    s.create_queue("dlq-target", "").await;
    let props = "<LockDuration>PT45S</LockDuration>\
         <MaxSizeInMegabytes>2048</MaxSizeInMegabytes>\
         <RequiresDuplicateDetection>true</RequiresDuplicateDetection>\
         <RequiresSession>false</RequiresSession>\
         <DefaultMessageTimeToLive>P2DT3H</DefaultMessageTimeToLive>\
         <DeadLetteringOnMessageExpiration>true</DeadLetteringOnMessageExpiration>\
         <DuplicateDetectionHistoryTimeWindow>PT5M</DuplicateDetectionHistoryTimeWindow>\
         <MaxDeliveryCount>5</MaxDeliveryCount>\
         <EnableBatchedOperations>true</EnableBatchedOperations>\
         <Status>SendDisabled</Status>\
         <ForwardTo>target</ForwardTo>\
         <UserMetadata>hello &amp; &lt;world&gt;</UserMetadata>\
         <ForwardDeadLetteredMessagesTo>dlq-target</ForwardDeadLetteredMessagesTo>\
         <AutoDeleteOnIdle>PT1H</AutoDeleteOnIdle>";
    let created = s.create_queue("q", props).await;
    let got = s.entity("q").await;
    for body in [&created, &got] {
        assert_eq!(xml_get(body, "LockDuration"), "PT45S");
        assert_eq!(xml_get(body, "MaxSizeInMegabytes"), "2048");
        assert_eq!(xml_get(body, "RequiresDuplicateDetection"), "true");
        assert_eq!(xml_get(body, "DefaultMessageTimeToLive"), "P2DT3H");
        assert_eq!(xml_get(body, "DeadLetteringOnMessageExpiration"), "true");
        assert_eq!(xml_get(body, "DuplicateDetectionHistoryTimeWindow"), "PT5M");
        assert_eq!(xml_get(body, "MaxDeliveryCount"), "5");
        assert_eq!(xml_get(body, "Status"), "SendDisabled");
        assert!(
            xml_get(body, "ForwardTo").ends_with("/target"),
            "{}",
            xml_get(body, "ForwardTo")
        );
        assert!(xml_get(body, "ForwardDeadLetteredMessagesTo").ends_with("/dlq-target"));
        assert_eq!(xml_get(body, "UserMetadata"), "hello & <world>");
        assert_eq!(xml_get(body, "AutoDeleteOnIdle"), "PT1H");
    }

    // A GET body PUT back (as SDKs do on update) round-trips, including full ForwardTo URLs.
    let back = s
        .put_atom(
            "q",
            &got.replace("<Status>SendDisabled</Status>", "<Status>Active</Status>"),
            true,
        )
        .await;
    assert_eq!(back.status, 200, "{}", back.body);
    let again = s.entity("q").await;
    assert_eq!(xml_get(&again, "Status"), "Active");
    assert!(xml_get(&again, "ForwardTo").ends_with("/target"));
    assert_eq!(xml_get(&again, "MaxDeliveryCount"), "5");
    assert_eq!(xml_get(&again, "UserMetadata"), "hello & <world>");

    // Infinite durations round-trip exactly.
    s.create_queue(
        "inf",
        &format!("<DefaultMessageTimeToLive>{INFINITE}</DefaultMessageTimeToLive><AutoDeleteOnIdle>{INFINITE}</AutoDeleteOnIdle>"),
    )
    .await;
    let inf = s.entity("inf").await;
    assert_eq!(xml_get(&inf, "DefaultMessageTimeToLive"), INFINITE);
    assert_eq!(xml_get(&inf, "AutoDeleteOnIdle"), INFINITE);

    // Every status value.
    for st in ["Active", "Disabled", "SendDisabled", "ReceiveDisabled"] {
        let r = s
            .put_atom("q", &queue_xml(&format!("<Status>{st}</Status>")), true)
            .await;
        assert_eq!(r.status, 200, "{}", r.body);
        assert_eq!(xml_get(&s.entity("q").await, "Status"), st);
    }

    // Forwarding to a missing entity is refused.
    let r = s
        .put_atom("q2", &queue_xml("<ForwardTo>nowhere</ForwardTo>"), false)
        .await;
    assert!(r.status.is_client_error(), "{} {}", r.status, r.body);
    s.stop().await;
}

#[tokio::test]
async fn topic_and_subscription_properties_round_trip() {
    let s = TestServer::start().await;
    s.create_queue("fwd", "").await;
    let t = s
        .create_topic(
            "t",
            "<DefaultMessageTimeToLive>PT10M</DefaultMessageTimeToLive>\
             <MaxSizeInMegabytes>5120</MaxSizeInMegabytes>\
             <RequiresDuplicateDetection>true</RequiresDuplicateDetection>\
             <DuplicateDetectionHistoryTimeWindow>PT2M</DuplicateDetectionHistoryTimeWindow>\
             <Status>Active</Status>\
             <UserMetadata>topic-meta</UserMetadata>\
             <AutoDeleteOnIdle>P1D</AutoDeleteOnIdle>",
        )
        .await;
    let got = s.entity("t").await;
    for body in [&t, &got] {
        assert_eq!(xml_get(body, "DefaultMessageTimeToLive"), "PT10M");
        assert_eq!(xml_get(body, "MaxSizeInMegabytes"), "5120");
        assert_eq!(xml_get(body, "RequiresDuplicateDetection"), "true");
        assert_eq!(xml_get(body, "DuplicateDetectionHistoryTimeWindow"), "PT2M");
        assert_eq!(xml_get(body, "UserMetadata"), "topic-meta");
        assert_eq!(xml_get(body, "AutoDeleteOnIdle"), "P1D");
    }

    let sub = s
        .create_subscription(
            "t",
            "s",
            "<LockDuration>PT20S</LockDuration>\
             <DefaultMessageTimeToLive>PT5M</DefaultMessageTimeToLive>\
             <DeadLetteringOnMessageExpiration>true</DeadLetteringOnMessageExpiration>\
             <MaxDeliveryCount>2</MaxDeliveryCount>\
             <Status>ReceiveDisabled</Status>\
             <ForwardTo>fwd</ForwardTo>\
             <UserMetadata>sub-meta</UserMetadata>\
             <ForwardDeadLetteredMessagesTo>fwd</ForwardDeadLetteredMessagesTo>\
             <AutoDeleteOnIdle>PT6M</AutoDeleteOnIdle>",
        )
        .await;
    let got = s.entity("t/Subscriptions/s").await;
    for body in [&sub, &got] {
        assert_eq!(xml_get(body, "LockDuration"), "PT20S");
        assert_eq!(xml_get(body, "DefaultMessageTimeToLive"), "PT5M");
        assert_eq!(xml_get(body, "DeadLetteringOnMessageExpiration"), "true");
        assert_eq!(xml_get(body, "MaxDeliveryCount"), "2");
        assert_eq!(xml_get(body, "Status"), "ReceiveDisabled");
        assert!(xml_get(body, "ForwardTo").ends_with("/fwd"));
        assert!(xml_get(body, "ForwardDeadLetteredMessagesTo").ends_with("/fwd"));
        assert_eq!(xml_get(body, "UserMetadata"), "sub-meta");
        assert_eq!(xml_get(body, "AutoDeleteOnIdle"), "PT6M");
    }
    s.stop().await;
}

#[tokio::test]
async fn updating_a_queue_keeps_its_messages() {
    let s = TestServer::start().await;
    s.create_queue("q", "").await;
    s.send_text("q", "kept").await;
    let r = s
        .put_atom(
            "q",
            &queue_xml("<MaxDeliveryCount>2</MaxDeliveryCount>"),
            true,
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(xml_get(&r.body, "MessageCount"), "1");
    assert_eq!(s.take_one("q").await.body, "kept");
    // Deleting a queue deletes its messages: a new queue of the same name is empty.
    s.send_text("q", "gone").await;
    assert_eq!(s.delete("q").await.status, 200);
    s.create_queue("q", "").await;
    s.assert_empty("q").await;
    s.stop().await;
}

/// Issue 18: quick-xml's duplicate-attribute check is quadratic, and 60,000–90,000 attributes
/// on one element held a worker for 11–14 s. Attributes per element are bounded (64) and read
/// linearly, so 100,000 are refused at once with an Azure error body.
#[tokio::test]
async fn atom_with_100000_attributes_is_refused_quickly() {
    let s = TestServer::start().await;
    let mut attrs = String::with_capacity(900_000);
    for i in 0..100_000u32 {
        attrs.push_str(&format!(" a{i:x}=\"\""));
    }
    let body = queue_xml("").replacen("<QueueDescription", &format!("<QueueDescription{attrs}"), 1);
    let started = std::time::Instant::now();
    let r = s
        .request(Method::PUT, "q", &[("Content-Type", ATOM_CT)], body)
        .await;
    let took = started.elapsed();
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(r.body.contains("<Code>400</Code>"), "{}", r.body);
    assert!(r.body.contains("more than 64 attributes"), "{}", r.body);
    assert!(took < std::time::Duration::from_secs(2), "took {took:?}");
    s.stop().await;
}

// ----- feed paging as the admin clients follow it --------------------------------------------

/// The feed's own `<link>`s (not its entries'), in document order, as `(rel, href)` with
/// `&amp;` unescaped.
fn feed_links(body: &str) -> Vec<(String, String)> {
    let head = body.split("<entry").next().unwrap_or_default();
    let attr = |tag: &str, name: &str| -> String {
        let key = format!("{name}=\"");
        tag.find(&key)
            .map(|i| &tag[i + key.len()..])
            .and_then(|rest| rest.split('"').next())
            .unwrap_or_default()
            .replace("&amp;", "&")
    };
    head.split("<link ")
        .skip(1)
        .map(|tag| {
            let tag = tag.split("/>").next().unwrap_or_default();
            (attr(tag, "rel"), attr(tag, "href"))
        })
        .collect()
}

/// A query parameter of `url`, percent-decoded names (`%24skip` is `$skip`), as the clients read
/// it (Python `urllib.parse.parse_qs`, JavaScript `URL.searchParams`).
fn query_param(url: &str, name: &str) -> Option<String> {
    let query = url.split_once('?')?.1;
    query.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=')?;
        (k.replace("%24", "$") == name).then(|| v.to_string())
    })
}

/// Lists `path` the way azure-servicebus 7.15 does (`get_next_template` /
/// `extract_data_template`): first `$skip=0&$top={top}`, then, while the feed has exactly two
/// links, the second one's `$skip` and `$top`. Returns every title and the page sizes.
async fn list_like_the_python_client(
    s: &TestServer,
    path: &str,
    top: usize,
) -> (Vec<String>, Vec<usize>) {
    let (mut skip, mut top) = (0usize, top);
    let (mut titles, mut pages) = (Vec::new(), Vec::new());
    loop {
        let r = s
            .get(&format!(
                "{path}?$skip={skip}&$top={top}&api-version=2021-05"
            ))
            .await;
        assert_eq!(r.status, 200, "{}", r.body);
        let page = feed_titles(&r.body);
        pages.push(page.len());
        titles.extend(page);
        let links = feed_links(&r.body);
        assert_eq!(links[0].0, "self", "{links:?}");
        assert_eq!(
            query_param(&links[0].1, "$skip"),
            Some(skip.to_string()),
            "{links:?}"
        );
        if links.len() != 2 {
            assert_eq!(links.len(), 1, "{links:?}");
            return (titles, pages);
        }
        assert_eq!(links[1].0, "next", "{links:?}");
        let next = &links[1].1;
        assert!(next.starts_with(&s.url(path)), "{next}");
        skip = query_param(next, "$skip")
            .expect("$skip")
            .parse()
            .expect("a number");
        top = query_param(next, "$top")
            .expect("$top")
            .parse()
            .expect("a number");
        assert!(pages.len() < 1000, "paging does not end");
    }
}

/// Queue, topic, subscription and rule feeds page with `$skip`/`$top`: 100 entries by default,
/// a `self` link and, while entries follow, a `next` link (the feed's second) carrying the next
/// `$skip` and `$top`; the last page has no `next` link, so the clients stop without an empty
/// request.
#[tokio::test]
async fn feeds_page_with_next_links_as_the_admin_clients_follow_them() {
    let s = TestServer::start().await;
    let want: Vec<String> = (0..103).map(|i| format!("q{i:03}")).collect();
    for n in &want {
        s.create_queue(n, "").await;
    }
    // Without paging parameters: the service's 100, and a next link to the rest.
    let first = s.get("$Resources/Queues").await;
    assert_eq!(feed_titles(&first.body).len(), 100);
    let links = feed_links(&first.body);
    assert_eq!(links.len(), 2, "{links:?}");
    assert_eq!(query_param(&links[1].1, "$skip").as_deref(), Some("100"));
    assert_eq!(query_param(&links[1].1, "$top").as_deref(), Some("100"));
    assert_eq!(
        query_param(&links[1].1, "api-version").as_deref(),
        Some("2021-05")
    );

    let (mut got, pages) = list_like_the_python_client(&s, "$Resources/Queues", 100).await;
    assert_eq!(pages, vec![100, 3]);
    got.sort();
    assert_eq!(got, want);
    let (got, pages) = list_like_the_python_client(&s, "$Resources/Queues", 1).await;
    assert_eq!((got.len(), pages.len()), (103, 103));
    // An exact multiple ends on a full page, without a next link to an empty one.
    let (_, pages) = list_like_the_python_client(&s, "$Resources/Queues", 103).await;
    assert_eq!(pages, vec![103]);
    // $top=0 never advances: no next link.
    let zero = s.get("$Resources/Queues?$top=0").await;
    assert_eq!(feed_links(&zero.body).len(), 1);

    s.create_topic("t", "").await;
    for n in ["t2", "t3"] {
        s.create_topic(n, "").await;
    }
    for n in ["a", "b", "c"] {
        s.create_subscription("t", n, "").await;
    }
    for r in ["r1", "r2"] {
        s.create_rule("t", "a", r, &correlation_filter(&[("Label", r)], &[]))
            .await;
    }
    for (path, n) in [
        ("$Resources/Topics", 3),
        ("t/Subscriptions", 3),
        ("t/Subscriptions/a/Rules", 3),
    ] {
        let (got, pages) = list_like_the_python_client(&s, path, 1).await;
        assert_eq!(got.len(), n, "{path}");
        assert_eq!(pages, vec![1; n], "{path}");
        let (_, pages) = list_like_the_python_client(&s, path, 2).await;
        assert_eq!(pages, vec![2, 1], "{path}");
    }
    s.stop().await;
}
