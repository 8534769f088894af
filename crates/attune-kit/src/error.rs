//! The errors a service returns to its callers, and the one mapping to
//! [`tonic::Status`].
//!
//! Client mistakes say what to fix (per field for INVALID_ARGUMENT, as
//! `google.rpc.BadRequest` details) and are not logged as errors. Internal failures
//! are logged with their whole chain and reach the client only as "internal error":
//! internals stay in the log.

use std::error::Error as StdError;
use std::fmt;
use std::time::Duration;

use tonic::metadata::{MetadataMap, MetadataValue};
use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

/// One bad field of a request: its path (`decisions[0].decision`) and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldViolation {
    /// Path of the field in the request, dot-separated, with `[i]` for list items.
    pub field: String,
    /// What is wrong with it, phrased to complete "`<field>`: ...".
    pub description: String,
}

impl FieldViolation {
    /// A violation of `field`.
    pub fn new(field: impl Into<String>, description: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            description: description.into(),
        }
    }
}

impl fmt::Display for FieldViolation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.description)
    }
}

/// An error a gRPC handler returns; `?` turns it into the right [`Status`].
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The request is malformed; each violation names a field.
    #[error("{}", bounded_message(.0))]
    InvalidArgument(Vec<FieldViolation>),
    /// The named resource does not exist.
    #[error("{0}")]
    NotFound(String),
    /// The resource the caller tried to create exists already.
    #[error("{0}")]
    AlreadyExists(String),
    /// The system is not in a state the operation needs (e.g. notice version retired).
    #[error("{0}")]
    FailedPrecondition(String),
    /// A value is valid in general but past the end of what exists (e.g. a cursor).
    #[error("{0}")]
    OutOfRange(String),
    /// The caller is known but may not do this.
    #[error("{0}")]
    PermissionDenied(String),
    /// The caller could not be identified.
    #[error("{0}")]
    Unauthenticated(String),
    /// A quota or rate limit is exhausted; `retry_after` tells when to try again.
    #[error("{message}")]
    ResourceExhausted {
        /// What ran out.
        message: String,
        /// When a retry may succeed, sent as `retry-after` metadata and `RetryInfo`.
        retry_after: Option<Duration>,
    },
    /// A dependency (database, another service) is down or overloaded; retry later.
    #[error("{0}")]
    Unavailable(String),
    /// A bug or an unexpected failure; only "internal error" reaches the client.
    #[error("internal error")]
    Internal(#[source] Box<dyn StdError + Send + Sync>),
}

impl ApiError {
    /// INVALID_ARGUMENT for one field.
    pub fn invalid(field: impl Into<String>, description: impl Into<String>) -> Self {
        Self::InvalidArgument(vec![FieldViolation::new(field, description)])
    }

    /// INTERNAL wrapping `err`, whose chain is logged but never sent.
    pub fn internal(err: impl Into<Box<dyn StdError + Send + Sync>>) -> Self {
        Self::Internal(err.into())
    }

    /// The gRPC code this error maps to.
    pub fn code(&self) -> Code {
        match self {
            Self::InvalidArgument(_) => Code::InvalidArgument,
            Self::NotFound(_) => Code::NotFound,
            Self::AlreadyExists(_) => Code::AlreadyExists,
            Self::FailedPrecondition(_) => Code::FailedPrecondition,
            Self::OutOfRange(_) => Code::OutOfRange,
            Self::PermissionDenied(_) => Code::PermissionDenied,
            Self::Unauthenticated(_) => Code::Unauthenticated,
            Self::ResourceExhausted { .. } => Code::ResourceExhausted,
            Self::Unavailable(_) => Code::Unavailable,
            Self::Internal(_) => Code::Internal,
        }
    }
}

impl From<FieldViolation> for ApiError {
    fn from(violation: FieldViolation) -> Self {
        Self::InvalidArgument(vec![violation])
    }
}

impl From<sea_orm::DbErr> for ApiError {
    /// A database error a retry can fix (see [`is_transient`]) is UNAVAILABLE;
    /// any other is internal. Services map the errors that mean something in
    /// their domain (unique violations, ...) before this.
    fn from(err: sea_orm::DbErr) -> Self {
        if is_transient(&err) {
            tracing::warn!(error = %err, "database unavailable");
            Self::Unavailable(crate::db::health::UNAVAILABLE_MESSAGE.to_owned())
        } else {
            Self::internal(err)
        }
    }
}

/// True when `err` is an outage a retry can fix rather than a bug: no pooled
/// connection in time, no connection could be opened (refused, reset, the
/// handshake failed), a connection was lost, PostgreSQL shutting down, out of
/// connections or asking to retry a transaction, SQLite busy or locked.
pub fn is_transient(err: &sea_orm::DbErr) -> bool {
    use sea_orm::{DbErr, RuntimeErr};
    match err {
        // The pool could not hand out a working connection: for the caller the
        // database is unavailable, whatever the driver's reason (the database
        // health watch reports it too).
        DbErr::ConnectionAcquire(_) | DbErr::Conn(_) => true,
        DbErr::Exec(RuntimeErr::SqlxError(sqlx)) | DbErr::Query(RuntimeErr::SqlxError(sqlx)) => {
            is_transient_sqlx(sqlx)
        }
        _ => false,
    }
}

fn is_transient_sqlx(err: &sea_orm::sqlx::Error) -> bool {
    use sea_orm::sqlx::Error;
    match err {
        Error::Io(_) | Error::PoolTimedOut | Error::PoolClosed | Error::WorkerCrashed => true,
        Error::Database(db) => db.code().is_some_and(|code| is_transient_code(&code)),
        _ => false,
    }
}

/// SQLite reports numeric (extended) result codes, PostgreSQL five-character
/// SQLSTATEs.
fn is_transient_code(code: &str) -> bool {
    if let Ok(sqlite) = code.parse::<u32>() {
        // The primary code is the low byte: SQLITE_BUSY (5), SQLITE_LOCKED (6).
        return matches!(sqlite & 0xff, 5 | 6);
    }
    // 08: connection exception; 57P01..57P03: admin or crash shutdown, cannot
    // connect now; 53300: too many connections; 40001 / 40P01: serialization
    // failure and deadlock, which the next attempt resolves.
    code.starts_with("08")
        || matches!(
            code,
            "57P01" | "57P02" | "57P03" | "53300" | "40001" | "40P01"
        )
}

/// Most field violations one INVALID_ARGUMENT carries; the rest are counted in
/// its message. Together with the length caps below this keeps the status
/// trailers (`grpc-message` plus the base64 `grpc-status-details-bin`) under
/// 5 KiB, well inside the 8 KiB of metadata a client with default limits
/// (grpcio, many proxies) accepts: beyond that it reads RESOURCE_EXHAUSTED or a
/// reset stream instead of the violations.
pub const MAX_VIOLATIONS: usize = 8;
/// Longest field path sent, in bytes of UTF-8; longer ones are cut with "…".
const MAX_FIELD_BYTES: usize = 100;
/// Longest description sent, in bytes of UTF-8; longer ones are cut with "…".
const MAX_DESCRIPTION_BYTES: usize = 200;
/// Longest status message, in bytes of UTF-8 (up to three times as many once
/// `grpc-message` percent-encodes what is not printable ASCII).
const MAX_MESSAGE_BYTES: usize = 600;

/// The violations a status carries: duplicates dropped, each cut to length, at
/// most [`MAX_VIOLATIONS`]; and how many distinct ones were left out.
fn bounded(violations: Vec<FieldViolation>) -> (Vec<FieldViolation>, usize) {
    let mut kept: Vec<FieldViolation> = Vec::with_capacity(violations.len().min(MAX_VIOLATIONS));
    let mut omitted = 0;
    for violation in violations {
        let violation = FieldViolation {
            field: truncated(violation.field, MAX_FIELD_BYTES),
            description: truncated(violation.description, MAX_DESCRIPTION_BYTES),
        };
        if kept.contains(&violation) {
            continue;
        }
        if kept.len() < MAX_VIOLATIONS {
            kept.push(violation);
        } else {
            omitted += 1;
        }
    }
    (kept, omitted)
}

/// `text` cut to at most `max` bytes at a character boundary, ending in "…" when cut.
fn truncated(mut text: String, max: usize) -> String {
    const ELLIPSIS: &str = "…";
    if text.len() <= max {
        return text;
    }
    let mut end = max.saturating_sub(ELLIPSIS.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text.truncate(end);
    text.push_str(ELLIPSIS);
    text
}

fn join_violations(violations: &[FieldViolation]) -> String {
    if violations.is_empty() {
        return "invalid argument".to_owned();
    }
    violations
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

/// The message of an INVALID_ARGUMENT, bounded as its status will be.
fn bounded_message(violations: &[FieldViolation]) -> String {
    let (kept, omitted) = bounded(violations.to_vec());
    violations_message(&kept, omitted)
}

/// The status message for bounded violations: each one, then how many more,
/// within [`MAX_MESSAGE_BYTES`] (the list is cut, never the count).
fn violations_message(violations: &[FieldViolation], omitted: usize) -> String {
    let more = match omitted {
        0 => String::new(),
        1 => "; and 1 more violation".to_owned(),
        n => format!("; and {n} more violations"),
    };
    let mut message = truncated(join_violations(violations), MAX_MESSAGE_BYTES - more.len());
    message.push_str(&more);
    message
}

impl From<ApiError> for Status {
    fn from(err: ApiError) -> Self {
        let code = err.code();
        match err {
            ApiError::InvalidArgument(violations) => {
                let (violations, omitted) = bounded(violations);
                let message = violations_message(&violations, omitted);
                tracing::debug!(%message, "rejected invalid argument");
                let details = ErrorDetails::with_bad_request(
                    violations
                        .into_iter()
                        .map(|v| tonic_types::FieldViolation::new(v.field, v.description))
                        .collect::<Vec<_>>(),
                );
                Status::with_error_details(code, message, details)
            }
            ApiError::ResourceExhausted {
                message,
                retry_after,
            } => {
                tracing::debug!(%message, ?retry_after, "resource exhausted");
                let Some(delay) = retry_after else {
                    return Status::new(code, message);
                };
                let mut metadata = MetadataMap::new();
                // Whole seconds, rounded up, as HTTP's Retry-After: never invite an early retry.
                let seconds = delay.as_secs() + u64::from(delay.subsec_nanos() > 0);
                metadata.insert("retry-after", MetadataValue::from(seconds));
                Status::with_error_details_and_metadata(
                    code,
                    message,
                    ErrorDetails::with_retry_info(Some(delay)),
                    metadata,
                )
            }
            ApiError::Internal(source) => {
                tracing::error!(error = %ErrorChain(source.as_ref()), "internal error");
                Status::internal("internal error")
            }
            ApiError::Unavailable(message) => {
                tracing::warn!(%message, "unavailable");
                Status::new(code, message)
            }
            ApiError::NotFound(message)
            | ApiError::AlreadyExists(message)
            | ApiError::FailedPrecondition(message)
            | ApiError::OutOfRange(message)
            | ApiError::PermissionDenied(message)
            | ApiError::Unauthenticated(message) => {
                tracing::debug!(?code, %message, "request refused");
                Status::new(code, message)
            }
        }
    }
}

/// Displays an error and its sources on one line, "a: b: c", leaving out a
/// source whose text the line already holds (drivers often wrap an error in one
/// that repeats it: "Connection Error: x" caused by "x").
pub struct ErrorChain<'a>(pub &'a (dyn StdError + 'static));

impl fmt::Display for ErrorChain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut line = self.0.to_string();
        let mut source = self.0.source();
        while let Some(err) = source {
            let text = err.to_string();
            if !line.contains(&text) {
                line.push_str(": ");
                line.push_str(&text);
            }
            source = err.source();
        }
        f.write_str(&line)
    }
}

/// Collects every field violation of a request, so the caller learns all its
/// mistakes in one round trip.
///
/// ```
/// use attune_kit::error::Violations;
///
/// let mut v = Violations::default();
/// let limit: Option<u32> = v.check("limit", "ten".parse::<u32>());
/// v.add("customer_id", "must not be empty");
/// assert!(limit.is_none());
/// assert!(v.finish().is_err());
/// ```
#[derive(Debug, Default)]
pub struct Violations {
    violations: Vec<FieldViolation>,
}

impl Violations {
    /// Records that `field` is bad.
    pub fn add(&mut self, field: impl Into<String>, description: impl Into<String>) {
        self.violations
            .push(FieldViolation::new(field, description));
    }

    /// Records a violation produced elsewhere (e.g. by [`crate::pagination`]).
    pub fn push(&mut self, violation: FieldViolation) {
        self.violations.push(violation);
    }

    /// Returns the parsed value, or records the error's `Display` against `field`.
    pub fn check<T, E: fmt::Display>(
        &mut self,
        field: impl Into<String>,
        result: Result<T, E>,
    ) -> Option<T> {
        match result {
            Ok(value) => Some(value),
            Err(err) => {
                self.add(field, err.to_string());
                None
            }
        }
    }

    /// Returns the value, or records the violation as is (it names its own field).
    pub fn check_field<T>(&mut self, result: Result<T, FieldViolation>) -> Option<T> {
        match result {
            Ok(value) => Some(value),
            Err(violation) => {
                self.push(violation);
                None
            }
        }
    }

    /// True when nothing was recorded.
    pub fn is_empty(&self) -> bool {
        self.violations.is_empty()
    }

    /// `Ok` when nothing was recorded, else INVALID_ARGUMENT with every violation.
    pub fn finish(self) -> Result<(), ApiError> {
        if self.violations.is_empty() {
            Ok(())
        } else {
            Err(ApiError::InvalidArgument(self.violations))
        }
    }
}

/// Takes a parsed value after [`Violations::finish`] succeeded. Use it for values
/// that are `None` only when a violation was recorded, as [`Violations::check`]
/// returns them: once no violation was recorded, every such value is present.
pub fn checked<T>(value: Option<T>) -> T {
    value.expect("a value is missing only when its violation was recorded")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_argument_carries_decodable_bad_request_details() {
        let mut v = Violations::default();
        v.add("customer_id", "must not be empty");
        v.add("decisions[0].decision", "must be set");
        let status = Status::from(v.finish().expect_err("two violations were recorded"));

        assert_eq!(status.code(), Code::InvalidArgument);
        assert_eq!(
            status.message(),
            "customer_id: must not be empty; decisions[0].decision: must be set"
        );
        let bad_request = status
            .get_details_bad_request()
            .expect("BadRequest details are attached");
        let fields: Vec<_> = bad_request
            .field_violations
            .iter()
            .map(|f| (f.field.as_str(), f.description.as_str()))
            .collect();
        assert_eq!(
            fields,
            [
                ("customer_id", "must not be empty"),
                ("decisions[0].decision", "must be set")
            ]
        );
    }

    #[test]
    fn internal_does_not_leak_its_message() {
        let err = ApiError::internal(std::io::Error::other("password=hunter2 at 10.0.0.7"));
        let status = Status::from(err);
        assert_eq!(status.code(), Code::Internal);
        assert_eq!(status.message(), "internal error");
        assert!(!format!("{status:?}").contains("hunter2"));
    }

    #[test]
    fn resource_exhausted_tells_when_to_retry() {
        let status = Status::from(ApiError::ResourceExhausted {
            message: "too many redemptions".into(),
            retry_after: Some(Duration::from_millis(1500)),
        });
        assert_eq!(status.code(), Code::ResourceExhausted);
        assert_eq!(
            status
                .metadata()
                .get("retry-after")
                .and_then(|v| v.to_str().ok()),
            Some("2")
        );
        let retry = status
            .get_details_retry_info()
            .expect("RetryInfo is attached");
        assert_eq!(retry.retry_delay, Some(Duration::from_millis(1500)));
    }

    #[test]
    fn each_variant_maps_to_its_code() {
        let cases = [
            (ApiError::NotFound("x".into()), Code::NotFound),
            (ApiError::AlreadyExists("x".into()), Code::AlreadyExists),
            (
                ApiError::FailedPrecondition("x".into()),
                Code::FailedPrecondition,
            ),
            (ApiError::OutOfRange("x".into()), Code::OutOfRange),
            (
                ApiError::PermissionDenied("x".into()),
                Code::PermissionDenied,
            ),
            (ApiError::Unauthenticated("x".into()), Code::Unauthenticated),
            (ApiError::Unavailable("x".into()), Code::Unavailable),
            (
                ApiError::ResourceExhausted {
                    message: "x".into(),
                    retry_after: None,
                },
                Code::ResourceExhausted,
            ),
        ];
        for (err, code) in cases {
            let status = Status::from(err);
            assert_eq!(status.code(), code);
            assert_eq!(status.message(), "x");
        }
    }

    #[test]
    fn check_records_display_and_returns_value() {
        let mut v = Violations::default();
        assert_eq!(v.check("a", "5".parse::<u8>()), Some(5));
        assert!(v.is_empty());
        assert_eq!(v.check("b", "300".parse::<u8>()), None);
        assert_eq!(
            v.check_field::<u8>(Err(FieldViolation::new("c", "bad"))),
            None
        );
        match v.finish() {
            Err(ApiError::InvalidArgument(list)) => {
                assert_eq!(
                    list[0],
                    FieldViolation::new("b", "number too large to fit in target type")
                );
                assert_eq!(list[1], FieldViolation::new("c", "bad"));
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    /// Bytes of the headers (names and values) a status travels in as trailers.
    fn trailer_bytes(status: Status) -> usize {
        let mut headers = http::HeaderMap::new();
        status
            .add_header(&mut headers)
            .expect("the status encodes as headers");
        headers
            .iter()
            .map(|(name, value)| name.as_str().len() + value.len())
            .sum()
    }

    #[test]
    fn many_long_violations_stay_well_under_eight_kib_of_trailers() {
        let mut v = Violations::default();
        for i in 0..500 {
            v.add(
                format!("decisions[{i}].purpose_code.{}", "x".repeat(300)),
                format!(
                    "must be lowercase letters, digits or underscores; {}",
                    "é".repeat(400)
                ),
            );
        }
        let status = Status::from(v.finish().expect_err("violations were recorded"));
        assert_eq!(status.code(), Code::InvalidArgument);
        assert!(
            status.message().ends_with("; and 492 more violations"),
            "{}",
            status.message()
        );
        let details = status
            .get_details_bad_request()
            .expect("BadRequest details are attached");
        assert_eq!(details.field_violations.len(), MAX_VIOLATIONS);
        let bytes = trailer_bytes(status);
        assert!(bytes < 6 * 1024, "{bytes} bytes of trailers");
    }

    #[test]
    fn repeated_violations_are_sent_once() {
        let mut v = Violations::default();
        for _ in 0..20 {
            v.add("customer_id", "must not be empty");
        }
        v.add("page_size", "must not be negative");
        let status = Status::from(v.finish().expect_err("violations were recorded"));
        assert_eq!(
            status.message(),
            "customer_id: must not be empty; page_size: must not be negative"
        );
        assert_eq!(
            status
                .get_details_bad_request()
                .map(|d| d.field_violations.len()),
            Some(2)
        );
    }

    #[test]
    fn truncation_keeps_short_text_and_marks_cut_text() {
        assert_eq!(truncated("abc".into(), 3), "abc");
        assert_eq!(truncated("abcdef".into(), 5), "ab…");
        // "…" is 3 bytes; "é" 2: a cut never splits a character.
        assert_eq!(truncated("ééééé".into(), 8), "éé…");
    }

    mod database {
        use super::*;
        use crate::config::DatabaseConfig;
        use crate::db::{Backend, connect, fresh_test_database_on};
        use sea_orm::{ConnectionTrait, DbErr, TransactionTrait};

        #[test]
        fn a_pool_timeout_is_unavailable_and_a_missing_row_internal() {
            let timeout = DbErr::ConnectionAcquire(sea_orm::error::ConnAcquireErr::Timeout);
            assert_eq!(ApiError::from(timeout).code(), Code::Unavailable);
            let bug = DbErr::RecordNotFound("purpose".into());
            assert_eq!(ApiError::from(bug).code(), Code::Internal);
        }

        #[tokio::test]
        async fn sqlite_busy_is_unavailable_and_bad_sql_internal() {
            let dir = tempfile::tempdir().expect("temp dir");
            let config = DatabaseConfig {
                url: format!("sqlite://{}?mode=rwc", dir.path().join("busy.db").display()),
                busy_timeout: Duration::from_millis(1),
                ..DatabaseConfig::default()
            };
            let holder = connect(&config).await.expect("sqlite opens");
            holder
                .execute_unprepared("CREATE TABLE t (n INTEGER)")
                .await
                .expect("table is created");
            let other = connect(&config).await.expect("sqlite opens twice");

            let txn = holder.begin().await.expect("transaction begins");
            txn.execute_unprepared("INSERT INTO t VALUES (1)")
                .await
                .expect("the first writer takes the lock");
            let busy = other
                .execute_unprepared("INSERT INTO t VALUES (2)")
                .await
                .expect_err("a second writer finds the database locked");
            assert_eq!(ApiError::from(busy).code(), Code::Unavailable);
            txn.rollback().await.expect("rollback");

            let bad = other
                .execute_unprepared("SELEC 1")
                .await
                .expect_err("a syntax error fails");
            assert_eq!(ApiError::from(bad).code(), Code::Internal);
        }

        /// Runs only when `ATTUNE_TEST_DATABASE_URL` names a PostgreSQL server.
        #[tokio::test]
        #[cfg_attr(
            not(attune_test_postgres),
            ignore = "set ATTUNE_TEST_DATABASE_URL to run on PostgreSQL"
        )]
        async fn postgres_terminating_the_connection_is_unavailable() {
            let Some(test_db) = fresh_test_database_on(Backend::Postgres, "kit_errors")
                .await
                .expect("a configured server accepts CREATE DATABASE")
            else {
                return;
            };
            let db = connect(&test_db.config).await.expect("postgres connects");
            // What every connection gets when an administrator or a shutdown stops
            // the server: SQLSTATE 57P01.
            let terminated = db
                .execute_unprepared("SELECT pg_terminate_backend(pg_backend_pid())")
                .await
                .expect_err("the backend is terminated mid-statement");
            assert_eq!(ApiError::from(terminated).code(), Code::Unavailable);

            let bad = db
                .execute_unprepared("SELECT * FROM no_such_table")
                .await
                .expect_err("an unknown table fails");
            assert_eq!(ApiError::from(bad).code(), Code::Internal);
            db.close().await.expect("pool closes");
        }
    }

    #[test]
    fn an_error_chain_names_each_cause_once() {
        #[derive(Debug, thiserror::Error)]
        #[error("cannot start")]
        struct Outer(#[source] Middle);
        #[derive(Debug, thiserror::Error)]
        #[error("Connection Error: {0}")]
        struct Middle(#[source] std::io::Error);

        let err = Outer(Middle(std::io::Error::other("refused")));
        assert_eq!(
            ErrorChain(&err).to_string(),
            "cannot start: Connection Error: refused"
        );
    }

    #[test]
    fn empty_violations_finish_ok() {
        assert!(Violations::default().finish().is_ok());
    }
}
