//! The server's TLS settings, read from the configured PEM files.

use tonic::transport::{Certificate, Identity, ServerTlsConfig};

use super::ServerError;
use crate::config::Config;

/// The TLS settings, when certificate and key are configured.
pub(super) fn tls_config(config: &Config) -> Result<Option<ServerTlsConfig>, ServerError> {
    let (Some(cert), Some(key)) = (&config.tls_cert_file, &config.tls_key_file) else {
        return Ok(None);
    };
    let read = |path: &std::path::Path| {
        std::fs::read(path).map_err(|source| ServerError::Tls {
            path: path.to_path_buf(),
            source,
        })
    };
    let mut tls = ServerTlsConfig::new().identity(Identity::from_pem(read(cert)?, read(key)?));
    if let Some(ca) = &config.tls_client_ca_file {
        tls = tls.client_ca_root(Certificate::from_pem(read(ca)?));
    }
    Ok(Some(tls))
}
