//! Crash loop over the REAL binary: concurrent HTTP clients send, peek-lock and complete while
//! the server is killed with SIGKILL at a random moment; after every restart the exported state
//! is checked against what the clients saw acknowledged:
//!
//! - every acknowledged send is present exactly once, unless a completion of it was attempted
//!   (an acknowledged completion means it must be gone);
//! - no message appears twice, and none appears that no client tried to send;
//! - a message keeps its sequence number, and a message first seen after a restart has a
//!   sequence number above everything seen before it (sequence numbers never go back);
//! - start-up never fails (the harness panics with the log if it does).
//!
//! Every backend with a file journal runs in both sync modes (`LOCALZURE_WAL_SYNC=interval`,
//! the default, acknowledges written-not-fsynced records: a SIGKILL must not lose them either).
//!
//! `CRASH_LOOP_CYCLES` (default 3, so CI stays fast) sets the cycles per backend and
//! `CRASH_LOOP_SEED` replays a run; the seed is printed. The kill moment is "after a random
//! number of acknowledged operations", so no sleeps are involved.

mod process;

use process::{Http, Kind, Server, Store};
use reqwest::{Method, StatusCode};
use serde_json::json;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use tokio::sync::watch;

const QUEUE: &str = "work";
const WORKERS: usize = 4;

/// xorshift64*: tiny, seedable, good enough to pick moments and choices.
#[derive(Clone)]
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed.max(1))
    }
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// What the clients know, across all cycles.
#[derive(Default)]
struct Ledger {
    /// Sends that were tried (acknowledged or not).
    attempted: BTreeSet<String>,
    /// Sends acknowledged with 201 (or seen persisted after a restart).
    acked: BTreeSet<String>,
    /// Completions that were tried and not (yet) shown to have failed.
    completing: BTreeSet<String>,
    /// Completions acknowledged with 200.
    completed: BTreeSet<String>,
    /// Sequence numbers seen on received messages.
    seen_seq: BTreeMap<String, u64>,
    /// Acknowledged operations in the current cycle.
    ops: u64,
}

/// One client: sends and, on some turns, peek-locks and completes, until a request fails
/// (the server was killed).
async fn worker(
    http: Http,
    ledger: Arc<Mutex<Ledger>>,
    progress: Arc<watch::Sender<u64>>,
    cycle: usize,
    w: usize,
    mut rng: Rng,
) {
    for i in 0.. {
        let id = format!("c{cycle}-w{w}-{i}");
        ledger.lock().unwrap().attempted.insert(id.clone());
        let bp = json!({ "MessageId": id }).to_string();
        let r = http
            .try_request(
                Method::POST,
                &format!("{QUEUE}/messages"),
                &[("BrokerProperties", &bp)],
                format!("body of {id}"),
            )
            .await;
        match r {
            Ok(r) if r.status == StatusCode::CREATED => {
                let mut l = ledger.lock().unwrap();
                l.acked.insert(id);
                l.ops += 1;
                progress.send_replace(l.ops);
            }
            Ok(r) => panic!("send {id}: unexpected {} {}", r.status, r.body),
            Err(_) => return,
        }
        if rng.below(3) == 0 {
            continue;
        }
        let r = http
            .try_request(
                Method::POST,
                &format!("{QUEUE}/messages/head?timeout=0"),
                &[],
                "",
            )
            .await;
        let r = match r {
            Ok(r) if r.status == StatusCode::NO_CONTENT => continue,
            Ok(r) if r.status == StatusCode::CREATED => r,
            Ok(r) => panic!("peek-lock: unexpected {} {}", r.status, r.body),
            Err(_) => return,
        };
        let bp = r.bp();
        let got = bp["MessageId"].as_str().expect("MessageId").to_string();
        let seq = bp["SequenceNumber"].as_u64().expect("SequenceNumber");
        let location = r.header("Location").expect("Location").to_string();
        {
            let mut l = ledger.lock().unwrap();
            if let Some(prev) = l.seen_seq.insert(got.clone(), seq) {
                assert_eq!(prev, seq, "{got} changed sequence number");
            }
            assert!(
                !l.completed.contains(&got),
                "{got} was delivered again after an acknowledged completion"
            );
            l.completing.insert(got.clone());
        }
        let path = location
            .strip_prefix(&http.base_url)
            .expect("Location under the base URL")
            .to_string();
        match http.try_request(Method::DELETE, &path, &[], "").await {
            Ok(r) if r.status == StatusCode::OK => {
                let mut l = ledger.lock().unwrap();
                l.completed.insert(got);
                l.ops += 1;
                progress.send_replace(l.ops);
            }
            Ok(r) => panic!("complete {got}: unexpected {} {}", r.status, r.body),
            Err(_) => return,
        }
    }
}

/// Checks the restarted server's state against the ledger; returns the messages checked and
/// the highest sequence number seen.
fn verify(
    doc: &serde_json::Value,
    ledger: &mut Ledger,
    max_seq_before: u64,
    what: &str,
) -> (usize, u64) {
    let mut present: BTreeMap<String, u64> = BTreeMap::new();
    for m in process::messages(doc) {
        if m["entity"]["name"] != QUEUE {
            continue;
        }
        let id = m["message"]["content"]["message_id"]
            .as_str()
            .expect("message_id")
            .to_string();
        let seq = m["message"]["sequence_number"]
            .as_u64()
            .expect("sequence_number");
        assert!(
            present.insert(id.clone(), seq).is_none(),
            "{what}: {id} is present twice"
        );
    }
    let mut max_seq = max_seq_before;
    for (id, seq) in &present {
        assert!(ledger.attempted.contains(id), "{what}: {id} was never sent");
        assert!(
            !ledger.completed.contains(id),
            "{what}: {id} is present after an acknowledged completion"
        );
        match ledger.seen_seq.get(id) {
            Some(prev) => assert_eq!(prev, seq, "{what}: {id} changed sequence number"),
            None => assert!(
                *seq > max_seq_before,
                "{what}: new message {id} has sequence number {seq}, not above {max_seq_before}"
            ),
        }
        max_seq = max_seq.max(*seq);
    }
    for id in &ledger.acked {
        if ledger.completing.contains(id) || ledger.completed.contains(id) {
            continue;
        }
        assert!(
            present.contains_key(id),
            "{what}: acknowledged send {id} was lost"
        );
    }
    // What is present now is durable; a completion that did not happen must be redone.
    for (id, seq) in &present {
        ledger.acked.insert(id.clone());
        ledger.completing.remove(id);
        ledger.seen_seq.insert(id.clone(), *seq);
    }
    // A completion in flight at the kill that did take effect is as good as acknowledged.
    let gone: Vec<String> = ledger
        .completing
        .iter()
        .filter(|id| !present.contains_key(*id))
        .cloned()
        .collect();
    for id in gone {
        ledger.completing.remove(&id);
        ledger.completed.insert(id);
    }
    (present.len(), max_seq)
}

async fn crash_loop(kind: Kind, wal_sync: &str) {
    let cycles: usize = std::env::var("CRASH_LOOP_CYCLES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    let seed: u64 = std::env::var("CRASH_LOOP_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(1)
        });
    println!(
        "crash loop {} ({wal_sync}): seed {seed} (CRASH_LOOP_SEED={seed} replays the choices)",
        kind.as_str()
    );
    let mut rng = Rng::new(seed);
    let store = Store::new(kind);
    let mut env = store.env();
    env.push(("LOCALZURE_WAL_SYNC".into(), wal_sync.into()));
    // A long interval: only the acknowledged write, never a timely fsync, carries the data.
    env.push(("LOCALZURE_WAL_SYNC_INTERVAL_MS".into(), "600000".into()));
    let ledger = Arc::new(Mutex::new(Ledger::default()));
    let mut server = Server::start(&env);
    server.http.create_queue(QUEUE, "").await;
    let mut max_seq = 0;
    let mut checked = 0;
    for cycle in 0..cycles {
        let target = 20 + rng.below(150);
        ledger.lock().unwrap().ops = 0;
        let (tx, mut rx) = watch::channel(0u64);
        let tx = Arc::new(tx);
        let tasks: Vec<_> = (0..WORKERS)
            .map(|w| {
                let http = server.http.clone();
                let ledger = ledger.clone();
                let rng = Rng::new(rng.next());
                tokio::spawn(worker(http, ledger, tx.clone(), cycle, w, rng))
            })
            .collect();
        drop(tx);
        rx.wait_for(|ops| *ops >= target)
            .await
            .expect("clients make progress");
        let logs = tokio::task::block_in_place(|| server.kill());
        assert!(!logs.contains("panicked"), "{}", logs.text());
        for t in tasks {
            t.await.expect("client task does not panic");
        }
        server = Server::start(&env);
        let what = format!(
            "{} ({wal_sync}) cycle {cycle} (killed after {target} acknowledged operations)",
            kind.as_str()
        );
        let doc = server.http.export().await;
        let (n, m) = verify(&doc, &mut ledger.lock().unwrap(), max_seq, &what);
        checked += n;
        max_seq = m;
    }
    let l = ledger.lock().unwrap();
    println!(
        "crash loop {} ({wal_sync}): {cycles} cycles, {} sends acknowledged, {} completions acknowledged, {checked} message presences checked, highest sequence number {max_seq}",
        kind.as_str(),
        l.acked.len(),
        l.completed.len()
    );
    drop(l);
    server.terminate();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn crash_loop_sqlite_interval() {
    crash_loop(Kind::Sqlite, "interval").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn crash_loop_sqlite_always() {
    crash_loop(Kind::Sqlite, "always").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn crash_loop_json_interval() {
    crash_loop(Kind::Json, "interval").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn crash_loop_json_always() {
    crash_loop(Kind::Json, "always").await;
}
