//! The store part (clienteling): what a store associate may see of the customer
//! at the till. Nothing without "store_visits" (the customer chose personalized
//! store visits) and "personalization" (the preferences and cart it shows).
//! Recommendations with their reasons, loyalty status and the in-store offer come
//! from their own parts.

use attune_kit::peer::within;
use attune_kit::types::DataCategory;
use attune_proto::gateway::v1 as pb;
use attune_proto::profile::v1 as profile_pb;
use tonic::Code;

use super::backends::{PROFILE, timed};
use super::consent::{PERSONALIZATION, STORE_VISITS};
use super::request::Part;
use super::{Composition, status};

fn part(status: pb::PartStatus, store_id: &str) -> pb::StorePart {
    pb::StorePart {
        status: Some(status),
        store_id: store_id.to_owned(),
        ..pb::StorePart::default()
    }
}

pub(crate) async fn compose(page: &Composition<'_>) -> pb::StorePart {
    let store_id = page
        .request
        .store
        .as_ref()
        .map(|store| store.store_id.as_str())
        .unwrap_or_default();
    if !page.request.wants(Part::Store) {
        return part(
            status::omitted(PROFILE, pb::PartReason::NotRequested),
            store_id,
        );
    }
    let Some(customer_id) = page.customer else {
        return part(
            status::omitted(PROFILE, pb::PartReason::NotApplicable),
            store_id,
        );
    };
    if let Some(status) = page
        .grants
        .refusal(PROFILE, &[PERSONALIZATION, STORE_VISITS])
    {
        return part(status, store_id);
    }
    let (Some(mut profiles), Some(mut events)) = (page.backends.profile(), page.backends.events())
    else {
        return part(
            status::degraded(
                PROFILE,
                pb::PartReason::ServiceUnavailable,
                "profile is not deployed behind this gateway".into(),
            ),
            store_id,
        );
    };
    let budget = page.budget();
    let (zero_party, traits) = tokio::join!(
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
            events.get_traits(timed(
                profile_pb::GetTraitsRequest {
                    customer_id: customer_id.to_owned(),
                },
                budget,
            )),
        ),
    );
    if [zero_party.refusal(), traits.refusal()]
        .into_iter()
        .flatten()
        .any(|refusal| refusal.code() == Code::NotFound)
    {
        return part(
            status::omitted(PROFILE, pb::PartReason::NotApplicable),
            store_id,
        );
    }
    let failure =
        status::failure(PROFILE, &zero_party).or_else(|| status::failure(PROFILE, &traits));
    let data = zero_party
        .answered()
        .and_then(|answer| answer.data)
        .unwrap_or_default();
    let cart = traits
        .answered()
        .and_then(|answer| answer.traits)
        .and_then(|traits| traits.open_cart);
    let mut view = pb::StorePart {
        status: None,
        store_id: store_id.to_owned(),
        preferred_name: data.preferred_name,
        sizes: data
            .sizes
            .into_iter()
            .map(|size| pb::SizeView {
                size_type: size.size_type,
                value: size.value,
                size_system: size.size_system,
            })
            .collect(),
        favourite_category_ids: data.favourite_category_ids,
        favourite_brands: data.favourite_brands,
        style_preferences: data.style_preferences,
        open_cart: Vec::new(),
        open_cart_update_time: None,
    };
    if let Some(cart) = cart {
        view.open_cart = cart
            .items
            .into_iter()
            .map(|item| pb::OpenCartLine {
                item_id: item.item_id,
                quantity: i64::from(item.quantity.max(1)),
            })
            .collect();
        view.open_cart_update_time = cart.last_change_time;
    }
    let mut categories = Vec::new();
    let shares_preferences = !view.preferred_name.is_empty()
        || !view.sizes.is_empty()
        || !view.favourite_category_ids.is_empty()
        || !view.favourite_brands.is_empty()
        || !view.style_preferences.is_empty();
    if shares_preferences {
        categories.push(DataCategory::Preferences);
    }
    if !view.open_cart.is_empty() {
        categories.push(DataCategory::Browsing);
    }
    let used = status::ok(PROFILE, &categories, &[PERSONALIZATION, STORE_VISITS]);
    view.status = Some(match failure {
        Some(failure) => pb::PartStatus {
            data_categories: used.data_categories,
            purpose_codes: used.purpose_codes,
            ..failure
        },
        None => used,
    });
    view
}
