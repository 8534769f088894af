//! The gRPC face of consent: each RPC parses its request, calls the service and
//! converts the answer. Rules live in `service` and `domain`, not here.

use attune_kit::error::{ApiError, Violations, checked};
use attune_kit::pagination::{decode_page_token, encode_page_token, page_size};
use attune_proto::consent::v1 as pb;
use attune_proto::consent::v1::consent_service_server::ConsentService;
use tonic::{Request, Response, Status};

use crate::convert;
use crate::domain::{CustomerId, PurposeCode};
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
        let purpose = self
            .consent
            .create_purpose(new, request_id)
            .await
            .map_err(ApiError::from)?;
        Ok(Response::new(pb::CreatePurposeResponse {
            purpose: Some(convert::purpose_to(purpose)),
        }))
    }

    async fn update_purpose(
        &self,
        request: Request<pb::UpdatePurposeRequest>,
    ) -> RpcResult<pb::UpdatePurposeResponse> {
        let (update, request_id) = convert::update_purpose(request.into_inner())?;
        let purpose = self
            .consent
            .update_purpose(update, request_id)
            .await
            .map_err(ApiError::from)?;
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
        let purpose = self
            .consent
            .get_purpose(&code, version)
            .await
            .map_err(ApiError::from)?;
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
        let limit = v.check(
            "page_size",
            page_size("page_size", raw_size, 50, 500).map_err(|e| e.description),
        );
        let after = v.check(
            "page_token",
            decode_page_token("page_token", &page_token).map_err(|e| e.description),
        );
        v.finish()?;
        let (limit, after) = (checked(limit), checked(after));
        let mut purposes = self
            .consent
            .list_purposes(after.as_deref(), limit + 1)
            .await
            .map_err(ApiError::from)?;
        let next_page_token = next_token(&mut purposes, limit, |p| p.code.to_string());
        Ok(Response::new(pb::ListPurposesResponse {
            purposes: purposes.into_iter().map(convert::purpose_to).collect(),
            next_page_token,
        }))
    }

    async fn record_consent(
        &self,
        request: Request<pb::RecordConsentRequest>,
    ) -> RpcResult<pb::RecordConsentResponse> {
        let command = convert::record_consent(request.into_inner(), chrono::Utc::now())?;
        let (customer, count) = (command.customer.to_string(), command.decisions.len());
        let records = self.consent.record(command).await.map_err(ApiError::from)?;
        tracing::info!(customer_id = %customer, decisions = count, "consent recorded");
        Ok(Response::new(pb::RecordConsentResponse {
            records: records.into_iter().map(convert::record_to).collect(),
        }))
    }

    async fn get_consent_state(
        &self,
        request: Request<pb::GetConsentStateRequest>,
    ) -> RpcResult<pb::GetConsentStateResponse> {
        let pb::GetConsentStateRequest {
            customer_id,
            purpose_codes,
        } = request.into_inner();
        let mut v = Violations::default();
        let customer = v.check("customer_id", CustomerId::parse(&customer_id));
        let purposes = convert::purpose_codes(
            &mut v,
            "purpose_codes",
            &purpose_codes,
            MAX_PURPOSES_PER_QUERY,
        );
        v.finish()?;
        let customer = checked(customer);
        let states = self
            .consent
            .state(&customer, purposes)
            .await
            .map_err(ApiError::from)?;
        Ok(Response::new(pb::GetConsentStateResponse {
            states: states
                .into_iter()
                .map(|state| pb::PurposeState {
                    purpose_code: state.purpose.to_string(),
                    status: convert::status_to(state.status).into(),
                    latest: state.latest.map(convert::record_to),
                })
                .collect(),
            change_position: 0,
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
        let limit = v.check(
            "page_size",
            page_size("page_size", raw_size, 100, 1000).map_err(|e| e.description),
        );
        let after = v
            .check(
                "page_token",
                decode_page_token("page_token", &page_token).map_err(|e| e.description),
            )
            .flatten()
            .and_then(|cursor| {
                v.check(
                    "page_token",
                    cursor
                        .parse::<i64>()
                        .map_err(|_| "is not a page token from this API"),
                )
            });
        v.finish()?;
        let (customer, limit) = (checked(customer), checked(limit));
        let mut records = self
            .consent
            .history(&customer, purpose.as_ref(), after, limit + 1)
            .await
            .map_err(ApiError::from)?;
        let next_page_token = next_token(&mut records, limit, |r| r.record_id.to_string());
        Ok(Response::new(pb::ListConsentHistoryResponse {
            records: records.into_iter().map(convert::record_to).collect(),
            next_page_token,
        }))
    }

    async fn check_consent(
        &self,
        request: Request<pb::CheckConsentRequest>,
    ) -> RpcResult<pb::CheckConsentResponse> {
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
            &purpose_codes,
            MAX_PURPOSES_PER_QUERY,
        );
        v.finish()?;
        let customer = checked(customer);
        let (answers, now) = self
            .consent
            .check(&customer, purposes)
            .await
            .map_err(ApiError::from)?;
        Ok(Response::new(pb::CheckConsentResponse {
            checks: answers
                .into_iter()
                .map(|answer| pb::PurposeCheck {
                    purpose_code: answer.purpose.to_string(),
                    granted: answer.status.is_granted(),
                    status: convert::status_to(answer.status).into(),
                    notice_version: answer.current.map_or(0, |current| current.notice_version),
                })
                .collect(),
            check_time: Some(convert::timestamp_to(now)),
        }))
    }

    // TEMPORARY while issue 4 is built in parallel: each is replaced by its owner.
    type WatchConsentChangesStream = std::pin::Pin<
        Box<dyn futures::Stream<Item = Result<pb::WatchConsentChangesResponse, Status>> + Send>,
    >;

    async fn watch_consent_changes(
        &self,
        _request: Request<pb::WatchConsentChangesRequest>,
    ) -> RpcResult<Self::WatchConsentChangesStream> {
        Err(Status::unimplemented("watch: in progress"))
    }

    async fn list_expiring_consents(
        &self,
        _request: Request<pb::ListExpiringConsentsRequest>,
    ) -> RpcResult<pb::ListExpiringConsentsResponse> {
        Err(Status::unimplemented("expiring: in progress"))
    }

    async fn apply_global_privacy_control(
        &self,
        _request: Request<pb::ApplyGlobalPrivacyControlRequest>,
    ) -> RpcResult<pb::ApplyGlobalPrivacyControlResponse> {
        Err(Status::unimplemented("gpc: in progress"))
    }

    async fn verify_audit_log(
        &self,
        _request: Request<pb::VerifyAuditLogRequest>,
    ) -> RpcResult<pb::VerifyAuditLogResponse> {
        Err(Status::unimplemented("audit: in progress"))
    }
}

/// Trims a page fetched with one extra row and returns the token for the next page:
/// the extra row's presence is how we know there is one.
fn next_token<T>(rows: &mut Vec<T>, limit: u32, cursor: impl Fn(&T) -> String) -> String {
    let limit = usize::try_from(limit).expect("page sizes fit in usize");
    if rows.len() <= limit {
        return String::new();
    }
    rows.truncate(limit);
    rows.last()
        .map(|row| encode_page_token(&cursor(row)))
        .unwrap_or_default()
}
