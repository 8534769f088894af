//! Wire to domain: every request checked whole (every problem reported in one
//! INVALID_ARGUMENT), messages destructured without `..` so a new proto field
//! does not compile until someone decides what it means.

use std::collections::HashSet;

use attune_kit::ApiError;
use attune_kit::error::{FieldViolation, Violations, checked};
use attune_kit::pagination::{decode_cursor, page_size};
use attune_kit::types::{CustomerId, Money, RequestId};
use attune_proto::recommendation::v1 as pb;

use crate::answer::filter::{Filter, ScoreRule};
use crate::answer::paging::Page;
use crate::answer::{Ask, Context, Placement, Request};
use crate::catalogue::{check_category_id, check_item_id};

const MAX_FILTER_IDS: usize = 50;
const MAX_EXCLUDED_ITEMS: usize = 500;
const MAX_RULES: usize = 20;
const MAX_ATTRIBUTE_FILTERS: usize = 20;
const MAX_CURRENT_ITEMS: usize = 20;
const MAX_CART: usize = 100;
const MAX_QUERY: usize = 256;
const MAX_LANGUAGE: usize = 35;
const MAX_CANDIDATES: usize = 500;

/// An optional customer id (empty means none).
pub fn optional_customer(v: &mut Violations, field: &str, raw: &str) -> Option<String> {
    if raw.is_empty() {
        return None;
    }
    v.check(field, CustomerId::parse(raw))
        .map(|id| id.as_ref().to_owned())
}

/// A required customer id.
pub fn required_customer(v: &mut Violations, field: &str, raw: &str) -> Option<String> {
    v.check(field, CustomerId::parse(raw))
        .map(|id| id.as_ref().to_owned())
}

/// A request id.
pub fn request_id(v: &mut Violations, raw: &str) -> Option<RequestId> {
    v.check("request_id", RequestId::parse(raw))
}

fn ids(
    v: &mut Violations,
    field: &str,
    raw: &[String],
    max: usize,
    check: fn(&str) -> Result<(), String>,
) -> Vec<String> {
    if raw.len() > max {
        v.add(field, format!("must have at most {max} entries"));
    }
    for (n, id) in raw.iter().enumerate() {
        v.check(format!("{field}[{n}]"), check(id));
    }
    raw.to_vec()
}

fn no_duplicates(v: &mut Violations, field: &str, raw: &[String]) {
    let mut seen = HashSet::new();
    if let Some(duplicate) = raw.iter().position(|id| !seen.insert(id)) {
        v.add(format!("{field}[{duplicate}]"), "is a duplicate");
    }
}

fn count(v: &mut Violations, raw: i32) -> usize {
    v.check_field(page_size("max_results", raw, 10, 100))
        .map_or(0, |n| n as usize)
}

/// A boost or bury rule, checked.
fn score_rule(v: &mut Violations, field: &str, rule: &pb::ScoreRule) -> ScoreRule {
    let pb::ScoreRule {
        brand,
        category_id,
        attribute_key,
        attribute_value,
        factor,
    } = rule;
    if brand.is_empty() && category_id.is_empty() && attribute_key.is_empty() {
        v.add(field, "must set brand, category_id or attribute_key");
    }
    if brand.chars().count() > 100 {
        v.add(format!("{field}.brand"), "must be at most 100 characters");
    }
    if !category_id.is_empty() {
        v.check(
            format!("{field}.category_id"),
            check_category_id(category_id),
        );
    }
    if attribute_key.is_empty() != attribute_value.is_empty() {
        v.add(
            format!("{field}.attribute_value"),
            "must be set exactly when attribute_key is",
        );
    }
    if attribute_key.len() > 64 || attribute_value.chars().count() > 256 {
        v.add(format!("{field}.attribute_key"), "is too long");
    }
    if !factor.is_finite() || *factor <= 0.0 || *factor > 100.0 {
        v.add(
            format!("{field}.factor"),
            "must be greater than 0 and at most 100",
        );
    }
    score_rule_unchecked(rule)
}

/// A rule already checked when it was stored (a variant's).
pub fn score_rule_unchecked(rule: &pb::ScoreRule) -> ScoreRule {
    let nonempty = |s: &String| (!s.is_empty()).then(|| s.clone());
    ScoreRule {
        brand: nonempty(&rule.brand),
        category: nonempty(&rule.category_id),
        attribute: nonempty(&rule.attribute_key).map(|k| (k, rule.attribute_value.clone())),
        factor: rule.factor,
    }
}

/// Checks a list of rules.
pub fn score_rules(v: &mut Violations, field: &str, rules: &[pb::ScoreRule]) -> Vec<ScoreRule> {
    if rules.len() > MAX_RULES {
        v.add(field, format!("must have at most {MAX_RULES} entries"));
    }
    rules
        .iter()
        .enumerate()
        .map(|(n, rule)| score_rule(v, &format!("{field}[{n}]"), rule))
        .collect()
}

fn money(
    v: &mut Violations,
    field: &str,
    raw: Option<attune_proto::common::v1::Money>,
) -> Option<Money> {
    let money = v.check_field(Money::from_proto(field, raw?))?;
    if money.amount_minor() < 0 {
        v.add(format!("{field}.amount_minor"), "must not be negative");
    }
    Some(money)
}

/// The business filter.
pub fn filter(v: &mut Violations, field: &str, raw: Option<pb::RecommendationFilter>) -> Filter {
    let pb::RecommendationFilter {
        in_stock_only,
        category_ids,
        exclude_category_ids,
        brands,
        min_price,
        max_price,
        exclude_purchased,
        purchased_lookback,
        exclude_in_cart,
        max_per_category,
        max_per_brand,
        exclude_item_ids,
        repurchasable_category_ids,
        attributes,
        score_rules: rules,
    } = raw.unwrap_or_default();
    let f = |name: &str| format!("{field}.{name}");
    let categories = ids(
        v,
        &f("category_ids"),
        &category_ids,
        MAX_FILTER_IDS,
        check_category_id,
    );
    let exclude_categories = ids(
        v,
        &f("exclude_category_ids"),
        &exclude_category_ids,
        MAX_FILTER_IDS,
        check_category_id,
    );
    let repurchasable = ids(
        v,
        &f("repurchasable_category_ids"),
        &repurchasable_category_ids,
        MAX_FILTER_IDS,
        check_category_id,
    );
    if brands.len() > MAX_FILTER_IDS {
        v.add(
            f("brands"),
            format!("must have at most {MAX_FILTER_IDS} entries"),
        );
    }
    if brands
        .iter()
        .any(|b| b.is_empty() || b.chars().count() > 100)
    {
        v.add(f("brands"), "each brand must be 1 to 100 characters");
    }
    let min_price = money(v, &f("min_price"), min_price);
    let max_price = money(v, &f("max_price"), max_price);
    if let (Some(min), Some(max)) = (min_price, max_price) {
        if min.currency() != max.currency() {
            v.add(
                f("max_price.currency_code"),
                "must be the currency of min_price",
            );
        } else if min.amount_minor() > max.amount_minor() {
            v.add(f("min_price"), "must not exceed max_price");
        }
    }
    let purchased_lookback = purchased_lookback.and_then(|d| {
        if d.seconds < 0 || d.nanos < 0 {
            v.add(f("purchased_lookback"), "must not be negative");
            return None;
        }
        let micros = d.seconds.saturating_mul(1_000_000) + i64::from(d.nanos / 1000);
        (micros > 0).then_some(micros)
    });
    let cap = |v: &mut Violations, name: &str, raw: i32| {
        if raw < 0 {
            v.add(f(name), "must not be negative");
        }
        usize::try_from(raw.max(0)).unwrap_or(0)
    };
    let max_per_category = cap(v, "max_per_category", max_per_category);
    let max_per_brand = cap(v, "max_per_brand", max_per_brand);
    let exclude_items = ids(
        v,
        &f("exclude_item_ids"),
        &exclude_item_ids,
        MAX_EXCLUDED_ITEMS,
        check_item_id,
    );
    if attributes.len() > MAX_ATTRIBUTE_FILTERS {
        v.add(
            f("attributes"),
            format!("must have at most {MAX_ATTRIBUTE_FILTERS} entries"),
        );
    }
    if attributes
        .iter()
        .any(|(k, value)| k.is_empty() || k.len() > 64 || value.chars().count() > 256)
    {
        v.add(
            f("attributes"),
            "keys must be 1 to 64 characters, values up to 256",
        );
    }
    let rules = score_rules(v, &f("score_rules"), &rules);
    let mut attributes: Vec<(String, String)> = attributes.into_iter().collect();
    attributes.sort();
    Filter {
        in_stock_only,
        categories,
        exclude_categories,
        brands,
        min_price,
        max_price,
        exclude_purchased,
        purchased_lookback,
        repurchasable,
        exclude_in_cart,
        max_per_category,
        max_per_brand,
        exclude_items: exclude_items.into_iter().collect(),
        attributes,
        rules,
    }
}

/// The request's context.
pub fn context(v: &mut Violations, raw: Option<pb::RecommendationContext>) -> Context {
    let pb::RecommendationContext {
        current_item_ids,
        cart_item_ids,
        category_id,
        search_query,
        channel,
        language_code,
    } = raw.unwrap_or_default();
    let current = ids(
        v,
        "context.current_item_ids",
        &current_item_ids,
        MAX_CURRENT_ITEMS,
        check_item_id,
    );
    let cart = ids(
        v,
        "context.cart_item_ids",
        &cart_item_ids,
        MAX_CART,
        check_item_id,
    );
    if !category_id.is_empty() {
        v.check("context.category_id", check_category_id(&category_id));
    }
    if search_query.chars().count() > MAX_QUERY {
        v.add(
            "context.search_query",
            format!("must be at most {MAX_QUERY} characters"),
        );
    }
    v.check(
        "context.channel",
        attune_proto::common::v1::Channel::try_from(channel).map_err(|_| "is not a known channel"),
    );
    if language_code.len() > MAX_LANGUAGE
        || !language_code
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
    {
        v.add("context.language_code", "must be a BCP 47 language tag");
    }
    Context {
        current,
        cart,
        category: (!category_id.is_empty()).then_some(category_id),
        query: search_query,
    }
}

fn placement(v: &mut Violations, raw: i32) -> Placement {
    match pb::Placement::try_from(raw) {
        Ok(pb::Placement::Home) => Placement::Home,
        Ok(pb::Placement::ProductPage) => Placement::ProductPage,
        Ok(pb::Placement::Cart) => Placement::Cart,
        Ok(pb::Placement::Checkout) => Placement::Checkout,
        Ok(pb::Placement::Email) => Placement::Email,
        Ok(pb::Placement::CategoryPage) => Placement::CategoryPage,
        Ok(pb::Placement::SearchResults) => Placement::SearchResults,
        Ok(pb::Placement::Unspecified) | Err(_) => {
            v.add(
                "placement",
                "must be a placement other than PLACEMENT_UNSPECIFIED",
            );
            Placement::Home
        }
    }
}

impl TryFrom<pb::GetRecommendationsRequest> for Request {
    type Error = ApiError;

    fn try_from(request: pb::GetRecommendationsRequest) -> Result<Self, ApiError> {
        let pb::GetRecommendationsRequest {
            customer_id,
            placement: raw_placement,
            context: raw_context,
            filter: raw_filter,
            max_results,
            page_token,
        } = request;
        let mut v = Violations::default();
        let customer = optional_customer(&mut v, "customer_id", &customer_id);
        let placement = placement(&mut v, raw_placement);
        let context = context(&mut v, raw_context);
        let filter = filter(&mut v, "filter", raw_filter);
        let count = count(&mut v, max_results);
        let page = decode_cursor(&mut v, "page_token", &page_token, Page::parse);
        v.finish()?;
        Ok(Self {
            customer,
            ask: Ask::Placement(placement),
            context,
            filter,
            count,
            page,
        })
    }
}

impl TryFrom<pb::GetSimilarItemsRequest> for Request {
    type Error = ApiError;

    fn try_from(request: pb::GetSimilarItemsRequest) -> Result<Self, ApiError> {
        let pb::GetSimilarItemsRequest {
            item_id,
            customer_id,
            context: raw_context,
            filter: raw_filter,
            max_results,
        } = request;
        let mut v = Violations::default();
        v.check("item_id", check_item_id(&item_id));
        let customer = optional_customer(&mut v, "customer_id", &customer_id);
        let context = context(&mut v, raw_context);
        let filter = filter(&mut v, "filter", raw_filter);
        let count = count(&mut v, max_results);
        v.finish()?;
        Ok(Self {
            customer,
            ask: Ask::Similar(item_id),
            context,
            filter,
            count,
            page: None,
        })
    }
}

impl TryFrom<pb::GetComplementsRequest> for Request {
    type Error = ApiError;

    fn try_from(request: pb::GetComplementsRequest) -> Result<Self, ApiError> {
        let pb::GetComplementsRequest {
            cart_item_ids,
            customer_id,
            context: raw_context,
            filter: raw_filter,
            max_results,
        } = request;
        let mut v = Violations::default();
        if cart_item_ids.is_empty() {
            v.add("cart_item_ids", "must name 1 to 100 items");
        }
        let cart = ids(
            &mut v,
            "cart_item_ids",
            &cart_item_ids,
            MAX_CART,
            check_item_id,
        );
        let customer = optional_customer(&mut v, "customer_id", &customer_id);
        let mut context = context(&mut v, raw_context);
        context.cart.clear();
        let filter = filter(&mut v, "filter", raw_filter);
        let count = count(&mut v, max_results);
        v.finish()?;
        Ok(Self {
            customer,
            ask: Ask::Complements(cart),
            context,
            filter,
            count,
            page: None,
        })
    }
}

/// A checked RerankItemsRequest.
pub struct Rerank {
    pub customer: Option<String>,
    pub candidates: Vec<String>,
    pub context: Context,
}

impl TryFrom<pb::RerankItemsRequest> for Rerank {
    type Error = ApiError;

    fn try_from(request: pb::RerankItemsRequest) -> Result<Self, ApiError> {
        let pb::RerankItemsRequest {
            customer_id,
            candidate_item_ids,
            context: raw_context,
        } = request;
        let mut v = Violations::default();
        let customer = optional_customer(&mut v, "customer_id", &customer_id);
        if candidate_item_ids.is_empty() {
            v.add("candidate_item_ids", "must name 1 to 500 items");
        }
        let candidates = ids(
            &mut v,
            "candidate_item_ids",
            &candidate_item_ids,
            MAX_CANDIDATES,
            check_item_id,
        );
        no_duplicates(&mut v, "candidate_item_ids", &candidates);
        let context = context(&mut v, raw_context);
        v.finish()?;
        Ok(Self {
            customer,
            candidates,
            context,
        })
    }
}

/// A checked GetBuyAgainRequest.
pub struct BuyAgain {
    pub customer: String,
    pub filter: Filter,
    pub count: usize,
}

impl TryFrom<pb::GetBuyAgainRequest> for BuyAgain {
    type Error = ApiError;

    fn try_from(request: pb::GetBuyAgainRequest) -> Result<Self, ApiError> {
        let pb::GetBuyAgainRequest {
            customer_id,
            filter: raw_filter,
            max_results,
        } = request;
        let mut v = Violations::default();
        let customer = required_customer(&mut v, "customer_id", &customer_id);
        let filter = filter(&mut v, "filter", raw_filter);
        let count = count(&mut v, max_results);
        v.finish()?;
        Ok(Self {
            customer: checked(customer),
            filter,
            count,
        })
    }
}

/// Checks an item id field of a read request.
pub fn item_id(field: &str, raw: &str) -> Result<(), ApiError> {
    check_item_id(raw).map_err(|problem| ApiError::from(FieldViolation::new(field, problem)))
}

/// Checks a lower snake case id (experiments, variants).
pub fn snake_id(v: &mut Violations, field: &str, raw: &str) {
    let ok = !raw.is_empty()
        && raw.len() <= 64
        && raw.starts_with(|c: char| c.is_ascii_lowercase())
        && raw
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if !ok {
        v.add(field, "must be lower snake case, 1 to 64 characters");
    }
}
