//! The stored status of every data-subject request made through the gateway:
//! one row per request (its kind and a keyed pseudonym of the customer, never
//! the id, so the status outlives the erasure it describes) and one row per
//! data-holding service (pending, done or failed, the reason, the receipt),
//! written as the fan-out progresses.

use attune_kit::ApiError;
use attune_kit::db::{begin_write, micros};
use attune_kit::types::time;
use attune_proto::gateway::v1 as pb;
use chrono::{DateTime, Utc};
use sea_orm::sea_query::{Alias, Expr, ExprTrait, OnConflict, Order, Query};
use sea_orm::{ConnectionTrait, DatabaseConnection, DbErr, FromQueryResult, StatementBuilder};
use sea_orm_migration::prelude::*;

use crate::access_log::WRITE_LOCK;

/// One row per request.
const REQUESTS: &str = "gateway_subject_requests";
/// One row per request and data-holding service.
const PARTS: &str = "gateway_subject_request_parts";

/// What a request asked for, as stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    Export,
    Erasure,
}

impl Kind {
    pub(super) fn as_str(self) -> &'static str {
        match self {
            Self::Export => "export",
            Self::Erasure => "erasure",
        }
    }

    pub(super) fn from_stored(name: &str) -> Self {
        if name == "export" {
            Self::Export
        } else {
            Self::Erasure
        }
    }

    fn to_proto(self) -> pb::DataSubjectRequestKind {
        match self {
            Self::Export => pb::DataSubjectRequestKind::Export,
            Self::Erasure => pb::DataSubjectRequestKind::Erasure,
        }
    }

    /// The noun an operator reads.
    pub(super) fn noun(self) -> &'static str {
        self.as_str()
    }
}

/// Where one service's part stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum State {
    Pending,
    Done,
    Failed,
}

impl State {
    fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Done => "done",
            Self::Failed => "failed",
        }
    }

    fn from_stored(name: &str) -> Self {
        match name {
            "done" => Self::Done,
            "failed" => Self::Failed,
            _ => Self::Pending,
        }
    }

    fn to_proto(self) -> pb::ServicePartState {
        match self {
            Self::Pending => pb::ServicePartState::Pending,
            Self::Done => pb::ServicePartState::Done,
            Self::Failed => pb::ServicePartState::Failed,
        }
    }
}

/// One service's part as stored.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Part {
    pub service: String,
    pub state: State,
    /// Why it is not done, in words an operator reads; empty when done.
    pub reason: String,
    /// Its receipt once it answered (done or failed).
    pub receipt: Option<pb::ServiceReceipt>,
    pub update_micros: i64,
}

/// A request as stored.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Stored {
    pub request_id: String,
    pub kind: Kind,
    pub subject: String,
    pub create_micros: i64,
    pub update_micros: i64,
    /// Ordered by service name.
    pub parts: Vec<Part>,
}

impl Stored {
    /// Whether every service is done.
    pub(super) fn complete(&self) -> bool {
        self.parts.iter().all(|part| part.state == State::Done)
    }

    /// The stored receipt of `service` when it is done.
    pub(super) fn done_receipt(&self, service: &str) -> Option<&pb::ServiceReceipt> {
        self.parts
            .iter()
            .find(|part| part.service == service && part.state == State::Done)
            .and_then(|part| part.receipt.as_ref())
    }

    /// The request as `GetDataSubjectRequest` answers it.
    pub(super) fn to_proto(&self) -> pb::DataSubjectRequest {
        let (state, summary) = self.overall();
        pb::DataSubjectRequest {
            request_id: self.request_id.clone(),
            kind: self.kind.to_proto().into(),
            state: state.into(),
            summary,
            services: self
                .parts
                .iter()
                .map(|part| pb::ServicePart {
                    service: part.service.clone(),
                    state: part.state.to_proto().into(),
                    reason: part.reason.clone(),
                    receipt: part.receipt.clone(),
                    update_time: proto_time(part.update_micros),
                })
                .collect(),
            create_time: proto_time(self.create_micros),
            update_time: proto_time(self.update_micros),
        }
    }

    /// The overall state and a sentence an operator can act on.
    fn overall(&self) -> (pb::DataSubjectRequestState, String) {
        let total = self.parts.len();
        let named = |state: State| -> Vec<&str> {
            self.parts
                .iter()
                .filter(|part| part.state == state)
                .map(|part| part.service.as_str())
                .collect()
        };
        let (failed, pending) = (named(State::Failed), named(State::Pending));
        let noun = self.kind.noun();
        if failed.is_empty() && pending.is_empty() {
            return (
                pb::DataSubjectRequestState::Completed,
                format!("Completed: all {total} services finished the {noun}."),
            );
        }
        let again = match self.kind {
            Kind::Export => {
                "Run the export again with the same request_id and the last resume_token received to get the rest."
            }
            Kind::Erasure => {
                "Run the erasure again with the same request_id: only the services not done are asked again."
            }
        };
        if failed.is_empty() {
            return (
                pb::DataSubjectRequestState::InProgress,
                format!(
                    "In progress: {} of {total} services finished the {noun}; waiting for {}.",
                    total - pending.len(),
                    pending.join(", ")
                ),
            );
        }
        let waiting = if pending.is_empty() {
            String::new()
        } else {
            format!(" {} not done yet ({}).", pending.len(), pending.join(", "))
        };
        (
            pb::DataSubjectRequestState::PartiallyFailed,
            format!(
                "Partially failed: {} of {total} services failed ({}).{waiting} {again}",
                failed.len(),
                failed.join(", ")
            ),
        )
    }
}

fn proto_time(at: i64) -> Option<prost_types::Timestamp> {
    micros::from_micros(at).ok().map(time::to_proto)
}

/// A receipt's time to the microsecond, as stored: the first answer and every
/// replay of it are equal.
pub(super) fn to_stored_precision(mut receipt: pb::ServiceReceipt) -> pb::ServiceReceipt {
    if let Some(at) = receipt.complete_time.as_mut() {
        at.nanos -= at.nanos % 1000;
    }
    receipt
}

/// Why a request cannot be opened.
#[derive(Debug, thiserror::Error)]
pub(super) enum OpenError {
    /// The id names a request of another kind or customer.
    #[error("request_id {0} was already used for another data-subject request")]
    Reused(String),
    #[error(transparent)]
    Database(#[from] DbErr),
}

impl From<OpenError> for ApiError {
    fn from(error: OpenError) -> Self {
        match error {
            OpenError::Reused(_) => ApiError::AlreadyExists(error.to_string()),
            OpenError::Database(error) => ApiError::from(error),
        }
    }
}

/// Opens request `request_id` of `kind` about `subject`: a new one with every
/// service of `services` pending, or the one stored (services added since
/// joining as pending). Whether it is new, and the request.
pub(super) async fn open(
    db: &DatabaseConnection,
    request_id: &str,
    kind: Kind,
    subject: &str,
    services: &[&str],
    now: DateTime<Utc>,
) -> Result<(bool, Stored), OpenError> {
    let now = micros::to_micros(now);
    let txn = begin_write(db, WRITE_LOCK).await?;
    let existing = request_row(&txn, request_id).await?;
    let fresh = match &existing {
        Some(row) if row.kind != kind.as_str() || row.subject != subject => {
            return Err(OpenError::Reused(request_id.to_owned()));
        }
        Some(_) => false,
        None => {
            let insert = Query::insert()
                .into_table(Alias::new(REQUESTS))
                .columns(
                    [
                        "request_id",
                        "kind",
                        "subject",
                        "create_micros",
                        "update_micros",
                    ]
                    .map(Alias::new),
                )
                .values_panic([
                    request_id.into(),
                    kind.as_str().into(),
                    subject.into(),
                    now.into(),
                    now.into(),
                ])
                .to_owned();
            txn.execute(&insert).await?;
            true
        }
    };
    for service in services {
        let insert = Query::insert()
            .into_table(Alias::new(PARTS))
            .columns(PART_COLUMNS.map(Alias::new))
            .values_panic([
                request_id.into(),
                (*service).into(),
                State::Pending.as_str().into(),
                "not asked yet".into(),
                None::<String>.into(),
                now.into(),
            ])
            .on_conflict(
                OnConflict::columns(["request_id", "service"].map(Alias::new))
                    .do_nothing()
                    .to_owned(),
            )
            .to_owned();
        txn.execute(&insert).await?;
    }
    let stored = load(&txn, request_id)
        .await?
        .ok_or_else(|| DbErr::RecordNotFound(request_id.to_owned()))?;
    txn.commit().await?;
    Ok((fresh, stored))
}

const PART_COLUMNS: [&str; 6] = [
    "request_id",
    "service",
    "state",
    "reason",
    "receipt",
    "update_micros",
];

/// Records where `service`'s part of `request_id` stands. A part once done
/// stays done with its first receipt: a run that lost its caller after another
/// run completed the part cannot undo it, and a retried export's second pass
/// does not replace the receipt.
pub(super) async fn set_part(
    db: &DatabaseConnection,
    request_id: &str,
    service: &str,
    state: State,
    reason: &str,
    receipt: Option<&pb::ServiceReceipt>,
    now: DateTime<Utc>,
) -> Result<(), DbErr> {
    let now = micros::to_micros(now);
    let receipt = receipt.map(|receipt| hex::encode(prost::Message::encode_to_vec(receipt)));
    let txn = begin_write(db, WRITE_LOCK).await?;
    let update = Query::update()
        .table(Alias::new(PARTS))
        .value(Alias::new("state"), state.as_str())
        .value(Alias::new("reason"), reason)
        .value(Alias::new("receipt"), receipt)
        .value(Alias::new("update_micros"), now)
        .and_where(Expr::col(Alias::new("request_id")).eq(request_id))
        .and_where(Expr::col(Alias::new("service")).eq(service))
        .and_where(Expr::col(Alias::new("state")).ne(State::Done.as_str()))
        .to_owned();
    if txn.execute(&update).await?.rows_affected() == 0 {
        return txn.commit().await;
    }
    let touch = Query::update()
        .table(Alias::new(REQUESTS))
        .value(Alias::new("update_micros"), now)
        .and_where(Expr::col(Alias::new("request_id")).eq(request_id))
        .to_owned();
    txn.execute(&touch).await?;
    txn.commit().await
}

#[derive(Debug, FromQueryResult)]
struct RequestRow {
    kind: String,
    subject: String,
    create_micros: i64,
    update_micros: i64,
}

#[derive(Debug, FromQueryResult)]
struct PartRow {
    service: String,
    state: String,
    reason: String,
    receipt: Option<String>,
    update_micros: i64,
}

async fn request_row(
    db: &impl ConnectionTrait,
    request_id: &str,
) -> Result<Option<RequestRow>, DbErr> {
    let select = Query::select()
        .columns(["kind", "subject", "create_micros", "update_micros"].map(Alias::new))
        .from(Alias::new(REQUESTS))
        .and_where(Expr::col(Alias::new("request_id")).eq(request_id))
        .to_owned();
    let backend = db.get_database_backend();
    RequestRow::find_by_statement(StatementBuilder::build(&select, &backend))
        .one(db)
        .await
}

/// The request `request_id` as stored, if there is one.
pub(super) async fn load(
    db: &impl ConnectionTrait,
    request_id: &str,
) -> Result<Option<Stored>, DbErr> {
    let Some(row) = request_row(db, request_id).await? else {
        return Ok(None);
    };
    let select = Query::select()
        .columns(["service", "state", "reason", "receipt", "update_micros"].map(Alias::new))
        .from(Alias::new(PARTS))
        .and_where(Expr::col(Alias::new("request_id")).eq(request_id))
        .order_by(Alias::new("service"), Order::Asc)
        .to_owned();
    let backend = db.get_database_backend();
    let parts = PartRow::find_by_statement(StatementBuilder::build(&select, &backend))
        .all(db)
        .await?
        .into_iter()
        .map(|part| {
            let receipt = part
                .receipt
                .as_deref()
                .map(|stored| {
                    hex::decode(stored)
                        .ok()
                        .and_then(|bytes| {
                            <pb::ServiceReceipt as prost::Message>::decode(bytes.as_slice()).ok()
                        })
                        .ok_or_else(|| {
                            DbErr::Custom(format!("an unreadable receipt of {}", part.service))
                        })
                })
                .transpose()?;
            Ok(Part {
                service: part.service,
                state: State::from_stored(&part.state),
                reason: part.reason,
                receipt,
                update_micros: part.update_micros,
            })
        })
        .collect::<Result<Vec<_>, DbErr>>()?;
    Ok(Some(Stored {
        request_id: request_id.to_owned(),
        kind: Kind::from_stored(&row.kind),
        subject: row.subject,
        create_micros: row.create_micros,
        update_micros: row.update_micros,
        parts,
    }))
}

/// Creates both tables.
#[derive(DeriveMigrationName)]
pub struct CreateDataSubjectRequests;

#[async_trait::async_trait]
impl MigrationTrait for CreateDataSubjectRequests {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let text = |name: &'static str| ColumnDef::new(name).string().not_null().to_owned();
        let micros = |name: &'static str| ColumnDef::new(name).big_integer().not_null().to_owned();
        manager
            .create_table(
                Table::create()
                    .table(REQUESTS)
                    .col(text("request_id").primary_key())
                    .col(text("kind"))
                    .col(text("subject"))
                    .col(micros("create_micros"))
                    .col(micros("update_micros"))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(PARTS)
                    .col(text("request_id"))
                    .col(text("service"))
                    .col(text("state"))
                    .col(text("reason"))
                    .col(ColumnDef::new("receipt").text().null())
                    .col(micros("update_micros"))
                    .primary_key(Index::create().col("request_id").col("service"))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(PARTS).to_owned())
            .await?;
        manager
            .drop_table(Table::drop().table(REQUESTS).to_owned())
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(kind: Kind, states: &[(&str, State)]) -> Stored {
        Stored {
            request_id: "req-1".into(),
            kind,
            subject: "hmac-sha256:00".into(),
            create_micros: 0,
            update_micros: 0,
            parts: states
                .iter()
                .map(|(service, state)| Part {
                    service: (*service).into(),
                    state: *state,
                    reason: String::new(),
                    receipt: None,
                    update_micros: 0,
                })
                .collect(),
        }
    }

    #[test]
    fn the_overall_state_says_what_is_left_and_what_to_do() {
        use State::{Done, Failed, Pending};
        let running = request(Kind::Erasure, &[("a", Done), ("b", Pending)]);
        let (state, summary) = running.overall();
        assert_eq!(state, pb::DataSubjectRequestState::InProgress);
        assert_eq!(
            summary,
            "In progress: 1 of 2 services finished the erasure; waiting for b."
        );
        assert!(!running.complete());

        let failed = request(Kind::Erasure, &[("a", Failed), ("b", Pending), ("c", Done)]);
        let (state, summary) = failed.overall();
        assert_eq!(state, pb::DataSubjectRequestState::PartiallyFailed);
        assert!(
            summary
                .starts_with("Partially failed: 1 of 3 services failed (a). 1 not done yet (b)."),
            "{summary}"
        );
        assert!(summary.contains("same request_id"), "{summary}");
        let (_, export) = request(Kind::Export, &[("a", Failed)]).overall();
        assert!(export.contains("resume_token"), "{export}");

        let done = request(Kind::Export, &[("a", Done), ("b", Done)]);
        assert_eq!(
            done.overall(),
            (
                pb::DataSubjectRequestState::Completed,
                "Completed: all 2 services finished the export.".to_owned()
            )
        );
        assert!(done.complete());
    }
}
