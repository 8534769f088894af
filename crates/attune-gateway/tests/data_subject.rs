//! Data-subject requests fanned out to fake backends: a receipt per service in
//! service order, a failing service FAILED while the others go on, an export
//! whose backend never advances its page token stopped with a FAILED receipt,
//! and ids linked to the customer (merged anonymous profiles) covered at every
//! service, the linking service erasing last.

#![allow(clippy::unwrap_used)] // a panic is how a test fails

use attune_gateway::{Backend, DataSubjectRequests};
use attune_kit::server::HttpService;
use attune_proto::gateway::v1 as pb;
use attune_proto::gateway::v1::data_subject_request_service_server::DataSubjectRequestService;
use attune_proto::privacy::v1 as privacy;
use attune_proto::privacy::v1::data_subject_service_server::{
    DataSubjectService, DataSubjectServiceServer,
};
use std::sync::{Arc, Mutex};

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
struct Fake {
    behaviour: Behaviour,
    /// Ids this service links to every customer (as profile links merged ids).
    links: &'static [&'static str],
    /// Customer ids erased here, in order.
    erased: Arc<Mutex<Vec<String>>>,
}

impl Fake {
    fn new(behaviour: Behaviour) -> Self {
        Self {
            behaviour,
            links: &[],
            erased: Arc::default(),
        }
    }
}

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
        let (records, next_page_token) = match (self.behaviour, token.as_str()) {
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

    async fn list_linked_customer_ids(
        &self,
        _request: Request<privacy::ListLinkedCustomerIdsRequest>,
    ) -> Result<Response<privacy::ListLinkedCustomerIdsResponse>, Status> {
        if let Behaviour::Fails = self.behaviour {
            return Err(Status::unavailable("down"));
        }
        Ok(Response::new(privacy::ListLinkedCustomerIdsResponse {
            customer_ids: self.links.iter().map(|id| (*id).to_owned()).collect(),
            next_page_token: String::new(),
        }))
    }

    async fn erase_customer(
        &self,
        request: Request<privacy::EraseCustomerRequest>,
    ) -> Result<Response<privacy::EraseCustomerResponse>, Status> {
        match self.behaviour {
            Behaviour::Fails => Err(Status::unavailable("down")),
            Behaviour::Works | Behaviour::Stuck => {
                self.erased
                    .lock()
                    .unwrap()
                    .push(request.into_inner().customer_id);
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
    fake_backend(package, Fake::new(behaviour))
}

fn fake_backend(package: &'static str, fake: Fake) -> Backend {
    Backend::new(
        package,
        &[],
        true,
        HttpService::new(DataSubjectServiceServer::new(fake)),
    )
}

async fn erase(requests: &DataSubjectRequests) -> pb::EraseCustomerResponse {
    requests
        .erase_customer(Request::new(pb::EraseCustomerRequest {
            customer_id: "cust-1".into(),
            request_id: "req-1".into(),
        }))
        .await
        .unwrap()
        .into_inner()
}

fn fan_out(backends: &[Backend]) -> DataSubjectRequests {
    DataSubjectRequests::new(backends)
}

async fn export(requests: &DataSubjectRequests) -> Vec<pb::ExportCustomerResponse> {
    let stream = requests
        .export_customer(Request::new(pb::ExportCustomerRequest {
            customer_id: "cust-1".into(),
            request_id: "req-1".into(),
            ..Default::default()
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
            HttpService::new(DataSubjectServiceServer::new(Fake::new(Behaviour::Fails))),
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

#[tokio::test]
async fn linked_ids_are_erased_everywhere_and_the_linking_service_goes_last() {
    let linking = Fake {
        links: &["anon-1", "anon-2"],
        ..Fake::new(Behaviour::Works)
    };
    let other = Fake::new(Behaviour::Works);
    let (linking_log, other_log) = (Arc::clone(&linking.erased), Arc::clone(&other.erased));
    let answer = erase(&fan_out(&[
        fake_backend("attune.a.v1", other),
        fake_backend("attune.p.v1", linking),
    ]))
    .await;
    assert_eq!(answer.customer_ids, ["cust-1", "anon-1", "anon-2"]);
    assert!(answer.complete);
    let counts: Vec<_> = answer
        .receipts
        .iter()
        .map(|r| (r.service.as_str(), r.record_count))
        .collect();
    assert_eq!(
        counts,
        [("attune.a.v1", 9), ("attune.p.v1", 9)],
        "3 per id, summed"
    );
    assert_eq!(*other_log.lock().unwrap(), ["cust-1", "anon-1", "anon-2"]);
    assert_eq!(*linking_log.lock().unwrap(), ["cust-1", "anon-1", "anon-2"]);
}

#[tokio::test]
async fn the_linking_service_is_held_back_while_another_fails_so_a_retry_still_learns_the_links() {
    let linking = Fake {
        links: &["anon-1"],
        ..Fake::new(Behaviour::Works)
    };
    let linking_log = Arc::clone(&linking.erased);
    let answer = erase(&fan_out(&[
        backend("attune.a.v1", Behaviour::Fails),
        fake_backend("attune.p.v1", linking),
    ]))
    .await;
    assert!(!answer.complete);
    assert_eq!(answer.receipts[1].service, "attune.p.v1");
    assert_eq!(answer.receipts[1].error_code, Code::Aborted as i32);
    assert!(linking_log.lock().unwrap().is_empty(), "not asked");
}

#[tokio::test]
async fn an_export_covers_each_linked_id_under_its_own_name() {
    let linking = Fake {
        links: &["anon-1"],
        ..Fake::new(Behaviour::Works)
    };
    let messages = export(&fan_out(&[fake_backend("attune.p.v1", linking)])).await;
    let ids: Vec<_> = messages
        .iter()
        .map(|m| (m.customer_id.as_str(), m.records.len(), m.receipt.is_some()))
        .collect();
    assert_eq!(
        ids,
        [
            ("cust-1", 1, false),
            ("cust-1", 1, false),
            ("anon-1", 1, false),
            ("anon-1", 1, true),
        ]
    );
    assert_eq!(
        messages
            .last()
            .unwrap()
            .receipt
            .as_ref()
            .unwrap()
            .record_count,
        4
    );
}
