//! `attune.privacy.v1.DataSubjectService` for delivery's data: export a
//! customer's addresses (decrypted), explicit preferences, reservations and
//! learned order choices; erase them, destroying the customer's data key first
//! so that any copy of their ciphertext left anywhere (a replica, a backup)
//! can no longer be read.

use attune_kit::ApiError;
use attune_kit::pagination::encode_page_token;
use attune_kit::privacy::{
    Erased, ExportRequest, Subject, no_linked_ids, parse_erase, struct_from_json,
};
use attune_proto::privacy::v1 as pb;
use attune_proto::privacy::v1::data_subject_service_server::DataSubjectService;
use sea_orm::sea_query::{Expr, ExprTrait, Query};
use tonic::{Request, Response, Status};

use crate::app::Delivery;
use crate::store::Write;
use crate::{addresses, preferences, reservations};

const SERVICE: &str = "attune.delivery.v1";

/// What erasure keeps, and why.
const RETAINED: &str = "the request log of the customer's retried writes (operation, request id, \
     a keyed HMAC-SHA-256 fingerprint of the content, and the ids of what the write created), \
     so that a retry is not applied twice; it holds no address, preference or choice";

/// Delivery's data-subject requests.
#[derive(Debug, Clone)]
pub struct DeliveryPrivacyApi {
    delivery: Delivery,
}

impl DeliveryPrivacyApi {
    /// The API over `delivery`.
    pub fn new(delivery: Delivery) -> Self {
        Self { delivery }
    }
}

/// Every record delivery holds about a customer, in a stable order.
async fn records(delivery: &Delivery, customer_id: &str) -> Result<Vec<pb::DataRecord>, ApiError> {
    let db = &delivery.db;
    let now = delivery.clock.now();
    let mut out = Vec::new();
    let record = |kind: &str, id: String, data: serde_json::Value| pb::DataRecord {
        kind: kind.to_owned(),
        id,
        update_time: None,
        data: Some(struct_from_json(data)),
    };
    for address in addresses::list(delivery, db, customer_id).await? {
        let postal = address.postal_address.clone().unwrap_or_default();
        out.push(record(
            "address",
            address.address_id.clone(),
            serde_json::json!({
                "address_id": address.address_id,
                "label": address.label,
                "recipient_name": address.recipient_name,
                "address_lines": postal.address_lines,
                "locality": postal.locality,
                "postal_code": postal.postal_code,
                "country_code": postal.country_code,
                "phone_number": address.phone_number,
                "delivery_instructions": address.delivery_instructions,
                "latitude_microdegrees": address.location.map(|l| l.latitude_microdegrees),
                "longitude_microdegrees": address.location.map(|l| l.longitude_microdegrees),
                "default_address": address.default_address,
            }),
        ));
    }
    let prefs = preferences::explicit(delivery, db, customer_id).await?;
    if prefs.update_time.is_some() {
        out.push(record(
            "preferences",
            customer_id.to_owned(),
            serde_json::json!({
                "preferred_delivery_methods": prefs.preferred_delivery_methods,
                "preferred_payment_methods": prefs.preferred_payment_methods,
                "preferred_pickup_point_id": prefs.preferred_pickup_point_id,
                "preferred_address_id": prefs.preferred_address_id,
                "preferred_time_windows": prefs.preferred_time_windows.iter().map(|w| serde_json::json!({
                    "days": w.days, "start_minute": w.start_minute, "end_minute": w.end_minute,
                })).collect::<Vec<_>>(),
                "contactless_delivery": prefs.contactless_delivery,
                "delivery_instructions": prefs.delivery_instructions,
            }),
        ));
    }
    for r in reservations::of_customer(db, customer_id, now).await? {
        out.push(record(
            "reservation",
            r.reservation_id.clone(),
            serde_json::json!({
                "reservation_id": r.reservation_id,
                "slot_id": r.slot_id,
                "state": r.state().as_str_name(),
                "order_id": r.order_id,
            }),
        ));
    }
    for choice in preferences::choices_json(db, customer_id).await? {
        let id = choice["order_id"].as_str().unwrap_or_default().to_owned();
        out.push(record("order_choice", id, choice));
    }
    Ok(out)
}

/// Deletes everything about `customer_id`: the data key first.
async fn erase_in(txn: &sea_orm::DatabaseTransaction, customer_id: &str) -> Result<u64, ApiError> {
    // Reservations give their units back to their slots' counters.
    let mut erased = reservations::erase(txn, customer_id).await?;
    for table in [
        "delivery_data_keys",
        "delivery_addresses",
        "delivery_preferences",
        "delivery_order_choices",
    ] {
        erased += Query::delete()
            .from_table(table)
            .and_where(Expr::col("customer_id").eq(customer_id))
            .to_owned()
            .run(txn)
            .await?;
    }
    Ok(erased)
}

#[tonic::async_trait]
impl DataSubjectService for DeliveryPrivacyApi {
    async fn export_customer_data(
        &self,
        request: Request<pb::ExportCustomerDataRequest>,
    ) -> Result<Response<pb::ExportCustomerDataResponse>, Status> {
        let ExportRequest {
            customer,
            request_id,
            limit,
            after,
        } = ExportRequest::parse(request.into_inner(), |c| c.parse::<usize>().ok())?;
        if after.is_none() {
            self.delivery
                .idempotent(
                    "ExportCustomerData",
                    request_id.as_ref(),
                    &Subject {
                        customer_id: customer.as_ref(),
                    },
                    async |_| Ok::<(), ApiError>(()),
                )
                .await?;
        }
        let all = records(&self.delivery, customer.as_ref()).await?;
        let start = after.unwrap_or(0).min(all.len());
        let end = start.saturating_add(limit as usize).min(all.len());
        let next_page_token = if end < all.len() {
            encode_page_token(&end.to_string())
        } else {
            String::new()
        };
        Ok(Response::new(pb::ExportCustomerDataResponse {
            service: SERVICE.to_owned(),
            records: all[start..end].to_vec(),
            next_page_token,
        }))
    }

    async fn erase_customer(
        &self,
        request: Request<pb::EraseCustomerRequest>,
    ) -> Result<Response<pb::EraseCustomerResponse>, Status> {
        let (customer, request_id) = parse_erase(request.into_inner())?;
        let now = self.delivery.clock.now();
        let erased = self
            .delivery
            .idempotent(
                "EraseCustomer",
                request_id.as_ref(),
                &Subject {
                    customer_id: customer.as_ref(),
                },
                async |txn| {
                    let count = erase_in(txn, customer.as_ref()).await?;
                    Ok(Erased::new(count, now))
                },
            )
            .await?
            .into_inner();
        Ok(Response::new(
            erased.response(SERVICE, vec![RETAINED.to_owned()]),
        ))
    }

    async fn list_linked_customer_ids(
        &self,
        request: Request<pb::ListLinkedCustomerIdsRequest>,
    ) -> Result<Response<pb::ListLinkedCustomerIdsResponse>, Status> {
        // Links no ids: merges move this service's data to the survivor.
        Ok(Response::new(no_linked_ids(request.into_inner())?))
    }
}
