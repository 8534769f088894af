//! Consent's errors, and their one mapping onto the runtime's API errors.

use attune_kit::error::{ApiError, FieldViolation};
use sea_orm::DbErr;

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
    #[error("request_id {0} was already used for a request with different content")]
    RequestIdReused(String),
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
            ConsentError::PurposeExists(_) | ConsentError::RequestIdReused(_) => {
                ApiError::AlreadyExists(error.to_string())
            }
            ConsentError::NotConsentBased(_) => ApiError::FailedPrecondition(error.to_string()),
            ConsentError::Invalid(problems) => ApiError::InvalidArgument(
                problems
                    .into_iter()
                    .map(|(field, problem)| FieldViolation::new(field, problem))
                    .collect(),
            ),
            ConsentError::Corrupt(_) | ConsentError::Database(_) => ApiError::internal(error),
        }
    }
}
