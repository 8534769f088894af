//! The kit's feed follower applying consent's real change feed, and profile's
//! event feed, over gRPC, to a consumer database of its own (a test table as the
//! effect), on SQLite and PostgreSQL: exactly once under concurrent writes,
//! across crashes and failed applies, and one replica at a time.

#![allow(clippy::unwrap_used)] // a panic is how a test fails

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use attune_kit::config::FeedConfig;
use attune_kit::consent::ConsentChangeSource;
use attune_kit::db::{Backend, TestDatabase, fresh_test_database_on};
use attune_kit::follower::{Apply, ApplyError, BatchSource, CreateFeedCursors, Follower, Progress};
use attune_kit::profile_feed::ProfileFeedSource;
use attune_kit::sea_orm::sea_query::{Alias, Expr, Query, Table};
use attune_kit::sea_orm::{ConnectionTrait, DatabaseConnection, DatabaseTransaction};
use attune_kit::sea_orm_migration::prelude::*;
use attune_proto::profile::v1::event_service_client::EventServiceClient;
use attune_tests::consent_requests::{decision, record};
use attune_tests::profile_events::view;
use attune_tests::{TestApp, backend_tests, consent_pb as pb, eventually, profile_pb};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tonic::transport::Endpoint;

/// The follower's name in `feed_cursors`.
const FEED: &str = "test:consent-changes";
/// Short, so that takeovers are quick to test.
const LEASE: Duration = Duration::from_millis(600);

/// The test table the follower writes: one row per change applied. No uniqueness
/// on `position`, so an item applied twice shows as two rows.
#[derive(DeriveIden)]
enum AppliedChanges {
    Table,
    Id,
    Position,
}

struct CreateAppliedChanges;

impl MigrationName for CreateAppliedChanges {
    fn name(&self) -> &str {
        "test_m0001_applied_changes"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for CreateAppliedChanges {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(AppliedChanges::Table)
                    .col(
                        ColumnDef::new(AppliedChanges::Id)
                            .big_integer()
                            .not_null()
                            .auto_increment()
                            .primary_key(),
                    )
                    .col(
                        ColumnDef::new(AppliedChanges::Position)
                            .big_integer()
                            .not_null(),
                    )
                    .to_owned(),
            )
            .await
    }
}

/// The consumer's migrator: the kit's cursor table and the effect table.
struct ConsumerMigrator;

#[async_trait::async_trait]
impl MigratorTrait for ConsumerMigrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![Box::new(CreateFeedCursors), Box::new(CreateAppliedChanges)]
    }

    fn migration_table_name() -> DynIden {
        "consumer_migrations".into_iden()
    }
}

/// Writes one row per change; fails after writing while `poisoned`, so that a
/// rollback has something to undo.
#[derive(Clone, Default)]
struct RecordChanges {
    poisoned: Arc<AtomicBool>,
    failures: Arc<AtomicU64>,
}

/// An item of a feed with its position: a consent change, a profile feed entry.
trait Positioned {
    fn at(&self) -> i64;
}

impl Positioned for pb::ConsentChange {
    fn at(&self) -> i64 {
        self.position
    }
}

impl Positioned for profile_pb::FeedEntry {
    fn at(&self) -> i64 {
        self.sequence
    }
}

impl<T: Positioned + Send + Sync + 'static> Apply<T> for RecordChanges {
    async fn apply(&self, txn: &DatabaseTransaction, items: &[T]) -> Result<(), ApplyError> {
        for change in items {
            let insert = Query::insert()
                .into_table(AppliedChanges::Table)
                .columns([AppliedChanges::Position])
                .values_panic([change.at().into()])
                .to_owned();
            txn.execute(&insert).await?;
        }
        if self.poisoned.load(Ordering::SeqCst) {
            self.failures.fetch_add(1, Ordering::SeqCst);
            return Err("poisoned batch".into());
        }
        Ok(())
    }
}

/// A consumer database on the app's backend, migrated.
struct Consumer {
    db: DatabaseConnection,
    _database: TestDatabase,
}

impl Consumer {
    async fn create(app: &TestApp) -> Self {
        let backend = Backend::of(&app.config.database.url).unwrap();
        let database = fresh_test_database_on(backend, "consumer")
            .await
            .unwrap()
            .expect("the app's backend is available");
        let db = attune_kit::db::connect(&database.config).await.unwrap();
        attune_kit::db::migrate::<ConsumerMigrator>(&db)
            .await
            .unwrap();
        Self {
            db,
            _database: database,
        }
    }

    /// The positions applied, in the order of the rows (duplicates kept).
    async fn applied(&self) -> Vec<i64> {
        let select = Query::select()
            .column(AppliedChanges::Position)
            .from(AppliedChanges::Table)
            .order_by(AppliedChanges::Id, Order::Asc)
            .to_owned();
        let rows = self.db.query_all(&select).await.unwrap();
        rows.iter()
            .map(|row| row.try_get::<i64>("", "position").unwrap())
            .collect()
    }

    /// The cursor stored for the follower of consent's changes.
    async fn cursor(&self) -> i64 {
        self.cursor_of(FEED).await
    }

    /// The cursor stored for the follower called `name`.
    async fn cursor_of(&self, name: &str) -> i64 {
        let select = Query::select()
            .column(Alias::new("position"))
            .from(Alias::new("feed_cursors"))
            .and_where(Expr::col(Alias::new("name")).eq(name))
            .to_owned();
        let row = self.db.query_one(&select).await.unwrap().unwrap();
        row.try_get::<i64>("", "position").unwrap()
    }

    /// Starts a follower of the app's change feed as a task; dropping or aborting
    /// the handle is a crash (no lease released).
    fn follow(&self, app: &TestApp, apply: RecordChanges) -> Running {
        self.follow_leased(app, apply, LEASE)
    }

    /// Starts a follower of the app's change feed whose lease lasts `lease`.
    fn follow_leased(&self, app: &TestApp, apply: RecordChanges, lease: Duration) -> Running {
        let source = ConsentChangeSource::new(channel_to(app));
        self.follow_source(app, FEED, source, apply, lease)
    }

    /// Starts a follower called `name` of `source`, whose lease lasts `lease`,
    /// as a task.
    fn follow_source<S>(
        &self,
        app: &TestApp,
        name: &'static str,
        source: S,
        apply: RecordChanges,
        lease: Duration,
    ) -> Running
    where
        S: BatchSource,
        S::Item: Positioned,
    {
        let settings = FeedConfig {
            follower_lease: lease,
            ..app.config.feeds.clone()
        };
        let follower = Follower::new(name, self.db.clone(), source, apply, &settings);
        let progress = follower.progress();
        let cancel = CancellationToken::new();
        let task = tokio::spawn(follower.run(cancel.clone()));
        Running {
            progress,
            cancel,
            task,
        }
    }
}

/// A channel to the app's public port.
fn channel_to(app: &TestApp) -> tonic::transport::Channel {
    Endpoint::from_shared(format!("http://{}", app.config.listen))
        .unwrap()
        .connect_lazy()
}

struct Running {
    progress: Progress,
    cancel: CancellationToken,
    task: JoinHandle<()>,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Records `count` decisions, alternating customers and outcomes; returns how
/// many changes they made (one per decision).
async fn write(app: &TestApp, prefix: &str, count: usize) -> usize {
    let mut consent = app.consent();
    for n in 0..count {
        let outcome = if n % 2 == 0 {
            pb::Decision::Granted
        } else {
            pb::Decision::Withdrawn
        };
        consent
            .record_consent(record(
                &format!("{prefix}-{}", n % 7),
                vec![decision("personalization", outcome)],
            ))
            .await
            .unwrap();
    }
    count
}

/// Every position applied once, and as many as were written.
fn assert_exactly_once(applied: &[i64], written: usize) {
    let distinct: BTreeSet<i64> = applied.iter().copied().collect();
    assert_eq!(distinct.len(), applied.len(), "a change was applied twice");
    assert_eq!(applied.len(), written, "applied {applied:?}");
}

backend_tests! {
    async fn a_follower_applies_every_change_exactly_once_while_writers_write(app) {
        let consumer = Consumer::create(&app).await;
        let running = consumer.follow(&app, RecordChanges::default());
        let writers: Vec<_> = (0..3)
            .map(|writer| {
                let app_channel = app.channel.clone();
                tokio::spawn(async move {
                    let mut consent =
                        attune_proto::consent::v1::consent_service_client::ConsentServiceClient::new(app_channel);
                    for n in 0..20 {
                        consent
                            .record_consent(record(
                                &format!("writer-{writer}-{}", n % 5),
                                vec![decision("personalization", pb::Decision::Granted)],
                            ))
                            .await
                            .unwrap();
                    }
                })
            })
            .collect();
        for writer in writers {
            writer.await.unwrap();
        }
        let newest = app.newest_change_position().await;
        eventually("the follower reaches the newest change", async || {
            running.progress.position() >= newest
        })
        .await;
        assert_eq!(consumer.cursor().await, newest);
        assert_exactly_once(&consumer.applied().await, 60);
        assert!(running.progress.lag() < Duration::from_secs(1));
    }

    async fn a_follower_resumes_from_its_stored_cursor_and_a_failed_apply_rolls_back(app) {
        let consumer = Consumer::create(&app).await;
        let apply = RecordChanges::default();
        let first = consumer.follow(&app, apply.clone());
        let mut written = write(&app, "before-crash", 5).await;
        let newest = app.newest_change_position().await;
        eventually("the first follower applied", async || {
            first.progress.position() >= newest
        })
        .await;
        // Crash between batches: the lease is not released.
        drop(first);

        // The next batch fails inside apply, after writing its rows.
        apply.poisoned.store(true, Ordering::SeqCst);
        let second = consumer.follow(&app, apply.clone());
        written += write(&app, "after-crash", 4).await;
        eventually("the poisoned batch failed", async || {
            apply.failures.load(Ordering::SeqCst) >= 2
        })
        .await;
        // Neither the rows nor the cursor of the failed batch were kept.
        assert_eq!(consumer.cursor().await, newest);
        assert_exactly_once(&consumer.applied().await, 5);

        apply.poisoned.store(false, Ordering::SeqCst);
        let newest = app.newest_change_position().await;
        eventually("the second follower caught up", async || {
            second.progress.position() >= newest
        })
        .await;
        assert_eq!(consumer.cursor().await, newest);
        assert_exactly_once(&consumer.applied().await, written);
    }

    async fn of_two_followers_one_applies_and_the_other_takes_over_when_its_lease_lapses(app) {
        let consumer = Consumer::create(&app).await;
        let a = consumer.follow(&app, RecordChanges::default());
        let b = consumer.follow(&app, RecordChanges::default());
        let mut written = write(&app, "two-followers", 6).await;
        let newest = app.newest_change_position().await;
        // A follower counts what it applied just after committing its cursor:
        // wait for both.
        eventually("one follower applied everything", async || {
            consumer.cursor().await >= newest && a.progress.applied() + b.progress.applied() >= 6
        })
        .await;
        let (holder, standby) = match (a.progress.is_holding(), b.progress.is_holding()) {
            (true, false) => (a, b),
            (false, true) => (b, a),
            both => panic!("exactly one follower holds the lease: {both:?}"),
        };
        assert_eq!(standby.progress.applied(), 0);
        assert_eq!(holder.progress.applied(), 6);

        // The holder dies without releasing its lease: the standby takes over
        // once it expires (`eventually` allows 10 s, many leases).
        drop(holder);
        eventually("the standby takes over", async || standby.progress.is_holding()).await;

        written += write(&app, "after-takeover", 4).await;
        let newest = app.newest_change_position().await;
        eventually("the new holder applied the rest", async || {
            standby.progress.position() >= newest
        })
        .await;
        assert_eq!(standby.progress.applied(), 4);
        assert_exactly_once(&consumer.applied().await, written);

        // A clean stop releases the lease at once. Shown with leases of an
        // hour, which no wait of this test could see expire: a new follower
        // holds the lease only if the stopped one gave it up.
        let mut standby = standby;
        stop(&mut standby).await;
        let mut long = consumer.follow_leased(&app, RecordChanges::default(), HOUR);
        eventually("a follower takes the released lease", async || long.progress.is_holding()).await;
        stop(&mut long).await;
        let next = consumer.follow_leased(&app, RecordChanges::default(), HOUR);
        eventually("a new follower takes the hour-long lease released on a clean stop", async || {
            next.progress.is_holding()
        })
        .await;
    }
}

/// A lease no test waits out.
const HOUR: Duration = Duration::from_secs(3600);

/// Stops a follower cleanly (which releases its lease).
async fn stop(running: &mut Running) {
    running.cancel.cancel();
    (&mut running.task).await.unwrap();
}

/// The follower's name for profile's feed.
const PROFILE_FEED: &str = "test:profile-events";

/// Ingests `count` views from `writer` in batches of 7 through `channel`, for
/// customers granted personalization; returns how many were stored (each one
/// feed entry).
async fn ingest_views(
    channel: tonic::transport::Channel,
    writer: &'static str,
    count: usize,
) -> usize {
    let mut events_api = EventServiceClient::new(channel);
    let at = chrono::Utc::now() - chrono::TimeDelta::minutes(1);
    let mut stored = 0;
    let ids: Vec<usize> = (0..count).collect();
    for chunk in ids.chunks(7) {
        let events = chunk
            .iter()
            .map(|n| {
                view(
                    &format!("{writer}-ev-{n}"),
                    &format!("{writer}-{}", n % 3),
                    at,
                    "sku",
                )
            })
            .collect();
        let answer = events_api
            .ingest_events(profile_pb::IngestEventsRequest {
                events,
                request_id: String::new(),
            })
            .await
            .unwrap()
            .into_inner();
        stored += usize::try_from(answer.accepted_count).unwrap();
    }
    stored
}

backend_tests! {
    async fn a_follower_of_profiles_feed_killed_mid_stream_applies_every_event_exactly_once(app) {
        for writer in ["w1", "w2"] {
            for n in 0..3 {
                app.grant(&format!("{writer}-{n}"), &["personalization"]).await;
            }
        }
        let consumer = Consumer::create(&app).await;
        let source = || ProfileFeedSource::new(channel_to(&app));
        let first =
            consumer.follow_source(&app, PROFILE_FEED, source(), RecordChanges::default(), LEASE);
        let first_writer = tokio::spawn(ingest_views(app.channel.clone(), "w1", 60));
        eventually("the first follower applied something", async || {
            first.progress.position() > 0
        })
        .await;
        // Killed while a writer goes on: no lease released, nothing applied
        // beyond the cursor it committed.
        drop(first);
        let second_writer = tokio::spawn(ingest_views(app.channel.clone(), "w2", 60));
        let second =
            consumer.follow_source(&app, PROFILE_FEED, source(), RecordChanges::default(), LEASE);
        let written = first_writer.await.unwrap() + second_writer.await.unwrap();
        assert_eq!(written, 120);
        let head = app.feed_to_head(0).await.last().map_or(0, |entry| entry.sequence);
        eventually("the restarted follower reaches the head", async || {
            second.progress.position() >= head
        })
        .await;
        assert_eq!(consumer.cursor_of(PROFILE_FEED).await, head);
        assert_exactly_once(&consumer.applied().await, written);
    }
}
