//! The `localzure storage|health|stop|peek` commands.
//!
//! When a server is running, every command is a call to its admin API (`/$admin/…`), so the
//! live state and the files never disagree. When none answers, the storage commands open the
//! configured storage directly; the data-directory lock (taken by the server too) guarantees
//! two writers never open the same files.

pub mod format;
pub mod tls;

use crate::broker::message::Message;
use crate::config::{Config, StorageType};
use crate::service::{ServiceBusBackend, StorageStats};
use crate::storage::export::ExportDocument;
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;
use thiserror::Error;

/// CLI errors: each is printed as one line, with a non-zero exit.
#[derive(Debug, Error)]
pub enum CliError {
    #[error("the server at {url} is unreachable: {detail}")]
    Unreachable { url: String, detail: String },
    #[error("the server answered {status}: {detail}")]
    Server { status: u16, detail: String },
    #[error("{path}: {detail}")]
    File { path: PathBuf, detail: String },
    #[error("malformed import {0}")]
    Malformed(String),
    #[error(transparent)]
    Storage(#[from] crate::storage::StorageError),
    #[error("{0}")]
    Refused(String),
}

/// The storage subcommands (`localzure storage …`), parsed by clap straight into this enum.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum StorageCommand {
    /// Print storage statistics.
    Stats {
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
        /// Also list each queue, topic and subscription with its counts.
        #[arg(long)]
        entities: bool,
    },
    /// Write every entity and message to a portable JSON file.
    Export { file: PathBuf },
    /// Replace all state with the contents of an export file.
    Import { file: PathBuf },
    /// Reclaim space (SQLite VACUUM, JSON orphan cleanup).
    Compact,
    /// Delete every entity and message (asks for confirmation).
    Purge {
        /// Do not ask (scripts and CI).
        #[arg(long)]
        yes: bool,
    },
    /// Write a snapshot now and truncate the operation log.
    Snapshot,
}

/// How to reach the admin API.
#[derive(Debug, Clone)]
pub struct Target {
    pub base_url: String,
    pub token: Option<String>,
}

impl Target {
    /// The local server as configured (`0.0.0.0`/`::` are reached on loopback).
    pub fn from_config(cfg: &Config, url: Option<String>) -> Self {
        let host = match cfg.server.host.as_str() {
            "0.0.0.0" | "::" | "[::]" | "" => "127.0.0.1".to_string(),
            h => h.to_string(),
        };
        Target {
            base_url: url.unwrap_or_else(|| format!("http://{host}:{}", cfg.server.http_port)),
            token: cfg.server.admin_token.clone(),
        }
    }

    fn client(&self, timeout: Duration) -> reqwest::Client {
        reqwest::Client::builder()
            .timeout(timeout)
            .build()
            .unwrap_or_default()
    }

    fn request(
        &self,
        c: &reqwest::Client,
        method: reqwest::Method,
        path: &str,
    ) -> reqwest::RequestBuilder {
        let mut r = c.request(method, format!("{}{path}", self.base_url));
        // Not a "simple" request, which the admin API requires of POSTs (src/http/admin.rs).
        r = r.header(crate::http::admin::ADMIN_HEADER, "1");
        if let Some(t) = &self.token {
            r = r.bearer_auth(t);
        }
        r
    }

    /// Is a server answering? Connection refused → `Ok(false)`.
    pub async fn is_up(&self) -> Result<bool, CliError> {
        let c = self.client(Duration::from_secs(3));
        match c.get(format!("{}/health", self.base_url)).send().await {
            Ok(_) => Ok(true),
            Err(e) if e.is_connect() => Ok(false),
            Err(e) => Err(CliError::Unreachable {
                url: self.base_url.clone(),
                detail: e.to_string(),
            }),
        }
    }

    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<Vec<u8>, CliError> {
        let c = self.client(Duration::from_secs(3600));
        let mut r = self.request(&c, method, path);
        if let Some(b) = body {
            r = r.header("Content-Type", "application/json").body(b);
        }
        let resp = r.send().await.map_err(|e| CliError::Unreachable {
            url: self.base_url.clone(),
            detail: e.to_string(),
        })?;
        let status = resp.status();
        let bytes = resp.bytes().await.map_err(|e| CliError::Unreachable {
            url: self.base_url.clone(),
            detail: e.to_string(),
        })?;
        if !status.is_success() {
            return Err(CliError::Server {
                status: status.as_u16(),
                detail: format::error_detail(&bytes),
            });
        }
        Ok(bytes.to_vec())
    }
}

/// `localzure health`: prints the status line it checked (and the storage mode); true when
/// the server answered healthy (exit status for Docker HEALTHCHECK without curl).
pub async fn health(target: &Target) -> bool {
    let c = target.client(Duration::from_secs(3));
    let url = format!("{}/health", target.base_url);
    let resp = match c.get(&url).send().await {
        Ok(r) => r,
        Err(e) => {
            println!("GET {url}: unreachable ({e})");
            return false;
        }
    };
    let status = resp.status();
    let body: serde_json::Value = resp.json().await.unwrap_or_default();
    println!("GET {url}: {}", format::health_line(status.as_u16(), &body));
    status.is_success()
}

/// `localzure peek ENTITY`: prints up to `count` messages from sequence number `from` on,
/// without locking or changing them: through the running server's `/$admin/peek`, or from
/// the configured storage when no server runs.
pub async fn peek(cfg: &Config, target: &Target, args: PeekArgs) -> Result<(), CliError> {
    let messages: Vec<Message> = if target.is_up().await? {
        let mut path = format!(
            "/$admin/peek?entity={}&count={}&from={}",
            urlencoding::encode(&args.entity),
            args.count,
            args.from
        );
        if args.dlq {
            path.push_str("&dlq=true");
        }
        let body = target.call(reqwest::Method::GET, &path, None).await?;
        serde_json::from_slice(&body)
            .map_err(|e| CliError::Refused(format!("unexpected peek answer: {e}")))?
    } else {
        let backend = open_offline(cfg).await?;
        let segs: Vec<&str> = args.entity.split('/').filter(|s| !s.is_empty()).collect();
        let result = crate::broker::op::QueuePath::parse_segments(&segs)
            .map_err(CliError::Refused)
            .and_then(|mut path| {
                path.dead_letter |= args.dlq;
                let count = usize::try_from(args.count).unwrap_or(usize::MAX);
                backend
                    .read(|b| b.peek(&path, args.from, count))
                    .map_err(|e| CliError::Refused(e.to_string()))
            });
        backend.shutdown_persistence().await?;
        result?
    };
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&messages)
                .map_err(|e| CliError::Refused(e.to_string()))?
        );
    } else if messages.is_empty() {
        println!("No messages.");
    } else {
        for m in &messages {
            print!("{}", format::message_block(m));
        }
    }
    Ok(())
}

/// `localzure peek`'s arguments.
#[derive(Debug, Clone, clap::Args)]
pub struct PeekArgs {
    /// `queue`, `topic/Subscriptions/sub` (add `/$DeadLetterQueue`, or use --dlq).
    pub entity: String,
    /// Peek the entity's dead-letter queue.
    #[arg(long)]
    pub dlq: bool,
    /// How many messages (at most 1,000 through the server).
    #[arg(long, default_value_t = 10)]
    pub count: u64,
    /// The first sequence number to show.
    #[arg(long, default_value_t = 0)]
    pub from: u64,
    /// Print the messages as JSON (bodies in base64).
    #[arg(long)]
    pub json: bool,
}

/// `localzure stop`: asks the local server to shut down gracefully.
pub async fn stop(target: &Target) -> Result<(), CliError> {
    target
        .call(reqwest::Method::POST, "/$admin/shutdown", None)
        .await
        .map(|_| ())
}

/// Runs a storage command against the running server, or offline against the files.
pub async fn storage(cfg: &Config, target: &Target, cmd: StorageCommand) -> Result<(), CliError> {
    if let StorageCommand::Purge { yes } = &cmd {
        confirm_purge(*yes)?;
    }
    if target.is_up().await? {
        online(target, cmd).await
    } else {
        offline(cfg, cmd).await
    }
}

fn confirm_purge(yes: bool) -> Result<(), CliError> {
    if yes {
        return Ok(());
    }
    if !std::io::stdin().is_terminal() {
        return Err(CliError::Refused(
            "refusing to purge without confirmation: no terminal to ask on; pass --yes".into(),
        ));
    }
    print!("Are you sure you want to purge ALL data? Type 'yes' to confirm: ");
    let _ = std::io::stdout().flush();
    let mut line = String::new();
    std::io::stdin()
        .read_line(&mut line)
        .map_err(|e| CliError::Refused(format!("cannot read the answer: {e}")))?;
    if line.trim() == "yes" {
        Ok(())
    } else {
        Err(CliError::Refused("purge cancelled".into()))
    }
}

async fn online(target: &Target, cmd: StorageCommand) -> Result<(), CliError> {
    use reqwest::Method;
    match cmd {
        StorageCommand::Stats { json, entities } => {
            let body = target.call(Method::GET, "/$admin/stats", None).await?;
            let stats: StorageStats = serde_json::from_slice(&body)
                .map_err(|e| CliError::Refused(format!("unexpected stats answer: {e}")))?;
            print_stats(&stats, json, entities);
        }
        StorageCommand::Export { file } => {
            let bar = spinner("Exporting");
            let body = target.call(Method::GET, "/$admin/export", None).await?;
            let doc = ExportDocument::parse(
                std::str::from_utf8(&body).map_err(|e| CliError::Refused(e.to_string()))?,
            )
            .map_err(CliError::Refused)?;
            write_export(&file, &doc)?;
            finish(bar);
            println!(
                "Exported {} entities and {} messages to {}",
                doc.entities.len(),
                doc.messages.len(),
                file.display()
            );
        }
        StorageCommand::Import { file } => {
            let doc = read_import(&file)?;
            let (e, m) = (doc.entities.len(), doc.messages.len());
            let bar = spinner("Importing");
            let body = serde_json::to_vec(&doc).map_err(|e| CliError::Refused(e.to_string()))?;
            target
                .call(Method::POST, "/$admin/import", Some(body))
                .await?;
            finish(bar);
            println!(
                "Imported {e} entities and {m} messages from {}",
                file.display()
            );
        }
        StorageCommand::Compact => {
            target.call(Method::POST, "/$admin/compact", None).await?;
            println!("Storage compacted.");
        }
        StorageCommand::Snapshot => {
            let body = target.call(Method::POST, "/$admin/snapshot", None).await?;
            println!("Snapshot written. {}", String::from_utf8_lossy(&body));
        }
        StorageCommand::Purge { .. } => {
            println!("Purging all data from storage...");
            target.call(Method::POST, "/$admin/purge", None).await?;
            println!("Done. All entities and messages have been deleted.");
        }
    }
    Ok(())
}

async fn offline(cfg: &Config, cmd: StorageCommand) -> Result<(), CliError> {
    let backend = open_offline(cfg).await?;
    let result = async {
        match cmd {
            StorageCommand::Stats { json, entities } => {
                print_stats(&backend.stats(), json, entities)
            }
            StorageCommand::Export { file } => {
                let doc = backend.export()?;
                write_export(&file, &doc)?;
                println!(
                    "Exported {} entities and {} messages to {}",
                    doc.entities.len(),
                    doc.messages.len(),
                    file.display()
                );
            }
            StorageCommand::Import { file } => {
                let doc = read_import(&file)?;
                let (e, m) = (doc.entities.len(), doc.messages.len());
                backend
                    .import(doc)
                    .await
                    .map_err(|e| CliError::Refused(e.to_string()))?;
                println!(
                    "Imported {e} entities and {m} messages from {}",
                    file.display()
                );
            }
            StorageCommand::Compact => {
                backend.compact().await?;
                println!("Storage compacted.");
            }
            StorageCommand::Snapshot => {
                let r = backend.snapshot().await?;
                println!(
                    "Snapshot written ({} messages, {} entities).",
                    r.messages_written, r.entities_written
                );
            }
            StorageCommand::Purge { .. } => {
                println!("Purging all data from storage...");
                backend
                    .purge()
                    .await
                    .map_err(|e| CliError::Refused(e.to_string()))?;
                println!("Done. All entities and messages have been deleted.");
            }
        }
        Ok::<(), CliError>(())
    }
    .await;
    backend.shutdown_persistence().await?;
    result
}

/// Opens the configured storage for a command run while no server does (the data-directory
/// lock keeps a server from starting on it meanwhile).
async fn open_offline(cfg: &Config) -> Result<ServiceBusBackend, CliError> {
    if cfg.storage.storage_type == StorageType::InMemory {
        return Err(CliError::Refused(
            "no server answers and the storage type is in-memory: nothing is stored (start the server, or set LOCALZURE_STORAGE_TYPE)".to_string(),
        ));
    }
    let mut storage = cfg.storage.clone();
    // Offline commands never snapshot on their own schedule.
    storage.snapshot_interval_seconds = 0;
    let backend = ServiceBusBackend::new(Some(storage));
    let status = backend.initialize_persistence().await?;
    if let Some(reason) = status.degraded {
        return Err(CliError::Refused(format!(
            "cannot open the storage: {reason}"
        )));
    }
    Ok(backend)
}

fn print_stats(stats: &StorageStats, json: bool, entities: bool) {
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(stats)
                .unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
        );
    } else {
        print!("{}", format::stats_block(stats));
        if entities {
            print!("{}", format::entities_table(&stats.entities));
        }
    }
}

/// Reads and validates an import file, with a progress bar over its bytes on a terminal.
fn read_import(file: &Path) -> Result<ExportDocument, CliError> {
    let err = |e: std::io::Error| CliError::File {
        path: file.to_path_buf(),
        detail: e.to_string(),
    };
    let f = std::fs::File::open(file).map_err(err)?;
    let len = f.metadata().map_err(err)?.len();
    let bar = progress(len, "Reading", "{msg} [{bar:30}] {bytes}/{total_bytes}");
    // The bar counts the file's reads (buffered chunks), not the parser's byte-sized ones.
    let doc = match &bar {
        Some(b) => ExportDocument::parse_reader(std::io::BufReader::new(b.wrap_read(f))),
        None => ExportDocument::parse_reader(std::io::BufReader::new(f)),
    };
    finish(bar);
    doc.map_err(CliError::Malformed)
}

/// Writes an export file atomically (temp file + rename), one entity or message per line,
/// with a progress bar over the messages on a terminal.
fn write_export(file: &Path, doc: &ExportDocument) -> Result<(), CliError> {
    use std::io::BufWriter;
    let err = |e: std::io::Error| CliError::File {
        path: file.to_path_buf(),
        detail: e.to_string(),
    };
    let tmp = file.with_extension("tmp-export");
    let bar = progress(
        doc.messages.len() as u64,
        "Writing",
        "{msg} [{bar:30}] {pos}/{len} messages",
    );
    let mut out = BufWriter::new(std::fs::File::create(&tmp).map_err(err)?);
    let ser = |e: serde_json::Error| CliError::Refused(e.to_string());
    doc.write_streaming(&mut out, |_| {
        if let Some(b) = &bar {
            b.inc(1);
        }
    })
    .map_err(ser)?;
    out.flush().map_err(err)?;
    out.into_inner()
        .map_err(|e| err(e.into_error()))?
        .sync_all()
        .map_err(err)?;
    finish(bar);
    std::fs::rename(&tmp, file).map_err(err)
}

/// A determinate progress bar on a terminal; nothing otherwise.
fn progress(total: u64, what: &str, template: &str) -> Option<indicatif::ProgressBar> {
    if !std::io::stderr().is_terminal() {
        return None;
    }
    let bar = indicatif::ProgressBar::new(total);
    if let Ok(style) = indicatif::ProgressStyle::with_template(template) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_message(what.to_string());
    Some(bar)
}

/// A progress spinner on a terminal; nothing otherwise.
fn spinner(what: &str) -> Option<indicatif::ProgressBar> {
    if !std::io::stderr().is_terminal() {
        return None;
    }
    let bar = indicatif::ProgressBar::new_spinner();
    bar.set_message(format!("{what}..."));
    bar.enable_steady_tick(Duration::from_millis(100));
    Some(bar)
}

fn finish(bar: Option<indicatif::ProgressBar>) {
    if let Some(b) = bar {
        b.finish_and_clear();
    }
}
