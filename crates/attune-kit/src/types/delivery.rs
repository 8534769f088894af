//! How an order reaches the customer.

wire_enum! {
    /// How an order reaches the customer (`attune.common.v1.DeliveryMethod`).
    pub enum DeliveryMethod mirrors DeliveryMethod, a "delivery method" {
        /// Standard home delivery by a carrier.
        HomeStandard => "home_standard",
        /// Home delivery on the day after the order.
        HomeNextDay => "home_next_day",
        /// Home delivery on the day of the order.
        HomeSameDay => "home_same_day",
        /// Home delivery in a time slot the customer chose.
        HomeScheduled => "home_scheduled",
        /// Collection from a parcel shop or locker.
        PickupPoint => "pickup_point",
        /// Collection in one of the retailer's stores (click and collect).
        StorePickup => "store_pickup",
    }
}

impl DeliveryMethod {
    /// Whether the customer collects the order rather than receiving it at an
    /// address: a pickup method needs a pickup point, a home method an address.
    pub fn is_pickup(self) -> bool {
        matches!(self, Self::PickupPoint | Self::StorePickup)
    }
}

#[cfg(test)]
mod tests {
    use super::DeliveryMethod;

    #[test]
    fn only_collection_methods_are_pickups() {
        let pickups: Vec<_> = DeliveryMethod::ALL
            .iter()
            .copied()
            .filter(|method| method.is_pickup())
            .collect();
        assert_eq!(
            pickups,
            [DeliveryMethod::PickupPoint, DeliveryMethod::StorePickup]
        );
    }
}
