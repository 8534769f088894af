//! `attune.privacy.v1.DataSubjectService` for the data-access log: a customer's
//! entries in an export, and their deletion on erasure (nothing kept: consent's
//! audit log records that the erasure happened). The log links no ids.

use attune_kit::ApiError;
use attune_kit::clock::Clock;
use attune_kit::db::{begin_write, micros};
use attune_kit::idempotency::Request as Logged;
use attune_kit::privacy::{
    Erased, ExportRequest, Subject, no_linked_ids, parse_erase, struct_from_json,
};
use attune_kit::secrets::PseudonymKey;
use attune_kit::types::time;
use attune_proto::privacy::v1 as pb;
use attune_proto::privacy::v1::data_subject_service_server::DataSubjectService;
use sea_orm::DatabaseConnection;
use tonic::{Request, Response, Status};

use super::PACKAGE;
use super::store::{self, REQUESTS, WRITE_LOCK};
use super::writer::Flush;

/// The log's data-subject requests.
#[derive(Clone, Debug)]
pub(super) struct AccessLogSubject {
    db: DatabaseConnection,
    clock: Clock,
    key: PseudonymKey,
    flush: Flush,
}

impl AccessLogSubject {
    pub(super) fn new(
        db: DatabaseConnection,
        clock: Clock,
        key: PseudonymKey,
        flush: Flush,
    ) -> Self {
        Self {
            db,
            clock,
            key,
            flush,
        }
    }
}

#[tonic::async_trait]
impl DataSubjectService for AccessLogSubject {
    async fn export_customer_data(
        &self,
        request: Request<pb::ExportCustomerDataRequest>,
    ) -> Result<Response<pb::ExportCustomerDataResponse>, Status> {
        let export = ExportRequest::parse(request.into_inner(), |c| c.parse::<i64>().ok())?;
        // What was recorded before the export (the export itself, first of all)
        // is in it.
        if export.after.is_none() {
            self.flush.pending_entries().await;
        }
        let rows = store::newest_first(
            &self.db,
            export.customer.as_ref(),
            export.after,
            u64::from(export.limit) + 1,
        )
        .await
        .map_err(ApiError::from)?;
        let (rows, next_page_token) =
            attune_kit::pagination::next_page(rows, export.limit, |row| row.id.to_string());
        let records = rows
            .into_iter()
            .map(|row| {
                let (id, entry) = row.into_entry();
                let update_time = micros::from_micros(entry.access_micros)
                    .ok()
                    .map(time::to_proto);
                let categories: Vec<_> = entry
                    .data_categories()
                    .into_iter()
                    .map(|category| category.as_str())
                    .collect();
                let access = super::api::view(entry);
                pb::DataRecord {
                    kind: "data_access".to_owned(),
                    id: id.to_string(),
                    update_time,
                    data: Some(struct_from_json(serde_json::json!({
                        "caller_kind": access.caller_kind().as_str_name(),
                        "caller_name": access.caller_name,
                        "store_id": access.store_id,
                        "rpc": access.rpc,
                        "purpose_codes": access.purpose_codes,
                        "data_categories": categories,
                    }))),
                }
            })
            .collect();
        Ok(Response::new(pb::ExportCustomerDataResponse {
            service: PACKAGE.to_owned(),
            records,
            next_page_token,
        }))
    }

    async fn erase_customer(
        &self,
        request: Request<pb::EraseCustomerRequest>,
    ) -> Result<Response<pb::EraseCustomerResponse>, Status> {
        let (customer, request_id) = parse_erase(request.into_inner())?;
        let customer_id = customer.as_ref();
        // Entries recorded before the erasure are stored first, so none of
        // them is written after it.
        self.flush.pending_entries().await;
        let now = self.clock.now();
        let fingerprint = self.key.fingerprint(&Subject { customer_id });
        let txn = begin_write(&self.db, WRITE_LOCK)
            .await
            .map_err(ApiError::from)?;
        let outcome = REQUESTS
            .idempotent(
                &txn,
                Logged {
                    operation: "EraseCustomer",
                    request_id: request_id.as_ref(),
                    fingerprint: &fingerprint,
                },
                now,
                async |txn| {
                    let count = store::delete_customer(txn, customer_id).await?;
                    Ok::<_, ApiError>(Erased::new(count, now))
                },
            )
            .await?;
        txn.commit().await.map_err(ApiError::from)?;
        Ok(Response::new(
            outcome.into_inner().response(PACKAGE, Vec::new()),
        ))
    }

    async fn list_linked_customer_ids(
        &self,
        request: Request<pb::ListLinkedCustomerIdsRequest>,
    ) -> Result<Response<pb::ListLinkedCustomerIdsResponse>, Status> {
        Ok(Response::new(no_linked_ids(request.into_inner())?))
    }
}
