//! Writes the seed corpora under `fuzz/corpus/<target>/`: a few realistic inputs per target,
//! produced by the crate's own encoders (ATOM rendering, AMQP encoding, the operation-record
//! JSON), so the fuzzers start from inputs the server really sees.
//!
//! `cd fuzz && cargo run --example seeds`.

use fe2o3_amqp_types::definitions::{ReceiverSettleMode, Role, SenderSettleMode};
use fe2o3_amqp_types::performatives::{Attach, Begin, Close, Open, Performative, Transfer};
use localzure::amqp::convert::{
    encode_batch, encode_message, encode_request, encode_simple, Encoding,
};
use localzure::amqp::frames::{encode_frame, encode_performative, AMQP_HEADER, FRAME_TYPE_SASL};
use localzure::broker::entity::{
    CorrelationFilter, CountDetails, EntityInfo, EntityKind, EntityProps, EntityTimes, Filter,
    Rule, SqlAction, SqlFilterDef,
};
use localzure::broker::message::NewMessage;
use localzure::broker::op::{Op, OpRecord, ReceiveMode, Settlement};
use localzure::broker::value::Value;
use localzure::http::atom;
use localzure::time::TimeSpan;
use localzure_fuzz::{path, sample_message, sample_properties, T0};
use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

fn write(target: &str, name: &str, bytes: &[u8]) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("corpus")
        .join(target);
    fs::create_dir_all(&dir).expect("create the corpus directory");
    fs::write(dir.join(name), bytes).expect("write a seed");
}

fn with_mode(mode: u8, rest: &[u8]) -> Vec<u8> {
    let mut v = vec![mode];
    v.extend_from_slice(rest);
    v
}

fn info(kind: EntityKind, props: EntityProps) -> EntityInfo {
    EntityInfo {
        kind,
        name: "orders".into(),
        topic: (kind == EntityKind::Subscription).then(|| "events".to_string()),
        props,
        times: EntityTimes {
            created_at: T0,
            updated_at: T0,
            accessed_at: T0,
        },
        counts: CountDetails::default(),
        size_in_bytes: 0,
        subscription_count: 0,
    }
}

fn rules() -> Vec<Rule> {
    let mut params = BTreeMap::new();
    params.insert("@color".to_string(), Value::String("red".into()));
    params.insert("@n".to_string(), Value::Int(5));
    vec![
        Rule {
            name: "sql".into(),
            filter: Filter::Sql(SqlFilterDef {
                expression: "color = @color AND Quantity > @n OR sys.Label LIKE 'Red%'".into(),
                parameters: params.clone(),
                compatibility_level: 20,
            }),
            action: Some(SqlAction {
                expression: "SET sys.Label = 'x'; SET tier = Quantity * 2; REMOVE color".into(),
                parameters: params,
                compatibility_level: 20,
            }),
            created_at: T0,
        },
        Rule {
            name: "corr".into(),
            filter: Filter::Correlation(CorrelationFilter {
                correlation_id: Some("c1".into()),
                label: Some("l".into()),
                properties: sample_properties(),
                ..Default::default()
            }),
            action: None,
            created_at: T0,
        },
        Rule::default_rule(T0),
    ]
}

fn atom_seeds() {
    let mut custom = EntityProps {
        lock_duration: TimeSpan::from_secs(45),
        max_delivery_count: 3,
        requires_session: false,
        default_message_time_to_live: TimeSpan::from_secs(3_600),
        user_metadata: Some("meta <&>".into()),
        forward_to: Some("other".into()),
        ..EntityProps::default()
    };
    custom.duplicate_detection_history_time_window = TimeSpan::from_secs(90);
    for (kind, name) in [
        (EntityKind::Queue, "queue"),
        (EntityKind::Topic, "topic"),
        (EntityKind::Subscription, "subscription"),
    ] {
        let xml = atom::entity_entry(&info(kind, EntityProps::default()), "http://localhost/");
        write("atom", &format!("{name}-default.xml"), xml.as_bytes());
        let xml = atom::entity_entry(&info(kind, custom.clone()), "http://localhost/");
        write("atom", &format!("{name}-custom.xml"), xml.as_bytes());
    }
    for r in rules() {
        let xml = atom::rule_entry(&r, "events", "audit", "http://localhost/");
        write(
            "atom",
            &format!("rule-{}.xml", r.name.trim_start_matches('$')),
            xml.as_bytes(),
        );
    }
    // A minimal body as the SDKs send it.
    let sdk = r#"<?xml version="1.0" encoding="utf-8"?><entry xmlns="http://www.w3.org/2005/Atom"><content type="application/xml"><QueueDescription xmlns="http://schemas.microsoft.com/netservices/2010/10/servicebus/connect" xmlns:i="http://www.w3.org/2001/XMLSchema-instance"><LockDuration>PT1M</LockDuration><MaxDeliveryCount>10</MaxDeliveryCount><ForwardTo i:nil="true"/></QueueDescription></content></entry>"#;
    write("atom", "sdk-queue.xml", sdk.as_bytes());
}

fn broker_properties_seeds() {
    let single = br#"{"MessageId":"m1","Label":"l","TimeToLive":60.5,"SessionId":null,"CorrelationId":"c","ScheduledEnqueueTimeUtc":"Sun, 06 Nov 1994 08:49:37 GMT","PartitionKey":"p","ReplyTo":"r","To":"t","ContentType":"text/plain"}
"quoted value"
hello body"#;
    write("broker_properties", "single", &with_mode(0, single));
    write(
        "broker_properties",
        "single-number",
        &with_mode(0, b"{}\n12.5\nbody"),
    );
    let batch = br#"[{"Body":"hi","BrokerProperties":{"MessageId":"m1","Label":"l","TimeToLive":3600},"UserProperties":{"n":1,"s":"x","b":true,"d":2.5}},{"Body":{"json":[1,2]}},{"Body":"two","BrokerProperties":{"ScheduledEnqueueTimeUtc":"2030-01-01T00:00:00Z"}}]"#;
    write("broker_properties", "batch", &with_mode(1, batch));
}

fn sql_seeds() {
    let filters = [
        "color = 'red' AND Quantity > 5",
        "sys.Label LIKE 'Red%' ESCAPE '!' OR price * 2 >= 5.0E0",
        "user.color IN ('red', 'blue') AND NOT EXISTS(missing) AND nothing IS NULL",
        "p('sys.MessageId') = 'msg-1' AND sys.DeliveryCount + 1 <> -3 AND @p = color",
        "[my prop] = \"x\" OR (Quantity % 3) / 2 = 1 AND newid() IS NOT NULL AND big + 1 > 0",
        "SET sys.Label = 'routed'; SET tier = Quantity * 10; REMOVE color",
        "SET user.x = sys.EnqueuedTimeUtc; REMOVE sys.To",
    ];
    for (i, f) in filters.iter().enumerate() {
        write("sql_filter", &format!("expr-{i}"), f.as_bytes());
    }
}

fn journal_seeds() {
    let sent = Op::Send {
        entity: "q".into(),
        messages: vec![sample_message().content.to_new_message(), NewMessage::default()],
    };
    let ops = vec![
        Op::CreateQueue {
            name: "q".into(),
            props: EntityProps::default(),
        },
        Op::CreateTopic {
            name: "t".into(),
            props: EntityProps::default(),
        },
        Op::CreateSubscription {
            topic: "t".into(),
            name: "s".into(),
            props: EntityProps::default(),
            rule: rules().into_iter().next(),
        },
        sent,
        Op::Receive {
            from: path("q", None),
            mode: ReceiveMode::PeekLock,
            max: 2,
            lock_tokens: vec![uuid::Uuid::nil(), uuid::Uuid::max()],
            session: None,
        },
        Op::Settle {
            from: path("q", None),
            lock_token: uuid::Uuid::nil(),
            settlement: Settlement::DeadLetter {
                reason: Some("r".into()),
                description: None,
                properties: BTreeMap::new(),
            },
        },
        Op::Tick,
    ];
    let lines: Vec<Vec<u8>> = ops
        .into_iter()
        .enumerate()
        .map(|(i, op)| {
            serde_json::to_vec(&OpRecord {
                at: T0 + i as i64 * 1_000,
                op,
            })
            .expect("an operation record serialises")
        })
        .collect();
    write("journal", "replay-ops", &with_mode(1, &lines.join(&b'\n')));
    // A real file image: header, then framed records (mode 0).
    let mut file = localzure::storage::journal::MAGIC.to_vec();
    file.extend_from_slice(&localzure::storage::journal::FORMAT_VERSION.to_le_bytes());
    for (i, l) in lines.iter().take(3).enumerate() {
        let lsn = i as u64 + 1;
        let mut h = crc32fast::Hasher::new();
        h.update(&lsn.to_le_bytes());
        h.update(l);
        file.extend_from_slice(&(l.len() as u32).to_le_bytes());
        file.extend_from_slice(&h.finalize().to_le_bytes());
        file.extend_from_slice(&lsn.to_le_bytes());
        file.extend_from_slice(l);
    }
    write("journal", "file", &with_mode(0, &file));
    let torn = file.len() - 5;
    write("journal", "file-torn", &with_mode(0, &file[..torn]));
}

fn amqp_seeds() {
    let msg = sample_message();
    let delivery = encode_message(&msg, Encoding::Delivery).expect("encode a message");
    let simple = encode_simple("m1", Some("s1"), b"body");
    let batch = encode_batch(&[simple.clone(), delivery.clone()]);
    use fe2o3_amqp_types::primitives::Value as AV;
    let request = encode_request(
        AV::String("req-1".into()),
        Some("cbs-reply"),
        vec![
            ("operation", AV::String("put-token".into())),
            ("type", AV::String("servicebus.windows.net:sastoken".into())),
            ("name", AV::String("amqp://localhost/q".into())),
        ],
        AV::String(
            "SharedAccessSignature sr=amqp%3A%2F%2Flocalhost%2Fq&sig=abc%3D&se=1700003600&skn=RootManageSharedAccessKey"
                .into(),
        ),
    )
    .expect("encode a request");
    write("amqp_frame", "message", &with_mode(1, &delivery));
    write("amqp_frame", "batch", &with_mode(1, &batch));
    write("amqp_frame", "cbs-request", &with_mode(1, &request));
    let mut stream = Vec::new();
    let _ = AMQP_HEADER;
    stream.extend(encode_frame(FRAME_TYPE_SASL, 0, &[0x00, 0x53, 0x41, 0x45]));
    let open = Performative::Open(Open {
        container_id: "client".into(),
        hostname: Some("localhost".into()),
        max_frame_size: 65_536.into(),
        channel_max: 16.into(),
        idle_time_out: Some(60_000),
        outgoing_locales: None,
        incoming_locales: None,
        offered_capabilities: None,
        desired_capabilities: None,
        properties: None,
    });
    let begin = Performative::Begin(Begin {
        remote_channel: None,
        next_outgoing_id: 1,
        incoming_window: 5_000,
        outgoing_window: 5_000,
        handle_max: 255.into(),
        offered_capabilities: None,
        desired_capabilities: None,
        properties: None,
    });
    let attach = Performative::Attach(Attach {
        name: "sender".into(),
        handle: 0.into(),
        role: Role::Sender,
        snd_settle_mode: SenderSettleMode::Unsettled,
        rcv_settle_mode: ReceiverSettleMode::First,
        source: None,
        target: None,
        unsettled: None,
        incomplete_unsettled: false,
        initial_delivery_count: Some(0),
        max_message_size: None,
        offered_capabilities: None,
        desired_capabilities: None,
        properties: None,
    });
    let transfer = Performative::Transfer(Transfer {
        handle: 0.into(),
        delivery_id: Some(0),
        delivery_tag: Some(vec![1, 2, 3, 4].into()),
        message_format: Some(0),
        settled: Some(false),
        more: false,
        rcv_settle_mode: None,
        state: None,
        resume: false,
        aborted: false,
        batchable: false,
    });
    for (p, payload) in [
        (&open, &[][..]),
        (&begin, &[][..]),
        (&attach, &[][..]),
        (&transfer, &simple[..]),
        (&Performative::Close(Close { error: None }), &[][..]),
    ] {
        stream.extend(encode_performative(1, p, payload).expect("encode a performative"));
    }
    write("amqp_frame", "session", &with_mode(0, &stream));
}

fn main() {
    atom_seeds();
    broker_properties_seeds();
    sql_seeds();
    journal_seeds();
    amqp_seeds();
    println!("seeds written under fuzz/corpus/");
}
