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
        }
    }
}

impl StorageConfig {
    /// Is the operation log on (`storage.sqlite.wal_enabled`, for every backend)?
    pub fn wal_enabled(&self) -> bool {
        self.sqlite.wal_enabled
    }
}
