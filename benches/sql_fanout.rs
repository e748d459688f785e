//! SQL fan-out benchmark: `cargo bench --bench sql_fanout`.
//!
//! One topic with 100 subscriptions, each with its own SQL filter (comparisons, arithmetic,
//! LIKE, IN, EXISTS, IS NULL, `sys.` properties, parameters), compiled once at rule creation.
//! Each message sent is evaluated against all 100 filters and copied to every subscription
//! that matches.
//!
//! 1. Broker level (`Broker::apply` with `Op::Send`, one message per operation, no I/O):
//!    the mixed filters; the same filters with messages none of them match (evaluation only);
//!    and 100 TrueFilter subscriptions (copying only), for comparison.
//! 2. Over HTTP (in-process server, in-memory storage), 8 concurrent senders.
//!
//! Sizes: `BENCH_FANOUT_MESSAGES` (broker level, default 20000), `BENCH_FANOUT_HTTP`
//! (default 2000).

use localzure::broker::entity::{EntityProps, Filter, Rule, SqlFilterDef};
use localzure::broker::message::NewMessage;
use localzure::broker::op::{Op, OpRecord};
use localzure::broker::value::Value;
use localzure::broker::Broker;
use localzure::config::Config;
use localzure::service::ServiceBusBackend;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

mod common;
use common::env_usize;

const SUBSCRIPTIONS: usize = 100;
/// Messages sent into one broker before it is rebuilt (bounds memory; rebuilds are untimed).
const ROUND: usize = 1000;
const NOW: i64 = 1_700_000_000_000;

/// The filter of subscription `i` (and its parameters): five families, each with distinct
/// constants.
fn filter(i: usize) -> (String, BTreeMap<String, Value>) {
    let mut params = BTreeMap::new();
    let text = match i % 5 {
        0 => format!("region = 'r{}' AND qty > {}", i % 10, i % 40),
        1 => format!(
            "sys.Label LIKE 'order-{}%' AND sys.Label NOT LIKE '%!_test' ESCAPE '!'",
            i % 10
        ),
        2 => format!(
            "color IN ('c{}', 'c{}', 'none') AND NOT EXISTS(internal)",
            i % 7,
            (i + 3) % 7
        ),
        3 => {
            params.insert("@min".to_string(), Value::Int((i % 6) as i64));
            format!(
                "sys.To = 'shop-{}' OR (priority >= @min AND sys.CorrelationId IS NOT NULL)",
                i % 4
            )
        }
        _ => format!(
            "price * qty > {} AND (sys.ContentType = 'application/json' OR user.vip = TRUE)",
            (i % 20) * 50
        ),
    };
    (text, params)
}

/// A varied message (`n` picks the values); `miss` makes one no filter matches.
fn message(n: usize, miss: bool) -> NewMessage {
    let mut props = BTreeMap::new();
    let mut m = NewMessage {
        message_id: format!("m{n}"),
        body: vec![b'x'; 64],
        ..NewMessage::default()
    };
    if miss {
        props.insert("region".into(), Value::String("nowhere".into()));
        props.insert("color".into(), Value::String("grey".into()));
        props.insert("qty".into(), Value::Int(0));
        props.insert("price".into(), Value::Double(0.0));
        m.label = Some("invoice".into());
    } else {
        props.insert("region".into(), Value::String(format!("r{}", n % 10)));
        props.insert("qty".into(), Value::Int((n % 50) as i64));
        props.insert("color".into(), Value::String(format!("c{}", n % 7)));
        props.insert("price".into(), Value::Double((n % 13) as f64 * 2.5));
        props.insert("priority".into(), Value::Int((n % 8) as i64));
        if n.is_multiple_of(3) {
            props.insert("vip".into(), Value::Bool(true));
        }
        if n.is_multiple_of(11) {
            props.insert("internal".into(), Value::Bool(true));
        }
        m.label = Some(format!(
            "order-{}{}",
            n % 10,
            if n.is_multiple_of(9) { "_test" } else { "" }
        ));
        m.to = Some(format!("shop-{}", n % 6));
        if n.is_multiple_of(2) {
            m.correlation_id = Some(format!("c{n}"));
        }
        if n.is_multiple_of(4) {
            m.content_type = Some("application/json".into());
        }
    }
    m.properties = props;
    m
}

fn apply(b: &mut Broker, op: Op) {
    let r = b.apply(&OpRecord { at: NOW, op }).result;
    if let Err(e) = r {
        panic!("{e}");
    }
}

/// A broker with the topic and its 100 subscriptions; `sql` false gives TrueFilters.
fn build(sql: bool) -> Broker {
    let mut b = Broker::new(NOW);
    apply(
        &mut b,
        Op::CreateTopic {
            name: "t".into(),
            props: EntityProps {
                max_size_in_megabytes: 80 * 1024,
                ..EntityProps::default()
            },
        },
    );
    for i in 0..SUBSCRIPTIONS {
        let rule = sql.then(|| {
            let (expression, parameters) = filter(i);
            Rule {
                name: "f".into(),
                filter: Filter::Sql(SqlFilterDef {
                    expression,
                    parameters,
                    ..SqlFilterDef::default()
                }),
                action: None,
                created_at: NOW,
            }
        });
        apply(
            &mut b,
            Op::CreateSubscription {
                topic: "t".into(),
                name: format!("s{i:03}"),
                props: EntityProps::default(),
                rule,
            },
        );
    }
    b
}

/// Copies stored over all subscriptions.
fn stored(b: &Broker) -> u64 {
    (0..SUBSCRIPTIONS)
        .map(|i| {
            let c = b
                .subscription_info("t", &format!("s{i:03}"))
                .expect("subscription")
                .counts;
            c.active + c.scheduled
        })
        .sum()
}

struct Run {
    messages: usize,
    elapsed: Duration,
    copies: u64,
}

fn run(messages: &[NewMessage], total: usize, sql: bool) -> Run {
    let mut elapsed = Duration::ZERO;
    let mut copies = 0;
    let mut sent = 0;
    while sent < total {
        let mut b = build(sql);
        let n = ROUND.min(total - sent);
        let started = Instant::now();
        for k in 0..n {
            let mut m = messages[(sent + k) % messages.len()].clone();
            m.message_id = format!("{}", sent + k);
            apply(
                &mut b,
                Op::Send {
                    entity: "t".into(),
                    messages: vec![m],
                },
            );
        }
        elapsed += started.elapsed();
        copies += stored(&b);
        sent += n;
    }
    Run {
        messages: total,
        elapsed,
        copies,
    }
}

fn report(name: &str, r: &Run) {
    let secs = r.elapsed.as_secs_f64();
    println!(
        "{name:<34} {:>9.0} msg/s  {:>7.2} µs/fan-out  {:>6.2} of {SUBSCRIPTIONS} subscriptions matched on average",
        r.messages as f64 / secs,
        secs * 1e6 / r.messages as f64,
        r.copies as f64 / r.messages as f64
    );
}

const TOPIC_XML: &str = r#"<entry xmlns="http://www.w3.org/2005/Atom"><content type="application/xml"><TopicDescription xmlns="http://schemas.microsoft.com/netservices/2010/10/servicebus/connect"/></content></entry>"#;
const SUB_XML: &str = r#"<entry xmlns="http://www.w3.org/2005/Atom"><content type="application/xml"><SubscriptionDescription xmlns="http://schemas.microsoft.com/netservices/2010/10/servicebus/connect"/></content></entry>"#;

fn rule_xml(i: usize) -> String {
    let (text, params) = filter(i);
    let esc = |s: &str| {
        s.replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
    };
    let mut p = String::new();
    for (k, v) in &params {
        if let Value::Int(n) = v {
            p.push_str(&format!(
                "<KeyValueOfstringanyType><Key>{k}</Key><Value i:type=\"d6p1:int\" \
                 xmlns:d6p1=\"http://www.w3.org/2001/XMLSchema\">{n}</Value></KeyValueOfstringanyType>"
            ));
        }
    }
    format!(
        "<entry xmlns=\"http://www.w3.org/2005/Atom\"><content type=\"application/xml\">\
         <RuleDescription xmlns=\"http://schemas.microsoft.com/netservices/2010/10/servicebus/connect\" \
         xmlns:i=\"http://www.w3.org/2001/XMLSchema-instance\">\
         <Filter i:type=\"SqlFilter\"><SqlExpression>{}</SqlExpression>\
         <CompatibilityLevel>20</CompatibilityLevel><Parameters>{p}</Parameters></Filter>\
         <Action i:type=\"EmptyRuleAction\"/><Name>f</Name></RuleDescription></content></entry>",
        esc(&text)
    )
}

/// The BrokerProperties and property headers of `message(n, false)`.
fn http_headers(n: usize) -> Vec<(String, String)> {
    let m = message(n, false);
    let mut bp = serde_json::json!({ "MessageId": format!("h{n}") });
    if let Some(l) = &m.label {
        bp["Label"] = l.clone().into();
    }
    if let Some(t) = &m.to {
        bp["To"] = t.clone().into();
    }
    if let Some(c) = &m.correlation_id {
        bp["CorrelationId"] = c.clone().into();
    }
    let mut h = vec![("BrokerProperties".to_string(), bp.to_string())];
    if let Some(ct) = &m.content_type {
        h.push(("Content-Type".to_string(), ct.clone()));
    }
    for (k, v) in &m.properties {
        h.push((k.clone(), v.to_header()));
    }
    h
}

/// Sends `total` messages over HTTP with 8 concurrent senders; returns (msg/s, copies).
async fn http_run(total: usize) -> (f64, u64) {
    let backend = ServiceBusBackend::new(None);
    backend.initialize_persistence().await.expect("init");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let shutdown = CancellationToken::new();
    let server = {
        let b = backend.clone();
        let s = shutdown.clone();
        let config = Config::default();
        tokio::spawn(async move { localzure::server::run(listener, b, &config, s).await })
    };
    let base = format!("http://{addr}");
    let client = reqwest::Client::new();
    let put = |path: String, body: String| {
        let client = client.clone();
        let url = format!("{base}/{path}");
        async move {
            let r = client
                .put(url)
                .header(
                    "Content-Type",
                    "application/atom+xml;type=entry;charset=utf-8",
                )
                .body(body)
                .send()
                .await
                .expect("PUT");
            assert_eq!(
                r.status().as_u16(),
                201,
                "{}",
                r.text().await.unwrap_or_default()
            );
        }
    };
    put("t".into(), TOPIC_XML.into()).await;
    for i in 0..SUBSCRIPTIONS {
        put(format!("t/Subscriptions/s{i:03}"), SUB_XML.into()).await;
        let r = client
            .delete(format!("{base}/t/Subscriptions/s{i:03}/Rules/$Default"))
            .send()
            .await
            .expect("DELETE");
        assert_eq!(r.status().as_u16(), 200);
        put(format!("t/Subscriptions/s{i:03}/Rules/f"), rule_xml(i)).await;
    }
    const SENDERS: usize = 8;
    let started = Instant::now();
    let mut tasks = Vec::new();
    for s in 0..SENDERS {
        let client = client.clone();
        let url = format!("{base}/t/messages");
        tasks.push(tokio::spawn(async move {
            let mut n = s;
            while n < total {
                let mut req = client.post(&url).body(vec![b'x'; 64]);
                for (k, v) in http_headers(n) {
                    req = req.header(k, v);
                }
                let r = req.send().await.expect("send");
                assert_eq!(r.status().as_u16(), 201);
                n += SENDERS;
            }
        }));
    }
    for t in tasks {
        t.await.expect("sender");
    }
    let secs = started.elapsed().as_secs_f64();
    let copies = backend.read(stored);
    shutdown.cancel();
    let _ = server.await;
    (total as f64 / secs, copies)
}

#[tokio::main]
async fn main() {
    let total = env_usize("BENCH_FANOUT_MESSAGES", 20_000, 200);
    let http_total = env_usize("BENCH_FANOUT_HTTP", 2_000, 50);
    let hits: Vec<NewMessage> = (0..997).map(|n| message(n, false)).collect();
    let misses: Vec<NewMessage> = (0..997).map(|n| message(n, true)).collect();
    println!(
        "== fan-out of one message to {SUBSCRIPTIONS} subscriptions, broker level (Broker::apply, Op::Send), {total} messages"
    );
    // Warm-up.
    run(&hits, ROUND.min(total), true);
    report("mixed SQL filters", &run(&hits, total, true));
    report(
        "mixed SQL filters, nothing matches",
        &run(&misses, total, true),
    );
    report("TrueFilter (copy only)", &run(&hits, total, false));
    println!(
        "== over HTTP (in-process server, in-memory, 8 concurrent senders), {http_total} messages"
    );
    let (rate, copies) = http_run(http_total).await;
    println!(
        "{:<34} {:>9.0} msg/s  {:>6.2} of {SUBSCRIPTIONS} subscriptions matched on average",
        "mixed SQL filters",
        rate,
        copies as f64 / http_total as f64
    );
}
