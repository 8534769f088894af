//! A property test of the ledger against an in-memory model: random sequences
//! of grants, pending credits, releases, redemptions, expiry, reversals and
//! returns, checking after every step that the account's balances equal the
//! model's and the sums of the ledger, and that none is negative. Runs on the
//! test database (`ATTUNE_TEST_DATABASE_URL`: PostgreSQL, else SQLite), each
//! case under a customer of its own.

use std::sync::atomic::{AtomicU32, Ordering};

use attune_kit::db::{TestDatabase, fresh_test_database};
use chrono::{DateTime, Duration, TimeZone, Utc};
use proptest::prelude::*;
use sea_orm::{DatabaseConnection, FromQueryResult};

use crate::domain::entry::EntryKind;
use crate::ledger::{self, NewEntry};
use crate::store::{WRITE_LOCK, one};

#[derive(Debug, Clone)]
enum Op {
    Grant(i64),
    Pending(i64),
    Redeem(i64),
    /// Moves time past every return window and every lot's lifetime, then runs
    /// the scheduled work.
    ReleaseAndExpire,
    /// A return of `points` of the order made by the `n`th pending credit.
    Return(usize, i64),
    /// Gives back a redemption's points (a cancelled reward).
    Reverse(i64),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (1..200i64).prop_map(Op::Grant),
        (1..200i64).prop_map(Op::Pending),
        (1..300i64).prop_map(Op::Redeem),
        Just(Op::ReleaseAndExpire),
        (0..5usize, 1..300i64).prop_map(|(n, p)| Op::Return(n, p)),
        (1..100i64).prop_map(Op::Reverse),
    ]
}

#[derive(Debug, Default)]
struct Model {
    available: i64,
    pending: i64,
    debt: i64,
    /// Per pending credit: its entry id and what is left pending of it.
    orders: Vec<(i64, i64)>,
}

impl Model {
    fn credit(&mut self, points: i64) {
        self.available += points;
        let pay = self.available.min(self.debt);
        self.available -= pay;
        self.debt -= pay;
    }
}

const LIFETIME: i64 = 30;

fn start() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0)
        .single()
        .expect("a valid time")
}

#[derive(Debug, FromQueryResult)]
struct Sums {
    points: i64,
    pending: i64,
    debt: i64,
}

async fn check(db: &DatabaseConnection, customer: &str, model: &Model, now: DateTime<Utc>) {
    let view = ledger::view(db, customer, now)
        .await
        .expect("readable")
        .expect("an account");
    let sums: Sums = one(
        db,
        "SELECT CAST(COALESCE(SUM(points), 0) AS BIGINT) AS points, \
         CAST(COALESCE(SUM(pending_points), 0) AS BIGINT) AS pending, \
         CAST(COALESCE(SUM(debt_points), 0) AS BIGINT) AS debt \
         FROM loyalty_entries WHERE customer_id = ?",
        vec![customer.into()],
    )
    .await
    .expect("readable")
    .expect("a row");
    assert_eq!(
        (view.available, view.pending, view.debt),
        (sums.points, sums.pending, sums.debt),
        "account = sum of the ledger"
    );
    assert_eq!(
        (view.available, view.pending, view.debt),
        (model.available, model.pending, model.debt),
        "ledger = model"
    );
    assert!(view.available >= 0 && view.pending >= 0 && view.debt >= 0);
    let lots: i64 = view.upcoming_expiries.iter().map(|(_, n)| n).sum();
    assert_eq!(
        lots, view.available,
        "the lots hold exactly the available points"
    );
}

async fn run(db: &DatabaseConnection, customer: &str, ops: Vec<Op>) {
    let lifetime = Duration::days(LIFETIME);
    let mut now = start();
    let mut model = Model::default();
    let mut key = 0;
    let mut next_key = |kind: &str| {
        key += 1;
        format!("{customer}/{kind}/{key}")
    };
    {
        let txn = attune_kit::db::begin_write(db, WRITE_LOCK)
            .await
            .expect("begin");
        ledger::open(&txn, customer, now).await.expect("open");
        txn.commit().await.expect("commit");
    }
    for op in ops {
        now += Duration::minutes(1);
        let txn = attune_kit::db::begin_write(db, WRITE_LOCK)
            .await
            .expect("begin");
        match op {
            Op::Grant(n) | Op::Reverse(n) => {
                let kind = if matches!(op, Op::Grant(_)) {
                    EntryKind::Adjust
                } else {
                    EntryKind::Reversal
                };
                ledger::credit(
                    &txn,
                    customer,
                    NewEntry::new(kind, n, next_key("credit")),
                    now,
                    lifetime,
                )
                .await
                .expect("credit");
                model.credit(n);
            }
            Op::Pending(n) => {
                let mut entry = NewEntry::new(EntryKind::Pending, 0, next_key("pending"));
                entry.pending_points = n;
                entry.release_time = Some(now + Duration::days(1));
                let booked = ledger::book(&txn, customer, entry, now, lifetime)
                    .await
                    .expect("book")
                    .expect("new key");
                model.pending += n;
                model.orders.push((booked.entry_id, n));
            }
            Op::Redeem(n) => {
                let result = ledger::debit(
                    &txn,
                    customer,
                    NewEntry::new(EntryKind::Redeem, -n, next_key("redeem")),
                    now,
                    lifetime,
                )
                .await;
                match result {
                    Ok(_) => model.available -= n,
                    Err(ledger::DebitError::Insufficient { .. }) => assert!(n > model.available),
                    Err(e) => panic!("{e}"),
                }
            }
            Op::ReleaseAndExpire => {
                now += lifetime + Duration::days(2);
                ledger::settle(&txn, Some(customer), now, lifetime)
                    .await
                    .expect("settle");
                // Every old lot expires (debt > 0 means none is left); then the
                // released points arrive, paying debt first, and live on.
                let released = model.pending;
                model.available = 0;
                model.pending = 0;
                for order in &mut model.orders {
                    order.1 = 0;
                }
                model.credit(released);
            }
            Op::Return(n, points) => {
                if let Some(&(entry_id, left)) = model.orders.get(n) {
                    let template = NewEntry::new(EntryKind::Reversal, 0, next_key("return"));
                    ledger::take_back(&txn, customer, entry_id, points, template, now, lifetime)
                        .await
                        .expect("take back");
                    let from_pending = left.min(points);
                    model.orders[n].1 -= from_pending;
                    model.pending -= from_pending;
                    let rest = points - from_pending;
                    let from_available = model.available.min(rest);
                    model.available -= from_available;
                    model.debt += rest - from_available;
                }
            }
        }
        txn.commit().await.expect("commit");
        check(db, customer, &model, now).await;
    }
}

static CASE: AtomicU32 = AtomicU32::new(0);

fn database() -> &'static (tokio::runtime::Runtime, TestDatabase, DatabaseConnection) {
    static DB: std::sync::OnceLock<(tokio::runtime::Runtime, TestDatabase, DatabaseConnection)> =
        std::sync::OnceLock::new();
    DB.get_or_init(|| {
        let runtime = tokio::runtime::Runtime::new().expect("a runtime");
        let (database, db) = runtime.block_on(async {
            let database = fresh_test_database("loyalty-model")
                .await
                .expect("a test database");
            let db = attune_kit::db::connect(&database.config)
                .await
                .expect("connect");
            attune_kit::db::migrate::<crate::Migrator>(&db)
                .await
                .expect("migrate");
            (database, db)
        });
        (runtime, database, db)
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn the_ledger_matches_the_model_after_every_step(ops in proptest::collection::vec(op(), 1..30)) {
        let (runtime, _, db) = database();
        let customer = format!("model-{}", CASE.fetch_add(1, Ordering::Relaxed));
        runtime.block_on(run(db, &customer, ops));
    }
}

#[test]
fn a_return_of_spent_points_becomes_debt_that_the_next_credit_pays() {
    let (runtime, _, db) = database();
    runtime.block_on(run(
        db,
        "model-debt",
        vec![
            Op::Pending(50),
            Op::ReleaseAndExpire,
            Op::Redeem(40),
            Op::Return(0, 30),
            Op::Grant(25),
            Op::Grant(10),
        ],
    ));
}
