//! Partial updates (AIP-134): an update mask names top-level fields; an
//! existing record keeps every other field and takes the named ones from the
//! request. Each record type lists its maskable fields once, in
//! [`maskable!`], which yields both the accepted paths and the merge.

use attune_kit::error::Violations;

/// The checked paths of an update mask: `None` when no mask was sent (replace
/// whole), else the distinct paths, each one of `allowed`.
pub fn parse(
    v: &mut Violations,
    mask: Option<&prost_types::FieldMask>,
    allowed: &[&'static str],
) -> Option<Vec<&'static str>> {
    let mask = mask?;
    if mask.paths.is_empty() {
        v.add("update_mask.paths", "must name at least one field");
    }
    let mut paths = Vec::new();
    for (i, path) in mask.paths.iter().enumerate() {
        match allowed.iter().find(|a| **a == path.as_str()) {
            Some(field) if paths.contains(field) => {
                v.add(format!("update_mask.paths[{i}]"), "is a duplicate");
            }
            Some(field) => paths.push(*field),
            None => v.add(
                format!("update_mask.paths[{i}]"),
                format!("must be one of {}", allowed.join(", ")),
            ),
        }
    }
    Some(paths)
}

/// Declares a record type's maskable fields: a const of their names and a
/// function merging the named ones of `sent` into a copy of `stored`.
macro_rules! maskable {
    ($fields:ident, $merge:ident, $ty:ty, [$($field:ident),+ $(,)?]) => {
        /// The fields an update mask may name.
        pub const $fields: &[&str] = &[$(stringify!($field)),+];

        /// `stored` with the fields `paths` names taken from `sent`.
        pub fn $merge(stored: &$ty, sent: &$ty, paths: &[&str]) -> $ty {
            let mut merged = stored.clone();
            for path in paths {
                match *path {
                    $(stringify!($field) => merged.$field = sent.$field.clone(),)+
                    _ => {}
                }
            }
            merged
        }
    };
}

use attune_proto::delivery::v1 as pb;

maskable!(
    PICKUP_POINT_FIELDS,
    merge_pickup_point,
    pb::PickupPoint,
    [
        kind,
        display_name,
        country_code,
        location,
        utc_offset_minutes,
        opening_hours,
        closed_dates,
        active,
    ]
);

maskable!(
    RATE_FIELDS,
    merge_rate,
    pb::ShippingRate,
    [
        method,
        service_area,
        price,
        basket_tiers,
        weight_surcharges,
        max_weight_grams,
        free_above,
        min_lead_days,
        max_lead_days,
        cutoff_minute,
        utc_offset_minutes,
        active,
    ]
);

maskable!(
    SLOT_FIELDS,
    merge_slot,
    pb::DeliverySlot,
    [
        method,
        pickup_point_id,
        start_time,
        end_time,
        cutoff_time,
        capacity,
        surcharge,
        active,
        utc_offset_minutes,
    ]
);

maskable!(
    PAYMENT_RULE_FIELDS,
    merge_payment_rule,
    pb::PaymentMethodRule,
    [active, min_basket_value, max_basket_value, delivery_methods,]
);

maskable!(
    PREFERENCE_FIELDS,
    merge_preferences,
    pb::DeliveryPreferences,
    [
        preferred_delivery_methods,
        preferred_payment_methods,
        preferred_pickup_point_id,
        preferred_address_id,
        preferred_time_windows,
        contactless_delivery,
        delivery_instructions,
    ]
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_merge_takes_only_the_named_fields() {
        let stored = pb::DeliverySlot {
            slot_id: "s".into(),
            capacity: 5,
            active: true,
            utc_offset_minutes: 60,
            ..Default::default()
        };
        let sent = pb::DeliverySlot {
            slot_id: "s".into(),
            capacity: 9,
            ..Default::default()
        };
        let merged = merge_slot(&stored, &sent, &["capacity"]);
        assert_eq!(merged.capacity, 9);
        assert!(merged.active);
        assert_eq!(merged.utc_offset_minutes, 60);
        // A named field left unset clears it.
        assert!(!merge_slot(&stored, &sent, &["active"]).active);
    }

    #[test]
    fn paths_must_be_known_and_distinct() {
        let mut v = Violations::default();
        let mask = prost_types::FieldMask {
            paths: vec!["capacity".into(), "slot_id".into(), "capacity".into()],
        };
        assert_eq!(
            parse(&mut v, Some(&mask), SLOT_FIELDS),
            Some(vec!["capacity"])
        );
        assert!(v.finish().is_err());
        assert_eq!(parse(&mut Violations::default(), None, SLOT_FIELDS), None);
    }
}
