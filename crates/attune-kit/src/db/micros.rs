//! Times as stored: microseconds since the Unix epoch (UTC) in a 64-bit integer,
//! the same on SQLite and PostgreSQL, so stored times compare and sort alike on
//! both and round-trip exactly (the wire's `Timestamp` has finer precision, the
//! domain truncates to microseconds before storing; see [`crate::clock`]).

use chrono::{DateTime, Utc};

/// A stored time that no `DateTime<Utc>` can hold: the row is corrupt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("stored time {0} µs is out of range")]
pub struct MicrosOutOfRange(pub i64);

/// The column value of `time`.
pub fn to_micros(time: DateTime<Utc>) -> i64 {
    time.timestamp_micros()
}

/// The time a column holds.
pub fn from_micros(micros: i64) -> Result<DateTime<Utc>, MicrosOutOfRange> {
    DateTime::from_timestamp_micros(micros).ok_or(MicrosOutOfRange(micros))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_round_trip_at_microsecond_precision() {
        let time = DateTime::from_timestamp_micros(1_700_000_000_123_456).unwrap();
        assert_eq!(from_micros(to_micros(time)), Ok(time));
        assert_eq!(from_micros(i64::MAX), Err(MicrosOutOfRange(i64::MAX)));
    }
}
