//! Times are stored as microseconds since the Unix epoch, UTC.

use chrono::{DateTime, Utc};

use crate::error::ConsentError;

pub fn to_micros(time: DateTime<Utc>) -> i64 {
    time.timestamp_micros()
}

pub fn from_micros(micros: i64) -> Result<DateTime<Utc>, ConsentError> {
    DateTime::from_timestamp_micros(micros)
        .ok_or_else(|| ConsentError::Corrupt(format!("time {micros} is out of range")))
}
