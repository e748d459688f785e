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
async fn sql_filter_rule_is_implemented_or_refused_never_match_all() {
    let s = TestServer::start().await;
    s.create_topic("t", "").await;
    s.create_subscription("t", "s", "").await;
    s.delete_rule("t", "s", "$Default").await;

    let r = s
        .put_rule("t", "s", "sql", &sql_filter("color = 'red'"))
        .await;
    match r.status.as_u16() {
        201 => {
            // Implemented: the filter must actually filter.
            s.send("t", "red", None, &[("color", "\"red\"")]).await;
            s.send("t", "blue", None, &[("color", "\"blue\"")]).await;
            s.send("t", "none", None, &[]).await;
            assert_eq!(s.take_one("t/Subscriptions/s").await.body, "red");
            s.assert_empty("t/Subscriptions/s").await;
        }
        400 => {
            assert!(
                r.body.to_ascii_lowercase().contains("sql"),
                "the 400 should say SQL is the problem: {}",
                r.body
            );
            // The refused rule was not stored, and nothing is delivered through it.
            assert_eq!(s.get("t/Subscriptions/s/Rules/sql").await.status, 404);
            s.send("t", "red", None, &[("color", "\"red\"")]).await;
            s.assert_empty("t/Subscriptions/s").await;
        }
        other => panic!("SqlFilter rule: unexpected {other}: {}", r.body),
    }
    s.stop().await;
}

#[tokio::test]
async fn sql_rule_action_is_implemented_or_refused() {
    let s = TestServer::start().await;
    s.create_topic("t", "").await;
    s.create_subscription("t", "s", "").await;
    s.delete_rule("t", "s", "$Default").await;
    let body = "<Filter i:type=\"TrueFilter\"><SqlExpression>1=1</SqlExpression></Filter>\
                <Action i:type=\"SqlRuleAction\"><SqlExpression>SET stamped = 'yes'</SqlExpression>\
                <CompatibilityLevel>20</CompatibilityLevel></Action>";
    let r = s.put_rule("t", "s", "act", body).await;
    match r.status.as_u16() {
        201 => {
            s.send_text("t", "x").await;
            let m = s.take_one("t/Subscriptions/s").await;
            assert_eq!(m.header("stamped"), Some("\"yes\""), "the action ran");
            assert_eq!(m.header("RuleName"), Some("\"act\""));
        }
        400 => {
            assert!(
                r.body.to_ascii_lowercase().contains("sql"),
                "the 400 should say SQL is the problem: {}",
                r.body
            );
            assert_eq!(s.get("t/Subscriptions/s/Rules/act").await.status, 404);
        }
        other => panic!("SqlRuleAction rule: unexpected {other}: {}", r.body),
    }
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
