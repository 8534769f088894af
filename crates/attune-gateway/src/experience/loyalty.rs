//! The loyalty part: balance, tier, upcoming expiries (the customer's own
//! membership, no consent purpose needed) and the offers usable now (which need
//! "personalization", as loyalty needed it to issue them). On the STORE page
//! only in-store offers are shown.

use attune_kit::peer::within;
use attune_kit::types::DataCategory;
use attune_proto::gateway::v1 as pb;
use attune_proto::loyalty::v1 as loyalty_pb;
use chrono::{DateTime, Utc};
use tonic::Code;

use super::backends::{LOYALTY, timed};
use super::consent::PERSONALIZATION;
use super::request::{Page, Part};
use super::{Composition, status};

/// The most offers a page shows.
const MAX_OFFERS: usize = 10;
/// The most upcoming expiries a page shows.
const MAX_EXPIRIES: usize = 5;
/// Offers read per page: enough to find the usable ones among the newest.
const OFFERS_READ: i32 = 50;

fn part(status: pb::PartStatus) -> pb::LoyaltyPart {
    pb::LoyaltyPart {
        status: Some(status),
        account: None,
        offers: Vec::new(),
    }
}

pub(crate) async fn compose(page: &Composition<'_>) -> pb::LoyaltyPart {
    if !page.request.wants(Part::Loyalty) {
        return part(status::omitted(LOYALTY, pb::PartReason::NotRequested));
    }
    let Some(customer_id) = page.customer else {
        return part(status::omitted(LOYALTY, pb::PartReason::NotApplicable));
    };
    let (Some(client), Some(mut offers)) = (page.backends.loyalty(), page.backends.offers()) else {
        return part(status::degraded(
            LOYALTY,
            pb::PartReason::ServiceUnavailable,
            "loyalty is not deployed behind this gateway".into(),
        ));
    };
    let with_offers = page.grants.granted(PERSONALIZATION);
    let budget = page.budget();
    let mut accounts = client;
    let (account, ladder, offers) = tokio::join!(
        within(
            budget,
            accounts.get_account(timed(
                loyalty_pb::GetAccountRequest {
                    customer_id: customer_id.to_owned(),
                },
                budget,
            )),
        ),
        page.ladder.tiers(page.backends, budget),
        async {
            if !with_offers {
                return None;
            }
            let request = loyalty_pb::ListOffersRequest {
                customer_id: customer_id.to_owned(),
                page_size: OFFERS_READ,
                page_token: String::new(),
            };
            Some(within(budget, offers.list_offers(timed(request, budget))).await)
        },
    );
    if account
        .refusal()
        .is_some_and(|refusal| refusal.code() == Code::NotFound)
    {
        // Not enrolled: nothing to show, and no offers without an account.
        return part(status::omitted(LOYALTY, pb::PartReason::NotApplicable));
    }
    if let Some(failure) = status::failure(LOYALTY, &account) {
        return part(failure);
    }
    let account = account
        .answered()
        .and_then(|answer| answer.account)
        .unwrap_or_default();
    // The tier's name is decoration: without the ladder the id is shown.
    let mut categories = vec![DataCategory::Loyalty];
    let mut purposes = Vec::new();
    let mut failure = None;
    let offers = match offers {
        None => Vec::new(),
        Some(outcome) => {
            failure = status::failure(LOYALTY, &outcome);
            let shown = usable_offers(
                outcome
                    .answered()
                    .map(|answer| answer.offers)
                    .unwrap_or_default(),
                page.now,
                page.request.page == Page::Store,
            );
            if !shown.is_empty() {
                purposes.push(PERSONALIZATION);
                categories.extend(shown.iter().flat_map(|offer| {
                    offer
                        .data_categories
                        .iter()
                        .filter_map(|raw| DataCategory::from_proto(*raw).ok())
                }));
            }
            shown.into_iter().map(offer_view).collect()
        }
    };
    let mut status = status::ok(LOYALTY, &categories, &purposes);
    if let Some(failure) = failure {
        // The account is shown; the offers are what is missing.
        status = pb::PartStatus {
            data_categories: status.data_categories,
            purpose_codes: status.purpose_codes,
            ..failure
        };
    }
    pb::LoyaltyPart {
        status: Some(status),
        account: Some(account_view(account, &ladder)),
        offers,
    }
}

fn account_view(account: loyalty_pb::Account, ladder: &[loyalty_pb::Tier]) -> pb::AccountView {
    let loyalty_pb::Account {
        customer_id: _,
        available_points,
        pending_points,
        debt_points: _,
        qualifying_value: _,
        tier_id,
        tier_benefits,
        tier_review_time: _,
        upcoming_expiries,
        open_time: _,
        // The page shows the first few expiries; the rest stay in loyalty's list.
        upcoming_expiries_next_page_token: _,
    } = account;
    let tier = (!tier_id.is_empty()).then(|| {
        let benefits = tier_benefits.unwrap_or_default();
        pb::TierView {
            display_name: ladder
                .iter()
                .find(|tier| tier.tier_id == tier_id)
                .map(|tier| tier.display_name.clone())
                .unwrap_or_else(|| tier_id.clone()),
            tier_id,
            free_shipping: benefits.free_shipping.is_some(),
            early_access: benefits.early_access,
        }
    });
    pb::AccountView {
        available_points,
        pending_points,
        tier,
        upcoming_expiries: upcoming_expiries
            .into_iter()
            .take(MAX_EXPIRIES)
            .map(|expiry| pb::PointsExpiryView {
                points: expiry.points,
                expire_time: expiry.expire_time,
            })
            .collect(),
    }
}

/// The offers a customer can use now, newest first: issued or seen, inside
/// their window, meant for the shop or app; in a store, store events only.
fn usable_offers(
    offers: Vec<loyalty_pb::Offer>,
    now: DateTime<Utc>,
    in_store: bool,
) -> Vec<loyalty_pb::Offer> {
    let live = |time: Option<prost_types::Timestamp>| {
        time.and_then(|time| attune_kit::types::time::from_proto(time).ok())
    };
    offers
        .into_iter()
        .filter(|offer| {
            let state = loyalty_pb::OfferState::try_from(offer.state);
            let usable = matches!(
                state,
                Ok(loyalty_pb::OfferState::Issued | loyalty_pb::OfferState::Seen)
            );
            let started = live(offer.start_time).is_none_or(|start| start <= now);
            let running = live(offer.end_time).is_none_or(|end| now < end);
            let store_event = offer.kind == loyalty_pb::OfferKind::StoreEvent as i32;
            let for_the_page = if in_store {
                store_event
            } else {
                offer.channel == loyalty_pb::MessageChannel::InApp as i32
            };
            usable && started && running && for_the_page
        })
        .take(MAX_OFFERS)
        .collect()
}

fn offer_view(offer: loyalty_pb::Offer) -> pb::OfferView {
    let loyalty_pb::Offer {
        offer_id,
        customer_id: _,
        rule_id: _,
        kind,
        state: _,
        title,
        reason,
        data_categories: _,
        discount_basis_points,
        item_ids,
        channel: _,
        campaign_id: _,
        start_time: _,
        end_time,
    } = offer;
    use pb::OfferKindView as View;
    let kind = match loyalty_pb::OfferKind::try_from(kind) {
        Ok(loyalty_pb::OfferKind::Replenishment) => View::Replenishment,
        Ok(loyalty_pb::OfferKind::WinBack) => View::WinBack,
        Ok(loyalty_pb::OfferKind::CartAbandon) => View::CartAbandon,
        Ok(loyalty_pb::OfferKind::ZeroPartyThanks) => View::Thanks,
        Ok(loyalty_pb::OfferKind::StoreEvent) => View::StoreEvent,
        Ok(loyalty_pb::OfferKind::Unspecified) | Err(_) => View::Unspecified,
    };
    pb::OfferView {
        offer_id,
        title,
        reason,
        kind: kind.into(),
        discount_basis_points,
        item_ids,
        end_time,
    }
}
