//! [`ServerError`]: why the server could not start or stopped with an error.

use crate::config::ConfigError;
use crate::storage::StorageError;

/// Why the server could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// Bad configuration.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A credential file (the operator's or the billing reader's) could not
    /// be read or written.
    #[error("credential file {}: {source}", path.display())]
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
    /// A TLS file (certificate, key or client CA) could not be read.
    #[error("TLS: {}: {source}", path.display())]
    Tls {
        /// The file.
        path: std::path::PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The metrics recorder could not be built.
    #[error("metrics: {0}")]
    Metrics(#[from] metrics_exporter_prometheus::BuildError),
    /// The data directory cannot be one (e.g. a file stands in its place).
    #[error("cannot use the data directory {}: {reason}", path.display())]
    DataDir {
        /// The configured data directory.
        path: std::path::PathBuf,
        /// Why not.
        reason: String,
    },
    /// The metrics endpoint could not listen on its address.
    #[error("cannot serve metrics on {address}: {source}")]
    MetricsListen {
        /// The configured `metrics_listen`.
        address: std::net::SocketAddr,
        /// The cause (e.g. the address is in use).
        #[source]
        source: metrics_exporter_prometheus::BuildError,
    },
    /// Reflection could not be built.
    #[error("reflection: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
    /// The listening socket could not be handed to a serving round.
    #[error("listener: {0}")]
    Listener(#[source] std::io::Error),
    /// The master key file could not be read or written.
    #[error("master key file {}: {source}", path.display())]
    MasterKey {
        /// The file.
        path: std::path::PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The master key does not open the store's keys (or they are damaged).
    #[error(transparent)]
    Keyring(#[from] crate::crypto::KeyringError),
    /// The gRPC transport failed.
    #[error("gRPC transport: {0}")]
    Transport(#[from] tonic::transport::Error),
}
