//! The data-directory lock and the Redis lease: what keeps a second LocalZure process from
//! writing the same store.

use super::redis::RedisLease;
use super::settings::{StorageConfig, StorageType};
use super::StorageError;

/// The lock file guarding a configured store against a second writer.
pub fn lock_path(cfg: &StorageConfig) -> Option<std::path::PathBuf> {
    match cfg.storage_type {
        StorageType::Sqlite => {
            let mut p = cfg.sqlite.path.clone().into_os_string();
            p.push(".lock");
            Some(p.into())
        }
        StorageType::Json => Some(cfg.json.path.join(".lock")),
        _ => None,
    }
}

/// What keeps a second writer away: the data-directory lock file or the Redis lease. Held
/// until shutdown; dropping it releases it.
#[derive(Debug)]
pub enum DataLock {
    File(#[allow(dead_code)] std::fs::File),
    Redis(#[allow(dead_code)] RedisLease),
}

/// Takes the data-directory lock (or the Redis lease), refusing when another process holds it.
pub fn lock_data(cfg: &StorageConfig) -> Result<Option<DataLock>, StorageError> {
    use std::io::Write;
    if cfg.storage_type == StorageType::Redis {
        return Ok(Some(DataLock::Redis(RedisLease::acquire(&cfg.redis)?)));
    }
    let Some(path) = lock_path(cfg) else {
        return Ok(None);
    };
    let io = |source| StorageError::Io {
        path: path.clone(),
        source,
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|source| StorageError::Io {
            path: dir.to_path_buf(),
            source,
        })?;
    }
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(&path)
        .map_err(io)?;
    match f.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => {
            let holder = std::fs::read_to_string(&path).unwrap_or_default();
            return Err(StorageError::InUse {
                path,
                holder: holder.trim().to_string(),
            });
        }
        Err(std::fs::TryLockError::Error(e)) => return Err(io(e)),
    }
    f.set_len(0).map_err(io)?;
    writeln!(f, "pid {}", std::process::id()).map_err(io)?;
    Ok(Some(DataLock::File(f)))
}
