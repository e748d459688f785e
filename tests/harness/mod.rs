//! The one test harness: starts LocalZure in-process (the library's server on ephemeral ports,
//! with the backend and its manual clock at hand) or as the real binary ([`binary`]), with its
//! HTTP and AMQP addresses either way, so one scenario can run over both planes against both.
//!
//! The suites' modules start their servers here: `tests/common` (in-process, with HTTP
//! helpers), `tests/process` (the binary, with data directories, the CLI and HTTP helpers) and
//! the AMQP frame tests. Include it with `#[path = "../harness/mod.rs"] mod harness;` (or
//! `mod harness;` from a test file).

#![allow(dead_code)]

pub mod binary;

use localzure::amqp::AmqpOptions;
use localzure::config::Config;
use localzure::storage::StorageError;
use localzure::time::ManualClock;
use localzure::ServiceBusBackend;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Where a server runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// The library's server in the test's runtime.
    InProcess,
    /// `localzure start` as a child process.
    Binary,
}

/// An in-memory backend on a manual clock set to now, to prepare before
/// [`InProcess::start`].
pub fn manual_backend() -> (ServiceBusBackend, Arc<ManualClock>) {
    let now = chrono::Utc::now().timestamp_millis();
    let clock = Arc::new(ManualClock::new(now));
    (ServiceBusBackend::with_clock(None, clock.clone()), clock)
}

/// A server running in the test's process.
pub struct InProcess {
    pub http: SocketAddr,
    pub amqp: SocketAddr,
    /// The served backend, for what only the server can observe (parked receives, state).
    pub backend: ServiceBusBackend,
    shutdown: CancellationToken,
    task: Option<JoinHandle<Result<(), StorageError>>>,
}

impl InProcess {
    /// Serves `backend` as the binary does: HTTP and AMQP ports, timers, snapshots, ordered
    /// shutdown (`config`'s host and ports are ignored).
    pub async fn start(config: Config, backend: ServiceBusBackend) -> InProcess {
        Self::serve(backend, |http, amqp, served, token| async move {
            localzure::server::run_with_amqp(http, Some(amqp), served, &config, token).await
        })
        .await
    }

    /// As [`Self::start`] (default configuration), but the AMQP port is served by the AMQP
    /// endpoint alone with `opts` (limits, timeouts, SAS), for frame-level tests.
    pub async fn start_amqp(backend: ServiceBusBackend, opts: AmqpOptions) -> InProcess {
        Self::serve(backend, |http, amqp, served, token| async move {
            let endpoint = tokio::spawn(localzure::amqp::run(
                amqp,
                served.clone(),
                opts,
                token.clone(),
            ));
            let result = localzure::server::run(http, served, &Config::default(), token).await;
            endpoint.await.expect("AMQP endpoint does not panic");
            result
        })
        .await
    }

    /// Binds the HTTP and AMQP ports on `127.0.0.1:0` and spawns `run` on them.
    async fn serve<F, Fut>(backend: ServiceBusBackend, run: F) -> InProcess
    where
        F: FnOnce(TcpListener, TcpListener, ServiceBusBackend, CancellationToken) -> Fut,
        Fut: std::future::Future<Output = Result<(), StorageError>> + Send + 'static,
    {
        let bind = || async {
            let listener = TcpListener::bind("127.0.0.1:0")
                .await
                .expect("bind 127.0.0.1:0");
            let addr = listener.local_addr().expect("local address");
            (listener, addr)
        };
        let ((http_l, http), (amqp_l, amqp)) = (bind().await, bind().await);
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(run(http_l, amqp_l, backend.clone(), shutdown.clone()));
        InProcess {
            http,
            amqp,
            backend,
            shutdown,
            task: Some(task),
        }
    }

    pub fn base_url(&self) -> String {
        format!("http://{}", self.http)
    }

    /// Waits until `n` receives are parked (`ServiceBusBackend::parked_receives`), so a test
    /// that then sends proves the *wake*, not a receive that simply found the message. Fails
    /// after 10 s.
    pub async fn wait_parked(&self, n: usize) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.backend.parked_receives() < n {
            assert!(
                Instant::now() < deadline,
                "{n} receive(s) never parked (parked: {})",
                self.backend.parked_receives()
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Begins shutdown (cancels the shutdown token) without waiting; [`Self::stop`] waits.
    pub fn begin_stop(&self) {
        self.shutdown.cancel();
    }

    /// Cancels the shutdown token and waits for the server to stop in order.
    pub async fn stop(mut self) {
        self.shutdown.cancel();
        if let Some(task) = self.task.take() {
            let res = tokio::time::timeout(Duration::from_secs(20), task)
                .await
                .expect("server stops within 20 s")
                .expect("server task does not panic");
            res.expect("server shuts down cleanly");
        }
    }
}

impl Drop for InProcess {
    fn drop(&mut self) {
        // A test that panicked before `stop` still leaves no server running behind it.
        self.shutdown.cancel();
    }
}

/// A server in either mode, by its addresses.
pub enum Running {
    InProcess(InProcess),
    Binary(binary::Binary),
}

impl Running {
    /// Starts a server with default settings (in memory) in `mode`.
    pub async fn start(mode: Mode) -> Running {
        match mode {
            Mode::InProcess => {
                let backend = ServiceBusBackend::new(None);
                Running::InProcess(InProcess::start(Config::default(), backend).await)
            }
            Mode::Binary => Running::Binary(
                binary::Binary::try_start(&[], &[])
                    .unwrap_or_else(|e| panic!("server did not start ({}):\n{}", e.status, e.log)),
            ),
        }
    }

    pub fn base_url(&self) -> String {
        match self {
            Running::InProcess(s) => s.base_url(),
            Running::Binary(b) => b.base_url.clone(),
        }
    }

    pub fn amqp_addr(&self) -> SocketAddr {
        match self {
            Running::InProcess(s) => s.amqp,
            Running::Binary(b) => b.amqp_addr(),
        }
    }

    pub async fn wait_parked(&self, n: usize) {
        match self {
            Running::InProcess(s) => s.wait_parked(n).await,
            Running::Binary(b) => b.wait_parked(n).await,
        }
    }

    /// Stops in order: shutdown token in-process, SIGTERM (asserting exit 0) for the binary.
    pub async fn stop(self) {
        match self {
            Running::InProcess(s) => s.stop().await,
            Running::Binary(b) => {
                tokio::task::spawn_blocking(move || b.signal_and_wait("TERM"))
                    .await
                    .expect("stop does not panic");
            }
        }
    }
}
