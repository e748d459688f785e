//! The web console's JSON API (`/$console/api/…`, issue 20) and its page: peek never changes
//! state; delete-one, resubmit and purge act through journaled service operations; the
//! access rules (SAS when on, CSRF header, same origin) hold.

// Both harnesses load tests/xml (the crash test needs the real binary, the rest the
// in-process server).
#![allow(clippy::duplicate_mod)]

mod common;
mod process;

use common::*;
use localzure::config::Config;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

const CONSOLE: (&str, &str) = ("X-LocalZure-Console", "1");
const JSON_CT: (&str, &str) = ("Content-Type", "application/json");

async fn api_get(s: &TestServer, call: &str) -> Value {
    let r = s.get(&format!("$console/api/{call}")).await;
    assert_eq!(r.status, StatusCode::OK, "{call}: {}", r.body);
    serde_json::from_str(&r.body).expect("JSON")
}

async fn api_post(s: &TestServer, call: &str, body: Value) -> Reply {
    s.request(
        Method::POST,
        &format!("$console/api/{call}"),
        &[CONSOLE, JSON_CT],
        body.to_string(),
    )
    .await
}

async fn peek(s: &TestServer, path: &str, dlq: bool) -> Vec<Value> {
    let v = api_get(s, &format!("messages?path={path}&dlq={}", dlq as u8)).await;
    v["messages"].as_array().expect("messages").clone()
}

fn seqs(msgs: &[Value]) -> Vec<u64> {
    msgs.iter()
        .map(|m| m["sequenceNumber"].as_u64().expect("seq"))
        .collect()
}

/// A queue `q` (max delivery count 1) with `n` dead-lettered messages `d0…` and `active`
/// active ones `a0…`.
async fn queue_with_dead_letters(s: &TestServer, n: usize, active: usize) {
    s.create_queue("q", "<MaxDeliveryCount>1</MaxDeliveryCount>")
        .await;
    for i in 0..n {
        s.send_id("q", &format!("dead {i}"), &format!("d{i}")).await;
        let m = s.lock_one("q").await;
        assert_eq!(s.unlock(m.location()).await, StatusCode::OK);
    }
    for i in 0..active {
        s.send_id("q", &format!("{{\"n\":{i}}}"), &format!("a{i}"))
            .await;
    }
}

#[tokio::test]
async fn page_and_assets_are_served_with_a_strict_policy() {
    let s = TestServer::start().await;
    let r = s.get("").await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.body.contains("/$console/app.js"), "{}", r.body);
    let csp = r.header("content-security-policy").expect("CSP");
    assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
    for (asset, ct) in [("app.js", "text/javascript"), ("app.css", "text/css")] {
        let r = s.get(&format!("$console/{asset}")).await;
        assert_eq!(r.status, StatusCode::OK, "{asset}");
        assert!(r.header("content-type").unwrap_or("").starts_with(ct));
    }
    // No external asset: no URL but the XML namespace names (which are never fetched).
    let page = s.get("").await.body + &s.get("$console/app.css").await.body;
    assert!(!page.contains("://"), "{page}");
    let js = s.get("$console/app.js").await.body;
    for (i, _) in js.match_indices("://") {
        let rest = &js[i + 3..];
        assert!(
            rest.starts_with("www.w3.org/") || rest.starts_with("schemas.microsoft.com/"),
            "{}",
            &js[i.saturating_sub(20)..(i + 40).min(js.len())]
        );
    }
    // A browser's GET /console is sent to the page; an SDK's GET of an entity named
    // "console" still reaches the management API.
    let r = s
        .request(Method::GET, "console", &[("Accept", "text/html")], "")
        .await;
    // (reqwest follows the redirect to the page.)
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.body.contains("/$console/app.js"), "{}", r.body);
    s.create_queue("console", "").await;
    assert!(s.entity("console").await.contains("QueueDescription"));
    s.stop().await;
}

#[tokio::test]
async fn overview_lists_every_entity_with_counts() {
    let s = TestServer::start().await;
    queue_with_dead_letters(&s, 1, 2).await;
    s.create_topic("t", "").await;
    s.create_subscription("t", "s", "").await;
    s.send_text("t", "x").await;
    let v = api_get(&s, "overview").await;
    let entities = v["entities"].as_array().unwrap();
    let find = |p: &str| {
        entities
            .iter()
            .find(|e| e["path"] == p)
            .unwrap_or_else(|| panic!("{p} in {entities:?}"))
            .clone()
    };
    let q = find("q");
    assert_eq!(q["kind"], "queue");
    assert_eq!(q["counts"]["active"], 2);
    assert_eq!(q["counts"]["deadLetter"], 1);
    assert_eq!(q["status"], "Active");
    assert!(q["sizeInBytes"].as_u64().unwrap() > 0);
    assert_eq!(find("t")["kind"], "topic");
    let sub = find("t/Subscriptions/s");
    assert_eq!(sub["counts"]["active"], 1);
    let e = api_get(&s, "entity?path=t/Subscriptions/s").await;
    assert_eq!(e["rules"][0]["name"], "$Default");
    assert_eq!(e["properties"]["max_delivery_count"], 10);
    s.stop().await;
}

#[tokio::test]
async fn peek_shows_properties_and_never_changes_state() {
    let s = TestServer::start().await;
    queue_with_dead_letters(&s, 1, 0).await;
    s.send(
        "q",
        "{\"a\":1}",
        Some(json!({"MessageId": "m1", "SessionId": null, "Label": "greeting", "ContentType": "application/json"})),
        &[("region", "\"eu\""), ("priority", "3")],
    )
    .await;
    let before = s.counts("q").await;
    let msgs = peek(&s, "q", false).await;
    assert_eq!(msgs.len(), 1);
    let m = &msgs[0];
    assert_eq!(m["messageId"], "m1");
    assert_eq!(m["subject"], "greeting");
    assert_eq!(m["contentType"], "application/json");
    assert_eq!(m["properties"]["region"], "eu");
    assert_eq!(m["properties"]["priority"], 3);
    assert_eq!(m["body"], "eyJhIjoxfQ==");
    assert_eq!(m["deliveryCount"], 0);
    let dl = peek(&s, "q", true).await;
    assert_eq!(dl[0]["deadLetterReason"], "MaxDeliveryCountExceeded");
    for _ in 0..3 {
        peek(&s, "q", false).await;
    }
    assert_eq!(s.counts("q").await, before, "peek changed nothing");
    assert_eq!(peek(&s, "q", false).await[0]["deliveryCount"], 0);
    s.stop().await;
}

#[tokio::test]
async fn peek_pages_by_sequence_number() {
    let s = TestServer::start().await;
    queue_with_dead_letters(&s, 0, 5).await;
    let first = api_get(&s, "messages?path=q&count=2").await;
    let page1 = seqs(first["messages"].as_array().unwrap());
    assert_eq!(page1.len(), 2);
    let next = first["next"].as_u64().expect("next");
    let second = api_get(&s, &format!("messages?path=q&count=2&from={next}")).await;
    let page2 = seqs(second["messages"].as_array().unwrap());
    assert!(page2[0] > page1[1], "{page1:?} then {page2:?}");
    let all = api_get(&s, "messages?path=q&count=10").await;
    assert!(all["next"].is_null());
    assert_eq!(all["messages"].as_array().unwrap().len(), 5);
    s.stop().await;
}

#[tokio::test]
async fn delete_one_message_leaves_the_others_untouched() {
    let s = TestServer::start().await;
    queue_with_dead_letters(&s, 0, 3).await;
    let all = seqs(&peek(&s, "q", false).await);
    let r = api_post(&s, "delete", json!({"path": "q", "sequenceNumber": all[2]})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let left = peek(&s, "q", false).await;
    assert_eq!(seqs(&left), all[..2].to_vec());
    // The messages ahead of it were locked and released: not charged a delivery.
    assert!(left.iter().all(|m| m["deliveryCount"] == 0), "{left:?}");
    assert!(left.iter().all(|m| m["lockedUntil"].is_null()), "{left:?}");
    // Gone means gone.
    let r = api_post(&s, "delete", json!({"path": "q", "sequenceNumber": all[2]})).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.body);
    // A locked message is refused, not stolen.
    let locked = s.lock_one("q").await;
    let r = api_post(
        &s,
        "delete",
        json!({"path": "q", "sequenceNumber": locked.sequence_number()}),
    )
    .await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.body);
    s.stop().await;
}

#[tokio::test]
async fn deferred_scheduled_and_session_messages_can_be_deleted() {
    let s = TestServer::start().await;
    s.create_queue("sq", "<RequiresSession>true</RequiresSession>")
        .await;
    for (id, sid) in [("x", "s1"), ("y", "s1"), ("z", "s2")] {
        s.send(
            "sq",
            id,
            Some(json!({"MessageId": id, "SessionId": sid})),
            &[],
        )
        .await;
    }
    let all = peek(&s, "sq", false).await;
    let y = all.iter().find(|m| m["messageId"] == "y").unwrap();
    let r = api_post(
        &s,
        "delete",
        json!({"path": "sq", "sequenceNumber": y["sequenceNumber"]}),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let ids: Vec<Value> = peek(&s, "sq", false)
        .await
        .iter()
        .map(|m| m["messageId"].clone())
        .collect();
    assert_eq!(ids, vec![json!("x"), json!("z")]);
    // Scheduled (a queue's is cancelled).
    s.create_queue("q2", "").await;
    let later = rfc1123(s.now() + 3_600_000);
    s.send(
        "q2",
        "later",
        Some(json!({"ScheduledEnqueueTimeUtc": later})),
        &[],
    )
    .await;
    let sched = peek(&s, "q2", false).await;
    assert_eq!(sched[0]["state"], "Scheduled");
    let r = api_post(
        &s,
        "delete",
        json!({"path": "q2", "sequenceNumber": sched[0]["sequenceNumber"]}),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert!(peek(&s, "q2", false).await.is_empty());
    s.stop().await;
}

#[tokio::test]
async fn resubmit_one_and_all_from_the_dead_letter_queue() {
    let s = TestServer::start().await;
    queue_with_dead_letters(&s, 3, 0).await;
    let dead = peek(&s, "q", true).await;
    assert_eq!(dead.len(), 3);
    let r = api_post(
        &s,
        "resubmit",
        json!({"path": "q", "sequenceNumbers": [dead[1]["sequenceNumber"]]}),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let back = peek(&s, "q", false).await;
    assert_eq!(back.len(), 1);
    assert_eq!(back[0]["messageId"], "d1");
    assert!(
        back[0]["properties"].get("DeadLetterReason").is_none(),
        "{back:?}"
    );
    assert_eq!(seqs(&peek(&s, "q", true).await).len(), 2);
    let r = api_post(&s, "resubmit", json!({"path": "q"})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let v: Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(v["resubmitted"].as_array().unwrap().len(), 2);
    assert!(peek(&s, "q", true).await.is_empty());
    assert_eq!(s.counts("q").await.active, 3);
    // A receiver gets the resubmitted message with its body.
    let m = s.take_one("q").await;
    assert!(m.body.starts_with("dead "), "{}", m.body);
    s.stop().await;
}

#[tokio::test]
async fn purge_empties_the_entity_or_its_dead_letter_queue() {
    let s = TestServer::start().await;
    queue_with_dead_letters(&s, 2, 3).await;
    // A deferred one too.
    let m = s.lock_one("q").await;
    let r = s
        .request(
            Method::POST,
            "$console/api/purge",
            &[CONSOLE, JSON_CT],
            json!({"path": "q", "dlq": true}).to_string(),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert!(peek(&s, "q", true).await.is_empty());
    assert_eq!(s.counts("q").await.active, 3, "the queue itself untouched");
    assert_eq!(s.unlock(m.location()).await, StatusCode::OK);
    let r = api_post(&s, "purge", json!({"path": "q"})).await;
    let v: Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(v["remaining"], 0, "{v}");
    // The message abandoned at the max delivery count went to the DLQ; the rest are gone.
    assert!(peek(&s, "q", false).await.is_empty());
    // Subscriptions too.
    s.create_topic("t", "").await;
    s.create_subscription("t", "s", "").await;
    s.send_text("t", "x").await;
    let r = api_post(&s, "purge", json!({"path": "t/Subscriptions/s"})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert!(peek(&s, "t/Subscriptions/s", false).await.is_empty());
    s.stop().await;
}

#[tokio::test]
async fn actions_need_the_console_header_and_the_same_origin() {
    let s = TestServer::start().await;
    queue_with_dead_letters(&s, 0, 1).await;
    let body = json!({"path": "q"}).to_string();
    // A "simple" cross-site form post: no custom header.
    let r = s
        .request(
            Method::POST,
            "$console/api/purge",
            &[("Content-Type", "text/plain")],
            body.clone(),
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.body);
    // Another origin (e.g. after DNS rebinding the Host still differs from nothing: the
    // Origin names the attacker's page).
    let r = s
        .request(
            Method::POST,
            "$console/api/purge",
            &[CONSOLE, JSON_CT, ("Origin", "http://evil.example")],
            body.clone(),
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.body);
    assert_eq!(s.counts("q").await.active, 1);
    // The page's own origin is the server's (what a browser sends from the console page,
    // whether it reached the server on loopback or through a Docker port mapping).
    let host = s.base_url.trim_start_matches("http://").to_string();
    let origin = s.base_url.clone();
    let r = s
        .request(
            Method::POST,
            "$console/api/purge",
            &[CONSOLE, JSON_CT, ("Origin", &origin), ("Host", &host)],
            body,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(s.counts("q").await.active, 0);
    s.stop().await;
}

#[tokio::test]
async fn with_sas_on_the_page_is_open_and_the_api_needs_a_token() {
    let mut config = Config::default();
    config.server.sas_key_name = Some("RootManageSharedAccessKey".into());
    config.server.sas_key = Some("c2VjcmV0".into());
    let s = TestServer::start_with(config).await;
    assert_eq!(s.get("").await.status, StatusCode::OK);
    assert_eq!(s.get("$console/app.js").await.status, StatusCode::OK);
    let r = s.get("$console/api/overview").await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.body);
    // A namespace-wide token, signed as the page signs it (resource = the page's origin).
    let key = localzure::sas::SasKey {
        name: "RootManageSharedAccessKey".into(),
        key: "c2VjcmV0".into(),
    };
    let expiry = (chrono::Utc::now().timestamp() + 600) as u64;
    let token = localzure::sas::token(&key, &format!("{}/", s.base_url), expiry);
    let r = s
        .request(
            Method::GET,
            "$console/api/overview",
            &[("Authorization", &token)],
            "",
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert!(r.body.contains("\"sas\":true"));
    s.stop().await;
}

/// (message id, sequence number) of the messages the console API peeks at `path`.
async fn console_peek(http: &process::Http, path: &str) -> Vec<(Value, Value)> {
    let r = http
        .get(&format!("$console/api/messages?path={path}"))
        .await;
    let v: Value = serde_json::from_str(&r.body).expect("JSON");
    v["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .map(|m| (m["messageId"].clone(), m["sequenceNumber"].clone()))
        .collect()
}

/// Console actions are journaled service operations: after a SIGKILL (no final snapshot) the
/// real binary replays its log, and a deletion, a resubmission and a purge are all still in
/// effect.
#[tokio::test]
async fn console_actions_survive_a_crash() {
    use process::{Kind, Server, Store};
    let store = Store::new(Kind::Sqlite);
    let server = Server::start(&store.env());
    let http = &server.http;
    http.create_queue("q", "<MaxDeliveryCount>1</MaxDeliveryCount>")
        .await;
    http.create_queue("p", "").await;
    for id in ["a", "b", "c"] {
        http.send("q", id, json!({ "MessageId": id }), &[]).await;
    }
    http.send("p", "x", json!({}), &[]).await;
    // Dead-letter "a" (abandoned at the maximum delivery count).
    let locked = http.peek_lock("q").await.expect("a message");
    let location = locked.header("location").expect("Location").to_string();
    assert_eq!(http.at_location(Method::PUT, &location).await.status, 200);
    let main = console_peek(http, "q").await;
    let post = |call: &'static str, body: Value| async move {
        let r = http
            .request(
                Method::POST,
                &format!("$console/api/{call}"),
                &[CONSOLE, JSON_CT],
                body.to_string(),
            )
            .await;
        assert_eq!(r.status, 200, "{call}: {}", r.body);
    };
    post("delete", json!({"path": "q", "sequenceNumber": main[1].1})).await;
    post("resubmit", json!({"path": "q"})).await;
    post("purge", json!({"path": "p"})).await;
    drop(server.kill());

    let server = Server::start(&store.env());
    let http = &server.http;
    let ids = |v: Vec<(Value, Value)>| v.into_iter().map(|(id, _)| id).collect::<Vec<_>>();
    assert_eq!(
        ids(console_peek(http, "q").await),
        vec![json!("b"), json!("a")]
    );
    assert!(console_peek(http, "q&dlq=1").await.is_empty());
    assert!(console_peek(http, "p").await.is_empty());
    drop(server.terminate());
}
