//! The `localzure` binary: a thin CLI over the library.

use clap::{Parser, Subcommand};
use localzure::config::Config;
use localzure::service::ServiceBusBackend;
use std::path::PathBuf;
use std::process::ExitCode;
use tokio_util::sync::CancellationToken;

#[derive(Parser)]
#[command(
    name = "localzure",
    version,
    about = "An emulator of Azure Service Bus"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Start the emulator (HTTP on LOCALZURE_HTTP_PORT, default 5300; AMQP on
    /// LOCALZURE_AMQP_PORT, default 5672).
    Start {
        /// YAML configuration file (also LOCALZURE_CONFIG); environment variables win.
        #[arg(long)]
        config: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("LOCALZURE_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match cli.command {
        Command::Start { config } => rt.block_on(start(config)),
    }
}

async fn start(config_file: Option<PathBuf>) -> ExitCode {
    let config = match Config::load(config_file.as_deref()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    tracing::info!("configuration: {}", config.summary());
    let backend = ServiceBusBackend::new(Some(config.storage.clone()));
    if let Err(e) = backend.initialize_persistence().await {
        tracing::error!("cannot start: {e}");
        return ExitCode::FAILURE;
    }
    let addr = format!("{}:{}", config.host, config.http_port);
    let listener = match tokio::net::TcpListener::bind(&addr).await {
        Ok(l) => l,
        Err(e) => {
            tracing::error!("cannot bind {addr}: {e}");
            return ExitCode::FAILURE;
        }
    };
    match listener.local_addr() {
        Ok(a) => tracing::info!("listening on http://{a}"),
        Err(e) => tracing::warn!("bound, but the local address is unknown: {e}"),
    }
    // --- AMQP endpoint: LOCALZURE_HOST:LOCALZURE_AMQP_PORT (0 = ephemeral) ---
    let amqp_addr = format!("{}:{}", config.host, config.amqp_port);
    let amqp_listener = match tokio::net::TcpListener::bind(&amqp_addr).await {
        Ok(l) => l,
        Err(e) => {
            tracing::error!("cannot bind {amqp_addr}: {e}");
            return ExitCode::FAILURE;
        }
    };
    match amqp_listener.local_addr() {
        Ok(a) => tracing::info!("AMQP listening on amqp://{a}"),
        Err(e) => tracing::warn!("AMQP bound, but the local address is unknown: {e}"),
    }
    // --- end AMQP ---
    tracing::info!(
        "connection string: Endpoint=sb://localhost;SharedAccessKeyName=RootManageSharedAccessKey;SharedAccessKey=SAS_KEY_VALUE;UseDevelopmentEmulator=true;"
    );
    let shutdown = CancellationToken::new();
    let signals = spawn_signal_handler(shutdown.clone());
    let result =
        localzure::server::run_with_amqp(listener, Some(amqp_listener), backend, &config, shutdown)
            .await;
    if let Some(h) = signals {
        h.abort();
    }
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("shutdown failed: {e}");
            ExitCode::FAILURE
        }
    }
}

/// SIGTERM/SIGINT → graceful shutdown (signal-hook-tokio).
fn spawn_signal_handler(shutdown: CancellationToken) -> Option<tokio::task::JoinHandle<()>> {
    use futures::StreamExt;
    use signal_hook::consts::{SIGINT, SIGTERM};
    match signal_hook_tokio::Signals::new([SIGTERM, SIGINT]) {
        Ok(mut signals) => Some(tokio::spawn(async move {
            if let Some(sig) = signals.next().await {
                tracing::info!("received signal {sig}; shutting down");
                shutdown.cancel();
            }
        })),
        Err(e) => {
            tracing::warn!("cannot install signal handlers: {e}");
            None
        }
    }
}
