//! A customer's UTC offset at an instant, from the system's time zone database
//! (`/usr/share/zoneinfo`, TZif version 2 or later), for quiet hours. An unknown
//! or unreadable zone reads as `None`: the caller decides what that means.

use chrono::{DateTime, Utc};

/// Where the database lives.
const ZONEINFO: &str = "/usr/share/zoneinfo";

fn be_i32(bytes: &[u8]) -> Option<i32> {
    Some(i32::from_be_bytes(bytes.get(..4)?.try_into().ok()?))
}

fn be_i64(bytes: &[u8]) -> Option<i64> {
    Some(i64::from_be_bytes(bytes.get(..8)?.try_into().ok()?))
}

fn counts(header: &[u8]) -> Option<[usize; 6]> {
    if header.get(..4)? != b"TZif" {
        return None;
    }
    let mut counts = [0usize; 6];
    for (i, count) in counts.iter_mut().enumerate() {
        *count = usize::try_from(be_i32(header.get(20 + 4 * i..)?)?).ok()?;
    }
    Some(counts)
}

/// The offset in seconds of `data` (a TZif file) at `at`.
pub fn offset_in(data: &[u8], at: DateTime<Utc>) -> Option<i32> {
    let [isut, isstd, leap, time, types, chars] = counts(data)?;
    if data.get(4).copied()? < b'2' {
        return None;
    }
    // Skip the 32-bit block to the 64-bit one.
    let v1 = 44 + time * 4 + time + types * 6 + chars + leap * 8 + isstd + isut;
    let block = data.get(v1..)?;
    let [_, _, _, time, types, _] = counts(block)?;
    let times = block.get(44..44 + time * 8)?;
    let indices = block.get(44 + time * 8..44 + time * 9)?;
    let infos = block.get(44 + time * 9..44 + time * 9 + types * 6)?;
    let now = at.timestamp();
    let mut index = 0usize;
    for i in 0..time {
        if be_i64(&times[i * 8..])? <= now {
            index = usize::from(indices[i]);
        } else {
            break;
        }
    }
    be_i32(infos.get(index * 6..)?)
}

/// The offset in seconds of the IANA zone `name` at `at`, if known.
pub fn offset(name: &str, at: DateTime<Utc>) -> Option<i32> {
    let safe = !name.is_empty()
        && name.len() <= 64
        && !name.contains("..")
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"/_-+".contains(&b));
    if !safe {
        return None;
    }
    let data = std::fs::read(format!("{ZONEINFO}/{name}")).ok()?;
    offset_in(&data, at)
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    #[test]
    fn berlin_is_one_hour_ahead_in_winter_and_two_in_summer() {
        let winter = Utc
            .with_ymd_and_hms(2026, 1, 15, 12, 0, 0)
            .single()
            .expect("a time");
        let summer = Utc
            .with_ymd_and_hms(2026, 7, 15, 12, 0, 0)
            .single()
            .expect("a time");
        if std::fs::metadata(ZONEINFO).is_err() {
            return; // no time zone database on this machine
        }
        assert_eq!(offset("Europe/Berlin", winter), Some(3600));
        assert_eq!(offset("Europe/Berlin", summer), Some(7200));
        assert_eq!(offset("America/New_York", winter), Some(-5 * 3600));
        assert_eq!(offset("../etc/passwd", winter), None);
        assert_eq!(offset("Nowhere/City", winter), None);
    }
}
