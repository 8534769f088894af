//! The profile part: a greeting (by the name the customer chose, only with
//! consent) and the segments the customer is in.

use attune_kit::peer::within;
use attune_kit::types::DataCategory;
use attune_proto::gateway::v1 as pb;
use attune_proto::profile::v1 as profile_pb;
use tonic::Code;

use super::backends::{PROFILE, timed};
use super::consent::PERSONALIZATION;
use super::request::Part;
use super::{Composition, status};

/// The most segments a page lists.
const MAX_SEGMENTS: i32 = 100;

fn welcome() -> pb::Greeting {
    pb::Greeting {
        text: "Welcome".into(),
        preferred_name: String::new(),
        occasion: pb::GreetingOccasion::Welcome.into(),
    }
}

fn part(status: pb::PartStatus) -> pb::ProfilePart {
    pb::ProfilePart {
        status: Some(status),
        greeting: Some(welcome()),
        segment_ids: Vec::new(),
    }
}

pub(crate) async fn compose(page: &Composition<'_>) -> pb::ProfilePart {
    if !page.request.wants(Part::Profile) {
        return part(status::omitted(PROFILE, pb::PartReason::NotRequested));
    }
    let Some(customer_id) = page.customer else {
        return part(status::omitted(PROFILE, pb::PartReason::NotApplicable));
    };
    if let Some(status) = page.grants.refusal(PROFILE, &[PERSONALIZATION]) {
        return part(status);
    }
    let (Some(mut profiles), Some(mut segments)) =
        (page.backends.profile(), page.backends.segments())
    else {
        return part(status::degraded(
            PROFILE,
            pb::PartReason::ServiceUnavailable,
            "profile is not deployed behind this gateway".into(),
        ));
    };
    let budget = page.budget();
    let (zero_party, memberships) = tokio::join!(
        within(
            budget,
            profiles.get_zero_party_data(timed(
                profile_pb::GetZeroPartyDataRequest {
                    customer_id: customer_id.to_owned(),
                },
                budget,
            )),
        ),
        within(
            budget,
            segments.list_customer_segments(timed(
                profile_pb::ListCustomerSegmentsRequest {
                    customer_id: customer_id.to_owned(),
                    page_size: MAX_SEGMENTS,
                    page_token: String::new(),
                },
                budget,
            )),
        ),
    );
    if [zero_party.refusal(), memberships.refusal()]
        .into_iter()
        .flatten()
        .any(|refusal| refusal.code() == Code::NotFound)
    {
        // A customer id profile does not know: nothing to greet by.
        return part(status::omitted(PROFILE, pb::PartReason::NotApplicable));
    }
    let failure =
        status::failure(PROFILE, &zero_party).or_else(|| status::failure(PROFILE, &memberships));
    let name = zero_party
        .answered()
        .and_then(|answer| answer.data)
        .map(|data| data.preferred_name)
        .unwrap_or_default();
    let segment_ids: Vec<String> = memberships
        .answered()
        .map(|answer| {
            answer
                .memberships
                .into_iter()
                .map(|membership| membership.segment_id)
                .collect()
        })
        .unwrap_or_default();
    let mut categories = Vec::new();
    if !name.is_empty() {
        categories.push(DataCategory::Preferences);
    }
    if !segment_ids.is_empty() {
        // Segments are rules over the customer's traits: what they browsed and bought.
        categories.extend([DataCategory::Browsing, DataCategory::Purchases]);
    }
    let greeting = if name.is_empty() {
        pb::Greeting {
            text: "Welcome back".into(),
            preferred_name: String::new(),
            occasion: pb::GreetingOccasion::WelcomeBack.into(),
        }
    } else {
        pb::Greeting {
            text: format!("Welcome back, {name}"),
            preferred_name: name,
            occasion: pb::GreetingOccasion::WelcomeBack.into(),
        }
    };
    let purposes: &[&str] = if categories.is_empty() {
        &[]
    } else {
        &[PERSONALIZATION]
    };
    let mut status = failure.unwrap_or_else(|| status::ok(PROFILE, &categories, purposes));
    if !status::is_ok(&status) {
        // What did arrive is still shown; the status says the rest is missing.
        status.data_categories = status::ok(PROFILE, &categories, purposes).data_categories;
        status.purpose_codes = status::ok(PROFILE, &categories, purposes).purpose_codes;
    }
    pb::ProfilePart {
        status: Some(status),
        greeting: Some(greeting),
        segment_ids,
    }
}
