//! Consent's errors, and their one mapping onto the runtime's API errors (and
//! through them onto `tonic::Status`, so handlers just use `?`).

use attune_kit::db::micros::MicrosOutOfRange;
use attune_kit::error::{ApiError, FieldViolation};
use attune_kit::idempotency::IdempotencyError;
use attune_kit::secrets::SecretsError;
use sea_orm::DbErr;
use tonic::Status;

use crate::watch::WatchError;

/// Everything that can go wrong in a consent operation.
#[derive(Debug, thiserror::Error)]
pub enum ConsentError {
    #[error("purpose {0} does not exist")]
    PurposeNotFound(String),
    #[error("purpose {0} already exists")]
    PurposeExists(String),
    #[error("purpose {code} has no notice version {version}")]
    NoticeVersionNotFound { code: String, version: i32 },
    #[error("purpose {0} is not based on consent, so there is nothing to grant or withdraw")]
    NotConsentBased(String),
    /// A request id reused with other content, or an unreadable stored outcome.
    #[error(transparent)]
    Idempotency(#[from] IdempotencyError),
    /// No pseudonymisation key could be had (start-up only).
    #[error("pseudonymisation key: {0}")]
    Secrets(#[from] SecretsError),
    #[error("{}", .0.iter().map(|(field, problem)| format!("{field}: {problem}")).collect::<Vec<_>>().join("; "))]
    Invalid(Vec<(String, String)>),
    #[error("stored data is inconsistent: {0}")]
    Corrupt(String),
    #[error("database error")]
    Database(#[from] DbErr),
}

impl From<ConsentError> for ApiError {
    fn from(error: ConsentError) -> Self {
        match error {
            ConsentError::PurposeNotFound(_) | ConsentError::NoticeVersionNotFound { .. } => {
                ApiError::NotFound(error.to_string())
            }
            ConsentError::PurposeExists(_) => ApiError::AlreadyExists(error.to_string()),
            ConsentError::Idempotency(error) => error.into(),
            ConsentError::NotConsentBased(_) => ApiError::FailedPrecondition(error.to_string()),
            ConsentError::Invalid(problems) => ApiError::InvalidArgument(
                problems
                    .into_iter()
                    .map(|(field, problem)| FieldViolation::new(field, problem))
                    .collect(),
            ),
            ConsentError::Corrupt(_) | ConsentError::Secrets(_) => ApiError::internal(error),
            // The kit tells an outage (UNAVAILABLE, retry) from a bug (INTERNAL).
            ConsentError::Database(error) => ApiError::from(error),
        }
    }
}

impl From<ConsentError> for Status {
    fn from(error: ConsentError) -> Self {
        Status::from(ApiError::from(error))
    }
}

impl From<WatchError> for Status {
    fn from(error: WatchError) -> Self {
        match error {
            WatchError::BeyondNewest { .. } => ApiError::OutOfRange(error.to_string()).into(),
            WatchError::Consent(error) => error.into(),
        }
    }
}

impl From<MicrosOutOfRange> for ConsentError {
    fn from(error: MicrosOutOfRange) -> Self {
        ConsentError::Corrupt(error.to_string())
    }
}
