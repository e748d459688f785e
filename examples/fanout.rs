//! Fan-out row of `scripts/bench.sh`: one 1 KB message sent to a topic with 100 TrueFilter
//! subscriptions, at broker level (`Broker::apply` with `Op::Send`, no I/O), timed per send;
//! each send stores 100 copies. The target is at most 30 µs per fan-out.
//!
//! Usage: `fanout [MESSAGES]` (default 20000). Prints
//! `fanout subscriptions=100 messages=20000 us_per_fanout=12.34 ns_per_copy=123`.
//! The mixed-SQL-filter variant is `cargo bench --bench sql_fanout`.

use localzure::broker::entity::EntityProps;
use localzure::broker::message::NewMessage;
use localzure::broker::op::{Op, OpRecord};
use localzure::broker::Broker;
use std::time::{Duration, Instant};

const SUBSCRIPTIONS: usize = 100;
/// Sends into one broker before it is rebuilt (bounds memory; rebuilds are untimed).
const ROUND: usize = 2000;
const NOW: i64 = 1_700_000_000_000;

fn apply(b: &mut Broker, op: Op) -> Result<(), String> {
    b.apply(&OpRecord { at: NOW, op })
        .result
        .map(|_| ())
        .map_err(|e| e.to_string())
}

fn build() -> Result<Broker, String> {
    let mut b = Broker::new(NOW);
    let props = EntityProps {
        max_size_in_megabytes: 80 * 1024,
        ..EntityProps::default()
    };
    apply(
        &mut b,
        Op::CreateTopic {
            name: "t".into(),
            props,
        },
    )?;
    for i in 0..SUBSCRIPTIONS {
        // No rule given: the subscription gets the `$Default` TrueFilter.
        apply(
            &mut b,
            Op::CreateSubscription {
                topic: "t".into(),
                name: format!("s{i:03}"),
                props: EntityProps::default(),
                rule: None,
            },
        )?;
    }
    Ok(b)
}

fn main() -> Result<(), String> {
    let total: usize = std::env::args()
        .nth(1)
        .map(|a| a.parse().map_err(|e| format!("MESSAGES: {e}")))
        .transpose()?
        .unwrap_or(20_000);
    let mut elapsed = Duration::ZERO;
    let mut sent = 0;
    while sent < total {
        let mut b = build()?;
        let n = ROUND.min(total - sent);
        // The operation is built outside the timed part, as the service hands it over.
        let ops: Vec<Op> = (0..n)
            .map(|k| Op::Send {
                entity: "t".into(),
                messages: vec![NewMessage {
                    message_id: format!("m{}", sent + k),
                    body: vec![b'x'; 1024],
                    ..NewMessage::default()
                }],
            })
            .collect();
        let started = Instant::now();
        for op in ops {
            apply(&mut b, op)?;
        }
        elapsed += started.elapsed();
        sent += n;
    }
    let us = elapsed.as_secs_f64() * 1e6 / total as f64;
    println!(
        "fanout subscriptions={SUBSCRIPTIONS} messages={total} us_per_fanout={us:.2} ns_per_copy={:.0}",
        us * 1000.0 / SUBSCRIPTIONS as f64
    );
    Ok(())
}
