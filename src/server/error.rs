//! [`ServerError`]: why the server could not start or stopped with an error.

use crate::config::ConfigError;
use crate::storage::StorageError;

/// Why the server could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// Bad configuration.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The operator credential file could not be read or written.
    #[error("operator credential file {path}: {source}")]
    OperatorToken {
        /// The file.
        path: std::path::PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The store failed to open or load.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// Loading the stored state failed.
    #[error("cannot load stored state: {0}")]
    Load(#[from] crate::error::Error),
    /// The TLS files could not be read.
    #[error("TLS: {0}")]
    Tls(String),
    /// The metrics recorder could not be built.
    #[error("metrics: {0}")]
    Metrics(#[from] metrics_exporter_prometheus::BuildError),
    /// Reflection could not be built.
    #[error("reflection: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
    /// The gRPC transport failed.
    #[error("gRPC transport: {0}")]
    Transport(#[from] tonic::transport::Error),
}
