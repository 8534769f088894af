//! `attune.privacy.v1.DataSubjectService` for consent's data: export a
//! customer's consent records, erase a customer (see `subject_rights` for what
//! erasure keeps and why).

use attune_kit::pagination::next_page;
use attune_kit::privacy::{ExportRequest, no_linked_ids, parse_erase};
use attune_kit::types::time;
use attune_proto::privacy::v1 as pb;
use attune_proto::privacy::v1::data_subject_service_server::DataSubjectService;
use tonic::{Request, Response, Status};

use crate::convert;
use crate::service::Consent;

/// The name an export or receipt gives this service.
const SERVICE: &str = "attune.consent.v1";

/// Consent's data-subject requests over a [`Consent`] service.
#[derive(Debug, Clone)]
pub struct ConsentPrivacyApi {
    consent: Consent,
}

impl ConsentPrivacyApi {
    pub fn new(consent: Consent) -> Self {
        Self { consent }
    }
}

#[tonic::async_trait]
impl DataSubjectService for ConsentPrivacyApi {
    async fn export_customer_data(
        &self,
        request: Request<pb::ExportCustomerDataRequest>,
    ) -> Result<Response<pb::ExportCustomerDataResponse>, Status> {
        let ExportRequest {
            customer,
            request_id,
            limit,
            after,
        } = ExportRequest::parse(request.into_inner(), |c| c.parse::<i64>().ok())?;
        let records = self
            .consent
            .export(&customer, &request_id, after, limit + 1)
            .await?;
        let (records, next_page_token) = next_page(records, limit, |r| r.record_id.to_string());
        Ok(Response::new(pb::ExportCustomerDataResponse {
            service: SERVICE.to_owned(),
            records: records.into_iter().map(convert::record_export).collect(),
            next_page_token,
        }))
    }

    /// Consent never links ids: a visitor's decisions stay under the visitor's
    /// id (profile knows which ids were merged, and the gateway asks it).
    async fn list_linked_customer_ids(
        &self,
        request: Request<pb::ListLinkedCustomerIdsRequest>,
    ) -> Result<Response<pb::ListLinkedCustomerIdsResponse>, Status> {
        // Links no ids: merges move this service's data to the survivor.
        Ok(Response::new(no_linked_ids(request.into_inner())?))
    }

    async fn erase_customer(
        &self,
        request: Request<pb::EraseCustomerRequest>,
    ) -> Result<Response<pb::EraseCustomerResponse>, Status> {
        let (customer, request_id) = parse_erase(request.into_inner())?;
        let receipt = self.consent.erase(&customer, &request_id).await?;
        Ok(Response::new(pb::EraseCustomerResponse {
            service: SERVICE.to_owned(),
            erased_record_count: receipt.erased_record_count,
            retained: receipt.retained,
            erase_time: Some(time::to_proto(receipt.erase_time)),
        }))
    }
}
