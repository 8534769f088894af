//! The points ledger: accounts and their append-only entries.
//!
//! Every function here runs inside a transaction that holds loyalty's write lock
//! (see [`crate::app::Loyalty::begin_write`]), so what it reads is what it
//! changes: a balance checked before a debit cannot move before the commit. The
//! account row carries the sums of its entries (available, pending, debt),
//! changed in the same statement batch as each entry, which is how
//! "available = sum of the ledger" holds at every commit.
//!
//! Credits of available points are lots: `remaining` says what is left of each;
//! debits (redemptions, expiry, returns) consume the oldest lots first (FIFO, by
//! expiry then booking order), so the sum of `remaining` is always the available
//! balance and expiry takes exactly what was not spent.

use attune_kit::ApiError;
use attune_kit::db::micros::{from_micros, to_micros};
use chrono::{DateTime, Utc};
use sea_orm::{ConnectionTrait, DatabaseTransaction, DbErr, FromQueryResult};
use serde::{Deserialize, Serialize};

use crate::domain::entry::{EntryKind, ReasonCode};
use crate::domain::tiers::{self, Basis, Ladder, Standing};
use crate::rules;
use crate::store::{all, exec, number, one};

/// One booked entry, as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    pub entry_id: i64,
    pub customer_id: String,
    pub kind: EntryKind,
    pub points: i64,
    pub pending_points: i64,
    pub debt_points: i64,
    pub rule_id: String,
    pub rule_version: i32,
    pub reason: Option<ReasonCode>,
    pub description: String,
    pub order_id: String,
    pub expire_time: Option<DateTime<Utc>>,
    pub idempotency_key: String,
    pub create_time: DateTime<Utc>,
}

/// An entry to book.
#[derive(Debug, Clone)]
pub struct NewEntry {
    pub kind: EntryKind,
    pub points: i64,
    pub pending_points: i64,
    pub debt_points: i64,
    pub rule_id: String,
    pub rule_version: i32,
    pub reason: Option<ReasonCode>,
    pub description: String,
    pub order_id: String,
    pub idempotency_key: String,
    /// For a PENDING credit: when it becomes available.
    pub release_time: Option<DateTime<Utc>>,
    /// What it adds to tier qualification by points.
    pub qualifying: i64,
    /// What it adds to tier qualification by spend, and in which currency.
    pub spend_minor: i64,
    pub spend_currency: String,
}

impl NewEntry {
    /// An entry of `kind` changing available points by `points`, keyed by `key`.
    pub fn new(kind: EntryKind, points: i64, key: impl Into<String>) -> Self {
        Self {
            kind,
            points,
            pending_points: 0,
            debt_points: 0,
            rule_id: String::new(),
            rule_version: 0,
            reason: None,
            description: String::new(),
            order_id: String::new(),
            idempotency_key: key.into(),
            release_time: None,
            qualifying: 0,
            spend_minor: 0,
            spend_currency: String::new(),
        }
    }
}

/// An account as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountView {
    pub customer_id: String,
    pub available: i64,
    pub pending: i64,
    pub debt: i64,
    pub qualifying_value: i64,
    pub tier: Option<tiers::Tier>,
    pub tier_review_time: Option<DateTime<Utc>>,
    /// (expire time, points), soonest first; the first [`EXPIRIES_SHOWN`].
    pub upcoming_expiries: Vec<(DateTime<Utc>, i64)>,
    /// When more expiries follow: the last one shown (microseconds), where
    /// [`upcoming_expiries`] continues. Defaulted for outcomes stored before.
    #[serde(default)]
    pub expiries_after: Option<i64>,
    pub open_time: DateTime<Utc>,
}

#[derive(Debug, Clone, FromQueryResult)]
struct AccountRow {
    available: i64,
    pending: i64,
    debt: i64,
    tier_id: String,
    tier_review_time: Option<i64>,
}

#[derive(Debug, Clone, FromQueryResult)]
pub(crate) struct EntryRow {
    entry_id: i64,
    customer_id: String,
    kind: String,
    points: i64,
    pending_points: i64,
    debt_points: i64,
    rule_id: String,
    rule_version: i32,
    reason_code: String,
    description: String,
    order_id: String,
    expire_time: Option<i64>,
    idempotency_key: String,
    create_time: i64,
}

pub(crate) const ENTRY_COLUMNS: &str = "entry_id, customer_id, kind, points, pending_points, \
     debt_points, rule_id, rule_version, reason_code, description, order_id, expire_time, \
     idempotency_key, create_time";

fn time(micros: i64) -> Result<DateTime<Utc>, DbErr> {
    from_micros(micros).map_err(|e| DbErr::Custom(format!("stored time out of range: {}", e.0)))
}

impl EntryRow {
    pub(crate) fn into_entry(self) -> Result<Entry, DbErr> {
        Ok(Entry {
            entry_id: self.entry_id,
            customer_id: self.customer_id,
            kind: EntryKind::from_stored(&self.kind)
                .ok_or_else(|| DbErr::Custom("unknown entry kind stored".into()))?,
            points: self.points,
            pending_points: self.pending_points,
            debt_points: self.debt_points,
            rule_id: self.rule_id,
            rule_version: self.rule_version,
            reason: ReasonCode::from_stored(&self.reason_code),
            description: self.description,
            order_id: self.order_id,
            expire_time: self.expire_time.map(time).transpose()?,
            idempotency_key: self.idempotency_key,
            create_time: time(self.create_time)?,
        })
    }
}

/// Whether `customer` has an account.
pub async fn exists(db: &impl ConnectionTrait, customer: &str) -> Result<bool, DbErr> {
    Ok(number(
        db,
        "SELECT CAST(COUNT(*) AS BIGINT) AS n FROM loyalty_accounts WHERE customer_id = ?",
        vec![customer.into()],
    )
    .await?
        > 0)
}

/// Moves a merged visitor's loyalty to the customer they turned out to be, in
/// the follower's transaction (so once per merge entry; a replay finds nothing
/// left under `source`). Every entry, lot, order, voucher, offer and message is
/// re-attributed as it is: the ledger keeps each entry, so the customer's
/// balance is still the sum of their (now larger) ledger. Without an account of
/// their own the customer takes the visitor's; with one, the sums add up, a
/// debt that moved is paid from the available points at once (one
/// DEBT_PAYMENT entry, keyed by the merge), and the tier is reviewed.
pub async fn merge_into(
    txn: &DatabaseTransaction,
    source: &str,
    target: &str,
    now: DateTime<Utc>,
    lifetime: chrono::Duration,
) -> Result<(), DbErr> {
    if source.is_empty() || target.is_empty() || source == target {
        return Ok(());
    }
    // An order both recorded keeps the customer's row (its points stay booked).
    exec(
        txn,
        "DELETE FROM loyalty_orders WHERE customer_id = ? AND order_id IN \
         (SELECT order_id FROM loyalty_orders WHERE customer_id = ?)",
        vec![source.into(), target.into()],
    )
    .await?;
    for table in [
        "loyalty_entries",
        "loyalty_orders",
        "loyalty_vouchers",
        "loyalty_offers",
        "loyalty_messages",
    ] {
        exec(
            txn,
            &format!("UPDATE {table} SET customer_id = ? WHERE customer_id = ?"),
            vec![target.into(), source.into()],
        )
        .await?;
    }
    let Some(visitor) = account_row(txn, source).await? else {
        return Ok(());
    };
    if !exists(txn, target).await? {
        exec(
            txn,
            "UPDATE loyalty_accounts SET customer_id = ?, update_time = ? WHERE customer_id = ?",
            vec![target.into(), to_micros(now).into(), source.into()],
        )
        .await?;
        return Ok(());
    }
    exec(
        txn,
        "UPDATE loyalty_accounts SET available = available + ?, pending = pending + ?, \
         debt = debt + ?, update_time = ? WHERE customer_id = ?",
        vec![
            visitor.available.into(),
            visitor.pending.into(),
            visitor.debt.into(),
            to_micros(now).into(),
            target.into(),
        ],
    )
    .await?;
    exec(
        txn,
        "DELETE FROM loyalty_accounts WHERE customer_id = ?",
        vec![source.into()],
    )
    .await?;
    pay_debt(txn, target, &format!("merge/{source}"), now, lifetime).await?;
    review_tier(txn, target, now).await?;
    Ok(())
}

async fn account_row(
    db: &impl ConnectionTrait,
    customer: &str,
) -> Result<Option<AccountRow>, DbErr> {
    one(
        db,
        "SELECT available, pending, debt, tier_id, tier_review_time \
         FROM loyalty_accounts WHERE customer_id = ?",
        vec![customer.into()],
    )
    .await
}

/// Opens `customer`'s account unless it is open. Returns whether it opened now.
pub async fn open(
    txn: &DatabaseTransaction,
    customer: &str,
    now: DateTime<Utc>,
) -> Result<bool, DbErr> {
    let inserted = exec(
        txn,
        "INSERT INTO loyalty_accounts (customer_id, available, pending, debt, tier_id, \
         tier_review_time, open_time, update_time) VALUES (?, 0, 0, 0, '', NULL, ?, ?) \
         ON CONFLICT (customer_id) DO NOTHING",
        vec![
            customer.into(),
            to_micros(now).into(),
            to_micros(now).into(),
        ],
    )
    .await?
    .rows_affected()
        == 1;
    if inserted {
        review_tier(txn, customer, now).await?;
    }
    Ok(inserted)
}

/// Books `entry` for `customer` (whose account exists) and moves the account's
/// sums with it. A credit of available points becomes a lot expiring at
/// `now + lifetime`. Returns the entry, or `None` when its idempotency key was
/// booked before (nothing changes then).
pub async fn book(
    txn: &DatabaseTransaction,
    customer: &str,
    entry: NewEntry,
    now: DateTime<Utc>,
    lifetime: chrono::Duration,
) -> Result<Option<Entry>, DbErr> {
    Ok(book_returning(txn, customer, entry, now, lifetime)
        .await?
        .map(|(entry, _)| entry))
}

/// [`book`], also returning the account as the entry left it. Two statements:
/// the entry id is taken in the insert itself (the write lock makes MAX + 1
/// safe), and the account's sums come back from their update, so the debt
/// payment and tier review that follow need not read them again.
async fn book_returning(
    txn: &DatabaseTransaction,
    customer: &str,
    entry: NewEntry,
    now: DateTime<Utc>,
    lifetime: chrono::Duration,
) -> Result<Option<(Entry, AccountRow)>, DbErr> {
    let is_lot = entry.points > 0 && entry.kind != EntryKind::DebtPayment;
    let expire_time = is_lot.then(|| now + lifetime);
    // `WHERE TRUE` lets SQLite parse ON CONFLICT after INSERT ... SELECT; MAX
    // stands alone in its subquery so both databases read it from the index.
    let inserted = one::<crate::store::Number>(
        txn,
        "INSERT INTO loyalty_entries (entry_id, customer_id, kind, points, pending_points, \
         debt_points, rule_id, rule_version, reason_code, description, order_id, expire_time, \
         idempotency_key, create_time, remaining, pending_remaining, release_time, qualifying, \
         spend_minor, spend_currency) \
         SELECT (SELECT CAST(COALESCE(MAX(entry_id), 0) + 1 AS BIGINT) FROM loyalty_entries), \
         ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ? WHERE TRUE \
         ON CONFLICT (idempotency_key) DO NOTHING RETURNING entry_id AS n",
        vec![
            customer.into(),
            entry.kind.as_str().into(),
            entry.points.into(),
            entry.pending_points.into(),
            entry.debt_points.into(),
            entry.rule_id.clone().into(),
            entry.rule_version.into(),
            entry.reason.map_or("", ReasonCode::as_str).into(),
            entry.description.clone().into(),
            entry.order_id.clone().into(),
            expire_time.map(to_micros).into(),
            entry.idempotency_key.clone().into(),
            to_micros(now).into(),
            (if is_lot { entry.points } else { 0 }).into(),
            entry.pending_points.max(0).into(),
            entry.release_time.map(to_micros).into(),
            entry.qualifying.into(),
            entry.spend_minor.into(),
            entry.spend_currency.clone().into(),
        ],
    )
    .await?;
    let Some(crate::store::Number { n: entry_id }) = inserted else {
        return Ok(None);
    };
    let account: AccountRow = one(
        txn,
        "UPDATE loyalty_accounts SET available = available + ?, pending = pending + ?, \
         debt = debt + ?, update_time = ? WHERE customer_id = ? \
         RETURNING available, pending, debt, tier_id, tier_review_time",
        vec![
            entry.points.into(),
            entry.pending_points.into(),
            entry.debt_points.into(),
            to_micros(now).into(),
            customer.into(),
        ],
    )
    .await?
    .ok_or_else(|| DbErr::RecordNotFound("loyalty account".into()))?;
    if entry.points < 0 {
        consume_fifo(txn, customer, -entry.points).await?;
    }
    let entry = Entry {
        entry_id,
        customer_id: customer.to_owned(),
        kind: entry.kind,
        points: entry.points,
        pending_points: entry.pending_points,
        debt_points: entry.debt_points,
        rule_id: entry.rule_id,
        rule_version: entry.rule_version,
        reason: entry.reason,
        description: entry.description,
        order_id: entry.order_id,
        expire_time,
        idempotency_key: entry.idempotency_key,
        create_time: now,
    };
    Ok(Some((entry, account)))
}

#[derive(Debug, FromQueryResult)]
struct Lot {
    entry_id: i64,
    remaining: i64,
}

/// Takes `points` from the oldest lots.
async fn consume_fifo(txn: &DatabaseTransaction, customer: &str, points: i64) -> Result<(), DbErr> {
    let lots: Vec<Lot> = all(
        txn,
        "SELECT entry_id, remaining FROM loyalty_entries WHERE customer_id = ? AND remaining > 0 \
         ORDER BY expire_time, entry_id",
        vec![customer.into()],
    )
    .await?;
    let mut left = points;
    for lot in lots {
        if left == 0 {
            break;
        }
        let take = left.min(lot.remaining);
        exec(
            txn,
            "UPDATE loyalty_entries SET remaining = remaining - ? WHERE entry_id = ?",
            vec![take.into(), lot.entry_id.into()],
        )
        .await?;
        left -= take;
    }
    if left > 0 {
        return Err(DbErr::Custom(
            "ledger lots do not cover the available balance".into(),
        ));
    }
    Ok(())
}

/// The current available balance and debt.
pub async fn balances(txn: &DatabaseTransaction, customer: &str) -> Result<(i64, i64), DbErr> {
    let row = account_row(txn, customer)
        .await?
        .ok_or_else(|| DbErr::RecordNotFound("loyalty account".into()))?;
    Ok((row.available, row.debt))
}

/// Credits `entry` (positive `points`) and pays debt from it first. Returns the
/// credit (or `None` when its key was booked before).
pub async fn credit(
    txn: &DatabaseTransaction,
    customer: &str,
    entry: NewEntry,
    now: DateTime<Utc>,
    lifetime: chrono::Duration,
) -> Result<Option<Entry>, DbErr> {
    let ladder = rules::ladder(txn).await?;
    credit_under(txn, customer, entry, now, lifetime, ladder.as_ref()).await
}

/// [`credit`] under `ladder`, the tier ladder the caller read in this
/// transaction (a batch reads it once, not once per entry).
pub async fn credit_under(
    txn: &DatabaseTransaction,
    customer: &str,
    entry: NewEntry,
    now: DateTime<Utc>,
    lifetime: chrono::Duration,
    ladder: Option<&Ladder>,
) -> Result<Option<Entry>, DbErr> {
    let key = entry.idempotency_key.clone();
    let Some((booked, account)) = book_returning(txn, customer, entry, now, lifetime).await? else {
        return Ok(None);
    };
    pay_debt_from(
        txn,
        customer,
        &key,
        (account.available, account.debt),
        now,
        lifetime,
    )
    .await?;
    // Paying debt moves no tier fields: the standing is the one just returned.
    let standing = Standing {
        tier_id: account.tier_id,
        review_time: account.tier_review_time.map(time).transpose()?,
    };
    review_standing(txn, customer, ladder, standing, now).await?;
    Ok(Some(booked))
}

/// Pays debt from available points, as far as they go.
pub(crate) async fn pay_debt(
    txn: &DatabaseTransaction,
    customer: &str,
    key: &str,
    now: DateTime<Utc>,
    lifetime: chrono::Duration,
) -> Result<(), DbErr> {
    let balances = balances(txn, customer).await?;
    pay_debt_from(txn, customer, key, balances, now, lifetime).await
}

/// Pays debt from available points given the account's (available, debt).
async fn pay_debt_from(
    txn: &DatabaseTransaction,
    customer: &str,
    key: &str,
    (available, debt): (i64, i64),
    now: DateTime<Utc>,
    lifetime: chrono::Duration,
) -> Result<(), DbErr> {
    let pay = available.min(debt);
    if pay > 0 {
        let mut entry = NewEntry::new(EntryKind::DebtPayment, -pay, format!("{key}/debt"));
        entry.debt_points = -pay;
        entry.description = "Debt paid from new points".into();
        book(txn, customer, entry, now, lifetime).await?;
    }
    Ok(())
}

/// Why a debit was refused.
#[derive(Debug, thiserror::Error)]
pub enum DebitError {
    #[error("{requested} points requested, {available} available")]
    Insufficient { requested: i64, available: i64 },
    #[error(transparent)]
    Database(#[from] DbErr),
}

impl From<DebitError> for ApiError {
    fn from(error: DebitError) -> Self {
        match error {
            DebitError::Insufficient { .. } => ApiError::FailedPrecondition(error.to_string()),
            DebitError::Database(e) => ApiError::from(e),
        }
    }
}

/// Debits `entry` (negative `points`) if the available points cover it, else
/// books nothing.
pub async fn debit(
    txn: &DatabaseTransaction,
    customer: &str,
    entry: NewEntry,
    now: DateTime<Utc>,
    lifetime: chrono::Duration,
) -> Result<Entry, DebitError> {
    let (available, _) = balances(txn, customer).await?;
    if available < -entry.points {
        return Err(DebitError::Insufficient {
            requested: -entry.points,
            available,
        });
    }
    book(txn, customer, entry, now, lifetime)
        .await?
        .ok_or_else(|| DebitError::Database(DbErr::Custom("debit key booked twice".into())))
}

/// Takes `points` back (a return): from the order's pending credit first, then
/// from available points, and records what was already spent as debt. Never
/// makes a balance negative.
pub async fn take_back(
    txn: &DatabaseTransaction,
    customer: &str,
    order_entry_id: i64,
    points: i64,
    mut template: NewEntry,
    now: DateTime<Utc>,
    lifetime: chrono::Duration,
) -> Result<Vec<Entry>, DbErr> {
    let mut booked = Vec::new();
    let pending_left = number(
        txn,
        "SELECT pending_remaining AS n FROM loyalty_entries WHERE entry_id = ?",
        vec![order_entry_id.into()],
    )
    .await?;
    let from_pending = pending_left.min(points);
    let key = template.idempotency_key.clone();
    if from_pending > 0 {
        exec(
            txn,
            "UPDATE loyalty_entries SET pending_remaining = pending_remaining - ? WHERE entry_id = ?",
            vec![from_pending.into(), order_entry_id.into()],
        )
        .await?;
        let mut entry = template.clone();
        entry.kind = EntryKind::Reversal;
        entry.points = 0;
        entry.pending_points = -from_pending;
        entry.idempotency_key = format!("{key}/pending");
        booked.extend(book(txn, customer, entry, now, lifetime).await?);
    }
    let rest = points - from_pending;
    if rest > 0 {
        let (available, _) = balances(txn, customer).await?;
        let from_available = available.min(rest);
        if from_available > 0 {
            let mut entry = template.clone();
            entry.kind = EntryKind::Reversal;
            entry.points = -from_available;
            entry.qualifying = 0;
            entry.spend_minor = 0;
            entry.idempotency_key = format!("{key}/available");
            booked.extend(book(txn, customer, entry, now, lifetime).await?);
        }
        let owed = rest - from_available;
        if owed > 0 {
            let mut entry = NewEntry::new(EntryKind::Debt, 0, format!("{key}/debt"));
            entry.debt_points = owed;
            entry.order_id = template.order_id.clone();
            entry.description = "Returned points that were already spent".into();
            booked.extend(book(txn, customer, entry, now, lifetime).await?);
        }
    }
    // The tier qualification moves with the return even when no points could.
    if template.qualifying != 0 || template.spend_minor != 0 {
        if booked.is_empty() {
            template.kind = EntryKind::Reversal;
            template.points = 0;
            template.idempotency_key = format!("{key}/qualifying");
            booked.extend(book(txn, customer, template, now, lifetime).await?);
        } else {
            exec(
                txn,
                "UPDATE loyalty_entries SET qualifying = ?, spend_minor = ?, spend_currency = ? \
                 WHERE entry_id = ?",
                vec![
                    template.qualifying.into(),
                    template.spend_minor.into(),
                    template.spend_currency.into(),
                    booked[0].entry_id.into(),
                ],
            )
            .await?;
        }
    }
    Ok(booked)
}

#[derive(Debug, FromQueryResult)]
struct Due {
    entry_id: i64,
    customer_id: String,
    n: i64,
}

/// What [`settle`] did.
#[derive(Debug, Default, Clone, Copy, Serialize, Deserialize)]
pub struct Settled {
    pub released: i64,
    pub expired: i64,
    pub reviewed: i32,
}

/// The scheduled work for `customer` (or everyone): releases pending credits
/// whose return window closed, expires lots past their expiry (oldest first),
/// and reviews tiers whose period ended.
pub async fn settle(
    txn: &DatabaseTransaction,
    customer: Option<&str>,
    now: DateTime<Utc>,
    lifetime: chrono::Duration,
) -> Result<Settled, DbErr> {
    let mut done = Settled::default();
    let (filter, mut values) = match customer {
        Some(c) => (" AND customer_id = ?", vec![c.into()]),
        None => ("", vec![]),
    };
    values.insert(0, to_micros(now).into());
    let releases: Vec<Due> = all(
        txn,
        &format!(
            "SELECT entry_id, customer_id, pending_remaining AS n FROM loyalty_entries \
             WHERE pending_remaining > 0 AND release_time <= ?{filter} ORDER BY entry_id"
        ),
        values.clone(),
    )
    .await?;
    for due in releases {
        exec(
            txn,
            "UPDATE loyalty_entries SET pending_remaining = 0 WHERE entry_id = ?",
            vec![due.entry_id.into()],
        )
        .await?;
        let mut entry = NewEntry::new(
            EntryKind::Release,
            due.n,
            format!("release/{}", due.entry_id),
        );
        entry.pending_points = -due.n;
        entry.description = "Return window closed".into();
        credit(txn, &due.customer_id, entry, now, lifetime).await?;
        done.released += due.n;
    }
    let expiring: Vec<Due> = all(
        txn,
        &format!(
            "SELECT entry_id, customer_id, remaining AS n FROM loyalty_entries \
             WHERE remaining > 0 AND expire_time <= ?{filter} ORDER BY expire_time, entry_id"
        ),
        values.clone(),
    )
    .await?;
    for due in expiring {
        let mut entry = NewEntry::new(
            EntryKind::Expire,
            -due.n,
            format!("expire/{}", due.entry_id),
        );
        entry.description = "Points expired".into();
        // The lot is the oldest by construction: FIFO consumption takes it.
        book(txn, &due.customer_id, entry, now, lifetime).await?;
        done.expired += due.n;
    }
    #[derive(Debug, FromQueryResult)]
    struct Review {
        customer_id: String,
    }
    let reviews: Vec<Review> = all(
        txn,
        &format!(
            "SELECT customer_id FROM loyalty_accounts WHERE tier_review_time <= ?{filter} \
             ORDER BY customer_id"
        ),
        values,
    )
    .await?;
    for review in reviews {
        review_tier(txn, &review.customer_id, now).await?;
        done.reviewed += 1;
    }
    Ok(done)
}

/// The qualifying value of `customer` at `now` under `basis`.
async fn qualifying_value(
    db: &impl ConnectionTrait,
    customer: &str,
    basis: &Basis,
    now: DateTime<Utc>,
) -> Result<i64, DbErr> {
    let since = to_micros(now - tiers::period());
    match basis {
        Basis::Points => {
            number(
                db,
                "SELECT CAST(COALESCE(SUM(qualifying), 0) AS BIGINT) AS n FROM loyalty_entries \
                 WHERE customer_id = ? AND create_time > ?",
                vec![customer.into(), since.into()],
            )
            .await
        }
        Basis::Spend(currency) => {
            number(
                db,
                "SELECT CAST(COALESCE(SUM(spend_minor), 0) AS BIGINT) AS n FROM loyalty_entries \
                 WHERE customer_id = ? AND create_time > ? AND spend_currency = ?",
                vec![customer.into(), since.into(), currency.clone().into()],
            )
            .await
        }
    }
}

/// Moves `customer` in the ladder as [`tiers::next_standing`] says.
pub async fn review_tier(
    txn: &DatabaseTransaction,
    customer: &str,
    now: DateTime<Utc>,
) -> Result<(), DbErr> {
    let Some(ladder) = rules::ladder(txn).await? else {
        return Ok(());
    };
    let Some(row) = account_row(txn, customer).await? else {
        return Ok(());
    };
    let current = Standing {
        tier_id: row.tier_id,
        review_time: row.tier_review_time.map(time).transpose()?,
    };
    review_standing(txn, customer, Some(&ladder), current, now).await
}

/// Moves `customer` from `current` under `ladder` (none: no tiers).
async fn review_standing(
    txn: &DatabaseTransaction,
    customer: &str,
    ladder: Option<&Ladder>,
    current: Standing,
    now: DateTime<Utc>,
) -> Result<(), DbErr> {
    let Some(ladder) = ladder else {
        return Ok(());
    };
    let value = qualifying_value(txn, customer, &ladder.basis, now).await?;
    let next = tiers::next_standing(ladder, &current, value, now);
    if next != current {
        exec(
            txn,
            "UPDATE loyalty_accounts SET tier_id = ?, tier_review_time = ? WHERE customer_id = ?",
            vec![
                next.tier_id.into(),
                next.review_time.map(to_micros).into(),
                customer.into(),
            ],
        )
        .await?;
    }
    Ok(())
}

/// The tier benefits' earn multiplier of `customer` now (0: none).
pub async fn tier_multiplier(db: &impl ConnectionTrait, customer: &str) -> Result<i64, DbErr> {
    let Some(ladder) = rules::ladder(db).await? else {
        return Ok(0);
    };
    let tier_id = match account_row(db, customer).await? {
        Some(row) => row.tier_id,
        None => ladder
            .tiers
            .first()
            .map(|t| t.tier_id.clone())
            .unwrap_or_default(),
    };
    Ok(ladder
        .tier(&tier_id)
        .map_or(0, |t| i64::from(t.benefits.earn_multiplier_bp)))
}

/// How many upcoming expiries an account shows; the rest are listed by
/// [`upcoming_expiries`] from the account's page token.
pub const EXPIRIES_SHOWN: u32 = 100;

/// One row of [`VIEW_SQL`]: the account, the ladder, and one part of it.
#[derive(Debug, FromQueryResult)]
struct ViewRow {
    customer_id: String,
    available: i64,
    pending: i64,
    debt: i64,
    tier_id: String,
    tier_review_time: Option<i64>,
    open_time: i64,
    ladder: Option<String>,
    /// `q`: qualifying sums of one spend currency; `e`: one upcoming expiry;
    /// `None`: the account has neither.
    part: Option<String>,
    currency: Option<String>,
    at: Option<i64>,
    a: Option<i64>,
    b: Option<i64>,
}

/// The whole account view in one statement (GetAccount runs on every page, and
/// on SQLite each statement is a thread handoff): the account row, the ladder,
/// the qualifying sums per spend currency of the last period (points add up over
/// every currency; spend is the ladder's currency's row), and the first
/// upcoming expiries plus one (to tell whether more follow). Exact: every sum
/// is read from the ledger by this statement, nothing is cached.
const VIEW_SQL: &str = "WITH acct AS (SELECT customer_id, available, pending, debt, tier_id, \
     tier_review_time, open_time FROM loyalty_accounts WHERE customer_id = ?) \
     SELECT acct.customer_id, acct.available, acct.pending, acct.debt, acct.tier_id, \
     acct.tier_review_time, acct.open_time, \
     (SELECT body FROM loyalty_settings WHERE setting = ?) AS ladder, \
     x.part, x.currency, x.at, x.a, x.b FROM acct LEFT JOIN (\
     SELECT 'q' AS part, spend_currency AS currency, CAST(0 AS BIGINT) AS at, \
     CAST(SUM(qualifying) AS BIGINT) AS a, CAST(SUM(spend_minor) AS BIGINT) AS b \
     FROM loyalty_entries WHERE customer_id = ? AND create_time > ? GROUP BY spend_currency \
     UNION ALL SELECT * FROM (SELECT 'e' AS part, '' AS currency, expire_time AS at, \
     CAST(SUM(remaining) AS BIGINT) AS a, CAST(0 AS BIGINT) AS b FROM loyalty_entries \
     WHERE customer_id = ? AND remaining > 0 GROUP BY expire_time ORDER BY expire_time \
     LIMIT ?) e) x ON 1 = 1 ORDER BY x.part, x.at";

/// `customer`'s account as the API shows it, or `None` without one.
pub async fn view(
    db: &impl ConnectionTrait,
    customer: &str,
    now: DateTime<Utc>,
) -> Result<Option<AccountView>, DbErr> {
    let since = to_micros(now - tiers::period());
    let rows: Vec<ViewRow> = all(
        db,
        VIEW_SQL,
        vec![
            customer.into(),
            rules::LADDER.into(),
            customer.into(),
            since.into(),
            customer.into(),
            i64::from(EXPIRIES_SHOWN + 1).into(),
        ],
    )
    .await?;
    let Some(first) = rows.first() else {
        return Ok(None);
    };
    let ladder: Option<Ladder> = first
        .ladder
        .as_deref()
        .map(rules::parse_ladder)
        .transpose()?;
    let mut points = 0;
    let mut spend = 0;
    let mut expiries = Vec::new();
    for row in &rows {
        match (row.part.as_deref(), row.at, row.a) {
            (Some("q"), _, Some(qualifying)) => {
                points += qualifying;
                if let Some(Basis::Spend(currency)) = ladder.as_ref().map(|l| &l.basis)
                    && row.currency.as_deref() == Some(currency.as_str())
                {
                    spend += row.b.unwrap_or(0);
                }
            }
            (Some("e"), Some(at), Some(n)) => expiries.push((time(at)?, n)),
            _ => {}
        }
    }
    let more_expiries = expiries.len() > EXPIRIES_SHOWN as usize;
    expiries.truncate(EXPIRIES_SHOWN as usize);
    let row = &rows[0];
    let qualifying_value = match ladder.as_ref().map(|l| &l.basis) {
        Some(Basis::Points) => points,
        Some(Basis::Spend(_)) => spend,
        None => 0,
    };
    let expiries_after = more_expiries
        .then(|| expiries.last().map(|(at, _)| to_micros(*at)))
        .flatten();
    Ok(Some(AccountView {
        customer_id: row.customer_id.clone(),
        available: row.available,
        pending: row.pending,
        debt: row.debt,
        qualifying_value,
        tier: ladder.and_then(|l| l.tier(&row.tier_id).cloned()),
        tier_review_time: row.tier_review_time.map(time).transpose()?,
        upcoming_expiries: expiries,
        expiries_after,
        open_time: time(row.open_time)?,
    }))
}

#[derive(Debug, FromQueryResult)]
struct Expiry {
    expire_time: i64,
    n: i64,
}

/// Up to `limit` of `customer`'s upcoming expiries after `after` (an expire
/// time in microseconds), soonest first.
pub async fn upcoming_expiries(
    db: &impl ConnectionTrait,
    customer: &str,
    after: Option<i64>,
    limit: u32,
) -> Result<Vec<(DateTime<Utc>, i64)>, DbErr> {
    let rows: Vec<Expiry> = all(
        db,
        "SELECT expire_time, CAST(SUM(remaining) AS BIGINT) AS n FROM loyalty_entries \
         WHERE customer_id = ? AND remaining > 0 AND expire_time > ? GROUP BY expire_time \
         ORDER BY expire_time LIMIT ?",
        vec![
            customer.into(),
            after.unwrap_or(i64::MIN).into(),
            i64::from(limit).into(),
        ],
    )
    .await?;
    rows.into_iter()
        .map(|e| Ok((time(e.expire_time)?, e.n)))
        .collect()
}

/// `customer`'s account, NOT_FOUND without one.
pub async fn require_view(
    db: &impl ConnectionTrait,
    customer: &str,
    now: DateTime<Utc>,
) -> Result<AccountView, ApiError> {
    view(db, customer, now)
        .await?
        .ok_or_else(|| ApiError::NotFound("the customer has no loyalty account".into()))
}

/// One page of `customer`'s entries, newest first, before `before` (an entry id).
pub async fn statement(
    db: &impl ConnectionTrait,
    customer: &str,
    before: Option<i64>,
    limit: u32,
) -> Result<Vec<Entry>, DbErr> {
    let rows: Vec<EntryRow> = all(
        db,
        &format!(
            "SELECT {ENTRY_COLUMNS} FROM loyalty_entries WHERE customer_id = ? AND entry_id < ? \
             ORDER BY entry_id DESC LIMIT ?"
        ),
        vec![
            customer.into(),
            before.unwrap_or(i64::MAX).into(),
            i64::from(limit).into(),
        ],
    )
    .await?;
    rows.into_iter().map(EntryRow::into_entry).collect()
}
