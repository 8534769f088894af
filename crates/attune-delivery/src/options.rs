//! Ranked delivery options, nearest pickup points and payment methods for a
//! cart and a location.
//!
//! Order: explicit preferences first (a preferred method by its position, the
//! preferred pickup point), then learned ones with the personalization grant
//! (each method's recency-weighted share of past orders, a slot in a usual
//! window), then the retailer's default: fastest, then cheapest. Reasons that
//! do not move the order (free delivery, a pickup point nearby, fastest,
//! cheapest) are still given, so the customer sees why an option is attractive.

use attune_kit::ApiError;
use attune_kit::consent::Reason;
use attune_kit::error::{Violations, checked};
use attune_kit::types::{CustomerId, DeliveryMethod, Money, PaymentMethod, time};
use attune_proto::common::v1 as common_pb;
use attune_proto::delivery::v1 as pb;
use chrono::{DateTime, Timelike, Utc};

use crate::app::{Delivery, PERSONALIZATION};
use crate::geo::Point;
use crate::loyalty::TierBenefits;
use crate::network::open_at;
use crate::preferences;
use crate::quote::Quote;
use crate::validate;

/// How far pickup points are looked for, metres.
const PICKUP_RADIUS_METERS: f64 = 25_000.0;
/// Pickup points this close earn a NEARBY reason, metres.
const NEARBY_METERS: i32 = 2_000;
/// A learned share from which a method is "your usual choice".
const USUAL_SHARE: f64 = 0.25;

/// Whether learned preferences may be used for a customer.
#[derive(Debug, Clone, Copy)]
pub struct ConsentUse {
    /// Whether a customer was named.
    pub customer: bool,
    /// Whether personalization is granted.
    pub granted: bool,
    /// Why not, when it is not.
    pub reason: Option<Reason>,
}

impl ConsentUse {
    /// The answer's personalization, given how many orders were learned from.
    pub fn personalization(&self, learned_orders: i32) -> common_pb::Personalization {
        use common_pb::NonPersonalizedReason as Why;
        let why = if !self.customer {
            Some(Why::NoCustomer)
        } else if !self.granted {
            Some(match self.reason {
                Some(Reason::FreshnessUnconfirmed | Reason::Unavailable) => Why::ConsentUnavailable,
                _ => Why::NoConsent,
            })
        } else if learned_orders == 0 {
            Some(Why::ColdStart)
        } else {
            None
        };
        match why {
            Some(why) => common_pb::Personalization {
                personalized: false,
                non_personalized_reason: why.into(),
                data_categories: Vec::new(),
                purpose_codes: Vec::new(),
            },
            None => common_pb::Personalization {
                personalized: true,
                non_personalized_reason: Why::Unspecified.into(),
                data_categories: vec![common_pb::DataCategory::Purchases.into()],
                purpose_codes: vec![PERSONALIZATION.to_owned()],
            },
        }
    }
}

/// Whether the customer granted personalization (never an error).
pub async fn consent_of(delivery: &Delivery, customer_id: &str) -> ConsentUse {
    if customer_id.is_empty() {
        return ConsentUse {
            customer: false,
            granted: false,
            reason: None,
        };
    }
    let verdict = delivery
        .checker
        .check(customer_id, &[PERSONALIZATION])
        .await;
    let verdict = verdict.first();
    ConsentUse {
        customer: true,
        granted: verdict.is_some_and(|v| v.granted),
        reason: verdict.map(|v| v.reason),
    }
}

/// Where an order goes.
#[derive(Debug, Clone)]
struct Place {
    country: String,
    postal_code: Option<String>,
    point: Option<Point>,
}

/// A parsed GetDeliveryOptions request.
struct OptionsQuery {
    customer: Option<CustomerId>,
    location: LocationQuery,
    total: Money,
    weight_grams: i64,
    max_pickup_points: usize,
    payment_methods: Vec<PaymentMethod>,
}

enum LocationQuery {
    Place(Place),
    Address(String),
}

fn parse_location(
    v: &mut Violations,
    raw: Option<pb::Location>,
    has_customer: bool,
) -> Option<LocationQuery> {
    use pb::location::Value;
    match raw.and_then(|l| l.value) {
        None => {
            v.add(
                "location",
                "is required: a geo_location, an address_id or a postal_location",
            );
            None
        }
        Some(Value::GeoLocation(geo)) => {
            let point = validate::point(v, "location.geo_location.point", geo.point.as_ref());
            validate::country(v, "location.geo_location.country_code", &geo.country_code);
            point.map(|point| {
                LocationQuery::Place(Place {
                    country: geo.country_code,
                    postal_code: None,
                    point: Some(point),
                })
            })
        }
        Some(Value::AddressId(id)) => {
            if !has_customer {
                v.add("location.address_id", "needs customer_id");
                return None;
            }
            validate::record_id(v, "location.address_id", &id).map(LocationQuery::Address)
        }
        Some(Value::PostalLocation(postal)) => {
            validate::country(
                v,
                "location.postal_location.country_code",
                &postal.country_code,
            );
            validate::postal_code(
                v,
                "location.postal_location.postal_code",
                &postal.postal_code,
            );
            Some(LocationQuery::Place(Place {
                country: postal.country_code,
                postal_code: Some(postal.postal_code),
                point: None,
            }))
        }
    }
}

fn parse_cart(v: &mut Violations, raw: Option<pb::Cart>) -> Option<(Money, i64)> {
    let Some(pb::Cart { total, items }) = raw else {
        v.add("cart", "is required");
        return None;
    };
    let total = validate::price(v, "cart.total", total.as_ref());
    if items.is_empty() || items.len() > 500 {
        v.add("cart.items", "must have 1 to 500 items");
    }
    let mut weight: i64 = 0;
    for (i, item) in items.iter().enumerate() {
        let pb::CartItem {
            item_id,
            quantity,
            unit_weight_grams,
        } = item;
        v.check(
            format!("cart.items[{i}].item_id"),
            attune_kit::types::printable_ascii(item_id, 128),
        );
        if !(1..=10_000).contains(quantity) {
            v.add(format!("cart.items[{i}].quantity"), "must be 1 to 10000");
        }
        if !(0..=1_000_000).contains(unit_weight_grams) {
            v.add(
                format!("cart.items[{i}].unit_weight_grams"),
                "must be 0 to 1000000",
            );
        }
        weight +=
            i64::from((*quantity).clamp(0, 10_000)) * (*unit_weight_grams).clamp(0, 1_000_000);
    }
    total.map(|total| (total, weight))
}

fn parse(request: pb::GetDeliveryOptionsRequest) -> Result<OptionsQuery, ApiError> {
    let pb::GetDeliveryOptionsRequest {
        customer_id,
        location,
        cart,
        max_pickup_points,
        available_payment_methods,
    } = request;
    let mut v = Violations::default();
    let customer = if customer_id.is_empty() {
        None
    } else {
        validate::customer(&mut v, "customer_id", &customer_id)
    };
    let location = parse_location(&mut v, location, !customer_id.is_empty());
    let cart = parse_cart(&mut v, cart);
    if !(0..=20).contains(&max_pickup_points) {
        v.add("max_pickup_points", "must be 0 to 20");
    }
    let payment_methods = validate::payment_methods(
        &mut v,
        "available_payment_methods",
        &available_payment_methods,
        9,
    );
    v.finish()?;
    let (total, weight_grams) = checked(cart);
    Ok(OptionsQuery {
        customer,
        location: checked(location),
        total,
        weight_grams,
        max_pickup_points: if max_pickup_points == 0 {
            3
        } else {
            max_pickup_points as usize
        },
        payment_methods: if payment_methods.is_empty() {
            PaymentMethod::ALL.to_vec()
        } else {
            payment_methods
        },
    })
}

fn area_serves(area: &pb::ServiceArea, place: &Place) -> bool {
    if area.country_code != place.country {
        return false;
    }
    if area.postal_code_prefixes.is_empty() && area.radius_meters == 0 {
        return true;
    }
    let by_postal = place.postal_code.as_deref().is_some_and(|code| {
        area.postal_code_prefixes
            .iter()
            .any(|prefix| code.starts_with(prefix.as_str()))
    });
    let by_circle = area.radius_meters > 0
        && match (place.point, area.center.as_ref()) {
            (Some(point), Some(center)) => {
                Point::parse(center.latitude_microdegrees, center.longitude_microdegrees)
                    .is_ok_and(|center| point.meters_to(center) <= area.radius_meters)
            }
            _ => false,
        };
    by_postal || by_circle
}

/// A rate's price for a cart: the basket tier (or base price), plus the weight
/// surcharge; and whether the free-above threshold makes it free.
fn rate_price(rate: &pb::ShippingRate, total: Money, weight: i64) -> Option<(Money, bool)> {
    let money =
        |m: Option<&common_pb::Money>| m.and_then(|m| Money::from_proto("price", m.clone()).ok());
    let base = money(rate.price.as_ref())?;
    if base.currency() != total.currency() {
        return None;
    }
    let mut price = rate
        .basket_tiers
        .iter()
        .filter_map(|t| {
            Some((
                money(t.min_basket_value.as_ref())?,
                money(t.price.as_ref())?,
            ))
        })
        .filter(|(min, _)| min.amount_minor() <= total.amount_minor())
        .max_by_key(|(min, _)| min.amount_minor())
        .map_or(base, |(_, price)| price);
    if let Some(surcharge) = rate
        .weight_surcharges
        .iter()
        .filter(|s| s.min_weight_grams <= weight)
        .max_by_key(|s| s.min_weight_grams)
        .and_then(|s| money(s.surcharge.as_ref()))
    {
        price = price.checked_add(surcharge).ok()?;
    }
    let free =
        money(rate.free_above.as_ref()).is_some_and(|f| total.amount_minor() >= f.amount_minor());
    Some((price, free))
}

/// A candidate option before ranking.
struct Candidate {
    option: pb::DeliveryOption,
    method: DeliveryMethod,
    price: i64,
    earliest: DateTime<Utc>,
    score: f64,
    reasons: Vec<(pb::OptionReasonKind, String)>,
}

fn format_money(m: Money) -> String {
    let digits = u32::from(m.currency().minor_unit_digits());
    let scale = 10_i64.pow(digits);
    if digits == 0 {
        format!("{} {}", m.amount_minor(), m.currency())
    } else {
        format!(
            "{}.{:0width$} {}",
            m.amount_minor() / scale,
            (m.amount_minor() % scale).abs(),
            m.currency(),
            width = digits as usize
        )
    }
}

fn kinds_for(method: DeliveryMethod) -> &'static [pb::PickupPointKind] {
    match method {
        DeliveryMethod::StorePickup => &[pb::PickupPointKind::Store],
        _ => &[pb::PickupPointKind::Counter, pb::PickupPointKind::Locker],
    }
}

/// GetDeliveryOptions.
pub async fn options(
    delivery: &Delivery,
    request: pb::GetDeliveryOptionsRequest,
) -> Result<pb::GetDeliveryOptionsResponse, ApiError> {
    let query = parse(request)?;
    let now = delivery.clock.now();
    let customer_id = query.customer.as_ref().map_or("", |c| c.as_ref());
    let place = match &query.location {
        LocationQuery::Place(place) => place.clone(),
        LocationQuery::Address(address_id) => {
            let address =
                crate::addresses::get(delivery, &delivery.db, customer_id, address_id).await?;
            let (country, postal, point) = crate::addresses::place_of(&address);
            Place {
                country,
                postal_code: Some(postal),
                point,
            }
        }
    };
    let budget = delivery.settings.loyalty_timeout;
    let (consent, tier, explicit) = tokio::join!(
        consent_of(delivery, customer_id),
        delivery
            .tier_benefits
            .get(delivery.loyalty.as_ref(), customer_id, budget),
        async {
            if customer_id.is_empty() {
                Ok(pb::DeliveryPreferences::default())
            } else {
                preferences::explicit(delivery, &delivery.db, customer_id).await
            }
        }
    );
    let explicit = explicit?;
    let learned = if consent.granted {
        preferences::learned(delivery, &delivery.db, customer_id, now).await?
    } else {
        pb::LearnedPreferences::default()
    };
    let network = delivery.network.get(&delivery.db).await?;
    let nearby: Vec<(pb::PickupPoint, i32)> = match place.point {
        None => Vec::new(),
        Some(point) => network
            .pickup_points
            .nearest(
                point,
                PICKUP_RADIUS_METERS,
                50,
                |_| true,
                |a, b| a.pickup_point_id.cmp(&b.pickup_point_id),
            )
            .into_iter()
            .map(|(p, d)| (p.clone(), d))
            .collect(),
    };
    let mut candidates = Vec::new();
    let mut best: std::collections::BTreeMap<i32, (pb::ShippingRate, Money, bool)> =
        Default::default();
    for rate in network.rates_of(&place.country) {
        let Some(area) = rate.service_area.as_ref() else {
            continue;
        };
        if !area_serves(area, &place)
            || (rate.max_weight_grams > 0 && query.weight_grams > rate.max_weight_grams)
        {
            continue;
        }
        let Some((price, free)) = rate_price(rate, query.total, query.weight_grams) else {
            continue;
        };
        let effective = if free { 0 } else { price.amount_minor() };
        let better = best.get(&rate.method).is_none_or(|(_, p, f)| {
            let current = if *f { 0 } else { p.amount_minor() };
            effective < current
        });
        if better {
            best.insert(rate.method, (rate.clone(), price, free));
        }
    }
    let plans: Vec<Plan> = best
        .into_iter()
        .filter_map(|(raw_method, (rate, price, free))| {
            let method = DeliveryMethod::from_proto(raw_method).ok()?;
            plan(&explicit, &learned, &nearby, method, rate, price, free, now)
        })
        .collect();
    // Every method's next free slot in one statement.
    let wanted: Vec<(DeliveryMethod, Option<&str>)> = plans
        .iter()
        .filter(|plan| !matches!(plan.method, DeliveryMethod::HomeStandard))
        .map(|plan| {
            let at = plan
                .method
                .is_pickup()
                .then_some(plan.pickup_point_id.as_str());
            (plan.method, at)
        })
        .collect();
    let slots = crate::slots::next_free_slots(&delivery.db, &wanted, now).await?;
    let mut slot_of: std::collections::HashMap<DeliveryMethod, pb::DeliverySlot> = wanted
        .iter()
        .zip(slots)
        .filter_map(|((method, _), slot)| Some((*method, slot?)))
        .collect();
    for plan in plans {
        let next_slot = slot_of.remove(&plan.method);
        candidates.extend(candidate(&explicit, &learned, &tier, plan, next_slot));
    }
    rank(&mut candidates);
    let validity = chrono::Duration::from_std(delivery.settings.quote_validity)
        .unwrap_or(chrono::Duration::minutes(30));
    let delivery_options: Vec<pb::DeliveryOption> = candidates
        .into_iter()
        .enumerate()
        .map(|(i, mut c)| {
            c.option.rank = i as i32 + 1;
            let price = c
                .option
                .price
                .clone()
                .and_then(|p| Money::from_proto("price", p).ok());
            if let Some(price) = price {
                let expire = now + validity;
                c.option.quote_token = Quote {
                    customer_id: customer_id.to_owned(),
                    method: c.method.into(),
                    amount_minor: price.amount_minor(),
                    currency: price.currency().as_ref().to_owned(),
                    expire_micros: attune_kit::db::micros::to_micros(expire),
                }
                .sign(&delivery.key);
                c.option.quote_expire_time = Some(time::to_proto(expire));
            }
            c.option.reasons = c
                .reasons
                .into_iter()
                .map(|(kind, text)| pb::OptionReason {
                    kind: kind.into(),
                    text,
                })
                .collect();
            c.option
        })
        .collect();
    let top_method = delivery_options
        .first()
        .and_then(|o| DeliveryMethod::from_proto(o.method).ok());
    let payment_methods = payment_options(
        &network.payment_rules,
        &query,
        &explicit,
        &learned,
        top_method,
    );
    let pickup_points = nearby
        .iter()
        .take(query.max_pickup_points)
        .map(|(point, distance)| pb::NearbyPickupPoint {
            open_now: open_at(point, now),
            preferred: point.pickup_point_id == explicit.preferred_pickup_point_id,
            pickup_point: Some(point.clone()),
            distance_meters: *distance,
        })
        .collect();
    Ok(pb::GetDeliveryOptionsResponse {
        delivery_options,
        pickup_points,
        payment_methods,
        personalization: Some(consent.personalization(learned.order_count)),
        tier_benefits_status: tier.status.into(),
    })
}

/// A method's option before its next free slot is known: the cut-off applied
/// and the pickup point chosen, so that all methods' slots can be read at once.
struct Plan {
    method: DeliveryMethod,
    rate: pb::ShippingRate,
    price: Money,
    free: bool,
    earliest: DateTime<Utc>,
    latest: DateTime<Utc>,
    pickup_point_id: String,
    distance: i32,
    score: f64,
    reasons: Vec<(pb::OptionReasonKind, String)>,
}

#[allow(clippy::too_many_arguments)]
fn plan(
    explicit: &pb::DeliveryPreferences,
    learned: &pb::LearnedPreferences,
    nearby: &[(pb::PickupPoint, i32)],
    method: DeliveryMethod,
    rate: pb::ShippingRate,
    price: Money,
    free: bool,
    now: DateTime<Utc>,
) -> Option<Plan> {
    use pb::OptionReasonKind as Kind;
    let mut reasons = Vec::new();
    let mut score = 0.0;
    // The cut-off: later orders count as the next day's; same-day is gone.
    let local = now + chrono::Duration::minutes(i64::from(rate.utc_offset_minutes));
    let minute = (local.hour() * 60 + local.minute()) as i32;
    let past_cutoff = rate.cutoff_minute.is_some_and(|cutoff| minute >= cutoff);
    if past_cutoff && method == DeliveryMethod::HomeSameDay {
        return None;
    }
    let shift = i64::from(past_cutoff);
    let earliest = now + chrono::Duration::days(i64::from(rate.min_lead_days) + shift);
    let latest = now + chrono::Duration::days(i64::from(rate.max_lead_days) + shift);
    // Pickup: the preferred point when it is near and of the right kind, else
    // the learned favourite near, else the nearest.
    let (mut pickup_point_id, mut distance) = (String::new(), 0);
    if method.is_pickup() {
        let fits = |p: &pb::PickupPoint| kinds_for(method).iter().any(|k| i32::from(*k) == p.kind);
        let candidates: Vec<&(pb::PickupPoint, i32)> =
            nearby.iter().filter(|(p, _)| fits(p)).collect();
        let preferred = candidates
            .iter()
            .find(|(p, _)| p.pickup_point_id == explicit.preferred_pickup_point_id);
        let usual = learned.pickup_points.first().and_then(|u| {
            candidates
                .iter()
                .find(|(p, _)| p.pickup_point_id == u.pickup_point_id)
        });
        let chosen = if let Some(found) = preferred {
            score += 50.0;
            reasons.push((
                Kind::Preferred,
                format!("Your preferred pickup point, {}", found.0.display_name),
            ));
            found
        } else if let Some(found) = usual {
            score += 25.0;
            reasons.push((
                Kind::UsualChoice,
                format!("Your usual pickup point, {}", found.0.display_name),
            ));
            found
        } else {
            // No point of the right kind nearby: no such option.
            candidates.first()?
        };
        pickup_point_id = chosen.0.pickup_point_id.clone();
        distance = chosen.1;
        if distance <= NEARBY_METERS {
            reasons.push((Kind::Nearby, format!("Pickup point {distance} m away")));
        }
    }
    Some(Plan {
        method,
        rate,
        price,
        free,
        earliest,
        latest,
        pickup_point_id,
        distance,
        score,
        reasons,
    })
}

fn candidate(
    explicit: &pb::DeliveryPreferences,
    learned: &pb::LearnedPreferences,
    tier: &TierBenefits,
    plan: Plan,
    next_slot: Option<pb::DeliverySlot>,
) -> Option<Candidate> {
    use pb::OptionReasonKind as Kind;
    let Plan {
        method,
        rate,
        price,
        free,
        mut earliest,
        mut latest,
        pickup_point_id,
        distance,
        mut score,
        mut reasons,
    } = plan;
    if method == DeliveryMethod::HomeScheduled && next_slot.is_none() {
        return None;
    }
    if let Some(slot) = &next_slot {
        if method == DeliveryMethod::HomeScheduled {
            earliest = time::from_proto_required(slot.start_time).unwrap_or(earliest);
            latest = time::from_proto_required(slot.end_time).unwrap_or(latest);
        }
        if preferences::in_windows(slot, &explicit.preferred_time_windows)
            || preferences::in_windows(slot, &learned.usual_time_windows)
        {
            score += 30.0;
            reasons.push((
                Kind::PreferredTimeWindow,
                "Arrives in your preferred time window".to_owned(),
            ));
        }
    }
    if let Some(position) = explicit
        .preferred_delivery_methods
        .iter()
        .position(|m| *m == i32::from(method))
    {
        score += 1000.0 - 10.0 * position as f64;
        reasons.insert(
            0,
            (Kind::Preferred, "Your preferred delivery method".to_owned()),
        );
    }
    if let Some(usage) = learned
        .delivery_methods
        .iter()
        .find(|u| u.delivery_method == i32::from(method))
    {
        score += 100.0 * usage.weight;
        if usage.weight >= USUAL_SHARE {
            let at = reasons
                .iter()
                .take_while(|(k, _)| *k == Kind::Preferred)
                .count();
            reasons.insert(at, (Kind::UsualChoice, "Your usual choice".to_owned()));
        }
    }
    let (final_price, original) = if tier.ships_free(method) {
        reasons.push((Kind::FreeForTier, "Free for your loyalty tier".to_owned()));
        (Money::new(0, price.currency()), Some(price))
    } else if free {
        let threshold = rate
            .free_above
            .clone()
            .and_then(|m| Money::from_proto("free_above", m).ok())
            .map(format_money)
            .unwrap_or_default();
        reasons.push((Kind::FreeDelivery, format!("Free above {threshold}")));
        (Money::new(0, price.currency()), Some(price))
    } else {
        (price, None)
    };
    // Pickup options exist only with a nearby point, hence with a position;
    // home options keep 0.
    let distance_meters = distance;
    Some(Candidate {
        method,
        price: final_price.amount_minor(),
        earliest,
        score,
        reasons,
        option: pb::DeliveryOption {
            method: method.into(),
            rank: 0,
            price: Some(final_price.to_proto()),
            original_price: original.map(Money::to_proto),
            earliest_arrival_time: Some(time::to_proto(earliest)),
            latest_arrival_time: Some(time::to_proto(latest)),
            pickup_point_id,
            distance_meters,
            next_slot,
            rate_id: rate.rate_id,
            reasons: Vec::new(),
            quote_token: String::new(),
            quote_expire_time: None,
        },
    })
}

fn rank(candidates: &mut [Candidate]) {
    use pb::OptionReasonKind as Kind;
    let fastest = candidates.iter().map(|c| c.earliest).min();
    let cheapest = candidates.iter().map(|c| c.price).min();
    for c in candidates.iter_mut() {
        if fastest == Some(c.earliest) {
            c.reasons
                .push((Kind::Fastest, "The fastest option".to_owned()));
        }
        if cheapest == Some(c.price) {
            c.reasons
                .push((Kind::Cheapest, "The cheapest option".to_owned()));
        }
        if c.reasons.is_empty() {
            c.reasons
                .push((Kind::Default, "Available for your order".to_owned()));
        }
    }
    candidates.sort_by(|a, b| {
        b.score
            .total_cmp(&a.score)
            .then_with(|| a.earliest.cmp(&b.earliest))
            .then_with(|| a.price.cmp(&b.price))
            .then_with(|| i32::from(a.method).cmp(&i32::from(b.method)))
    });
}

fn payment_options(
    rules: &[pb::PaymentMethodRule],
    query: &OptionsQuery,
    explicit: &pb::DeliveryPreferences,
    learned: &pb::LearnedPreferences,
    top_method: Option<DeliveryMethod>,
) -> Vec<pb::PaymentMethodOption> {
    use pb::OptionReasonKind as Kind;
    let total = query.total;
    let available = |method: PaymentMethod| {
        let Some(rule) = rules.iter().find(|r| r.method == i32::from(method)) else {
            return true;
        };
        let bound = |m: Option<&common_pb::Money>| {
            m.and_then(|m| Money::from_proto("bound", m.clone()).ok())
        };
        let within_min = bound(rule.min_basket_value.as_ref()).is_none_or(|min| {
            min.currency() == total.currency() && total.amount_minor() >= min.amount_minor()
        });
        let within_max = bound(rule.max_basket_value.as_ref()).is_none_or(|max| {
            max.currency() == total.currency() && total.amount_minor() <= max.amount_minor()
        });
        let combines = rule.delivery_methods.is_empty()
            || top_method.is_some_and(|m| rule.delivery_methods.contains(&i32::from(m)));
        rule.active && within_min && within_max && combines
    };
    let mut ranked: Vec<(f64, PaymentMethod, pb::OptionReason)> = query
        .payment_methods
        .iter()
        .copied()
        .filter(|m| available(*m))
        .map(|method| {
            let wire = i32::from(method);
            let explicit_at = explicit
                .preferred_payment_methods
                .iter()
                .position(|m| *m == wire);
            let learned_weight = learned
                .payment_methods
                .iter()
                .find(|u| u.payment_method == wire)
                .map_or(0.0, |u| u.weight);
            let score =
                explicit_at.map_or(0.0, |i| 1000.0 - 10.0 * i as f64) + 100.0 * learned_weight;
            let reason = if explicit_at.is_some() {
                (Kind::Preferred, "Your preferred way to pay")
            } else if learned_weight >= USUAL_SHARE {
                (Kind::UsualChoice, "How you usually pay")
            } else {
                (Kind::Default, "Accepted for this order")
            };
            (
                score,
                method,
                pb::OptionReason {
                    kind: reason.0.into(),
                    text: reason.1.to_owned(),
                },
            )
        })
        .collect();
    ranked.sort_by(|a, b| {
        b.0.total_cmp(&a.0)
            .then_with(|| i32::from(a.1).cmp(&i32::from(b.1)))
    });
    ranked
        .into_iter()
        .enumerate()
        .map(|(i, (_, method, reason))| pb::PaymentMethodOption {
            method: method.into(),
            rank: i as i32 + 1,
            reason: Some(reason),
        })
        .collect()
}

/// FindNearestPickupPoints.
pub async fn nearest(
    delivery: &Delivery,
    request: pb::FindNearestPickupPointsRequest,
) -> Result<Vec<pb::NearbyPickupPoint>, ApiError> {
    let pb::FindNearestPickupPointsRequest {
        location,
        kinds,
        max_results,
        max_distance_meters,
    } = request;
    let mut v = Violations::default();
    let point = validate::point(&mut v, "location", location.as_ref());
    let mut wanted = Vec::new();
    for (i, kind) in kinds.iter().enumerate() {
        match pb::PickupPointKind::try_from(*kind) {
            Ok(k) if k != pb::PickupPointKind::Unspecified && !wanted.contains(&k) => {
                wanted.push(k)
            }
            _ => v.add(format!("kinds[{i}]"), "must be a known kind, once"),
        }
    }
    if !(0..=50).contains(&max_results) {
        v.add("max_results", "must be 0 to 50");
    }
    if !(0..=500_000).contains(&max_distance_meters) {
        v.add("max_distance_meters", "must be 0 to 500000");
    }
    v.finish()?;
    let limit = if max_results == 0 {
        5
    } else {
        max_results as usize
    };
    let max = if max_distance_meters == 0 {
        25_000
    } else {
        max_distance_meters
    };
    let now = delivery.clock.now();
    let network = delivery.network.get(&delivery.db).await?;
    let keep =
        |p: &pb::PickupPoint| wanted.is_empty() || wanted.iter().any(|k| i32::from(*k) == p.kind);
    Ok(network
        .pickup_points
        .nearest(checked(point), f64::from(max), limit, keep, |a, b| {
            a.pickup_point_id.cmp(&b.pickup_point_id)
        })
        .into_iter()
        .map(|(point, distance)| pb::NearbyPickupPoint {
            open_now: open_at(point, now),
            preferred: false,
            pickup_point: Some(point.clone()),
            distance_meters: distance,
        })
        .collect())
}
