//! The categories of personal data that consent purposes declare.

wire_enum! {
    /// A category of personal data (`attune.common.v1.DataCategory`): purposes
    /// declare the categories they use, and personalized answers name the
    /// categories they used.
    pub enum DataCategory mirrors DataCategory, a "data category" {
        /// Identifiers linking a person across channels.
        Identifiers => "identifiers",
        /// Contact details: e-mail address, phone number.
        Contact => "contact",
        /// Demographics the customer chose to share: age band, birthday.
        Demographics => "demographics",
        /// Zero-party preferences: sizes, favourite categories.
        Preferences => "preferences",
        /// Browsing and search behaviour.
        Browsing => "browsing",
        /// Orders, returns and their amounts.
        Purchases => "purchases",
        /// Postal addresses and approximate location.
        Location => "location",
        /// Loyalty membership, points and tier.
        Loyalty => "loyalty",
        /// Payment method preferences (never payment details).
        Payment => "payment",
        /// Engagement with messages: e-mail opens and clicks.
        Engagement => "engagement",
        /// Device and technical data: user agent, app version.
        Device => "device",
    }
}
