//! `attune.gateway.v1.DataSubjectRequestService`: a customer's export and erasure
//! across every data-holding backend, one receipt per service. Each backend
//! answers through its own internal `attune.privacy.v1.DataSubjectService`; the
//! gateway only fans out, pages and collects, so a service registered later is
//! covered without a change here.

use std::sync::Arc;

use attune_kit::error::Violations;
use attune_kit::server::HttpService;
use attune_kit::telemetry::TraceContextInterceptor;
use attune_kit::types::{CustomerId, DataCategory, RequestId};
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

use crate::access_log::{Access, AccessLog, Caller};
use crate::backend::Backend;
use crate::policy::Principal;

/// Records asked of a backend per export page: the most one gateway message holds.
const EXPORT_PAGE_SIZE: i32 = 1000;

/// Fans data-subject requests out to the data-holding backends.
#[derive(Clone, Debug)]
pub struct DataSubjectRequests {
    /// Data-holding backends, ordered by package (the order receipts are given in).
    backends: Arc<[Backend]>,
    /// Where an export, itself a read of the customer's data, is recorded.
    access_log: Option<AccessLog>,
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
            access_log: None,
        }
    }

    /// Records each export in `access_log`, under every id it covers.
    pub fn recording_exports(mut self, access_log: AccessLog) -> Self {
        self.access_log = Some(access_log);
        self
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

/// The RPC an export is recorded under.
const EXPORT_RPC: &str = "attune.gateway.v1.DataSubjectRequestService/ExportCustomer";

/// An export reads everything held about each of `ids`: recorded as such,
/// before any service is asked, so the log's own part of the export holds it.
async fn record_export(access_log: &AccessLog, caller: Caller, ids: &[Subject]) {
    for subject in ids {
        let Ok(customer) = CustomerId::parse(&subject.customer_id) else {
            continue;
        };
        access_log
            .record(Access {
                customer,
                caller: caller.clone(),
                rpc: EXPORT_RPC.to_owned(),
                purpose_codes: vec!["data_subject_request".to_owned()],
                data_categories: DataCategory::ALL.to_vec(),
            })
            .await;
    }
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

/// One id a data-subject request covers, with the request id each backend gets
/// for it.
#[derive(Debug, Clone)]
struct Subject {
    customer_id: String,
    request_id: String,
}

/// The ids a request covers: the one asked for first, then every id a backend
/// links to it (the anonymous profiles merged into it), each once, in the order
/// learnt. A linked id gets its own request id, derived from the caller's, so a
/// retry reaches each backend with the same ids and each backend's idempotency
/// holds per id. A backend that cannot list is skipped here: its own part of the
/// request fails too, and a retry asks it again.
async fn subjects(
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
struct Subjects {
    ids: Vec<Subject>,
    /// Packages of the backends that reported linked ids: an erasure asks them
    /// last, once every other backend succeeded, since erasing there forgets the
    /// links a retry would need.
    linking: Vec<&'static str>,
}

/// The receipt of a linking backend not asked to erase yet.
fn held_back(backend: &Backend) -> pb::ServiceReceipt {
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
enum Page {
    /// Records, and the token of the next page (empty: the id is done).
    Records(Vec<privacy::DataRecord>, String),
    /// The backend failed.
    Failed(Status),
}

async fn export_page(
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

/// Streams one backend's export of every subject as gateway messages, its
/// receipt on the last. Returns false when the caller has gone away.
async fn export_from(
    backend: &Backend,
    subjects: &[Subject],
    caller: &MetadataMap,
    sender: &mpsc::Sender<Result<pb::ExportCustomerResponse, Status>>,
) -> bool {
    let mut client = client(backend);
    let mut record_count: i64 = 0;
    for (index, subject) in subjects.iter().enumerate() {
        let last_subject = index + 1 == subjects.len();
        let mut page_token = String::new();
        loop {
            let (records, receipt, next) =
                match export_page(&mut client, subject, &page_token, caller).await {
                    Page::Records(records, next) => {
                        record_count += i64::try_from(records.len()).unwrap_or(i64::MAX);
                        let receipt =
                            (next.is_empty() && last_subject).then(|| pb::ServiceReceipt {
                                service: backend.package().to_owned(),
                                status: pb::ReceiptStatus::Succeeded.into(),
                                record_count,
                                retained: Vec::new(),
                                error_code: 0,
                                error_message: String::new(),
                                complete_time: Some(now()),
                            });
                        (records, receipt, next)
                    }
                    Page::Failed(status) => {
                        (Vec::new(), Some(failed(backend, &status)), String::new())
                    }
                };
            let done = receipt.is_some();
            let message = pb::ExportCustomerResponse {
                service: backend.package().to_owned(),
                records,
                receipt,
                customer_id: subject.customer_id.clone(),
            };
            // An id with nothing to export sends no message of its own.
            let empty = message.records.is_empty() && message.receipt.is_none();
            if !empty && sender.send(Ok(message)).await.is_err() {
                return false;
            }
            if done {
                return true;
            }
            if next.is_empty() {
                break;
            }
            page_token = next;
        }
    }
    true
}

/// Erases every subject at one backend, in order, and sums the answers into
/// its receipt; the first failure stops it and fails the receipt.
async fn erase_at(
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

#[tonic::async_trait]
impl DataSubjectRequestService for DataSubjectRequests {
    type ExportCustomerStream = ReceiverStream<Result<pb::ExportCustomerResponse, Status>>;

    async fn export_customer(
        &self,
        request: Request<pb::ExportCustomerRequest>,
    ) -> Result<Response<Self::ExportCustomerStream>, Status> {
        let (caller, extensions, request) = request.into_parts();
        // Who asked, for the access log (the policy put it there).
        let principal = extensions
            .get::<Principal>()
            .map_or_else(Caller::development, Principal::as_caller);
        validate(&request.customer_id, &request.request_id)?;
        let backends = Arc::clone(&self.backends);
        let access_log = self.access_log.clone();
        let (sender, receiver) = mpsc::channel(2);
        // The export runs in the call's span, so each backend call's trace context
        // names the gateway as its parent.
        tokio::spawn(
            async move {
                let subjects = subjects(
                    &backends,
                    &request.customer_id,
                    &request.request_id,
                    &caller,
                )
                .await;
                if let Some(access_log) = access_log {
                    record_export(&access_log, principal, &subjects.ids).await;
                }
                for backend in backends.iter() {
                    if !export_from(backend, &subjects.ids, &caller, &sender).await {
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
        // The linked ids are learnt before anything is erased: erasing the
        // customer at profile erases the links too.
        let subjects = subjects(
            &self.backends,
            &request.customer_id,
            &request.request_id,
            &caller,
        )
        .await;
        // Every service is asked at once; one failing or slow holds no other back.
        // Services that link the ids go last, and only when the others succeeded.
        let (linking, others): (Vec<&Backend>, Vec<&Backend>) = self
            .backends
            .iter()
            .partition(|backend| subjects.linking.contains(&backend.package()));
        let mut receipts = futures::future::join_all(
            others
                .iter()
                .map(|backend| erase_at(backend, &subjects.ids, &caller)),
        )
        .await;
        let others_succeeded = receipts
            .iter()
            .all(|receipt| receipt.status == pb::ReceiptStatus::Succeeded as i32);
        for backend in linking {
            receipts.push(if others_succeeded {
                erase_at(backend, &subjects.ids, &caller).await
            } else {
                held_back(backend)
            });
        }
        receipts.sort_by(|a, b| a.service.cmp(&b.service));
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
            customer_ids: subjects
                .ids
                .into_iter()
                .map(|subject| subject.customer_id)
                .collect(),
        }))
    }
}

/// What one data-holding service holds about a customer: how many records of
/// each kind, or why it could not say.
#[derive(Debug)]
pub(crate) struct Holding {
    /// The service's package, for example "attune.loyalty.v1".
    pub service: &'static str,
    /// Records by kind, over the customer and every id merged into theirs.
    pub kinds: Result<std::collections::BTreeMap<String, i64>, Status>,
}

impl DataSubjectRequests {
    /// Reads every data-holding service's export of the customer (and the ids
    /// merged into theirs) under `request_id`, counting records by kind. Each
    /// service records the read in its privacy audit log, as any export.
    pub(crate) async fn holdings(
        &self,
        customer_id: &str,
        request_id: &str,
        caller: &MetadataMap,
    ) -> Vec<Holding> {
        let subjects = subjects(&self.backends, customer_id, request_id, caller).await;
        let counts = self.backends.iter().map(|backend| {
            let subjects = &subjects.ids;
            async move {
                let mut client = client(backend);
                let mut kinds = std::collections::BTreeMap::new();
                for subject in subjects {
                    let mut page_token = String::new();
                    loop {
                        match export_page(&mut client, subject, &page_token, caller).await {
                            Page::Records(records, next) => {
                                for record in records {
                                    *kinds.entry(record.kind).or_insert(0) += 1;
                                }
                                if next.is_empty() {
                                    break;
                                }
                                page_token = next;
                            }
                            Page::Failed(status) => {
                                return Holding {
                                    service: backend.package(),
                                    kinds: Err(status),
                                };
                            }
                        }
                    }
                }
                Holding {
                    service: backend.package(),
                    kinds: Ok(kinds),
                }
            }
        });
        futures::future::join_all(counts).await
    }
}
