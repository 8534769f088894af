//! `ExplainDataUse`: what each service actually holds about a customer (read
//! from each service's own export, so the answer cannot drift from the data),
//! and, purpose by purpose, what the data is for and whether the customer
//! allowed it, in words a customer can read.

use std::time::Duration;

use attune_kit::consent::{ConsentChecker, ConsentStatus, Reason};
use attune_kit::error::Violations;
use attune_kit::peer::within;
use attune_kit::types::CustomerId;
use attune_proto::consent::v1 as consent_pb;
use attune_proto::gateway::v1 as pb;
use chrono::{DateTime, Utc};
use tonic::Status;
use tonic::metadata::MetadataMap;

use super::backends::{PageBackends, timed};
use crate::data_subject::{DataSubjectRequests, Holding};

/// How long the catalogue may take.
const CATALOGUE_BUDGET: Duration = Duration::from_secs(2);
/// The catalogue pages read at most (500 purposes each).
const CATALOGUE_PAGES: usize = 20;

pub(crate) fn parse(request: pb::ExplainDataUseRequest) -> Result<CustomerId, Status> {
    let pb::ExplainDataUseRequest { customer_id } = request;
    let mut v = Violations::default();
    let customer = v.check("customer_id", CustomerId::parse_owned(customer_id));
    v.finish()?;
    Ok(attune_kit::error::checked(customer))
}

/// What a service does with what it holds, in words for the customer.
fn use_of(service: &str) -> &'static str {
    match service {
        "attune.consent.v1" => {
            "Your choices about how we may use your data, kept as proof of what you decided."
        }
        "attune.profile.v1" => {
            "Your customer profile: the accounts and cards linked to it, what you told us about yourself, and what you did in our shop, used as you allowed."
        }
        "attune.recommendation.v1" => {
            "What you viewed and bought, to suggest products you may like when you allowed personalization."
        }
        "attune.loyalty.v1" => {
            "Your points account, its history and your offers, to run the loyalty programme you joined."
        }
        "attune.delivery.v1" => {
            "Your addresses and delivery and payment choices, to deliver your orders the way you prefer."
        }
        _ => "Data used to provide this part of our service.",
    }
}

fn humanize(kind: &str) -> String {
    kind.replace('_', " ")
}

fn service_use(holding: Holding) -> pb::ServiceDataUse {
    let Holding { service, kinds } = holding;
    match kinds {
        Ok(kinds) => {
            let record_count = kinds.values().sum();
            let summary = if kinds.is_empty() {
                "We hold nothing about you here.".to_owned()
            } else {
                let parts: Vec<String> = kinds
                    .iter()
                    .map(|(kind, count)| format!("{count} × {}", humanize(kind)))
                    .collect();
                format!(
                    "We hold {record_count} records about you here: {}.",
                    parts.join(", ")
                )
            };
            pb::ServiceDataUse {
                service: service.to_owned(),
                summary,
                record_count,
                record_types: kinds.into_keys().collect(),
                available: true,
                r#use: use_of(service).to_owned(),
            }
        }
        Err(status) => {
            tracing::warn!(service, code = ?status.code(), "a service could not say what it holds");
            pb::ServiceDataUse {
                service: service.to_owned(),
                summary:
                    "This part of our service cannot be asked right now; please try again later."
                        .to_owned(),
                record_count: 0,
                record_types: Vec::new(),
                available: false,
                r#use: use_of(service).to_owned(),
            }
        }
    }
}

async fn catalogue(backends: &PageBackends) -> Result<Vec<consent_pb::Purpose>, Status> {
    let Some(mut client) = backends.consent_client() else {
        return Err(Status::unavailable(
            "consent is not deployed behind this gateway",
        ));
    };
    let mut purposes = Vec::new();
    let mut page_token = String::new();
    for _ in 0..CATALOGUE_PAGES {
        let request = consent_pb::ListPurposesRequest {
            page_size: 500,
            page_token: page_token.clone(),
        };
        let page = within(
            CATALOGUE_BUDGET,
            client.list_purposes(timed(request, CATALOGUE_BUDGET)),
        )
        .await;
        let Some(page) = page.answered() else {
            return Err(Status::unavailable(
                "the purposes catalogue cannot be read now; retry",
            ));
        };
        purposes.extend(page.purposes);
        if page.next_page_token.is_empty() || page.next_page_token == page_token {
            break;
        }
        page_token = page.next_page_token;
    }
    Ok(purposes)
}

fn status_text(granted: bool, reason: Reason) -> &'static str {
    match (granted, reason) {
        (true, _) => "You allowed this: we use your data for it.",
        (false, Reason::Status(ConsentStatus::Denied)) => {
            "You said no: we do not use your data for this."
        }
        (false, Reason::Status(ConsentStatus::Withdrawn)) => {
            "You withdrew your permission: we no longer use your data for this."
        }
        (false, Reason::Status(ConsentStatus::Expired)) => {
            "Your permission has expired: we no longer use your data for this."
        }
        (false, Reason::Status(_)) => "You have not decided: we do not use your data for this.",
        (false, Reason::Unavailable | Reason::FreshnessUnconfirmed) => {
            "We cannot check your choice right now, so we do not use your data for this."
        }
    }
}

pub(crate) async fn explain(
    subjects: &DataSubjectRequests,
    backends: &PageBackends,
    checker: Option<&ConsentChecker>,
    customer: CustomerId,
    caller: &MetadataMap,
    now: DateTime<Utc>,
) -> Result<pb::ExplainDataUseResponse, Status> {
    // A fresh export per explanation: each service audits the read.
    let request_id = format!("explain-{}", uuid::Uuid::new_v4().simple());
    let (holdings, purposes) = tokio::join!(
        subjects.holdings(customer.as_ref(), &request_id, caller),
        catalogue(backends),
    );
    let purposes = purposes?;
    let codes: Vec<&str> = purposes
        .iter()
        .map(|purpose| purpose.code.as_str())
        .collect();
    let verdicts = match checker {
        Some(checker) => checker.check(customer.as_ref(), &codes).await,
        None => Vec::new(),
    };
    let purposes = purposes
        .into_iter()
        .map(|purpose| {
            let consent_pb::Purpose {
                code,
                display_name,
                description,
                legal_basis: _,
                data_categories,
                notice_version: _,
                create_time: _,
                notice_publish_time: _,
            } = purpose;
            let verdict = verdicts.iter().find(|verdict| verdict.purpose == code);
            let (granted, reason) = verdict.map_or((false, Reason::Unavailable), |verdict| {
                (verdict.granted, verdict.reason)
            });
            let mut data_categories = data_categories;
            data_categories.sort_unstable();
            pb::PurposeExplanation {
                purpose_code: code,
                display_name,
                description,
                data_categories,
                granted,
                status_text: status_text(granted, reason).to_owned(),
            }
        })
        .collect();
    Ok(pb::ExplainDataUseResponse {
        customer_id: customer.into_string(),
        services: holdings.into_iter().map(service_use).collect(),
        purposes,
        explain_time: Some(attune_kit::types::time::to_proto(now)),
    })
}
