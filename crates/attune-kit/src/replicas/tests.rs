//! The change log over a real database: changes reach other replicas and not
//! their writer, scopes stay apart, pruning keeps the newest, and a replica that
//! fell behind the pruning rebuilds instead of missing a change.

use std::sync::Mutex;

use chrono::TimeDelta;
use sea_orm_migration::{MigrationTrait, MigratorTrait};

use super::*;
use crate::db::{
    Backend, TestDatabase, WriteLock, begin_write, connect, fresh_test_database_on, migrate,
};

struct Migrator;

impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![Box::new(CreateReplicaChanges)]
    }
}

/// Two replicas of one service's log (each a replica of its own).
fn two_replicas() -> (ChangeLog, ChangeLog) {
    (
        ChangeLog::new("svc", INTERVAL),
        ChangeLog::new("svc", INTERVAL),
    )
}

const INTERVAL: Duration = Duration::from_millis(10);

const LOCK: WriteLock = WriteLock::for_service(900);

async fn database(backend: Backend, name: &str) -> Option<(TestDatabase, DatabaseConnection)> {
    let test_db = fresh_test_database_on(backend, name)
        .await
        .expect("the test database is created")?;
    let db = connect(&test_db.config).await.expect("the database opens");
    migrate::<Migrator>(&db)
        .await
        .expect("the table is created");
    Some((test_db, db))
}

async fn record(
    db: &DatabaseConnection,
    log: &ChangeLog,
    kind: i16,
    keys: &[&str],
    at: DateTime<Utc>,
) {
    let txn = begin_write(db, LOCK).await.expect("the write begins");
    log.record(&txn, kind, keys.iter().copied(), at)
        .await
        .expect("the change is recorded");
    txn.commit().await.expect("the write commits");
}

/// Remembers what it was handed.
#[derive(Default)]
struct Seen {
    changes: Mutex<Vec<Change>>,
    lost: Mutex<u32>,
}

impl ChangeHandler for &'static Seen {
    async fn apply(&self, changes: &[Change]) -> Result<(), DbErr> {
        self.changes.lock().unwrap().extend_from_slice(changes);
        Ok(())
    }

    async fn lost(&self) -> Result<(), DbErr> {
        *self.lost.lock().unwrap() += 1;
        Ok(())
    }
}

fn change(kind: i16, key: &str) -> Change {
    Change {
        kind,
        key: key.to_owned(),
    }
}

async fn changes_reach_other_replicas_only(backend: Backend) {
    let Some((_guard, db)) = database(backend, "replica_changes").await else {
        return;
    };
    let (a, b) = two_replicas();
    let other_service = ChangeLog::new("other", INTERVAL);
    record(&db, &a, 1, &["before"], Utc::now()).await;
    let mut watch = b.watch_from_now(&db).await.unwrap();
    let seen: &'static Seen = Box::leak(Box::default());

    record(&db, &a, 1, &["c2", "c1", "c1"], Utc::now()).await;
    record(&db, &b, 2, &["mine"], Utc::now()).await;
    record(&db, &other_service, 1, &["elsewhere"], Utc::now()).await;
    record(&db, &a, 3, &[""], Utc::now()).await;
    watch.catch_up(&seen).await.unwrap();
    assert_eq!(
        *seen.changes.lock().unwrap(),
        [change(1, "c1"), change(1, "c2"), change(3, "")],
        "keys deduplicated, in order; not what came before the watch, nor B's own, nor another scope's"
    );
    watch.catch_up(&seen).await.unwrap();
    assert_eq!(
        seen.changes.lock().unwrap().len(),
        3,
        "each change is handed over once"
    );
    assert_eq!(*seen.lost.lock().unwrap(), 0);
}

async fn pruning_keeps_the_newest_and_a_late_replica_rebuilds(backend: Backend) {
    let Some((_guard, db)) = database(backend, "replica_prune").await else {
        return;
    };
    let (a, b) = two_replicas();
    let mut late = b.watch_from_now(&db).await.unwrap();
    let long_ago = Utc::now() - TimeDelta::minutes(30);
    record(&db, &a, 1, &["x", "y", "z"], long_ago).await;
    let cutoff = Utc::now() - TimeDelta::minutes(10);
    assert_eq!(
        store::prune(&db, "svc", cutoff).await.unwrap(),
        2,
        "all old rows but the newest"
    );
    assert_eq!(
        store::newest(&db, "svc").await.unwrap(),
        3,
        "positions continue from the newest"
    );

    record(&db, &a, 1, &["fresh"], Utc::now()).await;
    let seen: &'static Seen = Box::leak(Box::default());
    late.catch_up(&seen).await.unwrap();
    assert_eq!(*seen.lost.lock().unwrap(), 1, "the gap is noticed");
    assert!(
        seen.changes.lock().unwrap().is_empty(),
        "a rebuild covers the batch"
    );

    record(&db, &a, 2, &["after"], Utc::now()).await;
    late.catch_up(&seen).await.unwrap();
    assert_eq!(
        *seen.changes.lock().unwrap(),
        [change(2, "after")],
        "then it reads on"
    );
    assert_eq!(*seen.lost.lock().unwrap(), 1);
}

async fn a_failed_apply_keeps_the_changes(backend: Backend) {
    struct Failing(Mutex<u32>);
    impl ChangeHandler for &'static Failing {
        async fn apply(&self, _: &[Change]) -> Result<(), DbErr> {
            *self.0.lock().unwrap() += 1;
            Err(DbErr::Custom("the reload failed".into()))
        }
        async fn lost(&self) -> Result<(), DbErr> {
            Ok(())
        }
    }
    let Some((_guard, db)) = database(backend, "replica_retry").await else {
        return;
    };
    let (a, b) = two_replicas();
    let mut watch = b.watch_from_now(&db).await.unwrap();
    record(&db, &a, 1, &["k"], Utc::now()).await;
    let failing: &'static Failing = Box::leak(Box::new(Failing(Mutex::new(0))));
    assert!(watch.catch_up(&failing).await.is_err());
    assert!(watch.catch_up(&failing).await.is_err());
    assert_eq!(*failing.0.lock().unwrap(), 2, "handed over again");
    let seen: &'static Seen = Box::leak(Box::default());
    watch.catch_up(&seen).await.unwrap();
    assert_eq!(*seen.changes.lock().unwrap(), [change(1, "k")]);
}

async fn a_rolled_back_write_leaves_no_hole(backend: Backend) {
    let Some((_guard, db)) = database(backend, "replica_rollback").await else {
        return;
    };
    let (a, b) = two_replicas();
    let mut watch = b.watch_from_now(&db).await.unwrap();
    let txn = begin_write(&db, LOCK).await.unwrap();
    a.record(&txn, 1, ["gone"], Utc::now()).await.unwrap();
    txn.rollback().await.unwrap();
    record(&db, &a, 1, &["kept"], Utc::now()).await;
    let seen: &'static Seen = Box::leak(Box::default());
    watch.catch_up(&seen).await.unwrap();
    assert_eq!(*seen.changes.lock().unwrap(), [change(1, "kept")]);
    assert_eq!(*seen.lost.lock().unwrap(), 0, "positions stay contiguous");
}

macro_rules! on_both_backends {
    ($($test:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test]
                async fn $test() {
                    super::$test(super::Backend::Sqlite).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test]
                #[cfg_attr(not(attune_test_postgres), ignore = "set ATTUNE_TEST_DATABASE_URL to run on PostgreSQL")]
                async fn $test() {
                    super::$test(super::Backend::Postgres).await;
                }
            )*
        }
    };
}

on_both_backends!(
    changes_reach_other_replicas_only,
    pruning_keeps_the_newest_and_a_late_replica_rebuilds,
    a_failed_apply_keeps_the_changes,
    a_rolled_back_write_leaves_no_hole,
);
