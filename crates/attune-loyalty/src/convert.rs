//! Wire ↔ domain for loyalty's messages: requests are checked field by field
//! (every violation reported at once) and destructured without `..`, so a new
//! proto field does not compile until someone decides what it means.

use attune_kit::ApiError;
use attune_kit::error::{Violations, checked};
use attune_kit::pagination::{decode_cursor, encode_page_token};
use attune_kit::types::snake_case;
use attune_kit::types::{CustomerId, Money, RequestId, time};
use attune_proto::loyalty::v1 as pb;
use chrono::{DateTime, Duration, Utc};

use crate::domain::earning::{Line, Promotion, PurchaseEarning};
use crate::domain::entry::{EntryKind, ReasonCode};
use crate::domain::tiers::{Basis, Benefits, Ladder, Tier};
use crate::ledger::{AccountView, Entry};
use crate::rules::{EarnRule, Earning};

/// The most points one request may move.
pub const MAX_POINTS: i64 = 1_000_000_000;

pub fn customer(v: &mut Violations, field: &str, raw: &str) -> Option<CustomerId> {
    v.check(field, CustomerId::parse(raw))
}

pub fn request_id(v: &mut Violations, field: &str, raw: &str) -> Option<RequestId> {
    v.check(field, RequestId::parse(raw))
}

pub fn text(v: &mut Violations, field: &str, raw: &str, max: usize) {
    if raw.chars().count() > max {
        v.add(field, format!("must be at most {max} characters"));
    }
}

pub fn required_text(v: &mut Violations, field: &str, raw: &str, max: usize) {
    if raw.trim().is_empty() {
        v.add(field, "must not be empty");
    } else {
        text(v, field, raw, max);
    }
}

pub fn code(v: &mut Violations, field: &str, raw: &str) {
    if let Err(e) = snake_case(raw, 64) {
        v.add(field, e);
    }
}

pub fn duration(
    v: &mut Violations,
    field: &str,
    raw: Option<prost_types::Duration>,
    min: Duration,
    max: Duration,
) -> Option<Duration> {
    let Some(raw) = raw else {
        if min > Duration::zero() {
            v.add(field, "is required");
            return None;
        }
        return Some(Duration::zero());
    };
    if raw.nanos != 0 && (raw.nanos < 0) != (raw.seconds < 0) && raw.seconds != 0 {
        v.add(field, "is not a valid duration");
        return None;
    }
    let value = Duration::try_seconds(raw.seconds)
        .and_then(|d| d.checked_add(&Duration::nanoseconds(i64::from(raw.nanos))));
    match value {
        Some(d) if d >= min && d <= max => Some(d),
        _ => {
            v.add(field, format!("must be {min} to {max}"));
            None
        }
    }
}

pub fn to_duration(d: Duration) -> prost_types::Duration {
    prost_types::Duration {
        seconds: d.num_seconds(),
        nanos: d.subsec_nanos(),
    }
}

/// A page token carrying an integer cursor.
pub fn int_cursor(v: &mut Violations, token: &str) -> Option<i64> {
    decode_cursor(v, "page_token", token, |c| c.parse().ok())
}

pub fn reason(v: &mut Violations, field: &str, raw: i32) -> Option<ReasonCode> {
    match pb::ReasonCode::try_from(raw) {
        Ok(pb::ReasonCode::Goodwill) => Some(ReasonCode::Goodwill),
        Ok(pb::ReasonCode::Promotion) => Some(ReasonCode::Promotion),
        Ok(pb::ReasonCode::Correction) => Some(ReasonCode::Correction),
        Ok(pb::ReasonCode::Migration) => Some(ReasonCode::Migration),
        Ok(pb::ReasonCode::Fraud) => Some(ReasonCode::Fraud),
        Ok(pb::ReasonCode::Unspecified) | Err(_) => {
            v.add(field, "must be a reason code");
            None
        }
    }
}

fn reason_to_proto(reason: Option<ReasonCode>) -> pb::ReasonCode {
    match reason {
        None => pb::ReasonCode::Unspecified,
        Some(ReasonCode::Goodwill) => pb::ReasonCode::Goodwill,
        Some(ReasonCode::Promotion) => pb::ReasonCode::Promotion,
        Some(ReasonCode::Correction) => pb::ReasonCode::Correction,
        Some(ReasonCode::Migration) => pb::ReasonCode::Migration,
        Some(ReasonCode::Fraud) => pb::ReasonCode::Fraud,
    }
}

fn kind_to_proto(kind: EntryKind) -> pb::EntryKind {
    match kind {
        EntryKind::Earn => pb::EntryKind::Earn,
        EntryKind::Pending => pb::EntryKind::Pending,
        EntryKind::Release => pb::EntryKind::Release,
        EntryKind::Redeem => pb::EntryKind::Redeem,
        EntryKind::Expire => pb::EntryKind::Expire,
        EntryKind::Adjust => pb::EntryKind::Adjust,
        EntryKind::Reversal => pb::EntryKind::Reversal,
        EntryKind::Debt => pb::EntryKind::Debt,
        EntryKind::DebtPayment => pb::EntryKind::DebtPayment,
    }
}

pub fn entry_to_proto(entry: Entry) -> pb::LedgerEntry {
    let Entry {
        entry_id,
        customer_id,
        kind,
        points,
        pending_points,
        debt_points,
        rule_id,
        rule_version,
        reason,
        description,
        order_id,
        expire_time,
        idempotency_key,
        create_time,
    } = entry;
    pb::LedgerEntry {
        entry_id,
        customer_id,
        kind: kind_to_proto(kind).into(),
        points,
        pending_points,
        debt_points,
        rule_id,
        rule_version,
        reason_code: reason_to_proto(reason).into(),
        description,
        order_id,
        expire_time: expire_time.map(time::to_proto),
        idempotency_key,
        create_time: Some(time::to_proto(create_time)),
    }
}

pub fn benefits_to_proto(benefits: &Benefits) -> pb::TierBenefits {
    pb::TierBenefits {
        earn_multiplier_basis_points: benefits.earn_multiplier_bp,
        free_shipping: benefits
            .free_shipping
            .as_ref()
            .map(|methods| pb::FreeShipping {
                delivery_methods: methods.clone(),
            }),
        early_access: benefits.early_access,
    }
}

pub fn account_to_proto(account: AccountView) -> pb::Account {
    let AccountView {
        customer_id,
        available,
        pending,
        debt,
        qualifying_value,
        tier,
        tier_review_time,
        upcoming_expiries,
        expiries_after,
        open_time,
    } = account;
    pb::Account {
        customer_id,
        available_points: available,
        pending_points: pending,
        debt_points: debt,
        qualifying_value,
        tier_id: tier.as_ref().map(|t| t.tier_id.clone()).unwrap_or_default(),
        tier_benefits: Some(
            tier.as_ref()
                .map(|t| benefits_to_proto(&t.benefits))
                .unwrap_or_default(),
        ),
        tier_review_time: tier_review_time.map(time::to_proto),
        upcoming_expiries: upcoming_expiries.into_iter().map(expiry_to_proto).collect(),
        open_time: Some(time::to_proto(open_time)),
        // The same token ListUpcomingExpiries gives after the last one shown.
        upcoming_expiries_next_page_token: expiries_after
            .map(|at| encode_page_token(&at.to_string()))
            .unwrap_or_default(),
    }
}

/// One upcoming expiry: (when, points).
pub fn expiry_to_proto((at, points): (DateTime<Utc>, i64)) -> pb::PointsExpiry {
    pb::PointsExpiry {
        points,
        expire_time: Some(time::to_proto(at)),
    }
}

/// Checks the multiplier of a category or promotion (above 1x, at most 10x).
fn multiplier(v: &mut Violations, field: &str, raw: i32) -> i64 {
    if !(10_001..=100_000).contains(&raw) {
        v.add(field, "must be 10001 to 100000 basis points");
    }
    i64::from(raw)
}

fn purchase_earning(v: &mut Violations, p: pb::PurchaseEarning) -> Option<PurchaseEarning> {
    let pb::PurchaseEarning {
        currency_code,
        points_per_unit,
        category_multipliers,
        promotions,
        max_points_per_order,
        max_points_per_period,
        cap_period,
        return_window,
    } = p;
    let f = |name: &str| format!("rule.purchase.{name}");
    let currency = v.check(
        f("currency_code"),
        attune_kit::types::Currency::parse(&currency_code),
    );
    if !(1..=10_000).contains(&points_per_unit) {
        v.add(f("points_per_unit"), "must be 1 to 10000");
    }
    if category_multipliers.len() > 50 {
        v.add(f("category_multipliers"), "must have at most 50 entries");
    }
    let categories: Vec<(String, i64)> = category_multipliers
        .into_iter()
        .enumerate()
        .map(|(i, m)| {
            let field = f(&format!("category_multipliers[{i}]"));
            if let Err(e) = attune_kit::types::printable_ascii(&m.category_id, 128) {
                v.add(format!("{field}.category_id"), e);
            }
            let bp = multiplier(
                v,
                &format!("{field}.multiplier_basis_points"),
                m.multiplier_basis_points,
            );
            (m.category_id, bp)
        })
        .collect();
    if promotions.len() > 20 {
        v.add(f("promotions"), "must have at most 20 entries");
    }
    let mut windows = Vec::new();
    for (i, p) in promotions.into_iter().enumerate() {
        let field = f(&format!("promotions[{i}]"));
        let start = v.check(
            format!("{field}.start_time"),
            time::from_proto_required(p.start_time),
        );
        let end = v.check(
            format!("{field}.end_time"),
            time::from_proto_required(p.end_time),
        );
        let bp = multiplier(
            v,
            &format!("{field}.multiplier_basis_points"),
            p.multiplier_basis_points,
        );
        if let (Some(start), Some(end)) = (start, end) {
            if end <= start {
                v.add(format!("{field}.end_time"), "must be after start_time");
            }
            windows.push(Promotion {
                start,
                end,
                multiplier_bp: bp,
            });
        }
    }
    if max_points_per_order < 0 {
        v.add(f("max_points_per_order"), "must not be negative");
    }
    if max_points_per_period < 0 {
        v.add(f("max_points_per_period"), "must not be negative");
    }
    let min_period = if max_points_per_period > 0 {
        Duration::hours(1)
    } else {
        Duration::zero()
    };
    let cap_period = duration(
        v,
        &f("cap_period"),
        cap_period,
        min_period,
        Duration::days(366),
    );
    let return_window = duration(
        v,
        &f("return_window"),
        return_window,
        Duration::zero(),
        Duration::days(366),
    );
    let currency = currency?;
    Some(PurchaseEarning {
        currency: currency.to_string(),
        unit_minor: 10_i64.pow(u32::from(currency.minor_unit_digits())),
        points_per_unit,
        category_multipliers: categories,
        promotions: windows,
        max_points_per_order,
        max_points_per_period,
        cap_period: cap_period?,
        return_window: return_window?,
    })
}

/// A checked PutEarnRule.
pub fn put_earn_rule(req: pb::PutEarnRuleRequest) -> Result<(EarnRule, RequestId), ApiError> {
    let pb::PutEarnRuleRequest {
        rule,
        request_id: raw_id,
    } = req;
    let mut v = Violations::default();
    let id = request_id(&mut v, "request_id", &raw_id);
    let Some(rule) = rule else {
        v.add("rule", "is required");
        v.finish()?;
        unreachable!("a violation was recorded");
    };
    let pb::EarnRule {
        rule_id,
        version: _,
        active,
        earning,
        create_time: _,
    } = rule;
    code(&mut v, "rule.rule_id", &rule_id);
    let earning = match earning {
        None => {
            v.add("rule.earning", "must be purchase or zero_party");
            None
        }
        Some(pb::earn_rule::Earning::Purchase(p)) => {
            purchase_earning(&mut v, p).map(Earning::Purchase)
        }
        Some(pb::earn_rule::Earning::ZeroParty(z)) => {
            if z.bonuses.is_empty() || z.bonuses.len() > 50 {
                v.add("rule.zero_party.bonuses", "must have 1 to 50 entries");
            }
            let mut seen = std::collections::BTreeSet::new();
            let bonuses = z
                .bonuses
                .into_iter()
                .enumerate()
                .map(|(i, b)| {
                    let field = format!("rule.zero_party.bonuses[{i}]");
                    if let Err(e) = snake_case(&b.field, 64) {
                        v.add(format!("{field}.field"), e);
                    } else if !seen.insert(b.field.clone()) {
                        v.add(format!("{field}.field"), "is listed twice");
                    }
                    if !(1..=1_000_000).contains(&b.points) {
                        v.add(format!("{field}.points"), "must be 1 to 1000000");
                    }
                    (b.field, b.points)
                })
                .collect();
            Some(Earning::ZeroParty(bonuses))
        }
    };
    v.finish()?;
    Ok((
        EarnRule {
            rule_id,
            version: 0,
            active,
            earning: checked(earning),
            create_time: chrono::DateTime::UNIX_EPOCH,
        },
        checked(id),
    ))
}

pub fn earn_rule_to_proto(rule: EarnRule) -> pb::EarnRule {
    let EarnRule {
        rule_id,
        version,
        active,
        earning,
        create_time,
    } = rule;
    let earning = match earning {
        Earning::Purchase(p) => pb::earn_rule::Earning::Purchase(pb::PurchaseEarning {
            currency_code: p.currency,
            points_per_unit: p.points_per_unit,
            category_multipliers: p
                .category_multipliers
                .into_iter()
                .map(|(category_id, bp)| pb::CategoryMultiplier {
                    category_id,
                    multiplier_basis_points: i32::try_from(bp).unwrap_or(i32::MAX),
                })
                .collect(),
            promotions: p
                .promotions
                .into_iter()
                .map(|w| pb::PromotionWindow {
                    start_time: Some(time::to_proto(w.start)),
                    end_time: Some(time::to_proto(w.end)),
                    multiplier_basis_points: i32::try_from(w.multiplier_bp).unwrap_or(i32::MAX),
                })
                .collect(),
            max_points_per_order: p.max_points_per_order,
            max_points_per_period: p.max_points_per_period,
            cap_period: (!p.cap_period.is_zero()).then(|| to_duration(p.cap_period)),
            return_window: (!p.return_window.is_zero()).then(|| to_duration(p.return_window)),
        }),
        Earning::ZeroParty(bonuses) => pb::earn_rule::Earning::ZeroParty(pb::ZeroPartyBonuses {
            bonuses: bonuses
                .into_iter()
                .map(|(field, points)| pb::ZeroPartyBonus { field, points })
                .collect(),
        }),
    };
    pb::EarnRule {
        rule_id,
        version,
        active,
        earning: Some(earning),
        create_time: Some(time::to_proto(create_time)),
    }
}

/// Checks cart lines (Simulate): all in one currency.
pub fn cart_lines(v: &mut Violations, lines: Vec<pb::CartLine>) -> (Vec<Line>, Option<String>) {
    if lines.is_empty() || lines.len() > 100 {
        v.add("lines", "must have 1 to 100 lines");
    }
    let mut currency: Option<String> = None;
    let lines = lines
        .into_iter()
        .enumerate()
        .map(|(i, line)| {
            let pb::CartLine {
                item_id,
                category_path,
                amount,
            } = line;
            let field = format!("lines[{i}]");
            if let Err(e) = attune_kit::types::printable_ascii(&item_id, 128) {
                v.add(format!("{field}.item_id"), e);
            }
            if category_path.len() > 8 {
                v.add(format!("{field}.category_path"), "must have at most 8 ids");
            }
            let money = v.check_field(Money::from_proto_required(
                &format!("{field}.amount"),
                amount,
            ));
            let mut minor = 0;
            if let Some(money) = money {
                if money.amount_minor() < 0 {
                    v.add(format!("{field}.amount"), "must not be negative");
                }
                minor = money.amount_minor();
                let code = money.currency().to_string();
                match &currency {
                    None => currency = Some(code),
                    Some(c) if *c != code => v.add(
                        format!("{field}.amount"),
                        "must be in the currency of the other lines",
                    ),
                    Some(_) => {}
                }
            }
            Line {
                item_id,
                quantity: 1,
                amount_minor: minor,
                category_path,
            }
        })
        .collect();
    (lines, currency)
}

/// A checked PutTiers.
pub fn put_tiers(req: pb::PutTiersRequest) -> Result<(Ladder, RequestId), ApiError> {
    let pb::PutTiersRequest {
        tiers,
        basis,
        spend_currency_code,
        request_id: raw_id,
    } = req;
    let mut v = Violations::default();
    let id = request_id(&mut v, "request_id", &raw_id);
    if tiers.is_empty() || tiers.len() > 20 {
        v.add("tiers", "must have 1 to 20 tiers");
    }
    let basis = match pb::TierBasis::try_from(basis) {
        Ok(pb::TierBasis::Points) => {
            if !spend_currency_code.is_empty() {
                v.add(
                    "spend_currency_code",
                    "must be empty unless the basis is spend",
                );
            }
            Some(Basis::Points)
        }
        Ok(pb::TierBasis::Spend) => v
            .check(
                "spend_currency_code",
                attune_kit::types::Currency::parse(&spend_currency_code),
            )
            .map(|c| Basis::Spend(c.to_string())),
        Ok(pb::TierBasis::Unspecified) | Err(_) => {
            v.add("basis", "must be POINTS or SPEND");
            None
        }
    };
    let mut previous: Option<i64> = None;
    let mut ids = std::collections::BTreeSet::new();
    let tiers = tiers
        .into_iter()
        .enumerate()
        .map(|(i, tier)| {
            let pb::Tier {
                tier_id,
                display_name,
                threshold,
                benefits,
            } = tier;
            let field = format!("tiers[{i}]");
            code(&mut v, &format!("{field}.tier_id"), &tier_id);
            if !ids.insert(tier_id.clone()) {
                v.add(format!("{field}.tier_id"), "is listed twice");
            }
            required_text(&mut v, &format!("{field}.display_name"), &display_name, 200);
            match previous {
                None if threshold != 0 => v.add(
                    format!("{field}.threshold"),
                    "the first tier's threshold must be 0",
                ),
                Some(p) if threshold <= p => v.add(
                    format!("{field}.threshold"),
                    "must be above the previous tier's",
                ),
                _ => {}
            }
            previous = Some(threshold);
            let benefits = benefits.unwrap_or_default();
            let pb::TierBenefits {
                earn_multiplier_basis_points,
                free_shipping,
                early_access,
            } = benefits;
            if earn_multiplier_basis_points != 0
                && !(10_000..=100_000).contains(&earn_multiplier_basis_points)
            {
                v.add(
                    format!("{field}.benefits.earn_multiplier_basis_points"),
                    "must be 0 or 10000 to 100000",
                );
            }
            let free_shipping = free_shipping.map(|f| {
                for (j, m) in f.delivery_methods.iter().enumerate() {
                    if attune_kit::types::DeliveryMethod::from_proto(*m).is_err() {
                        v.add(
                            format!("{field}.benefits.free_shipping.delivery_methods[{j}]"),
                            "must be a delivery method",
                        );
                    }
                }
                f.delivery_methods
            });
            Tier {
                tier_id,
                display_name,
                threshold,
                benefits: Benefits {
                    earn_multiplier_bp: earn_multiplier_basis_points,
                    free_shipping,
                    early_access,
                },
            }
        })
        .collect();
    v.finish()?;
    Ok((
        Ladder {
            tiers,
            basis: checked(basis),
        },
        checked(id),
    ))
}

pub fn tier_to_proto(tier: &Tier) -> pb::Tier {
    pb::Tier {
        tier_id: tier.tier_id.clone(),
        display_name: tier.display_name.clone(),
        threshold: tier.threshold,
        benefits: Some(benefits_to_proto(&tier.benefits)),
    }
}

pub fn basis_to_proto(basis: &Basis) -> (pb::TierBasis, String) {
    match basis {
        Basis::Points => (pb::TierBasis::Points, String::new()),
        Basis::Spend(c) => (pb::TierBasis::Spend, c.clone()),
    }
}
