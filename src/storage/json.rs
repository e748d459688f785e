//! placeholder
use super::StorageError;
pub struct JsonBackend;
impl JsonBackend {
    pub fn open(
        _p: &std::path::Path,
        _w: bool,
    ) -> Result<super::memory::MemoryBackend, StorageError> {
        Err(StorageError::Unavailable("json".into()))
    }
}
