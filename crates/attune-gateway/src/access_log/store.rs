//! The `gateway_data_access` table: one row per recorded read of one customer's
//! data. Purposes and categories are kept as short lists in text columns; they
//! are only ever read back whole.

use attune_kit::db::{WriteLock, begin_write, micros};
use attune_kit::idempotency::RequestLog;
use attune_kit::secrets::SecretStore;
use attune_kit::types::DataCategory;
use attune_proto::gateway::v1::CallerKind;
use chrono::{DateTime, Utc};
use sea_orm::sea_query::{Alias, Expr, ExprTrait, Order, Query};
use sea_orm::{ConnectionTrait, DbErr, FromQueryResult, StatementBuilder};

use super::Access;

/// The table.
pub(super) const TABLE: &str = "gateway_data_access";

/// The gateway's write lock (services are 1 to 5): batches of one gateway
/// replica at a time, and on SQLite the database's one write lock.
pub(crate) const WRITE_LOCK: WriteLock = WriteLock::for_service(6);

/// Remembered outcomes of the log's erasures, so a retry gets its receipt.
pub(super) const REQUESTS: RequestLog = RequestLog::new("gateway_requests");

/// The gateway's generated secrets (its pseudonymisation key in development,
/// from which request fingerprints derive).
pub(super) const SECRETS: SecretStore = SecretStore::new("gateway_secrets");

/// One entry as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Entry {
    pub customer_id: String,
    pub access_micros: i64,
    pub caller_kind: i32,
    pub caller_name: String,
    pub store_id: String,
    pub rpc: String,
    pub purpose_codes: String,
    pub data_categories: String,
}

impl Entry {
    pub(super) fn new(access: Access, at: DateTime<Utc>) -> Self {
        Self {
            customer_id: access.customer.as_ref().to_owned(),
            access_micros: micros::to_micros(at),
            caller_kind: access.caller.kind as i32,
            caller_name: access.caller.name,
            store_id: access.caller.store_id,
            rpc: access.rpc,
            purpose_codes: access.purpose_codes.join(","),
            data_categories: access
                .data_categories
                .iter()
                .map(|category| category.as_str())
                .collect::<Vec<_>>()
                .join(","),
        }
    }

    /// The caller kind as stored; UNSPECIFIED for a number this version does not know.
    pub(super) fn caller_kind(&self) -> CallerKind {
        CallerKind::try_from(self.caller_kind).unwrap_or(CallerKind::Unspecified)
    }

    pub(super) fn purpose_codes(&self) -> Vec<String> {
        split(&self.purpose_codes).map(str::to_owned).collect()
    }

    /// The categories as stored by their stable names; a name this version
    /// does not know is left out.
    pub(super) fn data_categories(&self) -> Vec<DataCategory> {
        split(&self.data_categories)
            .filter_map(DataCategory::from_stored)
            .collect()
    }
}

fn split(list: &str) -> impl Iterator<Item = &str> {
    list.split(',').filter(|item| !item.is_empty())
}

/// A stored entry and its position (newest is highest).
#[derive(Debug, FromQueryResult)]
pub(super) struct Row {
    pub id: i64,
    pub customer_id: String,
    pub access_micros: i64,
    pub caller_kind: i32,
    pub caller_name: String,
    pub store_id: String,
    pub rpc: String,
    pub purpose_codes: String,
    pub data_categories: String,
}

impl Row {
    pub(super) fn into_entry(self) -> (i64, Entry) {
        (
            self.id,
            Entry {
                customer_id: self.customer_id,
                access_micros: self.access_micros,
                caller_kind: self.caller_kind,
                caller_name: self.caller_name,
                store_id: self.store_id,
                rpc: self.rpc,
                purpose_codes: self.purpose_codes,
                data_categories: self.data_categories,
            },
        )
    }
}

const COLUMNS: [&str; 8] = [
    "customer_id",
    "access_micros",
    "caller_kind",
    "caller_name",
    "store_id",
    "rpc",
    "purpose_codes",
    "data_categories",
];

/// Stores `batch` in one transaction.
pub(super) async fn insert(db: &sea_orm::DatabaseConnection, batch: &[Entry]) -> Result<(), DbErr> {
    let mut insert = Query::insert();
    insert
        .into_table(Alias::new(TABLE))
        .columns(COLUMNS.map(Alias::new));
    for entry in batch {
        insert
            .values([
                entry.customer_id.clone().into(),
                entry.access_micros.into(),
                entry.caller_kind.into(),
                entry.caller_name.clone().into(),
                entry.store_id.clone().into(),
                entry.rpc.clone().into(),
                entry.purpose_codes.clone().into(),
                entry.data_categories.clone().into(),
            ])
            .map_err(|error| DbErr::Custom(error.to_string()))?;
    }
    let txn = begin_write(db, WRITE_LOCK).await?;
    txn.execute(&insert).await?;
    txn.commit().await
}

/// The customer's entries below position `before` (all when `None`), newest
/// first, at most `limit`.
pub(super) async fn newest_first(
    db: &impl ConnectionTrait,
    customer_id: &str,
    before: Option<i64>,
    limit: u64,
) -> Result<Vec<Row>, DbErr> {
    let mut select = Query::select();
    select
        .column(Alias::new("id"))
        .columns(COLUMNS.map(Alias::new))
        .from(Alias::new(TABLE))
        .and_where(Expr::col(Alias::new("customer_id")).eq(customer_id))
        .order_by(Alias::new("id"), Order::Desc)
        .limit(limit);
    if let Some(before) = before {
        select.and_where(Expr::col(Alias::new("id")).lt(before));
    }
    let backend = db.get_database_backend();
    Row::find_by_statement(StatementBuilder::build(&select, &backend))
        .all(db)
        .await
}

/// Deletes every entry of the customer; how many there were.
pub(super) async fn delete_customer(
    txn: &impl ConnectionTrait,
    customer_id: &str,
) -> Result<u64, DbErr> {
    let delete = Query::delete()
        .from_table(Alias::new(TABLE))
        .and_where(Expr::col(Alias::new("customer_id")).eq(customer_id))
        .to_owned();
    Ok(txn.execute(&delete).await?.rows_affected())
}
