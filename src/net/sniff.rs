//! Protocol detection on an accepted connection: TLS ClientHello, AMQP protocol header or
//! HTTP, decided from the first bytes without consuming them.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// How long a connection may stay silent before it is classified: an AMQP 1.0 client sends its
/// 8-byte protocol header first and an HTTP client its request, so only a client that sends
/// nothing waits this long, and is then closed.
pub const SNIFF_TIMEOUT: Duration = Duration::from_secs(10);

/// The most bytes [`detect`] ever needs (`AMQP`).
pub const SNIFF_LEN: usize = 4;

/// What the first bytes of a connection say it speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// A TLS handshake record (content type 22, version major 3): run the TLS handshake, then
    /// classify the decrypted stream again.
    Tls,
    /// The AMQP protocol header `AMQP` + id + version (AMQP 1.0 section 2.2: id 0 = AMQP,
    /// 3 = SASL, 2 = TLS). The id is the AMQP engine's to check: it answers an unsupported
    /// header with the one it supports, as the spec asks.
    Amqp,
    /// Anything else (`GET`, `PUT`, `POST`, `DELETE`, `HEAD`, `OPTIONS`, `PATCH`, ...), including
    /// a WebSocket upgrade request: hyper answers what it cannot parse.
    Http,
}

/// Classifies a connection from its first bytes; `None` while more bytes are needed. Never
/// asks for more than the protocols can be told apart by: one byte for HTTP, two for TLS, four
/// for AMQP.
pub fn detect(prefix: &[u8]) -> Option<Protocol> {
    const AMQP: &[u8] = b"AMQP";
    match prefix {
        [] | [0x16] => None,
        [0x16, 0x03, ..] => Some(Protocol::Tls),
        [b'A', ..] if prefix.len() < AMQP.len() && AMQP.starts_with(prefix) => None,
        _ if prefix.starts_with(AMQP) => Some(Protocol::Amqp),
        _ => Some(Protocol::Http),
    }
}

/// Classifies an accepted TCP connection with `peek`, so the stream handed on is the plain
/// `TcpStream` with nothing consumed. Fails with `TimedOut` after `timeout` of silence and
/// `UnexpectedEof` when the peer closes before sending a byte.
pub async fn classify_tcp(stream: &TcpStream, timeout: Duration) -> io::Result<Protocol> {
    let peek = async {
        let mut buf = [0u8; SNIFF_LEN];
        loop {
            let n = stream.peek(&mut buf).await?;
            if n == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            if let Some(protocol) = detect(&buf[..n]) {
                return Ok(protocol);
            }
            // A header split across segments ("A", then "MQP"): peek would return the same
            // bytes at once, so wait a little for the rest instead of spinning. Real clients
            // send the whole header in one write and never get here.
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    };
    with_timeout(timeout, peek).await
}

/// Classifies any stream (a `TlsStream` after the handshake, an in-memory pipe) by reading the
/// first bytes into a buffer; the returned [`Prefixed`] replays them before the rest, so the
/// AMQP engine or hyper sees the connection from its first byte.
pub async fn classify<S>(stream: S, timeout: Duration) -> io::Result<(Protocol, Prefixed<S>)>
where
    S: AsyncRead + Unpin,
{
    let mut stream = Prefixed::new(stream);
    let protocol = classify_buffered(&mut stream, timeout).await?;
    Ok((protocol, stream))
}

/// [`classify`] on a stream already wrapped, reading only as far as needed.
pub async fn classify_buffered<S>(
    stream: &mut Prefixed<S>,
    timeout: Duration,
) -> io::Result<Protocol>
where
    S: AsyncRead + Unpin,
{
    let at_end = |buffered: &[u8]| {
        // Closed mid-prefix ("AM"): not AMQP; hyper answers or drops it.
        if buffered.is_empty() {
            Err(io::ErrorKind::UnexpectedEof.into())
        } else {
            Ok(Protocol::Http)
        }
    };
    stream.read_ahead(timeout, detect, at_end).await
}

async fn with_timeout<T>(
    timeout: Duration,
    work: impl std::future::Future<Output = io::Result<T>>,
) -> io::Result<T> {
    tokio::time::timeout(timeout, work).await.map_err(|_| {
        io::Error::new(
            io::ErrorKind::TimedOut,
            "connection sent nothing to tell its protocol by",
        )
    })?
}

/// A stream whose first bytes were already read (to classify it) and are replayed to the next
/// reader before the rest; writes go straight through.
#[derive(Debug)]
pub struct Prefixed<S> {
    prefix: Vec<u8>,
    pos: usize,
    inner: S,
}

impl<S> Prefixed<S> {
    /// Wraps `inner` with nothing buffered yet.
    pub fn new(inner: S) -> Self {
        Self::with_prefix(Vec::new(), inner)
    }

    /// Wraps `inner`, replaying `prefix` first.
    pub fn with_prefix(prefix: Vec<u8>, inner: S) -> Self {
        Self {
            prefix,
            pos: 0,
            inner,
        }
    }

    /// The bytes read ahead and not yet consumed.
    pub fn buffered(&self) -> &[u8] {
        &self.prefix[self.pos..]
    }

    /// The wrapped stream (e.g. for `TcpStream::peer_addr`).
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The wrapped stream, mutably; reading from it directly skips the buffered bytes.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// The unconsumed buffered bytes and the wrapped stream.
    pub fn into_parts(mut self) -> (Vec<u8>, S) {
        self.prefix.drain(..self.pos);
        (self.prefix, self.inner)
    }
}

impl<S: AsyncRead + Unpin> Prefixed<S> {
    /// Reads more bytes from the wrapped stream into the buffer, without consuming any;
    /// returns how many (0 at end of stream).
    pub async fn fill(&mut self) -> io::Result<usize> {
        let mut chunk = [0u8; 1024];
        let n = self.inner.read(&mut chunk).await?;
        self.prefix.extend_from_slice(&chunk[..n]);
        Ok(n)
    }

    /// Reads ahead until `decide` answers from the buffered bytes, or the peer closes
    /// (`at_end` answers); `TimedOut` after `timeout`. Nothing is consumed.
    pub async fn read_ahead<T>(
        &mut self,
        timeout: Duration,
        decide: impl Fn(&[u8]) -> Option<T>,
        at_end: impl Fn(&[u8]) -> io::Result<T>,
    ) -> io::Result<T> {
        let read = async {
            loop {
                if let Some(answer) = decide(self.buffered()) {
                    return Ok(answer);
                }
                if self.fill().await? == 0 {
                    return at_end(self.buffered());
                }
            }
        };
        with_timeout(timeout, read).await
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Prefixed<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.pos < this.prefix.len() {
            let n = buf.remaining().min(this.prefix.len() - this.pos);
            buf.put_slice(&this.prefix[this.pos..this.pos + n]);
            this.pos += n;
            if this.pos == this.prefix.len() {
                this.prefix = Vec::new();
                this.pos = 0;
            }
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Prefixed<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, data)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}
