//! The fan-out's calls: each data-holding backend's internal
//! `attune.privacy.v1.DataSubjectService`, the ids a request covers (the
//! customer and the anonymous ids merged into it), one export page, one
//! backend's erasure of every id.

use attune_kit::server::HttpService;
use attune_kit::telemetry::TraceContextInterceptor;
use attune_kit::types::CustomerId;
use attune_proto::gateway::v1 as pb;
use attune_proto::privacy::v1 as privacy;
use attune_proto::privacy::v1::data_subject_service_client::DataSubjectServiceClient;
use tonic::metadata::MetadataMap;
use tonic::service::interceptor::InterceptedService;
use tonic::{Request, Status};

use crate::backend::Backend;

/// Records asked of a backend per export page: the most one gateway message holds.
const EXPORT_PAGE_SIZE: i32 = 1000;

pub(super) type Client =
    DataSubjectServiceClient<InterceptedService<HttpService, TraceContextInterceptor>>;

pub(super) fn client(backend: &Backend) -> Client {
    DataSubjectServiceClient::with_interceptor(backend.transport(), TraceContextInterceptor)
}

/// A backend call carrying the caller's deadline (`grpc-timeout` as received).
pub(super) fn outgoing<T>(message: T, caller: &MetadataMap) -> Request<T> {
    let mut request = Request::new(message);
    if let Some(timeout) = caller.get("grpc-timeout") {
        request
            .metadata_mut()
            .insert("grpc-timeout", timeout.clone());
    }
    request
}

pub(super) fn now() -> prost_types::Timestamp {
    attune_kit::types::time::to_proto(chrono::Utc::now())
}

pub(super) fn failed(backend: &Backend, status: &Status) -> pb::ServiceReceipt {
    tracing::warn!(
        backend = backend.package(),
        code = ?status.code(),
        "a backend failed its part of a data-subject request"
    );
    pb::ServiceReceipt {
        service: backend.package().to_owned(),
        status: pb::ReceiptStatus::Failed.into(),
        record_count: 0,
        retained: Vec::new(),
        error_code: status.code() as i32,
        error_message: status.message().to_owned(),
        complete_time: Some(now()),
    }
}

/// One id a data-subject request covers, with the request id each backend gets
/// for it.
#[derive(Debug, Clone)]
pub(super) struct Subject {
    pub customer_id: String,
    pub request_id: String,
}

/// The ids a request covers: the one asked for first, then every id a backend
/// links to it (the anonymous profiles merged into it), each once, in the order
/// learnt. A linked id gets its own request id, derived from the caller's, so a
/// retry reaches each backend with the same ids and each backend's idempotency
/// holds per id. A backend that cannot list is skipped here: its own part of the
/// request fails too, and a retry asks it again.
pub(super) async fn subjects(
    backends: &[Backend],
    customer_id: &str,
    request_id: &str,
    caller: &MetadataMap,
) -> Subjects {
    let mut ids = vec![customer_id.to_owned()];
    let mut linking = Vec::new();
    for backend in backends {
        let mut client = client(backend);
        let mut page_token = String::new();
        loop {
            let page = client
                .list_linked_customer_ids(outgoing(
                    privacy::ListLinkedCustomerIdsRequest {
                        customer_id: customer_id.to_owned(),
                        page_size: 0,
                        page_token: page_token.clone(),
                    },
                    caller,
                ))
                .await;
            let page = match page {
                Ok(page) => page.into_inner(),
                Err(status) => {
                    tracing::warn!(
                        backend = backend.package(),
                        code = ?status.code(),
                        "a backend could not list the ids linked to a customer"
                    );
                    break;
                }
            };
            if !page.customer_ids.is_empty() && !linking.contains(&backend.package()) {
                linking.push(backend.package());
            }
            for id in page.customer_ids {
                if CustomerId::parse(&id).is_ok() && !ids.contains(&id) {
                    ids.push(id);
                }
            }
            if page.next_page_token.is_empty() || page.next_page_token == page_token {
                break;
            }
            page_token = page.next_page_token;
        }
    }
    let ids = ids
        .into_iter()
        .enumerate()
        .map(|(index, customer_id)| Subject {
            request_id: if index == 0 {
                request_id.to_owned()
            } else {
                linked_request_id(request_id, &customer_id)
            },
            customer_id,
        })
        .collect();
    Subjects { ids, linking }
}

/// The ids a request covers, and the backends that link them (profile).
#[derive(Debug)]
pub(super) struct Subjects {
    pub ids: Vec<Subject>,
    /// Packages of the backends that reported linked ids: an erasure asks them
    /// last, once every other backend succeeded, since erasing there forgets the
    /// links a retry would need.
    pub linking: Vec<&'static str>,
}

/// The receipt of a linking backend not asked to erase yet.
pub(super) fn held_back(backend: &Backend) -> pb::ServiceReceipt {
    let status = Status::aborted(
        "not asked yet: this service links the customer's ids, which a retry needs, so it \
         erases only after every other service succeeded; retry with the same request_id",
    );
    failed(backend, &status)
}

/// The request id a backend gets for a linked id: a digest of the caller's
/// request id and the linked id, valid as a request id whatever their lengths.
fn linked_request_id(request_id: &str, linked_id: &str) -> String {
    use sha2::Digest as _;
    let digest = sha2::Sha256::new()
        .chain_update(request_id.as_bytes())
        .chain_update([0])
        .chain_update(linked_id.as_bytes())
        .finalize();
    format!("linked-{}", &hex::encode(digest)[..40])
}

/// What one page of one id's export brought.
pub(super) enum Page {
    /// Records, and the token of the next page (empty: the id is done).
    Records(Vec<privacy::DataRecord>, String),
    /// The backend failed.
    Failed(Status),
}

pub(super) async fn export_page(
    client: &mut Client,
    subject: &Subject,
    page_token: &str,
    caller: &MetadataMap,
) -> Page {
    let page = client
        .export_customer_data(outgoing(
            privacy::ExportCustomerDataRequest {
                customer_id: subject.customer_id.clone(),
                request_id: subject.request_id.clone(),
                page_token: page_token.to_owned(),
                page_size: EXPORT_PAGE_SIZE,
            },
            caller,
        ))
        .await;
    match page {
        Ok(page) => {
            let page = page.into_inner();
            if !page.next_page_token.is_empty() && page.next_page_token == page_token {
                // A backend that hands back the token it was given would keep
                // this stream going for ever.
                return Page::Failed(Status::internal("the export's page token did not advance"));
            }
            Page::Records(page.records, page.next_page_token)
        }
        Err(status) => Page::Failed(status),
    }
}

/// Erases every subject at one backend, in order, and sums the answers into
/// its receipt; the first failure stops it and fails the receipt.
pub(super) async fn erase_at(
    backend: &Backend,
    subjects: &[Subject],
    caller: &MetadataMap,
) -> pb::ServiceReceipt {
    let mut client = client(backend);
    let mut receipt = pb::ServiceReceipt {
        service: backend.package().to_owned(),
        status: pb::ReceiptStatus::Succeeded.into(),
        record_count: 0,
        retained: Vec::new(),
        error_code: 0,
        error_message: String::new(),
        complete_time: None,
    };
    for subject in subjects {
        let answer = client
            .erase_customer(outgoing(
                privacy::EraseCustomerRequest {
                    customer_id: subject.customer_id.clone(),
                    request_id: subject.request_id.clone(),
                },
                caller,
            ))
            .await;
        match answer {
            Ok(answer) => {
                let privacy::EraseCustomerResponse {
                    service: _,
                    erased_record_count,
                    retained,
                    erase_time,
                } = answer.into_inner();
                receipt.record_count += erased_record_count;
                for kept in retained {
                    if !receipt.retained.contains(&kept) {
                        receipt.retained.push(kept);
                    }
                }
                receipt.complete_time = erase_time.or_else(|| Some(now()));
            }
            Err(status) => return failed(backend, &status),
        }
    }
    receipt
}
