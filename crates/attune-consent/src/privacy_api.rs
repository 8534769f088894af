//! `attune.privacy.v1.DataSubjectService` for consent's data: export a
//! customer's consent records, erase a customer (see `subject_rights` for what
//! erasure keeps and why).

use attune_kit::error::Violations;
use attune_kit::pagination::{next_page, page_size};
use attune_kit::privacy::{ExportRequest, parse_erase};
use attune_kit::types::time;
use attune_proto::privacy::v1 as pb;
use attune_proto::privacy::v1::data_subject_service_server::DataSubjectService;
use tonic::{Request, Response, Status};

use crate::convert;
use crate::domain::CustomerId;
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
        let pb::ListLinkedCustomerIdsRequest {
            customer_id,
            page_size: raw_size,
            page_token,
        } = request.into_inner();
        let mut v = Violations::default();
        v.check("customer_id", CustomerId::parse(&customer_id));
        v.check_field(page_size("page_size", raw_size, 1000, 1000));
        if !page_token.is_empty() {
            v.check::<(), &str>(
                "page_token",
                Err("must be a token from an earlier response"),
            );
        }
        v.finish()?;
        Ok(Response::new(pb::ListLinkedCustomerIdsResponse::default()))
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
