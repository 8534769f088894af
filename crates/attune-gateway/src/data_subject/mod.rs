//! `attune.gateway.v1.DataSubjectRequestService`: a customer's export and erasure
//! across every data-holding backend, one receipt per service, and the stored
//! status of each request. Each backend answers through its own internal
//! `attune.privacy.v1.DataSubjectService`; the gateway only fans out, pages and
//! collects, so a service registered later is covered without a change here.
//!
//! Every request made through the public port is recorded ([`status`]) as its
//! fan-out progresses, under a keyed pseudonym of the customer: an erasure run
//! again with the same request id asks only the services not done, a completed
//! one answers its stored receipts, and an export resumes from the token of the
//! last message received ([`resume`]). Each run's outcome goes to consent's
//! audit log ([`audit`]); one consent did not take is kept and sent again in
//! the background until it does ([`pending_audits`]).

mod audit;
mod erase;
mod export;
mod fanout;
mod pending_audits;
mod resume;
mod status;

use std::sync::Arc;

use attune_kit::ApiError;
use attune_kit::clock::Clock;
use attune_kit::error::Violations;
use attune_kit::secrets::PseudonymKey;
use attune_kit::types::{CustomerId, DataCategory, RequestId};
use attune_proto::gateway::v1 as pb;
use attune_proto::gateway::v1::data_subject_request_service_server::DataSubjectRequestService;
use sea_orm::DatabaseConnection;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::metadata::MetadataMap;
use tonic::{Code, Request, Response, Status};
use tracing::Instrument as _;

use crate::access_log::{Access, AccessLog, Caller};
use crate::backend::Backend;
use crate::policy::Principal;
use audit::Audit;
use fanout::{Page, Subject, client, export_page, subjects};
use pending_audits::PendingAudits;
use status::{Kind, State};

pub use pending_audits::CreatePendingAudits;
pub use status::CreateDataSubjectRequests;

/// Fans data-subject requests out to the data-holding backends.
#[derive(Clone, Debug)]
pub struct DataSubjectRequests {
    /// Data-holding backends, ordered by package (the order receipts are given in).
    backends: Arc<[Backend]>,
    /// Signs resume tokens: the gateway's key when tracked, else one of its own.
    key: PseudonymKey,
    /// Where requests are recorded, exports logged as reads, and outcomes
    /// audited; none for a fan-out that keeps no status (ExplainDataUse's).
    tracking: Option<Tracking>,
}

/// Where the gateway keeps what its data-subject requests did.
#[derive(Clone, Debug)]
pub(crate) struct Tracking {
    db: DatabaseConnection,
    clock: Clock,
    access_log: AccessLog,
    /// Audit entries consent has not taken yet.
    pending_audits: PendingAudits,
}

impl Tracking {
    /// Records a part's state; a failure to record is logged, never the
    /// request's failure (the next run records again).
    async fn set_part(
        &self,
        request_id: &str,
        service: &str,
        state: State,
        reason: &str,
        receipt: Option<&pb::ServiceReceipt>,
    ) {
        let written = status::set_part(
            &self.db,
            request_id,
            service,
            state,
            reason,
            receipt,
            self.clock.now(),
        )
        .await;
        if let Err(error) = written {
            tracing::warn!(%error, service, "a data-subject request's status was not recorded");
        }
    }
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
            key: PseudonymKey::generate().expect("the system provides randomness"),
            tracking: None,
        }
    }

    /// Records each request's status in the gateway's database (the access
    /// log's), each export in `access_log` under every id it covers, and each
    /// outcome in consent's audit log.
    pub fn recording_in(mut self, access_log: AccessLog) -> Self {
        let (db, clock, key) = access_log.parts();
        self.key = key;
        self.tracking = Some(Tracking {
            pending_audits: PendingAudits::new(db.clone(), clock.clone()),
            db,
            clock,
            access_log,
        });
        self
    }

    /// Sends the audit entries consent did not take again, every
    /// [`pending_audits::RETRY_EVERY`], until `cancel`: a background task.
    pub async fn send_pending_audits(self, cancel: CancellationToken) {
        let (Some(tracking), Some(consent)) = (&self.tracking, self.consent_backend()) else {
            return;
        };
        loop {
            tokio::select! {
                () = cancel.cancelled() => return,
                () = tokio::time::sleep(pending_audits::RETRY_EVERY) => {
                    tracking.pending_audits.send_again(consent).await;
                }
            }
        }
    }

    fn packages(&self) -> Vec<&'static str> {
        self.backends.iter().map(Backend::package).collect()
    }

    fn consent_backend(&self) -> Option<&Backend> {
        self.backends
            .iter()
            .find(|backend| backend.package() == audit::CONSENT_PACKAGE)
    }

    /// Opens the request's stored status (when kept): whether it is new, and
    /// the status before this run.
    async fn open(
        &self,
        request_id: &str,
        kind: Kind,
        customer_id: &str,
    ) -> Result<(bool, Option<status::Stored>), Status> {
        let Some(tracking) = &self.tracking else {
            return Ok((true, None));
        };
        let (fresh, stored) = status::open(
            &tracking.db,
            request_id,
            kind,
            &self.key.subject(customer_id),
            &self.packages(),
            tracking.clock.now(),
        )
        .await
        .map_err(ApiError::from)?;
        Ok((fresh, Some(stored)))
    }
}

/// Who asked, as the policy authenticated them.
fn principal(extensions: &tonic::Extensions) -> Caller {
    extensions
        .get::<Principal>()
        .map_or_else(Caller::development, Principal::as_caller)
}

/// Why a service failed, in words an operator can read.
fn failure_reason(status: &Status) -> String {
    let what = match status.code() {
        Code::Unavailable => "could not be reached",
        Code::DeadlineExceeded => "did not answer in time",
        Code::Aborted => "was not asked yet",
        Code::Cancelled => "stopped before answering",
        _ => "answered with an error",
    };
    format!(
        "failed: the service {what} ({:?}: {}); run the request again with the same request_id",
        status.code(),
        status.message()
    )
}

/// [`failure_reason`] of a FAILED receipt.
fn failure_reason_of(receipt: &pb::ServiceReceipt) -> String {
    failure_reason(&Status::new(
        Code::from_i32(receipt.error_code),
        receipt.error_message.clone(),
    ))
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

#[tonic::async_trait]
impl DataSubjectRequestService for DataSubjectRequests {
    type ExportCustomerStream = ReceiverStream<Result<pb::ExportCustomerResponse, Status>>;

    async fn export_customer(
        &self,
        request: Request<pb::ExportCustomerRequest>,
    ) -> Result<Response<Self::ExportCustomerStream>, Status> {
        let (metadata, extensions, request) = request.into_parts();
        let caller = principal(&extensions);
        let pb::ExportCustomerRequest {
            customer_id,
            request_id,
            resume_token,
        } = request;
        let mut v = Violations::default();
        v.check("customer_id", CustomerId::parse(&customer_id));
        v.check("request_id", RequestId::parse(&request_id));
        let positions = v.check_field(resume::Positions::parse(
            &resume_token,
            &self.key,
            &request_id,
            &customer_id,
            self.backends.len(),
        ));
        v.finish().map_err(Status::from)?;
        let positions = attune_kit::error::checked(positions);
        let (fresh, _) = self.open(&request_id, Kind::Export, &customer_id).await?;
        let consent = self.consent_backend().cloned();
        let (sender, receiver) = mpsc::channel(2);
        let run_backends = Arc::clone(&self.backends);
        let key = self.key.clone();
        let tracking = self.tracking.clone();
        // The export runs in the call's span, so each backend call's trace context
        // names the gateway as its parent.
        tokio::spawn(
            async move {
                let subjects = subjects(&run_backends, &customer_id, &request_id, &metadata).await;
                // The export is a read of everything held: logged once per
                // request, before any service is asked, so the log's own part
                // of the export holds it.
                if let Some(tracking) = &tracking
                    && fresh
                {
                    record_export(&tracking.access_log, caller.clone(), &subjects.ids).await;
                }
                let run = export::ExportRun {
                    backends: run_backends,
                    subjects: subjects.ids,
                    key,
                    customer_id,
                    request_id,
                    metadata,
                    tracking,
                    sender,
                };
                let Some(failed) = run.run(positions).await else {
                    return;
                };
                if let Some(tracking) = &run.tracking {
                    audit::record(
                        consent.as_ref(),
                        &tracking.pending_audits,
                        Audit::new(
                            Kind::Export,
                            &run.customer_id,
                            &run.request_id,
                            &caller,
                            failed,
                        ),
                        &run.metadata,
                    )
                    .await;
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
        let (metadata, extensions, request) = request.into_parts();
        let caller = principal(&extensions);
        validate(&request.customer_id, &request.request_id)?;
        let (_, before) = self
            .open(&request.request_id, Kind::Erasure, &request.customer_id)
            .await?;
        let answer = match &before {
            // A completed erasure answers its stored receipts. The merged ids
            // it erased are not kept anywhere, the gateway included: only the
            // id asked for is named.
            Some(stored) if stored.complete() => erase::answer(
                stored
                    .parts
                    .iter()
                    .filter_map(|part| part.receipt.clone())
                    .collect(),
                vec![request.customer_id.clone()],
            ),
            _ => {
                // The linked ids are learnt before anything is erased: erasing
                // the customer at profile erases the links too.
                let subjects = subjects(
                    &self.backends,
                    &request.customer_id,
                    &request.request_id,
                    &metadata,
                )
                .await;
                let receipts = erase::EraseRun {
                    backends: &self.backends,
                    subjects: &subjects,
                    request_id: &request.request_id,
                    metadata: &metadata,
                    tracking: self.tracking.as_ref(),
                    before: before.as_ref(),
                }
                .run()
                .await;
                erase::answer(
                    receipts,
                    subjects
                        .ids
                        .into_iter()
                        .map(|subject| subject.customer_id)
                        .collect(),
                )
            }
        };
        if let Some(tracking) = &self.tracking {
            let failed = answer
                .receipts
                .iter()
                .filter(|receipt| receipt.status != pb::ReceiptStatus::Succeeded as i32)
                .map(|receipt| receipt.service.clone())
                .collect();
            audit::record(
                self.consent_backend(),
                &tracking.pending_audits,
                Audit::new(
                    Kind::Erasure,
                    &request.customer_id,
                    &request.request_id,
                    &caller,
                    failed,
                ),
                &metadata,
            )
            .await;
        }
        Ok(Response::new(answer))
    }

    async fn get_data_subject_request(
        &self,
        request: Request<pb::GetDataSubjectRequestRequest>,
    ) -> Result<Response<pb::GetDataSubjectRequestResponse>, Status> {
        let pb::GetDataSubjectRequestRequest {
            request_id,
            customer_id,
        } = request.into_inner();
        validate(&customer_id, &request_id)?;
        let Some(tracking) = &self.tracking else {
            return Err(Status::unimplemented(
                "this gateway keeps no status of data-subject requests",
            ));
        };
        let stored = status::load(&tracking.db, &request_id)
            .await
            .map_err(ApiError::from)?
            .filter(|stored| stored.subject == self.key.subject(&customer_id));
        // Another customer's request is answered as an unknown one: a request
        // id alone confirms nothing.
        let stored = stored.ok_or_else(|| {
            Status::not_found(format!(
                "no data-subject request {request_id} for this customer"
            ))
        })?;
        let mut request = stored.to_proto();
        if tracking
            .pending_audits
            .waiting(&request_id)
            .await
            .map_err(ApiError::from)?
        {
            request.summary.push_str(
                " Its entry in consent's audit log is not written yet (consent did not answer); \
                 the gateway sends it again until consent records it.",
            );
        }
        Ok(Response::new(pb::GetDataSubjectRequestResponse {
            request: Some(request),
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
