//! Limits and defaults, in one place.

/// Default HTTP port: the official emulator's.
pub const DEFAULT_HTTP_PORT: u16 = 5300;
/// Default AMQP port.
pub const DEFAULT_AMQP_PORT: u16 = 5672;
/// Default maximum message size (Standard tier): 256 KB.
pub const DEFAULT_MAX_MESSAGE_SIZE_KB: usize = 256;
/// Default receive long-poll timeout in seconds when `?timeout=` is absent.
pub const DEFAULT_RECEIVE_TIMEOUT_SECS: u64 = 60;
/// Longest entity name (queue, topic path).
pub const MAX_ENTITY_NAME_LEN: usize = 260;
/// Longest subscription or rule name.
pub const MAX_SUBSCRIPTION_NAME_LEN: usize = 50;
/// Longest forwarding chain Azure follows.
pub const MAX_FORWARD_HOPS: usize = 4;
/// Default page size of list operations.
pub const DEFAULT_LIST_TOP: usize = 100;
/// The namespace name reported by `$namespaceinfo` and feeds.
pub const NAMESPACE_NAME: &str = "localzure";
/// Default time a client has to send a complete request head (hyper's own default).
pub const HTTP_HEADER_READ_TIMEOUT_MS: u64 = 30_000;
/// Most headers one HTTP/1 request may carry (hyper's default is 100): a message's custom
/// properties travel as headers.
pub const HTTP_MAX_HEADERS: usize = 2_000;
/// AMQP per-connection limits offered in open/begin (channel-max, handle-max) and the links
/// one connection may hold: (channel-max, handle-max, links per connection).
pub const AMQP_CONNECTION_LIMITS: (u16, u32, u32) = (4_999, 4_999, 10_000);
