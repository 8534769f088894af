//! Days of the week.

use chrono::Weekday;

wire_enum! {
    /// A day of the week, Monday first (`attune.common.v1.DayOfWeek`). Which day
    /// an instant falls on depends on a time zone, which the caller chooses.
    pub enum DayOfWeek mirrors DayOfWeek, a "day of the week" {
        /// Monday.
        Monday => "monday",
        /// Tuesday.
        Tuesday => "tuesday",
        /// Wednesday.
        Wednesday => "wednesday",
        /// Thursday.
        Thursday => "thursday",
        /// Friday.
        Friday => "friday",
        /// Saturday.
        Saturday => "saturday",
        /// Sunday.
        Sunday => "sunday",
    }
}

impl From<Weekday> for DayOfWeek {
    fn from(day: Weekday) -> Self {
        match day {
            Weekday::Mon => Self::Monday,
            Weekday::Tue => Self::Tuesday,
            Weekday::Wed => Self::Wednesday,
            Weekday::Thu => Self::Thursday,
            Weekday::Fri => Self::Friday,
            Weekday::Sat => Self::Saturday,
            Weekday::Sun => Self::Sunday,
        }
    }
}

impl From<DayOfWeek> for Weekday {
    fn from(day: DayOfWeek) -> Self {
        match day {
            DayOfWeek::Monday => Self::Mon,
            DayOfWeek::Tuesday => Self::Tue,
            DayOfWeek::Wednesday => Self::Wed,
            DayOfWeek::Thursday => Self::Thu,
            DayOfWeek::Friday => Self::Fri,
            DayOfWeek::Saturday => Self::Sat,
            DayOfWeek::Sunday => Self::Sun,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{Datelike, NaiveDate};

    #[test]
    fn chrono_weekdays_map_both_ways() {
        for &day in DayOfWeek::ALL {
            assert_eq!(DayOfWeek::from(Weekday::from(day)), day);
        }
        let a_sunday = NaiveDate::from_ymd_opt(2026, 11, 29).expect("a valid date");
        assert_eq!(DayOfWeek::from(a_sunday.weekday()), DayOfWeek::Sunday);
    }

    #[test]
    fn wire_numbers_follow_iso_8601() {
        assert_eq!(i32::from(DayOfWeek::Monday), 1);
        assert_eq!(i32::from(DayOfWeek::Sunday), 7);
    }
}
