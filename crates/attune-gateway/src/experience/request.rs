//! `GetPageExperienceRequest` parsed once at the edge: every field checked,
//! every violation reported in one answer, nothing asked of any service on bad
//! input. The wire message is destructured without `..`, so a new field does not
//! compile until someone decides what it means.

use std::collections::HashSet;
use std::time::Duration;

use attune_kit::error::{ApiError, Violations, checked};
use attune_kit::types::{Channel, CustomerId, Money, PaymentMethod, printable_ascii};
use attune_proto::gateway::v1 as pb;

/// A part's budget when the caller sets none.
pub(crate) const DEFAULT_PART_BUDGET: Duration = Duration::from_millis(250);
/// The longest part budget a caller may ask for.
const MAX_PART_BUDGET: Duration = Duration::from_secs(5);
const MAX_PLACEMENTS: usize = 10;
const MAX_ITEMS_PER_LIST: i32 = 50;
const MAX_CURRENT_ITEMS: usize = 20;
const MAX_CART_LINES: usize = 100;
const MAX_FILTER_IDS: usize = 50;
const MAX_EXCLUDED_ITEMS: usize = 500;

/// The page types, exhaustive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Page {
    Home,
    Product,
    Category,
    Search,
    Cart,
    Checkout,
    Account,
    Store,
}

/// The parts of a page, exhaustive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Part {
    Profile,
    Recommendations,
    Loyalty,
    Delivery,
    Store,
}

impl Page {
    fn from_proto(raw: i32) -> Option<Self> {
        Some(match pb::PageType::try_from(raw).ok()? {
            pb::PageType::Unspecified => return None,
            pb::PageType::Home => Self::Home,
            pb::PageType::Product => Self::Product,
            pb::PageType::Category => Self::Category,
            pb::PageType::Search => Self::Search,
            pb::PageType::Cart => Self::Cart,
            pb::PageType::Checkout => Self::Checkout,
            pb::PageType::Account => Self::Account,
            pb::PageType::Store => Self::Store,
        })
    }

    /// The parts a page shows when the caller names none.
    fn default_parts(self) -> &'static [Part] {
        use Part::{Delivery, Loyalty, Profile, Recommendations, Store};
        match self {
            Self::Home => &[Profile, Recommendations, Loyalty],
            Self::Product | Self::Category | Self::Search => &[Recommendations],
            Self::Cart => &[Recommendations, Loyalty, Delivery],
            Self::Checkout => &[Loyalty, Delivery],
            Self::Account => &[Profile, Loyalty, Delivery],
            Self::Store => &[Profile, Recommendations, Loyalty, Store],
        }
    }

    /// The placement of a list that names none.
    pub(crate) fn placement(self) -> pb::SlotPlacement {
        match self {
            Self::Home | Self::Account | Self::Store => pb::SlotPlacement::Home,
            Self::Product => pb::SlotPlacement::ProductPage,
            Self::Category => pb::SlotPlacement::CategoryPage,
            Self::Search => pb::SlotPlacement::SearchResults,
            Self::Cart => pb::SlotPlacement::Cart,
            Self::Checkout => pb::SlotPlacement::Checkout,
        }
    }
}

impl Part {
    fn from_proto(raw: i32) -> Option<Self> {
        Some(match pb::PagePart::try_from(raw).ok()? {
            pb::PagePart::Unspecified => return None,
            pb::PagePart::Profile => Self::Profile,
            pb::PagePart::Recommendations => Self::Recommendations,
            pb::PagePart::Loyalty => Self::Loyalty,
            pb::PagePart::Delivery => Self::Delivery,
            pb::PagePart::Store => Self::Store,
        })
    }
}

/// One recommendation list to fill.
#[derive(Debug, Clone)]
pub(crate) struct Placement {
    pub slot_id: String,
    pub placement: pb::SlotPlacement,
    pub max_items: i32,
    pub filter: pb::SlotFilter,
}

/// The cart on the page.
#[derive(Debug, Clone, Default)]
pub(crate) struct Cart {
    pub lines: Vec<pb::CartLine>,
    pub total: Option<Money>,
}

/// How the customer identified at the till.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Identification {
    LoyaltyCard(String),
    AppToken(String),
}

/// The store visit of a STORE page.
#[derive(Debug, Clone)]
pub(crate) struct StoreVisit {
    pub store_id: String,
    pub identification: Option<Identification>,
}

/// A valid page request.
#[derive(Debug, Clone)]
pub(crate) struct PageRequest {
    pub customer: Option<CustomerId>,
    pub page: Page,
    pub placements: Vec<Placement>,
    pub channel: Channel,
    pub current_item_ids: Vec<String>,
    pub category_id: String,
    pub search_query: String,
    pub cart: Cart,
    pub location: Option<pb::delivery_location::Value>,
    pub accepted_payment_methods: Vec<PaymentMethod>,
    pub language_code: String,
    parts: HashSet<Part>,
    pub part_budget: Duration,
    pub store: Option<StoreVisit>,
}

impl PageRequest {
    /// Whether the caller wants `part`.
    pub(crate) fn wants(&self, part: Part) -> bool {
        self.parts.contains(&part)
    }
}

impl TryFrom<pb::GetPageExperienceRequest> for PageRequest {
    type Error = ApiError;

    fn try_from(request: pb::GetPageExperienceRequest) -> Result<Self, ApiError> {
        let pb::GetPageExperienceRequest {
            customer_id,
            page_type,
            placements,
            context,
            parts,
            part_budget,
            store,
        } = request;
        let mut v = Violations::default();
        let customer = if customer_id.is_empty() {
            None
        } else {
            v.check("customer_id", CustomerId::parse_owned(customer_id))
        };
        let page = Page::from_proto(page_type);
        if page.is_none() {
            v.add(
                "page_type",
                "must be a known page type other than UNSPECIFIED",
            );
        }
        let placements = parse_placements(&mut v, placements, page);
        let context = parse_context(&mut v, context.unwrap_or_default(), customer.is_some());
        let parts = parse_parts(&mut v, &parts, page);
        let part_budget = parse_budget(&mut v, part_budget);
        let store = parse_store(&mut v, store, page, customer.is_some());
        v.finish()?;
        let Context {
            channel,
            current_item_ids,
            category_id,
            search_query,
            cart,
            location,
            accepted_payment_methods,
            language_code,
        } = checked(context);
        Ok(Self {
            customer,
            page: checked(page),
            placements,
            channel,
            current_item_ids,
            category_id,
            search_query,
            cart,
            location,
            accepted_payment_methods,
            language_code,
            parts,
            part_budget,
            store,
        })
    }
}

fn parse_placements(
    v: &mut Violations,
    placements: Vec<pb::PlacementRequest>,
    page: Option<Page>,
) -> Vec<Placement> {
    if placements.len() > MAX_PLACEMENTS {
        v.add("placements", format!("at most {MAX_PLACEMENTS} lists"));
        return Vec::new();
    }
    let mut seen = HashSet::new();
    let mut parsed = Vec::with_capacity(placements.len().max(1));
    for (index, placement) in placements.into_iter().enumerate() {
        let field = |name: &str| format!("placements[{index}].{name}");
        let pb::PlacementRequest {
            slot_id,
            placement,
            max_items,
            filter,
        } = placement;
        if let Err(reason) = slot_name(&slot_id) {
            v.add(field("slot_id"), reason);
        } else if !seen.insert(slot_id.clone()) {
            v.add(field("slot_id"), "is used by another list of this request");
        }
        let placement = match pb::SlotPlacement::try_from(placement) {
            Ok(pb::SlotPlacement::Unspecified) => page.map(Page::placement),
            Ok(known) => Some(known),
            Err(_) => {
                v.add(field("placement"), "must be a known placement");
                None
            }
        };
        if !(0..=MAX_ITEMS_PER_LIST).contains(&max_items) {
            v.add(
                field("max_items"),
                format!("must be 0 to {MAX_ITEMS_PER_LIST}"),
            );
        }
        let filter = filter.unwrap_or_default();
        check_filter(v, &field("filter"), &filter);
        if let Some(placement) = placement {
            parsed.push(Placement {
                slot_id,
                placement,
                max_items: if max_items == 0 { 10 } else { max_items },
                filter,
            });
        }
    }
    if parsed.is_empty()
        && let Some(page) = page
    {
        parsed.push(Placement {
            slot_id: "default".into(),
            placement: page.placement(),
            max_items: 10,
            filter: pb::SlotFilter::default(),
        });
    }
    parsed
}

/// A list's name: 1 to 64 characters of a-z, 0-9, '_' and '-'.
fn slot_name(raw: &str) -> Result<(), String> {
    if raw.is_empty() || raw.len() > 64 {
        return Err("must be 1 to 64 characters".into());
    }
    if !raw
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
    {
        return Err("may hold only a-z, 0-9, '_' and '-'".into());
    }
    Ok(())
}

fn check_ids(v: &mut Violations, field: &str, ids: &[String], max: usize, max_len: usize) {
    if ids.len() > max {
        v.add(field, format!("at most {max} entries"));
        return;
    }
    for (index, id) in ids.iter().enumerate() {
        if let Err(reason) = printable_ascii(id, max_len) {
            v.add(format!("{field}[{index}]"), reason);
        }
    }
}

fn check_filter(v: &mut Violations, field: &str, filter: &pb::SlotFilter) {
    let pb::SlotFilter {
        in_stock_only: _,
        category_ids,
        exclude_category_ids,
        brands,
        exclude_purchased: _,
        exclude_in_cart: _,
        max_per_category,
        max_per_brand,
        exclude_item_ids,
    } = filter;
    check_ids(
        v,
        &format!("{field}.category_ids"),
        category_ids,
        MAX_FILTER_IDS,
        128,
    );
    check_ids(
        v,
        &format!("{field}.exclude_category_ids"),
        exclude_category_ids,
        MAX_FILTER_IDS,
        128,
    );
    if brands.len() > MAX_FILTER_IDS {
        v.add(
            format!("{field}.brands"),
            format!("at most {MAX_FILTER_IDS} entries"),
        );
    }
    for (index, brand) in brands.iter().enumerate() {
        if brand.trim().is_empty() || brand.chars().count() > 100 {
            v.add(
                format!("{field}.brands[{index}]"),
                "must be 1 to 100 characters",
            );
        }
    }
    for (name, value) in [
        ("max_per_category", max_per_category),
        ("max_per_brand", max_per_brand),
    ] {
        if !(0..=100).contains(value) {
            v.add(format!("{field}.{name}"), "must be 0 to 100");
        }
    }
    check_ids(
        v,
        &format!("{field}.exclude_item_ids"),
        exclude_item_ids,
        MAX_EXCLUDED_ITEMS,
        128,
    );
}

struct Context {
    channel: Channel,
    current_item_ids: Vec<String>,
    category_id: String,
    search_query: String,
    cart: Cart,
    location: Option<pb::delivery_location::Value>,
    accepted_payment_methods: Vec<PaymentMethod>,
    language_code: String,
}

fn parse_context(
    v: &mut Violations,
    context: pb::PageContext,
    has_customer: bool,
) -> Option<Context> {
    let pb::PageContext {
        channel,
        current_item_ids,
        category_id,
        search_query,
        cart_lines,
        cart_total,
        location,
        accepted_payment_methods,
        language_code,
    } = context;
    let channel = v.check("context.channel", Channel::from_proto(channel));
    check_ids(
        v,
        "context.current_item_ids",
        &current_item_ids,
        MAX_CURRENT_ITEMS,
        128,
    );
    if !category_id.is_empty() {
        v.check("context.category_id", printable_ascii(&category_id, 128));
    }
    if search_query.chars().count() > 256 {
        v.add("context.search_query", "at most 256 characters");
    }
    let cart = parse_cart(v, cart_lines, cart_total);
    let location = parse_location(v, location, has_customer);
    let mut methods = Vec::with_capacity(accepted_payment_methods.len());
    for (index, raw) in accepted_payment_methods.into_iter().enumerate() {
        let field = format!("context.accepted_payment_methods[{index}]");
        if let Some(method) = v.check(field.clone(), PaymentMethod::from_proto(raw)) {
            if methods.contains(&method) {
                v.add(field, "is listed twice");
            }
            methods.push(method);
        }
    }
    if !language_code.is_empty() {
        v.check("context.language_code", printable_ascii(&language_code, 35));
    }
    Some(Context {
        channel: channel?,
        current_item_ids,
        category_id,
        search_query,
        cart,
        location,
        accepted_payment_methods: methods,
        language_code,
    })
}

fn parse_cart(
    v: &mut Violations,
    lines: Vec<pb::CartLine>,
    total: Option<attune_proto::common::v1::Money>,
) -> Cart {
    if lines.len() > MAX_CART_LINES {
        v.add(
            "context.cart_lines",
            format!("at most {MAX_CART_LINES} lines"),
        );
    }
    let mut seen = HashSet::new();
    for (index, line) in lines.iter().enumerate() {
        let pb::CartLine {
            item_id,
            quantity,
            unit_weight_grams,
        } = line;
        let field = |name: &str| format!("context.cart_lines[{index}].{name}");
        match printable_ascii(item_id, 128) {
            Err(reason) => v.add(field("item_id"), reason),
            Ok(()) if !seen.insert(item_id.as_str()) => {
                v.add(field("item_id"), "is in another line of the cart")
            }
            Ok(()) => {}
        }
        if !(1..=10_000).contains(quantity) {
            v.add(field("quantity"), "must be 1 to 10000");
        }
        if !(0..=1_000_000).contains(unit_weight_grams) {
            v.add(field("unit_weight_grams"), "must be 0 to 1000000");
        }
    }
    let total = total.and_then(|total| {
        let money = v.check_field(Money::from_proto("context.cart_total", total));
        if money.is_some_and(|money| money.amount_minor() < 0) {
            v.add("context.cart_total.amount_minor", "must not be negative");
        }
        if lines.is_empty() {
            v.add("context.cart_total", "needs the cart's lines in cart_lines");
        }
        money
    });
    Cart { lines, total }
}

fn country_code(v: &mut Violations, field: &str, code: &str) {
    if code.len() != 2 || !code.bytes().all(|b| b.is_ascii_uppercase()) {
        v.add(field, "must be an ISO 3166-1 alpha-2 code in upper case");
    }
}

fn parse_location(
    v: &mut Violations,
    location: Option<pb::DeliveryLocation>,
    has_customer: bool,
) -> Option<pb::delivery_location::Value> {
    let pb::DeliveryLocation { value } = location?;
    match &value {
        None => v.add(
            "context.location",
            "must name an address, a position or a postal area",
        ),
        Some(pb::delivery_location::Value::AddressId(id)) => {
            v.check("context.location.address_id", printable_ascii(id, 64));
            if !has_customer {
                v.add("context.location.address_id", "needs customer_id");
            }
        }
        Some(pb::delivery_location::Value::Position(position)) => {
            let pb::GeoPosition {
                point,
                country_code: code,
            } = position;
            match point {
                None => v.add("context.location.position.point", "is required"),
                Some(point) => {
                    if !(-90_000_000..=90_000_000).contains(&point.latitude_microdegrees) {
                        v.add(
                            "context.location.position.point.latitude_microdegrees",
                            "must be -90000000 to 90000000",
                        );
                    }
                    if !(-180_000_000..=180_000_000).contains(&point.longitude_microdegrees) {
                        v.add(
                            "context.location.position.point.longitude_microdegrees",
                            "must be -180000000 to 180000000",
                        );
                    }
                }
            }
            country_code(v, "context.location.position.country_code", code);
        }
        Some(pb::delivery_location::Value::PostalArea(area)) => {
            let pb::PostalArea {
                country_code: code,
                postal_code,
            } = area;
            country_code(v, "context.location.postal_area.country_code", code);
            v.check(
                "context.location.postal_area.postal_code",
                printable_ascii(postal_code, 16),
            );
        }
    }
    value
}

fn parse_parts(v: &mut Violations, raw: &[i32], page: Option<Page>) -> HashSet<Part> {
    let mut parts = HashSet::new();
    for (index, raw) in raw.iter().enumerate() {
        let field = format!("parts[{index}]");
        match Part::from_proto(*raw) {
            None => v.add(field, "must be a known part other than UNSPECIFIED"),
            Some(Part::Store) if page.is_some_and(|page| page != Page::Store) => {
                v.add(field, "STORE is a part of the STORE page only")
            }
            Some(part) => {
                if !parts.insert(part) {
                    v.add(field, "is listed twice");
                }
            }
        }
    }
    if raw.is_empty()
        && let Some(page) = page
    {
        parts.extend(page.default_parts());
    }
    parts
}

fn parse_budget(v: &mut Violations, budget: Option<prost_types::Duration>) -> Duration {
    let Some(budget) = budget else {
        return DEFAULT_PART_BUDGET;
    };
    let valid = budget.seconds >= 0
        && (0..1_000_000_000).contains(&budget.nanos)
        && u64::try_from(budget.seconds).is_ok();
    if !valid {
        v.add("part_budget", "must be a duration from 0 to 5 seconds");
        return DEFAULT_PART_BUDGET;
    }
    let duration = Duration::new(budget.seconds.unsigned_abs(), budget.nanos.unsigned_abs());
    if duration > MAX_PART_BUDGET {
        v.add("part_budget", "must be at most 5 seconds");
    }
    if duration.is_zero() {
        DEFAULT_PART_BUDGET
    } else {
        duration
    }
}

fn parse_store(
    v: &mut Violations,
    store: Option<pb::StoreVisit>,
    page: Option<Page>,
    has_customer: bool,
) -> Option<StoreVisit> {
    let is_store_page = page == Some(Page::Store);
    let Some(store) = store else {
        if is_store_page {
            v.add("store", "is required on the STORE page");
        }
        return None;
    };
    if page.is_some() && !is_store_page {
        v.add("store", "is allowed on the STORE page only");
    }
    let pb::StoreVisit {
        store_id,
        identification,
    } = store;
    v.check("store.store_id", printable_ascii(&store_id, 64));
    let identification = match identification {
        None => {
            if !has_customer {
                v.add(
                    "store.identification",
                    "name the loyalty card or app code the customer showed, or set customer_id",
                );
            }
            None
        }
        Some(_) if has_customer => {
            v.add(
                "store.identification",
                "set either customer_id or an identification, not both",
            );
            None
        }
        Some(pb::store_visit::Identification::LoyaltyCardNumber(card)) => v
            .check("store.loyalty_card_number", printable_ascii(&card, 256))
            .map(|()| Identification::LoyaltyCard(card)),
        Some(pb::store_visit::Identification::AppToken(token)) => v
            .check("store.app_token", printable_ascii(&token, 256))
            .map(|()| Identification::AppToken(token)),
    };
    Some(StoreVisit {
        store_id,
        identification,
    })
}
