//! Tiers: the ladder, what qualifies, and when a customer moves. A customer
//! moves up as soon as their qualifying value (points or spend over the last 12
//! months) reaches a higher threshold, and a new 12-month qualification period
//! starts; they move down only when a period ends, to the tier their value then
//! reaches.

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

/// The length of a qualification period and of the rolling window.
pub fn period() -> Duration {
    Duration::days(365)
}

/// What a tier gives.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Benefits {
    pub earn_multiplier_bp: i32,
    /// `None`: no free shipping; `Some(empty)`: on every delivery method.
    pub free_shipping: Option<Vec<i32>>,
    pub early_access: bool,
}

/// One tier.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tier {
    pub tier_id: String,
    pub display_name: String,
    pub threshold: i64,
    pub benefits: Benefits,
}

/// What qualifies.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Basis {
    Points,
    /// Spend in minor units of this currency.
    Spend(String),
}

/// The ladder, tiers by strictly increasing threshold, the first at 0.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ladder {
    pub tiers: Vec<Tier>,
    pub basis: Basis,
}

impl Ladder {
    /// The position of the highest tier `value` reaches.
    fn reached(&self, value: i64) -> Option<usize> {
        self.tiers.iter().rposition(|tier| tier.threshold <= value)
    }

    fn position(&self, tier_id: &str) -> Option<usize> {
        self.tiers.iter().position(|tier| tier.tier_id == tier_id)
    }

    /// The tier called `tier_id`.
    pub fn tier(&self, tier_id: &str) -> Option<&Tier> {
        self.tiers.iter().find(|tier| tier.tier_id == tier_id)
    }
}

/// Where an account stands in the ladder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Standing {
    pub tier_id: String,
    pub review_time: Option<DateTime<Utc>>,
}

/// Where an account stands at `now` with qualifying `value`, coming from
/// `current`: up at once (a new period starts), down or level only when the
/// period has ended (the next period starts where the last one ended). A tier
/// that no longer exists counts as the bottom.
pub fn next_standing(
    ladder: &Ladder,
    current: &Standing,
    value: i64,
    now: DateTime<Utc>,
) -> Standing {
    let Some(reached) = ladder.reached(value) else {
        return current.clone();
    };
    let reached_id = ladder.tiers[reached].tier_id.clone();
    let held = ladder.position(&current.tier_id);
    match (held, current.review_time) {
        (Some(held), Some(review)) if reached <= held && now < review => current.clone(),
        (Some(held), _) if reached > held => Standing {
            tier_id: reached_id,
            review_time: Some(now + period()),
        },
        (Some(_), Some(review)) => {
            let mut next = review;
            while next <= now {
                next += period();
            }
            Standing {
                tier_id: reached_id,
                review_time: Some(next),
            }
        }
        _ => Standing {
            tier_id: reached_id,
            review_time: Some(now + period()),
        },
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    fn ladder() -> Ladder {
        let tier = |id: &str, threshold| Tier {
            tier_id: id.into(),
            display_name: id.into(),
            threshold,
            benefits: Benefits::default(),
        };
        Ladder {
            tiers: vec![tier("base", 0), tier("silver", 100), tier("gold", 500)],
            basis: Basis::Points,
        }
    }

    fn t0() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0)
            .single()
            .expect("a valid time")
    }

    #[test]
    fn a_new_account_starts_where_its_value_reaches() {
        let none = Standing {
            tier_id: String::new(),
            review_time: None,
        };
        let s = next_standing(&ladder(), &none, 0, t0());
        assert_eq!(s.tier_id, "base");
        assert_eq!(s.review_time, Some(t0() + period()));
    }

    #[test]
    fn upgrade_at_once_downgrade_only_at_period_end() {
        let base = Standing {
            tier_id: "base".into(),
            review_time: Some(t0() + period()),
        };
        let gold = next_standing(&ladder(), &base, 600, t0() + Duration::days(10));
        assert_eq!(gold.tier_id, "gold");
        let review = t0() + Duration::days(10) + period();
        assert_eq!(gold.review_time, Some(review));
        // The value falls mid-period: still gold.
        assert_eq!(
            next_standing(&ladder(), &gold, 150, review - Duration::days(1)),
            gold
        );
        // At the period's end: down to silver, a new period from there.
        let silver = next_standing(&ladder(), &gold, 150, review);
        assert_eq!(silver.tier_id, "silver");
        assert_eq!(silver.review_time, Some(review + period()));
    }
}
