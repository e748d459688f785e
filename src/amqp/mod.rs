//! The AMQP 1.0 endpoint: what the official Azure Service Bus SDKs speak.
//!
//! - [`frames`]: protocol headers, frame layout, performative/payload split (the codec itself is
//!   `fe2o3-amqp-types` / `serde_amqp`).
//! - [`connection`]: one task per TCP connection. The state machine is ours because
//!   fe2o3-amqp's acceptor side breaks PEEK_LOCK with these SDKs (4-byte delivery tags, no
//!   settled echo for single deliveries, echoing the client's rejected error). One file per
//!   concern:
//!   - `connection/mod.rs`: `serve`, the run loop (frames, events, heartbeats, idle timeout),
//!     open/begin/end/close and teardown;
//!   - `connection/sasl.rs`: the SASL exchange and protocol header;
//!   - `connection/state.rs`: connection, session and link state, events, sequential workers;
//!   - `connection/attach.rs`: attach/detach, session receivers waiting for a session, link
//!     cleanup;
//!   - `connection/transfer.rs`: incoming transfers (sends, `$cbs` and `$management`
//!     requests);
//!   - `connection/delivery.rs`: outgoing delivery: flow, credit, drain, the pump, receives,
//!     management replies;
//!   - `connection/settlement.rs`: dispositions;
//!   - `connection/authorization.rs`: SAS grants of links and their expiry.
//! - [`link`]: the broker side of links: outcomes → settlements, the cancellable receive
//!   behind credit, session acceptance, releasing undelivered messages.
//! - [`address`]: link addresses → entities (`queue`, `topic`, `topic/Subscriptions/sub`,
//!   `…/$DeadLetterQueue`, `$cbs`, `…/$management`).
//! - [`cbs`]: the `$cbs` put-token node (any token is accepted unless SAS validation is on).
//! - [`management`]: the `$management` request/response operations, routed from a table of
//!   operation name → handler: `management/messages.rs` (peek, renew-lock, schedule, cancel,
//!   update-disposition, receive-by-sequence-number), `management/sessions.rs` (session lock,
//!   state, listing), `management/rules.rs` (add/remove/enumerate rules) with
//!   `management/rule_descriptions.rs` (rule bodies and described types), and
//!   `management/request.rs` (request parsing and responses shared by all).
//! - [`convert`]: AMQP message ⇄ broker message.
//! - [`symbols`]: every AMQP symbol we speak: error conditions, `com.microsoft:*` link
//!   properties and operations, message annotations, node and property names.
//! - [`errors`]: the error vocabulary: [`errors::WireError`], the one service-error →
//!   condition mapping ([`errors::wire_error`]), and the `error` of performatives.
//!
//! Every state change goes through [`ServiceBusBackend::execute`] (or `receive_wait`), so the
//! AMQP and REST planes see the same broker and the same durability.

pub mod address;
pub mod cbs;
pub mod connection;
pub mod convert;
pub mod errors;
pub mod frames;
pub mod link;
pub mod management;
pub mod symbols;

use crate::service::ServiceBusBackend;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Settings of the AMQP endpoint.
#[derive(Debug, Clone)]
pub struct AmqpOptions {
    /// Largest message (or batch) a sender may transfer, announced as the link's
    /// max-message-size.
    pub max_message_size: u64,
    /// Largest frame we accept (announced in our open).
    pub max_frame_size: u32,
    /// Our idle timeout (announced in our open); a peer silent for longer is closed.
    pub idle_timeout_ms: u32,
    /// Default wait for a next-available session receiver when the client gives none.
    pub session_accept_timeout_ms: u32,
    /// When set, CBS put-token validates SAS tokens against this key (401 when bad), and links
    /// live only while an accepted, unexpired token covers their entity.
    pub sas: Option<crate::sas::SasKey>,
    /// With SAS validation on: a connection that has put no valid token this long after it
    /// opened is closed (Service Bus allows 20 seconds).
    pub token_grace_ms: u32,
    /// With SAS validation on: how often a connection re-checks that its links' tokens are
    /// unexpired (and the grace above).
    pub grant_check_ms: u32,
    /// Highest channel (session) number a client may use, offered as open's channel-max.
    pub channel_max: u16,
    /// Highest link handle per session, offered as begin's handle-max.
    pub handle_max: u32,
    /// Most links one connection may have attached at once (beyond: attach refused with
    /// `amqp:resource-limit-exceeded`).
    pub max_links_per_connection: u32,
}

impl Default for AmqpOptions {
    fn default() -> Self {
        AmqpOptions {
            max_message_size: (crate::constants::DEFAULT_MAX_MESSAGE_SIZE_KB as u64) * 1024,
            max_frame_size: 1024 * 1024,
            idle_timeout_ms: 240_000,
            session_accept_timeout_ms: 60_000,
            sas: None,
            token_grace_ms: 20_000,
            grant_check_ms: 1_000,
            channel_max: crate::constants::AMQP_CONNECTION_LIMITS.0,
            handle_max: crate::constants::AMQP_CONNECTION_LIMITS.1,
            max_links_per_connection: crate::constants::AMQP_CONNECTION_LIMITS.2,
        }
    }
}

/// Serves one AMQP connection on any stream (plain TCP, TLS, AMQP over WebSocket) whose first
/// bytes are the AMQP protocol header; `peer` is the TCP peer taken before wrapping, for logs.
/// The listeners in `src/server.rs` route every port's connections here (`crate::net::route`).
pub async fn serve_stream<S>(
    stream: S,
    peer: std::net::SocketAddr,
    backend: ServiceBusBackend,
    options: Arc<AmqpOptions>,
    shutdown: CancellationToken,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static,
{
    if let Err(e) = connection::serve(stream, backend, options, shutdown).await {
        tracing::debug!("AMQP connection from {peer} ended: {e}");
    }
}

/// Accepts plain AMQP connections on `listener` until `shutdown` is cancelled, then closes every
/// connection (each sends `close`) and waits for them. One task per connection; no lock is
/// held across an await, so thousands of connections proceed independently. (The server's
/// listeners use [`serve_stream`] behind protocol sniffing instead; this stays for embedders.)
pub async fn run(
    listener: TcpListener,
    backend: ServiceBusBackend,
    options: AmqpOptions,
    shutdown: CancellationToken,
) {
    let tracker = TaskTracker::new();
    let options = Arc::new(options);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let _ = stream.set_nodelay(true);
                    let b = backend.clone();
                    let o = options.clone();
                    let s = shutdown.clone();
                    tracker.spawn(serve_stream(stream, peer, b, o, s));
                }
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!("AMQP accept failed: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                }
            }
        }
    }
    drop(listener);
    tracker.close();
    tracker.wait().await;
    tracing::info!("AMQP listener stopped; connections closed");
}
