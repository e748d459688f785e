//! placeholder (being written)
use super::StorageError;
use std::path::Path;
pub struct Replay {
    pub records: Vec<(u64, Vec<u8>)>,
    pub torn_tail: Option<u64>,
}
pub struct Journal;
impl Journal {
    pub fn open(_p: &Path, _f: u64) -> Result<(Journal, Replay), StorageError> {
        Err(StorageError::Unavailable("journal".into()))
    }
    pub fn append(&self, _p: Vec<u8>) -> u64 {
        0
    }
    pub async fn wait_durable(&self, _l: u64) -> Result<(), StorageError> {
        Ok(())
    }
    pub fn last_lsn(&self) -> u64 {
        0
    }
    pub fn truncate_through(&self, _l: u64) -> Result<(), StorageError> {
        Ok(())
    }
    pub fn size_bytes(&self) -> u64 {
        0
    }
    pub fn close(&self) {}
    pub fn health(&self) -> Result<(), String> {
        Ok(())
    }
}
