//! Configuration: one typed struct, defaults in one place, an optional YAML file underneath
//! and `LOCALZURE_*` environment variables on top (environment wins).
//!
//! [`Config`] is laid out as the YAML file: `server:` and the persistence guide's `storage:`
//! (with `type`, `sqlite`, `json`, `redis`, `snapshot_interval_seconds`, `auto_compact`), so
//! the file deserialises straight into it. The environment is one table, [`ENV`], of variable
//! → field. Unknown keys and bad values are start-up errors that name the key.

use crate::constants::{DEFAULT_AMQP_PORT, DEFAULT_HTTP_PORT, DEFAULT_MAX_MESSAGE_SIZE_KB};
pub use crate::storage::settings::{
    JsonConfig, RedisConfig, SqliteConfig, StorageConfig, StorageType,
};
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

/// `server:`: the listeners, limits and credentials.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
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
    /// The official emulator's entity file (`Config.json`) to create entities from at start.
    pub entities_config: Option<String>,
    /// One INFO line per HTTP request (method, path, status, latency, peer).
    pub access_log: bool,
    /// AMQP transactions roll back this long after their first operation (the service: 2 min).
    pub transaction_timeout_ms: u64,
    /// HTTPS listener (`LOCALZURE_HTTPS_PORT`; 0 = ephemeral). `None`: no dedicated HTTPS
    /// port (the HTTP and AMQP ports still answer TLS when [`ServerConfig::tls_enabled`]).
    pub https_port: Option<u16>,
    /// AMQPS listener (`LOCALZURE_AMQPS_PORT`; 0 = ephemeral). `None`: no dedicated port.
    pub amqps_port: Option<u16>,
    /// `LOCALZURE_TLS_CERT`: the user's PEM certificate (chain allowed); with `tls_key`.
    pub tls_cert: Option<PathBuf>,
    /// `LOCALZURE_TLS_KEY`: the user's PEM private key.
    pub tls_key: Option<PathBuf>,
    /// `LOCALZURE_TLS_DIR`: where the generated CA and certificate live; default
    /// `{data dir}/tls` ([`Config::tls_dir`]).
    pub tls_dir: Option<PathBuf>,
    /// `LOCALZURE_TLS_NAMES`: extra DNS names / IPs for the generated certificate.
    pub tls_names: Vec<String>,
    /// How long a client may take to send a request head before its connection is closed
    /// (slowloris protection). Neither a YAML key nor an environment variable: tests shorten it.
    #[serde(skip)]
    pub http_header_read_timeout_ms: u64,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            host: "127.0.0.1".to_string(),
            http_port: DEFAULT_HTTP_PORT,
            amqp_port: DEFAULT_AMQP_PORT,
            max_message_size_kb: DEFAULT_MAX_MESSAGE_SIZE_KB,
            admin_token: None,
            sas_key_name: None,
            sas_key: None,
            entities_config: None,
            access_log: false,
            transaction_timeout_ms: crate::broker::txn::DEFAULT_TIMEOUT_MS as u64,
            https_port: None,
            amqps_port: None,
            tls_cert: None,
            tls_key: None,
            tls_dir: None,
            tls_names: Vec::new(),
            http_header_read_timeout_ms: crate::constants::HTTP_HEADER_READ_TIMEOUT_MS,
        }
    }
}

/// Everything `localzure start` needs.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub server: ServerConfig,
    pub storage: StorageConfig,
}

// ----- environment -------------------------------------------------------------------------

/// Sets one field from a variable's value (the variable's name is passed for errors).
type Setter = fn(&mut Config, &'static str, &str) -> Result<(), ConfigError>;

/// One row per variable: `"LOCALZURE_X" => field.path: parser`.
macro_rules! env_table {
    ($($var:literal => $($field:ident).+ : $parse:ident),* $(,)?) => {
        &[$(($var, |c: &mut Config, key: &'static str, v: &str| {
            c.$($field).+ = $parse(key, v)?;
            Ok(())
        })),*]
    };
}

/// The `LOCALZURE_*` variables (README's configuration table) and the field each sets.
/// `LOCALZURE_CONFIG` (the YAML file), `LOCALZURE_LOG` and `LOCALZURE_LOG_FORMAT` are read
/// elsewhere (logging starts before the configuration loads). `EMULATOR_HTTP_PORT` is the
/// official emulator container's variable (its compose template maps
/// `5300:${EMULATOR_HTTP_PORT}`); `LOCALZURE_HTTP_PORT` wins when both are set.
pub static ENV: &[(&str, Setter)] = env_table![
    "EMULATOR_HTTP_PORT" => server.http_port: number,
    "LOCALZURE_HOST" => server.host: text,
    "LOCALZURE_HTTP_PORT" => server.http_port: number,
    "LOCALZURE_AMQP_PORT" => server.amqp_port: number,
    "LOCALZURE_MAX_MESSAGE_SIZE_KB" => server.max_message_size_kb: number,
    "LOCALZURE_ADMIN_TOKEN" => server.admin_token: some_text,
    "LOCALZURE_SAS_KEY_NAME" => server.sas_key_name: some_text,
    "LOCALZURE_SAS_KEY" => server.sas_key: some_text,
    "LOCALZURE_ENTITIES_CONFIG" => server.entities_config: some_text,
    "LOCALZURE_ACCESS_LOG" => server.access_log: boolean,
    "LOCALZURE_TRANSACTION_TIMEOUT_MS" => server.transaction_timeout_ms: number,
    "LOCALZURE_HTTPS_PORT" => server.https_port: some_number,
    "LOCALZURE_AMQPS_PORT" => server.amqps_port: some_number,
    "LOCALZURE_TLS_CERT" => server.tls_cert: some_path,
    "LOCALZURE_TLS_KEY" => server.tls_key: some_path,
    "LOCALZURE_TLS_DIR" => server.tls_dir: some_path,
    "LOCALZURE_TLS_NAMES" => server.tls_names: name_list,
    "LOCALZURE_STORAGE_TYPE" => storage.storage_type: storage_type,
    "LOCALZURE_SQLITE_PATH" => storage.sqlite.path: path,
    "LOCALZURE_WAL_ENABLED" => storage.sqlite.wal_enabled: boolean,
    "LOCALZURE_JSON_PATH" => storage.json.path: path,
    "LOCALZURE_JSON_PRETTY_PRINT" => storage.json.pretty_print: boolean,
    "LOCALZURE_REDIS_HOST" => storage.redis.host: text,
    "LOCALZURE_REDIS_PORT" => storage.redis.port: number,
    "LOCALZURE_REDIS_PASSWORD" => storage.redis.password: some_text,
    "LOCALZURE_REDIS_DB" => storage.redis.db: number,
    "LOCALZURE_REDIS_PREFIX" => storage.redis.prefix: text,
    "LOCALZURE_SNAPSHOT_INTERVAL" => storage.snapshot_interval_seconds: number,
    "LOCALZURE_AUTO_COMPACT" => storage.auto_compact: boolean,
    "LOCALZURE_WAL_SYNC" => storage.wal_sync: wal_sync,
    "LOCALZURE_WAL_SYNC_INTERVAL_MS" => storage.wal_sync_interval_ms: number,
];

/// The official emulator container's other variables, accepted and ignored: they configure its
/// SQL Server and licence prompt, which LocalZure has no use for. Setting them is not an error
/// and logs nothing, so the official compose file's `environment:` block works as it is.
pub static ACCEPTED_OFFICIAL_ENV: &[&str] = &[
    "ACCEPT_EULA",
    "SQL_SERVER",
    "MSSQL_SA_PASSWORD",
    "SQL_WAIT_INTERVAL",
];

/// Whether `name` is read by [`Config::load_from`]: `LOCALZURE_*` and the official emulator's
/// `EMULATOR_*` rows of [`ENV`].
fn is_ours(name: &str) -> bool {
    name.starts_with("LOCALZURE_") || name.starts_with("EMULATOR_")
}

fn text(_: &str, v: &str) -> Result<String, ConfigError> {
    Ok(v.to_string())
}

fn some_text(_: &str, v: &str) -> Result<Option<String>, ConfigError> {
    Ok(Some(v.to_string()))
}

fn path(_: &str, v: &str) -> Result<PathBuf, ConfigError> {
    Ok(PathBuf::from(v))
}

fn some_path(_: &str, v: &str) -> Result<Option<PathBuf>, ConfigError> {
    Ok(Some(PathBuf::from(v)))
}

fn name_list(_: &str, v: &str) -> Result<Vec<String>, ConfigError> {
    Ok(crate::tls::TlsSettings::parse_names(v))
}

fn some_number<T: std::str::FromStr>(key: &str, v: &str) -> Result<Option<T>, ConfigError> {
    number(key, v).map(Some)
}

fn number<T: std::str::FromStr>(key: &str, v: &str) -> Result<T, ConfigError> {
    v.trim().parse().map_err(|_| ConfigError::BadValue {
        key: key.to_string(),
        value: v.to_string(),
        expected: "a non-negative integer".to_string(),
    })
}

fn boolean(key: &str, v: &str) -> Result<bool, ConfigError> {
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

fn storage_type(key: &str, v: &str) -> Result<StorageType, ConfigError> {
    StorageType::parse(v).ok_or_else(|| ConfigError::BadValue {
        key: key.to_string(),
        value: v.to_string(),
        expected: StorageType::EXPECTED.to_string(),
    })
}

fn wal_sync(key: &str, v: &str) -> Result<crate::storage::settings::WalSync, ConfigError> {
    crate::storage::settings::WalSync::parse(v).ok_or_else(|| ConfigError::BadValue {
        key: key.to_string(),
        value: v.to_string(),
        expected: crate::storage::settings::WalSync::EXPECTED.to_string(),
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
        let mut vars: Vec<(String, String)> =
            vars.into_iter().filter(|(k, _)| is_ours(k)).collect();
        // The official emulator's variables first, so a `LOCALZURE_*` one always wins.
        vars.sort_by_key(|(k, _)| k.starts_with("LOCALZURE_"));
        let file = config_file.map(Path::to_path_buf).or_else(|| {
            vars.iter()
                .rev()
                .find(|(k, _)| k == "LOCALZURE_CONFIG")
                .map(|(_, v)| PathBuf::from(v))
        });
        let mut cfg = match file {
            Some(path) => Self::read_yaml(&path)?,
            None => Config::default(),
        };
        for (k, v) in &vars {
            if let Some((key, set)) = ENV.iter().find(|(name, _)| name == k) {
                set(&mut cfg, key, v)?;
            }
        }
        let server = &cfg.server;
        if server.sas_key_name.is_some() != server.sas_key.is_some() {
            return Err(ConfigError::BadValue {
                key: "LOCALZURE_SAS_KEY_NAME / LOCALZURE_SAS_KEY".to_string(),
                value: "only one set".to_string(),
                expected: "both set (SAS validation on) or neither (off)".to_string(),
            });
        }
        if cfg.storage.redis.prefix.is_empty() {
            return Err(ConfigError::BadValue {
                key: "LOCALZURE_REDIS_PREFIX / storage.redis.prefix".to_string(),
                value: String::new(),
                expected: "a non-empty key prefix such as localzure:".to_string(),
            });
        }
        Ok(cfg)
    }

    /// The directory persistent state lives in: the SQLite file's directory, the JSON
    /// directory, or `./data` (in-memory and Redis). Generated TLS material goes below it.
    pub fn data_dir(&self) -> PathBuf {
        let s = &self.storage;
        match s.storage_type {
            StorageType::Sqlite => s
                .sqlite
                .path
                .parent()
                .filter(|p| !p.as_os_str().is_empty())
                .map_or_else(|| PathBuf::from("."), Path::to_path_buf),
            StorageType::Json => s.json.path.clone(),
            _ => PathBuf::from("./data"),
        }
    }

    /// TLS is on (material loaded or generated at start, TLS answered on every port) when a
    /// TLS port, a certificate or a TLS directory is configured. Off otherwise: a plain
    /// `localzure start` writes no certificate files.
    pub fn tls_enabled(&self) -> bool {
        let v = &self.server;
        v.https_port.is_some()
            || v.amqps_port.is_some()
            || v.tls_cert.is_some()
            || v.tls_key.is_some()
            || v.tls_dir.is_some()
    }

    /// Where the certificate comes from (`LOCALZURE_TLS_*`), the directory defaulting to
    /// `{data dir}/tls`.
    pub fn tls_settings(&self) -> crate::tls::TlsSettings {
        let v = &self.server;
        crate::tls::TlsSettings {
            cert: v.tls_cert.clone(),
            key: v.tls_key.clone(),
            dir: v
                .tls_dir
                .clone()
                .unwrap_or_else(|| self.data_dir().join("tls")),
            names: v.tls_names.clone(),
        }
    }

    /// The SAS key requests must be signed with, when both name and key are set.
    pub fn sas(&self) -> Option<crate::sas::SasKey> {
        match (&self.server.sas_key_name, &self.server.sas_key) {
            (Some(name), Some(key)) => Some(crate::sas::SasKey {
                name: name.clone(),
                key: key.clone(),
            }),
            _ => None,
        }
    }

    fn read_yaml(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        if text.trim().is_empty() {
            return Ok(Config::default());
        }
        serde_yaml::from_str(&text).map_err(|e| ConfigError::Yaml {
            path: path.to_path_buf(),
            detail: e.to_string(),
        })
    }

    /// A one-line summary for the start-up log, secrets redacted.
    pub fn summary(&self) -> String {
        let (v, s) = (&self.server, &self.storage);
        let redacted = |o: &Option<String>| if o.is_some() { "<redacted>" } else { "none" };
        format!(
            "host={} http_port={} amqp_port={} https_port={} amqps_port={} tls={} max_message_size_kb={} admin_token={} sas={} storage_type={} sqlite_path={} json_path={} redis={}:{}/{} redis_prefix={} redis_password={} snapshot_interval_seconds={} wal_enabled={} auto_compact={}",
            v.host,
            v.http_port,
            v.amqp_port,
            v.https_port.map_or("off".to_string(), |p| p.to_string()),
            v.amqps_port.map_or("off".to_string(), |p| p.to_string()),
            if self.tls_enabled() { "on" } else { "off" },
            v.max_message_size_kb,
            redacted(&v.admin_token),
            match &v.sas_key_name {
                Some(n) if v.sas_key.is_some() => format!("{n} (key redacted)"),
                _ => "off".to_string(),
            },
            s.storage_type.as_str(),
            s.sqlite.path.display(),
            s.json.path.display(),
            s.redis.host,
            s.redis.port,
            s.redis.db,
            s.redis.prefix,
            redacted(&s.redis.password),
            s.snapshot_interval_seconds,
            s.sqlite.wal_enabled,
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
        assert_eq!(c.storage.sqlite.path, PathBuf::from("./data/servicebus.db"));
        assert_eq!(c.storage.snapshot_interval_seconds, 60);
        assert!(c.storage.sqlite.wal_enabled && c.storage.auto_compact);
        assert_eq!(c.server.http_port, 5300);
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
        assert_eq!(c.storage.json.path, PathBuf::from("/tmp/j"));
        assert!(!c.storage.json.pretty_print);
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
                c.storage.redis.host.as_str(),
                c.storage.redis.port,
                c.storage.redis.db
            ),
            ("cache", 6380, 2)
        );
        assert_eq!(c.storage.redis.password.as_deref(), Some("s3cret"));
        assert_eq!(c.storage.redis.prefix, "yaml:");
        assert!(!c.summary().contains("s3cret"), "{}", c.summary());
        let c = Config::load_from(Some(&f), vars(&[("LOCALZURE_REDIS_PREFIX", "env:")])).unwrap();
        assert_eq!(c.storage.redis.prefix, "env:");
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

    /// Every variable of the table is set by its row (a bad value names it), and the README's
    /// configuration table lists each one.
    #[test]
    fn every_environment_variable_has_a_row() {
        let readme = include_str!("../README.md");
        for (name, _) in ENV {
            assert!(readme.contains(name), "{name} is not in README");
            if name.contains("SAS_KEY") {
                // Only valid in pairs: `sas_needs_both_name_and_key` covers them.
                continue;
            }
            // Some value of each kind (number, boolean either way, text, type, sync mode)
            // differs from the default.
            let changed = ["2", "0", "json", "true", "always"].iter().any(|v| {
                Config::load_from(None, vars(&[(name, v)])).is_ok_and(|c| c != Config::default())
            });
            assert!(changed, "{name} changed nothing");
        }
    }

    /// The official emulator's variables: `EMULATOR_HTTP_PORT` sets the HTTP port unless
    /// `LOCALZURE_HTTP_PORT` is also set (in either order); its SQL Server and licence
    /// variables change nothing and are no error, whatever their value.
    #[test]
    fn official_emulator_variables() {
        let c = Config::load_from(None, vars(&[("EMULATOR_HTTP_PORT", "5400")])).unwrap();
        assert_eq!(c.server.http_port, 5400);
        for order in [
            [
                ("EMULATOR_HTTP_PORT", "5400"),
                ("LOCALZURE_HTTP_PORT", "5500"),
            ],
            [
                ("LOCALZURE_HTTP_PORT", "5500"),
                ("EMULATOR_HTTP_PORT", "5400"),
            ],
        ] {
            let c = Config::load_from(None, vars(&order)).unwrap();
            assert_eq!(c.server.http_port, 5500);
        }
        let e = Config::load_from(None, vars(&[("EMULATOR_HTTP_PORT", "web")])).unwrap_err();
        assert!(e.to_string().contains("EMULATOR_HTTP_PORT"), "{e}");
        let official: Vec<(&str, &str)> = ACCEPTED_OFFICIAL_ENV
            .iter()
            .map(|k| (*k, "Y; not a number {}"))
            .collect();
        let c = Config::load_from(None, vars(&official)).unwrap();
        assert_eq!(c, Config::default());
        let readme = include_str!("../README.md");
        for name in ACCEPTED_OFFICIAL_ENV {
            assert!(readme.contains(name), "{name} is not in README");
        }
    }

    /// Empty sections (`storage:` with nothing under it) keep the defaults.
    #[test]
    fn empty_yaml_sections_keep_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("c.yaml");
        std::fs::write(&f, "storage:\n  sqlite:\nserver:\n").unwrap();
        let c = Config::load_from(Some(&f), vars(&[])).unwrap();
        assert_eq!(c, Config::default());
    }
}
