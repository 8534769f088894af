//! The gRPC face of consent: each RPC parses its request, calls the service and
//! converts the answer. Rules live in `service` and `domain`, not here.

use std::pin::Pin;

use attune_kit::error::{ApiError, Violations, checked};
use attune_kit::pagination::{decode_cursor, next_page, page_size};
use attune_kit::privacy::gpc_signalled;
use attune_kit::types::time;
use attune_proto::consent::v1 as pb;
use attune_proto::consent::v1::consent_service_server::ConsentService;
use tokio_stream::{Stream, StreamExt};
use tonic::{Request, Response, Status};

use crate::convert;
use crate::domain::{CustomerId, ExpiryCursor, PurposeCode};
use crate::error::ConsentError;
use crate::request_audit::DataSubjectRequestEnded;
use crate::service::Consent;

/// How many purposes one state or check request may name.
const MAX_PURPOSES_PER_QUERY: usize = 50;

/// `attune.consent.v1.ConsentService` over a [`Consent`] service.
#[derive(Debug, Clone)]
pub struct ConsentApi {
    consent: Consent,
}

impl ConsentApi {
    pub fn new(consent: Consent) -> Self {
        Self { consent }
    }
}

type RpcResult<T> = Result<Response<T>, Status>;

#[tonic::async_trait]
impl ConsentService for ConsentApi {
    async fn create_purpose(
        &self,
        request: Request<pb::CreatePurposeRequest>,
    ) -> RpcResult<pb::CreatePurposeResponse> {
        let (new, request_id) = convert::create_purpose(request.into_inner())?;
        let purpose = self.consent.create_purpose(new, request_id).await?;
        Ok(Response::new(pb::CreatePurposeResponse {
            purpose: Some(convert::purpose_to(purpose)),
        }))
    }

    async fn update_purpose(
        &self,
        request: Request<pb::UpdatePurposeRequest>,
    ) -> RpcResult<pb::UpdatePurposeResponse> {
        let (update, request_id) = convert::update_purpose(request.into_inner())?;
        let purpose = self.consent.update_purpose(update, request_id).await?;
        Ok(Response::new(pb::UpdatePurposeResponse {
            purpose: Some(convert::purpose_to(purpose)),
        }))
    }

    async fn get_purpose(
        &self,
        request: Request<pb::GetPurposeRequest>,
    ) -> RpcResult<pb::GetPurposeResponse> {
        let pb::GetPurposeRequest {
            code,
            notice_version,
        } = request.into_inner();
        let mut v = Violations::default();
        let code = v.check("code", PurposeCode::parse(&code));
        if notice_version < 0 {
            v.add(
                "notice_version",
                "must be 0 (current) or a published version",
            );
        }
        v.finish()?;
        let code = checked(code);
        let version = (notice_version > 0).then_some(notice_version);
        let purpose = self.consent.get_purpose(&code, version).await?;
        Ok(Response::new(pb::GetPurposeResponse {
            purpose: Some(convert::purpose_to(purpose)),
        }))
    }

    async fn list_purposes(
        &self,
        request: Request<pb::ListPurposesRequest>,
    ) -> RpcResult<pb::ListPurposesResponse> {
        let pb::ListPurposesRequest {
            page_size: raw_size,
            page_token,
        } = request.into_inner();
        let mut v = Violations::default();
        let limit = v.check_field(page_size("page_size", raw_size, 50, 500));
        let after = decode_cursor(&mut v, "page_token", &page_token, |c| Some(c.to_owned()));
        v.finish()?;
        let limit = checked(limit);
        let purposes = self
            .consent
            .list_purposes(after.as_deref(), limit + 1)
            .await?;
        let (purposes, next_page_token) = next_page(purposes, limit, |p| p.code.to_string());
        Ok(Response::new(pb::ListPurposesResponse {
            purposes: purposes.into_iter().map(convert::purpose_to).collect(),
            next_page_token,
        }))
    }

    async fn record_consent(
        &self,
        request: Request<pb::RecordConsentRequest>,
    ) -> RpcResult<pb::RecordConsentResponse> {
        let gpc = gpc_signalled(request.metadata());
        let now = self.consent.now();
        let command = convert::record_consent(request.into_inner(), now)?;
        // A request late for its own times is either a retry, answered as first
        // recorded, or refused by the service: in both cases it changes nothing.
        if command.check_times(now).is_empty() {
            self.honour_gpc(gpc, &command.customer).await?;
        }
        let count = command.decisions.len();
        let records = self.consent.record(command).await?;
        // Never the customer id: logs carry no personal data.
        tracing::info!(decisions = count, "consent recorded");
        Ok(Response::new(pb::RecordConsentResponse {
            records: records.into_iter().map(convert::record_to).collect(),
        }))
    }

    async fn get_consent_state(
        &self,
        request: Request<pb::GetConsentStateRequest>,
    ) -> RpcResult<pb::GetConsentStateResponse> {
        let gpc = gpc_signalled(request.metadata());
        let pb::GetConsentStateRequest {
            customer_id,
            purpose_codes,
        } = request.into_inner();
        let mut v = Violations::default();
        let customer = v.check("customer_id", CustomerId::parse(&customer_id));
        let purposes = convert::purpose_codes(
            &mut v,
            "purpose_codes",
            purpose_codes,
            MAX_PURPOSES_PER_QUERY,
        );
        v.finish()?;
        let customer = checked(customer);
        self.honour_gpc(gpc, &customer).await?;
        let (states, change_position) = self.consent.state(&customer, purposes).await?;
        Ok(Response::new(pb::GetConsentStateResponse {
            states: states
                .into_iter()
                .map(|state| pb::PurposeState {
                    purpose_code: state.purpose.to_string(),
                    status: convert::status_to(state.status).into(),
                    latest: state.latest.map(convert::record_to),
                })
                .collect(),
            change_position,
        }))
    }

    async fn list_consent_history(
        &self,
        request: Request<pb::ListConsentHistoryRequest>,
    ) -> RpcResult<pb::ListConsentHistoryResponse> {
        let pb::ListConsentHistoryRequest {
            customer_id,
            purpose_code,
            page_size: raw_size,
            page_token,
        } = request.into_inner();
        let mut v = Violations::default();
        let customer = v.check("customer_id", CustomerId::parse(&customer_id));
        let purpose = if purpose_code.is_empty() {
            None
        } else {
            v.check("purpose_code", PurposeCode::parse(&purpose_code))
        };
        let limit = v.check_field(page_size("page_size", raw_size, 100, 1000));
        let after = decode_cursor(&mut v, "page_token", &page_token, |c| c.parse::<i64>().ok());
        v.finish()?;
        let (customer, limit) = (checked(customer), checked(limit));
        let records = self
            .consent
            .history(&customer, purpose.as_ref(), after, limit + 1)
            .await?;
        let (records, next_page_token) = next_page(records, limit, |r| r.record_id.to_string());
        Ok(Response::new(pb::ListConsentHistoryResponse {
            records: records.into_iter().map(convert::record_to).collect(),
            next_page_token,
        }))
    }

    async fn check_consent(
        &self,
        request: Request<pb::CheckConsentRequest>,
    ) -> RpcResult<pb::CheckConsentResponse> {
        let gpc = gpc_signalled(request.metadata());
        let pb::CheckConsentRequest {
            customer_id,
            purpose_codes,
        } = request.into_inner();
        let mut v = Violations::default();
        let customer = v.check("customer_id", CustomerId::parse(&customer_id));
        if purpose_codes.is_empty() {
            v.add("purpose_codes", "must name at least one purpose");
        }
        let purposes = convert::purpose_codes(
            &mut v,
            "purpose_codes",
            purpose_codes,
            MAX_PURPOSES_PER_QUERY,
        );
        v.finish()?;
        let customer = checked(customer);
        self.honour_gpc(gpc, &customer).await?;
        let (answers, now) = self.consent.check(&customer, purposes).await?;
        Ok(Response::new(pb::CheckConsentResponse {
            checks: answers
                .into_iter()
                .map(|answer| pb::PurposeCheck {
                    // The request's own string, moved through: no copy.
                    purpose_code: answer.purpose.into_string(),
                    granted: answer.status.is_granted(),
                    status: convert::status_to(answer.status).into(),
                    notice_version: answer.notice_version.unwrap_or(0),
                })
                .collect(),
            check_time: Some(time::to_proto(now)),
        }))
    }

    type WatchConsentChangesStream =
        Pin<Box<dyn Stream<Item = Result<pb::WatchConsentChangesResponse, Status>> + Send>>;

    async fn watch_consent_changes(
        &self,
        request: Request<pb::WatchConsentChangesRequest>,
    ) -> RpcResult<Self::WatchConsentChangesStream> {
        let start = convert::watch_start(request.into_inner())?;
        let batches = self.consent.watch(start).await?;
        let responses =
            batches.map(|batch| batch.map(convert::watch_response).map_err(Status::from));
        Ok(Response::new(Box::pin(responses)))
    }

    async fn list_expiring_consents(
        &self,
        request: Request<pb::ListExpiringConsentsRequest>,
    ) -> RpcResult<pb::ListExpiringConsentsResponse> {
        let (query, limit) = convert::list_expiring_consents(request.into_inner())?;
        let (grants, window_end) = self.consent.expiring(&query, limit + 1).await?;
        let (grants, next_page_token) = next_page(grants, limit, |grant| {
            ExpiryCursor::after(window_end, grant).encode()
        });
        Ok(Response::new(pb::ListExpiringConsentsResponse {
            consents: grants.into_iter().map(convert::expiring_to).collect(),
            next_page_token,
        }))
    }

    async fn apply_global_privacy_control(
        &self,
        request: Request<pb::ApplyGlobalPrivacyControlRequest>,
    ) -> RpcResult<pb::ApplyGlobalPrivacyControlResponse> {
        let pb::ApplyGlobalPrivacyControlRequest { customer_id } = request.into_inner();
        let customer = CustomerId::parse(&customer_id)
            .map_err(|reason| ApiError::invalid("customer_id", reason))?;
        let outcome = self.consent.apply_gpc(&customer).await?;
        Ok(Response::new(pb::ApplyGlobalPrivacyControlResponse {
            recorded: outcome.recorded.is_some(),
            record: outcome.recorded.map(convert::record_to),
            status: convert::status_to(outcome.status).into(),
        }))
    }

    async fn verify_audit_log(
        &self,
        request: Request<pb::VerifyAuditLogRequest>,
    ) -> RpcResult<pb::VerifyAuditLogResponse> {
        let pb::VerifyAuditLogRequest {} = request.into_inner();
        let verification = self.consent.verify_audit_log().await?;
        Ok(Response::new(convert::audit_verification_to(verification)))
    }

    async fn audit_data_subject_request(
        &self,
        request: Request<pb::AuditDataSubjectRequestRequest>,
    ) -> RpcResult<pb::AuditDataSubjectRequestResponse> {
        let ended = DataSubjectRequestEnded::parse(request.into_inner())?;
        let appended = self.consent.audit_data_subject_request(ended).await?;
        Ok(Response::new(pb::AuditDataSubjectRequestResponse {
            appended,
        }))
    }
}

impl ConsentApi {
    /// Applies a Global Privacy Control signal carried in a request's metadata,
    /// after the request was validated and before its own work.
    async fn honour_gpc(&self, signalled: bool, customer: &CustomerId) -> Result<(), ConsentError> {
        if signalled {
            self.consent.apply_gpc(customer).await?;
        }
        Ok(())
    }
}
