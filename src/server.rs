//! Running the server: bind, serve, and shut down in order.
//!
//! [`run`] takes a bound listener and a cancellation token, so tests bind port 0. Shutdown
//! order: stop accepting and drain in-flight requests (warp graceful), stop timers and
//! periodic snapshots, final snapshot, compaction when `auto_compact`, close storage.

use crate::config::Config;
use crate::http::{routes, HttpState};
use crate::service::ServiceBusBackend;
use std::time::Instant;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// The accept loop: warp's filter as a hyper service, with a header-read timeout (a client
/// that does not finish its request head in time is disconnected, so slow clients cannot pin
/// connections forever), a higher header count, and graceful shutdown that drains in-flight
/// requests.
async fn serve_http<F>(
    listener: TcpListener,
    filter: F,
    stop: CancellationToken,
    header_read_timeout: std::time::Duration,
) where
    F: warp::Filter<Extract = (crate::http::Reply,), Error = std::convert::Infallible>
        + Clone
        + Send
        + Sync
        + 'static,
    F::Future: Send,
{
    use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
    use tower_service::Service;
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    loop {
        let (io, addr) = tokio::select! {
            r = listener.accept() => match r {
                Ok(pair) => pair,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!("HTTP accept failed: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = stop.cancelled() => break,
        };
        let svc = warp::service(filter.clone());
        let svc =
            hyper::service::service_fn(move |mut req: http::Request<hyper::body::Incoming>| {
                req.extensions_mut().insert(crate::http::Peer(addr));
                svc.clone().call(req)
            });
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
            builder
                .http1()
                .timer(TokioTimer::new())
                .header_read_timeout(header_read_timeout)
                .max_headers(crate::constants::HTTP_MAX_HEADERS);
            let conn = builder.serve_connection_with_upgrades(TokioIo::new(io), svc);
            if let Err(e) = watcher.watch(conn).await {
                tracing::debug!("HTTP connection from {addr} ended: {e}");
            }
        });
    }
    drop(listener);
    graceful.shutdown().await;
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
/// token). Both planes stop accepting and drain before timers stop and the final snapshot.
pub async fn run_with_amqp(
    listener: TcpListener,
    amqp: Option<TcpListener>,
    backend: ServiceBusBackend,
    config: &Config,
    shutdown: CancellationToken,
) -> Result<(), crate::storage::StorageError> {
    if let Some(w) = listener
        .local_addr()
        .ok()
        .and_then(|a| exposure_warning(a, config.sas().is_some()))
    {
        tracing::warn!("{w}");
    }
    // --- AMQP endpoint (src/amqp) ---
    let amqp_task = amqp.map(|l| {
        let options = crate::amqp::AmqpOptions {
            max_message_size: (config.server.max_message_size_kb as u64).saturating_mul(1024),
            sas: config.sas(),
            ..Default::default()
        };
        tokio::spawn(crate::amqp::run(
            l,
            backend.clone(),
            options,
            shutdown.clone(),
        ))
    });
    // --- end AMQP ---
    let tracker = TaskTracker::new();
    let background = CancellationToken::new();
    {
        let b = backend.clone();
        let c = background.clone();
        tracker.spawn(async move { b.run_timers(c).await });
        let b = backend.clone();
        let c = background.clone();
        tracker.spawn(async move { b.run_snapshots(c).await });
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
    serve_http(
        listener,
        routes(state),
        shutdown.clone(),
        std::time::Duration::from_millis(config.server.http_header_read_timeout_ms.max(1)),
    )
    .await;
    let t = Instant::now();
    tracing::info!("HTTP server stopped; in-flight requests drained");
    if let Some(task) = amqp_task {
        if let Err(e) = task.await {
            tracing::error!("AMQP endpoint task failed: {e}");
        }
    }
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
