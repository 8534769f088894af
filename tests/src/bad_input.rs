//! Table-driven bad-input tests: each case of [`Cases`] spoils one field of a valid request,
//! and [`assert_each_rejected`] asserts that the server refuses it with the expected
//! code (and, for INVALID_ARGUMENT, names the field first among its violations) and
//! that nothing was written: the row count of every table in the database, read
//! generically on SQLite and PostgreSQL, is the same after each case as before.
//!
//! Row counts catch every insert and delete, which is what a half-validated write
//! would do (a claimed request id, a ledger record, a change, an audit entry); a
//! test whose RPC could rewrite a row in place also checks that row's content.

use std::collections::BTreeMap;
use std::future::Future;

use attune_kit::config::DatabaseConfig;
use attune_kit::sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, Statement};
use tonic::{Code, Status};

use crate::violated_fields;

/// The bad requests of one RPC, built case by case:
/// `Cases::new().invalid("empty customer", "customer_id", |r| r.customer_id.clear())`.
pub struct Cases<R>(Vec<Case<R>>);

/// One bad request: a name for the failure message, how it must be refused, and
/// how it differs from the valid request.
struct Case<R> {
    name: &'static str,
    code: Code,
    field: Option<&'static str>,
    spoil: Box<dyn Fn(&mut R)>,
}

impl<R> Default for Cases<R> {
    fn default() -> Self {
        Self(Vec::new())
    }
}

impl<R> Cases<R> {
    /// No cases yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// A case refused with INVALID_ARGUMENT whose first field violation is `field`.
    pub fn invalid(
        mut self,
        name: &'static str,
        field: &'static str,
        spoil: impl Fn(&mut R) + 'static,
    ) -> Self {
        self.0.push(Case {
            name,
            code: Code::InvalidArgument,
            field: Some(field),
            spoil: Box::new(spoil),
        });
        self
    }

    /// A case refused with `code` (NOT_FOUND, ALREADY_EXISTS, ...), no field asserted.
    pub fn refused(
        mut self,
        name: &'static str,
        code: Code,
        spoil: impl Fn(&mut R) + 'static,
    ) -> Self {
        self.0.push(Case {
            name,
            code,
            field: None,
            spoil: Box::new(spoil),
        });
        self
    }
}

/// For each case: builds `valid()`, spoils it, sends it with `call`, and asserts
/// the refusal and that no table of `database` changed its row count.
pub async fn assert_each_rejected<R, T, F, Fut>(
    database: &DatabaseConfig,
    valid: impl Fn() -> R,
    cases: Cases<R>,
    mut call: F,
) where
    T: std::fmt::Debug,
    F: FnMut(R) -> Fut,
    Fut: Future<Output = Result<T, Status>>,
{
    let db = attune_kit::db::connect(database)
        .await
        .expect("the test database accepts a second connection");
    let before = RowCounts::read(&db).await;
    assert!(!cases.0.is_empty(), "a table of bad input has cases");
    for case in cases.0 {
        let mut request = valid();
        (case.spoil)(&mut request);
        let status = match call(request).await {
            Ok(answer) => panic!("{}: accepted, answered {answer:?}", case.name),
            Err(status) => status,
        };
        assert_eq!(status.code(), case.code, "{}: {status:?}", case.name);
        if let Some(field) = case.field {
            assert_eq!(
                violated_fields(&status).first().map(String::as_str),
                Some(field),
                "{}: {status:?}",
                case.name
            );
        }
        assert_eq!(
            RowCounts::read(&db).await,
            before,
            "{}: a refused request wrote to the database",
            case.name
        );
    }
    db.close()
        .await
        .expect("the second connection closes cleanly");
}

/// The number of rows in every table of a database, by table name.
#[derive(Debug, PartialEq, Eq)]
pub struct RowCounts(BTreeMap<String, i64>);

impl RowCounts {
    /// Counts the rows of every table (migration history included) of `db`.
    pub async fn read(db: &DatabaseConnection) -> Self {
        let backend = db.get_database_backend();
        let tables = match backend {
            DbBackend::Sqlite => {
                "SELECT name AS t FROM sqlite_master \
                 WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
            }
            _ => {
                "SELECT table_name::text AS t FROM information_schema.tables \
                 WHERE table_schema = current_schema() AND table_type = 'BASE TABLE'"
            }
        };
        let tables = db
            .query_all_raw(Statement::from_string(backend, tables))
            .await
            .expect("the table list is readable");
        let mut counts = BTreeMap::new();
        for row in tables {
            let table: String = row.try_get("", "t").expect("a table has a name");
            let count = format!("SELECT COUNT(*) AS n FROM \"{table}\"");
            let n = db
                .query_one_raw(Statement::from_string(backend, count))
                .await
                .expect("every table is readable")
                .expect("COUNT(*) answers one row")
                .try_get("", "n")
                .expect("COUNT(*) is an integer");
            counts.insert(table, n);
        }
        assert!(!counts.is_empty(), "the database has been migrated");
        Self(counts)
    }
}
