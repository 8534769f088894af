//! RecordOrderChoice: the choice a customer actually made at checkout, a
//! learning signal beside the purchases profile's feed reports. It lands in the
//! same table as the feed's choices (one row per customer and order, the later
//! report replacing the earlier), and only with the personalization grant: a
//! signal kept for learning is a personalization use.

use attune_kit::ApiError;
use attune_kit::consent::Reason;
use attune_kit::db::micros::to_micros;
use attune_kit::error::{Violations, checked};
use attune_kit::types::{DeliveryMethod, PaymentMethod, time};
use attune_proto::common::v1::NonPersonalizedReason;
use attune_proto::delivery::v1 as pb;
use sea_orm::sea_query::{OnConflict, Query};
use serde::{Deserialize, Serialize};

use crate::app::Delivery;
use crate::network::pickup_point;
use crate::options::consent_of;
use crate::slots;
use crate::store::Write;
use crate::validate;

#[derive(Serialize)]
struct ChoiceCommand<'a> {
    customer_id: &'a str,
    order_id: &'a str,
    delivery_method: Option<&'static str>,
    payment_method: Option<&'static str>,
    pickup_point_id: &'a str,
    slot_id: &'a str,
    order_micros: Option<i64>,
}

/// What a RecordOrderChoice answered, as remembered for its retries.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
struct Recorded {
    recorded: bool,
    not_recorded_reason: i32,
}

/// RecordOrderChoice.
pub async fn record(
    delivery: &Delivery,
    request: pb::RecordOrderChoiceRequest,
) -> Result<pb::RecordOrderChoiceResponse, ApiError> {
    let pb::RecordOrderChoiceRequest {
        customer_id,
        order_id,
        delivery_method,
        payment_method,
        pickup_point_id,
        slot_id,
        order_time,
        request_id,
    } = request;
    let now = delivery.clock.now();
    let mut v = Violations::default();
    let customer = validate::customer(&mut v, "customer_id", &customer_id);
    v.check(
        "order_id",
        attune_kit::types::printable_ascii(&order_id, 128),
    );
    if order_id.is_empty() {
        v.add("order_id", "is required");
    }
    let method = v
        .check(
            "delivery_method",
            DeliveryMethod::from_proto_optional(delivery_method),
        )
        .flatten();
    let payment = v
        .check(
            "payment_method",
            PaymentMethod::from_proto_optional(payment_method),
        )
        .flatten();
    if !pickup_point_id.is_empty() {
        validate::record_id(&mut v, "pickup_point_id", &pickup_point_id);
        if method.is_some_and(|m| !m.is_pickup()) {
            v.add("pickup_point_id", "must be empty for home methods");
        }
    }
    if !slot_id.is_empty() {
        validate::record_id(&mut v, "slot_id", &slot_id);
        if method.is_none() {
            v.add("slot_id", "needs delivery_method");
        }
    }
    if method.is_none() && payment.is_none() && pickup_point_id.is_empty() {
        v.add(
            "delivery_method",
            "a choice needs a delivery method, a payment method or a pickup point",
        );
    }
    let order_at = v
        .check("order_time", time::from_proto_optional(order_time))
        .flatten();
    if order_at.is_some_and(|t| t > now) {
        v.add("order_time", "must not be in the future");
    }
    let request_id = validate::request_id(&mut v, &request_id);
    v.finish()?;
    let (customer, request_id) = (checked(customer), checked(request_id));
    let command = ChoiceCommand {
        customer_id: customer.as_ref(),
        order_id: &order_id,
        delivery_method: method.map(DeliveryMethod::as_str),
        payment_method: payment.map(PaymentMethod::as_str),
        pickup_point_id: &pickup_point_id,
        slot_id: &slot_id,
        order_micros: order_at.map(to_micros),
    };
    // The grant is read before the write (a peer call never holds a
    // transaction); a withdrawal racing this call is the checker's one-second
    // freshness bound, as everywhere.
    let consent = consent_of(delivery, customer.as_ref()).await;
    let outcome = delivery
        .idempotent(
            "RecordOrderChoice",
            request_id.as_ref(),
            &command,
            async |txn| {
                if !consent.granted {
                    let why = match consent.reason {
                        Some(Reason::FreshnessUnconfirmed | Reason::Unavailable) => {
                            NonPersonalizedReason::ConsentUnavailable
                        }
                        _ => NonPersonalizedReason::NoConsent,
                    };
                    return Ok(Recorded {
                        recorded: false,
                        not_recorded_reason: why.into(),
                    });
                }
                if !pickup_point_id.is_empty()
                    && pickup_point(txn, &pickup_point_id).await?.is_none()
                {
                    return Err(ApiError::NotFound(format!(
                        "pickup point {pickup_point_id} not found"
                    )));
                }
                if !slot_id.is_empty() {
                    let Some(slot) = slots::slot(txn, &slot_id, now).await? else {
                        return Err(ApiError::NotFound(format!("slot {slot_id} not found")));
                    };
                    if method.is_some_and(|m| i32::from(m) != slot.method) {
                        return Err(ApiError::FailedPrecondition(format!(
                            "slot {slot_id} is not of the chosen delivery method"
                        )));
                    }
                }
                let nonempty = |s: &str| Some(s.to_owned()).filter(|s| !s.is_empty());
                Query::insert()
                    .into_table("delivery_order_choices")
                    .columns([
                        "customer_id",
                        "order_id",
                        "delivery_method",
                        "payment_method",
                        "pickup_point_id",
                        "slot_id",
                        "order_time",
                    ])
                    .values_panic([
                        customer.as_ref().into(),
                        order_id.clone().into(),
                        method.map(|m| m.as_str().to_owned()).into(),
                        payment.map(|p| p.as_str().to_owned()).into(),
                        nonempty(&pickup_point_id).into(),
                        nonempty(&slot_id).into(),
                        to_micros(order_at.unwrap_or(now)).into(),
                    ])
                    .on_conflict(
                        OnConflict::columns(["customer_id", "order_id"])
                            .update_columns([
                                "delivery_method",
                                "payment_method",
                                "pickup_point_id",
                                "slot_id",
                                "order_time",
                            ])
                            .to_owned(),
                    )
                    .to_owned()
                    .run(txn)
                    .await?;
                Ok(Recorded {
                    recorded: true,
                    not_recorded_reason: NonPersonalizedReason::Unspecified.into(),
                })
            },
        )
        .await?
        .into_inner();
    Ok(pb::RecordOrderChoiceResponse {
        recorded: outcome.recorded,
        not_recorded_reason: outcome.not_recorded_reason,
    })
}
