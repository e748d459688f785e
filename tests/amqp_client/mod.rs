//! A raw AMQP 1.0 client built on the crate's codec, for frame-level tests against the
//! in-process endpoint (`tests/amqp_frames.rs`) and the real binary (`tests/load.rs`): SASL,
//! open, begin, attach, flow, transfer, disposition, and the `$cbs` put-token exchange.

#![allow(dead_code)]

use bytes::Bytes;
use fe2o3_amqp_types::definitions::{
    Error as AmqpError, Handle, ReceiverSettleMode, Role, SenderSettleMode,
};
use fe2o3_amqp_types::messaging::{DeliveryState, Source, Target, TargetArchetype};
use fe2o3_amqp_types::performatives::{
    Attach, Begin, ChannelMax, Detach, Disposition, Flow, MaxFrameSize, Open, Performative,
    Transfer,
};
use fe2o3_amqp_types::sasl::SaslInit;
use localzure::amqp::convert::{self, encode_simple};
use localzure::amqp::frames::{
    decode_amqp_body, encode_performative, encode_sasl, read_frame, AMQP_HEADER, SASL_HEADER,
};
use serde_amqp::primitives::{OrderedMap, Symbol};
use serde_amqp::Value as AV;
use serde_bytes::ByteBuf;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// How long a test waits for an expected frame.
pub const WAIT: Duration = Duration::from_secs(5);

pub struct Client {
    pub stream: TcpStream,
}

impl Client {
    pub async fn connect(addr: SocketAddr) -> Client {
        Self::connect_with_idle(addr, None).await
    }

    pub async fn connect_with_idle(addr: SocketAddr, idle: Option<u32>) -> Client {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        stream.write_all(&SASL_HEADER).await.unwrap();
        let mut h = [0u8; 8];
        stream.read_exact(&mut h).await.unwrap();
        assert_eq!(h, SASL_HEADER);
        let mechs = read_frame(&mut stream, 1 << 20).await.unwrap().unwrap();
        let text = String::from_utf8_lossy(&mechs.body).to_string();
        for m in ["MSSBCBS", "ANONYMOUS", "PLAIN", "EXTERNAL"] {
            assert!(text.contains(m), "mechanism {m} advertised");
        }
        let init = SaslInit {
            mechanism: Symbol::from("MSSBCBS"),
            initial_response: Some(ByteBuf::from(b"\0user\0pass".to_vec())),
            hostname: Some("localhost".into()),
        };
        stream
            .write_all(&encode_sasl(&init).unwrap())
            .await
            .unwrap();
        let outcome = read_frame(&mut stream, 1 << 20).await.unwrap().unwrap();
        assert_eq!(outcome.body[2], 0x44, "sasl-outcome");
        stream.write_all(&AMQP_HEADER).await.unwrap();
        stream.read_exact(&mut h).await.unwrap();
        assert_eq!(h, AMQP_HEADER);
        let mut c = Client { stream };
        c.send(
            0,
            Performative::Open(Open {
                container_id: "test".into(),
                hostname: Some("localhost".into()),
                max_frame_size: MaxFrameSize(65536),
                channel_max: ChannelMax(16),
                idle_time_out: idle,
                outgoing_locales: None,
                incoming_locales: None,
                offered_capabilities: None,
                desired_capabilities: None,
                properties: None,
            }),
            &[],
        )
        .await;
        assert!(matches!(c.recv().await.0, Performative::Open(_)));
        c.send(
            0,
            Performative::Begin(Begin {
                remote_channel: None,
                next_outgoing_id: 0,
                incoming_window: 10_000,
                outgoing_window: 10_000,
                handle_max: Handle(255),
                offered_capabilities: None,
                desired_capabilities: None,
                properties: None,
            }),
            &[],
        )
        .await;
        match c.recv().await.0 {
            Performative::Begin(b) => assert_eq!(b.remote_channel, Some(0)),
            other => panic!("expected begin, got {other:?}"),
        }
        c
    }

    pub async fn send(&mut self, ch: u16, p: Performative, payload: &[u8]) {
        let bytes = encode_performative(ch, &p, payload).unwrap();
        self.stream.write_all(&bytes).await.unwrap();
    }

    /// The next non-heartbeat frame.
    pub async fn recv(&mut self) -> (Performative, Bytes) {
        loop {
            let f = tokio::time::timeout(WAIT, read_frame(&mut self.stream, 1 << 24))
                .await
                .expect("a frame within the wait")
                .unwrap()
                .expect("the connection is open");
            if let Some(x) = decode_amqp_body(&f.body).unwrap() {
                return x;
            }
        }
    }

    /// Asserts that nothing but heartbeats arrives for `d`.
    pub async fn quiet(&mut self, d: Duration) {
        let end = tokio::time::Instant::now() + d;
        loop {
            match tokio::time::timeout_at(end, read_frame(&mut self.stream, 1 << 24)).await {
                Err(_) => return,
                Ok(f) => {
                    let f = f.unwrap().unwrap();
                    if let Some((p, _)) = decode_amqp_body(&f.body).unwrap() {
                        panic!("expected no frame, got {p:?}");
                    }
                }
            }
        }
    }

    pub async fn attach_sender(&mut self, handle: u32, address: &str) -> (Performative, Bytes) {
        self.send(
            0,
            Performative::Attach(attach(handle, Role::Sender, address, None)),
            &[],
        )
        .await;
        self.recv().await
    }

    pub async fn attach_receiver(&mut self, handle: u32, address: &str, settled: bool) -> Attach {
        let mut a = attach(handle, Role::Receiver, address, None);
        if settled {
            a.snd_settle_mode = SenderSettleMode::Settled;
            a.rcv_settle_mode = ReceiverSettleMode::First;
        }
        self.send(0, Performative::Attach(a), &[]).await;
        match self.recv().await.0 {
            Performative::Attach(a) => a,
            other => panic!("expected attach, got {other:?}"),
        }
    }

    pub async fn transfer(&mut self, handle: u32, id: u32, format: u32, payload: &[u8]) {
        let t = Transfer {
            handle: Handle(handle),
            delivery_id: Some(id),
            delivery_tag: Some(ByteBuf::from(id.to_be_bytes().to_vec())),
            message_format: Some(format),
            settled: Some(false),
            more: false,
            rcv_settle_mode: None,
            state: None,
            resume: false,
            aborted: false,
            batchable: false,
        };
        self.send(0, Performative::Transfer(t), payload).await;
    }

    pub async fn flow(&mut self, handle: u32, delivery_count: u32, credit: u32, drain: bool) {
        let f = Flow {
            next_incoming_id: Some(0),
            incoming_window: 10_000,
            next_outgoing_id: 0,
            outgoing_window: 10_000,
            handle: Some(Handle(handle)),
            delivery_count: Some(delivery_count),
            link_credit: Some(credit),
            available: None,
            drain,
            echo: false,
            properties: None,
        };
        self.send(0, Performative::Flow(f), &[]).await;
    }

    pub async fn settle(&mut self, id: u32, state: DeliveryState) -> Disposition {
        let d = Disposition {
            role: Role::Receiver,
            first: id,
            last: None,
            settled: false,
            state: Some(state),
            batchable: false,
        };
        self.send(0, Performative::Disposition(d), &[]).await;
        match self.recv().await.0 {
            Performative::Disposition(d) => d,
            other => panic!("expected disposition, got {other:?}"),
        }
    }
}

pub fn attach(handle: u32, role: Role, address: &str, filter: Option<AV>) -> Attach {
    let mut source = Source::builder().address(address.to_string()).build();
    if let Some(f) = filter {
        let mut fs = OrderedMap::new();
        fs.insert(Symbol::from("com.microsoft:session-filter"), f);
        source.filter = Some(fs);
    }
    let receiver = role == Role::Receiver;
    Attach {
        name: format!("link-{handle}"),
        handle: Handle(handle),
        role,
        snd_settle_mode: SenderSettleMode::Unsettled,
        rcv_settle_mode: if receiver {
            ReceiverSettleMode::Second
        } else {
            ReceiverSettleMode::First
        },
        source: Some(Box::new(source)),
        target: Some(Box::new(TargetArchetype::Target(Target {
            address: Some(address.to_string()),
            ..Default::default()
        }))),
        unsettled: None,
        incomplete_unsettled: false,
        initial_delivery_count: if receiver { None } else { Some(0) },
        max_message_size: None,
        offered_capabilities: None,
        desired_capabilities: None,
        properties: None,
    }
}

/// The condition symbol as it went over the wire (standard conditions decode to enum variants).
pub fn condition(e: &Option<AmqpError>) -> String {
    let Some(e) = e else {
        return String::new();
    };
    let bytes = serde_amqp::to_vec(&e.condition).unwrap();
    match serde_amqp::from_slice::<AV>(&bytes).unwrap() {
        AV::Symbol(s) => s.0,
        other => format!("{other:?}"),
    }
}

/// Sends `n` messages on a fresh sender link (handle 1) and checks each is accepted.
pub async fn send_messages(c: &mut Client, queue: &str, n: u32) {
    let (p, _) = c.attach_sender(1, queue).await;
    assert!(matches!(p, Performative::Attach(_)));
    match c.recv().await.0 {
        Performative::Flow(f) => assert!(f.link_credit.unwrap_or(0) >= n),
        other => panic!("expected credit, got {other:?}"),
    }
    for i in 0..n {
        c.transfer(1, i, 0, &encode_simple(&format!("m{i}"), None, b"x"))
            .await;
    }
    // The server may settle a run of sends with one disposition (`first..=last`).
    let mut settled = 0;
    while settled < n {
        match c.recv().await.0 {
            Performative::Disposition(d) => {
                assert!(d.settled);
                assert!(matches!(d.state, Some(DeliveryState::Accepted(_))));
                assert_eq!(d.first, settled, "settled in delivery order");
                settled = d.last.unwrap_or(d.first) + 1;
            }
            other => panic!("expected disposition, got {other:?}"),
        }
    }
    assert_eq!(settled, n);
}

impl Client {
    /// Attaches the `$cbs` sender (handle 10) and reply receiver (handle 11).
    pub async fn open_cbs(&mut self) {
        self.attach_sender(10, "$cbs").await;
        self.recv().await; // credit
        self.attach_receiver(11, "$cbs", false).await;
        self.flow(11, 0, 100, false).await;
    }

    /// Puts `token` for `audience` (delivery `id` on the `$cbs` sender); the status code.
    pub async fn put_token(&mut self, id: u32, audience: &str, token: &str) -> AV {
        let req = convert::encode_request(
            AV::Ulong(id as u64),
            Some("cbs"),
            vec![
                ("operation", AV::String("put-token".into())),
                ("type", AV::String("servicebus.windows.net:sastoken".into())),
                ("name", AV::String(audience.into())),
            ],
            AV::String(token.into()),
        )
        .unwrap();
        self.transfer(10, id, 0, &req).await;
        loop {
            match self.recv().await {
                (Performative::Transfer(_), payload) => {
                    let m = convert::decode_message(&payload).unwrap();
                    return m.app_property("status-code").cloned().unwrap();
                }
                (Performative::Disposition(_), _) => {}
                (other, _) => panic!("unexpected {other:?}"),
            }
        }
    }

    /// Sends a `$management` request (delivery `id` on the sender link `handle`) and returns
    /// the response (the reply link must have credit).
    pub async fn mgmt_request(
        &mut self,
        handle: u32,
        id: u32,
        operation: &str,
        body: AV,
    ) -> convert::AmqpMessage {
        let req = convert::encode_request(
            AV::Ulong(id as u64),
            Some("mgmt-replies"),
            vec![("operation", AV::String(operation.into()))],
            body,
        )
        .unwrap();
        self.transfer(handle, id, 0, &req).await;
        loop {
            match self.recv().await {
                (Performative::Transfer(_), payload) => {
                    return convert::decode_message(&payload).unwrap();
                }
                (Performative::Disposition(_), _) => {}
                (other, _) => panic!("unexpected {other:?}"),
            }
        }
    }

    /// Expects the server to detach `count` links with `amqp:unauthorized-access`, answers
    /// each detach, and returns their handles in order.
    pub async fn expect_dropped(&mut self, count: usize) -> Vec<u32> {
        let mut handles = Vec::new();
        while handles.len() < count {
            match self.recv().await.0 {
                Performative::Detach(d) => {
                    assert!(d.closed);
                    assert_eq!(condition(&d.error), "amqp:unauthorized-access", "{d:?}");
                    let h = d.handle.0;
                    handles.push(h);
                    let answer = Detach {
                        handle: Handle(h),
                        closed: true,
                        error: None,
                    };
                    self.send(0, Performative::Detach(answer), &[]).await;
                }
                Performative::Flow(_) | Performative::Disposition(_) => {}
                other => panic!("expected a detach, got {other:?}"),
            }
        }
        handles.sort_unstable();
        handles
    }

    /// Attaches a link and expects it refused with `amqp:unauthorized-access`.
    pub async fn expect_unauthorized(&mut self, handle: u32, role: Role, address: &str) {
        self.send(
            0,
            Performative::Attach(attach(handle, role, address, None)),
            &[],
        )
        .await;
        assert!(matches!(self.recv().await.0, Performative::Attach(_)));
        match self.recv().await.0 {
            Performative::Detach(d) => {
                assert!(d.closed);
                assert_eq!(condition(&d.error), "amqp:unauthorized-access", "{d:?}");
                let why = d.error.and_then(|e| e.description).unwrap_or_default();
                assert!(why.contains("Unauthorized access"), "{why}");
            }
            other => panic!("expected detach, got {other:?}"),
        }
        // The client answers the closing detach, as SDKs do.
        self.send(
            0,
            Performative::Detach(Detach {
                handle: Handle(handle),
                closed: true,
                error: None,
            }),
            &[],
        )
        .await;
    }
}
