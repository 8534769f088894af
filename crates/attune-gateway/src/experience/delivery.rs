//! The delivery part: delivery options, nearby pickup points and payment
//! methods for the cart, ranked for the customer by the delivery service (which
//! checks "personalization" itself before it uses learned preferences, and says
//! what it used).

use attune_kit::peer::within;
use attune_kit::types::DataCategory;
use attune_proto::delivery::v1 as delivery_pb;
use attune_proto::gateway::v1 as pb;

use super::backends::{DELIVERY, timed};
use super::request::Part;
use super::{Composition, status};

/// The nearest pickup points a page shows.
const PICKUP_POINTS: i32 = 3;

fn part(status: pb::PartStatus) -> pb::DeliveryPart {
    pb::DeliveryPart {
        status: Some(status),
        options: Vec::new(),
        pickup_points: Vec::new(),
        payment_methods: Vec::new(),
    }
}

pub(crate) async fn compose(page: &Composition<'_>) -> pb::DeliveryPart {
    let request = page.request;
    if !request.wants(Part::Delivery) {
        return part(status::omitted(DELIVERY, pb::PartReason::NotRequested));
    }
    let (Some(total), Some(location)) = (request.cart.total, request.location.clone()) else {
        return part(status::omitted(DELIVERY, pb::PartReason::NotApplicable));
    };
    let Some(mut client) = page.backends.delivery() else {
        return part(status::degraded(
            DELIVERY,
            pb::PartReason::ServiceUnavailable,
            "delivery is not deployed behind this gateway".into(),
        ));
    };
    let by_address = matches!(location, pb::delivery_location::Value::AddressId(_));
    let message = delivery_pb::GetDeliveryOptionsRequest {
        customer_id: page.customer.unwrap_or_default().to_owned(),
        location: Some(delivery_pb::Location {
            value: Some(backend_location(location)),
        }),
        cart: Some(delivery_pb::Cart {
            total: Some(total.to_proto()),
            items: request
                .cart
                .lines
                .iter()
                .map(|line| delivery_pb::CartItem {
                    item_id: line.item_id.clone(),
                    quantity: line.quantity,
                    unit_weight_grams: line.unit_weight_grams,
                })
                .collect(),
        }),
        max_pickup_points: PICKUP_POINTS,
        available_payment_methods: request
            .accepted_payment_methods
            .iter()
            .map(|method| method.to_proto().into())
            .collect(),
    };
    let budget = page.budget();
    let answer = within(budget, client.get_delivery_options(timed(message, budget))).await;
    if let Some(failure) = status::failure(DELIVERY, &answer) {
        return part(failure);
    }
    let answer = answer
        .answered()
        .expect("an outcome without a failure is an answer");
    let delivery_pb::GetDeliveryOptionsResponse {
        delivery_options,
        pickup_points,
        payment_methods,
        personalization,
        tier_benefits_status: _,
    } = answer;
    let personalization = personalization.unwrap_or_default();
    let mut categories: Vec<DataCategory> = personalization
        .data_categories
        .iter()
        .filter_map(|raw| DataCategory::from_proto(*raw).ok())
        .collect();
    if by_address {
        // The customer's saved address, used to deliver what they order.
        categories.push(DataCategory::Location);
    }
    let purposes: Vec<&str> = personalization
        .purpose_codes
        .iter()
        .map(String::as_str)
        .collect();
    pb::DeliveryPart {
        status: Some(status::ok(DELIVERY, &categories, &purposes)),
        options: delivery_options.into_iter().map(option_view).collect(),
        pickup_points: pickup_points.into_iter().map(pickup_point_view).collect(),
        payment_methods: payment_methods.into_iter().map(payment_view).collect(),
    }
}

fn backend_location(location: pb::delivery_location::Value) -> delivery_pb::location::Value {
    use delivery_pb::location::Value as Backend;
    match location {
        pb::delivery_location::Value::AddressId(id) => Backend::AddressId(id),
        pb::delivery_location::Value::Position(pb::GeoPosition {
            point,
            country_code,
        }) => Backend::GeoLocation(delivery_pb::GeoLocation {
            point,
            country_code,
        }),
        pb::delivery_location::Value::PostalArea(pb::PostalArea {
            country_code,
            postal_code,
        }) => Backend::PostalLocation(delivery_pb::PostalLocation {
            country_code,
            postal_code,
        }),
    }
}

fn option_view(option: delivery_pb::DeliveryOption) -> pb::DeliveryOptionView {
    let delivery_pb::DeliveryOption {
        method,
        rank,
        price,
        original_price,
        earliest_arrival_time,
        latest_arrival_time,
        pickup_point_id,
        distance_meters: _,
        next_slot: _,
        rate_id: _,
        reasons,
        quote_token,
        quote_expire_time,
    } = option;
    pb::DeliveryOptionView {
        method,
        rank,
        price,
        original_price,
        earliest_arrival_time,
        latest_arrival_time,
        pickup_point_id,
        reasons: reasons.into_iter().map(|reason| reason.text).collect(),
        quote_token,
        quote_expire_time,
    }
}

fn pickup_point_view(point: delivery_pb::NearbyPickupPoint) -> pb::PickupPointView {
    let delivery_pb::NearbyPickupPoint {
        pickup_point,
        distance_meters,
        preferred,
        open_now,
    } = point;
    let pickup_point = pickup_point.unwrap_or_default();
    pb::PickupPointView {
        pickup_point_id: pickup_point.pickup_point_id,
        display_name: pickup_point.display_name,
        distance_meters,
        preferred,
        open_now,
    }
}

fn payment_view(option: delivery_pb::PaymentMethodOption) -> pb::PaymentMethodView {
    let delivery_pb::PaymentMethodOption {
        method,
        rank,
        reason,
    } = option;
    use pb::PaymentMethodReason as View;
    let reason = match reason.map(|reason| delivery_pb::OptionReasonKind::try_from(reason.kind)) {
        Some(Ok(delivery_pb::OptionReasonKind::Preferred)) => View::Preferred,
        Some(Ok(delivery_pb::OptionReasonKind::UsualChoice)) => View::UsualChoice,
        Some(Ok(delivery_pb::OptionReasonKind::Default)) => View::Default,
        _ => View::Unspecified,
    };
    pb::PaymentMethodView {
        method,
        rank,
        reason: reason.into(),
    }
}
