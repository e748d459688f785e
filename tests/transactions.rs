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
use localzure::storage::settings::{JsonConfig, StorageConfig, StorageType};
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
        let s = Server::start_on(timeout_ms, None).await;
        s.create_queues().await;
        s
    }

    /// A server on `storage` (recovered from it when it holds data), or in memory.
    async fn start_on(timeout_ms: Option<i64>, storage: Option<StorageConfig>) -> Server {
        let stored = storage.is_some();
        let backend = ServiceBusBackend::new(storage);
        if stored {
            let status = backend.initialize_persistence().await.expect("recover");
            assert_eq!(status.degraded, None, "{status:?}");
        }
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
        Server {
            addr,
            backend,
            shutdown,
        }
    }

    async fn create_queues(&self) {
        for q in ["a", "b"] {
            self.backend
                .execute(Op::CreateQueue {
                    name: q.into(),
                    props: EntityProps::default(),
                })
                .await
                .expect("create queue");
        }
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

// ----- $management requests inside a transaction ----------------------------------------------

/// The request/response links of an entity's `$management` node, as the SDKs open them; a
/// request posted through `Transaction::post` carries the transaction as its transfer's
/// `transactional-state`, as the .NET and Java SDKs send management requests in a transaction.
struct Management {
    sender: Sender,
    receiver: Receiver,
    next_id: u64,
}

impl Management {
    async fn attach(session: &mut SessionHandle<()>, entity: &str) -> Management {
        let node = format!("{entity}/$management");
        let sender = Sender::attach(session, format!("{entity}-mgmt-requests"), node.as_str())
            .await
            .expect("management sender");
        let receiver = Receiver::builder()
            .name(format!("{entity}-mgmt-replies"))
            .source(node.as_str())
            .target(format!("{entity}-mgmt-client"))
            .attach(session)
            .await
            .expect("management receiver");
        Management {
            sender,
            receiver,
            next_id: 1,
        }
    }

    /// Sends one request in `txn`; answers its statusCode and errorCondition.
    async fn request(
        &mut self,
        txn: &Transaction<'_>,
        operation: &str,
        body: Vec<(&str, Value)>,
    ) -> (i32, Option<String>) {
        let (status, condition, _) = self.request_with_body(txn, operation, body).await;
        (status, condition)
    }

    /// [`Management::request`], answering the response body too.
    async fn request_with_body(
        &mut self,
        txn: &Transaction<'_>,
        operation: &str,
        body: Vec<(&str, Value)>,
    ) -> (i32, Option<String>, Value) {
        let map = body
            .into_iter()
            .map(|(k, v)| (Value::String(k.into()), v))
            .collect();
        let reply_to = self
            .receiver
            .target()
            .as_ref()
            .and_then(|t| t.address.clone())
            .unwrap_or_default();
        let message = Message::builder()
            .properties(
                fe2o3_amqp::types::messaging::Properties::builder()
                    .message_id(self.next_id)
                    .reply_to(reply_to)
                    .build(),
            )
            .application_properties(
                fe2o3_amqp::types::messaging::ApplicationProperties::builder()
                    .insert("operation", operation)
                    .build(),
            )
            .value(Value::Map(map))
            .build();
        self.next_id += 1;
        let out = within(txn.post(&mut self.sender, message))
            .await
            .expect("request transfer");
        assert!(matches!(out, Outcome::Accepted(_)), "{out:?}");
        let reply = within(self.receiver.recv::<Body<Value>>())
            .await
            .expect("response");
        let _ = self.receiver.accept(&reply).await;
        let props = reply.message().application_properties.clone();
        let field = |k: &str| props.as_ref().and_then(|p| p.get(k)).cloned();
        let status = match field("statusCode") {
            Some(fe2o3_amqp::types::primitives::SimpleValue::Int(n)) => n,
            other => panic!("statusCode {other:?}"),
        };
        let condition = match field("errorCondition") {
            Some(fe2o3_amqp::types::primitives::SimpleValue::String(c)) => Some(c),
            Some(fe2o3_amqp::types::primitives::SimpleValue::Symbol(c)) => Some(c.0),
            _ => None,
        };
        let body = match reply.body() {
            Body::Value(v) => v.0.clone(),
            _ => Value::Null,
        };
        (status, condition, body)
    }
}

impl Server {
    /// A message of queue `a`, deferred and received again by sequence number: its lock token
    /// (what a receiver settles through `$management`, as the .NET SDK's
    /// `TransactionalCompleteRollback` test does inside a scope).
    async fn deferred_and_locked(&self) -> uuid::Uuid {
        self.seed().await;
        let from = QueuePath::queue("a");
        let received = self
            .backend
            .execute(Op::Receive {
                from: from.clone(),
                mode: localzure::broker::op::ReceiveMode::PeekLock,
                max: 1,
                lock_tokens: vec![uuid::Uuid::new_v4()],
                session: None,
            })
            .await;
        let token = match received {
            Ok(localzure::broker::Outcome::Received(m)) => m[0].lock.expect("locked").token,
            other => panic!("receive: {other:?}"),
        };
        self.backend
            .settle(
                &from,
                token,
                Settlement::Defer {
                    properties: Default::default(),
                },
            )
            .await
            .expect("defer");
        let seq = self.backend.read(|b| b.peek(&from, 0, 1)).expect("peek")[0].sequence_number;
        self.backend
            .receive_deferred(
                &from,
                vec![seq],
                localzure::broker::op::ReceiveMode::PeekLock,
            )
            .await
            .expect("receive deferred")[0]
            .lock
            .expect("locked")
            .token
    }

    /// A message scheduled an hour ahead in queue `a`; its sequence number.
    async fn scheduled(&self) -> u64 {
        let m = localzure::broker::message::NewMessage {
            message_id: "later".into(),
            scheduled_enqueue_time: Some(self.backend.now() + 3_600_000),
            ..Default::default()
        };
        self.backend.send("a", vec![m]).await.expect("schedule")[0]
    }

    fn scheduled_count(&self, q: &str) -> u64 {
        self.backend
            .read(|b| b.queue_info(q))
            .expect("queue")
            .counts
            .scheduled
    }
}

fn uuid_list(token: uuid::Uuid) -> Value {
    Value::List(vec![Value::String(token.to_string())])
}

fn sequence_numbers(seq: u64) -> Vec<(&'static str, Value)> {
    vec![(
        "sequence-numbers",
        Value::List(vec![Value::Long(seq as i64)]),
    )]
}

async fn declare(controller: &Controller) -> Transaction<'_> {
    within(Transaction::declare(controller, None))
        .await
        .expect("declared")
}

fn refused(status: i32, condition: &str) -> (i32, Option<String>) {
    (status, Some(condition.to_string()))
}

/// A connection with a controller and the `$management` links of queue `a`.
struct ManagementClient {
    _conn: ConnectionHandle<()>,
    _session: SessionHandle<()>,
    controller: Controller,
    mgmt: Management,
}

impl Server {
    async fn management_client(&self) -> ManagementClient {
        let (_conn, mut session) = self.connect().await;
        let controller = within(Controller::attach(&mut session, "ctl"))
            .await
            .expect("controller");
        let mgmt = Management::attach(&mut session, "a").await;
        ManagementClient {
            _conn,
            _session: session,
            controller,
            mgmt,
        }
    }
}

impl ManagementClient {
    /// One request in a new transaction; `between` checks what is visible before the
    /// discharge; then the transaction commits (`commit`) or rolls back.
    async fn in_transaction(
        &mut self,
        operation: &str,
        body: Vec<(&str, Value)>,
        between: impl FnOnce(),
        commit: bool,
    ) -> (i32, Option<String>) {
        let txn = declare(&self.controller).await;
        let answer = self.mgmt.request(&txn, operation, body).await;
        between();
        if commit {
            within(txn.commit()).await.expect("commit");
        } else {
            within(txn.rollback()).await.expect("rollback");
        }
        answer
    }
}

#[tokio::test]
async fn a_deferred_message_is_completed_through_management_only_at_commit() {
    let s = Server::start(None).await;
    let token = s.deferred_and_locked().await;
    let mut c = s.management_client().await;
    const OP: &str = "com.microsoft:update-disposition";
    let complete = || {
        vec![
            ("lock-tokens", uuid_list(token)),
            ("disposition-status", Value::String("completed".into())),
        ]
    };
    let invisible = || assert_eq!(s.count("a"), 1, "invisible before commit");
    // Rolled back (the .NET SDK's TransactionalCompleteRollback): still there, still locked.
    let answer = c.in_transaction(OP, complete(), invisible, false).await;
    assert_eq!(answer, (200, None));
    let kept = s
        .backend
        .read(|b| b.peek(&QueuePath::queue("a"), 0, 1))
        .expect("peek");
    assert!(kept[0].lock.is_some(), "still locked after the rollback");
    // Committed: gone.
    let answer = c.in_transaction(OP, complete(), invisible, true).await;
    assert_eq!(answer, (200, None));
    assert_eq!(s.count("a"), 0, "completed at commit");
    // A lock that is not held is refused when the request is made, as outside a transaction.
    let answer = c.in_transaction(OP, complete(), || {}, false).await;
    assert_eq!(answer, refused(410, "com.microsoft:message-lock-lost"));
}

#[tokio::test]
async fn cancelling_a_scheduled_message_in_a_transaction_applies_at_commit() {
    let s = Server::start(None).await;
    let seq = s.scheduled().await;
    let mut c = s.management_client().await;
    const OP: &str = "com.microsoft:cancel-scheduled-message";
    let still_scheduled = || assert_eq!(s.scheduled_count("a"), 1, "still scheduled");
    // The .NET SDK's TransactionalCancelScheduleRollback: a scope left without Complete()
    // leaves the message scheduled.
    let answer = c
        .in_transaction(OP, sequence_numbers(seq), still_scheduled, false)
        .await;
    assert_eq!(answer, (200, None));
    still_scheduled();
    let answer = c
        .in_transaction(OP, sequence_numbers(seq), still_scheduled, true)
        .await;
    assert_eq!(answer, (200, None));
    assert_eq!(s.scheduled_count("a"), 0, "cancelled at commit");
}

#[tokio::test]
async fn management_operations_outside_the_transactional_set_are_refused() {
    let s = Server::start(None).await;
    let token = s.deferred_and_locked().await;
    let (_conn, mut session) = s.connect().await;
    let controller = within(Controller::attach(&mut session, "ctl"))
        .await
        .expect("controller");
    let mut mgmt_a = Management::attach(&mut session, "a").await;
    let mut mgmt_b = Management::attach(&mut session, "b").await;
    let txn = declare(&controller).await;
    // Receives are not part of a transaction (service docs, "Operations within a transaction
    // scope"); neither are rule changes (management operations).
    let answer = mgmt_a
        .request(
            &txn,
            "com.microsoft:receive-by-sequence-number",
            sequence_numbers(1),
        )
        .await;
    assert_eq!(answer, refused(400, "amqp:not-allowed"));
    // A lock renewal takes effect at once and binds the transaction to `a`...
    let (status, _) = mgmt_a
        .request(
            &txn,
            "com.microsoft:renew-lock",
            vec![("lock-tokens", uuid_list(token))],
        )
        .await;
    assert_eq!(status, 200);
    // ...so an operation on `b` is refused as crossing top-level entities.
    let answer = mgmt_b
        .request(
            &txn,
            "com.microsoft:cancel-scheduled-message",
            sequence_numbers(1),
        )
        .await;
    assert_eq!(answer, refused(400, "amqp:not-allowed"));
    // So is a schedule on `b`, before any number is reserved there.
    let answer = mgmt_b
        .request(&txn, SCHEDULE, schedule_body("x", s.backend.now()))
        .await;
    assert_eq!(answer, refused(400, "amqp:not-allowed"));
    within(txn.commit())
        .await
        .expect("an empty transaction commits");
    assert_eq!(s.count("a"), 1, "nothing was settled");
    let m = localzure::broker::message::NewMessage {
        message_id: "first".into(),
        ..Default::default()
    };
    let first = s.backend.send("b", vec![m]).await.expect("send");
    assert_eq!(first, vec![1], "no number of `b` was taken");
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

// ----- schedule-message inside a transaction --------------------------------------------------

const SCHEDULE: &str = "com.microsoft:schedule-message";

/// A `schedule-message` body for one message `id` due at `at` (epoch ms), the message encoded
/// by fe2o3-amqp with `x-opt-scheduled-enqueue-time` as the SDKs set it.
fn schedule_body(id: &str, at: i64) -> Vec<(&'static str, Value)> {
    use fe2o3_amqp::types::messaging::{MessageAnnotations, Properties};
    use fe2o3_amqp::types::primitives::Timestamp;
    let message = Message::builder()
        .properties(Properties::builder().message_id(id.to_string()).build())
        .message_annotations(
            MessageAnnotations::builder()
                .insert(
                    Symbol::from("x-opt-scheduled-enqueue-time"),
                    Value::Timestamp(Timestamp::from_milliseconds(at)),
                )
                .build(),
        )
        .value(Value::String(format!("body of {id}")))
        .build();
    let encoded = serde_amqp::to_vec(
        &fe2o3_amqp::types::messaging::message::__private::Serializable(message),
    )
    .expect("encode message");
    let entry = [
        ("message-id", Value::String(id.into())),
        (
            "message",
            Value::Binary(serde_bytes::ByteBuf::from(encoded)),
        ),
    ]
    .into_iter()
    .map(|(k, v)| (Value::String(k.into()), v))
    .collect();
    vec![("messages", Value::List(vec![Value::Map(entry)]))]
}

/// The `sequence-numbers` of a `schedule-message` response.
fn scheduled_numbers(body: &Value) -> Vec<i64> {
    let Value::Map(m) = body else {
        panic!("response body {body:?}")
    };
    match m.get(&Value::String("sequence-numbers".into())) {
        Some(Value::Array(a)) => a.iter().cloned().collect(),
        Some(Value::List(l)) => l.clone(),
        other => panic!("sequence-numbers {other:?}"),
    }
    .into_iter()
    .map(|v| match v {
        Value::Long(n) => n,
        other => panic!("sequence number {other:?}"),
    })
    .collect()
}

impl Server {
    /// (sequence number, message id) of every message in queue `q`, scheduled ones included.
    fn stored(&self, q: &str) -> Vec<(u64, String)> {
        self.backend
            .read(|b| b.peek(&QueuePath::queue(q), 0, 10_000))
            .expect("peek")
            .iter()
            .map(|m| (m.sequence_number, m.content.message_id().to_string()))
            .collect()
    }

    /// The sequence number a plain send to `a` gets now.
    async fn next_number(&self, id: &str) -> u64 {
        let m = localzure::broker::message::NewMessage {
            message_id: id.into(),
            ..Default::default()
        };
        self.backend.send("a", vec![m]).await.expect("send")[0]
    }
}

impl ManagementClient {
    /// Schedules one message in a new transaction; `between` sees the state before the
    /// discharge; answers the sequence number the request was answered with.
    async fn schedule_in_transaction(
        &mut self,
        id: &str,
        at: i64,
        between: impl FnOnce(i64),
        commit: bool,
    ) -> u64 {
        let txn = declare(&self.controller).await;
        let (status, condition, body) = self
            .mgmt
            .request_with_body(&txn, SCHEDULE, schedule_body(id, at))
            .await;
        assert_eq!((status, condition), (200, None), "{body:?}");
        let numbers = scheduled_numbers(&body);
        assert_eq!(numbers.len(), 1, "{body:?}");
        between(numbers[0]);
        if commit {
            within(txn.commit()).await.expect("commit");
        } else {
            within(txn.rollback()).await.expect("rollback");
        }
        numbers[0] as u64
    }
}

/// The .NET SDK's `TransactionalSendMultipleSessions` (Azure.Messaging.ServiceBus
/// tests/Transactions/TransactionLiveTests.cs) schedules a message for `DateTimeOffset.UtcNow`
/// inside a scope: the request is answered with its sequence number at once, nothing is
/// visible (not even peekable) before commit, and after commit the message is received with
/// that number.
#[tokio::test]
async fn a_message_scheduled_for_now_in_a_transaction_appears_only_at_commit() {
    let s = Server::start(None).await;
    let first = s.next_number("before").await;
    let mut c = s.management_client().await;
    let now = s.backend.now();
    let seq = c
        .schedule_in_transaction(
            "scheduled",
            now,
            |seq| {
                assert_eq!(seq as u64, first + 1, "the next number, answered at once");
                assert_eq!(s.stored("a").len(), 1, "nothing new before commit");
                assert_eq!(s.scheduled_count("a"), 0);
            },
            true,
        )
        .await;
    assert_eq!(
        s.stored("a"),
        vec![(first, "before".into()), (seq, "scheduled".into())]
    );
    // Received over a link with the answered number.
    let (_conn, mut session) = s.connect().await;
    let mut receiver = Receiver::attach(&mut session, "from-a", "a")
        .await
        .expect("receiver");
    let mut received = Vec::new();
    for _ in 0..2 {
        let d = within(receiver.recv::<Body<Value>>())
            .await
            .expect("receive");
        let number = d
            .message()
            .message_annotations
            .as_ref()
            .and_then(|a| {
                a.get(
                    &fe2o3_amqp::types::messaging::annotations::OwnedKey::Symbol(Symbol::from(
                        "x-opt-sequence-number",
                    )),
                )
            })
            .cloned();
        receiver.accept(&d).await.expect("accept");
        received.push(number);
    }
    assert_eq!(received[1], Some(Value::Long(seq as i64)));
}

/// The .NET SDK's `TransactionalSendMultipleSessionsRollback`: a scope left without
/// `Complete()` schedules nothing (here due now, so it would be visible at once if it were
/// stored); the number it was answered with stays a gap.
#[tokio::test]
async fn a_message_scheduled_in_a_rolled_back_transaction_never_appears() {
    let s = Server::start(None).await;
    let mut c = s.management_client().await;
    let now = s.backend.now();
    let seq = c
        .schedule_in_transaction("never", now, |_| assert_eq!(s.count("a"), 0), false)
        .await;
    s.backend.execute(Op::Tick).await.expect("timers run");
    assert_eq!(s.count("a"), 0, "nothing after the rollback");
    assert_eq!(s.scheduled_count("a"), 0);
    assert_eq!(s.next_number("after").await, seq + 1, "a gap, not a reuse");
    assert_eq!(s.stored("a"), vec![(seq + 1, "after".into())]);
}

/// A message scheduled an hour ahead in a transaction is scheduled at commit and can be
/// cancelled with the number the request answered (`CancelScheduledMessageAsync(seq)`).
#[tokio::test]
async fn a_message_scheduled_in_a_transaction_is_cancelled_with_its_number() {
    let s = Server::start(None).await;
    let mut c = s.management_client().await;
    let later = s.backend.now() + 3_600_000;
    let seq = c
        .schedule_in_transaction("later", later, |_| {}, true)
        .await;
    assert_eq!(s.scheduled_count("a"), 1, "scheduled at commit");
    assert_eq!(s.stored("a"), vec![(seq, "later".into())]);
    let answer = c
        .in_transaction(
            "com.microsoft:cancel-scheduled-message",
            sequence_numbers(seq),
            || {},
            true,
        )
        .await;
    assert_eq!(answer, (200, None));
    assert_eq!(s.scheduled_count("a"), 0, "cancelled");
}

/// The reservation and the commit are in the operation log: after a crash (the store copied
/// while the server runs, so the log is replayed) and after a clean restart (from the final
/// snapshot), the committed message has its number, the rolled-back one left its gap, and the
/// next number is the same.
#[tokio::test]
async fn scheduled_numbers_survive_a_restart_and_a_replay() {
    let dir = tempfile::tempdir().expect("tempdir");
    let crashed = tempfile::tempdir().expect("tempdir");
    let store = |at: &std::path::Path| StorageConfig {
        storage_type: StorageType::Json,
        json: JsonConfig {
            path: at.join("data"),
            pretty_print: false,
        },
        snapshot_interval_seconds: 0,
        auto_compact: false,
        ..StorageConfig::default()
    };
    let s = Server::start_on(None, Some(store(dir.path()))).await;
    s.create_queues().await;
    let mut c = s.management_client().await;
    let later = s.backend.now() + 3_600_000;
    let kept = c.schedule_in_transaction("kept", later, |_| {}, true).await;
    let gap = c
        .schedule_in_transaction("dropped", later, |_| {}, false)
        .await;
    assert_eq!(gap, kept + 1);
    copy_dir(&dir.path().join("data"), &crashed.path().join("data"));
    drop(c);
    s.backend.shutdown_persistence().await.expect("shutdown");
    drop(s);
    for (how, at) in [("replayed", crashed.path()), ("restarted", dir.path())] {
        let s = Server::start_on(None, Some(store(at))).await;
        let replayed = s.backend.status().replayed;
        match how {
            // Create ×2, reserve, commit, reserve: all from the log.
            "replayed" => assert!(replayed >= 5, "{how}: {replayed} records replayed"),
            _ => assert_eq!(replayed, 0, "{how}: from the snapshot"),
        }
        assert_eq!(s.stored("a"), vec![(kept, "kept".into())], "{how}");
        assert_eq!(s.scheduled_count("a"), 1, "{how}");
        assert_eq!(
            s.next_number("next").await,
            gap + 1,
            "{how}: the same counter"
        );
        s.backend
            .cancel_scheduled("a", vec![kept])
            .await
            .unwrap_or_else(|e| panic!("{how}: cancel: {e}"));
        assert_eq!(s.scheduled_count("a"), 0, "{how}");
        s.backend.shutdown_persistence().await.expect("shutdown");
    }
}

/// Copies a store directory as a crash leaves it (the lock file aside).
fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("read dir").flatten() {
        let (src, dst) = (entry.path(), to.join(entry.file_name()));
        if src.is_dir() {
            copy_dir(&src, &dst);
        } else if entry.file_name() != ".lock" {
            std::fs::copy(&src, &dst).expect("copy");
        }
    }
}

/// The whole of `TransactionalSendMultipleSessions`: a send over a link and a schedule
/// through `$management` in one transaction (here on a queue without sessions); neither is
/// there before commit, both are after, the scheduled one with its answered number.
#[tokio::test]
async fn a_send_and_a_schedule_in_one_transaction_commit_together() {
    let s = Server::start(None).await;
    let mut c = s.management_client().await;
    let mut sender = Sender::attach(&mut c._session, "to-a", "a")
        .await
        .expect("sender");
    let txn = declare(&c.controller).await;
    let sent = Message::builder()
        .properties(
            fe2o3_amqp::types::messaging::Properties::builder()
                .message_id("sent".to_string())
                .group_id("session1".to_string())
                .build(),
        )
        .value(Value::String("one".into()))
        .build();
    let out = within(txn.post(&mut sender, sent)).await.expect("post");
    assert!(matches!(out, Outcome::Accepted(_)), "{out:?}");
    let (status, _, body) = c
        .mgmt
        .request_with_body(&txn, SCHEDULE, schedule_body("scheduled", s.backend.now()))
        .await;
    assert_eq!(status, 200, "{body:?}");
    let seq = scheduled_numbers(&body)[0] as u64;
    assert!(s.stored("a").is_empty(), "nothing before commit");
    within(txn.commit()).await.expect("commit");
    let stored = s.stored("a");
    assert_eq!(stored.len(), 2, "{stored:?}");
    assert!(stored.contains(&(seq, "scheduled".into())), "{stored:?}");
    assert!(stored.iter().any(|(_, id)| id == "sent"), "{stored:?}");
}
