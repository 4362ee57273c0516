//! [`StorageError`]: every way the store can fail, each with its cause kept
//! as the error's `source()` (and its text in the message, for log lines that
//! print only the top error).

use std::path::PathBuf;
use std::sync::Arc;

/// A storage failure. Cheap to clone so one failed flush can be reported to
/// every writer of its group.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StorageError {
    /// The store could not be opened.
    #[error("cannot open the data directory {path}: {source}")]
    Open {
        /// The data directory.
        path: PathBuf,
        /// Which step failed, and why.
        #[source]
        source: Box<StorageError>,
    },
    /// sled failed to read or write.
    #[error("{0}")]
    Sled(#[source] Arc<sled::Error>),
    /// Another process holds sled's lock on the store: another broker is
    /// using this data directory.
    #[error("another broker is using it (the lock on {} is held)", path.display())]
    Locked {
        /// sled's lock file.
        path: PathBuf,
    },
    /// sled panicked while opening the store (sled 0.34 can, on a store
    /// damaged by an abrupt stop).
    #[error("sled panicked while opening the store (it may be damaged)")]
    SledPanicked,
    /// A stored record did not decode.
    #[error("corrupt record under key {key}: {source}")]
    Decode {
        /// The key, hex encoded (or where in the segments the blob is).
        key: String,
        /// The decode error.
        #[source]
        source: prost::DecodeError,
    },
    /// A stored record decoded but is not what it must be (e.g. a reference
    /// it must carry is missing).
    #[error("corrupt record under key {key}: {reason}")]
    Corrupt {
        /// The key, hex encoded.
        key: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A file sled does not manage (the data directory, sled's log, a segment
    /// file) could not be created, read, written or made durable.
    #[error("{what}: {source}")]
    Io {
        /// What was being done, naming the file.
        what: String,
        /// The I/O error.
        #[source]
        source: Arc<std::io::Error>,
    },
    /// A segment is missing or a blob fails its checksum.
    #[error("segment storage: {0}")]
    Segment(String),
    /// The counter journal left by an earlier process could not be read or
    /// folded (the store must not serve then: billing would miss usage).
    #[error("{what} the counter journal: {source}")]
    CounterJournal {
        /// "cannot read" or "cannot fold".
        what: &'static str,
        /// Why.
        #[source]
        source: Box<StorageError>,
    },
    /// The committer has stopped (the broker is shutting down, or dropping a
    /// failed store to reopen it); the write was not queued.
    #[error("the store is closed")]
    Closed,
    /// A write failed before any of it reached sled (a segment could not be
    /// written or synced, an id could not be drawn, or sled refused the
    /// batch): none of it is stored.
    #[error("the write was not applied: {0}")]
    NotApplied(#[source] Box<StorageError>),
    /// A write failed after its batch was applied to sled (sled's flush or
    /// the sync of its log failed, or the committer stopped before it
    /// answered): it may be durable or not.
    #[error("the write may or may not be stored: {0}")]
    OutcomeUnknown(#[source] Box<StorageError>),
    /// An earlier group commit failed, so the store takes no writes until it
    /// is reopened ([`StoreHealth`](super::StoreHealth)); nothing of this
    /// write reached sled.
    #[error("the store failed earlier and takes no writes until it is reopened: {0}")]
    Failed(#[source] Box<StorageError>),
}

impl StorageError {
    /// An I/O failure while doing `what`.
    pub(super) fn io(what: impl Into<String>, source: std::io::Error) -> Self {
        StorageError::Io {
            what: what.into(),
            source: Arc::new(source),
        }
    }

    /// `self` as the cause of a write that was not applied.
    pub(super) fn not_applied(self) -> Self {
        StorageError::NotApplied(Box::new(self))
    }

    /// `self` as the cause of a write whose outcome is unknown.
    pub(super) fn outcome_unknown(self) -> Self {
        StorageError::OutcomeUnknown(Box::new(self))
    }
}

impl From<sled::Error> for StorageError {
    fn from(e: sled::Error) -> Self {
        StorageError::Sled(Arc::new(e))
    }
}

/// Storage result.
pub type StorageResult<T> = Result<T, StorageError>;
