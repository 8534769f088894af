//! Data-subject requests fanned out to fake backends: a receipt per service in
//! service order, a failing service FAILED while the others go on, and an export
//! whose backend never advances its page token stopped with a FAILED receipt.

#![allow(clippy::unwrap_used)] // a panic is how a test fails

use attune_gateway::{Backend, DataSubjectRequests};
use attune_kit::server::HttpService;
use attune_proto::gateway::v1 as pb;
use attune_proto::gateway::v1::data_subject_request_service_server::DataSubjectRequestService;
use attune_proto::privacy::v1 as privacy;
use attune_proto::privacy::v1::data_subject_service_server::{
    DataSubjectService, DataSubjectServiceServer,
};
use tokio_stream::StreamExt as _;
use tonic::{Code, Request, Response, Status};

/// How a fake service answers.
#[derive(Clone, Copy)]
enum Behaviour {
    /// Two pages of one record each; erasure erases 3.
    Works,
    /// Every call fails UNAVAILABLE.
    Fails,
    /// Every export page hands back a token equal to the one it was given.
    Stuck,
}

#[derive(Clone)]
struct Fake(Behaviour);

fn record(id: &str) -> privacy::DataRecord {
    privacy::DataRecord {
        kind: "thing".into(),
        id: id.into(),
        update_time: None,
        data: None,
    }
}

#[tonic::async_trait]
impl DataSubjectService for Fake {
    async fn export_customer_data(
        &self,
        request: Request<privacy::ExportCustomerDataRequest>,
    ) -> Result<Response<privacy::ExportCustomerDataResponse>, Status> {
        let token = request.into_inner().page_token;
        let (records, next_page_token) = match (self.0, token.as_str()) {
            (Behaviour::Fails, _) => return Err(Status::unavailable("down")),
            (Behaviour::Stuck, _) => (vec![record("s")], "same".to_owned()),
            (Behaviour::Works, "") => (vec![record("1")], "page-2".to_owned()),
            (Behaviour::Works, _) => (vec![record("2")], String::new()),
        };
        Ok(Response::new(privacy::ExportCustomerDataResponse {
            service: "fake".into(),
            records,
            next_page_token,
        }))
    }

    async fn erase_customer(
        &self,
        _request: Request<privacy::EraseCustomerRequest>,
    ) -> Result<Response<privacy::EraseCustomerResponse>, Status> {
        match self.0 {
            Behaviour::Fails => Err(Status::unavailable("down")),
            Behaviour::Works | Behaviour::Stuck => {
                Ok(Response::new(privacy::EraseCustomerResponse {
                    service: "fake".into(),
                    erased_record_count: 3,
                    retained: vec!["nothing".into()],
                    erase_time: Some(prost_types::Timestamp::default()),
                }))
            }
        }
    }
}

fn backend(package: &'static str, behaviour: Behaviour) -> Backend {
    Backend::new(
        package,
        &[],
        true,
        HttpService::new(DataSubjectServiceServer::new(Fake(behaviour))),
    )
}

fn fan_out(backends: &[Backend]) -> DataSubjectRequests {
    DataSubjectRequests::new(backends)
}

async fn export(requests: &DataSubjectRequests) -> Vec<pb::ExportCustomerResponse> {
    let stream = requests
        .export_customer(Request::new(pb::ExportCustomerRequest {
            customer_id: "cust-1".into(),
            request_id: "req-1".into(),
        }))
        .await
        .unwrap()
        .into_inner();
    stream.map(Result::unwrap).collect().await
}

#[tokio::test]
async fn erasure_gives_a_receipt_per_service_and_a_failing_one_holds_no_other_back() {
    let requests = fan_out(&[
        backend("attune.b.v1", Behaviour::Works),
        backend("attune.a.v1", Behaviour::Fails),
        // Holds no personal data: never asked.
        Backend::new(
            "attune.c.v1",
            &[],
            false,
            HttpService::new(DataSubjectServiceServer::new(Fake(Behaviour::Fails))),
        ),
    ]);
    let answer = requests
        .erase_customer(Request::new(pb::EraseCustomerRequest {
            customer_id: "cust-1".into(),
            request_id: "req-1".into(),
        }))
        .await
        .unwrap()
        .into_inner();
    let services: Vec<_> = answer.receipts.iter().map(|r| r.service.as_str()).collect();
    assert_eq!(
        services,
        ["attune.a.v1", "attune.b.v1"],
        "ordered by service"
    );
    assert_eq!(answer.receipts[0].status, pb::ReceiptStatus::Failed as i32);
    assert_eq!(answer.receipts[0].error_code, Code::Unavailable as i32);
    assert_eq!(
        answer.receipts[1].status,
        pb::ReceiptStatus::Succeeded as i32
    );
    assert_eq!(answer.receipts[1].record_count, 3);
    assert!(!answer.complete);
    assert!(answer.erase_time.is_none());
    assert_eq!(answer.customer_ids, ["cust-1"]);
}

#[tokio::test]
async fn export_pages_each_service_and_ends_with_a_receipt_per_service() {
    let messages = export(&fan_out(&[
        backend("attune.b.v1", Behaviour::Works),
        backend("attune.a.v1", Behaviour::Fails),
    ]))
    .await;
    let summary: Vec<_> = messages
        .iter()
        .map(|m| {
            (
                m.service.as_str(),
                m.records.len(),
                m.receipt.as_ref().map(|r| (r.status, r.record_count)),
            )
        })
        .collect();
    let (failed, succeeded) = (
        pb::ReceiptStatus::Failed as i32,
        pb::ReceiptStatus::Succeeded as i32,
    );
    assert_eq!(
        summary,
        [
            ("attune.a.v1", 0, Some((failed, 0))),
            ("attune.b.v1", 1, None),
            ("attune.b.v1", 1, Some((succeeded, 2))),
        ]
    );
    assert!(messages.iter().all(|m| m.customer_id == "cust-1"));
}

#[tokio::test]
async fn an_export_whose_page_token_never_advances_fails_instead_of_looping() {
    let messages = export(&fan_out(&[backend("attune.a.v1", Behaviour::Stuck)])).await;
    assert!(messages.len() <= 2, "{messages:?}");
    let receipt = messages.last().unwrap().receipt.clone().unwrap();
    assert_eq!(receipt.status, pb::ReceiptStatus::Failed as i32);
    assert_eq!(receipt.error_code, Code::Internal as i32);
}
