//! Configuration: one typed struct, defaults in one place, an optional YAML file underneath
//! and `LOCALZURE_*` environment variables on top (environment wins).
//!
//! The YAML layout is the persistence guide's (`storage:` with `type`, `sqlite`, `json`,
//! `redis`, `snapshot_interval_seconds`, `auto_compact`), plus an optional `server:` section.
//! Unknown keys and bad values are start-up errors that name the key.

use crate::constants::{DEFAULT_AMQP_PORT, DEFAULT_HTTP_PORT, DEFAULT_MAX_MESSAGE_SIZE_KB};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use thiserror::Error;

/// Configuration errors, each naming the offending key or variable.
#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("invalid config file {path}: {detail}")]
    Yaml { path: PathBuf, detail: String },
    #[error("invalid value for {key}: '{value}' ({expected})")]
    BadValue {
        key: String,
        value: String,
        expected: String,
    },
    #[error("environment: {0}")]
    Env(String),
}

/// Where persisted state lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
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
}

/// The persistence settings of the guide, with its defaults.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StorageConfig {
    pub storage_type: StorageType,
    pub sqlite_path: PathBuf,
    pub json_path: PathBuf,
    pub json_pretty_print: bool,
    pub redis_host: String,
    pub redis_port: u16,
    pub redis_password: Option<String>,
    pub redis_db: i64,
    /// Every Redis key this instance uses starts with it, so one Redis serves several
    /// emulators (one lease per prefix).
    pub redis_prefix: String,
    /// Seconds between automatic snapshots; 0 disables them.
    pub snapshot_interval_seconds: u64,
    pub wal_enabled: bool,
    pub auto_compact: bool,
}

impl Default for StorageConfig {
    fn default() -> Self {
        StorageConfig {
            storage_type: StorageType::InMemory,
            sqlite_path: PathBuf::from("./data/servicebus.db"),
            json_path: PathBuf::from("./data"),
            json_pretty_print: true,
            redis_host: "localhost".to_string(),
            redis_port: 6379,
            redis_password: None,
            redis_db: 0,
            redis_prefix: "localzure:".to_string(),
            snapshot_interval_seconds: 60,
            wal_enabled: true,
            auto_compact: true,
        }
    }
}

/// Everything `localzure start` needs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Config {
    pub host: String,
    /// 0 binds an ephemeral port (tests).
    pub http_port: u16,
    pub amqp_port: u16,
    pub max_message_size_kb: usize,
    /// Token required by `/$admin` from non-loopback callers.
    pub admin_token: Option<String>,
    /// Key name for optional SAS validation; with `sas_key`, requests must carry a valid token.
    pub sas_key_name: Option<String>,
    /// Key for optional SAS validation (used as given, as Azure's shared access keys are).
    pub sas_key: Option<String>,
    /// How long a client may take to send a request head before its connection is closed
    /// (slowloris protection). Not an environment variable: tests shorten it.
    pub http_header_read_timeout_ms: u64,
    /// The official emulator's entity file (`Config.json`) to create entities from at start.
    pub entities_config: Option<String>,
    pub storage: StorageConfig,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            host: "127.0.0.1".to_string(),
            http_port: DEFAULT_HTTP_PORT,
            amqp_port: DEFAULT_AMQP_PORT,
            max_message_size_kb: DEFAULT_MAX_MESSAGE_SIZE_KB,
            admin_token: None,
            sas_key_name: None,
            sas_key: None,
            http_header_read_timeout_ms: crate::constants::HTTP_HEADER_READ_TIMEOUT_MS,
            entities_config: None,
            storage: StorageConfig::default(),
        }
    }
}

// ----- YAML -------------------------------------------------------------------------------

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct YamlFile {
    storage: Option<YamlStorage>,
    server: Option<YamlServer>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct YamlServer {
    host: Option<String>,
    http_port: Option<u16>,
    amqp_port: Option<u16>,
    max_message_size_kb: Option<usize>,
    admin_token: Option<String>,
    sas_key_name: Option<String>,
    sas_key: Option<String>,
    entities_config: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct YamlStorage {
    #[serde(rename = "type")]
    storage_type: Option<String>,
    sqlite: Option<YamlSqlite>,
    json: Option<YamlJson>,
    redis: Option<YamlRedis>,
    snapshot_interval_seconds: Option<u64>,
    auto_compact: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct YamlSqlite {
    path: Option<PathBuf>,
    wal_enabled: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct YamlJson {
    path: Option<PathBuf>,
    pretty_print: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct YamlRedis {
    host: Option<String>,
    port: Option<u16>,
    password: Option<String>,
    db: Option<i64>,
    prefix: Option<String>,
}

// ----- environment -------------------------------------------------------------------------

/// The `LOCALZURE_*` variables, read by envy as strings and parsed here so that an error names
/// the variable.
#[derive(Debug, Default, Deserialize)]
struct EnvVars {
    host: Option<String>,
    http_port: Option<String>,
    amqp_port: Option<String>,
    max_message_size_kb: Option<String>,
    admin_token: Option<String>,
    sas_key_name: Option<String>,
    sas_key: Option<String>,
    entities_config: Option<String>,
    storage_type: Option<String>,
    sqlite_path: Option<String>,
    json_path: Option<String>,
    json_pretty_print: Option<String>,
    redis_host: Option<String>,
    redis_port: Option<String>,
    redis_password: Option<String>,
    redis_db: Option<String>,
    redis_prefix: Option<String>,
    snapshot_interval: Option<String>,
    wal_enabled: Option<String>,
    auto_compact: Option<String>,
    config: Option<String>,
}

fn parse_num<T: std::str::FromStr>(key: &str, v: &str) -> Result<T, ConfigError> {
    v.trim().parse().map_err(|_| ConfigError::BadValue {
        key: key.to_string(),
        value: v.to_string(),
        expected: "a non-negative integer".to_string(),
    })
}

fn parse_bool(key: &str, v: &str) -> Result<bool, ConfigError> {
    match v.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Ok(true),
        "false" | "0" | "no" | "off" => Ok(false),
        _ => Err(ConfigError::BadValue {
            key: key.to_string(),
            value: v.to_string(),
            expected: "true or false".to_string(),
        }),
    }
}

fn parse_type(key: &str, v: &str) -> Result<StorageType, ConfigError> {
    StorageType::parse(v).ok_or_else(|| ConfigError::BadValue {
        key: key.to_string(),
        value: v.to_string(),
        expected: "one of in-memory, sqlite, json, redis".to_string(),
    })
}

impl Config {
    /// Loads defaults, then the YAML file (`--config` or `LOCALZURE_CONFIG`), then the
    /// environment, from the process environment.
    pub fn load(config_file: Option<&Path>) -> Result<Config, ConfigError> {
        Self::load_from(config_file, std::env::vars())
    }

    /// As [`Config::load`], from the given variables (tests pass their own).
    pub fn load_from(
        config_file: Option<&Path>,
        vars: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, ConfigError> {
        let env: EnvVars = envy::prefixed("LOCALZURE_")
            .from_iter(vars)
            .map_err(|e| ConfigError::Env(e.to_string()))?;
        let mut cfg = Config::default();
        let file = config_file
            .map(Path::to_path_buf)
            .or_else(|| env.config.as_ref().map(PathBuf::from));
        if let Some(path) = file {
            cfg.apply_yaml(&path)?;
        }
        cfg.apply_env(&env)?;
        if cfg.sas_key_name.is_some() != cfg.sas_key.is_some() {
            return Err(ConfigError::BadValue {
                key: "LOCALZURE_SAS_KEY_NAME / LOCALZURE_SAS_KEY".to_string(),
                value: "only one set".to_string(),
                expected: "both set (SAS validation on) or neither (off)".to_string(),
            });
        }
        if cfg.storage.redis_prefix.is_empty() {
            return Err(ConfigError::BadValue {
                key: "LOCALZURE_REDIS_PREFIX / storage.redis.prefix".to_string(),
                value: String::new(),
                expected: "a non-empty key prefix such as localzure:".to_string(),
            });
        }
        Ok(cfg)
    }

    /// The SAS key requests must be signed with, when both name and key are set.
    pub fn sas(&self) -> Option<crate::sas::SasKey> {
        match (&self.sas_key_name, &self.sas_key) {
            (Some(name), Some(key)) => Some(crate::sas::SasKey {
                name: name.clone(),
                key: key.clone(),
            }),
            _ => None,
        }
    }

    fn apply_yaml(&mut self, path: &Path) -> Result<(), ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let y: YamlFile = if text.trim().is_empty() {
            YamlFile::default()
        } else {
            serde_yaml::from_str(&text).map_err(|e| ConfigError::Yaml {
                path: path.to_path_buf(),
                detail: e.to_string(),
            })?
        };
        if let Some(s) = y.server {
            if let Some(v) = s.host {
                self.host = v;
            }
            if let Some(v) = s.http_port {
                self.http_port = v;
            }
            if let Some(v) = s.amqp_port {
                self.amqp_port = v;
            }
            if let Some(v) = s.max_message_size_kb {
                self.max_message_size_kb = v;
            }
            if s.admin_token.is_some() {
                self.admin_token = s.admin_token;
            }
            if s.sas_key_name.is_some() {
                self.sas_key_name = s.sas_key_name;
            }
            if s.sas_key.is_some() {
                self.sas_key = s.sas_key;
            }
            if s.entities_config.is_some() {
                self.entities_config = s.entities_config;
            }
        }
        if let Some(s) = y.storage {
            let st = &mut self.storage;
            if let Some(t) = s.storage_type {
                st.storage_type = parse_type("storage.type", &t)?;
            }
            if let Some(sq) = s.sqlite {
                if let Some(p) = sq.path {
                    st.sqlite_path = p;
                }
                if let Some(w) = sq.wal_enabled {
                    st.wal_enabled = w;
                }
            }
            if let Some(j) = s.json {
                if let Some(p) = j.path {
                    st.json_path = p;
                }
                if let Some(p) = j.pretty_print {
                    st.json_pretty_print = p;
                }
            }
            if let Some(r) = s.redis {
                if let Some(h) = r.host {
                    st.redis_host = h;
                }
                if let Some(p) = r.port {
                    st.redis_port = p;
                }
                if r.password.is_some() {
                    st.redis_password = r.password;
                }
                if let Some(d) = r.db {
                    st.redis_db = d;
                }
                if let Some(p) = r.prefix {
                    st.redis_prefix = p;
                }
            }
            if let Some(i) = s.snapshot_interval_seconds {
                st.snapshot_interval_seconds = i;
            }
            if let Some(a) = s.auto_compact {
                st.auto_compact = a;
            }
        }
        Ok(())
    }

    fn apply_env(&mut self, e: &EnvVars) -> Result<(), ConfigError> {
        if let Some(v) = &e.host {
            self.host = v.clone();
        }
        if let Some(v) = &e.http_port {
            self.http_port = parse_num("LOCALZURE_HTTP_PORT", v)?;
        }
        if let Some(v) = &e.amqp_port {
            self.amqp_port = parse_num("LOCALZURE_AMQP_PORT", v)?;
        }
        if let Some(v) = &e.max_message_size_kb {
            self.max_message_size_kb = parse_num("LOCALZURE_MAX_MESSAGE_SIZE_KB", v)?;
        }
        if let Some(v) = &e.admin_token {
            self.admin_token = Some(v.clone());
        }
        if let Some(v) = &e.sas_key_name {
            self.sas_key_name = Some(v.clone());
        }
        if let Some(v) = &e.sas_key {
            self.sas_key = Some(v.clone());
        }
        if let Some(v) = &e.entities_config {
            self.entities_config = Some(v.clone());
        }
        let st = &mut self.storage;
        if let Some(v) = &e.storage_type {
            st.storage_type = parse_type("LOCALZURE_STORAGE_TYPE", v)?;
        }
        if let Some(v) = &e.sqlite_path {
            st.sqlite_path = PathBuf::from(v);
        }
        if let Some(v) = &e.json_path {
            st.json_path = PathBuf::from(v);
        }
        if let Some(v) = &e.json_pretty_print {
            st.json_pretty_print = parse_bool("LOCALZURE_JSON_PRETTY_PRINT", v)?;
        }
        if let Some(v) = &e.redis_host {
            st.redis_host = v.clone();
        }
        if let Some(v) = &e.redis_port {
            st.redis_port = parse_num("LOCALZURE_REDIS_PORT", v)?;
        }
        if let Some(v) = &e.redis_password {
            st.redis_password = Some(v.clone());
        }
        if let Some(v) = &e.redis_db {
            st.redis_db = parse_num("LOCALZURE_REDIS_DB", v)?;
        }
        if let Some(v) = &e.redis_prefix {
            st.redis_prefix = v.clone();
        }
        if let Some(v) = &e.snapshot_interval {
            st.snapshot_interval_seconds = parse_num("LOCALZURE_SNAPSHOT_INTERVAL", v)?;
        }
        if let Some(v) = &e.wal_enabled {
            st.wal_enabled = parse_bool("LOCALZURE_WAL_ENABLED", v)?;
        }
        if let Some(v) = &e.auto_compact {
            st.auto_compact = parse_bool("LOCALZURE_AUTO_COMPACT", v)?;
        }
        Ok(())
    }

    /// A one-line summary for the start-up log, secrets redacted.
    pub fn summary(&self) -> String {
        let s = &self.storage;
        format!(
            "host={} http_port={} amqp_port={} max_message_size_kb={} admin_token={} sas={} storage_type={} sqlite_path={} json_path={} redis={}:{}/{} redis_prefix={} redis_password={} snapshot_interval_seconds={} wal_enabled={} auto_compact={}",
            self.host,
            self.http_port,
            self.amqp_port,
            self.max_message_size_kb,
            if self.admin_token.is_some() { "<redacted>" } else { "none" },
            match &self.sas_key_name {
                Some(n) if self.sas_key.is_some() => format!("{n} (key redacted)"),
                _ => "off".to_string(),
            },
            s.storage_type.as_str(),
            s.sqlite_path.display(),
            s.json_path.display(),
            s.redis_host,
            s.redis_port,
            s.redis_db,
            s.redis_prefix,
            if s.redis_password.is_some() { "<redacted>" } else { "none" },
            s.snapshot_interval_seconds,
            s.wal_enabled,
            s.auto_compact
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sas_needs_both_name_and_key() {
        let c = Config::load_from(
            None,
            vars(&[
                ("LOCALZURE_SAS_KEY_NAME", "RootManageSharedAccessKey"),
                ("LOCALZURE_SAS_KEY", "k"),
            ]),
        )
        .unwrap();
        assert_eq!(c.sas().unwrap().name, "RootManageSharedAccessKey");
        assert!(!c.summary().contains("=k "));
        assert!(Config::load_from(None, vars(&[])).unwrap().sas().is_none());
        let e = Config::load_from(None, vars(&[("LOCALZURE_SAS_KEY", "k")])).unwrap_err();
        assert!(e.to_string().contains("LOCALZURE_SAS_KEY_NAME"), "{e}");
    }

    fn vars(v: &[(&str, &str)]) -> Vec<(String, String)> {
        v.iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    #[test]
    fn defaults_match_the_guide() {
        let c = Config::load_from(None, vars(&[])).unwrap();
        assert_eq!(c.storage, StorageConfig::default());
        assert_eq!(c.storage.storage_type, StorageType::InMemory);
        assert_eq!(c.storage.sqlite_path, PathBuf::from("./data/servicebus.db"));
        assert_eq!(c.storage.snapshot_interval_seconds, 60);
        assert!(c.storage.wal_enabled && c.storage.auto_compact);
        assert_eq!(c.http_port, 5300);
    }

    #[test]
    fn environment_wins_over_yaml() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("c.yaml");
        std::fs::write(
            &f,
            "storage:\n  type: json\n  json:\n    path: /tmp/j\n    pretty_print: false\n  snapshot_interval_seconds: 5\n  auto_compact: false\n",
        )
        .unwrap();
        let c = Config::load_from(
            Some(&f),
            vars(&[
                ("LOCALZURE_STORAGE_TYPE", "sqlite"),
                ("LOCALZURE_SNAPSHOT_INTERVAL", "7"),
            ]),
        )
        .unwrap();
        assert_eq!(c.storage.storage_type, StorageType::Sqlite);
        assert_eq!(c.storage.snapshot_interval_seconds, 7);
        assert_eq!(c.storage.json_path, PathBuf::from("/tmp/j"));
        assert!(!c.storage.json_pretty_print);
        assert!(!c.storage.auto_compact);
    }

    /// The Redis settings come from `storage.redis` and `LOCALZURE_REDIS_*`; the password is
    /// redacted in the summary and an empty prefix is refused.
    #[test]
    fn redis_settings_from_yaml_and_environment() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("c.yaml");
        std::fs::write(
            &f,
            "storage:\n  type: redis\n  redis:\n    host: cache\n    port: 6380\n    password: s3cret\n    db: 2\n    prefix: \"yaml:\"\n",
        )
        .unwrap();
        let c = Config::load_from(Some(&f), vars(&[])).unwrap();
        assert_eq!(c.storage.storage_type, StorageType::Redis);
        assert_eq!(
            (
                c.storage.redis_host.as_str(),
                c.storage.redis_port,
                c.storage.redis_db
            ),
            ("cache", 6380, 2)
        );
        assert_eq!(c.storage.redis_password.as_deref(), Some("s3cret"));
        assert_eq!(c.storage.redis_prefix, "yaml:");
        assert!(!c.summary().contains("s3cret"), "{}", c.summary());
        let c = Config::load_from(Some(&f), vars(&[("LOCALZURE_REDIS_PREFIX", "env:")])).unwrap();
        assert_eq!(c.storage.redis_prefix, "env:");
        let e = Config::load_from(None, vars(&[("LOCALZURE_REDIS_PREFIX", "")]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("LOCALZURE_REDIS_PREFIX"), "{e}");
    }

    #[test]
    fn errors_name_the_key() {
        let e = Config::load_from(None, vars(&[("LOCALZURE_WAL_ENABLED", "maybe")]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("LOCALZURE_WAL_ENABLED"), "{e}");
        let e = Config::load_from(None, vars(&[("LOCALZURE_STORAGE_TYPE", "mongo")]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("LOCALZURE_STORAGE_TYPE"), "{e}");
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("c.yaml");
        std::fs::write(&f, "storage:\n  tpye: json\n").unwrap();
        let e = Config::load_from(Some(&f), vars(&[]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("tpye"), "{e}");
        std::fs::write(&f, "storage:\n  snapshot_interval_seconds: soon\n").unwrap();
        let e = Config::load_from(Some(&f), vars(&[]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("snapshot_interval_seconds"), "{e}");
    }
}
