//! Time as the models keep it: whole UTC days in a `u16` counted from the
//! training's first day, which keeps a customer's history compact (cadence in
//! retail is a matter of days).

pub(crate) const MICROS_PER_DAY: i64 = 86_400 * 1_000_000;

/// The day of `micros` (floor, also before 1970).
pub(crate) fn day_of(micros: i64) -> i64 {
    micros.div_euclid(MICROS_PER_DAY)
}

/// `2^(-age / half_life)` for ages in microseconds; the future counts as now.
pub(crate) fn decay(age_micros: i64, half_life_days: f32) -> f32 {
    let age_days = age_micros.max(0) as f64 / MICROS_PER_DAY as f64;
    (-(age_days / f64::from(half_life_days)) * std::f64::consts::LN_2).exp() as f32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days_are_floored_before_the_epoch_too() {
        assert_eq!(day_of(0), 0);
        assert_eq!(day_of(MICROS_PER_DAY - 1), 0);
        assert_eq!(day_of(-1), -1);
    }

    #[test]
    fn decay_halves_every_half_life() {
        assert!((decay(0, 7.0) - 1.0).abs() < 1e-6);
        assert!((decay(7 * MICROS_PER_DAY, 7.0) - 0.5).abs() < 1e-6);
        assert!((decay(-MICROS_PER_DAY, 7.0) - 1.0).abs() < 1e-6);
    }
}
