//! The one domain error type. Every layer below `api` returns [`Error`]; the
//! `api` layer maps it to a gRPC status in exactly one place
//! (`api::status`), so a new kind of failure must be mapped on purpose.

use std::time::Duration;

/// Why a request was refused or failed. The message of each variant is shown
/// to the caller, so it names the limit and its value in plain words and never
/// mentions another tenant.
#[derive(Debug, Clone, thiserror::Error)]
pub enum Error {
    /// The shape of a single request is wrong (names, sizes, ranges, enums).
    #[error("{0}")]
    InvalidArgument(String),
    /// A thing the caller named does not exist (for this tenant).
    #[error("{kind} '{name}' not found")]
    NotFound {
        /// What kind of thing: "topic", "subscription", "tenant", "API key".
        kind: &'static str,
        /// The name the caller used.
        name: String,
    },
    /// A name is already taken.
    #[error("{kind} '{name}' already exists")]
    AlreadyExists {
        /// What kind of thing.
        kind: &'static str,
        /// The name the caller used.
        name: String,
    },
    /// An accumulated resource is used up (counts, storage, rates, streams).
    #[error("{message}")]
    ResourceExhausted {
        /// Names the limit and its value.
        message: String,
        /// When waiting helps: how long to wait before trying again.
        retry_after: Option<Duration>,
    },
    /// Missing or wrong credentials.
    #[error("{0}")]
    Unauthenticated(String),
    /// A valid credential without the scope or topic the request needs.
    #[error("{0}")]
    PermissionDenied(String),
    /// The tenant (or the thing) is not in a state that allows the request,
    /// e.g. a suspended tenant.
    #[error("{0}")]
    FailedPrecondition(String),
    /// The broker is shutting down or in maintenance.
    #[error("{0}")]
    Unavailable(String),
    /// Data the caller handed over was damaged on its way (a move snapshot
    /// failing its checksum): nothing of it was used.
    #[error("{0}")]
    DataLoss(String),
    /// The store failed. Its kind says whether a failed write may be stored
    /// ([`StorageError::NotApplied`](crate::storage::StorageError::NotApplied),
    /// [`StorageError::OutcomeUnknown`](crate::storage::StorageError::OutcomeUnknown));
    /// `api::status` tells the caller. Never caused by the caller's input.
    #[error("storage failure: {0}")]
    Storage(#[from] crate::storage::StorageError),
}

impl Error {
    /// Shorthand for [`Error::InvalidArgument`].
    pub fn invalid(message: impl Into<String>) -> Self {
        Error::InvalidArgument(message.into())
    }

    /// Shorthand for [`Error::NotFound`].
    pub fn not_found(kind: &'static str, name: impl Into<String>) -> Self {
        Error::NotFound {
            kind,
            name: name.into(),
        }
    }

    /// Shorthand for [`Error::AlreadyExists`].
    pub fn already_exists(kind: &'static str, name: impl Into<String>) -> Self {
        Error::AlreadyExists {
            kind,
            name: name.into(),
        }
    }

    /// Shorthand for [`Error::ResourceExhausted`] without a retry hint.
    pub fn exhausted(message: impl Into<String>) -> Self {
        Error::ResourceExhausted {
            message: message.into(),
            retry_after: None,
        }
    }
}

/// Result with the domain [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
