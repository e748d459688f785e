//! The connection handshake: SASL (any mechanism, any credentials) and the AMQP protocol header.

use crate::amqp::frames::{
    descriptor_code, encode_sasl, read_frame, read_protocol_header, FrameError, AMQP_HEADER,
    FRAME_TYPE_SASL, SASL_HEADER,
};
use crate::amqp::symbols::SASL_MECHANISMS;
use fe2o3_amqp_types::sasl::{SaslCode, SaslMechanisms, SaslOutcome};
use serde_amqp::primitives::{Array, Symbol};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};

/// SASL (any mechanism, any credentials) and the AMQP protocol header.
pub(super) async fn handshake<R, W>(rd: &mut R, wr: &mut W) -> Result<(), FrameError>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    loop {
        let header = read_protocol_header(rd).await?;
        if header == SASL_HEADER {
            wr.write_all(&SASL_HEADER).await?;
            let mechanisms = SaslMechanisms {
                sasl_server_mechanisms: Array(
                    SASL_MECHANISMS.into_iter().map(Symbol::from).collect(),
                ),
            };
            wr.write_all(&encode_sasl(&mechanisms)?).await?;
            wr.flush().await?;
            let init = read_frame(rd, 64 * 1024)
                .await?
                .ok_or_else(|| FrameError::Malformed("connection closed during SASL".into()))?;
            if init.frame_type != FRAME_TYPE_SASL || descriptor_code(&init.body) != Some(0x41) {
                return Err(FrameError::Malformed("expected sasl-init".into()));
            }
            let outcome = SaslOutcome {
                code: SaslCode::Ok,
                additional_data: None,
            };
            wr.write_all(&encode_sasl(&outcome)?).await?;
            wr.flush().await?;
            continue;
        }
        if header == AMQP_HEADER {
            wr.write_all(&AMQP_HEADER).await?;
            wr.flush().await?;
            return Ok(());
        }
        // Tell the peer which protocol we speak, then hang up (AMQP 1.0 §2.2).
        wr.write_all(&SASL_HEADER).await?;
        wr.flush().await?;
        return Err(FrameError::Malformed(format!(
            "unsupported protocol header {header:?}"
        )));
    }
}
