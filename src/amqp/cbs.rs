//! The `$cbs` node: claims-based security.
//!
//! The SDKs put a SAS token (or JWT) before attaching to an entity and wait for the answer:
//! application property `status-code` 202 (an int, the field name of the CBS protocol, unlike
//! `$management`'s `statusCode`), correlated by `correlation-id` = the request's `message-id`.
//! The emulator accepts every token, as the official emulator does.

use super::convert::{encode_response, AmqpMessage, ConvertError};
use serde_amqp::Value as AV;

/// Answers a CBS request. `put-token` (and anything else) is accepted.
pub fn respond(request: &AmqpMessage) -> Result<Vec<u8>, ConvertError> {
    let operation = request
        .app_property("operation")
        .and_then(super::convert::text_of)
        .unwrap_or_default();
    let (code, description) = if operation == "put-token" || operation.is_empty() {
        (202, "Accepted")
    } else {
        (200, "OK")
    };
    encode_response(
        request.message_id(),
        vec![
            ("status-code", AV::Int(code)),
            ("status-description", AV::String(description.into())),
        ],
        AV::Null,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::amqp::convert::{decode_message, encode_request};

    #[test]
    fn put_token_is_accepted_with_correlation() {
        let id = AV::Uuid(serde_amqp::primitives::Uuid::from([7u8; 16]));
        let req = encode_request(
            id.clone(),
            Some("cbs"),
            vec![
                ("operation", AV::String("put-token".into())),
                ("type", AV::String("servicebus.windows.net:sastoken".into())),
                ("name", AV::String("sb://localhost/q".into())),
            ],
            AV::String("SharedAccessSignature sr=...".into()),
        )
        .unwrap();
        let resp = respond(&decode_message(&req).unwrap()).unwrap();
        let m = decode_message(&resp).unwrap();
        assert_eq!(m.properties.get(5), Some(&id));
        assert_eq!(m.app_property("status-code"), Some(&AV::Int(202)));
    }
}
