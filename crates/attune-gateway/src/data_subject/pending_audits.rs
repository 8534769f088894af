//! Audit entries consent has not taken yet (consent down or slow when a
//! request ran), kept until it does: in `gateway_subject_audits_pending`, or,
//! while the gateway's own database cannot take them either, in memory. A
//! background task sends them again every [`RETRY_EVERY`]; consent appends
//! each outcome of a request once, so a retry after a lost answer appends
//! nothing.
//!
//! A pending entry holds the customer's id (consent pseudonymises it under its
//! own key, which the gateway does not have). This is the only place the
//! gateway keeps a customer id after an erasure, and only until consent has
//! recorded the erasure, which the controller must be able to show (GDPR
//! Art. 5(2)); the row is deleted as soon as consent takes the entry.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use attune_kit::clock::Clock;
use attune_kit::db::{begin_write, micros};
use sea_orm::sea_query::{Alias, Expr, ExprTrait, OnConflict, Order, Query};
use sea_orm::{ConnectionTrait, DatabaseConnection, DbErr, FromQueryResult, StatementBuilder};
use sea_orm_migration::prelude::*;
use tonic::metadata::MetadataMap;

use super::audit::Audit;
use super::status::Kind;
use crate::access_log::WRITE_LOCK;
use crate::backend::Backend;

/// How often pending entries are sent again.
pub(super) const RETRY_EVERY: Duration = Duration::from_secs(1);
/// Entries sent per pass (the oldest first).
const BATCH: u64 = 100;

const TABLE: &str = "gateway_subject_audits_pending";

/// Audit entries waiting for consent.
#[derive(Clone, Debug)]
pub(crate) struct PendingAudits {
    db: DatabaseConnection,
    clock: Clock,
    /// Entries the database did not take either; moved there on the next pass.
    unstored: Arc<Mutex<Vec<Audit>>>,
}

#[derive(Debug, FromQueryResult)]
struct Row {
    request_id: String,
    kind: String,
    customer_id: String,
    requested_by: String,
    failed_services: String,
}

impl Row {
    fn into_audit(self) -> Audit {
        Audit {
            kind: Kind::from_stored(&self.kind),
            customer_id: self.customer_id,
            request_id: self.request_id,
            requested_by: self.requested_by,
            failed: self
                .failed_services
                .split(',')
                .filter(|service| !service.is_empty())
                .map(str::to_owned)
                .collect(),
        }
    }
}

impl PendingAudits {
    pub(super) fn new(db: DatabaseConnection, clock: Clock) -> Self {
        Self {
            db,
            clock,
            unstored: Arc::default(),
        }
    }

    fn unstored(&self) -> std::sync::MutexGuard<'_, Vec<Audit>> {
        // A panic while holding the lock leaves a list still worth sending.
        self.unstored
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Keeps `audit` until consent takes it.
    pub(super) async fn keep(&self, audit: Audit) {
        if let Err(error) = self.store(&audit).await {
            tracing::warn!(%error, "a pending audit entry is kept in memory until the database takes it");
            self.unstored().push(audit);
        }
    }

    async fn store(&self, audit: &Audit) -> Result<(), DbErr> {
        let txn = begin_write(&self.db, WRITE_LOCK).await?;
        let insert = Query::insert()
            .into_table(Alias::new(TABLE))
            .columns(
                [
                    "request_id",
                    "kind",
                    "outcome",
                    "customer_id",
                    "requested_by",
                    "failed_services",
                    "create_micros",
                ]
                .map(Alias::new),
            )
            .values_panic([
                audit.request_id.clone().into(),
                audit.kind.as_str().into(),
                audit.outcome_name().into(),
                audit.customer_id.clone().into(),
                audit.requested_by.clone().into(),
                audit.failed.join(",").into(),
                micros::to_micros(self.clock.now()).into(),
            ])
            // Consent appends an outcome of a request once: so is it kept.
            .on_conflict(
                OnConflict::columns(["request_id", "kind", "outcome"].map(Alias::new))
                    .do_nothing()
                    .to_owned(),
            )
            .to_owned();
        txn.execute(&insert).await?;
        txn.commit().await
    }

    async fn forget(&self, audit: &Audit) -> Result<(), DbErr> {
        let txn = begin_write(&self.db, WRITE_LOCK).await?;
        let delete = Query::delete()
            .from_table(Alias::new(TABLE))
            .and_where(Expr::col(Alias::new("request_id")).eq(audit.request_id.as_str()))
            .and_where(Expr::col(Alias::new("kind")).eq(audit.kind.as_str()))
            .and_where(Expr::col(Alias::new("outcome")).eq(audit.outcome_name()))
            .to_owned();
        txn.execute(&delete).await?;
        txn.commit().await
    }

    /// Whether an entry of `request_id` still waits for consent.
    pub(super) async fn waiting(&self, request_id: &str) -> Result<bool, DbErr> {
        if self
            .unstored()
            .iter()
            .any(|audit| audit.request_id == request_id)
        {
            return Ok(true);
        }
        let select = Query::select()
            .column(Alias::new("request_id"))
            .from(Alias::new(TABLE))
            .and_where(Expr::col(Alias::new("request_id")).eq(request_id))
            .limit(1)
            .to_owned();
        let backend = self.db.get_database_backend();
        Ok(self
            .db
            .query_one_raw(StatementBuilder::build(&select, &backend))
            .await?
            .is_some())
    }

    /// Sends every pending entry to `consent` once, oldest first; stops at
    /// the first consent does not take (it is down: the next pass retries).
    pub(super) async fn send_again(&self, consent: &Backend) {
        let unstored = std::mem::take(&mut *self.unstored());
        for audit in unstored {
            if audit.send(consent, &MetadataMap::new()).await.is_err() {
                self.keep(audit).await;
            }
        }
        let select = Query::select()
            .columns(
                [
                    "request_id",
                    "kind",
                    "customer_id",
                    "requested_by",
                    "failed_services",
                ]
                .map(Alias::new),
            )
            .from(Alias::new(TABLE))
            .order_by(Alias::new("create_micros"), Order::Asc)
            .limit(BATCH)
            .to_owned();
        let backend = self.db.get_database_backend();
        let rows = match Row::find_by_statement(StatementBuilder::build(&select, &backend))
            .all(&self.db)
            .await
        {
            Ok(rows) => rows,
            Err(error) => {
                tracing::warn!(%error, "pending audit entries could not be read; retrying");
                return;
            }
        };
        for audit in rows.into_iter().map(Row::into_audit) {
            if let Err(status) = audit.send(consent, &MetadataMap::new()).await {
                tracing::debug!(code = ?status.code(), "consent still does not take audit entries");
                return;
            }
            tracing::info!("a pending data-subject request entry is now in consent's audit log");
            if let Err(error) = self.forget(&audit).await {
                // Sent again next pass: consent appends nothing the second time.
                tracing::warn!(%error, "a sent audit entry stays pending until it can be removed");
            }
        }
    }
}

/// Creates the table of pending audit entries.
#[derive(DeriveMigrationName)]
pub struct CreatePendingAudits;

#[async_trait::async_trait]
impl MigrationTrait for CreatePendingAudits {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let text = |name: &'static str| ColumnDef::new(name).string().not_null().to_owned();
        manager
            .create_table(
                Table::create()
                    .table(TABLE)
                    .col(text("request_id"))
                    .col(text("kind"))
                    .col(text("outcome"))
                    .col(text("customer_id"))
                    .col(text("requested_by"))
                    .col(ColumnDef::new("failed_services").text().not_null())
                    .col(ColumnDef::new("create_micros").big_integer().not_null())
                    .primary_key(Index::create().col("request_id").col("kind").col("outcome"))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(TABLE).to_owned())
            .await
    }
}
