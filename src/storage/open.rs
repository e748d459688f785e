//! Opening the snapshot backend a configuration names.

use super::json::JsonBackend;
use super::memory::MemoryBackend;
use super::redis::RedisBackend;
use super::settings::{StorageConfig, StorageType};
use super::sqlite::SqliteBackend;
use super::{Backend, StorageError};

/// Opens the backend the configuration names.
pub fn open_backend(cfg: &StorageConfig) -> Result<Box<dyn Backend>, StorageError> {
    match cfg.storage_type {
        StorageType::InMemory => Ok(Box::new(MemoryBackend)),
        StorageType::Sqlite => Ok(Box::new(SqliteBackend::open(
            &cfg.sqlite.path,
            cfg.sqlite.wal_enabled,
        )?)),
        StorageType::Json => Ok(Box::new(JsonBackend::open(
            &cfg.json.path,
            cfg.json.pretty_print,
        )?)),
        StorageType::Redis => Ok(Box::new(RedisBackend::open(&cfg.redis)?)),
    }
}
