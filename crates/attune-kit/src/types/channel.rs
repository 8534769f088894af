//! Where a customer interacted with the retailer.

wire_enum! {
    /// The channel through which a customer interacted with the retailer: where
    /// a consent decision was captured, where an event happened, or a channel a
    /// customer prefers (`attune.common.v1.Channel`).
    pub enum Channel mirrors Channel, a "channel" {
        /// The retailer's web shop.
        Web => "web",
        /// The retailer's mobile app.
        App => "app",
        /// A physical store, for example at the point of sale.
        Store => "store",
        /// E-mail, for example a link in a newsletter.
        Email => "email",
        /// The call centre or customer service desk.
        CallCentre => "call_centre",
        /// SMS or another text-messaging channel.
        Sms => "sms",
        /// A backend integration acting for the customer (a CRM import).
        Backend => "backend",
    }
}
