//! The one place a domain [`Error`] becomes a gRPC [`Status`]. The match is
//! exhaustive with no catch-all arm: a new error kind must be mapped here on
//! purpose.

use tonic::metadata::MetadataValue;
use tonic::{Code, Status};

use crate::error::Error;

use crate::wire::RETRY_AFTER_MS;

impl From<Error> for Status {
    fn from(error: Error) -> Self {
        let message = error.to_string();
        match error {
            Error::InvalidArgument(_) => Status::invalid_argument(message),
            Error::NotFound { .. } => Status::not_found(message),
            Error::AlreadyExists { .. } => Status::already_exists(message),
            Error::ResourceExhausted { retry_after, .. } => {
                let mut status = Status::resource_exhausted(message);
                if let Some(wait) = retry_after {
                    let ms = wait.as_millis().max(1).to_string();
                    if let Ok(value) = MetadataValue::try_from(ms.as_str()) {
                        status.metadata_mut().insert(RETRY_AFTER_MS, value);
                    }
                }
                status
            }
            Error::Unauthenticated(_) => Status::unauthenticated(message),
            Error::PermissionDenied(_) => Status::permission_denied(message),
            Error::FailedPrecondition(_) => Status::failed_precondition(message),
            Error::Unavailable(_) => Status::unavailable(message),
            Error::Storage(e) => {
                tracing::error!(error = %e, "storage failure");
                Status::new(
                    Code::Internal,
                    "internal storage failure; the request was not applied",
                )
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn rate_refusals_carry_retry_after() {
        let status = Status::from(Error::ResourceExhausted {
            message: "slow down".into(),
            retry_after: Some(Duration::from_millis(250)),
        });
        assert_eq!(status.code(), Code::ResourceExhausted);
        assert_eq!(status.metadata().get(RETRY_AFTER_MS).unwrap(), "250");
    }
}
