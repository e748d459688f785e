//! Storage keys: the one place entity names become strings a backend can index or name files by.
//!
//! Entity names are case-insensitive in Service Bus, so every key is built from the lowercased
//! name. Names may contain letters, digits, `.`, `-`, `_` and (queues, topics) `/`; the key
//! encoding keeps `[a-z0-9.-]` as is and percent-encodes every other byte of the UTF-8 name as
//! `%xx` (lowercase hex). Encoded names therefore never contain `/` or `_`, which makes both
//! usable as separators, and can never climb out of a directory (`..` stays inside a prefixed
//! file name such as `queue_...json`).

use super::EntityKey;
use super::EntityKind;

/// Percent-encodes a lowercased name: `[a-z0-9.-]` kept, every other UTF-8 byte as `%xx`.
pub fn encode_name(name: &str) -> String {
    let lower = name.to_lowercase();
    let mut out = String::with_capacity(lower.len());
    for b in lower.bytes() {
        if b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-' {
            out.push(b as char);
        } else {
            out.push('%');
            out.push(hex_digit(b >> 4));
            out.push(hex_digit(b & 0x0f));
        }
    }
    out
}

fn hex_digit(n: u8) -> char {
    match n {
        0..=9 => (b'0' + n) as char,
        _ => (b'a' + n - 10) as char,
    }
}

/// The lowercase kind tag used in keys and in the SQLite `kind` column.
pub fn kind_tag(kind: EntityKind) -> &'static str {
    match kind {
        EntityKind::Queue => "queue",
        EntityKind::Topic => "topic",
        EntityKind::Subscription => "subscription",
    }
}

/// Parses [`kind_tag`]'s output.
pub fn parse_kind(tag: &str) -> Option<EntityKind> {
    match tag {
        "queue" => Some(EntityKind::Queue),
        "topic" => Some(EntityKind::Topic),
        "subscription" => Some(EntityKind::Subscription),
        _ => None,
    }
}

/// The unique, case-insensitive key of an entity: `queue/{name}`, `topic/{name}`,
/// `subscription/{topic}/{name}` with each name encoded by [`encode_name`].
///
/// Because encoded names contain no `/`, all subscriptions of a topic share the prefix
/// [`subscriptions_prefix`] and no other key has it, so a topic delete can cascade with a key
/// range scan.
pub fn entity_key_string(key: &EntityKey) -> String {
    match key.kind {
        EntityKind::Subscription => format!(
            "{}{}",
            subscriptions_prefix(key.topic.as_deref().unwrap_or_default()),
            encode_name(&key.name)
        ),
        kind => format!("{}/{}", kind_tag(kind), encode_name(&key.name)),
    }
}

/// The key prefix shared by every subscription of `topic` (ends in `/`).
pub fn subscriptions_prefix(topic: &str) -> String {
    format!("subscription/{}/", encode_name(topic))
}

/// The exclusive upper bound of the key range starting at `prefix` (which ends in `/`):
/// the same string with the final `/` replaced by the next byte, `0`.
pub fn prefix_upper_bound(prefix: &str) -> String {
    let mut s = prefix.trim_end_matches('/').to_string();
    s.push('0');
    s
}

/// Longest encoded name used verbatim in a file name. Longer ones are shortened with a hash so
/// `subscription_{topic}_{sub}.json` stays far below the 255-byte file-name limit of common
/// file systems even when every character of a 260-character name needs `%xx`.
const MAX_FILE_COMPONENT: usize = 100;
/// How much of a long encoded name is kept before the hash, for readability.
const LONG_PREFIX: usize = 60;

/// An encoded name fit for a file-name component (at most [`MAX_FILE_COMPONENT`] bytes).
///
/// Short names are [`encode_name`] verbatim. Long ones become `{first 60 bytes}~{fnv64}{crc32}`
/// over the full lowercased name: `~` never occurs in encoded names, so a shortened name can't
/// equal a verbatim one, and two long names collide only if they share the first 60 encoded
/// bytes *and* both 96 bits of hash.
pub fn file_component(name: &str) -> String {
    let enc = encode_name(name);
    if enc.len() <= MAX_FILE_COMPONENT {
        return enc;
    }
    let lower = name.to_lowercase();
    let fnv = fnv1a64(lower.as_bytes());
    let crc = crc32fast::hash(lower.as_bytes());
    // `enc` is ASCII, so any byte index is a char boundary.
    format!("{}~{fnv:016x}{crc:08x}", &enc[..LONG_PREFIX])
}

/// FNV-1a, 64 bit: tiny, stable across versions and platforms (unlike `DefaultHasher`).
fn fnv1a64(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(kind: EntityKind, topic: Option<&str>, name: &str) -> EntityKey {
        EntityKey {
            kind,
            topic: topic.map(str::to_string),
            name: name.to_string(),
        }
    }

    #[test]
    fn encoding_keeps_safe_chars_and_escapes_the_rest() {
        assert_eq!(encode_name("Orders.v1-EU"), "orders.v1-eu");
        assert_eq!(encode_name("a/b_c%d"), "a%2fb%5fc%25d");
        assert_eq!(encode_name(".."), "..");
        assert_eq!(encode_name("é"), "%c3%a9");
    }

    #[test]
    fn keys_are_case_insensitive_and_unambiguous() {
        let a = key(EntityKind::Subscription, Some("t_x"), "s");
        let b = key(EntityKind::Subscription, Some("t"), "x_s");
        assert_ne!(entity_key_string(&a), entity_key_string(&b));
        assert_eq!(
            entity_key_string(&key(EntityKind::Queue, None, "Q/A")),
            entity_key_string(&key(EntityKind::Queue, None, "q/a"))
        );
        let sub = entity_key_string(&key(EntityKind::Subscription, Some("T/1"), "s"));
        let prefix = subscriptions_prefix("t/1");
        assert!(sub.starts_with(&prefix));
        assert!(sub.as_str() < prefix_upper_bound(&prefix).as_str());
        // A topic whose name extends this one's is outside the range.
        let other = entity_key_string(&key(EntityKind::Subscription, Some("t/1.a"), "s"));
        assert!(
            !(other.as_str() >= prefix.as_str()
                && other.as_str() < prefix_upper_bound(&prefix).as_str())
        );
    }

    #[test]
    fn long_names_are_shortened_stably() {
        let long = "_".repeat(260);
        let c = file_component(&long);
        assert!(c.len() <= MAX_FILE_COMPONENT);
        assert_eq!(c, file_component(&long.to_uppercase()));
        assert_ne!(c, file_component(&"_".repeat(259)));
        assert_eq!(file_component("short"), "short");
    }
}
