//! placeholder
use super::StorageError;
pub struct SqliteBackend;
impl SqliteBackend {
    pub fn open(
        _p: &std::path::Path,
        _w: bool,
    ) -> Result<super::memory::MemoryBackend, StorageError> {
        Err(StorageError::Unavailable("sqlite".into()))
    }
}
