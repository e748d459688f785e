//! The AMQP 1.0 frame decoder (src/amqp/frames.rs) and what the connection decodes after it:
//! performatives, transfer payloads (messages and batches, src/amqp/convert.rs) and CBS
//! requests (src/amqp/cbs.rs). The first byte picks the mode:
//! - even: the rest is a byte stream of frames, read as the connection reads them (up to 64
//!   frames), each body decoded as a performative and a transfer's payload as a message;
//! - odd: the rest is a message payload (the part of a transfer after its performative).
#![no_main]

use bytes::Bytes;
use fe2o3_amqp_types::performatives::Performative;
use libfuzzer_sys::fuzz_target;
use localzure::amqp::convert::{self, BATCH_FORMAT};
use localzure::amqp::{cbs, frames};
use localzure::sas::SasKey;

/// Decodes a message payload every way the endpoint does.
fn payload(bytes: &[u8], format: u32) {
    let _ = convert::decode_send(bytes, format);
    let _ = convert::decode_send(bytes, BATCH_FORMAT);
    if let Ok(m) = convert::decode_message(bytes) {
        let _ = m.message_id();
        let _ = m.reply_to();
        let _ = m.to_new_message();
        let _ = m.batch_parts();
        let key = SasKey {
            name: "RootManageSharedAccessKey".into(),
            key: "c2VjcmV0".into(),
        };
        let _ = cbs::respond(&m, None, None, 0);
        let _ = cbs::respond(&m, Some(&key), Some("localhost"), 1_700_000_000);
    }
}

fn frame_body(f: &frames::RawFrame) {
    let _ = frames::descriptor_code(&f.body);
    if f.frame_type != frames::FRAME_TYPE_AMQP {
        let _ = frames::check_value(&f.body);
        return;
    }
    if let Ok(Some((perf, rest))) = frames::decode_amqp_body(&f.body) {
        if let Performative::Transfer(t) = perf {
            payload(&rest, t.message_format.unwrap_or(0));
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    if mode & 1 == 1 {
        payload(rest, 0);
        return;
    }
    let mut reader: &[u8] = rest;
    futures::executor::block_on(async {
        for _ in 0..64 {
            match frames::read_frame(&mut reader, 64 * 1024).await {
                Ok(Some(f)) => frame_body(&f),
                Ok(None) | Err(_) => break,
            }
        }
    });
    let _ = frames::check_value(rest);
    let _ = frames::decode_amqp_body(&Bytes::copy_from_slice(rest));
});
