//! The async runtime the server runs on.

/// A multi-threaded tokio runtime builder with everything the server needs: I/O and timers,
/// and the worker park/unpark hooks that let the operation log's flusher gather larger group
/// commits while the workers are busy ([`crate::storage::idle`]). Embedders that run the server
/// on their own runtime get correct but smaller batches.
pub fn builder() -> tokio::runtime::Builder {
    let mut b = tokio::runtime::Builder::new_multi_thread();
    b.enable_all();
    crate::storage::idle::install(&mut b);
    b
}
