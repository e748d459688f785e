//! Optional Shared Access Signature validation (`LOCALZURE_SAS_KEY_NAME` / `LOCALZURE_SAS_KEY`).
//!
//! The Service Bus token format: `SharedAccessSignature sr=<url-encoded resource URI>&sig=<url-
//! encoded base64 HMAC-SHA256>&se=<unix expiry seconds>&skn=<key name>`, fields in any order.
//! The signature is HMAC-SHA256, keyed with the UTF-8 bytes of the key as configured (not
//! base64-decoded), over `sr` exactly as it appears in the token, a newline and `se`. A token
//! is valid when its key name is the configured one, the signature matches, `se` is in the
//! future and its resource covers the addressed entity: the resource URI is compared without
//! its scheme (`sb://`, `https://` and `http://` are all used by the SDKs) and
//! case-insensitively, as the service compares a token's audience: its host must be the host
//! the request addressed (ports aside: the SDKs build `sr` without one, e.g. .NET's
//! `UriBuilder(endpoint) { Port = -1, Path = entity }`), and its path, by whole segments, is
//! empty (namespace-wide) or a prefix of the entity path.

use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The configured key a token must be signed with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SasKey {
    pub name: String,
    pub key: String,
}

/// The base64 HMAC-SHA256 of `"{encoded_resource}\n{expiry}"`.
pub fn sign(key: &str, encoded_resource: &str, expiry: u64) -> String {
    let mut mac =
        Hmac::<Sha256>::new_from_slice(key.as_bytes()).expect("HMAC accepts any key length");
    mac.update(format!("{encoded_resource}\n{expiry}").as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

fn encode(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
}

/// A token for `resource_uri` (e.g. `sb://localhost/orders`) expiring at `expiry`, as the SDKs
/// build it.
pub fn token(key: &SasKey, resource_uri: &str, expiry: u64) -> String {
    let sr = encode(resource_uri);
    let sig = sign(&key.key, &sr, expiry);
    format!(
        "SharedAccessSignature sr={sr}&sig={}&se={expiry}&skn={}",
        encode(&sig),
        key.name
    )
}

/// Why a token was refused, phrased as Azure's 401 details are.
pub type SasError = String;

/// The host of an authority (`host`, `host:port`, `[v6]`, `[v6]:port`, as in a `Host`
/// header or a URI), without the port and a trailing dot; `None` when malformed.
pub fn authority_host(authority: &str) -> Option<&str> {
    let host = if authority.starts_with('[') {
        let (h, port) = authority.split_once(']')?;
        if !(port.is_empty() || port.starts_with(':')) {
            return None;
        }
        &authority[..h.len() + 1]
    } else {
        match authority.rsplit_once(':') {
            Some((h, port)) if port.bytes().all(|b| b.is_ascii_digit()) => h,
            Some(_) => return None,
            None => authority,
        }
    };
    let host = host.strip_suffix('.').unwrap_or(host);
    (!host.is_empty()).then_some(host)
}

/// The lowercase host and path of a resource URI, without scheme, port and slashes at the
/// ends of the path.
pub fn resource_host_path(uri: &str) -> (String, String) {
    let rest = uri.split_once("://").map_or(uri, |(_, r)| r);
    let rest = rest.split(['?', '#']).next().unwrap_or("");
    let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
    let host = authority_host(authority).unwrap_or(authority);
    (
        host.to_ascii_lowercase(),
        path.trim_matches('/').to_ascii_lowercase(),
    )
}

/// Whether a token scoped to `scope` (a lowercase path, empty for the whole namespace) grants
/// access to `entity` (a lowercase path): the scope itself or anything below it.
pub fn covers(scope: &str, entity: &str) -> bool {
    scope.is_empty()
        || entity == scope
        || entity
            .strip_prefix(scope)
            .is_some_and(|rest| rest.starts_with('/'))
}

/// The expiry (`se`, seconds since the epoch) of a token, if it has a numeric one.
pub fn expiry(token: &str) -> Option<u64> {
    token
        .split(['&', ' '])
        .find_map(|part| part.strip_prefix("se="))
        .and_then(|se| se.parse().ok())
}

/// Validates `token` (with or without the `SharedAccessSignature ` prefix) for `entity_path`
/// (`None`: any entity) at `now_secs`, whatever host its resource names (see [`validate_at`]).
pub fn validate(
    key: &SasKey,
    token: &str,
    entity_path: Option<&str>,
    now_secs: u64,
) -> Result<(), SasError> {
    validate_at(key, token, None, entity_path, now_secs)
}

/// [`validate`] for a request addressed to `host` (a `Host` header: `name[:port]`): the
/// token's resource must name that host too (case-insensitive, port aside), so a token for
/// another namespace is refused as the service refuses it.
pub fn validate_at(
    key: &SasKey,
    token: &str,
    host: Option<&str>,
    entity_path: Option<&str>,
    now_secs: u64,
) -> Result<(), SasError> {
    let body = token.trim();
    let body = body
        .strip_prefix("SharedAccessSignature ")
        .unwrap_or(body)
        .trim();
    let (mut sr, mut sig, mut se, mut skn) = (None, None, None, None);
    for part in body.split('&') {
        let (k, v) = part.split_once('=').unwrap_or((part, ""));
        match k {
            "sr" => sr = Some(v),
            "sig" => sig = Some(v),
            "se" => se = Some(v),
            "skn" => skn = Some(v),
            _ => {}
        }
    }
    let (Some(sr), Some(sig), Some(se), Some(skn)) = (sr, sig, se, skn) else {
        return Err(
            "InvalidSignature: The token is malformed: sr, sig, se and skn are required."
                .to_string(),
        );
    };
    let expiry: u64 = se
        .parse()
        .map_err(|_| format!("InvalidSignature: The token expiry '{se}' is not a number."))?;
    let decode = |s: &str| {
        percent_encoding::percent_decode_str(s)
            .decode_utf8()
            .map(|c| c.into_owned())
            .map_err(|_| "InvalidSignature: The token is not valid UTF-8.".to_string())
    };
    if decode(skn)? != key.name {
        return Err(format!(
            "InvalidSignature: The token has an unknown key name '{}'.",
            skn.escape_default()
        ));
    }
    let given = decode(sig)?;
    // Constant-time comparison of the raw MACs.
    let given_raw = base64::engine::general_purpose::STANDARD
        .decode(given.as_bytes())
        .map_err(|_| "InvalidSignature: The token signature is not base64.".to_string())?;
    let mut mac =
        Hmac::<Sha256>::new_from_slice(key.key.as_bytes()).expect("HMAC accepts any key length");
    mac.update(format!("{sr}\n{expiry}").as_bytes());
    if mac.verify_slice(&given_raw).is_err() {
        return Err("InvalidSignature: The token has an invalid signature.".to_string());
    }
    if expiry <= now_secs {
        return Err(format!(
            "ExpiredToken: The token is expired. Expiration time: '{}'.",
            chrono::DateTime::from_timestamp(expiry as i64, 0)
                .map(|d| d.to_rfc3339())
                .unwrap_or_else(|| expiry.to_string())
        ));
    }
    let (sr_host, scope) = resource_host_path(&decode(sr)?);
    if let Some(host) = host {
        let host = authority_host(host).unwrap_or(host).to_ascii_lowercase();
        if sr_host != host {
            return Err(format!(
                "InvalidAudience: The token audience host '{sr_host}' is not this namespace's \
                 host '{host}'."
            ));
        }
    }
    if let Some(entity) = entity_path {
        let entity = entity.trim_matches('/').to_ascii_lowercase();
        if !covers(&scope, &entity) {
            return Err(format!(
                "InvalidAudience: The token audience '{scope}' does not cover '{entity}'."
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> SasKey {
        SasKey {
            name: "RootManageSharedAccessKey".into(),
            key: "secret-key".into(),
        }
    }

    #[test]
    fn hmac_sha256_matches_rfc_4231() {
        let mut mac = Hmac::<Sha256>::new_from_slice(b"Jefe").unwrap();
        mac.update(b"what do ya want for nothing?");
        let hex: String = mac
            .finalize()
            .into_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(
            hex,
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    /// Computed independently (Python `hmac`, `urllib.parse.quote(safe='')`), following the
    /// documented algorithm.
    #[test]
    fn known_answer_token() {
        let sr = "sb%3A%2F%2Flocalhost%2Forders";
        assert_eq!(
            sign("secret-key", sr, 1_700_000_000),
            "I+DKT2KgIMNrZZQWUz/qIRYPmDKQJWHEMthgnAsDE+M="
        );
        let t = token(&key(), "sb://localhost/orders", 1_700_000_000);
        assert_eq!(
            t,
            "SharedAccessSignature sr=sb%3A%2F%2Flocalhost%2Forders\
             &sig=I%2BDKT2KgIMNrZZQWUz%2FqIRYPmDKQJWHEMthgnAsDE%2BM%3D\
             &se=1700000000&skn=RootManageSharedAccessKey"
        );
        assert_eq!(validate(&key(), &t, Some("orders"), 1_699_999_999), Ok(()));
        assert_eq!(
            validate(&key(), &t, Some("Orders/Subscriptions/s"), 0),
            Ok(())
        );
    }

    #[test]
    fn lowercase_encoding_as_dotnet_sends_it_is_signed_as_given() {
        let sr = "sb%3a%2f%2flocalhost%2f";
        let sig = encode(&sign("secret-key", sr, 2_000_000_000));
        let t = format!(
            "SharedAccessSignature skn=RootManageSharedAccessKey&se=2000000000&sig={sig}&sr={sr}"
        );
        assert_eq!(validate(&key(), &t, Some("any/queue"), 0), Ok(()));
    }

    #[test]
    fn refusals() {
        let t = token(&key(), "sb://localhost/orders", 1_700_000_000);
        let expired = validate(&key(), &t, Some("orders"), 1_700_000_000).unwrap_err();
        assert!(expired.starts_with("ExpiredToken"), "{expired}");
        let other = validate(&key(), &t, Some("orders2"), 0).unwrap_err();
        assert!(other.starts_with("InvalidAudience"), "{other}");
        let bad_key = SasKey {
            key: "other".into(),
            ..key()
        };
        assert!(validate(&bad_key, &t, None, 0)
            .unwrap_err()
            .contains("invalid signature"));
        let bad_name = SasKey {
            name: "other".into(),
            ..key()
        };
        assert!(validate(&bad_name, &t, None, 0)
            .unwrap_err()
            .contains("key name"));
        let tampered = t.replace("se=1700000000", "se=1800000000");
        assert!(validate(&key(), &tampered, None, 0)
            .unwrap_err()
            .contains("invalid signature"));
        for junk in [
            "",
            "Bearer x",
            "SharedAccessSignature sr=a&sig=b",
            "SharedAccessSignature sr=a&sig=%%%&se=1&skn=RootManageSharedAccessKey",
        ] {
            assert!(validate(&key(), junk, None, 0).is_err(), "{junk}");
        }
    }

    #[test]
    fn the_host_is_compared_scheme_less_and_case_insensitively() {
        let t = token(&key(), "sb://LocalHost/orders", 2_000);
        for host in ["localhost", "LOCALHOST:5300", "localhost."] {
            assert_eq!(
                validate_at(&key(), &t, Some(host), Some("orders"), 0),
                Ok(()),
                "{host}"
            );
        }
        let https = token(
            &key(),
            "https://ns.servicebus.windows.net:443/orders/",
            2_000,
        );
        assert_eq!(
            validate_at(
                &key(),
                &https,
                Some("NS.servicebus.windows.net"),
                Some("orders"),
                0
            ),
            Ok(())
        );
        let v6 = token(&key(), "sb://[::1]/", 2_000);
        assert_eq!(
            validate_at(&key(), &v6, Some("[::1]:5300"), Some("q"), 0),
            Ok(())
        );
        // Another host: refused even though the signature and path are right.
        for host in ["127.0.0.1:5300", "other.example", "localhost.evil.example"] {
            let e = validate_at(&key(), &t, Some(host), Some("orders"), 0).unwrap_err();
            assert!(e.starts_with("InvalidAudience"), "{host}: {e}");
        }
        // Other entity on the right host, expired, forged: still refused.
        let e = validate_at(&key(), &t, Some("localhost"), Some("orders2"), 0).unwrap_err();
        assert!(e.starts_with("InvalidAudience"), "{e}");
        let e = validate_at(&key(), &t, Some("localhost"), Some("orders"), 2_000).unwrap_err();
        assert!(e.starts_with("ExpiredToken"), "{e}");
        let forged = token(
            &SasKey {
                key: "guess".into(),
                ..key()
            },
            "sb://localhost/orders",
            2_000,
        );
        let e = validate_at(&key(), &forged, Some("localhost"), Some("orders"), 0).unwrap_err();
        assert!(e.contains("invalid signature"), "{e}");
    }

    #[test]
    fn authority_hosts() {
        assert_eq!(authority_host("a.b:80"), Some("a.b"));
        assert_eq!(authority_host("[::1]:80"), Some("[::1]"));
        assert_eq!(authority_host("[::1]"), Some("[::1]"));
        assert_eq!(authority_host("host."), Some("host"));
        assert_eq!(authority_host("[::1]x"), None);
        assert_eq!(authority_host("h:x"), None);
        assert_eq!(authority_host(""), None);
    }
}
