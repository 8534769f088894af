//! The recommendations part: one list per placement, asked in parallel, each
//! within the part's budget. Without "personalization" the lists are asked for
//! without the customer's id, so they cannot use the customer's data whatever
//! the recommendation service would decide.

use attune_kit::peer::within;
use attune_kit::types::DataCategory;
use attune_proto::gateway::v1 as pb;
use attune_proto::recommendation::v1 as rec;

use super::backends::{RECOMMENDATION, timed};
use super::consent::PERSONALIZATION;
use super::request::{Part, Placement};
use super::{Composition, status};

fn empty(placement: &Placement, status: pb::PartStatus) -> pb::RecommendationList {
    pb::RecommendationList {
        slot_id: placement.slot_id.clone(),
        placement: placement.placement.into(),
        items: Vec::new(),
        recommendation_id: String::new(),
        status: Some(status),
    }
}

pub(crate) async fn compose(page: &Composition<'_>) -> Vec<pb::RecommendationList> {
    let placements = &page.request.placements;
    if !page.request.wants(Part::Recommendations) {
        let status = status::omitted(RECOMMENDATION, pb::PartReason::NotRequested);
        return placements
            .iter()
            .map(|p| empty(p, status.clone()))
            .collect();
    }
    let Some(client) = page.backends.recommendation() else {
        let status = status::degraded(
            RECOMMENDATION,
            pb::PartReason::ServiceUnavailable,
            "recommendation is not deployed behind this gateway".into(),
        );
        return placements
            .iter()
            .map(|p| empty(p, status.clone()))
            .collect();
    };
    let customer_id = page
        .customer
        .filter(|_| page.grants.granted(PERSONALIZATION))
        .unwrap_or_default();
    let budget = page.budget();
    let lists = placements.iter().map(|placement| {
        let mut client = client.clone();
        let request = recommendation_request(page, placement, customer_id);
        async move {
            let answer = within(budget, client.get_recommendations(timed(request, budget))).await;
            if let Some(failure) = status::failure(RECOMMENDATION, &answer) {
                return empty(placement, failure);
            }
            let answer = answer
                .answered()
                .expect("an outcome without a failure is an answer");
            list(placement, answer)
        }
    });
    futures::future::join_all(lists).await
}

fn list(placement: &Placement, answer: rec::GetRecommendationsResponse) -> pb::RecommendationList {
    let rec::GetRecommendationsResponse {
        items,
        personalization,
        recommendation_id,
        model_version: _,
        next_page_token: _,
        variant: _,
    } = answer;
    let personalization = personalization.unwrap_or_default();
    let categories: Vec<DataCategory> = personalization
        .data_categories
        .iter()
        .filter_map(|raw| DataCategory::from_proto(*raw).ok())
        .collect();
    let purposes: Vec<&str> = personalization
        .purpose_codes
        .iter()
        .map(String::as_str)
        .collect();
    pb::RecommendationList {
        slot_id: placement.slot_id.clone(),
        placement: placement.placement.into(),
        items: items.into_iter().map(item_view).collect(),
        recommendation_id,
        status: Some(status::ok(RECOMMENDATION, &categories, &purposes)),
    }
}

fn recommendation_request(
    page: &Composition<'_>,
    placement: &Placement,
    customer_id: &str,
) -> rec::GetRecommendationsRequest {
    let request = page.request;
    let pb::SlotFilter {
        in_stock_only,
        category_ids,
        exclude_category_ids,
        brands,
        exclude_purchased,
        exclude_in_cart,
        max_per_category,
        max_per_brand,
        exclude_item_ids,
    } = placement.filter.clone();
    rec::GetRecommendationsRequest {
        customer_id: customer_id.to_owned(),
        placement: backend_placement(placement.placement).into(),
        context: Some(rec::RecommendationContext {
            current_item_ids: request.current_item_ids.clone(),
            cart_item_ids: request
                .cart
                .lines
                .iter()
                .map(|line| line.item_id.clone())
                .collect(),
            category_id: request.category_id.clone(),
            search_query: request.search_query.clone(),
            channel: request.channel.to_proto().into(),
            language_code: request.language_code.clone(),
        }),
        filter: Some(rec::RecommendationFilter {
            in_stock_only,
            category_ids,
            exclude_category_ids,
            brands,
            min_price: None,
            max_price: None,
            exclude_purchased,
            purchased_lookback: None,
            exclude_in_cart,
            max_per_category,
            max_per_brand,
            exclude_item_ids,
            repurchasable_category_ids: Vec::new(),
            attributes: Default::default(),
            score_rules: Vec::new(),
        }),
        max_results: placement.max_items,
        page_token: String::new(),
    }
}

fn backend_placement(placement: pb::SlotPlacement) -> rec::Placement {
    match placement {
        // Parsing replaced UNSPECIFIED by the page's placement.
        pb::SlotPlacement::Unspecified | pb::SlotPlacement::Home => rec::Placement::Home,
        pb::SlotPlacement::ProductPage => rec::Placement::ProductPage,
        pb::SlotPlacement::Cart => rec::Placement::Cart,
        pb::SlotPlacement::Checkout => rec::Placement::Checkout,
        pb::SlotPlacement::CategoryPage => rec::Placement::CategoryPage,
        pb::SlotPlacement::SearchResults => rec::Placement::SearchResults,
    }
}

/// The storefront's view of a recommended item: what it may show, nothing more.
pub(crate) fn item_view(item: rec::RecommendedItem) -> pb::ItemView {
    let rec::RecommendedItem {
        item_id,
        item,
        rank: _,
        score: _,
        reason,
        further_reasons: _,
        data_categories,
    } = item;
    let item = item.unwrap_or_default();
    let reason = reason.unwrap_or_default();
    pb::ItemView {
        item_id,
        title: item.title,
        brand: item.brand,
        price: item.price,
        original_price: item.original_price,
        in_stock: item.in_stock.unwrap_or(true),
        uri: item.uri,
        image_uri: item.image_uri,
        reason_text: reason.text,
        reason_kind: reason_kind(reason.kind).into(),
        data_categories,
    }
}

fn reason_kind(raw: i32) -> pb::ItemReasonKind {
    use pb::ItemReasonKind as View;
    match rec::ReasonKind::try_from(raw) {
        Ok(rec::ReasonKind::Viewed) => View::Viewed,
        Ok(rec::ReasonKind::Purchased) => View::Purchased,
        Ok(rec::ReasonKind::BoughtTogether) => View::BoughtTogether,
        Ok(rec::ReasonKind::FavouriteCategory) => View::FavouriteCategory,
        Ok(rec::ReasonKind::PreferenceMatch) => View::PreferenceMatch,
        Ok(rec::ReasonKind::PersonalTaste) => View::PersonalTaste,
        Ok(rec::ReasonKind::Similar) => View::Similar,
        Ok(rec::ReasonKind::Popular) => View::Popular,
        Ok(rec::ReasonKind::PopularInCategory) => View::PopularInCategory,
        Ok(rec::ReasonKind::NewArrival) => View::NewArrival,
        Ok(rec::ReasonKind::InCart) => View::InCart,
        Ok(rec::ReasonKind::RecentlyViewed) => View::RecentlyViewed,
        Ok(rec::ReasonKind::SearchMatch) => View::SearchMatch,
        Ok(rec::ReasonKind::Unspecified) | Err(_) => View::Unspecified,
    }
}
