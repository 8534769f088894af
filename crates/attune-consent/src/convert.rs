//! Between the wire and the domain. Requests are destructured without `..`, so a
//! new proto field does not compile until someone decides what it means here.

use attune_kit::consent::wire::{decision_from_proto, decision_to_proto};
use attune_kit::error::{ApiError, Violations, checked};
use attune_kit::pagination::{decode_cursor, page_size};
use attune_kit::privacy::struct_from_json;
use attune_kit::types::time;
use attune_proto::consent::v1 as pb;
use attune_proto::privacy::v1 as privacy_pb;
use chrono::{DateTime, Utc};

use crate::domain::{
    Change, ChangeKind, Channel, ConsentRecord, ConsentStatus, CustomerId, DataCategory,
    DecisionInput, LegalBasis, NewPurpose, Proof, Purpose, PurposeCode, PurposeNotice,
    RecordConsent, RequestId,
};
use crate::domain::{ExpiringGrant, ExpiringQuery, ExpiryCursor, ExpiryWindow};
use crate::watch::{Batch, StartAt};

/// A create request, parsed.
pub fn create_purpose(
    request: pb::CreatePurposeRequest,
) -> Result<(NewPurpose, RequestId), ApiError> {
    let pb::CreatePurposeRequest {
        code,
        display_name,
        description,
        legal_basis,
        data_categories,
        request_id,
    } = request;
    purpose_change(
        &code,
        &display_name,
        &description,
        legal_basis,
        &data_categories,
        &request_id,
    )
}

/// An update request, parsed: the same fields as a create, naming an existing purpose.
pub fn update_purpose(
    request: pb::UpdatePurposeRequest,
) -> Result<(NewPurpose, RequestId), ApiError> {
    let pb::UpdatePurposeRequest {
        code,
        display_name,
        description,
        legal_basis,
        data_categories,
        request_id,
    } = request;
    purpose_change(
        &code,
        &display_name,
        &description,
        legal_basis,
        &data_categories,
        &request_id,
    )
}

fn purpose_change(
    code: &str,
    display_name: &str,
    description: &str,
    legal_basis: i32,
    data_categories: &[i32],
    request_id: &str,
) -> Result<(NewPurpose, RequestId), ApiError> {
    let mut v = Violations::default();
    let code = v.check("code", PurposeCode::parse(code));
    let request_id = v.check("request_id", RequestId::parse(request_id));
    let legal_basis = v.check("legal_basis", legal_basis_from(legal_basis));
    let mut categories = Vec::with_capacity(data_categories.len());
    for (index, raw) in data_categories.iter().enumerate() {
        if let Some(category) = v.check(
            format!("data_categories[{index}]"),
            DataCategory::from_proto(*raw),
        ) {
            categories.push(category);
        }
    }
    let all_categories_valid = categories.len() == data_categories.len();
    let notice = match legal_basis {
        Some(basis) if all_categories_valid => {
            match PurposeNotice::parse(display_name, description, basis, categories) {
                Ok(notice) => Some(notice),
                Err(problems) => {
                    for (field, problem) in problems {
                        v.add(field, problem);
                    }
                    None
                }
            }
        }
        _ => None,
    };
    v.finish()?;
    let new = NewPurpose {
        code: checked(code),
        notice: checked(notice),
    };
    Ok((new, checked(request_id)))
}

/// A record request, parsed and checked against `now`.
pub fn record_consent(
    request: pb::RecordConsentRequest,
    now: DateTime<Utc>,
) -> Result<RecordConsent, ApiError> {
    let pb::RecordConsentRequest {
        customer_id,
        decisions,
        channel,
        proof,
        decide_time,
        expire_time,
        request_id,
    } = request;
    let mut v = Violations::default();
    let customer = v.check("customer_id", CustomerId::parse(&customer_id));
    let request_id = v.check("request_id", RequestId::parse(&request_id));
    let channel = v.check("channel", Channel::from_proto(channel));
    let proof = proof_from(&mut v, proof.unwrap_or_default());
    let decide_time = decide_time.and_then(|t| v.check("decide_time", time::from_proto(t)));
    let expire_time = expire_time.and_then(|t| v.check("expire_time", time::from_proto(t)));
    let mut inputs = Vec::with_capacity(decisions.len());
    for (index, decision) in decisions.into_iter().enumerate() {
        let pb::PurposeDecision {
            purpose_code,
            decision,
            notice_version,
        } = decision;
        let purpose = v.check(
            format!("decisions[{index}].purpose_code"),
            PurposeCode::parse(&purpose_code),
        );
        let decision = v.check(
            format!("decisions[{index}].decision"),
            decision_from_proto(decision),
        );
        if notice_version < 1 {
            v.add(
                format!("decisions[{index}].notice_version"),
                "must be the notice version shown to the customer (1 or more)",
            );
        }
        if let (Some(purpose), Some(decision)) = (purpose, decision) {
            inputs.push(DecisionInput {
                purpose,
                decision,
                notice_version,
            });
        }
    }
    v.finish()?;
    let command = RecordConsent {
        customer: checked(customer),
        decisions: inputs,
        channel: checked(channel),
        proof,
        decide_time,
        expire_time,
        request_id: checked(request_id),
    };
    // Clock-relative problems alone are left to the service, which holds only a
    // first request to them (a retry gets its original answer); with other
    // problems they are reported together, all at once.
    let problems = command.check();
    if problems.is_empty() {
        return Ok(command);
    }
    let mut v = Violations::default();
    for (field, problem) in problems.into_iter().chain(command.check_times(now)) {
        v.add(field, problem);
    }
    v.finish()?;
    Ok(command)
}

/// Parses a list of purpose codes, each violation naming its index.
pub fn purpose_codes(
    v: &mut Violations,
    field: &str,
    codes: Vec<String>,
    max: usize,
) -> Vec<PurposeCode> {
    if codes.len() > max {
        v.add(field, format!("must name at most {max} purposes"));
    }
    // The indexed field name is formatted only for a bad code: CheckConsent runs
    // this on every call, and formatting it for every valid code cost more than
    // parsing the codes did. Each valid code keeps the decoded string.
    codes
        .into_iter()
        .enumerate()
        .filter_map(|(index, code)| match PurposeCode::parse_owned(code) {
            Ok(code) => Some(code),
            Err(err) => {
                v.add(format!("{field}[{index}]"), err.to_string());
                None
            }
        })
        .collect()
}

/// A list-expiring request, parsed, with its page size. A page token replaces the
/// window by the first page's, but `within_days` must still be valid.
pub fn list_expiring_consents(
    request: pb::ListExpiringConsentsRequest,
) -> Result<(ExpiringQuery, u32), ApiError> {
    let pb::ListExpiringConsentsRequest {
        within_days,
        purpose_code,
        page_size: raw_size,
        page_token,
    } = request;
    let mut v = Violations::default();
    let window = v.check("within_days", ExpiryWindow::days(within_days));
    let purpose = if purpose_code.is_empty() {
        None
    } else {
        v.check("purpose_code", PurposeCode::parse(&purpose_code))
    };
    let limit = v.check_field(page_size("page_size", raw_size, 100, 1000));
    let cursor = decode_cursor(&mut v, "page_token", &page_token, ExpiryCursor::decode);
    v.finish()?;
    let query = ExpiringQuery {
        window: cursor.map_or_else(|| checked(window), ExpiryWindow::Resume),
        purpose,
    };
    Ok((query, checked(limit)))
}

pub fn expiring_to(grant: ExpiringGrant) -> pb::ExpiringConsent {
    let ExpiringGrant {
        customer,
        purpose,
        record_id,
        notice_version,
        decide_time,
        expire_time,
    } = grant;
    pb::ExpiringConsent {
        customer_id: customer.to_string(),
        purpose_code: purpose.to_string(),
        grant: Some(pb::DecisionSummary {
            record_id,
            decision: pb::Decision::Granted.into(),
            notice_version,
            decide_time: Some(time::to_proto(decide_time)),
            expire_time: Some(time::to_proto(expire_time)),
        }),
    }
}

/// The optional proof; each over-long or malformed part is reported as `proof.<part>`.
fn proof_from(v: &mut Violations, proof: pb::ConsentProof) -> Proof {
    let pb::ConsentProof {
        form_hash,
        user_agent,
        captured_by,
    } = proof;
    let mut bounded = |part: &str, value: String, max: usize| -> Option<String> {
        let checked = if value.chars().count() > max {
            Err(format!("must be at most {max} characters"))
        } else if value.chars().any(char::is_control) {
            Err("must not contain control characters".to_owned())
        } else {
            Ok(value)
        };
        v.check(format!("proof.{part}"), checked)
            .filter(|value| !value.is_empty())
    };
    Proof {
        form_hash: bounded("form_hash", form_hash, Proof::MAX_FORM_HASH),
        user_agent: bounded("user_agent", user_agent, Proof::MAX_USER_AGENT),
        captured_by: bounded("captured_by", captured_by, Proof::MAX_CAPTURED_BY),
    }
}

fn legal_basis_from(raw: i32) -> Result<LegalBasis, String> {
    match pb::LegalBasis::try_from(raw) {
        Ok(pb::LegalBasis::Unspecified) => Err("must be set".into()),
        Ok(pb::LegalBasis::Consent) => Ok(LegalBasis::Consent),
        Ok(pb::LegalBasis::Contract) => Ok(LegalBasis::Contract),
        Ok(pb::LegalBasis::LegalObligation) => Ok(LegalBasis::LegalObligation),
        Ok(pb::LegalBasis::VitalInterests) => Ok(LegalBasis::VitalInterests),
        Ok(pb::LegalBasis::PublicTask) => Ok(LegalBasis::PublicTask),
        Ok(pb::LegalBasis::LegitimateInterests) => Ok(LegalBasis::LegitimateInterests),
        Err(_) => Err(format!("{raw} is not a known legal basis")),
    }
}

fn legal_basis_to(basis: LegalBasis) -> pb::LegalBasis {
    match basis {
        LegalBasis::Consent => pb::LegalBasis::Consent,
        LegalBasis::Contract => pb::LegalBasis::Contract,
        LegalBasis::LegalObligation => pb::LegalBasis::LegalObligation,
        LegalBasis::VitalInterests => pb::LegalBasis::VitalInterests,
        LegalBasis::PublicTask => pb::LegalBasis::PublicTask,
        LegalBasis::LegitimateInterests => pb::LegalBasis::LegitimateInterests,
    }
}

pub fn status_to(status: ConsentStatus) -> pb::ConsentStatus {
    match status {
        ConsentStatus::NotGiven => pb::ConsentStatus::NotGiven,
        ConsentStatus::Granted => pb::ConsentStatus::Granted,
        ConsentStatus::Denied => pb::ConsentStatus::Denied,
        ConsentStatus::Withdrawn => pb::ConsentStatus::Withdrawn,
        ConsentStatus::Expired => pb::ConsentStatus::Expired,
    }
}

/// The outcome of verifying the audit log, for the wire.
pub fn audit_verification_to(
    verification: crate::domain::AuditVerification,
) -> pb::VerifyAuditLogResponse {
    use crate::domain::{AuditProblem, AuditProblemKind, AuditVerification};
    let AuditVerification {
        entry_count,
        head_hash,
        first_problem,
    } = verification;
    pb::VerifyAuditLogResponse {
        intact: first_problem.is_none(),
        entry_count,
        head_hash: head_hash.unwrap_or_default(),
        first_problem: first_problem.map(
            |AuditProblem {
                 sequence,
                 kind,
                 description,
             }| pb::AuditProblem {
                sequence,
                kind: match kind {
                    AuditProblemKind::Altered => pb::AuditProblemKind::Altered,
                    AuditProblemKind::Missing => pb::AuditProblemKind::Missing,
                    AuditProblemKind::OutOfOrder => pb::AuditProblemKind::OutOfOrder,
                }
                .into(),
                description,
            },
        ),
    }
}

pub fn purpose_to(purpose: Purpose) -> pb::Purpose {
    let Purpose {
        code,
        notice,
        notice_version,
        create_time,
        notice_publish_time,
    } = purpose;
    pb::Purpose {
        code: code.to_string(),
        display_name: notice.display_name().to_owned(),
        description: notice.description().to_owned(),
        legal_basis: legal_basis_to(notice.legal_basis()).into(),
        data_categories: notice
            .data_categories()
            .iter()
            .map(|&category| i32::from(category))
            .collect(),
        notice_version,
        create_time: Some(time::to_proto(create_time)),
        notice_publish_time: Some(time::to_proto(notice_publish_time)),
    }
}

pub fn record_to(record: ConsentRecord) -> pb::ConsentRecord {
    let ConsentRecord {
        record_id,
        customer,
        purpose,
        decision,
        notice_version,
        channel,
        proof,
        decide_time,
        expire_time,
        record_time,
        request_id,
    } = record;
    let has_proof = proof != Proof::default();
    pb::ConsentRecord {
        record_id,
        customer_id: customer.to_string(),
        purpose_code: purpose.to_string(),
        decision: decision_to_proto(decision).into(),
        notice_version,
        channel: channel.into(),
        proof: has_proof.then(|| pb::ConsentProof {
            form_hash: proof.form_hash.unwrap_or_default(),
            user_agent: proof.user_agent.unwrap_or_default(),
            captured_by: proof.captured_by.unwrap_or_default(),
        }),
        decide_time: Some(time::to_proto(decide_time)),
        expire_time: expire_time.map(time::to_proto),
        record_time: Some(time::to_proto(record_time)),
        request_id,
    }
}

/// Where a watch starts; a negative cursor is invalid.
pub fn watch_start(request: pb::WatchConsentChangesRequest) -> Result<StartAt, ApiError> {
    let pb::WatchConsentChangesRequest {
        after_position,
        start_at_newest,
    } = request;
    if start_at_newest {
        return Ok(StartAt::Newest);
    }
    if after_position < 0 {
        return Err(ApiError::invalid(
            "after_position",
            "must be 0 or a position from an earlier response",
        ));
    }
    Ok(StartAt::After(after_position))
}

pub fn watch_response(batch: Batch) -> pb::WatchConsentChangesResponse {
    let Batch {
        changes,
        position,
        send_time,
    } = batch;
    pb::WatchConsentChangesResponse {
        changes: changes.into_iter().map(change_to).collect(),
        position,
        send_time: Some(time::to_proto(send_time)),
    }
}

fn change_to(change: Change) -> pb::ConsentChange {
    let Change {
        position,
        change_time,
        kind,
    } = change;
    let change = match kind {
        ChangeKind::Decision { recorded, current } => {
            pb::consent_change::Change::Decision(pb::ConsentDecisionChange {
                customer_id: recorded.customer.to_string(),
                purpose_code: recorded.purpose.to_string(),
                recorded: Some(summary_to(&recorded)),
                current: Some(summary_to(&current)),
            })
        }
        ChangeKind::Erasure => pb::consent_change::Change::CustomerErased(pb::CustomerErased {}),
    };
    pb::ConsentChange {
        position,
        change_time: Some(time::to_proto(change_time)),
        change: Some(change),
    }
}

fn summary_to(record: &ConsentRecord) -> pb::DecisionSummary {
    pb::DecisionSummary {
        record_id: record.record_id,
        decision: decision_to_proto(record.decision).into(),
        notice_version: record.notice_version,
        decide_time: Some(time::to_proto(record.decide_time)),
        expire_time: record.expire_time.map(time::to_proto),
    }
}

/// One ledger record as an export shows it to the customer.
pub fn record_export(record: ConsentRecord) -> privacy_pb::DataRecord {
    let time = |time: DateTime<Utc>| time.to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
    let data = serde_json::json!({
        "customer_id": record.customer.as_ref(),
        "purpose_code": record.purpose.as_ref(),
        "decision": record.decision.as_str(),
        "notice_version": record.notice_version,
        "channel": record.channel.as_str(),
        "decide_time": time(record.decide_time),
        "expire_time": record.expire_time.map(time),
        "record_time": time(record.record_time),
        "request_id": record.request_id,
        "proof": {
            "form_hash": record.proof.form_hash,
            "user_agent": record.proof.user_agent,
            "captured_by": record.proof.captured_by,
        },
    });
    privacy_pb::DataRecord {
        kind: "consent_decision".to_owned(),
        id: record.record_id.to_string(),
        update_time: Some(time::to_proto(record.record_time)),
        data: Some(struct_from_json(data)),
    }
}
