//! Database connections (SQLite embedded, PostgreSQL for scale-out) and migrations.

use sea_orm::sqlx::sqlite::{SqliteJournalMode, SqliteSynchronous};
use sea_orm::{ConnectOptions, Database, DatabaseConnection, DbErr};
use sea_orm_migration::MigratorTrait;

use crate::config::DatabaseConfig;

pub mod health;
pub mod micros;
mod select;
mod spans;
mod write;
pub use select::{select_all, select_one};
pub use write::{WriteLock, begin_guarded_write, begin_snapshot, begin_write};

/// Why a database could not be reached or migrated. Messages name the URL only
/// without its password ([`redacted_url`]).
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// The URL is neither `sqlite:` nor `postgres(ql)://`.
    #[error("unsupported database URL scheme `{scheme}`: use sqlite:// or postgres://")]
    UnsupportedUrl {
        /// The part before `:`.
        scheme: String,
    },
    /// Connecting failed.
    #[error("cannot connect to the {backend} database at {url}")]
    Connect {
        /// `SQLite` or `PostgreSQL`.
        backend: &'static str,
        /// The URL connected to, without its password ([`redacted_url`]).
        url: String,
        /// The driver's error.
        #[source]
        source: DbErr,
    },
    /// A migration failed.
    #[error("database migration failed")]
    Migrate(#[source] DbErr),
    /// Preparing a test database failed.
    #[error("cannot prepare a test database: {0}")]
    TestDatabase(String),
}

/// Which engine a URL points at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// Embedded SQLite file (or memory).
    Sqlite,
    /// PostgreSQL (or a compatible server).
    Postgres,
}

impl Backend {
    /// The backend of `url`, judged by its scheme.
    pub fn of(url: &str) -> Result<Self, DbError> {
        let scheme = url.split_once(':').map_or(url, |(scheme, _)| scheme);
        match scheme.to_ascii_lowercase().as_str() {
            "sqlite" => Ok(Self::Sqlite),
            "postgres" | "postgresql" => Ok(Self::Postgres),
            _ => Err(DbError::UnsupportedUrl {
                scheme: scheme.chars().take(32).collect(),
            }),
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::Sqlite => "SQLite",
            Self::Postgres => "PostgreSQL",
        }
    }
}

/// Opens a pool on `config.url`.
///
/// SQLite gets WAL (readers never block the writer), `synchronous=NORMAL` (durable at
/// checkpoints, safe with WAL), the busy timeout (writers queue instead of failing),
/// foreign keys on, and the file created when missing unless the URL sets its own
/// `mode=`. PostgreSQL gets a pool of `max_connections` with the acquire timeout.
/// Per-statement logging is off: it would log at info and could carry personal data.
pub async fn connect(config: &DatabaseConfig) -> Result<DatabaseConnection, DbError> {
    let url = config.url.trim();
    let backend = Backend::of(url)?;
    let mut options = ConnectOptions::new(url);
    options
        .max_connections(config.max_connections)
        .acquire_timeout(config.acquire_timeout)
        .connect_timeout(config.acquire_timeout)
        .sqlx_logging(false);

    if backend == Backend::Sqlite {
        // A pooled SQLite connection is a thread of this process over a local
        // file: it cannot go stale the way a network connection does, so the
        // pool's ping before each checkout (a round trip to that thread, on
        // every statement) buys nothing. Measured on the page experience:
        // scripts/bench-page-experience, ARCHITECTURE.md "attune-kit".
        options.test_before_acquire(false);
        let busy_timeout = config.busy_timeout;
        let explicit_mode = url.contains("mode=");
        options.map_sqlx_sqlite_opts(move |o| {
            let o = o
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Normal)
                .busy_timeout(busy_timeout)
                .foreign_keys(true);
            if explicit_mode {
                o
            } else {
                o.create_if_missing(true)
            }
        });
        if is_sqlite_memory(url) {
            // Each connection to `:memory:` is its own empty database, and the last
            // one closing drops the data: keep exactly one, forever.
            options
                .max_connections(1)
                .min_connections(1)
                .idle_timeout(None)
                .max_lifetime(None);
        }
    }

    let mut db = match Database::connect(options).await {
        Ok(db) => db,
        Err(source) => {
            let source = match source {
                // The pool retried until its timeout and kept no reason: ask once
                // more without a pool, to say "connection refused" or "password
                // authentication failed" instead of "timed out".
                DbErr::ConnectionAcquire(_) | DbErr::Conn(_) if backend == Backend::Postgres => {
                    postgres_reason(url, config.acquire_timeout)
                        .await
                        .unwrap_or(source)
                }
                other => other,
            };
            return Err(DbError::Connect {
                backend: backend.name(),
                url: redacted_url(url),
                source,
            });
        }
    };
    if crate::telemetry::exports_traces() {
        spans::trace_statements(&mut db);
    }
    tracing::debug!(backend = backend.name(), "database connected");
    Ok(db)
}

/// [`connect`], with the pool's usage on the metrics as `pool` (the role it
/// serves; see [`crate::metrics::pool`]) until it is closed.
pub async fn connect_observed(
    config: &DatabaseConfig,
    pool: &'static str,
) -> Result<DatabaseConnection, DbError> {
    let db = connect(config).await?;
    crate::metrics::pool::observe(&db, pool);
    Ok(db)
}

/// Why one direct connection to PostgreSQL fails, if it does within `timeout`.
async fn postgres_reason(url: &str, timeout: std::time::Duration) -> Option<DbErr> {
    use sea_orm::sqlx::Connection as _;
    use sea_orm::sqlx::postgres::PgConnection;
    match tokio::time::timeout(timeout, PgConnection::connect(url)).await {
        Ok(Err(err)) => Some(DbErr::Conn(sea_orm::RuntimeErr::SqlxError(
            std::sync::Arc::new(err),
        ))),
        Ok(Ok(connection)) => {
            let _ = connection.close().await;
            None
        }
        Err(_elapsed) => None,
    }
}

/// `url` without its password, to name it in messages: the password of the
/// authority (`user:secret@host` becomes `user@host`) and the value of any
/// `password` or `sslpassword` query parameter go.
pub fn redacted_url(url: &str) -> String {
    let (base, query) = url
        .split_once('?')
        .map_or((url, None), |(b, q)| (b, Some(q)));
    let mut out = match base.split_once("://") {
        Some((scheme, rest)) => {
            let authority_end = rest.find('/').unwrap_or(rest.len());
            let (authority, path) = rest.split_at(authority_end);
            let authority = match authority.rsplit_once('@') {
                Some((user_info, host)) => {
                    let user = user_info
                        .split_once(':')
                        .map_or(user_info, |(user, _)| user);
                    format!("{user}@{host}")
                }
                None => authority.to_owned(),
            };
            format!("{scheme}://{authority}{path}")
        }
        None => base.to_owned(),
    };
    if let Some(query) = query {
        let params: Vec<String> = query
            .split('&')
            .map(|param| {
                let key = param.split_once('=').map_or(param, |(key, _)| key);
                if key.eq_ignore_ascii_case("password") || key.eq_ignore_ascii_case("sslpassword") {
                    format!("{key}=redacted")
                } else {
                    param.to_owned()
                }
            })
            .collect();
        out.push('?');
        out.push_str(&params.join("&"));
    }
    out
}

fn is_sqlite_memory(url: &str) -> bool {
    url.contains(":memory:") || url.contains("mode=memory")
}

/// Applies `M`'s pending migrations.
///
/// In the monolith several services' migrators share ONE database, so each service's
/// `Migrator` must override `migration_table_name()` (e.g. `consent_migrations`):
/// with the default `seaql_migrations` table, one service would take another's
/// applied migrations for unknown ones and fail.
///
/// On PostgreSQL the migrations run in one transaction holding an advisory lock,
/// so replicas of a service starting together on a fresh database take turns:
/// the first applies them, the others then find nothing pending (each alone
/// would fail creating a table the other just created). SQLite has one writer.
pub async fn migrate<M: MigratorTrait>(db: &DatabaseConnection) -> Result<(), DbError> {
    use sea_orm::{ConnectionTrait, TransactionTrait};
    if db.get_database_backend() != sea_orm::DatabaseBackend::Postgres {
        return migrate_on::<M, _>(db).await;
    }
    let txn = db.begin().await.map_err(DbError::Migrate)?;
    txn.execute_unprepared(&format!("SELECT pg_advisory_xact_lock({MIGRATION_LOCK})"))
        .await
        .map_err(DbError::Migrate)?;
    migrate_on::<M, _>(&txn).await?;
    txn.commit().await.map_err(DbError::Migrate)
}

/// The advisory lock key migrations hold on PostgreSQL: "attune" in ASCII and
/// all ones in the low 16 bits, beside the services' write locks ([`WriteLock`]).
const MIGRATION_LOCK: i64 = 0x6174_7475_6e65_ffff;

async fn migrate_on<'c, M, C>(db: &'c C) -> Result<(), DbError>
where
    M: MigratorTrait,
    C: sea_orm::ConnectionTrait,
    &'c C: sea_orm_migration::IntoSchemaManagerConnection<'c>,
{
    let pending = M::get_pending_migrations(db)
        .await
        .map_err(DbError::Migrate)?;
    if pending.is_empty() {
        return Ok(());
    }
    let table = M::migration_table_name().to_string();
    tracing::info!(count = pending.len(), %table, "applying migrations");
    M::up(db, None).await.map_err(DbError::Migrate)
}

#[cfg(any(test, feature = "test-util"))]
pub use test_util::{
    TEST_DATABASE_URL_ENV, TestDatabase, fresh_test_database, fresh_test_database_on,
};

#[cfg(any(test, feature = "test-util"))]
mod test_util {
    use super::{Backend, DbError};
    use crate::config::DatabaseConfig;
    use sea_orm::ConnectionTrait;

    /// Names a PostgreSQL server (`postgres://postgres@127.0.0.1:5432/postgres`) on
    /// which tests create their databases; unset, tests use temporary SQLite files.
    pub const TEST_DATABASE_URL_ENV: &str = "ATTUNE_TEST_DATABASE_URL";

    /// A database of its own for one test: a temporary SQLite file, or a fresh
    /// PostgreSQL database when `ATTUNE_TEST_DATABASE_URL` is set.
    #[derive(Debug)]
    pub struct TestDatabase {
        /// Connect with this.
        pub config: DatabaseConfig,
        /// Keeps the SQLite file's directory until the test ends.
        _dir: Option<tempfile::TempDir>,
        /// Server URL and database name, to drop the database at the end.
        postgres: Option<(String, String)>,
    }

    impl TestDatabase {
        /// True when backed by PostgreSQL.
        pub fn is_postgres(&self) -> bool {
            self.postgres.is_some()
        }
    }

    /// Creates a database no other test uses, so tests run in parallel: on the
    /// PostgreSQL server named by `ATTUNE_TEST_DATABASE_URL` when set, else a
    /// temporary SQLite file. `name_hint` (e.g. the test's name) makes leftovers
    /// recognisable.
    pub async fn fresh_test_database(name_hint: &str) -> Result<TestDatabase, DbError> {
        match postgres_test_server() {
            Some(server) => fresh_postgres(server, name_hint).await,
            None => fresh_sqlite(name_hint),
        }
    }

    /// Like [`fresh_test_database`] on a chosen backend, so one test can run on
    /// both: `None` for PostgreSQL when `ATTUNE_TEST_DATABASE_URL` is not set.
    pub async fn fresh_test_database_on(
        backend: Backend,
        name_hint: &str,
    ) -> Result<Option<TestDatabase>, DbError> {
        match (backend, postgres_test_server()) {
            (Backend::Sqlite, _) => fresh_sqlite(name_hint).map(Some),
            (Backend::Postgres, Some(server)) => fresh_postgres(server, name_hint).await.map(Some),
            (Backend::Postgres, None) => Ok(None),
        }
    }

    fn postgres_test_server() -> Option<String> {
        std::env::var(TEST_DATABASE_URL_ENV)
            .ok()
            .filter(|url| !url.trim().is_empty())
    }

    /// `[a-z0-9_]`, short enough for a PostgreSQL identifier with its prefix.
    fn sanitize(name_hint: &str) -> String {
        name_hint
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() {
                    c.to_ascii_lowercase()
                } else {
                    '_'
                }
            })
            .take(24)
            .collect()
    }

    fn fresh_sqlite(name_hint: &str) -> Result<TestDatabase, DbError> {
        let dir = tempfile::Builder::new()
            .prefix("attune-test-")
            .tempdir()
            .map_err(|e| DbError::TestDatabase(e.to_string()))?;
        let path = dir.path().join(format!("{}.db", sanitize(name_hint)));
        Ok(TestDatabase {
            config: DatabaseConfig {
                url: format!("sqlite://{}?mode=rwc", path.display()),
                ..DatabaseConfig::default()
            },
            _dir: Some(dir),
            postgres: None,
        })
    }

    async fn fresh_postgres(server: String, name_hint: &str) -> Result<TestDatabase, DbError> {
        let unique = uuid::Uuid::new_v4().simple().to_string();
        // PostgreSQL identifiers stop at 63 bytes: 12 + 24 + 1 + 12 fits.
        let name = format!("attune_test_{}_{}", sanitize(name_hint), &unique[..12]);
        let admin = super::connect(&admin_config(&server)).await?;
        admin
            .execute_unprepared(&format!("CREATE DATABASE \"{name}\""))
            .await
            .map_err(|e| DbError::TestDatabase(e.to_string()))?;
        admin
            .close()
            .await
            .map_err(|e| DbError::TestDatabase(e.to_string()))?;
        Ok(TestDatabase {
            config: DatabaseConfig {
                url: with_database(&server, &name),
                ..DatabaseConfig::default()
            },
            _dir: None,
            postgres: Some((server, name)),
        })
    }

    fn admin_config(server: &str) -> DatabaseConfig {
        DatabaseConfig {
            url: server.to_owned(),
            max_connections: 1,
            ..DatabaseConfig::default()
        }
    }

    /// `url` with its database (path) replaced by `name`, query kept.
    pub(super) fn with_database(url: &str, name: &str) -> String {
        let (base, query) = match url.split_once('?') {
            Some((base, query)) => (base, Some(query)),
            None => (url, None),
        };
        let authority_start = base.find("://").map_or(0, |i| i + 3);
        let path_start = base[authority_start..]
            .find('/')
            .map_or(base.len(), |i| authority_start + i);
        let mut out = format!("{}/{name}", &base[..path_start]);
        if let Some(query) = query {
            out.push('?');
            out.push_str(query);
        }
        out
    }

    impl Drop for TestDatabase {
        /// Drops the PostgreSQL database, best effort: on a thread of its own, since
        /// `Drop` cannot await and may run inside the test's runtime.
        fn drop(&mut self) {
            let Some((server, name)) = self.postgres.take() else {
                return;
            };
            let dropper = std::thread::spawn(move || {
                let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                else {
                    return;
                };
                runtime.block_on(async move {
                    if let Ok(admin) = super::connect(&admin_config(&server)).await {
                        let sql = format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)");
                        let _ = admin.execute_unprepared(&sql).await;
                        let _ = admin.close().await;
                    }
                });
            });
            let _ = dropper.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::test_util::with_database;

    #[test]
    fn with_database_replaces_only_the_path() {
        assert_eq!(
            with_database("postgres://u:p@h:5432/postgres", "x"),
            "postgres://u:p@h:5432/x"
        );
        assert_eq!(
            with_database("postgres://u@h:5432", "x"),
            "postgres://u@h:5432/x"
        );
        assert_eq!(
            with_database("postgresql://u@h/db?sslmode=disable", "x"),
            "postgresql://u@h/x?sslmode=disable"
        );
    }
}

#[cfg(test)]
mod backend_tests {
    use super::*;

    #[test]
    fn a_redacted_url_keeps_all_but_the_password() {
        for (given, shown) in [
            (
                "postgres://bob:hunter2@db:5432/attune?sslmode=require",
                "postgres://bob@db:5432/attune?sslmode=require",
            ),
            ("postgres://bob@db/attune", "postgres://bob@db/attune"),
            (
                "postgresql://db/attune?user=bob&password=hunter2",
                "postgresql://db/attune?user=bob&password=redacted",
            ),
            (
                "postgres://db/a?sslpassword=k&sslmode=verify-full",
                "postgres://db/a?sslpassword=redacted&sslmode=verify-full",
            ),
            ("postgres://a:b:c@d@host/x", "postgres://a@host/x"),
            (
                "sqlite:///var/lib/attune.db?mode=rwc",
                "sqlite:///var/lib/attune.db?mode=rwc",
            ),
            ("sqlite::memory:", "sqlite::memory:"),
        ] {
            assert_eq!(redacted_url(given), shown, "{given}");
        }
    }

    #[test]
    fn backend_is_judged_by_scheme() {
        assert_eq!(
            Backend::of("sqlite://a.db?mode=rwc").ok(),
            Some(Backend::Sqlite)
        );
        assert_eq!(Backend::of("sqlite::memory:").ok(), Some(Backend::Sqlite));
        assert_eq!(
            Backend::of("postgres://u@h/db").ok(),
            Some(Backend::Postgres)
        );
        assert_eq!(
            Backend::of("postgresql://u@h/db").ok(),
            Some(Backend::Postgres)
        );
        match Backend::of("mysql://root:secret@h/db") {
            Err(DbError::UnsupportedUrl { scheme }) => assert_eq!(scheme, "mysql"),
            other => panic!("unexpected {other:?}"),
        }
    }
}

#[cfg(test)]
mod migration_tests {
    use super::*;
    use sea_orm::{ConnectionTrait, Statement};
    use sea_orm_migration::prelude::*;

    /// Two services' migrators, as in the monolith: each keeps its own history table.
    macro_rules! migrator {
        ($module:ident, $history:literal, $migration:literal, $table:literal) => {
            mod $module {
                use sea_orm_migration::prelude::*;

                pub struct Migrator;

                #[async_trait::async_trait]
                impl MigratorTrait for Migrator {
                    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
                        vec![Box::new(CreateTable)]
                    }

                    fn migration_table_name() -> DynIden {
                        $history.into_iden()
                    }
                }

                struct CreateTable;

                impl MigrationName for CreateTable {
                    fn name(&self) -> &str {
                        $migration
                    }
                }

                #[async_trait::async_trait]
                impl MigrationTrait for CreateTable {
                    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
                        manager
                            .create_table(
                                Table::create()
                                    .table($table)
                                    .col(
                                        ColumnDef::new("id").big_integer().not_null().primary_key(),
                                    )
                                    .to_owned(),
                            )
                            .await
                    }
                }
            }
        };
    }

    migrator!(
        first,
        "first_migrations",
        "m0001_create_first_things",
        "first_things"
    );
    migrator!(
        second,
        "second_migrations",
        "m0001_create_second_things",
        "second_things"
    );

    async fn count_rows(db: &DatabaseConnection, table: &str) -> i64 {
        let sql = format!("SELECT COUNT(*) AS n FROM {table}");
        let row = db
            .query_one_raw(Statement::from_string(db.get_database_backend(), sql))
            .await
            .expect("count query runs on a migrated table")
            .expect("COUNT returns a row");
        row.try_get::<i64>("", "n").expect("COUNT is an integer")
    }

    async fn migrations_share_one_database(name: &str) {
        let test_db = fresh_test_database(name)
            .await
            .expect("test database is created");
        let db = connect(&test_db.config)
            .await
            .expect("test database accepts connections");

        migrate::<first::Migrator>(&db)
            .await
            .expect("first migrator applies");
        migrate::<second::Migrator>(&db)
            .await
            .expect("second migrator applies beside the first");
        // Re-running is a no-op, as at every start of `attune serve`.
        migrate::<first::Migrator>(&db)
            .await
            .expect("re-running is a no-op");
        migrate::<second::Migrator>(&db)
            .await
            .expect("re-running is a no-op");

        assert_eq!(count_rows(&db, "first_migrations").await, 1);
        assert_eq!(count_rows(&db, "second_migrations").await, 1);
        assert_eq!(count_rows(&db, "first_things").await, 0);
        assert_eq!(count_rows(&db, "second_things").await, 0);
        db.close().await.expect("pool closes");
    }

    #[tokio::test]
    async fn migrators_with_own_history_tables_share_one_database() {
        migrations_share_one_database("kit_migrate").await;
    }

    #[tokio::test]
    async fn sqlite_gets_wal_normal_sync_busy_timeout_and_foreign_keys() {
        let dir = tempfile::tempdir().expect("temp dir");
        // No `mode=`: the file is created when missing.
        let url = format!("sqlite://{}", dir.path().join("new.db").display());
        let config = DatabaseConfig {
            url,
            busy_timeout: std::time::Duration::from_millis(1234),
            ..DatabaseConfig::default()
        };
        let db = connect(&config).await.expect("sqlite file is created");

        let pragma = |name: &'static str| {
            let db = db.clone();
            async move {
                let sql = format!("PRAGMA {name}");
                let row = db
                    .query_one_raw(Statement::from_string(db.get_database_backend(), sql))
                    .await
                    .expect("pragma runs")
                    .expect("pragma returns a row");
                // Pragmas answer text (journal_mode) or integers (the others).
                row.try_get_by_index::<String>(0)
                    .or_else(|_| row.try_get_by_index::<i64>(0).map(|n| n.to_string()))
                    .expect("pragma value is text or an integer")
            }
        };
        assert_eq!(pragma("journal_mode").await, "wal");
        assert_eq!(pragma("synchronous").await, "1"); // NORMAL
        assert_eq!(pragma("foreign_keys").await, "1");
        assert_eq!(pragma("busy_timeout").await, "1234");
        assert!(dir.path().join("new.db").is_file());
    }

    #[tokio::test]
    async fn sqlite_memory_keeps_its_data_on_one_connection() {
        let config = DatabaseConfig {
            url: "sqlite::memory:".into(),
            ..DatabaseConfig::default()
        };
        let db = connect(&config).await.expect("memory database opens");
        migrate::<first::Migrator>(&db)
            .await
            .expect("migrates in memory");
        assert_eq!(count_rows(&db, "first_things").await, 0);
    }

    #[tokio::test]
    async fn unsupported_url_is_refused_without_echoing_it() {
        let config = DatabaseConfig {
            url: "mysql://root:secret@db/x".into(),
            ..DatabaseConfig::default()
        };
        let err = connect(&config).await.expect_err("mysql is not supported");
        assert!(!err.to_string().contains("secret"));
    }

    /// Runs only when `ATTUNE_TEST_DATABASE_URL` names a PostgreSQL server.
    #[tokio::test]
    #[cfg_attr(
        not(attune_test_postgres),
        ignore = "set ATTUNE_TEST_DATABASE_URL to run on PostgreSQL"
    )]
    async fn postgres_test_databases_are_fresh_and_migrate() {
        let a = fresh_test_database("kit_pg")
            .await
            .expect("first database is created");
        let b = fresh_test_database("kit_pg")
            .await
            .expect("second database is created");
        assert!(a.is_postgres());
        assert_ne!(
            a.config.url, b.config.url,
            "each call gets its own database"
        );
        drop((a, b));
        migrations_share_one_database("kit_pg_migrate").await;
    }

    #[tokio::test]
    async fn a_backend_can_be_chosen_per_test() {
        let sqlite = fresh_test_database_on(Backend::Sqlite, "kit_on")
            .await
            .expect("SQLite is always available")
            .expect("SQLite is never skipped");
        assert!(!sqlite.is_postgres());
        let postgres = fresh_test_database_on(Backend::Postgres, "kit_on")
            .await
            .expect("a configured server accepts CREATE DATABASE");
        let configured = std::env::var(TEST_DATABASE_URL_ENV).is_ok_and(|v| !v.trim().is_empty());
        assert_eq!(postgres.is_some(), configured);
    }
}
