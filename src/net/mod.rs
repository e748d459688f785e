//! Connection plumbing for the listeners: protocol sniffing ([`sniff`]) and AMQP over
//! WebSockets ([`ws`]), so any port serves TLS or plain, AMQP or HTTP (issue 17).
//!
//! # How a listener uses it
//!
//! Every accepted connection, on every port (AMQP 5672, AMQPS 5671, HTTP, HTTPS), goes
//! through the same steps; ports differ only in defaults (e.g. whether TLS is available):
//!
//! ```text
//! TcpStream ──sniff::classify_tcp (peek, nothing consumed)──┐
//!   Tls  → tls::TlsMaterial::accept (ALPN http/1.1 or none) → sniff::classify (Prefixed) ─┐
//!   Amqp → AMQP engine                                                                    │
//!   Http → ws::is_upgrade_request (reads the head ahead, Prefixed)                        │
//!            true  → ws::accept (101, AMQPWSB10) → WsByteStream → AMQP engine             │
//!            false → hyper (serve_connection on TokioIo<stream>)                          │
//!   (inside TLS, the same three-way split on the decrypted stream) ◄──────────────────────┘
//! ```
//!
//! [`route::route`] does all of it for a `TcpStream` and returns [`route::Destination`]: a
//! boxed stream ([`route::BoxConn`]) for the AMQP engine or for hyper, plus how it arrived
//! (TLS, WebSocket). A listener's accept loop becomes: `set_nodelay`, `peer_addr`, spawn
//! `route(tcp, tls, SNIFF_TIMEOUT)`, then hand the stream to the engine or to
//! `hyper_util::server::conn::auto` / `http1` as it does today with the `TcpStream`.
//!
//! - Sniffing never delays a plain AMQP client: it reads at most 4 bytes' worth
//!   ([`sniff::detect`]), and an AMQP 1.0 client sends its 8-byte header first. Only a client
//!   that sends nothing waits, up to [`sniff::SNIFF_TIMEOUT`], and is then closed (a
//!   `TimedOut` error: log at debug and drop). The TLS handshake is bounded the same way
//!   ([`crate::tls::HANDSHAKE_TIMEOUT`]).
//! - A listener without TLS material treats [`sniff::Protocol::Tls`] as an error (drop; the
//!   client sees the connection close) — or serves TLS anyway when material is configured:
//!   one connection string then serves both the data client (AMQP) and the admin client
//!   (`https://host:port`) on any port mapping.
//! - WebSocket upgrades can also go through hyper instead: answer a request for which
//!   [`ws::upgrade_response`] returns `Some` with that response, then
//!   `hyper::upgrade::on(req)` → `ws::from_upgraded(TokioIo::new(upgraded))`; the connection
//!   must be served `with_upgrades()`. The raw route above keeps hyper and warp unaware of
//!   WebSockets and is the simpler one to wire.
//!
//! # What the AMQP engine needs from the caller
//!
//! A generic stream `S: AsyncRead + AsyncWrite + Unpin + Send + 'static` (one of `TcpStream`,
//! `Prefixed<TlsStream<TcpStream>>`, `WsByteStream<Prefixed<TcpStream>>`, ...) whose first
//! bytes are the AMQP protocol header, plus the peer `SocketAddr` taken from the `TcpStream`
//! before wrapping (for logs and limits). The engine must not rely on `TcpStream`-only methods
//! (`set_nodelay` belongs before classification) and must flush after writing frames, as
//! `AsyncWrite` requires (the WebSocket wrapper sends each write at once, but TLS and other
//! wrappers may hold bytes until flushed).
//! SAS validation, admin protection and connection limits apply unchanged: they live above the
//! stream.

pub mod route;
pub mod sniff;
pub mod trim;
pub mod ws;

pub use route::{route, BoxConn, Conn, Destination, Routed};
pub use sniff::{classify, classify_tcp, Prefixed, Protocol, SNIFF_TIMEOUT};
pub use ws::{WsByteStream, AMQP_WS_SUBPROTOCOL};

#[cfg(test)]
mod tests;
