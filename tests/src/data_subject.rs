//! Data-subject requests through the gateway's public port, as every service's
//! tests use them: the export collected whole, the erasure's answer.

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
        let mut stream = self
            .data_subject_requests()
            .export_customer(gateway_pb::ExportCustomerRequest {
                customer_id: customer.into(),
                request_id: request_id.into(),
                ..Default::default()
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
}
