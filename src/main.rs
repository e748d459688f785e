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
    /// Print messages of a queue or subscription without changing them (peek).
    Peek {
        #[command(flatten)]
        args: localzure::cli::PeekArgs,
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
    let format = match localzure::logging::LogFormat::from_env() {
        Ok(f) => f,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    localzure::logging::init(default_level, format);
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
        Command::Peek { args, common } => rt.block_on(async {
            let Some((config, target)) = load(&common) else {
                return ExitCode::from(2);
            };
            outcome(localzure::cli::peek(&config, &target, args).await)
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
            outcome(localzure::cli::stop(&target).await)
        }),
    }
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
    outcome(localzure::cli::storage(&config, &target, command).await)
}

/// A command's exit status: 0, or 1 with the error on one line.
fn outcome(result: Result<(), localzure::cli::CliError>) -> ExitCode {
    match result {
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
    localzure::logging::set_access_log(config.server.access_log);
    // Every connection holds a descriptor; the usual soft limit (1,024) is below what a
    // thousand clients need, so take what the hard limit allows.
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(n) => tracing::info!("open-file limit: {n}"),
        Err(e) => tracing::warn!("cannot raise the open-file limit: {e}"),
    }
    let backend = ServiceBusBackend::new(Some(config.storage.clone()));
    backend.set_transaction_timeout_ms(config.server.transaction_timeout_ms as i64);
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
    let amqp_port = listeners
        .addr(localzure::server::PortKind::Amqp)
        .map(|a| a.port())
        .unwrap_or(config.server.amqp_port);
    tracing::info!("connection string: {}", connection_string(amqp_port));
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

/// The connection string that reaches this server, the official emulator's with the AMQP
/// port: `sb://localhost` means 5672 to the SDKs (`UseDevelopmentEmulator=true` selects plain
/// AMQP on the endpoint's port, 5672 when none is given), so any other port is spelled out.
fn connection_string(amqp_port: u16) -> String {
    let host = if amqp_port == localzure::constants::DEFAULT_AMQP_PORT {
        "localhost".to_string()
    } else {
        format!("localhost:{amqp_port}")
    };
    format!(
        "Endpoint=sb://{host};SharedAccessKeyName=RootManageSharedAccessKey;SharedAccessKey=SAS_KEY_VALUE;UseDevelopmentEmulator=true;"
    )
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
