//! Checks of wire values shared by several RPCs; each records violations
//! against the field path it is given.

use attune_kit::error::Violations;
use attune_kit::types::{CustomerId, DeliveryMethod, Money, PaymentMethod, RequestId};
use attune_proto::common::v1 as common_pb;

use crate::geo::Point;

/// A customer id (required).
pub fn customer(v: &mut Violations, field: &str, raw: &str) -> Option<CustomerId> {
    v.check(field, CustomerId::parse(raw))
}

/// A request id (required).
pub fn request_id(v: &mut Violations, raw: &str) -> Option<RequestId> {
    v.check("request_id", RequestId::parse(raw))
}

/// A retailer-chosen id: 1 to 64 printable ASCII characters without spaces.
pub fn record_id(v: &mut Violations, field: &str, raw: &str) -> Option<String> {
    v.check(field, attune_kit::types::printable_ascii(raw, 64))
        .map(|()| raw.to_owned())
}

/// Text of `min..=max` characters.
pub fn text(v: &mut Violations, field: &str, raw: &str, min: usize, max: usize) {
    let len = raw.chars().count();
    if len < min || len > max {
        if min == 0 {
            v.add(field, format!("must be at most {max} characters"));
        } else {
            v.add(field, format!("must be {min} to {max} characters"));
        }
    } else if raw.chars().any(char::is_control) {
        v.add(field, "must not contain control characters");
    }
}

/// An ISO 3166-1 alpha-2 code, upper case.
pub fn country(v: &mut Violations, field: &str, raw: &str) {
    if raw.len() != 2 || !raw.bytes().all(|b| b.is_ascii_uppercase()) {
        v.add(
            field,
            "must be an ISO 3166-1 alpha-2 code in upper case, such as DE",
        );
    }
}

/// A postal code (or prefix): 1 to 16 letters, digits, spaces or dashes.
pub fn postal_code(v: &mut Violations, field: &str, raw: &str) {
    if raw.is_empty()
        || raw.len() > 16
        || !raw
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b' ' || b == b'-')
    {
        v.add(field, "must be 1 to 16 letters, digits, spaces or dashes");
    }
}

/// A required position.
pub fn point(v: &mut Violations, field: &str, raw: Option<&common_pb::GeoPoint>) -> Option<Point> {
    match raw {
        None => {
            v.add(field, "is required");
            None
        }
        Some(p) => v.check(
            field,
            Point::parse(p.latitude_microdegrees, p.longitude_microdegrees),
        ),
    }
}

/// An optional position.
pub fn optional_point(
    v: &mut Violations,
    field: &str,
    raw: Option<&common_pb::GeoPoint>,
) -> Option<Point> {
    raw.and_then(|p| {
        v.check(
            field,
            Point::parse(p.latitude_microdegrees, p.longitude_microdegrees),
        )
    })
}

/// A required delivery method.
pub fn delivery_method(v: &mut Violations, field: &str, raw: i32) -> Option<DeliveryMethod> {
    v.check(field, DeliveryMethod::from_proto(raw))
}

/// A required payment method.
pub fn payment_method(v: &mut Violations, field: &str, raw: i32) -> Option<PaymentMethod> {
    v.check(field, PaymentMethod::from_proto(raw))
}

/// A list of distinct delivery methods, at most `max`.
pub fn delivery_methods(
    v: &mut Violations,
    field: &str,
    raw: &[i32],
    max: usize,
) -> Vec<DeliveryMethod> {
    distinct(v, field, raw, max, DeliveryMethod::from_proto)
}

/// A list of distinct payment methods, at most `max`.
pub fn payment_methods(
    v: &mut Violations,
    field: &str,
    raw: &[i32],
    max: usize,
) -> Vec<PaymentMethod> {
    distinct(v, field, raw, max, PaymentMethod::from_proto)
}

fn distinct<T: PartialEq + Copy>(
    v: &mut Violations,
    field: &str,
    raw: &[i32],
    max: usize,
    parse: impl Fn(i32) -> Result<T, String>,
) -> Vec<T> {
    if raw.len() > max {
        v.add(field, format!("must have at most {max} entries"));
        return Vec::new();
    }
    let mut out = Vec::new();
    for (i, value) in raw.iter().enumerate() {
        if let Some(parsed) = v.check(format!("{field}[{i}]"), parse(*value)) {
            if out.contains(&parsed) {
                v.add(format!("{field}[{i}]"), "is a duplicate");
            } else {
                out.push(parsed);
            }
        }
    }
    out
}

/// Money that must be present and not negative.
pub fn price(v: &mut Violations, field: &str, raw: Option<&common_pb::Money>) -> Option<Money> {
    let money = v.check_field(Money::from_proto_required(field, raw.cloned()))?;
    if money.amount_minor() < 0 {
        v.add(field, "must not be negative");
        return None;
    }
    Some(money)
}

/// Optional money that must not be negative when present.
pub fn optional_price(
    v: &mut Violations,
    field: &str,
    raw: Option<&common_pb::Money>,
) -> Option<Money> {
    raw.and_then(|raw| price(v, field, Some(raw)))
}

/// A local UTC offset in minutes.
pub fn utc_offset(v: &mut Violations, field: &str, raw: i32) {
    if !(-840..=840).contains(&raw) {
        v.add(field, "must be between -840 and 840 minutes");
    }
}
