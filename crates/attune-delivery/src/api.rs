//! `attune.delivery.v1.DeliveryService`: each RPC hands its request to the
//! module that parses and serves it, and converts the answer back.

use attune_proto::delivery::v1 as pb;
use attune_proto::delivery::v1::delivery_service_server::DeliveryService;
use tonic::{Request, Response, Status};

use crate::app::Delivery;
use crate::network::Upserted;
use crate::{addresses, choices, network, options, preferences, reservations, slots};

/// The public delivery API.
#[derive(Debug, Clone)]
pub struct DeliveryApi {
    delivery: Delivery,
}

impl DeliveryApi {
    /// The API over `delivery`.
    pub fn new(delivery: Delivery) -> Self {
        Self { delivery }
    }
}

type Answer<T> = Result<Response<T>, Status>;

fn ok<T>(value: T) -> Answer<T> {
    Ok(Response::new(value))
}

fn counts(upserted: Upserted) -> (i32, i32) {
    (upserted.created, upserted.updated)
}

#[tonic::async_trait]
impl DeliveryService for DeliveryApi {
    async fn add_address(
        &self,
        request: Request<pb::AddAddressRequest>,
    ) -> Answer<pb::AddAddressResponse> {
        let address = addresses::add(&self.delivery, request.into_inner()).await?;
        ok(pb::AddAddressResponse {
            address: Some(address),
        })
    }

    async fn delete_address(
        &self,
        request: Request<pb::DeleteAddressRequest>,
    ) -> Answer<pb::DeleteAddressResponse> {
        addresses::delete(&self.delivery, request.into_inner()).await?;
        ok(pb::DeleteAddressResponse {})
    }

    async fn list_addresses(
        &self,
        request: Request<pb::ListAddressesRequest>,
    ) -> Answer<pb::ListAddressesResponse> {
        let addresses = addresses::list_api(&self.delivery, request.into_inner()).await?;
        ok(pb::ListAddressesResponse { addresses })
    }

    async fn upsert_pickup_points(
        &self,
        request: Request<pb::UpsertPickupPointsRequest>,
    ) -> Answer<pb::UpsertPickupPointsResponse> {
        let (created_count, updated_count) =
            counts(network::upsert_pickup_points(&self.delivery, request.into_inner()).await?);
        ok(pb::UpsertPickupPointsResponse {
            created_count,
            updated_count,
        })
    }

    async fn list_pickup_points(
        &self,
        request: Request<pb::ListPickupPointsRequest>,
    ) -> Answer<pb::ListPickupPointsResponse> {
        ok(network::list_pickup_points(&self.delivery, request.into_inner()).await?)
    }

    async fn find_nearest_pickup_points(
        &self,
        request: Request<pb::FindNearestPickupPointsRequest>,
    ) -> Answer<pb::FindNearestPickupPointsResponse> {
        let pickup_points = options::nearest(&self.delivery, request.into_inner()).await?;
        ok(pb::FindNearestPickupPointsResponse { pickup_points })
    }

    async fn upsert_shipping_rates(
        &self,
        request: Request<pb::UpsertShippingRatesRequest>,
    ) -> Answer<pb::UpsertShippingRatesResponse> {
        let (created_count, updated_count) =
            counts(network::upsert_rates(&self.delivery, request.into_inner()).await?);
        ok(pb::UpsertShippingRatesResponse {
            created_count,
            updated_count,
        })
    }

    async fn upsert_slots(
        &self,
        request: Request<pb::UpsertSlotsRequest>,
    ) -> Answer<pb::UpsertSlotsResponse> {
        let (created_count, updated_count) =
            counts(slots::upsert_slots(&self.delivery, request.into_inner()).await?);
        ok(pb::UpsertSlotsResponse {
            created_count,
            updated_count,
        })
    }

    async fn upsert_payment_method_rules(
        &self,
        request: Request<pb::UpsertPaymentMethodRulesRequest>,
    ) -> Answer<pb::UpsertPaymentMethodRulesResponse> {
        let (created_count, updated_count) =
            counts(network::upsert_payment_rules(&self.delivery, request.into_inner()).await?);
        ok(pb::UpsertPaymentMethodRulesResponse {
            created_count,
            updated_count,
        })
    }

    async fn reserve_slot(
        &self,
        request: Request<pb::ReserveSlotRequest>,
    ) -> Answer<pb::ReserveSlotResponse> {
        ok(reservations::reserve(&self.delivery, request.into_inner()).await?)
    }

    async fn confirm_reservation(
        &self,
        request: Request<pb::ConfirmReservationRequest>,
    ) -> Answer<pb::ConfirmReservationResponse> {
        let reservation = reservations::confirm(&self.delivery, request.into_inner()).await?;
        ok(pb::ConfirmReservationResponse {
            reservation: Some(reservation),
        })
    }

    async fn release_reservation(
        &self,
        request: Request<pb::ReleaseReservationRequest>,
    ) -> Answer<pb::ReleaseReservationResponse> {
        let reservation = reservations::release(&self.delivery, request.into_inner()).await?;
        ok(pb::ReleaseReservationResponse {
            reservation: Some(reservation),
        })
    }

    async fn get_reservation(
        &self,
        request: Request<pb::GetReservationRequest>,
    ) -> Answer<pb::GetReservationResponse> {
        ok(reservations::get(&self.delivery, request.into_inner()).await?)
    }

    async fn get_delivery_preferences(
        &self,
        request: Request<pb::GetDeliveryPreferencesRequest>,
    ) -> Answer<pb::GetDeliveryPreferencesResponse> {
        ok(preferences::get(&self.delivery, request.into_inner()).await?)
    }

    async fn update_delivery_preferences(
        &self,
        request: Request<pb::UpdateDeliveryPreferencesRequest>,
    ) -> Answer<pb::UpdateDeliveryPreferencesResponse> {
        let preferences = preferences::update(&self.delivery, request.into_inner()).await?;
        ok(pb::UpdateDeliveryPreferencesResponse {
            preferences: Some(preferences),
        })
    }

    async fn get_delivery_options(
        &self,
        request: Request<pb::GetDeliveryOptionsRequest>,
    ) -> Answer<pb::GetDeliveryOptionsResponse> {
        ok(options::options(&self.delivery, request.into_inner()).await?)
    }

    async fn list_available_slots(
        &self,
        request: Request<pb::ListAvailableSlotsRequest>,
    ) -> Answer<pb::ListAvailableSlotsResponse> {
        ok(slots::list_available(&self.delivery, request.into_inner()).await?)
    }

    async fn record_order_choice(
        &self,
        request: Request<pb::RecordOrderChoiceRequest>,
    ) -> Answer<pb::RecordOrderChoiceResponse> {
        ok(choices::record(&self.delivery, request.into_inner()).await?)
    }
}
