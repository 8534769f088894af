//! `attune.gateway.v1.DataSubjectRequestService`: a customer's export and erasure
//! across every data-holding backend, one receipt per service. Each backend
//! answers through its own internal `attune.privacy.v1.DataSubjectService`; the
//! gateway only fans out, pages and collects, so a service registered later is
//! covered without a change here.

use std::sync::Arc;

use attune_kit::error::Violations;
use attune_kit::server::HttpService;
use attune_kit::telemetry::TraceContextInterceptor;
use attune_kit::types::{CustomerId, RequestId};
use attune_proto::gateway::v1 as pb;
use attune_proto::gateway::v1::data_subject_request_service_server::DataSubjectRequestService;
use attune_proto::privacy::v1 as privacy;
use attune_proto::privacy::v1::data_subject_service_client::DataSubjectServiceClient;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::metadata::MetadataMap;
use tonic::service::interceptor::InterceptedService;
use tonic::{Request, Response, Status};
use tracing::Instrument as _;

use crate::backend::Backend;

/// Records asked of a backend per export page: the most one gateway message holds.
const EXPORT_PAGE_SIZE: i32 = 1000;

/// Fans data-subject requests out to the data-holding backends.
#[derive(Clone, Debug)]
pub struct DataSubjectRequests {
    /// Data-holding backends, ordered by package (the order receipts are given in).
    backends: Arc<[Backend]>,
}

impl DataSubjectRequests {
    /// Covers every backend of `backends` that holds personal data.
    pub fn new(backends: &[Backend]) -> Self {
        let mut holding: Vec<Backend> = backends
            .iter()
            .filter(|backend| backend.holds_personal_data())
            .cloned()
            .collect();
        holding.sort_by_key(Backend::package);
        Self {
            backends: holding.into(),
        }
    }
}

type Client = DataSubjectServiceClient<InterceptedService<HttpService, TraceContextInterceptor>>;

fn client(backend: &Backend) -> Client {
    DataSubjectServiceClient::with_interceptor(backend.transport(), TraceContextInterceptor)
}

/// A backend call carrying the caller's deadline (`grpc-timeout` as received).
fn outgoing<T>(message: T, caller: &MetadataMap) -> Request<T> {
    let mut request = Request::new(message);
    if let Some(timeout) = caller.get("grpc-timeout") {
        request
            .metadata_mut()
            .insert("grpc-timeout", timeout.clone());
    }
    request
}

/// Checks both ids of a request; INVALID_ARGUMENT naming each bad one.
fn validate(customer_id: &str, request_id: &str) -> Result<(), Status> {
    let mut v = Violations::default();
    v.check("customer_id", CustomerId::parse(customer_id));
    v.check("request_id", RequestId::parse(request_id));
    v.finish().map_err(Status::from)
}

fn now() -> prost_types::Timestamp {
    attune_kit::types::time::to_proto(chrono::Utc::now())
}

fn failed(backend: &Backend, status: &Status) -> pb::ServiceReceipt {
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

/// Streams one backend's export as gateway messages, its receipt on the last.
/// Returns false when the caller has gone away.
async fn export_from(
    backend: &Backend,
    request: &pb::ExportCustomerRequest,
    caller: &MetadataMap,
    sender: &mpsc::Sender<Result<pb::ExportCustomerResponse, Status>>,
) -> bool {
    let mut client = client(backend);
    let mut page_token = String::new();
    let mut record_count: i64 = 0;
    loop {
        let sent_token = std::mem::take(&mut page_token);
        let page = client
            .export_customer_data(outgoing(
                privacy::ExportCustomerDataRequest {
                    customer_id: request.customer_id.clone(),
                    request_id: request.request_id.clone(),
                    page_token: sent_token.clone(),
                    page_size: EXPORT_PAGE_SIZE,
                },
                caller,
            ))
            .await;
        let (records, receipt, next) = match page {
            Ok(page) => {
                let privacy::ExportCustomerDataResponse {
                    service: _,
                    records,
                    next_page_token,
                } = page.into_inner();
                if !next_page_token.is_empty() && next_page_token == sent_token {
                    // A backend that hands back the token it was given would
                    // keep this stream going for ever.
                    let stuck = Status::internal("the export's page token did not advance");
                    let message = pb::ExportCustomerResponse {
                        service: backend.package().to_owned(),
                        records,
                        receipt: Some(failed(backend, &stuck)),
                        customer_id: request.customer_id.clone(),
                    };
                    return sender.send(Ok(message)).await.is_ok();
                }
                record_count += i64::try_from(records.len()).unwrap_or(i64::MAX);
                let receipt = next_page_token.is_empty().then(|| pb::ServiceReceipt {
                    service: backend.package().to_owned(),
                    status: pb::ReceiptStatus::Succeeded.into(),
                    record_count,
                    retained: Vec::new(),
                    error_code: 0,
                    error_message: String::new(),
                    complete_time: Some(now()),
                });
                (records, receipt, next_page_token)
            }
            Err(status) => (Vec::new(), Some(failed(backend, &status)), String::new()),
        };
        let last = receipt.is_some();
        let message = pb::ExportCustomerResponse {
            service: backend.package().to_owned(),
            records,
            receipt,
            customer_id: request.customer_id.clone(),
        };
        if sender.send(Ok(message)).await.is_err() {
            return false;
        }
        if last {
            return true;
        }
        page_token = next;
    }
}

/// Erases at one backend and turns the answer into its receipt.
async fn erase_at(
    backend: &Backend,
    request: &pb::EraseCustomerRequest,
    caller: &MetadataMap,
) -> pb::ServiceReceipt {
    let answer = client(backend)
        .erase_customer(outgoing(
            privacy::EraseCustomerRequest {
                customer_id: request.customer_id.clone(),
                request_id: request.request_id.clone(),
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
            pb::ServiceReceipt {
                service: backend.package().to_owned(),
                status: pb::ReceiptStatus::Succeeded.into(),
                record_count: erased_record_count,
                retained,
                error_code: 0,
                error_message: String::new(),
                complete_time: erase_time.or_else(|| Some(now())),
            }
        }
        Err(status) => failed(backend, &status),
    }
}

#[tonic::async_trait]
impl DataSubjectRequestService for DataSubjectRequests {
    type ExportCustomerStream = ReceiverStream<Result<pb::ExportCustomerResponse, Status>>;

    async fn export_customer(
        &self,
        request: Request<pb::ExportCustomerRequest>,
    ) -> Result<Response<Self::ExportCustomerStream>, Status> {
        let (caller, _, request) = request.into_parts();
        validate(&request.customer_id, &request.request_id)?;
        let backends = Arc::clone(&self.backends);
        let (sender, receiver) = mpsc::channel(2);
        // The export runs in the call's span, so each backend call's trace context
        // names the gateway as its parent.
        tokio::spawn(
            async move {
                for backend in backends.iter() {
                    if !export_from(backend, &request, &caller, &sender).await {
                        return;
                    }
                }
            }
            .in_current_span(),
        );
        Ok(Response::new(ReceiverStream::new(receiver)))
    }

    async fn erase_customer(
        &self,
        request: Request<pb::EraseCustomerRequest>,
    ) -> Result<Response<pb::EraseCustomerResponse>, Status> {
        let (caller, _, request) = request.into_parts();
        validate(&request.customer_id, &request.request_id)?;
        // Every service is asked at once; one failing or slow holds no other back.
        let receipts = futures::future::join_all(
            self.backends
                .iter()
                .map(|backend| erase_at(backend, &request, &caller)),
        )
        .await;
        let complete = receipts
            .iter()
            .all(|receipt| receipt.status == pb::ReceiptStatus::Succeeded as i32);
        let erase_time = if complete {
            receipts
                .iter()
                .filter_map(|receipt| receipt.complete_time)
                .max_by_key(|time| (time.seconds, time.nanos))
        } else {
            None
        };
        Ok(Response::new(pb::EraseCustomerResponse {
            receipts,
            complete,
            erase_time,
            customer_ids: vec![request.customer_id],
        }))
    }
}
