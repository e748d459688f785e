//! The `$cbs` node: claims-based security.
//!
//! The SDKs put a SAS token (or JWT) before attaching to an entity and wait for the answer:
//! application property `status-code` 202 (an int, the field name of the CBS protocol, unlike
//! `$management`'s `statusCode`), correlated by `correlation-id` = the request's `message-id`.
//! The emulator accepts every token, as the official emulator does, unless SAS validation is
//! configured (`LOCALZURE_SAS_KEY_NAME`/`LOCALZURE_SAS_KEY`): then a `put-token` whose token
//! (the body, a string) is badly signed, expired or not for its `name` (the audience) answers
//! 401 with the reason as status-description, as Azure does. An accepted token is then a
//! [`Grant`] of its connection: a link to an entity attaches only while the connection holds an
//! unexpired grant covering the entity's path; otherwise it is attached and at once detached
//! with `amqp:unauthorized-access`, as Azure answers. The same holds for an entity's
//! `$management` links, and each management request is checked again. As in Service Bus, when
//! a token expires without a renewal (a new put-token for the same audience) the links it
//! covered are detached with `amqp:unauthorized-access`, and a connection that puts no valid
//! token within 20 seconds of opening is closed (`crate::amqp::connection`).

use super::convert::{encode_response, AmqpMessage, ConvertError};
use super::symbols as sym;
use crate::sas::SasKey;
use serde_amqp::Value as AV;

/// Validates the token of a put-token request for its audience (`name`, e.g.
/// `sb://host/queue`) on a connection opened for `hostname` (the open frame's `hostname`).
///
/// Like the REST plane's `Host` check, the token's resource must name this namespace's host
/// (scheme-less, port aside, case-insensitive): the connection's `hostname` when the client
/// sent one (the SDKs send the namespace host there, e.g. azure-servicebus's pyamqp
/// `Connection(hostname=fully_qualified_namespace)`), else the host of the audience the client
/// asks for. A token signed for another namespace is refused as the service refuses it.
fn check(
    request: &AmqpMessage,
    key: &SasKey,
    hostname: Option<&str>,
    now_secs: u64,
) -> Result<(), String> {
    let Some((token, path)) = token_and_audience(request) else {
        return Err("MissingToken: The put-token request has no token.".to_string());
    };
    let audience = request
        .app_property("name")
        .and_then(super::convert::text_of)
        .unwrap_or_default();
    // Only an absolute audience (`sb://host/path`) names a host; a bare path does not.
    let audience_host = audience
        .contains("://")
        .then(|| crate::sas::resource_host_path(&audience).0)
        .filter(|h| !h.is_empty());
    let host = hostname
        .filter(|h| !h.is_empty())
        .map(str::to_string)
        .or(audience_host);
    crate::sas::validate_at(key, &token, host.as_deref(), Some(&path), now_secs)
}

/// What an accepted put-token grants on its connection (when SAS validation is on): links to
/// `scope` and the paths below it, until `expires` (seconds since the epoch).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    /// Lowercase entity path of the token's audience; empty for the whole namespace.
    pub scope: String,
    pub expires: u64,
}

/// Whether `grants` let a link attach to `entity` (a path, any case) at `now_secs`.
pub fn granted(grants: &[Grant], entity: &str, now_secs: u64) -> bool {
    let entity = entity.trim_matches('/').to_ascii_lowercase();
    grants
        .iter()
        .any(|g| g.expires > now_secs && crate::sas::covers(&g.scope, &entity))
}

/// Seconds since the epoch of a broker time (token expiries are in seconds).
pub fn secs(now: crate::time::Millis) -> u64 {
    u64::try_from(now.div_euclid(1000)).unwrap_or(0)
}

/// The accepted put-tokens of one connection, shared by its attach checks, its management
/// requests (checked when they run) and its expiry checks.
#[derive(Debug, Default)]
pub struct Grants(std::sync::Mutex<Vec<Grant>>);

impl Grants {
    fn all(&self) -> std::sync::MutexGuard<'_, Vec<Grant>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records an accepted token; a renewed token replaces the one for the same audience.
    pub fn record(&self, grant: Grant) {
        let mut all = self.all();
        all.retain(|old| old.scope != grant.scope);
        all.push(grant);
    }

    /// Whether an unexpired token covers `entity` at broker time `now`.
    pub fn cover(&self, entity: &str, now: crate::time::Millis) -> bool {
        granted(&self.all(), entity, secs(now))
    }

    /// Whether any token was ever accepted on the connection.
    pub fn any(&self) -> bool {
        !self.all().is_empty()
    }
}

/// The token of a put-token request and its audience's entity path (lowercase).
fn token_and_audience(request: &AmqpMessage) -> Option<(String, String)> {
    let token = match &request.body {
        super::convert::AmqpBody::Value(AV::String(s)) => s.clone(),
        super::convert::AmqpBody::Value(AV::Binary(b)) => String::from_utf8_lossy(b).into_owned(),
        super::convert::AmqpBody::Data(chunks) => {
            String::from_utf8_lossy(&chunks.concat()).into_owned()
        }
        _ => return None,
    };
    let audience = request
        .app_property("name")
        .and_then(super::convert::text_of)
        .unwrap_or_default();
    let path = super::address::normalize(&audience).to_ascii_lowercase();
    Some((token, path))
}

/// Answers a CBS request: `put-token` is accepted (202) when `sas` is `None` or the token is
/// valid at `now_secs` for the connection's `hostname`, else refused (401); anything else
/// answers 200. With `sas` set, an accepted token's [`Grant`] is returned for the connection
/// to remember.
pub fn respond(
    request: &AmqpMessage,
    sas: Option<&SasKey>,
    hostname: Option<&str>,
    now_secs: u64,
) -> Result<(Vec<u8>, Option<Grant>), ConvertError> {
    let operation = request
        .app_property(sym::OPERATION)
        .and_then(super::convert::text_of)
        .unwrap_or_default();
    let mut grant = None;
    let (code, description) = if operation == sym::PUT_TOKEN || operation.is_empty() {
        match sas.map(|key| check(request, key, hostname, now_secs)) {
            Some(Err(reason)) => (401, reason),
            Some(Ok(())) => {
                grant = token_and_audience(request).map(|(token, scope)| Grant {
                    scope,
                    expires: crate::sas::expiry(&token).unwrap_or(0),
                });
                (202, "Accepted".to_string())
            }
            None => (202, "Accepted".to_string()),
        }
    } else {
        (200, "OK".to_string())
    };
    let bytes = encode_response(
        request.message_id(),
        vec![
            (sym::CBS_STATUS_CODE, AV::Int(code)),
            (sym::CBS_STATUS_DESCRIPTION, AV::String(description)),
        ],
        AV::Null,
    )?;
    Ok((bytes, grant))
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
        let (resp, grant) = respond(&decode_message(&req).unwrap(), None, None, 0).unwrap();
        assert_eq!(grant, None, "no grants without SAS validation");
        let m = decode_message(&resp).unwrap();
        assert_eq!(m.properties.get(5), Some(&id));
        assert_eq!(m.app_property("status-code"), Some(&AV::Int(202)));
    }

    fn put_token(token: &str, audience: &str) -> AmqpMessage {
        let req = encode_request(
            AV::Ulong(1),
            Some("cbs"),
            vec![
                ("operation", AV::String("put-token".into())),
                ("type", AV::String("servicebus.windows.net:sastoken".into())),
                ("name", AV::String(audience.into())),
            ],
            AV::String(token.into()),
        )
        .unwrap();
        decode_message(&req).unwrap()
    }

    fn status(req: &AmqpMessage, key: &SasKey, now: u64) -> (AV, String) {
        status_on(req, key, None, now)
    }

    fn status_on(req: &AmqpMessage, key: &SasKey, host: Option<&str>, now: u64) -> (AV, String) {
        let m = decode_message(&respond(req, Some(key), host, now).unwrap().0).unwrap();
        let d = super::super::convert::text_of(m.app_property("status-description").unwrap())
            .unwrap_or_default();
        (m.app_property("status-code").cloned().unwrap(), d)
    }

    #[test]
    fn put_token_is_validated_when_sas_is_configured() {
        let key = SasKey {
            name: "RootManageSharedAccessKey".into(),
            key: "secret-key".into(),
        };
        let good = crate::sas::token(&key, "sb://localhost/orders", 2_000);
        let req = put_token(&good, "sb://localhost/orders");
        assert_eq!(status(&req, &key, 1_000).0, AV::Int(202));
        // Expired.
        let (code, why) = status(&req, &key, 2_000);
        assert_eq!(code, AV::Int(401));
        assert!(why.starts_with("ExpiredToken"), "{why}");
        // Bad signature.
        let other = SasKey {
            key: "wrong".into(),
            ..key.clone()
        };
        let forged = crate::sas::token(&other, "sb://localhost/orders", 2_000);
        assert_eq!(
            status(&put_token(&forged, "sb://localhost/orders"), &key, 1_000).0,
            AV::Int(401)
        );
        // A token for one queue does not open another.
        assert_eq!(
            status(&put_token(&good, "sb://localhost/payments"), &key, 1_000).0,
            AV::Int(401)
        );
        // Garbage.
        assert_eq!(
            status(&put_token("nonsense", "sb://localhost/orders"), &key, 1_000).0,
            AV::Int(401)
        );
    }

    #[test]
    fn the_token_must_name_the_connection_host() {
        let key = SasKey {
            name: "RootManageSharedAccessKey".into(),
            key: "secret-key".into(),
        };
        let token = crate::sas::token(&key, "sb://localhost/orders", 2_000);
        let req = put_token(&token, "sb://localhost/orders");
        // The connection's host, any case, with or without a port.
        for host in ["localhost", "LocalHost", "localhost:5671"] {
            assert_eq!(
                status_on(&req, &key, Some(host), 1_000).0,
                AV::Int(202),
                "{host}"
            );
        }
        // A connection opened for another namespace refuses it, though signature, expiry and
        // path are right.
        let (code, why) = status_on(&req, &key, Some("other.example"), 1_000);
        assert_eq!(code, AV::Int(401));
        assert!(why.starts_with("InvalidAudience"), "{why}");
        // No hostname in the open frame: the audience's host decides.
        let (code, why) = status(&put_token(&token, "sb://other.example/orders"), &key, 1_000);
        assert_eq!(code, AV::Int(401));
        assert!(why.starts_with("InvalidAudience"), "{why}");
        // A bare-path audience names no host: the path check alone applies.
        assert_eq!(
            status(&put_token(&token, "orders"), &key, 1_000).0,
            AV::Int(202)
        );
    }
}
