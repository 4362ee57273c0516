//! The one place a domain [`Error`] becomes a gRPC [`Status`]. The matches
//! are exhaustive with no catch-all arm: a new error kind (storage kinds
//! included) must be mapped here on purpose.
//!
//! A write that failed in the store is `UNAVAILABLE` and says whether it may
//! be stored (SPEC §2): "not applied: retry" when nothing of it reached the
//! store, "outcome unknown: retry with the same dedup_id" when it may have.
//! Other storage failures (a record that does not decode, a read error) are
//! `INTERNAL` and claim neither.

use tonic::metadata::MetadataValue;
use tonic::{Code, Status};

use crate::error::Error;
use crate::storage::StorageError;

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
            Error::DataLoss(_) => Status::data_loss(message),
            Error::Storage(e) => storage_status(e),
        }
    }
}

/// What the caller may do after a write failed (SPEC §2), in its words.
const NOT_APPLIED: &str = "the broker could not write to its disk; not applied: retry";
/// The same, when the write may be stored.
const OUTCOME_UNKNOWN: &str =
    "the broker could not write to its disk; outcome unknown: retry with the same dedup_id";

/// A storage failure as the caller sees it: a write that failed is
/// `UNAVAILABLE` (retrying helps once the broker has recovered), saying
/// whether it may be stored; anything else is `INTERNAL`. The cause is
/// logged, never shown (it names files).
fn storage_status(error: StorageError) -> Status {
    if let StorageError::Failed(_) = error {
        // Its cause was logged once, when the store failed.
        tracing::debug!(error = %error, "refused: the store has failed");
    } else {
        tracing::error!(error = %error, "storage failure");
    }
    match error {
        StorageError::NotApplied(_) | StorageError::Failed(_) | StorageError::Closed => {
            Status::unavailable(NOT_APPLIED)
        }
        StorageError::OutcomeUnknown(_) => Status::unavailable(OUTCOME_UNKNOWN),
        StorageError::Open { .. }
        | StorageError::Sled(_)
        | StorageError::SledPanicked
        | StorageError::Locked { .. }
        | StorageError::Decode { .. }
        | StorageError::Corrupt { .. }
        | StorageError::Io { .. }
        | StorageError::Segment(_)
        | StorageError::Damaged { .. }
        | StorageError::CounterJournal { .. } => {
            Status::new(Code::Internal, "internal storage failure")
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

    #[test]
    fn failed_writes_are_unavailable_and_say_whether_they_may_be_stored() {
        let cause = || Box::new(StorageError::Closed);
        let unknown = Status::from(Error::Storage(StorageError::OutcomeUnknown(cause())));
        assert_eq!(unknown.code(), Code::Unavailable);
        assert!(unknown
            .message()
            .ends_with("outcome unknown: retry with the same dedup_id"));
        for not_applied in [
            StorageError::NotApplied(cause()),
            StorageError::Failed(cause()),
        ] {
            let status = Status::from(Error::Storage(not_applied));
            assert_eq!(status.code(), Code::Unavailable);
            assert!(status.message().ends_with("not applied: retry"));
        }
    }
}
