use std::path::PathBuf;
use std::sync::Arc;

/// A storage failure. Cheap to clone so one failed flush can be reported to
/// every writer of its group.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StorageError {
    /// The store could not be opened.
    #[error("cannot open the data directory {path}: {reason}")]
    Open {
        /// The data directory.
        path: PathBuf,
        /// What sled said.
        reason: String,
    },
    /// sled failed to read or write.
    #[error("{0}")]
    Sled(Arc<sled::Error>),
    /// A stored record did not decode.
    #[error("corrupt record under key {key}: {reason}")]
    Corrupt {
        /// The key, hex encoded.
        key: String,
        /// The decode error.
        reason: String,
    },
    /// A file could not be made durable.
    #[error("cannot sync to disk: {0}")]
    Sync(String),
    /// A segment file could not be written, synced or read.
    #[error("segment storage: {0}")]
    Segment(String),
    /// The committer has stopped (the broker is shutting down).
    #[error("the store is closed")]
    Closed,
}

impl From<sled::Error> for StorageError {
    fn from(e: sled::Error) -> Self {
        StorageError::Sled(Arc::new(e))
    }
}

/// Storage result.
pub type StorageResult<T> = Result<T, StorageError>;
