//! Which buy-again items are due for a replenishment offer, and whether a
//! message may go out now (quiet hours, frequency cap).

use chrono::{DateTime, Duration, Timelike, Utc};

/// What recommendation's GetBuyAgain says about one item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuyAgain {
    pub item_id: String,
    pub purchase_count: i32,
    pub last_purchase_time: Option<DateTime<Utc>>,
    pub typical_interval: Option<Duration>,
    pub expected_next_purchase_time: Option<DateTime<Utc>>,
}

/// The items due for replenishment at `now`: bought at least twice (a cadence
/// exists), expected again before `now + due_within`, and not long overdue (more
/// than one typical interval late means the customer stopped buying it, or buys
/// it elsewhere: an offer would be noise). Most due first.
pub fn due_items(items: &[BuyAgain], now: DateTime<Utc>, due_within: Duration) -> Vec<String> {
    let mut due: Vec<(DateTime<Utc>, &str)> = items
        .iter()
        .filter(|item| item.purchase_count >= 2)
        .filter_map(|item| {
            let expected = item
                .expected_next_purchase_time
                .or_else(|| Some(item.last_purchase_time? + item.typical_interval?))?;
            let interval = item.typical_interval.unwrap_or_else(Duration::zero);
            let not_yet_due = expected > now + due_within;
            let abandoned = interval > Duration::zero() && expected + interval < now;
            (!not_yet_due && !abandoned).then_some((expected, item.item_id.as_str()))
        })
        .collect();
    due.sort();
    due.into_iter().map(|(_, id)| id.to_owned()).collect()
}

/// Whether `now`, shifted by the customer's UTC offset, falls in the quiet hours
/// from `start` to `end` (local hours; a window may span midnight; equal hours
/// mean no quiet hours).
pub fn in_quiet_hours(now: DateTime<Utc>, utc_offset_seconds: i32, start: u32, end: u32) -> bool {
    let local = now + Duration::seconds(i64::from(utc_offset_seconds));
    let hour = local.hour();
    match start.cmp(&end) {
        std::cmp::Ordering::Equal => false,
        std::cmp::Ordering::Less => start <= hour && hour < end,
        std::cmp::Ordering::Greater => hour >= start || hour < end,
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 5, 10, 12, 0, 0)
            .single()
            .expect("a valid time")
    }

    fn item(id: &str, count: i32, last_days_ago: i64, interval_days: i64) -> BuyAgain {
        let last = now() - Duration::days(last_days_ago);
        BuyAgain {
            item_id: id.into(),
            purchase_count: count,
            last_purchase_time: Some(last),
            typical_interval: (count >= 2).then(|| Duration::days(interval_days)),
            expected_next_purchase_time: (count >= 2).then(|| last + Duration::days(interval_days)),
        }
    }

    #[test]
    fn due_soon_items_most_due_first_skipping_single_buys_and_lapsed_ones() {
        let items = [
            item("coffee", 5, 28, 30),  // due in 2 days
            item("filters", 3, 62, 60), // 2 days overdue
            item("tv", 1, 400, 0),      // bought once: no cadence
            item("soap", 4, 10, 60),    // due in 50 days
            item("toner", 4, 300, 90),  // overdue by far more than its interval
        ];
        assert_eq!(
            due_items(&items, now(), Duration::days(7)),
            vec!["filters", "coffee"]
        );
    }

    #[test]
    fn quiet_hours_follow_the_customers_offset_and_span_midnight() {
        // 12:00 UTC is 22:00 in UTC+10.
        assert!(in_quiet_hours(now(), 10 * 3600, 21, 8));
        assert!(!in_quiet_hours(now(), 0, 21, 8));
        // 12:00 UTC is 03:00 in UTC-9.
        assert!(in_quiet_hours(now(), -9 * 3600, 21, 8));
        assert!(!in_quiet_hours(now(), 0, 8, 8));
        assert!(in_quiet_hours(now(), 0, 9, 17));
    }
}
