//! The feed: every stored event, merge, zero-party change, segment membership
//! change and erasure, one row each in `profile_feed`, in commit order.
//!
//! Events are feed rows themselves (no second copy): `ListEvents` reads a
//! customer's event rows, `StreamEvents` reads every row after a cursor through
//! the kit's [`attune_kit::feed`]. Writers append inside a transaction begun with
//! [`crate::store::WRITE_LOCK`], which they hold from before they take a sequence
//! until they commit, so sequences follow commit order and a watcher never skips a
//! row that commits later.

use std::sync::Arc;

use attune_kit::ApiError;
use attune_kit::db::micros;
use attune_kit::feed::{self, FeedStore, Positioned};
use attune_proto::profile::v1 as pb;
use chrono::{DateTime, Utc};
use prost::Message;
use sea_orm::sea_query::{Alias, Expr, ExprTrait, Func, Query};
use sea_orm::{ConnectionTrait, DatabaseConnection, DbErr, FromQueryResult, StatementBuilder};

/// The feed table.
pub(crate) const TABLE: &str = "profile_feed";

/// What a feed row records (`entry_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(i16)]
pub enum EntryType {
    /// A stored event.
    Event = 1,
    /// An anonymous profile merged into another.
    Merge = 2,
    /// Zero-party data changed.
    ZeroPartyChange = 3,
    /// A customer was erased.
    Erasure = 4,
    /// A customer entered or left a segment.
    SegmentChange = 5,
}

impl EntryType {
    fn of(change: &pb::feed_entry::Change) -> Self {
        use pb::feed_entry::Change;
        match change {
            Change::Event(_) => Self::Event,
            Change::Merge(_) => Self::Merge,
            Change::ZeroPartyDataChange(_) => Self::ZeroPartyChange,
            Change::Erasure(_) => Self::Erasure,
            Change::SegmentMembershipChange(_) => Self::SegmentChange,
        }
    }
}

/// The columns an event row carries besides its payload, for idempotency and
/// per-customer reads.
#[derive(Debug, Clone)]
pub struct EventColumns {
    /// The client's event id (unique).
    pub event_id: String,
    /// `EventKind` as its wire number.
    pub kind: i32,
    /// When the event occurred.
    pub occur_time: DateTime<Utc>,
    /// A digest of the event's content as sent, telling a retry (same digest)
    /// from a conflicting reuse of the id.
    pub fingerprint: Vec<u8>,
}

/// One row to append.
#[derive(Debug, Clone)]
pub struct NewEntry {
    /// The customer the entry is about (for a merge, the target). Erasure entries
    /// carry the erased customer's pseudonym instead, so no row keeps the id.
    pub customer_id: String,
    /// For a merge, the source customer id; `None` otherwise.
    pub other_customer_id: Option<String>,
    /// For an event, its columns; `None` otherwise.
    pub event: Option<EventColumns>,
    /// What the entry records. For an event, the event with its output fields
    /// (`resolved_customer_id`, `data_category`, `purposes`, `ingest_time`) set;
    /// `sequence` is filled in on read.
    pub change: pb::feed_entry::Change,
}

/// The newest sequence, or 0 while the feed is empty. Inside a write
/// transaction (holding the write lock), the next entry gets this plus one.
pub async fn newest_sequence(db: &impl ConnectionTrait) -> Result<i64, DbErr> {
    #[derive(FromQueryResult)]
    struct Newest {
        newest: Option<i64>,
    }
    let query = Query::select()
        .expr_as(
            Func::max(Expr::col(Alias::new("sequence"))),
            Alias::new("newest"),
        )
        .from(Alias::new(TABLE))
        .to_owned();
    let newest =
        Newest::find_by_statement(StatementBuilder::build(&query, &db.get_database_backend()))
            .one(db)
            .await?;
    Ok(newest.and_then(|row| row.newest).unwrap_or(0))
}

/// Appends `entries` in order after `newest` (from [`newest_sequence`] in the
/// same transaction, or the last sequence this transaction appended), committed
/// at `now`; returns their sequences. Call only inside a transaction holding
/// [`crate::store::WRITE_LOCK`].
pub async fn append(
    txn: &impl ConnectionTrait,
    newest: i64,
    entries: Vec<NewEntry>,
    now: DateTime<Utc>,
) -> Result<Vec<i64>, DbErr> {
    let mut sequences = Vec::with_capacity(entries.len());
    let commit_time = micros::to_micros(now);
    // 10 values a row: SQLite allows 32766 bound values a statement.
    const ROWS_PER_STATEMENT: usize = 1000;
    let mut next = newest;
    let mut entries = entries.into_iter().peekable();
    while entries.peek().is_some() {
        let mut insert = Query::insert()
            .into_table(Alias::new(TABLE))
            .columns([
                Alias::new("sequence"),
                Alias::new("entry_type"),
                Alias::new("customer_id"),
                Alias::new("other_customer_id"),
                Alias::new("event_id"),
                Alias::new("event_kind"),
                Alias::new("occur_time"),
                Alias::new("commit_time"),
                Alias::new("fingerprint"),
                Alias::new("payload"),
            ])
            .to_owned();
        for entry in entries.by_ref().take(ROWS_PER_STATEMENT) {
            next += 1;
            sequences.push(next);
            let entry_type = EntryType::of(&entry.change) as i16;
            let payload = pb::FeedEntry {
                change: Some(entry.change),
                ..Default::default()
            }
            .encode_to_vec();
            let (event_id, kind, occur_time, fingerprint) = match entry.event {
                Some(event) => (
                    Some(event.event_id),
                    Some(i16::try_from(event.kind).unwrap_or(i16::MAX)),
                    Some(micros::to_micros(event.occur_time)),
                    Some(event.fingerprint),
                ),
                None => (None, None, None, None),
            };
            insert.values_panic([
                next.into(),
                entry_type.into(),
                entry.customer_id.into(),
                entry.other_customer_id.into(),
                event_id.into(),
                kind.into(),
                occur_time.into(),
                commit_time.into(),
                fingerprint.into(),
                payload.into(),
            ]);
        }
        txn.execute(&insert).await?;
    }
    Ok(sequences)
}

/// A feed row as read back.
#[derive(Debug, Clone, FromQueryResult)]
pub struct Row {
    /// The row's sequence.
    pub sequence: i64,
    /// The customer column (for events, the customer the event belongs to now).
    pub customer_id: String,
    /// When the row was committed, in microseconds.
    pub commit_time: i64,
    /// The encoded `FeedEntry` (change only).
    pub payload: Vec<u8>,
}

impl Row {
    /// The wire entry: sequence and commit time filled in, and an event's
    /// `sequence` and `resolved_customer_id` from the row (a merge re-attributes
    /// events by changing the column, not the payload).
    pub fn into_entry(self) -> Result<pb::FeedEntry, DbErr> {
        let mut entry = pb::FeedEntry::decode(self.payload.as_slice()).map_err(|error| {
            DbErr::Custom(format!("unreadable feed row {}: {error}", self.sequence))
        })?;
        entry.sequence = self.sequence;
        let commit_time = micros::from_micros(self.commit_time)
            .map_err(|error| DbErr::Custom(format!("feed row {}: {error}", self.sequence)))?;
        entry.commit_time = Some(attune_kit::types::time::to_proto(commit_time));
        if let Some(pb::feed_entry::Change::Event(event)) = entry.change.as_mut() {
            event.sequence = self.sequence;
            event.resolved_customer_id = self.customer_id;
        }
        Ok(entry)
    }
}

/// Up to `limit` rows after `cursor`, in sequence order.
pub async fn after(db: &impl ConnectionTrait, cursor: i64, limit: u64) -> Result<Vec<Row>, DbErr> {
    let query = Query::select()
        .columns([
            Alias::new("sequence"),
            Alias::new("customer_id"),
            Alias::new("commit_time"),
            Alias::new("payload"),
        ])
        .from(Alias::new(TABLE))
        .and_where(Expr::col(Alias::new("sequence")).gt(cursor))
        .order_by(Alias::new("sequence"), sea_orm::Order::Asc)
        .limit(limit)
        .to_owned();
    Row::find_by_statement(StatementBuilder::build(&query, &db.get_database_backend()))
        .all(db)
        .await
}

/// A feed entry as the kit's feed hands it out.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry(pub pb::FeedEntry);

impl Positioned for Entry {
    fn position(&self) -> i64 {
        self.0.sequence
    }
}

/// The feed table as the kit's feed reads it.
#[derive(Debug, Clone)]
pub struct FeedTable {
    db: DatabaseConnection,
}

impl FeedStore for FeedTable {
    type Row = Entry;
    type Error = ApiError;

    async fn newest_position(&self) -> Result<i64, ApiError> {
        Ok(newest_sequence(&self.db).await?)
    }

    async fn after(&self, cursor: i64, limit: u64) -> Result<Vec<Entry>, ApiError> {
        let rows = after(&self.db, cursor, limit).await?;
        Ok(rows
            .into_iter()
            .map(|row| row.into_entry().map(Entry))
            .collect::<Result<_, _>>()?)
    }
}

/// The feed of one process.
pub type ProfileFeed = feed::Feed<FeedTable>;

/// Profile's feed over `db`; its streams end when `stop` (the server's shutdown)
/// fires.
pub fn profile_feed(
    db: DatabaseConnection,
    settings: attune_kit::config::FeedConfig,
    stop: tokio_util::sync::CancellationToken,
) -> Arc<ProfileFeed> {
    feed::Feed::new(FeedTable { db }, settings, stop)
}
