//! The journal decoder and replay (src/storage/journal.rs, src/service.rs). Two modes, picked
//! by the first byte:
//! - even: the rest is a journal file image; decoding must classify it (records, torn tail or
//!   corruption) without panicking.
//! - odd: the rest is newline-separated record payloads. They are framed with valid CRCs and
//!   LSNs, so decoding must give them back exactly; then each is decoded as an operation
//!   record and applied to a broker, as start-up replay does.
#![no_main]

use libfuzzer_sys::fuzz_target;
use localzure::broker::op::OpRecord;
use localzure::broker::Broker;
use localzure::storage::journal::{self, FORMAT_VERSION, MAGIC};
use localzure_fuzz::T0;

/// One record as the journal writes it: `len u32 | crc32(lsn ‖ payload) u32 | lsn u64 | payload`.
fn frame(out: &mut Vec<u8>, lsn: u64, payload: &[u8]) {
    let mut h = crc32fast::Hasher::new();
    h.update(&lsn.to_le_bytes());
    h.update(payload);
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&h.finalize().to_le_bytes());
    out.extend_from_slice(&lsn.to_le_bytes());
    out.extend_from_slice(payload);
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    if mode & 1 == 0 {
        if let Ok(replay) = journal::decode(rest) {
            let mut last = 0;
            for (lsn, _) in &replay.records {
                assert!(*lsn > last, "decoded LSNs must increase");
                last = *lsn;
            }
            if let Some(off) = replay.torn_tail {
                assert!(off as usize <= rest.len(), "torn tail past the end");
            }
        }
        return;
    }
    let payloads: Vec<&[u8]> = rest.split(|b| *b == b'\n').collect();
    let mut file = MAGIC.to_vec();
    file.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    for (i, p) in payloads.iter().enumerate() {
        frame(&mut file, i as u64 + 1, p);
    }
    let replay = match journal::decode(&file) {
        Ok(r) => r,
        Err(e) => panic!("a well-formed journal does not decode: {e}"),
    };
    assert_eq!(
        replay.torn_tail, None,
        "a well-formed journal has no torn tail"
    );
    assert_eq!(replay.records.len(), payloads.len());
    let mut broker = Broker::new(T0);
    for ((_, payload), want) in replay.records.iter().zip(&payloads) {
        assert_eq!(payload.as_slice(), *want);
        if let Ok(rec) = serde_json::from_slice::<OpRecord>(payload) {
            let _ = broker.apply(&rec);
        }
    }
});
