//! Frame-level tests of the AMQP endpoint: a raw client built on the codec drives
//! open/begin/attach/flow/transfer/disposition/detach and checks what the server answers.

mod amqp_client;
mod harness;

use amqp_client::*;
use fe2o3_amqp_types::definitions::{Error as AmqpError, ErrorCondition, Fields, Handle, Role};
use fe2o3_amqp_types::messaging::{Accepted, DeliveryState, Modified, Rejected};
use fe2o3_amqp_types::performatives::{Close, Detach, Performative};
use harness::InProcess;
use localzure::amqp::convert::{self, encode_batch, encode_simple, BATCH_FORMAT};
use localzure::amqp::frames::{encode_frame, read_frame, FRAME_TYPE_AMQP};
use localzure::amqp::AmqpOptions;
use localzure::broker::entity::EntityProps;
use localzure::broker::op::{Op, QueuePath};
use localzure::service::ServiceBusBackend;
use localzure::time::{ManualClock, TimeSpan};
use serde_amqp::primitives::Symbol;
use serde_amqp::Value as AV;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The harness's in-process server, with the AMQP port served by the endpoint's own options.
struct Server {
    addr: SocketAddr,
    backend: ServiceBusBackend,
    server: InProcess,
}

impl Server {
    async fn start(backend: ServiceBusBackend) -> Server {
        Self::start_with(backend, AmqpOptions::default()).await
    }

    async fn start_with(backend: ServiceBusBackend, opts: AmqpOptions) -> Server {
        let server = InProcess::start_amqp(backend.clone(), opts).await;
        Server {
            addr: server.amqp,
            backend,
            server,
        }
    }

    async fn queue(&self, name: &str, props: EntityProps) {
        self.backend
            .execute(Op::CreateQueue {
                name: name.into(),
                props,
            })
            .await
            .unwrap();
    }

    async fn session_queue(&self, name: &str) {
        let props = EntityProps {
            requires_session: true,
            ..Default::default()
        };
        self.queue(name, props).await;
    }

    fn count(&self, path: &QueuePath) -> usize {
        self.backend
            .read(|b| b.peek(path, 0, 10_000).unwrap().len())
    }

    async fn stop(self) {
        self.server.stop().await;
    }
}

fn backend() -> ServiceBusBackend {
    ServiceBusBackend::new(None)
}

#[tokio::test]
async fn open_begin_close() {
    let s = Server::start(backend()).await;
    let mut c = Client::connect(s.addr).await;
    c.send(0, Performative::Close(Close { error: None }), &[])
        .await;
    match c.recv().await.0 {
        Performative::Close(cl) => assert!(cl.error.is_none()),
        other => panic!("expected close, got {other:?}"),
    }
    s.stop().await;
}

#[tokio::test]
async fn unknown_entity_attaches_then_detaches_not_found() {
    let s = Server::start(backend()).await;
    let mut c = Client::connect(s.addr).await;
    let (p, _) = c.attach_sender(0, "amqps://localhost/nope").await;
    assert!(matches!(p, Performative::Attach(_)));
    match c.recv().await.0 {
        Performative::Detach(d) => {
            assert!(d.closed);
            assert_eq!(condition(&d.error), "amqp:not-found");
        }
        other => panic!("expected detach, got {other:?}"),
    }
    c.attach_receiver(1, "amqps://localhost/nope/Subscriptions/x", false)
        .await;
    match c.recv().await.0 {
        Performative::Detach(d) => assert_eq!(condition(&d.error), "amqp:not-found"),
        other => panic!("expected detach, got {other:?}"),
    }
    s.stop().await;
}

/// A burst of sends is settled in delivery order, each id exactly once, whether the server
/// answers with a disposition per send or with ranges (`first..=last`, merged while the
/// connection is busy); a refused send in the middle is answered on its own and splits the run.
#[tokio::test]
async fn a_burst_of_sends_is_settled_in_order_each_once() {
    let s = Server::start(backend()).await;
    s.queue("q", EntityProps::default()).await;
    let mut c = Client::connect(s.addr).await;
    let (p, _) = c.attach_sender(1, "q").await;
    assert!(matches!(p, Performative::Attach(_)));
    const N: u32 = 300;
    const BAD: u32 = 170;
    for i in 0..N {
        let payload = if i == BAD {
            b"not an AMQP message".to_vec()
        } else {
            encode_simple(&format!("m{i}"), None, b"x")
        };
        c.transfer(1, i, 0, &payload).await;
    }
    let mut next = 0u32;
    let mut frames = 0;
    while next < N {
        match c.recv().await.0 {
            Performative::Disposition(d) => {
                frames += 1;
                assert!(d.settled, "{d:?}");
                assert_eq!(d.first, next, "settled in delivery order: {d:?}");
                let last = d.last.unwrap_or(d.first);
                assert!(last >= d.first && last < N, "{d:?}");
                if (d.first..=last).contains(&BAD) {
                    assert_eq!(last, d.first, "the refused send has its own frame: {d:?}");
                    assert!(matches!(d.state, Some(DeliveryState::Rejected(_))), "{d:?}");
                } else {
                    assert!(matches!(d.state, Some(DeliveryState::Accepted(_))), "{d:?}");
                }
                next = last + 1;
            }
            Performative::Flow(_) => {}
            other => panic!("expected disposition, got {other:?}"),
        }
    }
    c.quiet(Duration::from_millis(200)).await;
    assert_eq!(s.count(&QueuePath::queue("q")), (N - 1) as usize);
    println!("{frames} disposition frames for {N} sends");
}

#[tokio::test]
async fn delivers_only_within_credit() {
    let s = Server::start(backend()).await;
    s.queue("q", EntityProps::default()).await;
    let mut c = Client::connect(s.addr).await;
    send_messages(&mut c, "amqps://localhost/Q", 3).await;
    let a = c.attach_receiver(2, "amqps://localhost/q", false).await;
    assert_eq!(a.initial_delivery_count, Some(0));
    assert_eq!(
        a.source.as_ref().unwrap().address.as_deref(),
        Some("amqps://localhost/q")
    );
    c.quiet(Duration::from_millis(300)).await;
    c.flow(2, 0, 2, false).await;
    let mut tags = Vec::new();
    for _ in 0..2 {
        match c.recv().await.0 {
            Performative::Transfer(t) => {
                assert_eq!(t.settled, Some(false));
                tags.push(t.delivery_tag.unwrap());
            }
            other => panic!("expected transfer, got {other:?}"),
        }
    }
    assert!(
        tags.iter().all(|t| t.len() == 16),
        "lock-token delivery tags"
    );
    c.quiet(Duration::from_millis(500)).await;
    c.flow(2, 2, 1, false).await;
    assert!(matches!(c.recv().await.0, Performative::Transfer(_)));
    s.stop().await;
}

#[tokio::test]
async fn drain_without_messages_consumes_credit() {
    let s = Server::start(backend()).await;
    s.queue("empty", EntityProps::default()).await;
    let mut c = Client::connect(s.addr).await;
    c.attach_receiver(0, "empty", false).await;
    c.flow(0, 0, 5, true).await;
    match c.recv().await.0 {
        Performative::Flow(f) => {
            assert_eq!(f.handle, Some(Handle(0)));
            assert_eq!(f.delivery_count, Some(5));
            assert_eq!(f.link_credit, Some(0));
            assert!(f.drain);
        }
        other => panic!("expected drain flow, got {other:?}"),
    }
    // A long-poll in progress is cut short by a drain too.
    c.flow(0, 5, 3, false).await;
    c.quiet(Duration::from_millis(200)).await;
    c.flow(0, 5, 3, true).await;
    match c.recv().await.0 {
        Performative::Flow(f) => {
            assert_eq!(f.delivery_count, Some(8));
            assert_eq!(f.link_credit, Some(0));
        }
        other => panic!("expected drain flow, got {other:?}"),
    }
    s.stop().await;
}

#[tokio::test]
async fn settlements_are_echoed_settled() {
    let s = Server::start(backend()).await;
    s.queue("q", EntityProps::default()).await;
    let mut c = Client::connect(s.addr).await;
    send_messages(&mut c, "q", 3).await;
    c.attach_receiver(2, "q", false).await;
    c.flow(2, 0, 3, false).await;
    let mut ids = Vec::new();
    for _ in 0..3 {
        match c.recv().await.0 {
            Performative::Transfer(t) => ids.push(t.delivery_id.unwrap()),
            other => panic!("expected transfer, got {other:?}"),
        }
    }
    let d = c.settle(ids[0], DeliveryState::Accepted(Accepted {})).await;
    assert!(d.settled && d.role == Role::Sender && d.first == ids[0]);
    assert!(matches!(d.state, Some(DeliveryState::Accepted(_))));

    let modified = DeliveryState::Modified(Modified {
        delivery_failed: Some(true),
        undeliverable_here: Some(false),
        message_annotations: None,
    });
    let d = c.settle(ids[1], modified).await;
    assert!(d.settled && matches!(d.state, Some(DeliveryState::Modified(_))));

    let mut info = Fields::new();
    info.insert(Symbol::from("DeadLetterReason"), AV::String("why".into()));
    info.insert(
        Symbol::from("DeadLetterErrorDescription"),
        AV::String("because".into()),
    );
    let rejected = DeliveryState::Rejected(Rejected {
        error: Some(AmqpError::new(
            ErrorCondition::Custom(Symbol::from("com.microsoft:dead-letter")),
            None,
            info,
        )),
    });
    let d = c.settle(ids[2], rejected).await;
    match d.state {
        Some(DeliveryState::Rejected(r)) => assert!(r.error.is_none(), "no error on success"),
        other => panic!("expected rejected echo, got {other:?}"),
    }
    let dlq = QueuePath::queue("q").dlq();
    assert_eq!(s.count(&dlq), 1);
    let dl = s.backend.read(|b| b.peek(&dlq, 0, 1).unwrap());
    assert_eq!(
        dl[0].content.properties().get("DeadLetterReason"),
        Some(&localzure::broker::value::Value::String("why".into()))
    );
    // The abandoned one is back; the completed one is gone.
    assert_eq!(s.count(&QueuePath::queue("q")), 1);
    s.stop().await;
}

#[tokio::test]
async fn expired_lock_is_rejected_with_lock_lost() {
    let clock = Arc::new(ManualClock::new(1_700_000_000_000));
    let s = Server::start(ServiceBusBackend::with_clock(None, clock.clone())).await;
    let props = EntityProps {
        lock_duration: TimeSpan::from_secs(5),
        ..Default::default()
    };
    s.queue("q", props).await;
    let mut c = Client::connect(s.addr).await;
    send_messages(&mut c, "q", 1).await;
    c.attach_receiver(2, "q", false).await;
    c.flow(2, 0, 1, false).await;
    let id = match c.recv().await.0 {
        Performative::Transfer(t) => t.delivery_id.unwrap(),
        other => panic!("expected transfer, got {other:?}"),
    };
    clock.advance(10_000);
    let d = c.settle(id, DeliveryState::Accepted(Accepted {})).await;
    match d.state {
        Some(DeliveryState::Rejected(r)) => {
            assert_eq!(condition(&r.error), "com.microsoft:message-lock-lost")
        }
        other => panic!("expected lock lost, got {other:?}"),
    }
    s.stop().await;
}

#[tokio::test]
async fn batch_transfers_are_split_into_messages() {
    let s = Server::start(backend()).await;
    s.queue("q", EntityProps::default()).await;
    let mut c = Client::connect(s.addr).await;
    c.attach_sender(0, "q").await;
    c.recv().await; // credit
    let parts: Vec<Vec<u8>> = (0..3)
        .map(|i| encode_simple(&format!("b{i}"), None, format!("{i}").as_bytes()))
        .collect();
    c.transfer(0, 0, BATCH_FORMAT, &encode_batch(&parts)).await;
    match c.recv().await.0 {
        Performative::Disposition(d) => {
            assert!(matches!(d.state, Some(DeliveryState::Accepted(_))))
        }
        other => panic!("expected disposition, got {other:?}"),
    }
    let msgs = s
        .backend
        .read(|b| b.peek(&QueuePath::queue("q"), 0, 10).unwrap());
    let ids: Vec<_> = msgs
        .iter()
        .map(|m| m.content.message_id().to_string())
        .collect();
    assert_eq!(ids, ["b0", "b1", "b2"]);
    s.stop().await;
}

#[tokio::test]
async fn receive_and_delete_deliveries_are_settled() {
    let s = Server::start(backend()).await;
    s.queue("q", EntityProps::default()).await;
    let mut c = Client::connect(s.addr).await;
    send_messages(&mut c, "q", 2).await;
    c.attach_receiver(2, "q", true).await;
    c.flow(2, 0, 10, false).await;
    for _ in 0..2 {
        match c.recv().await.0 {
            Performative::Transfer(t) => assert_eq!(t.settled, Some(true)),
            other => panic!("expected transfer, got {other:?}"),
        }
    }
    assert_eq!(s.count(&QueuePath::queue("q")), 0);
    s.stop().await;
}

#[tokio::test]
async fn cbs_put_token_answers_202() {
    let s = Server::start(backend()).await;
    let mut c = Client::connect(s.addr).await;
    c.attach_sender(0, "$cbs").await;
    c.recv().await; // credit
    c.attach_receiver(1, "$cbs", false).await;
    c.flow(1, 0, 10, false).await;
    let id = AV::Uuid(serde_amqp::primitives::Uuid::from([9u8; 16]));
    let req = convert::encode_request(
        id.clone(),
        Some("cbs"),
        vec![
            ("operation", AV::String("put-token".into())),
            ("type", AV::String("servicebus.windows.net:sastoken".into())),
            ("name", AV::String("amqp://localhost/q".into())),
        ],
        AV::String("SharedAccessSignature sr=x&sig=y".into()),
    )
    .unwrap();
    c.transfer(0, 0, 0, &req).await;
    let mut response = None;
    for _ in 0..2 {
        match c.recv().await {
            (Performative::Transfer(_), payload) => response = Some(payload),
            (Performative::Disposition(_), _) => {}
            (other, _) => panic!("unexpected {other:?}"),
        }
    }
    let m = convert::decode_message(&response.expect("a response")).unwrap();
    assert_eq!(m.properties.get(5), Some(&id));
    assert_eq!(m.app_property("status-code"), Some(&AV::Int(202)));
    s.stop().await;
}

#[tokio::test]
async fn session_receiver_gets_the_session_in_its_attach() {
    let s = Server::start(backend()).await;
    s.session_queue("sq").await;
    let mut c = Client::connect(s.addr).await;
    c.attach_sender(0, "sq").await;
    c.recv().await;
    c.transfer(0, 0, 0, &encode_simple("m", Some("s-1"), b"x"))
        .await;
    c.recv().await;
    let a = attach(1, Role::Receiver, "amqps://localhost/sq", Some(AV::Null));
    c.send(0, Performative::Attach(a), &[]).await;
    match c.recv().await.0 {
        Performative::Attach(a) => {
            let f = a.source.unwrap().filter.unwrap();
            assert_eq!(
                f.get(&Symbol::from("com.microsoft:session-filter")),
                Some(&AV::String("s-1".into()))
            );
            let props = a.properties.unwrap();
            match props.get(&Symbol::from("com.microsoft:locked-until-utc")) {
                Some(AV::Long(ticks)) => assert!(*ticks > 621_355_968_000_000_000),
                other => panic!("expected ticks, got {other:?}"),
            }
        }
        other => panic!("expected attach, got {other:?}"),
    }
    c.flow(1, 0, 1, false).await;
    assert!(matches!(c.recv().await.0, Performative::Transfer(_)));
    s.stop().await;
}

#[tokio::test]
async fn malformed_frame_closes_only_that_connection() {
    let s = Server::start(backend()).await;
    let mut c = Client::connect(s.addr).await;
    c.stream
        .write_all(&encode_frame(
            FRAME_TYPE_AMQP,
            0,
            &[0x00, 0x53, 0x12, 0xff, 0xff],
        ))
        .await
        .unwrap();
    match c.recv().await.0 {
        Performative::Close(cl) => assert_eq!(condition(&cl.error), "amqp:decode-error"),
        other => panic!("expected close, got {other:?}"),
    }
    // Values nested deeper than the codec may recurse close the connection too.
    let mut deep = Client::connect(s.addr).await;
    let mut body = Vec::new();
    for _ in 0..5_000 {
        body.extend_from_slice(&[0xc0, 0xff, 0x01]);
    }
    deep.stream
        .write_all(&encode_frame(FRAME_TYPE_AMQP, 0, &body))
        .await
        .unwrap();
    match deep.recv().await.0 {
        Performative::Close(cl) => assert_eq!(condition(&cl.error), "amqp:decode-error"),
        other => panic!("expected close, got {other:?}"),
    }
    // A bad protocol header is answered with ours and a hang-up.
    let mut raw = TcpStream::connect(s.addr).await.unwrap();
    raw.write_all(b"HTTP/1.1").await.unwrap();
    let mut h = [0u8; 8];
    raw.read_exact(&mut h).await.unwrap();
    assert_eq!(&h[..4], b"AMQP");
    // The server still serves.
    let mut c2 = Client::connect(s.addr).await;
    c2.attach_sender(0, "nothing-here").await;
    s.stop().await;
}

#[tokio::test]
async fn heartbeats_at_half_the_peer_idle_timeout() {
    // Bounds from the negotiated idle timeout, not from wall-clock guesses: the server sends
    // an empty frame at half the peer's idle-time-out (AMQP 1.0 §2.4.5), so the first one
    // comes after about `IDLE / 2`; anything before `IDLE` keeps the peer from closing the
    // connection, which is the property that matters on a loaded machine. The lower bound
    // rejects a server that does not wait at all.
    const IDLE: u64 = 2_000;
    let s = Server::start(backend()).await;
    let mut c = Client::connect_with_idle(s.addr, Some(IDLE as u32)).await;
    let start = tokio::time::Instant::now();
    let f = tokio::time::timeout(WAIT, read_frame(&mut c.stream, 1 << 20))
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let elapsed = start.elapsed();
    assert!(f.body.is_empty(), "an empty frame");
    assert!(
        elapsed < Duration::from_millis(IDLE),
        "heartbeat after {elapsed:?}, beyond the peer's {IDLE} ms idle timeout"
    );
    assert!(
        elapsed >= Duration::from_millis(IDLE / 4),
        "heartbeat after only {elapsed:?}, expected about {} ms",
        IDLE / 2
    );
    s.stop().await;
}

/// `com.microsoft:get-message-sessions` on a session queue's `$management` node: 204 when no
/// session has messages, then the ids with messages, paged by skip/top. (No SDK in the suites
/// exposes this operation, so it is driven at frame level.)
#[tokio::test]
async fn get_message_sessions_lists_the_sessions_with_messages() {
    let s = Server::start(backend()).await;
    s.session_queue("sq").await;
    let mut c = Client::connect(s.addr).await;
    c.attach_sender(0, "sq/$management").await;
    c.recv().await; // credit
    c.attach_receiver(1, "sq/$management", false).await;
    c.flow(1, 0, 100, false).await;
    let page =
        |skip: i32, top: i32| string_map(vec![("skip", AV::Int(skip)), ("top", AV::Int(top))]);
    let ids_of = |r: &convert::AmqpMessage| -> Vec<String> {
        let ids = match &r.body {
            convert::AmqpBody::Value(v) => convert::map_get(v, "sessions-ids").cloned(),
            _ => None,
        };
        match ids {
            Some(AV::Array(a)) => {
                a.0.into_iter()
                    .map(|v| match v {
                        AV::String(s) => s,
                        other => panic!("expected a string id, got {other:?}"),
                    })
                    .collect()
            }
            other => panic!("expected a sessions-ids array, got {other:?} in {r:?}"),
        }
    };

    let r = c
        .mgmt_request(0, 0, "com.microsoft:get-message-sessions", page(0, 10))
        .await;
    assert_eq!(status(&r), AV::Int(204), "no session has messages: {r:?}");

    c.attach_sender(2, "sq").await;
    c.recv().await; // credit
    for (i, sid) in ["s2", "s1", "s3", "s1"].into_iter().enumerate() {
        let id = i as u32;
        c.transfer(2, id, 0, &encode_simple(&format!("m{id}"), Some(sid), b"x"))
            .await;
        match c.recv().await.0 {
            Performative::Disposition(d) => {
                assert!(matches!(d.state, Some(DeliveryState::Accepted(_))), "{d:?}")
            }
            other => panic!("expected disposition, got {other:?}"),
        }
    }

    let r = c
        .mgmt_request(0, 1, "com.microsoft:get-message-sessions", page(0, 10))
        .await;
    assert_eq!(status(&r), AV::Int(200), "{r:?}");
    let mut all = ids_of(&r);
    all.sort();
    assert_eq!(all, ["s1", "s2", "s3"], "each session once");

    let r = c
        .mgmt_request(0, 2, "com.microsoft:get-message-sessions", page(1, 1))
        .await;
    assert_eq!(status(&r), AV::Int(200), "{r:?}");
    let second = ids_of(&r);
    assert_eq!(second.len(), 1, "top=1: {second:?}");
    assert!(all.contains(&second[0]), "{second:?}");
    let r = c
        .mgmt_request(0, 3, "com.microsoft:get-message-sessions", page(3, 10))
        .await;
    assert_eq!(status(&r), AV::Int(204), "skip past the end: {r:?}");
    s.stop().await;
}

#[tokio::test]
async fn detach_is_answered_and_shutdown_closes_connections() {
    let s = Server::start(backend()).await;
    s.queue("q", EntityProps::default()).await;
    let mut c = Client::connect(s.addr).await;
    c.attach_receiver(3, "q", false).await;
    c.send(
        0,
        Performative::Detach(Detach {
            handle: Handle(3),
            closed: true,
            error: None,
        }),
        &[],
    )
    .await;
    match c.recv().await.0 {
        Performative::Detach(d) => assert!(d.closed && d.handle == Handle(3)),
        other => panic!("expected detach, got {other:?}"),
    }
    s.server.begin_stop();
    match c.recv().await.0 {
        Performative::Close(cl) => assert!(cl.error.is_some()),
        other => panic!("expected close, got {other:?}"),
    }
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn holds_a_thousand_connections() {
    let s = Server::start(backend()).await;
    let mut clients = Vec::new();
    for chunk in 0..10 {
        let mut set = tokio::task::JoinSet::new();
        for _ in 0..100 {
            let addr = s.addr;
            set.spawn(async move { Client::connect(addr).await });
        }
        while let Some(c) = set.join_next().await {
            clients.push(c.unwrap());
        }
        assert_eq!(clients.len(), (chunk + 1) * 100);
    }
    // Every connection is still served.
    for c in clients.iter_mut().step_by(97) {
        c.attach_sender(0, "nope").await;
    }
    drop(clients);
    s.stop().await;
}

// ----- SAS validation on links ----------------------------------------------------------------

/// A server validating SAS tokens against `key`, on a manual clock, with queues `q` and
/// `other`; `tweak` adjusts the options. Returns the server, its clock and the clock's seconds.
async fn sas_server(
    key: &localzure::sas::SasKey,
    tweak: impl FnOnce(&mut AmqpOptions),
) -> (Server, Arc<ManualClock>, u64) {
    let start: i64 = 1_700_000_000_000;
    let clock = Arc::new(ManualClock::new(start));
    let backend = ServiceBusBackend::with_clock(None, clock.clone());
    let mut opts = AmqpOptions {
        sas: Some(key.clone()),
        ..AmqpOptions::default()
    };
    tweak(&mut opts);
    let s = Server::start_with(backend, opts).await;
    s.queue("q", EntityProps::default()).await;
    s.queue("other", EntityProps::default()).await;
    (s, clock, (start / 1000) as u64)
}

fn sas_key() -> localzure::sas::SasKey {
    localzure::sas::SasKey {
        name: "RootManageSharedAccessKey".into(),
        key: "secret-key".into(),
    }
}

#[tokio::test]
async fn with_sas_links_need_a_valid_put_token_for_their_entity() {
    let key = sas_key();
    let (s, clock, now) = sas_server(&key, |_| {}).await;
    let mut c = Client::connect(s.addr).await;
    c.open_cbs().await;

    // No token yet: senders and receivers are refused.
    c.expect_unauthorized(0, Role::Sender, "amqps://localhost/q")
        .await;
    c.expect_unauthorized(1, Role::Receiver, "amqps://localhost/q")
        .await;

    // Bad tokens are refused by CBS and grant nothing.
    let wrong = localzure::sas::SasKey {
        key: "wrong".into(),
        ..key.clone()
    };
    let forged = localzure::sas::token(&wrong, "sb://localhost/q", now + 3600);
    assert_eq!(
        c.put_token(0, "sb://localhost/q", &forged).await,
        AV::Int(401)
    );
    let expired = localzure::sas::token(&key, "sb://localhost/q", now - 1);
    assert_eq!(
        c.put_token(1, "sb://localhost/q", &expired).await,
        AV::Int(401)
    );
    // Signed with the right key for another namespace: the connection was opened for
    // `localhost`, so its host is refused (issue 18, point 9).
    let elsewhere = localzure::sas::token(&key, "sb://other.example/q", now + 3600);
    assert_eq!(
        c.put_token(4, "sb://other.example/q", &elsewhere).await,
        AV::Int(401)
    );
    c.expect_unauthorized(2, Role::Sender, "q").await;

    // A valid token for q: q's links work, other's do not.
    let good = localzure::sas::token(&key, "sb://localhost/q", now + 60);
    assert_eq!(
        c.put_token(2, "sb://localhost/q", &good).await,
        AV::Int(202)
    );
    send_messages(&mut c, "amqps://localhost/q", 2).await;
    assert_eq!(s.count(&QueuePath::queue("q")), 2);
    let a = c
        .attach_receiver(3, "amqps://localhost/q/$DeadLetterQueue", false)
        .await;
    assert!(a.source.is_some(), "the dead-letter queue is under q");
    c.expect_unauthorized(4, Role::Sender, "amqps://localhost/other")
        .await;

    // Once the token has expired, new links are refused again; a renewed token opens them.
    clock.advance(61_000);
    c.expect_unauthorized(5, Role::Receiver, "amqps://localhost/q")
        .await;
    let renewed = localzure::sas::token(&key, "sb://localhost/q", now + 3600);
    assert_eq!(
        c.put_token(3, "sb://localhost/q", &renewed).await,
        AV::Int(202)
    );
    let a = c.attach_receiver(6, "amqps://localhost/q", false).await;
    assert!(a.source.is_some());

    // A namespace-wide token is accepted for any audience, and grants that audience.
    let mut c2 = Client::connect(s.addr).await;
    c2.open_cbs().await;
    let ns = localzure::sas::token(&key, "sb://localhost/", now + 3600);
    assert_eq!(
        c2.put_token(0, "sb://localhost/other", &ns).await,
        AV::Int(202)
    );
    let (p, _) = c2.attach_sender(0, "other").await;
    assert!(matches!(p, Performative::Attach(_)));
    match c2.recv().await.0 {
        Performative::Flow(_) => {}
        other => panic!("expected credit, got {other:?}"),
    }
    s.stop().await;
}

#[tokio::test]
async fn with_sas_expired_tokens_drop_their_links_and_renewed_ones_keep_them() {
    let key = sas_key();
    // Checked every 50 ms so the test sees the drops quickly.
    let (s, clock, now) = sas_server(&key, |o| o.grant_check_ms = 50).await;
    let mut c = Client::connect(s.addr).await;
    c.open_cbs().await;

    // `$management` links need a token for their entity too.
    c.expect_unauthorized(0, Role::Sender, "q/$management")
        .await;
    c.expect_unauthorized(1, Role::Receiver, "amqps://localhost/q/$management")
        .await;

    let q_token = localzure::sas::token(&key, "sb://localhost/q", now + 60);
    assert_eq!(
        c.put_token(0, "sb://localhost/q", &q_token).await,
        AV::Int(202)
    );
    let other_token = localzure::sas::token(&key, "sb://localhost/other", now + 120);
    assert_eq!(
        c.put_token(1, "sb://localhost/other", &other_token).await,
        AV::Int(202)
    );
    c.attach_sender(2, "q").await;
    c.recv().await; // credit
    c.attach_receiver(3, "amqps://localhost/q", false).await;
    c.attach_sender(4, "q/$management").await;
    c.recv().await; // credit
    c.attach_receiver(5, "q/$management", false).await;
    c.flow(5, 0, 10, false).await;
    c.attach_sender(6, "other").await;
    c.recv().await; // credit
    let peek = AV::Map(
        [(AV::String("from-sequence-number".into()), AV::Long(1))]
            .into_iter()
            .collect(),
    );
    let r = c
        .mgmt_request(4, 2, "com.microsoft:peek-message", peek.clone())
        .await;
    assert_eq!(r.app_property("statusCode"), Some(&AV::Int(204)));

    // q's token expires: every link to q (entity and management) is dropped; other's stay.
    clock.advance(61_000);
    assert_eq!(c.expect_dropped(4).await, vec![2, 3, 4, 5]);
    c.quiet(Duration::from_millis(300)).await;
    send_messages_on(&mut c, 6, 3).await;
    assert_eq!(s.count(&QueuePath::queue("other")), 1);

    // A renewed token for other (before it expires) keeps its link past the first expiry.
    let renewed = localzure::sas::token(&key, "sb://localhost/other", now + 3600);
    assert_eq!(
        c.put_token(4, "sb://localhost/other", &renewed).await,
        AV::Int(202)
    );
    clock.advance(120_000);
    c.quiet(Duration::from_millis(300)).await;
    send_messages_on(&mut c, 6, 5).await;
    assert_eq!(s.count(&QueuePath::queue("other")), 2);
    s.stop().await;
}

#[tokio::test]
async fn with_sas_a_management_request_after_expiry_is_refused() {
    let key = sas_key();
    // No periodic check during this test: the request itself must be refused.
    let (s, clock, now) = sas_server(&key, |o| o.grant_check_ms = 3_600_000).await;
    let mut c = Client::connect(s.addr).await;
    c.open_cbs().await;
    let token = localzure::sas::token(&key, "sb://localhost/q", now + 60);
    assert_eq!(
        c.put_token(0, "sb://localhost/q", &token).await,
        AV::Int(202)
    );
    c.attach_sender(2, "q/$management").await;
    c.recv().await; // credit
    c.attach_receiver(3, "q/$management", false).await;
    c.flow(3, 0, 10, false).await;
    clock.advance(61_000);
    let r = c
        .mgmt_request(
            2,
            1,
            "com.microsoft:peek-message",
            AV::Map(Default::default()),
        )
        .await;
    assert_eq!(r.app_property("statusCode"), Some(&AV::Int(401)));
    assert_eq!(
        r.app_property("errorCondition"),
        Some(&AV::Symbol(Symbol::from("amqp:unauthorized-access")))
    );
    s.stop().await;
}

#[tokio::test]
async fn with_sas_a_connection_without_a_token_is_closed_after_the_grace() {
    let key = sas_key();
    let (s, _clock, now) = sas_server(&key, |o| {
        o.token_grace_ms = 200;
        o.grant_check_ms = 50;
    })
    .await;
    let mut idle = Client::connect(s.addr).await;
    let mut authorized = Client::connect(s.addr).await;
    authorized.open_cbs().await;
    let token = localzure::sas::token(&key, "sb://localhost/q", now + 60);
    assert_eq!(
        authorized.put_token(0, "sb://localhost/q", &token).await,
        AV::Int(202)
    );
    match idle.recv().await.0 {
        Performative::Close(Close { error }) => {
            assert_eq!(condition(&error), "amqp:unauthorized-access", "{error:?}");
        }
        other => panic!("expected close, got {other:?}"),
    }
    authorized.quiet(Duration::from_millis(400)).await;
    s.stop().await;
}

/// Sends one message on the already attached sender link `handle` (delivery `id`) and waits
/// for its acceptance.
async fn send_messages_on(c: &mut Client, handle: u32, id: u32) {
    c.transfer(handle, id, 0, &encode_simple(&format!("m{id}"), None, b"x"))
        .await;
    loop {
        match c.recv().await.0 {
            Performative::Disposition(d) => {
                assert!(matches!(d.state, Some(DeliveryState::Accepted(_))), "{d:?}");
                return;
            }
            Performative::Flow(_) => {}
            other => panic!("expected disposition, got {other:?}"),
        }
    }
}

// ----- rule management on a subscription's $management node -----------------------------------

fn string_map(entries: Vec<(&str, AV)>) -> AV {
    localzure::amqp::convert::string_map(entries)
}

fn status(r: &convert::AmqpMessage) -> AV {
    r.app_property("statusCode").cloned().unwrap_or(AV::Null)
}

/// The `rules` list of an enumerate-rules response.
fn rules_of(r: &convert::AmqpMessage) -> Vec<AV> {
    let rules = match &r.body {
        convert::AmqpBody::Value(v) => convert::map_get(v, "rules").cloned(),
        _ => None,
    };
    match rules {
        Some(AV::List(l)) => l,
        other => panic!("expected a rules list, got {other:?} in {r:?}"),
    }
}

fn described_parts(v: &AV) -> (serde_amqp::descriptor::Descriptor, Vec<AV>) {
    match v {
        AV::Described(d) => match &d.value {
            AV::List(l) => (d.descriptor.clone(), l.clone()),
            other => panic!("expected a described list, got {other:?}"),
        },
        other => panic!("expected a described value, got {other:?}"),
    }
}

#[tokio::test]
async fn subscription_rules_are_managed_over_amqp() {
    use serde_amqp::descriptor::Descriptor::Code;
    let s = Server::start(backend()).await;
    s.queue("q", EntityProps::default()).await;
    for op in [
        Op::CreateTopic {
            name: "t".into(),
            props: EntityProps::default(),
        },
        Op::CreateSubscription {
            topic: "t".into(),
            name: "s".into(),
            props: EntityProps::default(),
            rule: None,
        },
    ] {
        s.backend.execute(op).await.unwrap();
    }
    let mut c = Client::connect(s.addr).await;
    c.attach_sender(0, "t/Subscriptions/s/$management").await;
    c.recv().await; // credit
    c.attach_receiver(1, "t/Subscriptions/s/$management", false)
        .await;
    c.flow(1, 0, 100, false).await;
    let page = || string_map(vec![("skip", AV::Int(0)), ("top", AV::Int(10))]);

    // A new subscription has the $Default rule: a true filter, no action.
    let r = c
        .mgmt_request(0, 0, "com.microsoft:enumerate-rules", page())
        .await;
    assert_eq!(status(&r), AV::Int(200));
    let rules = rules_of(&r);
    assert_eq!(rules.len(), 1);
    let (code, fields) = described_parts(convert::map_get(&rules[0], "rule-description").unwrap());
    assert_eq!(code, Code(0x0000013700000004));
    assert_eq!(described_parts(&fields[0]).0, Code(0x000001370000007));
    assert_eq!(described_parts(&fields[1]).0, Code(0x0000013700000005));
    assert_eq!(fields[2], AV::String("$Default".into()));

    // Add a SQL rule with an action and a correlation rule, as the SDKs' rule managers do.
    let sql = string_map(vec![
        ("rule-name", AV::String("red".into())),
        (
            "rule-description",
            string_map(vec![
                (
                    "sql-filter",
                    string_map(vec![("expression", AV::String("color = 'red'".into()))]),
                ),
                (
                    "sql-rule-action",
                    string_map(vec![("expression", AV::String("SET tagged = 1".into()))]),
                ),
                ("rule-name", AV::String("red".into())),
            ]),
        ),
    ]);
    let r = c
        .mgmt_request(0, 1, "com.microsoft:add-rule", sql.clone())
        .await;
    assert_eq!(status(&r), AV::Int(200));
    let corr = string_map(vec![
        ("rule-name", AV::String("by-label".into())),
        (
            "rule-description",
            string_map(vec![
                (
                    "correlation-filter",
                    string_map(vec![
                        ("correlation-id", AV::Null),
                        ("label", AV::String("urgent".into())),
                        ("properties", string_map(vec![])),
                    ]),
                ),
                ("sql-rule-action", AV::Null),
            ]),
        ),
    ]);
    let r = c.mgmt_request(0, 2, "com.microsoft:add-rule", corr).await;
    assert_eq!(status(&r), AV::Int(200));
    // The same name again conflicts; removing a rule that isn't there is not found.
    let r = c.mgmt_request(0, 3, "com.microsoft:add-rule", sql).await;
    assert_eq!(status(&r), AV::Int(409));
    let r = c
        .mgmt_request(
            0,
            4,
            "com.microsoft:remove-rule",
            string_map(vec![("rule-name", AV::String("nope".into()))]),
        )
        .await;
    assert_eq!(status(&r), AV::Int(404));
    let r = c
        .mgmt_request(
            0,
            5,
            "com.microsoft:remove-rule",
            string_map(vec![("rule-name", AV::String("$Default".into()))]),
        )
        .await;
    assert_eq!(status(&r), AV::Int(200));

    // Listed back in name order with their descriptors and contents.
    let r = c
        .mgmt_request(0, 6, "com.microsoft:enumerate-rules", page())
        .await;
    let rules = rules_of(&r);
    let described: Vec<_> = rules
        .iter()
        .map(|r| described_parts(convert::map_get(r, "rule-description").unwrap()).1)
        .collect();
    assert_eq!(described[0][2], AV::String("by-label".into()));
    let (code, corr_fields) = described_parts(&described[0][0]);
    assert_eq!(code, Code(0x000001370000009));
    assert_eq!(corr_fields[0], AV::Null);
    assert_eq!(corr_fields[4], AV::String("urgent".into()));
    assert_eq!(described[1][2], AV::String("red".into()));
    let (code, sql_fields) = described_parts(&described[1][0]);
    assert_eq!(code, Code(0x000001370000006));
    assert_eq!(sql_fields[0], AV::String("color = 'red'".into()));
    let (code, action_fields) = described_parts(&described[1][1]);
    assert_eq!(code, Code(0x0000013700000006));
    assert_eq!(action_fields[0], AV::String("SET tagged = 1".into()));
    // Paging past the end is 204.
    let r = c
        .mgmt_request(
            0,
            7,
            "com.microsoft:enumerate-rules",
            string_map(vec![("skip", AV::Int(2)), ("top", AV::Int(10))]),
        )
        .await;
    assert_eq!(status(&r), AV::Int(204));

    // The rules route: only the red message and the urgent one reach the subscription.
    for (color, label) in [("red", "x"), ("blue", "x"), ("blue", "urgent")] {
        let mut m = localzure::broker::message::NewMessage {
            message_id: format!("{color}-{label}"),
            label: Some(label.into()),
            ..Default::default()
        };
        m.properties.insert(
            "color".into(),
            localzure::broker::value::Value::String(color.into()),
        );
        s.backend
            .execute(Op::Send {
                entity: "t".into(),
                messages: vec![m],
            })
            .await
            .unwrap();
    }
    assert_eq!(s.count(&QueuePath::subscription("t", "s")), 2);

    // Rules belong to subscriptions: a queue's node refuses them.
    let mut c2 = Client::connect(s.addr).await;
    c2.attach_sender(0, "q/$management").await;
    c2.recv().await;
    c2.attach_receiver(1, "q/$management", false).await;
    c2.flow(1, 0, 10, false).await;
    let r = c2
        .mgmt_request(0, 0, "com.microsoft:enumerate-rules", page())
        .await;
    assert_eq!(status(&r), AV::Int(400));
    s.stop().await;
}

// ----- issue 16 (AMQP interop) and issue 18 item 4 (per-connection limits) -----

/// Reads frames until `pick` takes one (dispositions, flows and the like are skipped).
async fn until<T>(c: &mut Client, mut pick: impl FnMut(&Performative, &[u8]) -> Option<T>) -> T {
    loop {
        let (p, payload) = c.recv().await;
        if let Some(t) = pick(&p, &payload) {
            return t;
        }
    }
}

fn detach_condition(p: &Performative) -> Option<String> {
    match p {
        Performative::Detach(d) => Some(condition(&d.error)),
        _ => None,
    }
}

#[tokio::test]
async fn malformed_management_requests_are_answered_or_detached() {
    let s = Server::start(backend()).await;
    s.queue("q", EntityProps::default()).await;
    let mut c = Client::connect(s.addr).await;
    c.attach_sender(20, "q/$management").await;
    c.recv().await; // credit
    c.attach_receiver(21, "q/$management", false).await;
    c.flow(21, 0, 10, false).await;
    // A readable properties section, then an amqp-value section that is cut short.
    let mut req = convert::encode_request(
        AV::Ulong(77),
        Some("mgmt-replies"),
        vec![(
            "operation",
            AV::String("com.microsoft:update-disposition".into()),
        )],
        AV::Null,
    )
    .unwrap();
    req.extend_from_slice(&[0x00, 0x53, 0x77, 0xe0, 0x40, 0x02, 0xa1]);
    c.transfer(20, 0, 0, &req).await;
    let reply = until(&mut c, |p, payload| match p {
        Performative::Transfer(_) => Some(convert::decode_message(payload).unwrap()),
        _ => None,
    })
    .await;
    assert_eq!(reply.app_property("statusCode"), Some(&AV::Int(400)));
    let description = reply.app_property("statusDescription").cloned();
    assert!(
        matches!(&description, Some(AV::String(d)) if d.contains("decoded")),
        "{description:?}"
    );
    assert_eq!(
        reply.properties.get(5),
        Some(&AV::Ulong(77)),
        "correlation-id"
    );
    // Nothing readable at all: the link is detached with decode-error.
    c.transfer(20, 1, 0, &[0x00, 0x53, 0x77, 0xe0, 0x40]).await;
    let cond = until(&mut c, |p, _| detach_condition(p)).await;
    assert_eq!(cond, "amqp:decode-error");
    s.stop().await;
}

#[tokio::test]
async fn oversize_transfer_is_rejected_and_the_link_stays() {
    let opts = AmqpOptions {
        max_message_size: 1024,
        ..AmqpOptions::default()
    };
    let s = Server::start_with(backend(), opts).await;
    s.queue("q", EntityProps::default()).await;
    let mut c = Client::connect(s.addr).await;
    c.attach_sender(1, "q").await;
    c.recv().await; // credit
    let big = encode_simple("big", None, &vec![b'x'; 200 * 1024]);
    c.transfer(1, 0, 0, &big).await;
    let d = until(&mut c, |p, _| match p {
        Performative::Disposition(d) => Some(d.clone()),
        _ => None,
    })
    .await;
    match d.state {
        Some(DeliveryState::Rejected(Rejected { error })) => {
            assert_eq!(condition(&error), "amqp:link:message-size-exceeded")
        }
        other => panic!("expected rejected, got {other:?}"),
    }
    assert!(d.settled);
    c.transfer(1, 1, 0, &encode_simple("small", None, b"ok"))
        .await;
    let d = until(&mut c, |p, _| match p {
        Performative::Disposition(d) => Some(d.clone()),
        _ => None,
    })
    .await;
    assert!(matches!(d.state, Some(DeliveryState::Accepted(_))));
    s.stop().await;
}

#[tokio::test]
async fn refusals_carry_a_null_terminus_and_missing_management_nodes_are_not_found() {
    let s = Server::start(backend()).await;
    let mut c = Client::connect(s.addr).await;
    match c.attach_sender(0, "nope").await.0 {
        Performative::Attach(a) => assert!(a.target.is_none(), "null target"),
        other => panic!("expected attach, got {other:?}"),
    }
    assert_eq!(
        detach_condition(&c.recv().await.0).as_deref(),
        Some("amqp:not-found")
    );
    let a = c.attach_receiver(1, "nope", false).await;
    assert!(a.source.is_none(), "null source");
    assert_eq!(
        detach_condition(&c.recv().await.0).as_deref(),
        Some("amqp:not-found")
    );
    c.attach_sender(2, "nope/$management").await;
    assert_eq!(
        detach_condition(&c.recv().await.0).as_deref(),
        Some("amqp:not-found")
    );
    s.stop().await;
}

#[tokio::test]
async fn a_duplicate_link_name_refuses_only_that_link() {
    let s = Server::start(backend()).await;
    s.queue("q", EntityProps::default()).await;
    let mut c = Client::connect(s.addr).await;
    c.attach_sender(1, "q").await;
    c.recv().await; // credit
    let mut dup = attach(2, Role::Sender, "q", None);
    dup.name = "link-1".into();
    c.send(0, Performative::Attach(dup), &[]).await;
    assert!(matches!(c.recv().await.0, Performative::Attach(_)));
    assert_eq!(
        detach_condition(&c.recv().await.0).as_deref(),
        Some("amqp:invalid-field")
    );
    // The connection and the first link go on.
    c.transfer(1, 0, 0, &encode_simple("m", None, b"x")).await;
    let d = until(&mut c, |p, _| match p {
        Performative::Disposition(d) => Some(d.clone()),
        _ => None,
    })
    .await;
    assert!(matches!(d.state, Some(DeliveryState::Accepted(_))));
    s.stop().await;
}

#[tokio::test]
async fn a_window_of_2_pow_31_minus_1_gets_deliveries() {
    use fe2o3_amqp_types::performatives::Flow;
    let s = Server::start(backend()).await;
    s.queue("q", EntityProps::default()).await;
    let mut c = Client::connect(s.addr).await;
    send_messages(&mut c, "q", 1).await;
    c.attach_receiver(5, "q", false).await;
    // qpid-proton's default session window, with a link flow granting credit.
    let f = Flow {
        next_incoming_id: Some(1),
        incoming_window: i32::MAX as u32,
        next_outgoing_id: 0,
        outgoing_window: i32::MAX as u32,
        handle: Some(Handle(5)),
        delivery_count: Some(0),
        link_credit: Some(10),
        available: None,
        drain: false,
        echo: false,
        properties: None,
    };
    c.send(0, Performative::Flow(f), &[]).await;
    until(&mut c, |p, _| {
        matches!(p, Performative::Transfer(_)).then_some(())
    })
    .await;
    s.stop().await;
}

#[tokio::test]
async fn limits_are_offered_and_enforced() {
    use fe2o3_amqp_types::performatives::Begin;
    let opts = AmqpOptions {
        channel_max: 3,
        handle_max: 7,
        max_links_per_connection: 2,
        ..AmqpOptions::default()
    };
    let s = Server::start_with(backend(), opts).await;
    s.queue("q", EntityProps::default()).await;
    // Links per connection: the third attach is refused alone.
    let mut c = Client::connect(s.addr).await;
    c.attach_sender(1, "q").await;
    c.recv().await;
    c.attach_sender(2, "q").await;
    c.recv().await;
    c.attach_sender(3, "q").await;
    assert_eq!(
        detach_condition(&c.recv().await.0).as_deref(),
        Some("amqp:resource-limit-exceeded")
    );
    // A handle beyond handle-max closes the connection with framing-error (AMQP 1.0 §2.7.2).
    c.send(
        0,
        Performative::Attach(attach(8, Role::Sender, "q", None)),
        &[],
    )
    .await;
    let cl = until(&mut c, |p, _| match p {
        Performative::Close(cl) => Some(cl.clone()),
        _ => None,
    })
    .await;
    assert_eq!(condition(&cl.error), "amqp:connection:framing-error");
    // A channel beyond channel-max closes the connection with framing-error (§2.7.1).
    let mut c = Client::connect(s.addr).await;
    let begin = Begin {
        remote_channel: None,
        next_outgoing_id: 0,
        incoming_window: 100,
        outgoing_window: 100,
        handle_max: Handle(10),
        offered_capabilities: None,
        desired_capabilities: None,
        properties: None,
    };
    c.send(4, Performative::Begin(begin), &[]).await;
    let cl = until(&mut c, |p, _| match p {
        Performative::Close(cl) => Some(cl.clone()),
        _ => None,
    })
    .await;
    assert_eq!(condition(&cl.error), "amqp:connection:framing-error");
    s.stop().await;
}

#[tokio::test]
async fn open_and_begin_offer_the_configured_limits() {
    use fe2o3_amqp_types::performatives::{Begin, ChannelMax, MaxFrameSize, Open};
    let s = Server::start(backend()).await;
    let mut stream = TcpStream::connect(s.addr).await.unwrap();
    stream
        .write_all(&localzure::amqp::frames::AMQP_HEADER)
        .await
        .unwrap();
    let mut h = [0u8; 8];
    stream.read_exact(&mut h).await.unwrap();
    let open = Open {
        container_id: "limits".into(),
        hostname: None,
        max_frame_size: MaxFrameSize(65536),
        channel_max: ChannelMax(u16::MAX),
        idle_time_out: None,
        outgoing_locales: None,
        incoming_locales: None,
        offered_capabilities: None,
        desired_capabilities: None,
        properties: None,
    };
    let begin = Begin {
        remote_channel: None,
        next_outgoing_id: 0,
        incoming_window: 100,
        outgoing_window: 100,
        handle_max: Handle(u32::MAX),
        offered_capabilities: None,
        desired_capabilities: None,
        properties: None,
    };
    for p in [Performative::Open(open), Performative::Begin(begin)] {
        let bytes = localzure::amqp::frames::encode_performative(0, &p, &[]).unwrap();
        stream.write_all(&bytes).await.unwrap();
    }
    let (channel_max, handle_max, _) = localzure::constants::AMQP_CONNECTION_LIMITS;
    for _ in 0..2 {
        let f = read_frame(&mut stream, 1 << 20).await.unwrap().unwrap();
        match localzure::amqp::frames::decode_amqp_body(&f.body).unwrap() {
            Some((Performative::Open(o), _)) => assert_eq!(o.channel_max.0, channel_max),
            Some((Performative::Begin(b), _)) => assert_eq!(b.handle_max.0, handle_max),
            other => panic!("unexpected {other:?}"),
        }
    }
    s.stop().await;
}
