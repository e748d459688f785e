//! AMQP over WebSockets: recognising the SDKs' upgrade request (subprotocol `AMQPWSB10`, any
//! path) and turning the upgraded WebSocket into a plain byte stream for the AMQP engine.
//!
//! Framing, from the clients' sources: the Python SDK's `_pyamqp` `WebSocketTransport` opens
//! `ws://host/` or `wss://host/` (or `custom_endpoint_address`) with
//! `subprotocols=["AMQPWSB10"]`, writes each AMQP write with `send_binary` and reads by
//! concatenating received message payloads until it has the bytes it wants; the JavaScript SDK
//! (`@azure/core-amqp` via rhea's `websocket_connect`) opens `wss://host/$servicebus/websocket`
//! with the same subprotocol and binary messages. Message boundaries carry no meaning: the
//! AMQP frames are a byte stream across them, in both directions.

use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures::{Sink, Stream};
use http::header::{
    CONNECTION, SEC_WEBSOCKET_ACCEPT, SEC_WEBSOCKET_KEY, SEC_WEBSOCKET_PROTOCOL,
    SEC_WEBSOCKET_VERSION, UPGRADE,
};
use http::{HeaderMap, HeaderValue, Method, StatusCode};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::WebSocketStream;

use super::sniff::Prefixed;

/// The WebSocket subprotocol of AMQP over WebSockets (OASIS AMQP WebSocket Binding 1.0), as
/// the SDKs send it (`AMQP_WS_SUBPROTOCOL` in the Python SDK's `_pyamqp/constants.py`).
pub const AMQP_WS_SUBPROTOCOL: &str = "AMQPWSB10";

/// The longest HTTP request head [`is_upgrade_request`] reads ahead before giving up and
/// leaving the connection to hyper.
pub const MAX_REQUEST_HEAD: usize = 16 * 1024;

/// Whether a request is an AMQP WebSocket upgrade: `GET` with `Upgrade: websocket` and
/// `AMQPWSB10` among the offered subprotocols. Any path: the Python SDK uses `/`, the
/// JavaScript SDK `/$servicebus/websocket`.
pub fn is_amqp_ws_upgrade(method: &Method, headers: &HeaderMap) -> bool {
    method == Method::GET
        && has_token(headers, UPGRADE.as_str(), "websocket", false)
        && has_token(
            headers,
            SEC_WEBSOCKET_PROTOCOL.as_str(),
            AMQP_WS_SUBPROTOCOL,
            true,
        )
}

/// Whether any `name` header lists `token` (comma-separated); subprotocol tokens compare
/// exactly (RFC 6455 4.1: the server echoes one of the client's values), `Upgrade` tokens
/// ignoring case.
fn has_token(headers: &HeaderMap, name: &str, token: &str, exact: bool) -> bool {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .any(|t| {
            if exact {
                t == token
            } else {
                t.eq_ignore_ascii_case(token)
            }
        })
}

/// For a listener that hands WebSocket upgrades to hyper: the `101 Switching Protocols`
/// response selecting `AMQPWSB10`, or `None` when the request is not an AMQP WebSocket upgrade
/// (or lacks `Sec-WebSocket-Key` / version 13). After sending it, take the connection with
/// `hyper::upgrade::on(request)` and pass it to [`from_upgraded`].
pub fn upgrade_response(method: &Method, headers: &HeaderMap) -> Option<http::Response<()>> {
    if !is_amqp_ws_upgrade(method, headers) {
        return None;
    }
    if headers
        .get(SEC_WEBSOCKET_VERSION)
        .map(HeaderValue::as_bytes)
        != Some(b"13")
    {
        return None;
    }
    let key = headers.get(SEC_WEBSOCKET_KEY)?;
    http::Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .header(CONNECTION, "Upgrade")
        .header(UPGRADE, "websocket")
        .header(SEC_WEBSOCKET_ACCEPT, derive_accept_key(key.as_bytes()))
        .header(SEC_WEBSOCKET_PROTOCOL, AMQP_WS_SUBPROTOCOL)
        .body(())
        .ok()
}

/// Whether a raw HTTP request head is an AMQP WebSocket upgrade; `None` while the head is
/// incomplete (no blank line yet). Unparseable heads are `Some(false)`: hyper answers them.
pub fn head_is_amqp_ws_upgrade(head: &[u8]) -> Option<bool> {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut request = httparse::Request::new(&mut headers);
    match request.parse(head) {
        Ok(httparse::Status::Partial) => None,
        Ok(httparse::Status::Complete(_)) => {
            let method = request
                .method
                .and_then(|m| Method::from_bytes(m.as_bytes()).ok());
            let mut map = HeaderMap::new();
            for h in request.headers.iter() {
                if let (Ok(name), Ok(value)) = (
                    http::HeaderName::from_bytes(h.name.as_bytes()),
                    HeaderValue::from_bytes(h.value),
                ) {
                    map.append(name, value);
                }
            }
            Some(method.is_some_and(|m| is_amqp_ws_upgrade(&m, &map)))
        }
        Err(_) => Some(false),
    }
}

/// For a listener that routes upgrades itself (before hyper): reads ahead, without consuming,
/// until the request head is complete, and says whether it is an AMQP WebSocket upgrade. Only
/// the first request of a connection is looked at; the SDKs open a connection per WebSocket.
/// A head longer than [`MAX_REQUEST_HEAD`], or a peer that closes, is "not an upgrade".
pub async fn is_upgrade_request<S>(stream: &mut Prefixed<S>, timeout: Duration) -> io::Result<bool>
where
    S: AsyncRead + Unpin,
{
    let decide = |head: &[u8]| {
        head_is_amqp_ws_upgrade(head).or((head.len() > MAX_REQUEST_HEAD).then_some(false))
    };
    stream.read_ahead(timeout, decide, |_| Ok(false)).await
}

/// Runs the server side of the WebSocket handshake on a raw stream whose first bytes are the
/// upgrade request (e.g. the [`Prefixed`] stream [`is_upgrade_request`] looked at), selecting
/// `AMQPWSB10`; a request not offering it is refused with `400`.
pub async fn accept<S>(stream: S) -> Result<WsByteStream<S>, WsError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let ws =
        tokio_tungstenite::accept_hdr_async_with_config(stream, select_subprotocol, Some(config()))
            .await?;
    Ok(WsByteStream::new(ws))
}

/// The handshake callback: selects `AMQPWSB10`, or refuses with `400` when it is not offered.
// The callback's signature is tungstenite's (`ErrorResponse` is a whole `http::Response`).
#[allow(clippy::result_large_err)]
fn select_subprotocol(
    request: &Request,
    mut response: Response,
) -> Result<Response, ErrorResponse> {
    if !has_token(
        request.headers(),
        SEC_WEBSOCKET_PROTOCOL.as_str(),
        AMQP_WS_SUBPROTOCOL,
        true,
    ) {
        let mut refusal = ErrorResponse::new(Some(format!(
            "WebSocket subprotocol {AMQP_WS_SUBPROTOCOL} required"
        )));
        *refusal.status_mut() = StatusCode::BAD_REQUEST;
        return Err(refusal);
    }
    response.headers_mut().insert(
        SEC_WEBSOCKET_PROTOCOL,
        HeaderValue::from_static(AMQP_WS_SUBPROTOCOL),
    );
    Ok(response)
}

/// Wraps a connection hyper has upgraded after [`upgrade_response`] (pass
/// `hyper_util::rt::TokioIo::new(upgraded)`); the handshake is already done.
pub async fn from_upgraded<S>(io: S) -> WsByteStream<S>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    WsByteStream::new(WebSocketStream::from_raw_socket(io, Role::Server, Some(config())).await)
}

/// Each message is written to the connection at once rather than gathered up to the default
/// 128 KiB: AMQP writers do not always flush, and a delayed frame would stall the peer.
fn config() -> WebSocketConfig {
    WebSocketConfig::default().write_buffer_size(0)
}

/// An upgraded WebSocket as an `AsyncRead + AsyncWrite` byte stream: reads concatenate binary
/// (and, leniently, text) message payloads; each write is one binary message; pings are
/// answered by tungstenite while reading; a close frame or a closed connection reads as EOF;
/// shutdown sends a close frame.
pub struct WsByteStream<S> {
    ws: WebSocketStream<S>,
    pending: Bytes,
    eof: bool,
    unflushed: bool,
}

impl<S> std::fmt::Debug for WsByteStream<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WsByteStream")
            .field("pending", &self.pending.len())
            .field("eof", &self.eof)
            .finish_non_exhaustive()
    }
}

impl<S> WsByteStream<S> {
    /// Wraps a WebSocket whose handshake is done.
    pub fn new(ws: WebSocketStream<S>) -> Self {
        Self {
            ws,
            pending: Bytes::new(),
            eof: false,
            unflushed: false,
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> WsByteStream<S> {
    /// The underlying connection (e.g. the `TcpStream`, for its peer address).
    pub fn get_ref(&self) -> &S {
        self.ws.get_ref()
    }
}

fn to_io(error: WsError) -> io::Error {
    match error {
        WsError::Io(e) => e,
        WsError::ConnectionClosed | WsError::AlreadyClosed => io::ErrorKind::BrokenPipe.into(),
        other => io::Error::new(io::ErrorKind::InvalidData, other),
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for WsByteStream<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if buf.remaining() == 0 {
            return Poll::Ready(Ok(()));
        }
        loop {
            if !this.pending.is_empty() {
                let n = buf.remaining().min(this.pending.len());
                buf.put_slice(&this.pending.split_to(n));
                return Poll::Ready(Ok(()));
            }
            if this.eof {
                return Poll::Ready(Ok(()));
            }
            match ready!(Pin::new(&mut this.ws).poll_next(cx)) {
                Some(Ok(Message::Binary(data))) => this.pending = data,
                Some(Ok(Message::Text(text))) => this.pending = text.into(),
                Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => {}
                Some(Ok(Message::Close(_)))
                | Some(Err(WsError::ConnectionClosed | WsError::AlreadyClosed))
                | None => this.eof = true,
                Some(Err(e)) => return Poll::Ready(Err(to_io(e))),
            }
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for WsByteStream<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if data.is_empty() {
            return Poll::Ready(Ok(0));
        }
        // A previous message still in tungstenite's buffer goes out before the next one.
        if this.unflushed {
            ready!(Pin::new(&mut this.ws).poll_flush(cx)).map_err(to_io)?;
            this.unflushed = false;
        }
        ready!(Pin::new(&mut this.ws).poll_ready(cx)).map_err(to_io)?;
        Pin::new(&mut this.ws)
            .start_send(Message::Binary(Bytes::copy_from_slice(data)))
            .map_err(to_io)?;
        // Push it to the connection now, as a socket write would; if the connection is full,
        // the next write or flush finishes it.
        match Pin::new(&mut this.ws).poll_flush(cx) {
            Poll::Ready(result) => result.map_err(to_io)?,
            Poll::Pending => this.unflushed = true,
        }
        Poll::Ready(Ok(data.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(Pin::new(&mut this.ws).poll_flush(cx)).map_err(to_io)?;
        this.unflushed = false;
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match ready!(Pin::new(&mut self.get_mut().ws).poll_close(cx)) {
            Ok(()) | Err(WsError::ConnectionClosed | WsError::AlreadyClosed) => Poll::Ready(Ok(())),
            Err(e) => Poll::Ready(Err(to_io(e))),
        }
    }
}
