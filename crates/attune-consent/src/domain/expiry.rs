//! Grants that expire soon, listed for re-consent campaigns, and where one page of
//! that list ends and the next begins.

use chrono::{DateTime, Duration, Utc};

use super::{CustomerId, PurposeCode};

/// The widest window a list of expiring grants may look ahead, in days.
pub const MAX_EXPIRY_WINDOW_DAYS: i32 = 366;

/// A grant in force that expires inside the window asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExpiringGrant {
    pub customer: CustomerId,
    pub purpose: PurposeCode,
    pub record_id: i64,
    pub notice_version: i32,
    pub decide_time: DateTime<Utc>,
    pub expire_time: DateTime<Utc>,
}

/// Which grants to list: those expiring from now until the end of a window,
/// after the last one a previous page listed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExpiringQuery {
    pub window: ExpiryWindow,
    pub purpose: Option<PurposeCode>,
}

/// Where the listing stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExpiryWindow {
    /// A first page: the window ends this long after now.
    Ahead(Duration),
    /// A later page: the first page's window, after the grants already listed.
    Resume(ExpiryCursor),
}

impl ExpiryWindow {
    /// A first page's window of `days` days, 1 to [`MAX_EXPIRY_WINDOW_DAYS`].
    pub fn days(days: i32) -> Result<Self, String> {
        if !(1..=MAX_EXPIRY_WINDOW_DAYS).contains(&days) {
            return Err(format!(
                "must be 1 to {MAX_EXPIRY_WINDOW_DAYS} (days from now)"
            ));
        }
        Ok(Self::Ahead(Duration::days(i64::from(days))))
    }
}

/// The end of the window a first page fixed, and the sort key of the last grant
/// listed: grants sort by (expire time, customer id, purpose code), so the next
/// page starts strictly after this key and neither skips nor repeats one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExpiryCursor {
    pub window_end: DateTime<Utc>,
    pub expire_time: DateTime<Utc>,
    pub customer: CustomerId,
    pub purpose: PurposeCode,
}

impl ExpiryCursor {
    /// The cursor after `last`, inside the window ending at `window_end`.
    pub fn after(window_end: DateTime<Utc>, last: &ExpiringGrant) -> Self {
        Self {
            window_end,
            expire_time: last.expire_time,
            customer: last.customer.clone(),
            purpose: last.purpose.clone(),
        }
    }

    /// The cursor as text: `<window end> <expire time> <customer id> <purpose code>`,
    /// times in microseconds since the epoch. Neither ids nor codes hold spaces.
    pub fn encode(&self) -> String {
        format!(
            "{} {} {} {}",
            self.window_end.timestamp_micros(),
            self.expire_time.timestamp_micros(),
            self.customer,
            self.purpose
        )
    }

    /// Reads back what [`ExpiryCursor::encode`] wrote; `None` for anything else.
    pub fn decode(text: &str) -> Option<Self> {
        let mut parts = text.split(' ');
        let mut time = || {
            parts
                .next()?
                .parse()
                .ok()
                .and_then(DateTime::from_timestamp_micros)
        };
        let (window_end, expire_time) = (time()?, time()?);
        let customer = CustomerId::parse(parts.next()?).ok()?;
        let purpose = PurposeCode::parse(parts.next()?).ok()?;
        if parts.next().is_some() || expire_time >= window_end {
            return None;
        }
        Some(Self {
            window_end,
            expire_time,
            customer,
            purpose,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cursor() -> ExpiryCursor {
        ExpiryCursor {
            window_end: DateTime::from_timestamp_micros(1_700_000_000_123_456).unwrap(),
            expire_time: DateTime::from_timestamp_micros(1_699_999_999_000_001).unwrap(),
            customer: CustomerId::parse("POS:42/x").unwrap(),
            purpose: PurposeCode::parse("marketing_email").unwrap(),
        }
    }

    #[test]
    fn a_cursor_round_trips_to_the_microsecond() {
        let cursor = cursor();
        assert_eq!(
            cursor.encode(),
            "1700000000123456 1699999999000001 POS:42/x marketing_email"
        );
        assert_eq!(ExpiryCursor::decode(&cursor.encode()), Some(cursor));
    }

    #[test]
    fn anything_else_is_not_a_cursor() {
        for text in [
            "",
            "42",
            "1700000000123456 1699999999000001 POS:42/x",
            "1700000000123456 1699999999000001 POS:42/x marketing_email extra",
            "1700000000123456 1699999999000001 POS:42/x Marketing",
            "1700000000123456 x POS:42/x marketing_email",
            "1700000000123456  POS:42/x marketing_email",
            // an expiry at or after the window's end cannot have been listed
            "1700000000123456 1700000000123456 POS:42/x marketing_email",
            "9223372036854775807 1 c m1",
        ] {
            assert_eq!(ExpiryCursor::decode(text), None, "{text:?}");
        }
    }

    #[test]
    fn the_window_is_one_to_366_days() {
        assert_eq!(
            ExpiryWindow::days(1),
            Ok(ExpiryWindow::Ahead(Duration::days(1)))
        );
        assert_eq!(
            ExpiryWindow::days(366),
            Ok(ExpiryWindow::Ahead(Duration::days(366)))
        );
        for days in [0, -1, 367, i32::MIN, i32::MAX] {
            assert!(ExpiryWindow::days(days).is_err(), "{days}");
        }
    }
}
