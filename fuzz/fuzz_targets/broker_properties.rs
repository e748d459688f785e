//! The REST send path (src/http/messaging.rs): the BrokerProperties header JSON of a single
//! send, custom-property header values, and the JSON batch body. The resulting messages are
//! sent to a queue and a topic, received, settled and aged by the timers, and each received
//! message's BrokerProperties reply header is rendered.
//!
//! Input: the first byte picks the mode. Odd: a batch body (the rest). Even: the rest is
//! `BrokerProperties JSON \n custom property value \n body`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use localzure::broker::entity::EntityProps;
use localzure::broker::op::Op;
use localzure::broker::value::Value;
use localzure::http::messaging;
use localzure_fuzz::{apply, broker_with, path, split_line, workout, T0};
use std::collections::BTreeMap;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let messages = if mode & 1 == 1 {
        match messaging::parse_batch(rest) {
            Ok(m) => m,
            Err(_) => return,
        }
    } else {
        let (bp, rest) = split_line(rest);
        let (prop, body) = split_line(rest);
        let Ok(bp) = std::str::from_utf8(bp) else {
            return;
        };
        let mut props = BTreeMap::new();
        if let Ok(p) = std::str::from_utf8(prop) {
            let v = Value::from_header(p);
            let _ = v.to_header();
            let _ = v.to_json();
            props.insert("custom".to_string(), v);
        }
        let bp = (!bp.is_empty()).then_some(bp);
        match messaging::single_message(bp, body.to_vec(), Some("text/plain".into()), props) {
            Ok(m) => vec![m],
            Err(_) => return,
        }
    };
    let mut broker = broker_with(EntityProps::default(), None);
    for entity in ["q", "t"] {
        let _ = apply(
            &mut broker,
            T0,
            Op::Send {
                entity: entity.into(),
                messages: messages.clone(),
            },
        );
    }
    for from in [path("q", None), path("t", Some("s"))] {
        for m in workout(&mut broker, &from, T0) {
            let _ = messaging::broker_properties(&m).to_string();
        }
    }
});
