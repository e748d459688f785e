//! Link addresses → the node they name.
//!
//! The SDKs address nodes as `amqps://{namespace}/{path}` (receivers), bare `{path}`
//! (management, senders of some SDKs) or `sb://…`. Scheme and host are dropped and names are
//! compared case-insensitively (the broker looks entities up by lowercase key), as the service
//! does.

use super::symbols as sym;
use crate::broker::op::QueuePath;

/// What a link address names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Node {
    /// The claims-based-security node.
    Cbs,
    /// The management node of an entity path (`{path}/$management`).
    Management(String),
    /// A queue, topic, subscription or dead-letter sub-queue path.
    Entity(String),
}

/// Drops `scheme://host[:port]/` and leading/trailing slashes.
pub fn normalize(address: &str) -> String {
    let a = address.trim();
    let a = match a.find("://") {
        Some(i) => {
            let rest = &a[i + 3..];
            match rest.find('/') {
                Some(j) => &rest[j + 1..],
                None => "",
            }
        }
        None => a,
    };
    a.trim_matches('/').to_string()
}

/// Classifies an address.
pub fn parse(address: &str) -> Node {
    let path = normalize(address);
    if path.eq_ignore_ascii_case(sym::CBS_NODE) {
        return Node::Cbs;
    }
    let lower = path.to_ascii_lowercase();
    if lower == sym::MANAGEMENT_NODE {
        return Node::Management(String::new());
    }
    if let Some(stripped) = lower
        .strip_suffix(sym::MANAGEMENT_NODE)
        .and_then(|s| s.strip_suffix('/'))
    {
        return Node::Management(path[..stripped.len()].to_string());
    }
    Node::Entity(path)
}

/// The receivable path an entity path names (`q`, `t/Subscriptions/s`, `…/$DeadLetterQueue`).
pub fn queue_path(path: &str) -> Result<QueuePath, String> {
    QueuePath::parse(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_normalised() {
        assert_eq!(
            parse("amqps://localhost:5672/Orders"),
            Node::Entity("Orders".into())
        );
        assert_eq!(parse("sb://ns/$cbs"), Node::Cbs);
        assert_eq!(parse("$CBS"), Node::Cbs);
        assert_eq!(
            parse("t/Subscriptions/s/$management"),
            Node::Management("t/Subscriptions/s".into())
        );
        let p = queue_path(&normalize("amqps://h/t/subscriptions/s/$deadletterqueue")).unwrap();
        assert_eq!(p.entity, "t");
        assert_eq!(p.subscription.as_deref(), Some("s"));
        assert!(p.dead_letter);
        assert!(queue_path("").is_err());
    }
}
