//! `attune.privacy.v1.DataSubjectService` for recommendation's data: export a
//! customer's interactions and session state; erase them, and stop serving the
//! customer from the models at once (the next training no longer holds them).
//! Recommendation keeps no links between ids: merges moved a visitor's rows to
//! the customer already.

use attune_kit::ApiError;
use attune_kit::idempotency::Request as Logged;
use attune_kit::pagination::encode_page_token;
use attune_kit::privacy::{ExportRequest, no_linked_ids, parse_erase, struct_from_json};
use attune_kit::types::time;
use attune_proto::privacy::v1 as pb;
use attune_proto::privacy::v1::data_subject_service_server::DataSubjectService;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tonic::{Request, Response, Status};

use crate::app::Recommendation;
use crate::replicas;
use crate::store::{self, REQUESTS};

/// The name an export or receipt gives this service.
const SERVICE: &str = "attune.recommendation.v1";

/// Recommendation's data-subject requests.
#[derive(Clone)]
pub struct RecommendationPrivacyApi {
    app: Recommendation,
}

impl RecommendationPrivacyApi {
    pub fn new(app: Recommendation) -> Self {
        Self { app }
    }
}

/// Where a page of an export starts: the session first (cursor 0), then
/// interactions after this id.
#[derive(Debug, Clone, Copy)]
enum ExportCursor {
    Interactions(i64),
}

impl ExportCursor {
    fn parse(text: &str) -> Option<Self> {
        text.strip_prefix("i:")?
            .parse()
            .ok()
            .map(Self::Interactions)
    }

    fn token(self) -> String {
        match self {
            Self::Interactions(after) => encode_page_token(&format!("i:{after}")),
        }
    }
}

/// What an erasure did, as remembered for its retries.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Erased {
    erased_record_count: i64,
    erase_time: DateTime<Utc>,
}

#[derive(Serialize)]
struct Subject<'a> {
    customer_id: &'a str,
}

#[tonic::async_trait]
impl DataSubjectService for RecommendationPrivacyApi {
    async fn export_customer_data(
        &self,
        request: Request<pb::ExportCustomerDataRequest>,
    ) -> Result<Response<pb::ExportCustomerDataResponse>, Status> {
        let export = ExportRequest::parse(request.into_inner(), ExportCursor::parse)?;
        let customer = export.customer.as_ref();
        let limit = export.limit as usize;
        let db = &self.app.db;
        let mut records = Vec::new();
        let after = match export.after {
            Some(ExportCursor::Interactions(after)) => after,
            None => {
                if let Some(session) = store::sessions::get(db, customer)
                    .await
                    .map_err(ApiError::from)?
                {
                    let data = serde_json::to_value(&session).map_err(ApiError::internal)?;
                    records.push(pb::DataRecord {
                        kind: "session".to_owned(),
                        id: "session".to_owned(),
                        update_time: None,
                        data: Some(struct_from_json(serde_json::json!({ "session": data }))),
                    });
                }
                0
            }
        };
        let room = limit.saturating_sub(records.len()).max(1);
        let rows = store::interactions::of_customer(db, customer, after, room as u64 + 1)
            .await
            .map_err(ApiError::from)?;
        let more = rows.len() > room;
        let mut last = after;
        for (id, interaction) in rows.into_iter().take(room) {
            last = id;
            let data = serde_json::to_value(interaction.exported()).map_err(ApiError::internal)?;
            records.push(pb::DataRecord {
                kind: "interaction".to_owned(),
                id: id.to_string(),
                update_time: chrono::DateTime::from_timestamp_micros(interaction.occur_time)
                    .map(time::to_proto),
                data: Some(struct_from_json(data)),
            });
        }
        Ok(Response::new(pb::ExportCustomerDataResponse {
            service: SERVICE.to_owned(),
            records,
            next_page_token: if more {
                ExportCursor::Interactions(last).token()
            } else {
                String::new()
            },
        }))
    }

    async fn erase_customer(
        &self,
        request: Request<pb::EraseCustomerRequest>,
    ) -> Result<Response<pb::EraseCustomerResponse>, Status> {
        let (customer, request_id) = parse_erase(request.into_inner())?;
        let app = &self.app;
        let customer_id = customer.as_ref();
        let now = app.clock.now();
        let fingerprint = app.key.fingerprint(&Subject { customer_id });
        // Stop serving the customer before the rows go, and again after, so a
        // training reading the data meanwhile cannot bring them back.
        app.served.erase(customer_id);
        let txn = app.begin_write().await.map_err(ApiError::from)?;
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
                    let count = store::interactions::delete_customer(txn, customer_id).await?
                        + store::sessions::delete(txn, customer_id).await?;
                    let name = app.names.of(customer_id);
                    app.changes
                        .record(txn, replicas::ERASED, [name], now)
                        .await?;
                    Ok::<_, ApiError>(Erased {
                        erased_record_count: i64::try_from(count).unwrap_or(i64::MAX),
                        erase_time: now,
                    })
                },
            )
            .await?;
        txn.commit().await.map_err(ApiError::from)?;
        app.sessions.forget(customer_id);
        app.tastes.forget(customer_id);
        app.served.erase(customer_id);
        let erased = outcome.into_inner();
        Ok(Response::new(pb::EraseCustomerResponse {
            service: SERVICE.to_owned(),
            erased_record_count: erased.erased_record_count,
            retained: vec![
                "answers served under an experiment (recommendation id and variant, no customer id), \
                 for the experiment's statistics"
                    .to_owned(),
            ],
            erase_time: Some(time::to_proto(erased.erase_time)),
        }))
    }

    async fn list_linked_customer_ids(
        &self,
        request: Request<pb::ListLinkedCustomerIdsRequest>,
    ) -> Result<Response<pb::ListLinkedCustomerIdsResponse>, Status> {
        // Links no ids: merges move this service's data to the survivor.
        Ok(Response::new(no_linked_ids(request.into_inner())?))
    }
}
