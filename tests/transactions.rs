//! AMQP transactions with a real client: the fe2o3-amqp controller (`Controller`,
//! `Transaction::declare`, `post`, `accept`, `commit`, `rollback`) against the in-process AMQP
//! endpoint; and a crash during commits against the real binary (SIGKILL, then restart: every
//! committed transaction is whole, nothing uncommitted is visible).

mod process;

use fe2o3_amqp::connection::ConnectionHandle;
use fe2o3_amqp::link::delivery::Delivery;
use fe2o3_amqp::sasl_profile::SaslProfile;
use fe2o3_amqp::session::SessionHandle;
use fe2o3_amqp::transaction::{
    Controller, Transaction, TransactionDischarge, TransactionPosting, TransactionRetirement,
};
use fe2o3_amqp::types::definitions::Fields;
use fe2o3_amqp::types::messaging::{AmqpValue, Body, Message, Outcome};
use fe2o3_amqp::types::primitives::{Symbol, Value};
use fe2o3_amqp::{Connection, Receiver, Sender, Session};
use localzure::amqp::{run, AmqpOptions};
use localzure::broker::entity::EntityProps;
use localzure::broker::op::{Op, QueuePath, Settlement};
use localzure::ServiceBusBackend;
use std::net::SocketAddr;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

const WAIT: Duration = Duration::from_secs(10);

struct Server {
    addr: SocketAddr,
    backend: ServiceBusBackend,
    shutdown: CancellationToken,
}

impl Server {
    async fn start(timeout_ms: Option<i64>) -> Server {
        let backend = ServiceBusBackend::new(None);
        if let Some(ms) = timeout_ms {
            backend.set_transaction_timeout_ms(ms);
        }
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let shutdown = CancellationToken::new();
        tokio::spawn(run(
            listener,
            backend.clone(),
            AmqpOptions::default(),
            shutdown.clone(),
        ));
        let s = Server {
            addr,
            backend,
            shutdown,
        };
        for q in ["a", "b"] {
            s.backend
                .execute(Op::CreateQueue {
                    name: q.into(),
                    props: EntityProps::default(),
                })
                .await
                .expect("create queue");
        }
        s
    }

    /// One message in queue `a`, to receive and settle in a transaction.
    async fn seed(&self) {
        let m = localzure::broker::message::NewMessage {
            message_id: "seed".into(),
            ..Default::default()
        };
        self.backend.send("a", vec![m]).await.expect("seed");
    }

    fn count(&self, q: &str) -> usize {
        self.backend
            .read(|b| b.peek(&QueuePath::queue(q), 0, 10_000).map(|m| m.len()))
            .expect("peek")
    }

    async fn connect(&self) -> (ConnectionHandle<()>, SessionHandle<()>) {
        let mut conn = Connection::builder()
            .container_id("txn-test")
            .sasl_profile(SaslProfile::Anonymous)
            .open(format!("amqp://{}", self.addr).as_str())
            .await
            .expect("open");
        let session = Session::begin(&mut conn).await.expect("begin");
        (conn, session)
    }
}

/// A client that attached a controller and a receiver on `a` and received the seeded message.
struct Peer {
    _conn: ConnectionHandle<()>,
    session: SessionHandle<()>,
    controller: Controller,
    receiver: Receiver,
    incoming: Delivery<Body<Value>>,
}

impl Server {
    async fn peer_with_one_received(&self) -> Peer {
        self.seed().await;
        let (_conn, mut session) = self.connect().await;
        let controller = within(Controller::attach(&mut session, "ctl"))
            .await
            .expect("coordinator attaches");
        let mut receiver = Receiver::attach(&mut session, "from-a", "a")
            .await
            .expect("receiver");
        let incoming = within(receiver.recv::<Body<Value>>())
            .await
            .expect("receive");
        Peer {
            _conn,
            session,
            controller,
            receiver,
            incoming,
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

fn text(s: &str) -> Message<AmqpValue<String>> {
    Message::builder().value(s.to_string()).build()
}

async fn within<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(WAIT, f).await.expect("in time")
}

#[tokio::test]
async fn commit_makes_sends_and_completes_visible_together() {
    let s = Server::start(None).await;
    let Peer {
        _conn,
        mut session,
        controller,
        mut receiver,
        incoming,
    } = s.peer_with_one_received().await;
    let mut sender = Sender::attach(&mut session, "to-a", "a")
        .await
        .expect("sender");
    let txn = within(Transaction::declare(&controller, None))
        .await
        .expect("declared");
    let out = within(txn.post(&mut sender, text("out-1")))
        .await
        .expect("post");
    assert!(matches!(out, Outcome::Accepted(_)), "{out:?}");
    within(txn.post(&mut sender, text("out-2")))
        .await
        .expect("post");
    within(txn.accept(&mut receiver, &incoming))
        .await
        .expect("transactional complete");
    // Nothing is visible before commit: the sends are not in the queue and the received
    // message is still there, locked.
    assert_eq!(s.count("a"), 1, "only the locked incoming message");
    within(txn.commit()).await.expect("commit");
    assert_eq!(
        s.count("a"),
        2,
        "the incoming is completed, both sends arrived"
    );
    let ids: Vec<u64> = s
        .backend
        .read(|b| b.peek(&QueuePath::queue("a"), 0, 10))
        .expect("peek")
        .iter()
        .map(|m| m.sequence_number)
        .collect();
    assert_eq!(ids.len(), 2);
    assert!(
        ids.iter().all(|&n| n > 1),
        "the seeded message (1) is gone: {ids:?}"
    );
}

#[tokio::test]
async fn rollback_discards_sends_and_keeps_the_lock() {
    let s = Server::start(None).await;
    let Peer {
        _conn,
        mut session,
        controller,
        mut receiver,
        incoming,
    } = s.peer_with_one_received().await;
    let mut sender = Sender::attach(&mut session, "to-a", "a")
        .await
        .expect("sender");
    let txn = within(Transaction::declare(&controller, None))
        .await
        .expect("declared");
    within(txn.post(&mut sender, text("never")))
        .await
        .expect("post");
    within(txn.accept(&mut receiver, &incoming))
        .await
        .expect("transactional complete");
    within(txn.rollback()).await.expect("rollback");
    let msgs = s
        .backend
        .read(|b| b.peek(&QueuePath::queue("a"), 0, 10))
        .expect("peek");
    assert_eq!(msgs.len(), 1, "the send was discarded");
    assert!(
        msgs[0].lock.is_some(),
        "the message is still locked to its receiver"
    );
    assert_eq!(s.backend.open_transactions(), 0);
}

#[tokio::test]
async fn a_commit_that_cannot_apply_rolls_back_whole() {
    let s = Server::start(None).await;
    let Peer {
        _conn,
        mut session,
        controller,
        mut receiver,
        incoming,
    } = s.peer_with_one_received().await;
    let mut sender = Sender::attach(&mut session, "to-a", "a")
        .await
        .expect("sender");
    let txn = within(Transaction::declare(&controller, None))
        .await
        .expect("declared");
    within(txn.post(&mut sender, text("discarded")))
        .await
        .expect("post");
    within(txn.accept(&mut receiver, &incoming))
        .await
        .expect("transactional complete");
    // The message is completed outside the transaction meanwhile: its lock is gone, so the
    // transaction's complete cannot apply at commit.
    let token = s
        .backend
        .read(|b| b.peek(&QueuePath::queue("a"), 0, 1))
        .expect("peek")[0]
        .lock
        .expect("locked")
        .token;
    s.backend
        .settle(&QueuePath::queue("a"), token, Settlement::Complete)
        .await
        .expect("complete outside");
    let err = within(txn.commit()).await.expect_err("commit refused");
    let text = format!("{err:?}");
    // amqp:transaction:rollback, as the client decodes it.
    assert!(text.contains("TransactionError(Rollback)"), "{text}");
    assert_eq!(
        s.count("a"),
        0,
        "the transaction's send was not applied either"
    );
}

#[tokio::test]
async fn a_transaction_past_its_timeout_is_rolled_back() {
    let s = Server::start(Some(300)).await;
    let (_conn, mut session) = s.connect().await;
    let controller = within(Controller::attach(&mut session, "ctl"))
        .await
        .expect("controller");
    let mut sender = Sender::attach(&mut session, "to-a", "a")
        .await
        .expect("sender");
    let txn = within(Transaction::declare(&controller, None))
        .await
        .expect("declared");
    within(txn.post(&mut sender, text("late")))
        .await
        .expect("post");
    // The service's timer rolls it back on its own (poll, do not sleep a fixed time).
    within(async {
        while s.backend.open_transactions() > 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    let err = within(txn.commit())
        .await
        .expect_err("commit after the timeout");
    let text = format!("{err:?}");
    // amqp:transaction:timeout, as the client decodes it.
    assert!(text.contains("TransactionError(Timeout)"), "{text}");
    assert_eq!(s.count("a"), 0, "nothing of the transaction was applied");
}

#[tokio::test]
async fn send_via_completes_from_one_queue_and_sends_to_another() {
    let s = Server::start(None).await;
    let Peer {
        _conn,
        mut session,
        controller,
        mut receiver,
        incoming,
    } = s.peer_with_one_received().await;
    // The protocol guide's send-via attach: target = the via entity, the link property
    // com.microsoft:transfer-destination-address = the destination.
    let mut props = Fields::new();
    props.insert(
        Symbol::from("com.microsoft:transfer-destination-address"),
        Value::String("b".into()),
    );
    let mut via = Sender::builder()
        .name("to-b-via-a")
        .target("a")
        .properties(props)
        .attach(&mut session)
        .await
        .expect("send-via sender");
    let mut direct_b = Sender::attach(&mut session, "to-b", "b").await.expect("b");

    let txn = within(Transaction::declare(&controller, None))
        .await
        .expect("declared");
    within(txn.accept(&mut receiver, &incoming))
        .await
        .expect("complete from a");
    let out = within(txn.post(&mut via, text("forwarded")))
        .await
        .expect("post via a");
    assert!(matches!(out, Outcome::Accepted(_)), "{out:?}");
    // A direct send to a second top-level entity is refused, as the service refuses it.
    let refused = within(txn.post(&mut direct_b, text("direct")))
        .await
        .expect("answered");
    match refused {
        Outcome::Rejected(r) => {
            let e = format!("{r:?}");
            assert!(e.contains("cannot span multiple top-level entities"), "{e}");
        }
        other => panic!("expected a rejection, got {other:?}"),
    }
    assert_eq!(s.count("b"), 0, "invisible before commit");
    within(txn.commit()).await.expect("commit");
    assert_eq!(s.count("a"), 0, "completed");
    assert_eq!(s.count("b"), 1, "sent via a to b");
}

#[tokio::test]
async fn successive_transactions_on_one_controller_commit_independently() {
    let s = Server::start(None).await;
    let (_conn, mut session) = s.connect().await;
    let controller = within(Controller::attach(&mut session, "ctl"))
        .await
        .expect("controller");
    let txn = within(Transaction::declare(&controller, None))
        .await
        .expect("declared");
    let mut sender = Sender::attach(&mut session, "to-a", "a")
        .await
        .expect("sender");
    within(txn.post(&mut sender, text("x")))
        .await
        .expect("post");
    within(txn.commit()).await.expect("commit");
    // A second transaction on the same controller, with no work: commits, changes nothing.
    let again = within(Transaction::declare(&controller, None))
        .await
        .expect("declared");
    within(again.commit())
        .await
        .expect("an empty transaction commits");
    assert_eq!(s.count("a"), 1);
}

// ----- crash during commit (real binary) ------------------------------------------------------

/// The framework pattern ("sends atomic with receive") under SIGKILL: each transaction
/// completes one message `in-{n}` received from queue `in` and sends three messages
/// `t{n}-{0,1,2}` via `in` to queue `q`, in a loop against the real binary on SQLite. The
/// binary is killed mid-loop and restarted: for every n, either `in-{n}` is gone and all three
/// sends are present, or `in-{n}` is still there and none is; every commit the client saw
/// acknowledged is applied.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_during_commits_leaves_every_transaction_whole_or_absent() {
    use process::{Kind, Server as Proc, Store};
    const SEEDED: u64 = 60;
    let store = Store::new(Kind::Sqlite);
    let env = store.env();
    let proc = tokio::task::block_in_place(|| Proc::start(&env));
    let amqp = amqp_addr(&proc);
    proc.http.create_queue("in", "").await;
    proc.http.create_queue("q", "").await;
    for n in 0..SEEDED {
        let id = format!("in-{n}");
        proc.http
            .send("in", "x", serde_json::json!({ "MessageId": id }), &[])
            .await;
    }

    let committed = std::sync::Arc::new(std::sync::Mutex::new(Vec::<u64>::new()));
    let c2 = committed.clone();
    // The writer signals when it starts the 16th commit; the kill follows within 0-20 ms, so
    // it lands inside or right around that commit.
    let committing = std::sync::Arc::new(tokio::sync::Notify::new());
    let c3 = committing.clone();
    let writer = tokio::spawn(async move {
        let Ok(mut conn) = Connection::builder()
            .container_id("crash")
            .sasl_profile(SaslProfile::Anonymous)
            .open(format!("amqp://{amqp}").as_str())
            .await
        else {
            return;
        };
        let Ok(mut session) = Session::begin(&mut conn).await else {
            return;
        };
        let Ok(controller) = Controller::attach(&mut session, "ctl").await else {
            return;
        };
        let Ok(mut receiver) = Receiver::attach(&mut session, "r", "in").await else {
            return;
        };
        let mut props = Fields::new();
        props.insert(
            Symbol::from("com.microsoft:transfer-destination-address"),
            Value::String("q".into()),
        );
        let Ok(mut sender) = Sender::builder()
            .name("s")
            .target("in")
            .properties(props)
            .attach(&mut session)
            .await
        else {
            return;
        };
        while let Ok(incoming) = receiver.recv::<Body<Value>>().await {
            let n: u64 = match incoming.message().properties.as_ref() {
                Some(p) => match &p.message_id {
                    Some(fe2o3_amqp::types::messaging::MessageId::String(s)) => {
                        s.trim_start_matches("in-").parse().unwrap_or(u64::MAX)
                    }
                    _ => u64::MAX,
                },
                None => u64::MAX,
            };
            let Ok(txn) = Transaction::declare(&controller, None).await else {
                return;
            };
            if txn.accept(&mut receiver, &incoming).await.is_err() {
                return;
            }
            for i in 0..3 {
                let m = Message::builder()
                    .properties(
                        fe2o3_amqp::types::messaging::Properties::builder()
                            .message_id(format!("t{n}-{i}"))
                            .build(),
                    )
                    .value(Value::String("x".into()))
                    .build();
                if txn.post(&mut sender, m).await.is_err() {
                    return;
                }
            }
            if c2.lock().map(|c| c.len()).unwrap_or(0) == 15 {
                c3.notify_one();
            }
            if txn.commit().await.is_err() {
                return;
            }
            if let Ok(mut c) = c2.lock() {
                c.push(n);
            }
        }
    });
    // Let some commits through, then kill during one.
    within(committing.notified()).await;
    let jitter = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos() % 20)
        .unwrap_or(0);
    tokio::time::sleep(Duration::from_millis(u64::from(jitter))).await;
    let _ = tokio::task::block_in_place(|| proc.kill());
    // The client may not notice the dead peer at once: stop it (what it saw acknowledged is kept).
    writer.abort();
    let _ = writer.await;
    let acknowledged = committed.lock().map(|c| c.clone()).unwrap_or_default();

    let proc = tokio::task::block_in_place(|| Proc::start(&env));
    let ids = process::message_ids(&proc.http.export().await);
    let has = |id: &str| ids.iter().any(|x| x == id);
    for n in 0..SEEDED {
        let sent = (0..3).filter(|i| has(&format!("t{n}-{i}"))).count();
        let incoming = has(&format!("in-{n}"));
        assert!(
            (sent == 3 && !incoming) || (sent == 0 && incoming),
            "transaction {n} is partial (sent {sent} of 3, in-{n} present: {incoming}): {ids:?}"
        );
    }
    for n in &acknowledged {
        assert!(
            has(&format!("t{n}-0")),
            "acknowledged commit {n} is missing"
        );
    }
    assert!(acknowledged.len() >= 15);
    let _ = tokio::task::block_in_place(|| proc.terminate());
}

fn amqp_addr(proc: &process::Server) -> String {
    let line = proc
        .logs
        .wait_for(process::START_DEADLINE, |l| {
            l.contains("AMQP listening on amqp://")
        })
        .expect("AMQP listening line");
    line.split("amqp://")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .expect("address")
        .to_string()
}
