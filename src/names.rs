//! Entity-name rules, validated in one place.
//!
//! Azure: queue and topic names are up to 260 characters of letters, digits, `.`, `-`, `_` and
//! `/` (path segments), starting and ending with a letter or digit, with no empty segment;
//! subscription and rule names are up to 50 characters without `/`. A rule name may also be the
//! reserved `$Default`. Names are case-insensitive. Because these rules exclude `..` segments,
//! `\`, `:` and NUL, no valid name can escape a data directory.

use crate::constants::{MAX_ENTITY_NAME_LEN, MAX_SUBSCRIPTION_NAME_LEN};

/// Why a name was refused, phrased for an Azure-style 400 body.
pub type NameError = String;

fn check_chars(name: &str, what: &str, allow_slash: bool) -> Result<(), NameError> {
    if name.is_empty() {
        return Err(format!("The {what} name must not be empty."));
    }
    for c in name.chars() {
        let ok = c.is_ascii_alphanumeric()
            || c == '.'
            || c == '-'
            || c == '_'
            || (allow_slash && c == '/');
        if !ok {
            return Err(format!(
                "The {what} name '{name}' contains the character '{}' which is not allowed. Names can contain only letters, numbers, periods (.), hyphens (-), underscores (_){}.",
                c.escape_default(),
                if allow_slash { " and slashes (/)" } else { "" }
            ));
        }
    }
    let first = name.chars().next().unwrap_or('-');
    let last = name.chars().last().unwrap_or('-');
    if !first.is_ascii_alphanumeric() || !last.is_ascii_alphanumeric() {
        return Err(format!(
            "The {what} name '{name}' must start and end with a letter or number."
        ));
    }
    if allow_slash {
        for seg in name.split('/') {
            if seg.is_empty() || seg == "." || seg == ".." {
                return Err(format!(
                    "The {what} name '{name}' has an empty or relative path segment."
                ));
            }
            if seg.starts_with('.') || seg.ends_with('.') {
                return Err(format!(
                    "The {what} name '{name}' has a segment starting or ending with a period."
                ));
            }
        }
    }
    Ok(())
}

/// Validates a queue or topic name.
pub fn validate_entity_name(name: &str) -> Result<(), NameError> {
    if name.len() > MAX_ENTITY_NAME_LEN {
        return Err(format!(
            "The entity name '{name}' is longer than {MAX_ENTITY_NAME_LEN} characters."
        ));
    }
    check_chars(name, "entity", true)?;
    let lower = name.to_ascii_lowercase();
    for reserved in [
        "$resources",
        "$namespaceinfo",
        "$admin",
        "health",
        "messages",
    ] {
        if lower == reserved {
            return Err(format!("The entity name '{name}' is reserved."));
        }
    }
    if lower
        .split('/')
        .any(|s| s == "subscriptions" || s == "rules" || s == "messages" || s == "$deadletterqueue")
    {
        return Err(format!(
            "The entity name '{name}' contains a reserved path segment."
        ));
    }
    Ok(())
}

/// Validates a subscription name.
pub fn validate_subscription_name(name: &str) -> Result<(), NameError> {
    if name.len() > MAX_SUBSCRIPTION_NAME_LEN {
        return Err(format!(
            "The subscription name '{name}' is longer than {MAX_SUBSCRIPTION_NAME_LEN} characters."
        ));
    }
    check_chars(name, "subscription", false)
}

/// Validates a rule name (`$Default` is allowed).
pub fn validate_rule_name(name: &str) -> Result<(), NameError> {
    if name == crate::broker::entity::DEFAULT_RULE_NAME {
        return Ok(());
    }
    if name.len() > MAX_SUBSCRIPTION_NAME_LEN {
        return Err(format!(
            "The rule name '{name}' is longer than {MAX_SUBSCRIPTION_NAME_LEN} characters."
        ));
    }
    check_chars(name, "rule", false)
}

/// The case-insensitive lookup key of a name.
pub fn key(name: &str) -> String {
    name.to_ascii_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_azure_names() {
        for n in ["orders", "a", "my-queue_1.x", "sales/eu/orders", "Q1"] {
            assert!(validate_entity_name(n).is_ok(), "{n}");
        }
        assert!(validate_subscription_name("sub-1").is_ok());
        assert!(validate_rule_name("$Default").is_ok());
    }

    #[test]
    fn refuses_escapes_and_bad_characters() {
        for n in [
            "",
            "../etc",
            "a/../b",
            "a//b",
            "/abs",
            "a\\b",
            "a:b",
            "-a",
            "a-",
            "a b",
            "a\0b",
            "x/.hidden",
            "a/Subscriptions/b",
            "$Resources",
            "ü",
        ] {
            assert!(validate_entity_name(n).is_err(), "{n:?}");
        }
        assert!(validate_subscription_name("a/b").is_err());
        assert!(validate_entity_name(&"a".repeat(261)).is_err());
        assert!(validate_subscription_name(&"a".repeat(51)).is_err());
    }
}
