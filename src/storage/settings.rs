//! The storage settings, one section per backend, laid out as the YAML file's `storage:`
//! section (the persistence guide's layout) so the file deserialises straight into them.
//! Each backend takes only its own section; `crate::config` composes them with the server's.

use serde::{Deserialize, Deserializer, Serialize};
use std::path::PathBuf;

/// Where persisted state lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Default)]
pub enum StorageType {
    #[default]
    #[serde(rename = "in-memory")]
    InMemory,
    #[serde(rename = "sqlite")]
    Sqlite,
    #[serde(rename = "json")]
    Json,
    #[serde(rename = "redis")]
    Redis,
}

impl StorageType {
    /// Reads a type as the YAML file and `LOCALZURE_STORAGE_TYPE` accept it: case-insensitive,
    /// with `memory`/`inmemory` for `in-memory`.
    pub fn parse(s: &str) -> Option<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "in-memory" | "inmemory" | "memory" => Some(StorageType::InMemory),
            "sqlite" => Some(StorageType::Sqlite),
            "json" => Some(StorageType::Json),
            "redis" => Some(StorageType::Redis),
            _ => None,
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            StorageType::InMemory => "in-memory",
            StorageType::Sqlite => "sqlite",
            StorageType::Json => "json",
            StorageType::Redis => "redis",
        }
    }
    /// What an invalid value is told it should be.
    pub const EXPECTED: &'static str = "one of in-memory, sqlite, json, redis";
}

impl<'de> Deserialize<'de> for StorageType {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        StorageType::parse(&s).ok_or_else(|| {
            serde::de::Error::custom(format!("invalid value '{s}' ({})", StorageType::EXPECTED))
        })
    }
}

/// When the operation log is fsynced relative to acknowledging a request
/// (`storage.wal_sync`, `LOCALZURE_WAL_SYNC`): the trade Redis makes with `appendfsync
/// everysec`/`always` and PostgreSQL with `synchronous_commit`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Default)]
pub enum WalSync {
    /// Acknowledge once the record is written to the operating system (it survives a process
    /// crash, `kill -9`, a container kill, OOM); fsync every `wal_sync_interval_ms`, at every
    /// snapshot and at shutdown. A power loss or kernel crash may lose up to that interval.
    #[default]
    #[serde(rename = "interval")]
    Interval,
    /// Acknowledge only after the record is fsynced (group commit): survives power loss too.
    #[serde(rename = "always")]
    Always,
}

impl WalSync {
    /// Reads a mode as the YAML file and `LOCALZURE_WAL_SYNC` accept it (case-insensitive).
    pub fn parse(s: &str) -> Option<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "interval" => Some(WalSync::Interval),
            "always" => Some(WalSync::Always),
            _ => None,
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            WalSync::Interval => "interval",
            WalSync::Always => "always",
        }
    }
    /// What an invalid value is told it should be.
    pub const EXPECTED: &'static str = "one of interval, always";
}

impl<'de> Deserialize<'de> for WalSync {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        WalSync::parse(&s).ok_or_else(|| {
            serde::de::Error::custom(format!("invalid value '{s}' ({})", WalSync::EXPECTED))
        })
    }
}

/// The operation log's sync policy: the mode and, for [`WalSync::Interval`], how often.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SyncPolicy {
    pub mode: WalSync,
    pub interval: std::time::Duration,
}

impl SyncPolicy {
    /// fsync before every acknowledgement (the journal's behaviour before the modes existed).
    pub const ALWAYS: SyncPolicy = SyncPolicy {
        mode: WalSync::Always,
        interval: std::time::Duration::from_millis(DEFAULT_WAL_SYNC_INTERVAL_MS),
    };
}

/// `storage.wal_sync_interval_ms`'s default.
pub const DEFAULT_WAL_SYNC_INTERVAL_MS: u64 = 1000;

/// `storage.sqlite`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SqliteConfig {
    pub path: PathBuf,
    /// The operation log on or off, for every backend (the guide puts the switch here;
    /// `LOCALZURE_WAL_ENABLED`); for SQLite it also selects `journal_mode=WAL`.
    pub wal_enabled: bool,
}

impl Default for SqliteConfig {
    fn default() -> Self {
        SqliteConfig {
            path: PathBuf::from("./data/servicebus.db"),
            wal_enabled: true,
        }
    }
}

/// `storage.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct JsonConfig {
    pub path: PathBuf,
    pub pretty_print: bool,
}

impl Default for JsonConfig {
    fn default() -> Self {
        JsonConfig {
            path: PathBuf::from("./data"),
            pretty_print: true,
        }
    }
}

/// `storage.redis`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RedisConfig {
    pub host: String,
    pub port: u16,
    pub password: Option<String>,
    pub db: i64,
    /// Every Redis key this instance uses starts with it, so one Redis serves several
    /// emulators (one lease per prefix).
    pub prefix: String,
}

impl Default for RedisConfig {
    fn default() -> Self {
        RedisConfig {
            host: "localhost".to_string(),
            port: 6379,
            password: None,
            db: 0,
            prefix: "localzure:".to_string(),
        }
    }
}

/// The persistence settings of the guide, with its defaults (`storage:` in the YAML file).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StorageConfig {
    #[serde(rename = "type")]
    pub storage_type: StorageType,
    pub sqlite: SqliteConfig,
    pub json: JsonConfig,
    pub redis: RedisConfig,
    /// Seconds between automatic snapshots; 0 disables them.
    pub snapshot_interval_seconds: u64,
    pub auto_compact: bool,
    /// When the operation log is fsynced (file journal of SQLite and JSON; see [`WalSync`]).
    pub wal_sync: WalSync,
    /// Milliseconds between fsyncs in [`WalSync::Interval`] mode (at least 1).
    pub wal_sync_interval_ms: u64,
}

impl Default for StorageConfig {
    fn default() -> Self {
        StorageConfig {
            storage_type: StorageType::InMemory,
            sqlite: SqliteConfig::default(),
            json: JsonConfig::default(),
            redis: RedisConfig::default(),
            snapshot_interval_seconds: 60,
            auto_compact: true,
            wal_sync: WalSync::Interval,
            wal_sync_interval_ms: DEFAULT_WAL_SYNC_INTERVAL_MS,
        }
    }
}

impl StorageConfig {
    /// Is the operation log on (`storage.sqlite.wal_enabled`, for every backend)?
    pub fn wal_enabled(&self) -> bool {
        self.sqlite.wal_enabled
    }

    /// The operation log's sync policy.
    pub fn sync_policy(&self) -> SyncPolicy {
        SyncPolicy {
            mode: self.wal_sync,
            interval: std::time::Duration::from_millis(self.wal_sync_interval_ms.max(1)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wal_sync_defaults_to_interval_and_reads_from_yaml() {
        let d = StorageConfig::default();
        assert_eq!(d.wal_sync, WalSync::Interval);
        assert_eq!(
            d.sync_policy().interval,
            std::time::Duration::from_millis(1000)
        );
        let c: StorageConfig =
            serde_yaml::from_str("wal_sync: Always\nwal_sync_interval_ms: 0\n").unwrap();
        assert_eq!(c.wal_sync, WalSync::Always);
        // A zero interval would spin the syncer: it is at least 1 ms.
        assert_eq!(
            c.sync_policy().interval,
            std::time::Duration::from_millis(1)
        );
        let e = serde_yaml::from_str::<StorageConfig>("wal_sync: sometimes\n").unwrap_err();
        assert!(e.to_string().contains(WalSync::EXPECTED), "{e}");
    }
}
