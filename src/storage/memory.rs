//! The in-memory backend: no files, nothing survives a restart (the default).

use super::{Backend, BackendStats, Delta, Snapshot, StorageError};
use std::path::PathBuf;

/// Stores nothing; every call succeeds at once.
#[derive(Debug, Default)]
pub struct MemoryBackend;

impl Backend for MemoryBackend {
    fn load(&mut self) -> Result<Option<Snapshot>, StorageError> {
        Ok(None)
    }
    fn apply(&mut self, _delta: &Delta) -> Result<(), StorageError> {
        Ok(())
    }
    fn compact(&mut self) -> Result<(), StorageError> {
        Ok(())
    }
    fn purge(&mut self) -> Result<(), StorageError> {
        Ok(())
    }
    fn stats(&self) -> BackendStats {
        BackendStats {
            backend: "In-Memory".to_string(),
            ..BackendStats::default()
        }
    }
    fn journal_path(&self) -> Option<PathBuf> {
        None
    }
}
