//! `attune.privacy.v1.DataSubjectService` for loyalty's data. Export: the
//! account, vouchers, offers and messages, then the ledger page by page.
//! Erasure pseudonymises the ledger and the vouchers (amounts stay for the
//! retailer's accounts; the customer id becomes its keyed pseudonym and the
//! entries' keys, descriptions and order ids are cleared, so nothing links them
//! back to the person) and deletes the account, orders, offers and messages.

use attune_kit::ApiError;
use attune_kit::idempotency::Request as Logged;
use attune_kit::privacy::{
    Erased, ExportCursor, ExportRequest, Subject, export_page, no_linked_ids, parse_erase,
    struct_from_json,
};
use attune_proto::privacy::v1 as pb;
use attune_proto::privacy::v1::data_subject_service_server::DataSubjectService;
use chrono::{DateTime, Utc};
use sea_orm::{DatabaseTransaction, FromQueryResult};
use serde_json::json;
use tonic::{Request, Response, Status};

use crate::app::Loyalty;
use crate::ledger::{self, ENTRY_COLUMNS, EntryRow};
use crate::store::{REQUESTS, all, exec};

const SERVICE: &str = "attune.loyalty.v1";

const RETAINED: &str = "ledger entries and reward vouchers with their amounts and times, under \
     a keyed pseudonym (HMAC-SHA-256) of the customer id instead of the id, for the retailer's \
     accounts of points issued and spent; they cannot be turned back into the id";

/// Loyalty's data-subject requests.
#[derive(Debug, Clone)]
pub struct LoyaltyPrivacyApi {
    loyalty: Loyalty,
}

impl LoyaltyPrivacyApi {
    pub fn new(loyalty: Loyalty) -> Self {
        Self { loyalty }
    }
}

#[derive(Debug, FromQueryResult)]
struct Stored {
    id: String,
    body: String,
}

fn record(kind: &str, id: String, data: serde_json::Value) -> pb::DataRecord {
    pb::DataRecord {
        kind: kind.to_owned(),
        id,
        update_time: None,
        data: Some(struct_from_json(data)),
    }
}

impl LoyaltyPrivacyApi {
    /// The records about the customer other than the ledger.
    async fn about(&self, customer: &str) -> Result<Vec<pb::DataRecord>, ApiError> {
        let db = &self.loyalty.db;
        let now = self.loyalty.clock.now();
        let mut records = Vec::new();
        if let Some(account) = ledger::view(db, customer, now).await? {
            records.push(record(
                "account",
                customer.to_owned(),
                serde_json::to_value(account).map_err(ApiError::internal)?,
            ));
        }
        for voucher in self.loyalty.vouchers(customer, None, 10_000).await? {
            let id = voucher.code.clone();
            records.push(record(
                "voucher",
                id,
                serde_json::to_value(voucher).map_err(ApiError::internal)?,
            ));
        }
        let offers: Vec<Stored> = all(
            db,
            "SELECT offer_id AS id, body FROM loyalty_offers WHERE customer_id = ? ORDER BY issue_time",
            vec![customer.into()],
        )
        .await?;
        for offer in offers {
            let body: serde_json::Value =
                serde_json::from_str(&offer.body).map_err(ApiError::internal)?;
            records.push(record("offer", offer.id, body));
        }
        #[derive(Debug, FromQueryResult)]
        struct Sent {
            channel: String,
            offer_id: String,
            send_time: i64,
        }
        let sent: Vec<Sent> = all(
            db,
            "SELECT channel, offer_id, send_time FROM loyalty_messages WHERE customer_id = ? ORDER BY send_time",
            vec![customer.into()],
        )
        .await?;
        for message in sent {
            let at = crate::rules::time(message.send_time)?;
            records.push(record(
                "message",
                format!("{}:{}", message.channel, message.offer_id),
                json!({ "channel": message.channel, "offer_id": message.offer_id, "send_time": at }),
            ));
        }
        Ok(records)
    }

    /// Up to `count` of the customer's ledger entries after `after`, by entry id.
    async fn entries(
        &self,
        customer: &str,
        after: i64,
        count: usize,
    ) -> Result<Vec<(i64, pb::DataRecord)>, ApiError> {
        let rows: Vec<EntryRow> = all(
            &self.loyalty.db,
            &format!(
                "SELECT {ENTRY_COLUMNS} FROM loyalty_entries WHERE customer_id = ? AND entry_id > ? \
                 ORDER BY entry_id LIMIT ?"
            ),
            vec![customer.into(), after.into(), i64::try_from(count).unwrap_or(i64::MAX).into()],
        )
        .await?;
        rows.into_iter()
            .map(|row| {
                let entry = row.into_entry()?;
                let id = entry.entry_id;
                let data = serde_json::to_value(entry).map_err(ApiError::internal)?;
                Ok((id, record("ledger_entry", id.to_string(), data)))
            })
            .collect()
    }
}

async fn erase_in(
    loyalty: &Loyalty,
    txn: &DatabaseTransaction,
    customer: &str,
    now: DateTime<Utc>,
) -> Result<Erased, ApiError> {
    let pseudonym = loyalty.key.subject(customer);
    // The answers of the customer's earlier requests name them: forgotten, so a
    // retry of one is refused rather than answered or run again.
    let requests = REQUESTS
        .forget_subject(txn, &loyalty.subject(customer))
        .await?;
    // Erased lots stop taking part in scheduled work: there is no account left
    // for them to move.
    let entries = exec(
        txn,
        "UPDATE loyalty_entries SET customer_id = ?, idempotency_key = 'erased/' || CAST(entry_id AS TEXT), \
         description = '', order_id = '', remaining = 0, pending_remaining = 0 WHERE customer_id = ?",
        vec![pseudonym.clone().into(), customer.into()],
    )
    .await?
    .rows_affected();
    let vouchers = exec(
        txn,
        "UPDATE loyalty_vouchers SET customer_id = ? WHERE customer_id = ?",
        vec![pseudonym.into(), customer.into()],
    )
    .await?
    .rows_affected();
    let mut deleted = 0;
    for table in [
        "loyalty_accounts",
        "loyalty_orders",
        "loyalty_offers",
        "loyalty_messages",
    ] {
        deleted += exec(
            txn,
            &format!("DELETE FROM {table} WHERE customer_id = ?"),
            vec![customer.into()],
        )
        .await?
        .rows_affected();
    }
    Ok(Erased::new(entries + vouchers + deleted + requests, now))
}

#[tonic::async_trait]
impl DataSubjectService for LoyaltyPrivacyApi {
    async fn export_customer_data(
        &self,
        request: Request<pb::ExportCustomerDataRequest>,
    ) -> Result<Response<pb::ExportCustomerDataResponse>, Status> {
        let export = ExportRequest::parse(request.into_inner(), ExportCursor::parse)?;
        if export.is_first_page() {
            let loyalty = &self.loyalty;
            let txn = loyalty.begin_write().await?;
            export
                .claim(REQUESTS, &txn, &loyalty.key, loyalty.clock.now())
                .await?;
            txn.commit().await.map_err(ApiError::from)?;
        }
        let customer = export.customer.as_ref();
        let (records, next) = export_page(
            export.after.unwrap_or_default(),
            export.limit,
            async || self.about(customer).await,
            async |after, count| self.entries(customer, after, count).await,
        )
        .await?;
        Ok(Response::new(pb::ExportCustomerDataResponse {
            service: SERVICE.to_owned(),
            records,
            next_page_token: next.map(ExportCursor::token).unwrap_or_default(),
        }))
    }

    async fn erase_customer(
        &self,
        request: Request<pb::EraseCustomerRequest>,
    ) -> Result<Response<pb::EraseCustomerResponse>, Status> {
        let (customer, request_id) = parse_erase(request.into_inner())?;
        let loyalty = &self.loyalty;
        let now = loyalty.clock.now();
        let txn = loyalty.begin_write().await?;
        let fingerprint = loyalty.key.fingerprint(&Subject {
            customer_id: customer.as_ref(),
        });
        let erased = REQUESTS
            .idempotent(
                &txn,
                Logged {
                    operation: "EraseCustomer",
                    request_id: request_id.as_ref(),
                    fingerprint: &fingerprint,
                },
                now,
                async |txn| erase_in(loyalty, txn, customer.as_ref(), now).await,
            )
            .await?
            .into_inner();
        txn.commit().await.map_err(ApiError::from)?;
        Ok(Response::new(
            erased.response(SERVICE, vec![RETAINED.to_owned()]),
        ))
    }

    async fn list_linked_customer_ids(
        &self,
        request: Request<pb::ListLinkedCustomerIdsRequest>,
    ) -> Result<Response<pb::ListLinkedCustomerIdsResponse>, Status> {
        // Links no ids: merges move this service's data to the survivor.
        Ok(Response::new(no_linked_ids(request.into_inner())?))
    }
}
