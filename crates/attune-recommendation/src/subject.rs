//! `attune.privacy.v1.DataSubjectService` for recommendation's data: export a
//! customer's interactions and session state; erase them, and stop serving the
//! customer from the models at once (the next training no longer holds them).
//! Recommendation keeps no links between ids: merges moved a visitor's rows to
//! the customer already.

use attune_kit::ApiError;
use attune_kit::idempotency::Request as Logged;
use attune_kit::privacy::{
    Erased, ExportCursor, ExportRequest, Subject, export_page, no_linked_ids, parse_erase,
    struct_from_json,
};
use attune_kit::types::time;
use attune_proto::privacy::v1 as pb;
use attune_proto::privacy::v1::data_subject_service_server::DataSubjectService;
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

/// Reads a page token: the shared export cursor, or one this service handed
/// out before it used that (`i:N`, after interaction N, the session sent).
fn parse_cursor(text: &str) -> Option<ExportCursor> {
    ExportCursor::parse(text).or_else(|| {
        text.strip_prefix("i:")?
            .parse()
            .ok()
            .map(ExportCursor::After)
    })
}

impl RecommendationPrivacyApi {
    /// The records about the customer besides interactions: their session, if any.
    async fn about(&self, customer: &str) -> Result<Vec<pb::DataRecord>, ApiError> {
        let Some(session) = store::sessions::get(&self.app.db, customer).await? else {
            return Ok(Vec::new());
        };
        let data = serde_json::to_value(&session).map_err(ApiError::internal)?;
        Ok(vec![pb::DataRecord {
            kind: "session".to_owned(),
            id: "session".to_owned(),
            update_time: None,
            data: Some(struct_from_json(serde_json::json!({ "session": data }))),
        }])
    }

    /// Up to `count` of the customer's interactions after id `after`, in id order.
    async fn interactions(
        &self,
        customer: &str,
        after: i64,
        count: usize,
    ) -> Result<Vec<(i64, pb::DataRecord)>, ApiError> {
        let rows =
            store::interactions::of_customer(&self.app.db, customer, after, count as u64).await?;
        rows.into_iter()
            .map(|(id, interaction)| {
                let data =
                    serde_json::to_value(interaction.exported()).map_err(ApiError::internal)?;
                let record = pb::DataRecord {
                    kind: "interaction".to_owned(),
                    id: id.to_string(),
                    update_time: chrono::DateTime::from_timestamp_micros(interaction.occur_time)
                        .map(time::to_proto),
                    data: Some(struct_from_json(data)),
                };
                Ok((id, record))
            })
            .collect()
    }
}

#[tonic::async_trait]
impl DataSubjectService for RecommendationPrivacyApi {
    async fn export_customer_data(
        &self,
        request: Request<pb::ExportCustomerDataRequest>,
    ) -> Result<Response<pb::ExportCustomerDataResponse>, Status> {
        let export = ExportRequest::parse(request.into_inner(), parse_cursor)?;
        let customer = export.customer.as_ref();
        if export.is_first_page() {
            let app = &self.app;
            let txn = app.begin_write().await.map_err(ApiError::from)?;
            export
                .claim(REQUESTS, &txn, &app.key, app.clock.now())
                .await?;
            txn.commit().await.map_err(ApiError::from)?;
        }
        let (records, next) = export_page(
            export.after.unwrap_or_default(),
            export.limit,
            async || self.about(customer).await,
            async |after, count| self.interactions(customer, after, count).await,
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
                    Ok::<_, ApiError>(Erased::new(count, now))
                },
            )
            .await?;
        txn.commit().await.map_err(ApiError::from)?;
        app.sessions.forget(customer_id);
        app.tastes.forget(customer_id);
        app.served.erase(customer_id);
        Ok(Response::new(outcome.into_inner().response(
            SERVICE,
            vec![
                "answers served under an experiment (recommendation id and variant, no customer id), \
                 for the experiment's statistics"
                    .to_owned(),
            ],
        )))
    }

    async fn list_linked_customer_ids(
        &self,
        request: Request<pb::ListLinkedCustomerIdsRequest>,
    ) -> Result<Response<pb::ListLinkedCustomerIdsResponse>, Status> {
        // Links no ids: merges move this service's data to the survivor.
        Ok(Response::new(no_linked_ids(request.into_inner())?))
    }
}
