//! The whole per-connection decision in one call: TLS or not, then AMQP, AMQP over WebSocket
//! or HTTP, handing back a boxed stream for the AMQP engine or hyper.

use std::io;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

use super::sniff::{classify, classify_tcp, Prefixed, Protocol};
use super::ws;
use crate::tls::TlsMaterial;

/// Any connection stream after routing: `TcpStream`, TLS, replaying and WebSocket wrappers
/// all erase to this, so the AMQP engine and hyper are compiled once.
pub trait Conn: AsyncRead + AsyncWrite + Unpin + Send {}

impl<T: AsyncRead + AsyncWrite + Unpin + Send> Conn for T {}

/// A routed connection stream.
pub type BoxConn = Box<dyn Conn>;

/// Where a connection goes.
pub enum Destination {
    /// To the AMQP engine: the stream starts with the AMQP protocol header.
    Amqp(BoxConn),
    /// To hyper: the stream starts with an HTTP request.
    Http(BoxConn),
}

impl std::fmt::Debug for Destination {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Amqp(_) => "Amqp",
            Self::Http(_) => "Http",
        })
    }
}

/// A routed connection and how it arrived, for logs and metrics.
#[derive(Debug)]
pub struct Routed {
    pub destination: Destination,
    /// It came over TLS.
    pub tls: bool,
    /// It is AMQP over a WebSocket (`AMQPWSB10`).
    pub websocket: bool,
}

/// Routes an accepted TCP connection: a TLS ClientHello is answered with `tls` (an error when
/// the listener has none), then the (decrypted) stream is classified: AMQP header → AMQP; an
/// AMQP WebSocket upgrade → handshake, then AMQP over the WebSocket; anything else → HTTP.
/// Each wait (first bytes, TLS handshake, request head) is bounded by `timeout`; errors mean
/// "close the connection" (log at debug: port scanners and health probes cause them).
pub async fn route(
    tcp: TcpStream,
    tls: Option<&TlsMaterial>,
    timeout: Duration,
) -> io::Result<Routed> {
    match classify_tcp(&tcp, timeout).await? {
        Protocol::Amqp => Ok(Routed {
            destination: Destination::Amqp(Box::new(tcp)),
            tls: false,
            websocket: false,
        }),
        Protocol::Http => http_or_websocket(Prefixed::new(tcp), false, timeout).await,
        Protocol::Tls => {
            let Some(tls) = tls else {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "TLS handshake on a listener without TLS material",
                ));
            };
            let stream = tls.accept_within(tcp, timeout).await?;
            match classify(stream, timeout).await? {
                (Protocol::Amqp, stream) => Ok(Routed {
                    destination: Destination::Amqp(Box::new(stream)),
                    tls: true,
                    websocket: false,
                }),
                (Protocol::Http, stream) => http_or_websocket(stream, true, timeout).await,
                (Protocol::Tls, _) => Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "TLS handshake inside TLS",
                )),
            }
        }
    }
}

async fn http_or_websocket<S>(
    mut stream: Prefixed<S>,
    tls: bool,
    timeout: Duration,
) -> io::Result<Routed>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    if !ws::is_upgrade_request(&mut stream, timeout).await? {
        return Ok(Routed {
            destination: Destination::Http(Box::new(stream)),
            tls,
            websocket: false,
        });
    }
    let handshake = tokio::time::timeout(timeout, ws::accept(stream))
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "WebSocket handshake timed out"))?
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
    Ok(Routed {
        destination: Destination::Amqp(Box::new(handshake)),
        tls,
        websocket: true,
    })
}
