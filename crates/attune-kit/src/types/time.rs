//! Times: UTC values in the domain, `google.protobuf.Timestamp` on the wire.
//!
//! Attune keeps times to the microsecond, the precision both databases store,
//! so finer digits are dropped here, once, on the way in: a time read back from
//! storage then equals the time that was parsed.

use attune_proto::prost_types::Timestamp;
use chrono::{DateTime, SubsecRound, Utc};

/// The earliest second a `Timestamp` may hold: 0001-01-01T00:00:00Z.
pub const MIN_SECONDS: i64 = -62_135_596_800;
/// The latest second a `Timestamp` may hold: 9999-12-31T23:59:59Z.
pub const MAX_SECONDS: i64 = 253_402_300_799;

const MAX_NANOS: u32 = 999_999_999;

/// Reads a wire time as UTC, truncated to microseconds; rejects what
/// `google.protobuf.Timestamp` does not allow (nanos outside 0 to 999999999,
/// seconds outside years 1 to 9999), saying why.
pub fn from_proto(timestamp: Timestamp) -> Result<DateTime<Utc>, String> {
    let Timestamp { seconds, nanos } = timestamp;
    let nanos = u32::try_from(nanos)
        .ok()
        .filter(|&nanos| nanos <= MAX_NANOS)
        .ok_or_else(|| format!("nanos must be 0 to {MAX_NANOS}, not {nanos}"))?;
    if !(MIN_SECONDS..=MAX_SECONDS).contains(&seconds) {
        return Err("must lie in the years 1 to 9999".to_owned());
    }
    DateTime::from_timestamp(seconds, nanos)
        .map(|time| time.trunc_subsecs(6))
        .ok_or_else(|| "is not a valid time".to_owned())
}

/// Reads a wire time a request must carry: absent is "must be set".
pub fn from_proto_required(timestamp: Option<Timestamp>) -> Result<DateTime<Utc>, String> {
    timestamp.map_or_else(|| Err("must be set".to_owned()), from_proto)
}

/// Reads an optional wire time: `None` stays `None`.
pub fn from_proto_optional(timestamp: Option<Timestamp>) -> Result<Option<DateTime<Utc>>, String> {
    timestamp.map(from_proto).transpose()
}

/// The wire time. A leap second (which chrono can represent and a `Timestamp`
/// cannot) is sent as the last nanosecond of its second.
pub fn to_proto(time: DateTime<Utc>) -> Timestamp {
    let nanos = time.timestamp_subsec_nanos().min(MAX_NANOS);
    Timestamp {
        seconds: time.timestamp(),
        nanos: i32::try_from(nanos).expect("nanos below one second fit in i32"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(seconds: i64, nanos: i32) -> Timestamp {
        Timestamp { seconds, nanos }
    }

    #[test]
    fn a_time_round_trips_at_microsecond_precision() {
        let time = from_proto(at(1_700_000_000, 123_456_000)).expect("a valid time");
        assert_eq!(time.timestamp_micros(), 1_700_000_000_123_456);
        assert_eq!(to_proto(time), at(1_700_000_000, 123_456_000));
    }

    #[test]
    fn digits_below_a_microsecond_are_dropped() {
        let time = from_proto(at(1_700_000_000, 123_456_789)).expect("a valid time");
        assert_eq!(to_proto(time), at(1_700_000_000, 123_456_000));
    }

    #[test]
    fn the_bounds_of_the_timestamp_range_are_accepted() {
        assert!(from_proto(at(MIN_SECONDS, 0)).is_ok());
        assert!(from_proto(at(MAX_SECONDS, 999_999_999)).is_ok());
        assert!(from_proto(at(0, 0)).is_ok());
    }

    #[test]
    fn negative_nanos_are_rejected() {
        assert_eq!(
            from_proto(at(0, -5)),
            Err("nanos must be 0 to 999999999, not -5".to_owned())
        );
    }

    #[test]
    fn nanos_of_a_second_or_more_are_rejected() {
        assert_eq!(
            from_proto(at(0, 1_000_000_000)),
            Err("nanos must be 0 to 999999999, not 1000000000".to_owned())
        );
    }

    #[test]
    fn seconds_before_year_one_are_rejected() {
        assert_eq!(
            from_proto(at(MIN_SECONDS - 1, 0)),
            Err("must lie in the years 1 to 9999".to_owned())
        );
    }

    #[test]
    fn seconds_after_year_9999_are_rejected() {
        assert_eq!(
            from_proto(at(MAX_SECONDS + 1, 0)),
            Err("must lie in the years 1 to 9999".to_owned())
        );
        assert!(from_proto(at(i64::MAX, 0)).is_err());
    }

    #[test]
    fn an_absent_required_time_must_be_set() {
        assert_eq!(from_proto_required(None), Err("must be set".to_owned()));
        assert!(from_proto_required(Some(at(0, 0))).is_ok());
    }

    #[test]
    fn an_absent_optional_time_stays_absent() {
        assert_eq!(from_proto_optional(None), Ok(None));
        assert!(from_proto_optional(Some(at(0, -1))).is_err());
    }
}
