//! Running the server: bind, serve, and shut down in order.
//!
//! [`bind`] binds the configured ports (HTTP, AMQP, and HTTPS / AMQPS when set) and loads the
//! TLS material; [`serve`] runs them. Every port accepts through [`crate::net::route`], so each
//! serves TLS or plain, AMQP, HTTP, or AMQP over WebSocket (issue 17). [`run`] and
//! [`run_with_amqp`] take bound listeners, so tests bind port 0. Shutdown order: stop
//! accepting and drain in-flight requests (hyper graceful), close AMQP connections, stop timers
//! and periodic snapshots, final snapshot, compaction when `auto_compact`, close storage.

use crate::config::Config;
use crate::http::{routes, HttpState};
use crate::net::{Destination, Routed};
use crate::service::ServiceBusBackend;
use crate::tls::TlsMaterial;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// What a listening port was configured as. Only the log line differs: every port serves every
/// protocol (plain or TLS when TLS is on; AMQP, HTTP or AMQP over WebSocket), because the
/// Azure SDKs' admin clients build `https://{host[:port]}` from the same connection string the
/// data client uses for AMQP (issue 17).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PortKind {
    Http,
    Amqp,
    Https,
    Amqps,
}

impl PortKind {
    /// The start-up line's prefix; test harnesses (tests/python, tests/js, tests/load.rs) read
    /// `listening on http://…` and `AMQP listening on amqp://…`, so those stay as they were.
    fn label(self) -> &'static str {
        match self {
            Self::Http => "",
            Self::Amqp => "AMQP ",
            Self::Https => "HTTPS ",
            Self::Amqps => "AMQPS ",
        }
    }

    fn scheme(self) -> &'static str {
        match self {
            Self::Http => "http",
            Self::Amqp => "amqp",
            Self::Https => "https",
            Self::Amqps => "amqps",
        }
    }
}

/// The bound listeners and the TLS material they answer handshakes with (`None`: TLS off, a
/// ClientHello closes the connection).
pub struct Listeners {
    pub ports: Vec<(PortKind, TcpListener)>,
    pub tls: Option<Arc<TlsMaterial>>,
}

impl Listeners {
    /// The local address of the first listener of `kind`.
    pub fn addr(&self, kind: PortKind) -> Option<SocketAddr> {
        self.ports
            .iter()
            .find(|(k, _)| *k == kind)
            .and_then(|(_, l)| l.local_addr().ok())
    }
}

/// Why the server could not start listening.
#[derive(Debug, thiserror::Error)]
pub enum BindError {
    #[error("cannot bind {addr}: {source}")]
    Bind {
        addr: String,
        #[source]
        source: std::io::Error,
    },
    #[error("TLS: {0}")]
    Tls(#[from] crate::tls::TlsError),
}

/// Loads (or generates) the TLS material when TLS is on ([`Config::tls_enabled`]) and binds
/// the HTTP and AMQP ports and, when configured, the HTTPS and AMQPS ports; logs each address
/// and the CA file clients must trust.
pub async fn bind(config: &Config) -> Result<Listeners, BindError> {
    let tls = if config.tls_enabled() {
        let material = crate::tls::load_or_create(&config.tls_settings())?;
        match &material.ca {
            Some(ca) => tracing::info!(
                "TLS on: certificate {} ({:?}) for {}; clients trust the CA {} (`localzure tls ca` prints it)",
                material.cert_path.display(),
                material.origin,
                material.names.join(", "),
                ca.path.display()
            ),
            None => tracing::info!(
                "TLS on: provided certificate {}",
                material.cert_path.display()
            ),
        }
        Some(Arc::new(material))
    } else {
        None
    };
    let v = &config.server;
    let mut wanted = vec![
        (PortKind::Http, Some(v.http_port)),
        (PortKind::Amqp, Some(v.amqp_port)),
        (PortKind::Https, v.https_port),
        (PortKind::Amqps, v.amqps_port),
    ];
    wanted.retain(|(_, p)| p.is_some());
    let mut ports = Vec::new();
    for (kind, port) in wanted {
        let addr = format!("{}:{}", v.host, port.unwrap_or_default());
        let listener = listen(&addr)
            .await
            .map_err(|source| BindError::Bind { addr, source })?;
        match listener.local_addr() {
            Ok(a) => tracing::info!("{}listening on {}://{a}", kind.label(), kind.scheme()),
            Err(e) => tracing::warn!("bound, but the local address is unknown: {e}"),
        }
        ports.push((kind, listener));
    }
    Ok(Listeners { ports, tls })
}

/// Pending connections a listener queues before the kernel drops SYNs (then a client waits out
/// a one-second retransmission). tokio's `TcpListener::bind` asks for 1,024; a burst of
/// thousands of connects (a load test, or a flood the other clients should not feel) overflows
/// that, so ask for more, as Go's net package does (the kernel caps it at `somaxconn`).
const LISTEN_BACKLOG: u32 = 4096;

/// Binds `addr` (`host:port`; the host may be a name) with [`LISTEN_BACKLOG`].
async fn listen(addr: &str) -> std::io::Result<TcpListener> {
    let mut last = None;
    for a in tokio::net::lookup_host(addr).await? {
        let socket = if a.is_ipv4() {
            tokio::net::TcpSocket::new_v4()?
        } else {
            tokio::net::TcpSocket::new_v6()?
        };
        // As `TcpListener::bind` does on Unix: a restarted server rebinds at once.
        socket.set_reuseaddr(true)?;
        match socket.bind(a).and_then(|()| socket.listen(LISTEN_BACKLOG)) {
            Ok(listener) => return Ok(listener),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| {
        std::io::Error::new(std::io::ErrorKind::InvalidInput, "no address to bind")
    }))
}

/// warp's filter as served to hyper (`crate::http::routes`).
trait HttpFilter:
    warp::Filter<Extract = (crate::http::Reply,), Error = std::convert::Infallible>
    + Clone
    + Send
    + Sync
    + 'static
{
}

impl<F> HttpFilter for F where
    F: warp::Filter<Extract = (crate::http::Reply,), Error = std::convert::Infallible>
        + Clone
        + Send
        + Sync
        + 'static
{
}

/// What every connection task needs: where AMQP and HTTP connections go.
struct Shared<F> {
    filter: F,
    tls: Option<Arc<TlsMaterial>>,
    backend: ServiceBusBackend,
    amqp: Arc<crate::amqp::AmqpOptions>,
    shutdown: CancellationToken,
    /// Cancelled when the drain deadline passes: HTTP connections still busy are cut.
    cut: CancellationToken,
    header_read_timeout: Duration,
    /// Bound on the first bytes, the TLS handshake and a WebSocket upgrade's head.
    route_timeout: Duration,
}

/// One port's accept loop: each connection is routed (`net::route`: TLS or not; AMQP, HTTP or
/// AMQP over WebSocket) in its own task, so sniffing never holds the loop. HTTP connections
/// get warp's filter as a hyper service with a header-read timeout (a client that does not
/// finish a request head in time, including an idle keep-alive connection, is disconnected),
/// a higher header count, and graceful shutdown that drains in-flight requests. Returns
/// once `shutdown` is cancelled and this port's HTTP connections are drained; AMQP
/// connections are left to `tracker` (they close on `shutdown`).
async fn serve_port<F>(
    kind: PortKind,
    listener: TcpListener,
    shared: Arc<Shared<F>>,
    tracker: TaskTracker,
) where
    F: HttpFilter,
    F::Future: Send,
{
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    loop {
        let (tcp, addr) = tokio::select! {
            r = listener.accept() => match r {
                Ok(pair) => pair,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!("{} accept failed: {e}", kind.scheme());
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = shared.shutdown.cancelled() => break,
        };
        // Before wrapping (net/mod.rs): AMQP frames and HTTP responses go out at once.
        let _ = tcp.set_nodelay(true);
        let watcher = graceful.watcher();
        let shared = shared.clone();
        tracker.spawn(async move {
            connection(tcp, addr, watcher, shared).await;
            crate::net::trim::connection_closed();
        });
    }
    drop(listener);
    graceful.shutdown().await;
}

/// Routes one accepted connection and serves it to the end.
async fn connection<F>(
    tcp: TcpStream,
    addr: SocketAddr,
    watcher: hyper_util::server::graceful::Watcher,
    shared: Arc<Shared<F>>,
) where
    F: HttpFilter,
    F::Future: Send,
{
    use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
    use tower_service::Service;
    // Boxed: the routing state (TLS handshake, read-ahead) is freed once routed instead of
    // sizing this task's future for its whole life.
    let route = Box::pin(crate::net::route(
        tcp,
        shared.tls.as_deref(),
        shared.route_timeout,
    ));
    let routed = tokio::select! {
        r = route => r,
        // A connection that has not even sent its first bytes has no request in flight:
        // shutdown does not wait for it (its route timeout is 10 s).
        _ = shared.shutdown.cancelled() => return,
    };
    let routed = match routed {
        Ok(r) => r,
        Err(e) => {
            // Port scanners, health probes, TLS on a listener without TLS: close.
            tracing::debug!("connection from {addr} closed before routing: {e}");
            return;
        }
    };
    let Routed {
        destination,
        tls,
        websocket,
    } = routed;
    match destination {
        Destination::Amqp(stream) => {
            drop(watcher);
            tracing::trace!("AMQP connection from {addr} (tls={tls}, websocket={websocket})");
            crate::amqp::serve_stream(
                stream,
                addr,
                shared.backend.clone(),
                shared.amqp.clone(),
                shared.shutdown.clone(),
            )
            .await;
        }
        Destination::Http(stream) => {
            let _open = crate::metrics::http_connection_open();
            let svc = warp::service(shared.filter.clone());
            let svc =
                hyper::service::service_fn(move |mut req: http::Request<hyper::body::Incoming>| {
                    // The TCP peer, also behind TLS: admin protection checks it.
                    req.extensions_mut().insert(crate::http::Peer(addr));
                    svc.clone().call(req)
                });
            let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
            builder
                .http1()
                .timer(TokioTimer::new())
                .header_read_timeout(shared.header_read_timeout)
                .max_headers(crate::constants::HTTP_MAX_HEADERS);
            let conn = builder.serve_connection_with_upgrades(TokioIo::new(stream), svc);
            tokio::select! {
                r = watcher.watch(conn) => if let Err(e) = r {
                    tracing::debug!("HTTP connection from {addr} (tls={tls}) ended: {e}");
                },
                // Dropping the connection closes it (and ends the graceful watch).
                _ = shared.cut.cancelled() => {
                    tracing::debug!("HTTP connection from {addr} cut at the drain deadline");
                }
            }
        }
    }
}

/// The start-up warning for a server reachable from the network with SAS off: anyone who can
/// reach the port can read, send and delete every entity (the emulator's nature, but said).
fn exposure_warning(bound: std::net::SocketAddr, sas: bool) -> Option<String> {
    if sas || bound.ip().to_canonical().is_loopback() {
        return None;
    }
    Some(format!(
        "listening on {bound}, which is not loopback, with SAS validation off: anyone who can \
         reach this port can read, send and delete every entity; set LOCALZURE_SAS_KEY_NAME \
         and LOCALZURE_SAS_KEY to require tokens, or LOCALZURE_HOST=127.0.0.1"
    ))
}

/// Serves HTTP on `listener` until `shutdown` is cancelled, then shuts down gracefully.
pub async fn run(
    listener: TcpListener,
    backend: ServiceBusBackend,
    config: &Config,
    shutdown: CancellationToken,
) -> Result<(), crate::storage::StorageError> {
    run_with_amqp(listener, None, backend, config, shutdown).await
}

/// Serves HTTP on `listener` and, when given, AMQP on `amqp` (same backend, same shutdown
/// token), without TLS.
pub async fn run_with_amqp(
    listener: TcpListener,
    amqp: Option<TcpListener>,
    backend: ServiceBusBackend,
    config: &Config,
    shutdown: CancellationToken,
) -> Result<(), crate::storage::StorageError> {
    let mut ports = vec![(PortKind::Http, listener)];
    ports.extend(amqp.map(|l| (PortKind::Amqp, l)));
    serve(Listeners { ports, tls: None }, backend, config, shutdown).await
}

/// Serves every listener until `shutdown` is cancelled. Shutdown order: every port stops
/// accepting and drains in-flight HTTP requests; AMQP connections close; then timers and
/// snapshot tasks stop, and storage takes its final snapshot and closes.
pub async fn serve(
    listeners: Listeners,
    backend: ServiceBusBackend,
    config: &Config,
    shutdown: CancellationToken,
) -> Result<(), crate::storage::StorageError> {
    for (_, l) in &listeners.ports {
        if let Some(w) = l
            .local_addr()
            .ok()
            .and_then(|a| exposure_warning(a, config.sas().is_some()))
        {
            tracing::warn!("{w}");
            break;
        }
    }
    let tracker = TaskTracker::new();
    let background = CancellationToken::new();
    {
        let b = backend.clone();
        let c = background.clone();
        tracker.spawn(async move { b.run_timers(c).await });
        let b = backend.clone();
        let c = background.clone();
        tracker.spawn(async move { b.run_snapshots(c).await });
        tracker.spawn(crate::net::trim::run(background.clone()));
    }
    let state = HttpState {
        backend: backend.clone(),
        max_message_size: config.server.max_message_size_kb.saturating_mul(1024),
        admin_token: config.server.admin_token.clone(),
        sas: config.sas(),
        shutdown: shutdown.clone(),
    };
    {
        // Shutdown begins: parked long-polls answer at once so the drain is quick.
        let b = backend.clone();
        let s = shutdown.clone();
        let c = background.clone();
        tracker.spawn(async move {
            tokio::select! {
                _ = s.cancelled() => b.begin_drain(),
                _ = c.cancelled() => {}
            }
        });
    }
    let header_read_timeout =
        Duration::from_millis(config.server.http_header_read_timeout_ms.max(1));
    let shared = Arc::new(Shared {
        filter: routes(state),
        tls: listeners.tls,
        backend: backend.clone(),
        amqp: Arc::new(crate::amqp::AmqpOptions {
            max_message_size: (config.server.max_message_size_kb as u64).saturating_mul(1024),
            sas: config.sas(),
            ..Default::default()
        }),
        shutdown: shutdown.clone(),
        cut: CancellationToken::new(),
        header_read_timeout,
        route_timeout: header_read_timeout.min(crate::net::SNIFF_TIMEOUT),
    });
    // Connections (routing, HTTP and AMQP) are tracked apart from the timers, which must
    // outlive them.
    let connections = TaskTracker::new();
    let ports: Vec<_> = listeners
        .ports
        .into_iter()
        .map(|(kind, l)| serve_port(kind, l, shared.clone(), connections.clone()))
        .collect();
    let all_ports = futures::future::join_all(ports);
    // Only a shutdown starts the deadline: the ports run until it.
    tokio::pin!(all_ports);
    tokio::select! {
        _ = &mut all_ports => {}
        _ = shutdown.cancelled() => {}
    }
    let drain = Duration::from_millis(crate::constants::SHUTDOWN_DRAIN_MS);
    if tokio::time::timeout(drain, &mut all_ports).await.is_ok() {
        tracing::info!("HTTP server stopped; in-flight requests drained");
    } else {
        shared.cut.cancel();
        all_ports.await;
        tracing::warn!(
            "HTTP server stopped; requests still in flight {} ms after the shutdown signal \
             were cut",
            crate::constants::SHUTDOWN_DRAIN_MS
        );
    }
    let t = Instant::now();
    connections.close();
    connections.wait().await;
    tracing::info!("AMQP listener stopped; connections closed");
    background.cancel();
    tracker.close();
    tracker.wait().await;
    tracing::info!(
        "timers and snapshot tasks stopped in {:.1} ms",
        t.elapsed().as_secs_f64() * 1000.0
    );
    backend.shutdown_persistence().await?;
    tracing::info!("shutdown complete");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::exposure_warning;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// Idle keep-alive connections are capped (issue 18 item 5): hyper arms the header-read
    /// timeout while waiting for the next request head, so a connection idle after a response
    /// is closed after that timeout; and the HTTP port answers AMQP too (issue 17).
    #[tokio::test]
    async fn idle_keep_alive_is_closed_and_the_http_port_speaks_amqp() {
        let mut config = crate::config::Config::default();
        config.server.http_header_read_timeout_ms = 300;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = tokio_util::sync::CancellationToken::new();
        let backend = crate::service::ServiceBusBackend::new(None);
        let s = stop.clone();
        let server = tokio::spawn(async move { super::run(listener, backend, &config, s).await });

        let mut c = tokio::net::TcpStream::connect(addr).await.unwrap();
        c.write_all(b"GET /health HTTP/1.1\r\nHost: localhost\r\n\r\n")
            .await
            .unwrap();
        let mut buf = vec![0u8; 4096];
        let n = c.read(&mut buf).await.unwrap();
        assert!(buf[..n].starts_with(b"HTTP/1.1 200"), "{:?}", &buf[..n]);
        let t = std::time::Instant::now();
        let closed = tokio::time::timeout(std::time::Duration::from_secs(5), c.read(&mut buf))
            .await
            .expect("idle keep-alive connection not closed");
        assert_eq!(closed.unwrap(), 0);
        assert!(t.elapsed() >= std::time::Duration::from_millis(200));

        let mut a = tokio::net::TcpStream::connect(addr).await.unwrap();
        a.write_all(b"AMQP\x03\x01\x00\x00").await.unwrap();
        let mut header = [0u8; 8];
        a.read_exact(&mut header).await.unwrap();
        assert_eq!(&header, b"AMQP\x03\x01\x00\x00");
        drop(a);

        stop.cancel();
        server.await.unwrap().unwrap();
    }

    #[test]
    fn warns_for_a_network_bind_without_sas_only() {
        let w = exposure_warning("0.0.0.0:5300".parse().unwrap(), false).unwrap();
        assert!(
            w.contains("LOCALZURE_SAS_KEY_NAME") && w.contains("LOCALZURE_SAS_KEY "),
            "{w}"
        );
        assert!(exposure_warning("[::]:5300".parse().unwrap(), false).is_some());
        assert!(exposure_warning("0.0.0.0:5300".parse().unwrap(), true).is_none());
        assert!(exposure_warning("127.0.0.1:5300".parse().unwrap(), false).is_none());
        assert!(exposure_warning("[::1]:5300".parse().unwrap(), false).is_none());
        assert!(exposure_warning("[::ffff:127.0.0.1]:5300".parse().unwrap(), false).is_none());
    }
}
