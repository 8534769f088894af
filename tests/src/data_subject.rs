//! Data-subject requests through the gateway's public port, as every service's
//! tests use them: the export collected whole (or resumed from a token), the
//! erasure's answer, a request's stored status.

use attune_proto::gateway::v1 as gateway_pb;
use tokio_stream::StreamExt;

use crate::TestApp;

impl TestApp {
    /// Every message of the gateway's export of `customer` under `request_id`.
    pub async fn export_customer(
        &self,
        customer: &str,
        request_id: &str,
    ) -> Vec<gateway_pb::ExportCustomerResponse> {
        self.resume_export(customer, request_id, "").await
    }

    /// Every message of the export of `customer` under `request_id` from
    /// `resume_token` on (empty: the whole export).
    pub async fn resume_export(
        &self,
        customer: &str,
        request_id: &str,
        resume_token: &str,
    ) -> Vec<gateway_pb::ExportCustomerResponse> {
        let mut stream = self
            .data_subject_requests()
            .export_customer(gateway_pb::ExportCustomerRequest {
                customer_id: customer.into(),
                request_id: request_id.into(),
                resume_token: resume_token.into(),
            })
            .await
            .expect("the export starts")
            .into_inner();
        let mut messages = Vec::new();
        while let Some(message) = stream.next().await {
            messages.push(message.expect("the export stream does not fail"));
        }
        messages
    }

    /// The gateway's answer to erasing `customer` under `request_id`.
    pub async fn erase_customer(
        &self,
        customer: &str,
        request_id: &str,
    ) -> gateway_pb::EraseCustomerResponse {
        self.data_subject_requests()
            .erase_customer(gateway_pb::EraseCustomerRequest {
                customer_id: customer.into(),
                request_id: request_id.into(),
            })
            .await
            .expect("the erasure answers")
            .into_inner()
    }

    /// The stored status of data-subject request `request_id` of `customer`.
    pub async fn data_subject_request(
        &self,
        request_id: &str,
        customer: &str,
    ) -> Result<gateway_pb::DataSubjectRequest, tonic::Status> {
        self.data_subject_requests()
            .get_data_subject_request(gateway_pb::GetDataSubjectRequestRequest {
                request_id: request_id.into(),
                customer_id: customer.into(),
            })
            .await
            .map(|answer| {
                answer
                    .into_inner()
                    .request
                    .expect("a status answers its request")
            })
    }
}
