//! The `localzure` binary: a thin CLI over the library.

use clap::{Parser, Subcommand};
use localzure::cli::StorageCommand;
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
    /// Storage administration: through the running server, or on the files when none runs.
    Storage {
        #[command(subcommand)]
        command: StorageCommand,
        #[command(flatten)]
        common: Common,
    },
    /// Exit 0 when the local server is healthy (Docker HEALTHCHECK).
    Health {
        #[command(flatten)]
        common: Common,
    },
    /// Ask the local server to shut down gracefully.
    Stop {
        #[command(flatten)]
        common: Common,
    },
    /// TLS material of the HTTPS / AMQPS listeners (`tls ca`: the CA clients must trust).
    Tls {
        #[command(subcommand)]
        command: localzure::cli::tls::TlsCommand,
        #[command(flatten)]
        common: Common,
    },
}

#[derive(clap::Args)]
struct Common {
    /// YAML configuration file (also LOCALZURE_CONFIG).
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    /// Base URL of the server's HTTP port (default: the configured host and port).
    #[arg(long, global = true)]
    url: Option<String>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Admin commands log only warnings, so their output stays the command's own.
    let default_level = match cli.command {
        Command::Start { .. } => "info",
        _ => "warn",
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("LOCALZURE_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level)),
        )
        .with_writer(std::io::stderr)
        .with_ansi(colour_logs())
        .init();
    let rt = match localzure::runtime::builder().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match cli.command {
        Command::Start { config } => rt.block_on(start(config)),
        Command::Storage { command, common } => rt.block_on(storage(command, common)),
        Command::Health { common } => rt.block_on(async {
            let Some((_, target)) = load(&common) else {
                return ExitCode::from(2);
            };
            if localzure::cli::health(&target).await {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }),
        Command::Tls { command, common } => {
            let Some((config, _)) = load(&common) else {
                return ExitCode::from(2);
            };
            match localzure::cli::tls::run(&config, &command) {
                Ok(out) => {
                    print!("{out}");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Stop { common } => rt.block_on(async {
            let Some((_, target)) = load(&common) else {
                return ExitCode::from(2);
            };
            match localzure::cli::stop(&target).await {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::FAILURE
                }
            }
        }),
    }
}

/// Colours in logs only when they go to a terminal and `NO_COLOR` is unset or empty
/// (<https://no-color.org>): piped logs and CI files stay free of escape codes.
fn colour_logs() -> bool {
    use std::io::IsTerminal;
    let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
    !no_color && std::io::stderr().is_terminal()
}

fn load(common: &Common) -> Option<(Config, localzure::cli::Target)> {
    match Config::load(common.config.as_deref()) {
        Ok(c) => {
            let t = localzure::cli::Target::from_config(&c, common.url.clone());
            Some((c, t))
        }
        Err(e) => {
            eprintln!("error: {e}");
            None
        }
    }
}

async fn storage(command: StorageCommand, common: Common) -> ExitCode {
    let Some((config, target)) = load(&common) else {
        return ExitCode::from(2);
    };
    match localzure::cli::storage(&config, &target, command).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
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
    // Every connection holds a descriptor; the usual soft limit (1,024) is below what a
    // thousand clients need, so take what the hard limit allows.
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(n) => tracing::info!("open-file limit: {n}"),
        Err(e) => tracing::warn!("cannot raise the open-file limit: {e}"),
    }
    let backend = ServiceBusBackend::new(Some(config.storage.clone()));
    if let Err(e) = backend.initialize_persistence().await {
        tracing::error!("cannot start: {e}");
        return ExitCode::FAILURE;
    }
    if let Some(path) =
        localzure::entities_config::configured_path(config.server.entities_config.as_deref())
    {
        match localzure::entities_config::apply(&backend, &path).await {
            Ok(n) => tracing::info!("created {n} entities from {}", path.display()),
            Err(e) => {
                tracing::error!("cannot load the entity file: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
    // HTTP, AMQP, and HTTPS / AMQPS when configured; each port serves every protocol.
    let listeners = match localzure::server::bind(&config).await {
        Ok(l) => l,
        Err(e) => {
            tracing::error!("cannot start: {e}");
            return ExitCode::FAILURE;
        }
    };
    tracing::info!(
        "connection string: Endpoint=sb://localhost;SharedAccessKeyName=RootManageSharedAccessKey;SharedAccessKey=SAS_KEY_VALUE;UseDevelopmentEmulator=true;"
    );
    // The official emulator's readiness line, which test harnesses wait for.
    tracing::info!("Emulator Service is Successfully Up!");
    let shutdown = CancellationToken::new();
    let signals = spawn_signal_handler(shutdown.clone());
    let result = localzure::server::serve(listeners, backend, &config, shutdown).await;
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
