//! Idempotency by request id, the same in every service: the first write with an
//! id does its work and leaves its outcome; a retry with the same id and the same
//! content gets that outcome back instead of writing twice; the same id with
//! other content is refused ([`IdempotencyError::RequestIdReused`], which clients
//! see as ALREADY_EXISTS).
//!
//! Each service keeps one table of the requests it has done, `<service>_requests`,
//! created by [`RequestLog::create_table`] in its migrator. A request is keyed by
//! (operation, request id), so one id may name, say, an export and an erasure.
//! Its fingerprint is a keyed digest of the request's content (see
//! [`crate::secrets::PseudonymKey::fingerprint`]) and its outcome is the work's
//! result as JSON, read back into the same type on a replay.
//!
//! A request about one customer is logged with its [`DataSubject`] (the kit's
//! keyed pseudonym of the customer, never the id; see
//! [`RequestLog::idempotent_about`]), in a `subject` column that
//! [`RequestLog::add_subject_column`] adds to the table. An erasure calls
//! [`RequestLog::forget_subject`]: the outcomes of that subject's requests,
//! which may name the customer, are replaced by an erased marker. The rows stay,
//! so a retry of such a request neither runs its work again for an erased
//! customer nor reads the old answer: it is refused
//! ([`IdempotencyError::SubjectErased`], FAILED_PRECONDITION).

use chrono::{DateTime, Utc};
use sea_orm::sea_query::{Expr, ExprTrait, OnConflict, Query};
use sea_orm::{ConnectionTrait, DatabaseTransaction, DbErr};
use sea_orm_migration::prelude::{
    ColumnDef, Index, MigrationName, MigrationTrait, SchemaManager, Table,
};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::db::micros::to_micros;
use crate::error::ApiError;
use crate::secrets::PseudonymKey;

const OPERATION: &str = "operation";
const REQUEST_ID: &str = "request_id";
const FINGERPRINT: &str = "fingerprint";
const OUTCOME: &str = "outcome";
const CREATE_TIME: &str = "create_time";
const SUBJECT: &str = "subject";
/// What an erased subject's outcome becomes: not JSON, so no outcome type can
/// ever read it as an answer.
const ERASED_OUTCOME: &str = "!erased";

/// One service's table of done requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestLog {
    table: &'static str,
}

/// What a request is: the operation, the client's request id, and the
/// fingerprint of everything else it says.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    /// The operation's stable name (`record_consent`), at most 32 characters.
    pub operation: &'a str,
    /// The client's request id, at most 64 characters.
    pub request_id: &'a str,
    /// A digest of the request's content without its id, at most 64 characters.
    pub fingerprint: &'a str,
}

/// The data subject a request is about, as the kit's keyed pseudonym of the
/// customer id ([`PseudonymKey::subject`]): what the request log stores so an
/// erasure finds the customer's requests without the log ever holding the id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataSubject(String);

impl DataSubject {
    /// The subject `customer`, pseudonymised with the service's key.
    pub fn of(key: &PseudonymKey, customer: impl AsRef<str>) -> Self {
        Self(key.subject(customer))
    }

    /// The pseudonym.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// What [`RequestLog::idempotent`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome<T> {
    /// The request was done before: its stored outcome, and nothing was written.
    Replayed(T),
    /// The request is new: the work ran in the caller's transaction.
    Fresh(T),
}

impl<T> Outcome<T> {
    /// The outcome, however it was obtained.
    pub fn into_inner(self) -> T {
        match self {
            Self::Replayed(value) | Self::Fresh(value) => value,
        }
    }

    /// Whether the work ran now.
    pub fn is_fresh(&self) -> bool {
        matches!(self, Self::Fresh(_))
    }
}

/// Why an idempotent write could not run or answer.
#[derive(Debug, thiserror::Error)]
pub enum IdempotencyError {
    /// The id was used before for a request with other content.
    #[error("request_id {0} was already used for a request with different content")]
    RequestIdReused(String),
    /// The stored outcome is not the operation's outcome type (or vanished).
    #[error("the stored outcome of {operation} request is unreadable")]
    CorruptOutcome {
        /// The operation whose outcome is unreadable.
        operation: String,
        /// Why, when serde said.
        #[source]
        source: Option<serde_json::Error>,
    },
    /// The request was about a customer who has since been erased: its answer
    /// is gone and its work will not run again.
    #[error(
        "this {operation} request was about a customer whose data has since been erased: \
         it is not run again and its answer is no longer kept"
    )]
    SubjectErased {
        /// The operation that was requested.
        operation: String,
    },
    /// The database failed.
    #[error("database error")]
    Database(#[from] DbErr),
}

impl From<IdempotencyError> for ApiError {
    fn from(error: IdempotencyError) -> Self {
        match error {
            IdempotencyError::RequestIdReused(_) => ApiError::AlreadyExists(error.to_string()),
            IdempotencyError::SubjectErased { .. } => {
                ApiError::FailedPrecondition(error.to_string())
            }
            IdempotencyError::CorruptOutcome { .. } => ApiError::internal(error),
            // An outage is UNAVAILABLE (retry), a bug INTERNAL: the kit decides once.
            IdempotencyError::Database(error) => ApiError::from(error),
        }
    }
}

impl RequestLog {
    /// The log kept in `table` (`<service>_requests`).
    pub const fn new(table: &'static str) -> Self {
        Self { table }
    }

    /// The table's name.
    pub const fn table(self) -> &'static str {
        self.table
    }

    /// The migration that creates the table, named `migration_name` in the
    /// service's migration history (for example `m0004_create_requests`).
    pub fn create_table(self, migration_name: &'static str) -> CreateRequestLog {
        CreateRequestLog {
            log: self,
            name: migration_name,
        }
    }

    /// The migration that adds the nullable `subject` column (and its index) to
    /// a table made by [`Self::create_table`], named `migration_name` in the
    /// service's history; a service lists it before it calls
    /// [`Self::idempotent_about`] or [`Self::forget_subject`].
    pub fn add_subject_column(self, migration_name: &'static str) -> AddSubjectColumn {
        AddSubjectColumn {
            log: self,
            name: migration_name,
        }
    }

    /// Runs `work` in `txn` unless `request` was done before.
    ///
    /// The claim on the request id is the transaction's first write, so call it
    /// right after [`crate::db::begin_write`]: concurrent retries then serialize
    /// on it (on PostgreSQL the second insert waits for the first transaction and
    /// sees its row; on SQLite the write lock is held from BEGIN). A fresh
    /// outcome is stored as JSON in the same transaction as the work. When
    /// `work` fails, return its error and drop `txn`: the rollback releases the
    /// claim, so a retry runs the work again. Rules that depend on the clock
    /// belong inside `work`, so a replay is not held to them.
    ///
    /// A request about one customer, whose outcome may name them, is logged with
    /// [`Self::idempotent_about`] instead.
    pub async fn idempotent<T, E>(
        self,
        txn: &DatabaseTransaction,
        request: Request<'_>,
        now: DateTime<Utc>,
        work: impl AsyncFnOnce(&DatabaseTransaction) -> Result<T, E>,
    ) -> Result<Outcome<T>, E>
    where
        T: Serialize + DeserializeOwned,
        E: From<IdempotencyError>,
    {
        self.run(txn, request, None, now, work).await
    }

    /// [`Self::idempotent`] for a request about `subject`: the log remembers
    /// whom it was about, so [`Self::forget_subject`] can erase its outcome.
    /// The table needs [`Self::add_subject_column`].
    pub async fn idempotent_about<T, E>(
        self,
        txn: &DatabaseTransaction,
        request: Request<'_>,
        subject: &DataSubject,
        now: DateTime<Utc>,
        work: impl AsyncFnOnce(&DatabaseTransaction) -> Result<T, E>,
    ) -> Result<Outcome<T>, E>
    where
        T: Serialize + DeserializeOwned,
        E: From<IdempotencyError>,
    {
        self.run(txn, request, Some(subject), now, work).await
    }

    /// Replaces the stored outcome of every request about `subject` with the
    /// erased marker, in the erasure's transaction, and answers how many it
    /// replaced (0 when it was done before). The rows stay: a retry of one of
    /// those requests is refused rather than run again.
    pub async fn forget_subject(
        self,
        txn: &DatabaseTransaction,
        subject: &DataSubject,
    ) -> Result<u64, DbErr> {
        let update = Query::update()
            .table(self.table)
            .value(OUTCOME, ERASED_OUTCOME)
            .and_where(Expr::col(SUBJECT).eq(subject.as_str()))
            .and_where(Expr::col(OUTCOME).ne(ERASED_OUTCOME))
            .to_owned();
        Ok(txn.execute(&update).await?.rows_affected())
    }

    async fn run<T, E>(
        self,
        txn: &DatabaseTransaction,
        request: Request<'_>,
        subject: Option<&DataSubject>,
        now: DateTime<Utc>,
        work: impl AsyncFnOnce(&DatabaseTransaction) -> Result<T, E>,
    ) -> Result<Outcome<T>, E>
    where
        T: Serialize + DeserializeOwned,
        E: From<IdempotencyError>,
    {
        if let Some(stored) = self.claim(txn, request, subject, now).await? {
            if stored == ERASED_OUTCOME {
                return Err(IdempotencyError::SubjectErased {
                    operation: request.operation.to_owned(),
                }
                .into());
            }
            let corrupt = |source| IdempotencyError::CorruptOutcome {
                operation: request.operation.to_owned(),
                source,
            };
            let value = serde_json::from_str(&stored).map_err(|e| corrupt(Some(e)))?;
            return Ok(Outcome::Replayed(value));
        }
        let value = work(txn).await?;
        let outcome =
            serde_json::to_string(&value).map_err(|e| IdempotencyError::CorruptOutcome {
                operation: request.operation.to_owned(),
                source: Some(e),
            })?;
        self.complete(txn, request, outcome).await?;
        Ok(Outcome::Fresh(value))
    }

    /// Claims the request: `None` when it is new (and now held by `txn`), else
    /// the outcome stored by the first one.
    async fn claim(
        self,
        txn: &DatabaseTransaction,
        request: Request<'_>,
        subject: Option<&DataSubject>,
        now: DateTime<Utc>,
    ) -> Result<Option<String>, IdempotencyError> {
        let mut columns = vec![OPERATION, REQUEST_ID, FINGERPRINT, OUTCOME, CREATE_TIME];
        let mut values: Vec<sea_orm::sea_query::SimpleExpr> = vec![
            request.operation.into(),
            request.request_id.into(),
            request.fingerprint.into(),
            // Only this transaction can see the row before `complete`.
            "null".into(),
            to_micros(now).into(),
        ];
        // Only logs of requests about someone name the column, so a table
        // without it (a service not yet migrated) keeps working.
        if let Some(subject) = subject {
            columns.push(SUBJECT);
            values.push(subject.as_str().into());
        }
        let insert = Query::insert()
            .into_table(self.table)
            .columns(columns)
            .values_panic(values)
            .on_conflict(
                OnConflict::columns([OPERATION, REQUEST_ID])
                    .do_nothing()
                    .to_owned(),
            )
            .to_owned();
        if txn.execute(&insert).await?.rows_affected() == 1 {
            return Ok(None);
        }
        let select = Query::select()
            .columns([FINGERPRINT, OUTCOME])
            .from(self.table)
            .and_where(Expr::col(OPERATION).eq(request.operation))
            .and_where(Expr::col(REQUEST_ID).eq(request.request_id))
            .to_owned();
        let earlier =
            txn.query_one(&select)
                .await?
                .ok_or_else(|| IdempotencyError::CorruptOutcome {
                    operation: request.operation.to_owned(),
                    source: None,
                })?;
        let fingerprint: String = earlier.try_get("", FINGERPRINT)?;
        if fingerprint != request.fingerprint {
            return Err(IdempotencyError::RequestIdReused(
                request.request_id.to_owned(),
            ));
        }
        Ok(Some(earlier.try_get("", OUTCOME)?))
    }

    /// Stores the outcome of a fresh claim, in the same transaction as the work.
    async fn complete(
        self,
        txn: &DatabaseTransaction,
        request: Request<'_>,
        outcome: String,
    ) -> Result<(), IdempotencyError> {
        let update = Query::update()
            .table(self.table)
            .value(OUTCOME, outcome)
            .and_where(Expr::col(OPERATION).eq(request.operation))
            .and_where(Expr::col(REQUEST_ID).eq(request.request_id))
            .to_owned();
        txn.execute(&update).await?;
        Ok(())
    }
}

/// The migration that creates a [`RequestLog`]'s table (see
/// [`RequestLog::create_table`]).
#[derive(Debug, Clone, Copy)]
pub struct CreateRequestLog {
    log: RequestLog,
    name: &'static str,
}

impl MigrationName for CreateRequestLog {
    fn name(&self) -> &str {
        self.name
    }
}

#[sea_orm_migration::async_trait::async_trait]
impl MigrationTrait for CreateRequestLog {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(self.log.table)
                    .col(ColumnDef::new(OPERATION).string_len(32).not_null())
                    .col(ColumnDef::new(REQUEST_ID).string_len(64).not_null())
                    .col(ColumnDef::new(FINGERPRINT).string_len(64).not_null())
                    .col(ColumnDef::new(OUTCOME).text().not_null())
                    .col(ColumnDef::new(CREATE_TIME).big_integer().not_null())
                    .primary_key(Index::create().col(OPERATION).col(REQUEST_ID))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(self.log.table).to_owned())
            .await
    }
}

/// The migration that adds a [`RequestLog`]'s `subject` column (see
/// [`RequestLog::add_subject_column`]).
#[derive(Debug, Clone, Copy)]
pub struct AddSubjectColumn {
    log: RequestLog,
    name: &'static str,
}

impl AddSubjectColumn {
    fn index_name(&self) -> String {
        format!("{}_subject", self.log.table)
    }
}

impl MigrationName for AddSubjectColumn {
    fn name(&self) -> &str {
        self.name
    }
}

#[sea_orm_migration::async_trait::async_trait]
impl MigrationTrait for AddSubjectColumn {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // Requests logged before the column have no subject: their outcomes are
        // not found by an erasure (nothing can tell whom they were about).
        manager
            .alter_table(
                Table::alter()
                    .table(self.log.table)
                    .add_column(ColumnDef::new(SUBJECT).string_len(96).null())
                    .to_owned(),
            )
            .await?;
        // An erasure finds a subject's requests without scanning the log.
        manager
            .create_index(
                Index::create()
                    .name(self.index_name())
                    .table(self.log.table)
                    .col(SUBJECT)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_index(
                Index::drop()
                    .name(self.index_name())
                    .table(self.log.table)
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(self.log.table)
                    .drop_column(SUBJECT)
                    .to_owned(),
            )
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::{Backend, WriteLock, begin_write, connect, fresh_test_database_on};
    use sea_orm::{DatabaseConnection, TransactionTrait};
    use sea_orm_migration::SchemaManager;
    use serde::Deserialize;

    const LOG: RequestLog = RequestLog::new("kit_requests");
    const LOCK: WriteLock = WriteLock::for_service(0xfff0);

    #[test]
    fn a_database_outage_inside_an_idempotent_write_is_unavailable() {
        let outage = IdempotencyError::Database(DbErr::ConnectionAcquire(
            sea_orm::error::ConnAcquireErr::Timeout,
        ));
        assert_eq!(ApiError::from(outage).code(), tonic::Code::Unavailable);
        let reused = IdempotencyError::RequestIdReused("r-1".into());
        assert_eq!(ApiError::from(reused).code(), tonic::Code::AlreadyExists);
    }

    #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
    struct Receipt {
        ids: Vec<i64>,
        note: String,
    }

    #[derive(Debug, thiserror::Error)]
    enum TestError {
        #[error(transparent)]
        Idempotency(#[from] IdempotencyError),
        #[error("the work refused")]
        Refused,
    }

    async fn database(backend: Backend) -> Option<(crate::db::TestDatabase, DatabaseConnection)> {
        let test = fresh_test_database_on(backend, "kit_idem").await.unwrap()?;
        let db = connect(&test.config).await.unwrap();
        let schema = SchemaManager::new(&db);
        LOG.create_table("m0001_create_kit_requests")
            .up(&schema)
            .await
            .unwrap();
        LOG.add_subject_column("m0002_add_kit_request_subject")
            .up(&schema)
            .await
            .unwrap();
        Some((test, db))
    }

    /// Runs one request that writes `note` and counts how often its work ran.
    async fn run(
        db: &DatabaseConnection,
        request_id: &str,
        fingerprint: &str,
        note: &str,
        runs: &mut u32,
    ) -> Result<Outcome<Receipt>, TestError> {
        let txn = begin_write(db, LOCK).await.unwrap();
        let request = Request {
            operation: "write_note",
            request_id,
            fingerprint,
        };
        let outcome = LOG
            .idempotent(&txn, request, Utc::now(), async |_txn| {
                *runs += 1;
                if note.is_empty() {
                    return Err(TestError::Refused);
                }
                Ok(Receipt {
                    ids: vec![1, 2],
                    note: note.to_owned(),
                })
            })
            .await?;
        txn.commit().await.unwrap();
        Ok(outcome)
    }

    async fn replays_reuse_and_rollback(backend: Backend) {
        let Some((_test, db)) = database(backend).await else {
            return;
        };
        let mut runs = 0;
        let fresh = run(&db, "r-1", "fp-a", "first", &mut runs).await.unwrap();
        let expected = Receipt {
            ids: vec![1, 2],
            note: "first".into(),
        };
        assert_eq!(fresh, Outcome::Fresh(expected.clone()));
        // A retry gets the stored outcome, even if its work would answer otherwise.
        let replay = run(&db, "r-1", "fp-a", "second", &mut runs).await.unwrap();
        assert_eq!(replay, Outcome::Replayed(expected));
        assert_eq!(runs, 1);
        // The same id with other content is refused.
        match run(&db, "r-1", "fp-b", "other", &mut runs).await {
            Err(TestError::Idempotency(IdempotencyError::RequestIdReused(id))) => {
                assert_eq!(id, "r-1");
            }
            other => panic!("expected a reused request id, got {other:?}"),
        }
        // Failed work rolls its claim back, so a retry runs the work again.
        assert!(matches!(
            run(&db, "r-2", "fp-a", "", &mut runs).await,
            Err(TestError::Refused)
        ));
        let retried = run(&db, "r-2", "fp-a", "now", &mut runs).await.unwrap();
        assert!(retried.is_fresh());
        assert_eq!(
            runs, 3,
            "the first, the refused and the retried request ran"
        );
    }

    #[tokio::test]
    async fn a_retry_replays_another_content_is_refused_and_failed_work_is_undone_on_sqlite() {
        replays_reuse_and_rollback(Backend::Sqlite).await;
    }

    #[tokio::test]
    #[cfg_attr(
        not(attune_test_postgres),
        ignore = "set ATTUNE_TEST_DATABASE_URL to run on PostgreSQL"
    )]
    async fn a_retry_replays_another_content_is_refused_and_failed_work_is_undone_on_postgres() {
        replays_reuse_and_rollback(Backend::Postgres).await;
    }

    /// Runs one request about `customer` whose answer names them.
    async fn run_about(
        db: &DatabaseConnection,
        key: &PseudonymKey,
        customer: &str,
        request_id: &str,
        runs: &mut u32,
    ) -> Result<Outcome<Receipt>, TestError> {
        let txn = begin_write(db, LOCK).await.unwrap();
        let request = Request {
            operation: "write_note",
            request_id,
            fingerprint: "fp",
        };
        let subject = DataSubject::of(key, customer);
        let outcome = LOG
            .idempotent_about(&txn, request, &subject, Utc::now(), async |_txn| {
                *runs += 1;
                Ok::<_, TestError>(Receipt {
                    ids: vec![],
                    note: customer.to_owned(),
                })
            })
            .await?;
        txn.commit().await.unwrap();
        Ok(outcome)
    }

    async fn forget(db: &DatabaseConnection, key: &PseudonymKey, customer: &str) -> u64 {
        let txn = begin_write(db, LOCK).await.unwrap();
        let forgotten = LOG
            .forget_subject(&txn, &DataSubject::of(key, customer))
            .await
            .unwrap();
        txn.commit().await.unwrap();
        forgotten
    }

    async fn forgetting_a_subject(backend: Backend) {
        let Some((_test, db)) = database(backend).await else {
            return;
        };
        let key = PseudonymKey::new([7; 32]);
        let mut runs = 0;
        run_about(&db, &key, "cust-erased", "r-1", &mut runs)
            .await
            .unwrap();
        run_about(&db, &key, "cust-erased", "r-2", &mut runs)
            .await
            .unwrap();
        run_about(&db, &key, "cust-kept", "r-3", &mut runs)
            .await
            .unwrap();
        run(&db, "r-4", "fp", "about nobody", &mut runs)
            .await
            .unwrap();
        assert_eq!(runs, 4);

        assert_eq!(forget(&db, &key, "cust-erased").await, 2);
        // The log holds neither the id nor an answer naming it, only its pseudonym.
        let stored = db
            .query_all(
                &Query::select()
                    .columns([SUBJECT, OUTCOME])
                    .from(LOG.table)
                    .to_owned(),
            )
            .await
            .unwrap();
        for row in stored {
            let subject: Option<String> = row.try_get("", SUBJECT).unwrap();
            let outcome: String = row.try_get("", OUTCOME).unwrap();
            assert!(!outcome.contains("cust-erased"), "{outcome}");
            assert!(!subject.unwrap_or_default().contains("cust-"));
        }
        // A retry of the erased subject's request is refused and runs nothing.
        match run_about(&db, &key, "cust-erased", "r-1", &mut runs).await {
            Err(TestError::Idempotency(error @ IdempotencyError::SubjectErased { .. })) => {
                assert_eq!(
                    ApiError::from(error).code(),
                    tonic::Code::FailedPrecondition
                );
            }
            other => panic!("expected an erased subject, got {other:?}"),
        }
        assert_eq!(runs, 4);
        // Other subjects' and subjectless requests still replay their answers.
        let kept = run_about(&db, &key, "cust-kept", "r-3", &mut runs)
            .await
            .unwrap();
        assert_eq!(
            kept,
            Outcome::Replayed(Receipt {
                ids: vec![],
                note: "cust-kept".into()
            })
        );
        assert!(
            !run(&db, "r-4", "fp", "other", &mut runs)
                .await
                .unwrap()
                .is_fresh()
        );
        assert_eq!(runs, 4);
        // A second erasure finds nothing left to forget.
        assert_eq!(forget(&db, &key, "cust-erased").await, 0);
        // A new request about the same person (a new account after erasure) runs.
        let fresh = run_about(&db, &key, "cust-erased", "r-5", &mut runs)
            .await
            .unwrap();
        assert!(fresh.is_fresh());
    }

    #[tokio::test]
    async fn a_forgotten_subjects_answers_are_erased_and_their_retries_refused_on_sqlite() {
        forgetting_a_subject(Backend::Sqlite).await;
    }

    #[tokio::test]
    #[cfg_attr(
        not(attune_test_postgres),
        ignore = "set ATTUNE_TEST_DATABASE_URL to run on PostgreSQL"
    )]
    async fn a_forgotten_subjects_answers_are_erased_and_their_retries_refused_on_postgres() {
        forgetting_a_subject(Backend::Postgres).await;
    }

    #[tokio::test]
    async fn an_outcome_of_another_type_is_reported_corrupt() {
        let (_test, db) = database(Backend::Sqlite).await.unwrap();
        let mut runs = 0;
        run(&db, "r-1", "fp", "note", &mut runs).await.unwrap();
        let txn = db.begin().await.unwrap();
        let request = Request {
            operation: "write_note",
            request_id: "r-1",
            fingerprint: "fp",
        };
        let read = LOG
            .idempotent(&txn, request, Utc::now(), async |_txn| {
                Ok::<i64, TestError>(7)
            })
            .await;
        assert!(matches!(
            read,
            Err(TestError::Idempotency(
                IdempotencyError::CorruptOutcome { .. }
            ))
        ));
    }
}
