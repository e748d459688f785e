//! AMQP 1.0 framing: protocol headers, the 8-byte frame header, and the split between a
//! performative and its payload.
//!
//! The codec (every performative and section type) is `fe2o3-amqp-types` / `serde_amqp`; this
//! module only knows the transport frame layout (AMQP 1.0 part 2.3): `size u32 | doff u8 |
//! type u8 | channel u16 | extended header | body`. A transfer's body is its performative
//! followed by the message bytes; the boundary is found by measuring the first encoded value
//! (`LazyValue`), so the payload is never re-encoded.

use bytes::Bytes;
use fe2o3_amqp_types::performatives::Performative;
use serde_amqp::lazy::LazyValue;
use serde_amqp::read::SliceReader;
use tokio::io::{AsyncRead, AsyncReadExt};

/// The protocol header a client sends to start SASL.
pub const SASL_HEADER: [u8; 8] = [b'A', b'M', b'Q', b'P', 3, 1, 0, 0];
/// The protocol header of plain AMQP 1.0.
pub const AMQP_HEADER: [u8; 8] = [b'A', b'M', b'Q', b'P', 0, 1, 0, 0];
/// Frame type of AMQP frames.
pub const FRAME_TYPE_AMQP: u8 = 0;
/// Frame type of SASL frames.
pub const FRAME_TYPE_SASL: u8 = 1;
/// The smallest max-frame-size the spec allows a peer to announce.
pub const MIN_MAX_FRAME_SIZE: u32 = 512;
/// An empty AMQP frame on channel 0: the idle-timeout heartbeat.
pub const HEARTBEAT: [u8; 8] = [0, 0, 0, 8, 2, 0, 0, 0];

/// Why a frame could not be read or decoded. Any of these closes the connection (with an
/// AMQP error where the connection is still open), never the server.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
    #[error("malformed frame: {0}")]
    Malformed(String),
    #[error("frame of {size} bytes exceeds the negotiated maximum of {max}")]
    TooLarge { size: u32, max: u32 },
    #[error("codec error: {0}")]
    Codec(String),
}

impl From<serde_amqp::Error> for FrameError {
    fn from(e: serde_amqp::Error) -> Self {
        FrameError::Codec(e.to_string())
    }
}

/// A frame as read off the wire, before its body is decoded.
#[derive(Debug, Clone, PartialEq)]
pub struct RawFrame {
    pub frame_type: u8,
    pub channel: u16,
    /// The frame body (after the extended header); empty for a heartbeat.
    pub body: Bytes,
}

/// Reads an 8-byte protocol header.
pub async fn read_protocol_header<R: AsyncRead + Unpin>(r: &mut R) -> Result<[u8; 8], FrameError> {
    let mut h = [0u8; 8];
    r.read_exact(&mut h).await?;
    Ok(h)
}

/// Reads one frame. `Ok(None)` is a clean end of stream at a frame boundary.
pub async fn read_frame<R: AsyncRead + Unpin>(
    r: &mut R,
    max_frame_size: u32,
) -> Result<Option<RawFrame>, FrameError> {
    let mut size_buf = [0u8; 4];
    match r.read_exact(&mut size_buf).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e.into()),
    }
    let size = u32::from_be_bytes(size_buf);
    if size < 8 {
        return Err(FrameError::Malformed(format!("frame size {size} < 8")));
    }
    if size > max_frame_size {
        return Err(FrameError::TooLarge {
            size,
            max: max_frame_size,
        });
    }
    let mut rest = vec![0u8; size as usize - 4];
    r.read_exact(&mut rest).await?;
    parse_frame_after_size(size, rest)
}

/// Parses the part of a frame after its size field.
fn parse_frame_after_size(size: u32, rest: Vec<u8>) -> Result<Option<RawFrame>, FrameError> {
    let doff = rest[0] as usize;
    if doff < 2 || doff * 4 > size as usize {
        return Err(FrameError::Malformed(format!("data offset {doff} invalid")));
    }
    let frame_type = rest[1];
    let channel = u16::from_be_bytes([rest[2], rest[3]]);
    let body = Bytes::from(rest).slice(doff * 4 - 4..);
    Ok(Some(RawFrame {
        frame_type,
        channel,
        body,
    }))
}

/// Splits the first AMQP-encoded value off `buf`: `(value bytes, rest)`.
pub fn split_value(buf: &[u8]) -> Result<(&[u8], &[u8]), FrameError> {
    if buf.is_empty() {
        return Err(FrameError::Malformed(
            "expected a value, found nothing".into(),
        ));
    }
    let mut reader = SliceReader::new(buf);
    let lazy = LazyValue::from_reader(&mut reader)?;
    let n = lazy.as_slice().len();
    if n == 0 || n > buf.len() {
        return Err(FrameError::Malformed("value length out of range".into()));
    }
    Ok(buf.split_at(n))
}

/// Decodes the body of an AMQP frame: `None` for a heartbeat, else the performative and the
/// payload that follows it (a transfer's message bytes; empty for other performatives).
pub fn decode_amqp_body(body: &Bytes) -> Result<Option<(Performative, Bytes)>, FrameError> {
    if body.is_empty() {
        return Ok(None);
    }
    let (perf_bytes, rest) = split_value(body)?;
    let performative: Performative = serde_amqp::from_slice(perf_bytes)?;
    let payload = body.slice(body.len() - rest.len()..);
    Ok(Some((performative, payload)))
}

/// Encodes a frame with the given type, channel and body (no extended header).
pub fn encode_frame(frame_type: u8, channel: u16, body: &[u8]) -> Vec<u8> {
    let size = (body.len() + 8) as u32;
    let mut out = Vec::with_capacity(body.len() + 8);
    out.extend_from_slice(&size.to_be_bytes());
    out.push(2);
    out.push(frame_type);
    out.extend_from_slice(&channel.to_be_bytes());
    out.extend_from_slice(body);
    out
}

/// Encodes an AMQP frame carrying a performative and an optional payload.
pub fn encode_performative(
    channel: u16,
    performative: &Performative,
    payload: &[u8],
) -> Result<Vec<u8>, FrameError> {
    let mut body = serde_amqp::to_vec(performative)?;
    body.extend_from_slice(payload);
    Ok(encode_frame(FRAME_TYPE_AMQP, channel, &body))
}

/// Encodes a SASL frame carrying any serialisable SASL body (mechanisms, outcome, ...).
pub fn encode_sasl<T: serde::Serialize>(body: &T) -> Result<Vec<u8>, FrameError> {
    let bytes = serde_amqp::to_vec(body)?;
    Ok(encode_frame(FRAME_TYPE_SASL, 0, &bytes))
}

/// The descriptor code of a described value (`0x00` constructor), if `bytes` starts with one
/// whose descriptor is a numeric code.
pub fn descriptor_code(bytes: &[u8]) -> Option<u64> {
    if bytes.first() != Some(&0x00) {
        return None;
    }
    match bytes.get(1)? {
        0x53 => bytes.get(2).map(|b| *b as u64),
        0x80 => {
            let raw: [u8; 8] = bytes.get(2..10)?.try_into().ok()?;
            Some(u64::from_be_bytes(raw))
        }
        0x44 => Some(0),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fe2o3_amqp_types::performatives::{Close, End};

    #[test]
    fn performative_round_trips_with_payload() {
        let perf = Performative::End(End { error: None });
        let bytes = encode_performative(3, &perf, b"tail").unwrap();
        let size = u32::from_be_bytes(bytes[0..4].try_into().unwrap());
        assert_eq!(size as usize, bytes.len());
        let raw = parse_frame_after_size(size, bytes[4..].to_vec())
            .unwrap()
            .unwrap();
        assert_eq!(raw.channel, 3);
        let (p, payload) = decode_amqp_body(&raw.body).unwrap().unwrap();
        assert_eq!(p, perf);
        assert_eq!(&payload[..], b"tail");
    }

    #[test]
    fn malformed_frames_are_errors_not_panics() {
        assert!(parse_frame_after_size(8, vec![1, 0, 0, 0]).is_err());
        assert!(decode_amqp_body(&Bytes::from_static(&[0x00, 0x53])).is_err());
        assert!(decode_amqp_body(&Bytes::from_static(&[0xff, 0xff, 0xff])).is_err());
        assert!(split_value(&[]).is_err());
        let close = Performative::Close(Close { error: None });
        let bytes = serde_amqp::to_vec(&close).unwrap();
        assert_eq!(descriptor_code(&bytes), Some(0x18));
    }

    #[tokio::test]
    async fn reads_frames_and_eof() {
        let mut data = encode_frame(FRAME_TYPE_AMQP, 0, &[]);
        data.extend(encode_frame(FRAME_TYPE_SASL, 0, &[0x40]));
        let mut r = &data[..];
        let f = read_frame(&mut r, 1024).await.unwrap().unwrap();
        assert!(f.body.is_empty());
        let f = read_frame(&mut r, 1024).await.unwrap().unwrap();
        assert_eq!(f.frame_type, FRAME_TYPE_SASL);
        assert!(read_frame(&mut r, 1024).await.unwrap().is_none());
        let big = encode_frame(FRAME_TYPE_AMQP, 0, &[0u8; 100]);
        let mut r = &big[..];
        assert!(matches!(
            read_frame(&mut r, 50).await,
            Err(FrameError::TooLarge { .. })
        ));
    }
}
