//! Log output set-up: `LOCALZURE_LOG` (filter), `LOCALZURE_LOG_FORMAT` (`text` or `json`),
//! colours only on a terminal without `NO_COLOR`, and the optional access log.
//!
//! In JSON every line is one object (tracing-subscriber's `json` formatter): `timestamp`,
//! `level`, `target` and `fields`, the message text in `fields.message`, so a wait strategy
//! that looks for the readiness line's text still finds it on the line.

use std::sync::atomic::{AtomicBool, Ordering};

/// The log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

impl LogFormat {
    /// `LOCALZURE_LOG_FORMAT`: `text` (default) or `json`; anything else is an error.
    pub fn from_env() -> Result<Self, String> {
        match std::env::var("LOCALZURE_LOG_FORMAT") {
            Err(_) => Ok(LogFormat::Text),
            Ok(v) => Self::parse(&v),
        }
    }

    pub fn parse(v: &str) -> Result<Self, String> {
        match v.trim().to_ascii_lowercase().as_str() {
            "" | "text" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            other => Err(format!(
                "LOCALZURE_LOG_FORMAT must be text or json, not '{other}'"
            )),
        }
    }
}

/// Installs the global subscriber writing to stderr. `default_level` applies when
/// `LOCALZURE_LOG` is unset or invalid.
pub fn init(default_level: &str, format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("LOCALZURE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.with_ansi(colour_logs()).init(),
        LogFormat::Json => builder.json().with_ansi(false).init(),
    }
}

/// Colours in logs only when they go to a terminal and `NO_COLOR` is unset or empty
/// (<https://no-color.org>): piped logs and CI files stay free of escape codes.
fn colour_logs() -> bool {
    use std::io::IsTerminal;
    let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
    !no_color && std::io::stderr().is_terminal()
}

static ACCESS_LOG: AtomicBool = AtomicBool::new(false);

/// Turns the per-request access log on (`LOCALZURE_ACCESS_LOG=true`).
pub fn set_access_log(on: bool) {
    ACCESS_LOG.store(on, Ordering::Relaxed);
}

/// Is the per-request access log on?
pub fn access_log() -> bool {
    ACCESS_LOG.load(Ordering::Relaxed)
}

/// Who made a request, for the admin and entity log lines.
#[derive(Debug, Clone, Copy)]
pub struct Caller {
    /// `http`, `amqp`, or `internal` (the entity file at start, the timer).
    pub plane: &'static str,
    pub peer: Option<std::net::SocketAddr>,
}

impl Caller {
    /// The peer address, or `-`.
    pub fn peer_text(&self) -> String {
        self.peer.map_or_else(|| "-".to_string(), |p| p.to_string())
    }
}

impl std::fmt::Display for Caller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.peer {
            Some(p) => write!(f, "by {} caller {p}", self.plane),
            None => write!(f, "by {}", self.plane),
        }
    }
}

tokio::task_local! {
    /// The caller of the request the current task serves (set by the HTTP layer).
    static CALLER: Caller;
}

/// Runs `f` with `caller` as the current request's caller.
pub async fn with_caller<F: std::future::Future>(caller: Caller, f: F) -> F::Output {
    CALLER.scope(caller, f).await
}

/// The current request's caller; `internal` outside any request.
pub fn caller() -> Caller {
    CALLER.try_with(|c| *c).unwrap_or(Caller {
        plane: "internal",
        peer: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_parse() {
        assert_eq!(LogFormat::parse("JSON"), Ok(LogFormat::Json));
        assert_eq!(LogFormat::parse("text"), Ok(LogFormat::Text));
        assert_eq!(LogFormat::parse(""), Ok(LogFormat::Text));
        assert!(LogFormat::parse("xml").is_err());
    }
}
