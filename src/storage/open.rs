//! Opening the snapshot backend a configuration names.

use super::json::JsonBackend;
use super::memory::MemoryBackend;
use super::redis::RedisBackend;
use super::sqlite::SqliteBackend;
use super::{Backend, StorageError};
use crate::config::{StorageConfig, StorageType};

/// Opens the backend the configuration names.
pub fn open_backend(cfg: &StorageConfig) -> Result<Box<dyn Backend>, StorageError> {
    match cfg.storage_type {
        StorageType::InMemory => Ok(Box::new(MemoryBackend)),
        StorageType::Sqlite => Ok(Box::new(SqliteBackend::open(
            &cfg.sqlite_path,
            cfg.wal_enabled,
        )?)),
        StorageType::Json => Ok(Box::new(JsonBackend::open(
            &cfg.json_path,
            cfg.json_pretty_print,
        )?)),
        StorageType::Redis => Ok(Box::new(RedisBackend::open(cfg)?)),
    }
}
