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
    // --- AMQP endpoint (src/amqp) ---
    let amqp_task = amqp.map(|l| {
        let options = crate::amqp::AmqpOptions {
            max_message_size: (config.max_message_size_kb as u64).saturating_mul(1024),
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
        max_message_size: config.max_message_size_kb.saturating_mul(1024),
        admin_token: config.admin_token.clone(),
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
    let stop = shutdown.clone();
    warp::serve(routes(state))
        .incoming(listener)
        .graceful(async move { stop.cancelled().await })
        .run()
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
