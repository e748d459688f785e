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
/// .NET TimeSpan ticks (100 ns) per second: the unit of Azure's durations
/// (<https://learn.microsoft.com/dotnet/api/system.timespan.tickspersecond>).
pub const TICKS_PER_SECOND: i64 = 10_000_000;
/// TimeSpan.MaxValue (i64::MAX ticks) in seconds: the "infinite" time-to-live, as the REST
/// API's `BrokerProperties.TimeToLive` (seconds, a double) spells it.
pub const MAX_TIMESPAN_SECONDS: f64 = i64::MAX as f64 / TICKS_PER_SECOND as f64;

/// AMQP per-connection limits offered in open/begin (channel-max, handle-max) and the links
/// one connection may hold: (channel-max, handle-max, links per connection).
pub const AMQP_CONNECTION_LIMITS: (u16, u32, u32) = (4_999, 4_999, 10_000);

/// How long shutdown waits for in-flight HTTP requests before it cuts the connections that
/// still hold one (a client that stalls mid-request must not keep the server from its final
/// snapshot; `docker stop` sends SIGKILL 10 s after SIGTERM).
pub const SHUTDOWN_DRAIN_MS: u64 = 5_000;

#[cfg(test)]
mod tests {
    /// The named value is the literal the REST layer compares against.
    #[test]
    fn max_timespan_seconds_is_timespan_max_value() {
        assert!((super::MAX_TIMESPAN_SECONDS - 922_337_203_685.477_6).abs() < 1e-3);
    }
}
