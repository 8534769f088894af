//! What a purchase earns: the rule's base rate per currency unit, the highest
//! matching category multiplier per line, the highest promotion window covering
//! the purchase, the tier's multiplier, then the caps per order and per period.
//! Points are computed per line (so a return takes back exactly the points of
//! its lines) and rounded down.

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

/// One basis-point multiplier of 1x.
pub const ONE_X: i64 = 10_000;

/// A promotion window.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Promotion {
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    pub multiplier_bp: i64,
}

/// How purchases in one currency earn (one version of an earn rule).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PurchaseEarning {
    pub currency: String,
    /// Minor units in one whole unit of the currency (100 for EUR).
    pub unit_minor: i64,
    pub points_per_unit: i64,
    /// (category id, multiplier in basis points).
    pub category_multipliers: Vec<(String, i64)>,
    pub promotions: Vec<Promotion>,
    /// 0: no cap.
    pub max_points_per_order: i64,
    /// 0: no cap.
    pub max_points_per_period: i64,
    pub cap_period: Duration,
    /// Zero: available at once.
    pub return_window: Duration,
}

/// One line of a purchase.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Line {
    pub item_id: String,
    pub quantity: i64,
    pub amount_minor: i64,
    pub category_path: Vec<String>,
}

/// The points of one line, kept with the order so a return can take them back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinePoints {
    pub item_id: String,
    pub quantity: i64,
    pub points: i64,
    /// Units already returned.
    #[serde(default)]
    pub returned_quantity: i64,
}

/// What a purchase earns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Earned {
    pub points: i64,
    pub lines: Vec<LinePoints>,
}

fn highest(multipliers: impl Iterator<Item = i64>) -> i64 {
    multipliers.fold(ONE_X, i64::max)
}

/// Points for `lines` paid `total_paid_minor` (the lines are scaled down when the
/// order paid less than their sum, e.g. after a discount), at `at`, with the
/// tier multiplier `tier_bp` (0 means 1x), when `earned_in_period` points were
/// already earned in the rule's cap period.
pub fn purchase_points(
    rule: &PurchaseEarning,
    lines: &[Line],
    total_paid_minor: i64,
    at: DateTime<Utc>,
    tier_bp: i64,
    earned_in_period: i64,
) -> Earned {
    let line_sum: i64 = lines.iter().fold(0i64, |sum, line| {
        sum.saturating_add(line.amount_minor.max(0))
    });
    let paid = total_paid_minor.clamp(0, line_sum);
    let promotion = highest(
        rule.promotions
            .iter()
            .filter(|p| p.start <= at && at < p.end)
            .map(|p| p.multiplier_bp),
    );
    let tier = if tier_bp <= 0 { ONE_X } else { tier_bp };
    let bp = i128::from(ONE_X);
    let mut points: Vec<i64> = lines
        .iter()
        .map(|line| {
            let category = highest(
                rule.category_multipliers
                    .iter()
                    .filter(|(id, _)| line.category_path.iter().any(|c| c == id))
                    .map(|(_, m)| *m),
            );
            // The line's share of what was paid.
            let amount = if line_sum == 0 {
                0
            } else {
                i128::from(line.amount_minor.max(0)) * i128::from(paid) / i128::from(line_sum)
            };
            let value = amount
                * i128::from(rule.points_per_unit)
                * i128::from(category)
                * i128::from(promotion)
                * i128::from(tier)
                / (i128::from(rule.unit_minor) * bp * bp * bp);
            i64::try_from(value).unwrap_or(i64::MAX)
        })
        .collect();
    let uncapped: i64 = points.iter().fold(0i64, |sum, p| sum.saturating_add(*p));
    let mut cap = uncapped;
    if rule.max_points_per_order > 0 {
        cap = cap.min(rule.max_points_per_order);
    }
    if rule.max_points_per_period > 0 {
        cap = cap.min((rule.max_points_per_period - earned_in_period).max(0));
    }
    if cap < uncapped {
        for p in &mut points {
            *p =
                i64::try_from(i128::from(*p) * i128::from(cap) / i128::from(uncapped)).unwrap_or(0);
        }
    }
    let lines: Vec<LinePoints> = lines
        .iter()
        .zip(points)
        .map(|(line, points)| LinePoints {
            item_id: line.item_id.clone(),
            quantity: line.quantity.max(1),
            points,
            returned_quantity: 0,
        })
        .collect();
    Earned {
        points: lines
            .iter()
            .fold(0i64, |sum, l| sum.saturating_add(l.points)),
        lines,
    }
}

/// The points a return of `returned` (item id, units) takes back from an order's
/// `lines`, marking the units returned: each unit gives back its share of its
/// line's points, and a unit is never returned twice.
pub fn return_points(lines: &mut [LinePoints], returned: &[(String, i64)]) -> i64 {
    let mut total = 0;
    for (item_id, quantity) in returned {
        let mut left = *quantity;
        for line in lines.iter_mut().filter(|l| &l.item_id == item_id) {
            let open = line.quantity - line.returned_quantity;
            let units = left.min(open);
            if units <= 0 {
                continue;
            }
            // Points of the units returned so far and now, minus those already
            // taken: rounding never lets a line give back more than it earned.
            let before = line.points * line.returned_quantity / line.quantity;
            line.returned_quantity += units;
            let after = if line.returned_quantity == line.quantity {
                line.points
            } else {
                line.points * line.returned_quantity / line.quantity
            };
            total += after - before;
            left -= units;
        }
    }
    total
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    fn rule() -> PurchaseEarning {
        PurchaseEarning {
            currency: "EUR".into(),
            unit_minor: 100,
            points_per_unit: 1,
            category_multipliers: vec![("shoes".into(), 20_000)],
            promotions: vec![],
            max_points_per_order: 0,
            max_points_per_period: 0,
            cap_period: Duration::days(30),
            return_window: Duration::zero(),
        }
    }

    fn line(item: &str, qty: i64, minor: i64, categories: &[&str]) -> Line {
        Line {
            item_id: item.into(),
            quantity: qty,
            amount_minor: minor,
            category_path: categories.iter().map(|c| (*c).to_owned()).collect(),
        }
    }

    fn at() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 3, 1, 12, 0, 0)
            .single()
            .expect("a valid time")
    }

    #[test]
    fn a_point_per_euro_rounded_down_and_doubled_for_a_multiplied_category() {
        let earned = purchase_points(
            &rule(),
            &[
                line("a", 1, 1999, &["food"]),
                line("b", 2, 5000, &["apparel", "shoes"]),
            ],
            6999,
            at(),
            0,
            0,
        );
        assert_eq!(earned.points, 19 + 100);
    }

    #[test]
    fn promotion_and_tier_multiply_and_caps_apply() {
        let mut r = rule();
        r.promotions.push(Promotion {
            start: at() - Duration::hours(1),
            end: at() + Duration::hours(1),
            multiplier_bp: 30_000,
        });
        let earned = purchase_points(&r, &[line("a", 1, 1000, &[])], 1000, at(), 15_000, 0);
        assert_eq!(earned.points, 45);
        r.max_points_per_order = 40;
        assert_eq!(
            purchase_points(&r, &[line("a", 1, 1000, &[])], 1000, at(), 15_000, 0).points,
            40
        );
        r.max_points_per_period = 100;
        assert_eq!(
            purchase_points(&r, &[line("a", 1, 1000, &[])], 1000, at(), 15_000, 90).points,
            10
        );
        assert_eq!(
            purchase_points(&r, &[line("a", 1, 1000, &[])], 1000, at(), 15_000, 150).points,
            0
        );
    }

    #[test]
    fn a_discounted_order_earns_on_what_was_paid() {
        let earned = purchase_points(
            &rule(),
            &[line("a", 1, 1000, &[]), line("b", 1, 1000, &[])],
            1000,
            at(),
            0,
            0,
        );
        assert_eq!(earned.points, 10);
    }

    #[test]
    fn returns_take_back_each_unit_once_and_never_more_than_earned() {
        let mut lines =
            purchase_points(&rule(), &[line("a", 3, 1000, &[])], 1000, at(), 0, 0).lines;
        assert_eq!(return_points(&mut lines, &[("a".into(), 1)]), 3);
        assert_eq!(return_points(&mut lines, &[("a".into(), 1)]), 3);
        assert_eq!(return_points(&mut lines, &[("a".into(), 5)]), 4);
        assert_eq!(return_points(&mut lines, &[("a".into(), 1)]), 0);
        assert_eq!(return_points(&mut lines, &[("zzz".into(), 1)]), 0);
    }
}
