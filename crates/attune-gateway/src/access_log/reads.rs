//! Which RPCs read a customer's personal data, for what and which data: the
//! table the gateway's policy consults to record a call in the access log. An
//! RPC that names a customer is either a read here or listed in
//! [`NOT_RECORDED`] with the reason; a test fails for one that is neither.
//!
//! Purposes are consent purposes where the read needs consent
//! (`personalization`), and otherwise the processing purpose the customer's
//! contract or the law gives it: `customer_account`, `loyalty_program`,
//! `order_fulfilment`, `consent_management`.

use attune_kit::types::CustomerId;
use attune_kit::types::DataCategory::{
    self, Browsing, Demographics, Engagement, Identifiers, Location, Loyalty, Payment, Preferences,
    Purchases,
};

use super::{Access, Caller};

/// One RPC that reads a customer's data.
#[derive(Debug, PartialEq, Eq)]
pub struct Read {
    /// `package.Service/Method`.
    pub rpc: &'static str,
    /// What the data is read for.
    pub purposes: &'static [&'static str],
    /// The categories of data the answer carries; empty for consent decisions,
    /// which are the record of the customer's choices rather than data about them.
    pub categories: &'static [DataCategory],
}

impl Read {
    /// This read of `customer`'s data by `caller`, as the log records it.
    pub fn by(&self, caller: Caller, customer: CustomerId) -> Access {
        Access {
            customer,
            caller,
            rpc: self.rpc.to_owned(),
            purpose_codes: self.purposes.iter().map(|&code| code.to_owned()).collect(),
            data_categories: self.categories.to_vec(),
        }
    }
}

const fn read(
    rpc: &'static str,
    purposes: &'static [&'static str],
    categories: &'static [DataCategory],
) -> Read {
    Read {
        rpc,
        purposes,
        categories,
    }
}

const CONSENT: &[&str] = &["consent_management"];
const ACCOUNT: &[&str] = &["customer_account"];
const LOYALTY: &[&str] = &["loyalty_program"];
const FULFILMENT: &[&str] = &["order_fulfilment"];
const PERSONALIZATION: &[&str] = &["personalization"];
const FULFILMENT_PERSONALIZED: &[&str] = &["order_fulfilment", "personalization"];

/// Every RPC that reads a customer's data, by name.
pub const READS: &[Read] = &[
    read(
        "attune.consent.v1.ConsentService/GetConsentState",
        CONSENT,
        &[],
    ),
    read(
        "attune.consent.v1.ConsentService/ListConsentHistory",
        CONSENT,
        &[],
    ),
    read(
        "attune.consent.v1.ConsentService/CheckConsent",
        CONSENT,
        &[],
    ),
    read(
        "attune.profile.v1.ProfileService/GetProfile",
        ACCOUNT,
        &[Identifiers, Demographics, Preferences, Loyalty],
    ),
    read(
        "attune.profile.v1.ProfileService/ListMergedCustomerIds",
        ACCOUNT,
        &[Identifiers],
    ),
    read(
        "attune.profile.v1.ProfileService/GetZeroPartyData",
        ACCOUNT,
        &[Preferences, Demographics],
    ),
    read(
        "attune.profile.v1.EventService/ListEvents",
        ACCOUNT,
        &[Browsing, Purchases, Location, Engagement],
    ),
    read(
        "attune.profile.v1.EventService/GetTraits",
        PERSONALIZATION,
        &[Browsing, Purchases, Preferences],
    ),
    read(
        "attune.profile.v1.SegmentService/ListCustomerSegments",
        PERSONALIZATION,
        &[Browsing, Purchases],
    ),
    read(
        "attune.recommendation.v1.RecommendationService/GetRecommendations",
        PERSONALIZATION,
        &[Browsing, Purchases],
    ),
    read(
        "attune.recommendation.v1.RecommendationService/GetSimilarItems",
        PERSONALIZATION,
        &[Browsing, Purchases],
    ),
    read(
        "attune.recommendation.v1.RecommendationService/GetComplements",
        PERSONALIZATION,
        &[Browsing, Purchases],
    ),
    read(
        "attune.recommendation.v1.RecommendationService/RerankItems",
        PERSONALIZATION,
        &[Browsing, Purchases],
    ),
    read(
        "attune.recommendation.v1.RecommendationService/GetBuyAgain",
        PERSONALIZATION,
        &[Purchases],
    ),
    read(
        "attune.loyalty.v1.LoyaltyService/GetAccount",
        LOYALTY,
        &[Loyalty],
    ),
    read(
        "attune.loyalty.v1.LoyaltyService/ListStatement",
        LOYALTY,
        &[Loyalty, Purchases],
    ),
    read(
        "attune.loyalty.v1.LoyaltyService/ListUpcomingExpiries",
        LOYALTY,
        &[Loyalty],
    ),
    read(
        "attune.loyalty.v1.LoyaltyService/Simulate",
        LOYALTY,
        &[Loyalty],
    ),
    read(
        "attune.loyalty.v1.LoyaltyService/ListVouchers",
        LOYALTY,
        &[Loyalty],
    ),
    read(
        "attune.loyalty.v1.OfferService/ListOffers",
        PERSONALIZATION,
        &[Loyalty, Purchases, Preferences],
    ),
    read(
        "attune.loyalty.v1.OfferService/GetNextBestMessage",
        PERSONALIZATION,
        &[Loyalty, Purchases, Engagement],
    ),
    read(
        "attune.delivery.v1.DeliveryService/ListAddresses",
        FULFILMENT,
        &[Location],
    ),
    read(
        "attune.delivery.v1.DeliveryService/GetReservation",
        FULFILMENT,
        &[Location],
    ),
    read(
        "attune.delivery.v1.DeliveryService/GetDeliveryPreferences",
        FULFILMENT_PERSONALIZED,
        &[Location, Payment, Purchases],
    ),
    read(
        "attune.delivery.v1.DeliveryService/GetDeliveryOptions",
        FULFILMENT_PERSONALIZED,
        &[Location, Payment, Purchases, Loyalty],
    ),
    read(
        "attune.gateway.v1.GatewayService/GetPageExperience",
        PERSONALIZATION,
        &[
            Identifiers,
            Preferences,
            Browsing,
            Purchases,
            Loyalty,
            Location,
            Payment,
        ],
    ),
    read(
        "attune.gateway.v1.GatewayService/ExplainDataUse",
        CONSENT,
        &[],
    ),
];

/// RPCs that name a customer but are not recorded, each with the reason.
pub const NOT_RECORDED: &[(&str, &str)] = &[
    (
        "attune.gateway.v1.DataAccessService/ListDataAccess",
        "reading the log would add to it",
    ),
    (
        "attune.gateway.v1.DataSubjectRequestService/ExportCustomer",
        "recorded by the export itself",
    ),
    (
        "attune.gateway.v1.DataSubjectRequestService/EraseCustomer",
        "a write; consent's audit log records it",
    ),
    (
        "attune.gateway.v1.DataSubjectRequestService/GetDataSubjectRequest",
        "a request's status holds no personal data",
    ),
    (
        "attune.consent.v1.ConsentService/AuditDataSubjectRequest",
        "a write",
    ),
    ("attune.consent.v1.ConsentService/RecordConsent", "a write"),
    (
        "attune.consent.v1.ConsentService/ApplyGlobalPrivacyControl",
        "a write",
    ),
    ("attune.profile.v1.ProfileService/CreateProfile", "a write"),
    ("attune.profile.v1.ProfileService/LinkIdentity", "a write"),
    ("attune.profile.v1.ProfileService/UnlinkIdentity", "a write"),
    ("attune.profile.v1.ProfileService/MergeProfiles", "a write"),
    (
        "attune.profile.v1.ProfileService/SetZeroPartyData",
        "a write",
    ),
    ("attune.loyalty.v1.LoyaltyService/OpenAccount", "a write"),
    ("attune.loyalty.v1.LoyaltyService/RedeemPoints", "a write"),
    ("attune.loyalty.v1.LoyaltyService/AdjustPoints", "a write"),
    ("attune.loyalty.v1.LoyaltyService/RedeemReward", "a write"),
    (
        "attune.loyalty.v1.LoyaltyService/CancelRedemption",
        "a write",
    ),
    ("attune.loyalty.v1.LoyaltyService/UseVoucher", "a write"),
    ("attune.loyalty.v1.LoyaltyService/ReleaseVoucher", "a write"),
    (
        "attune.delivery.v1.DeliveryService/RecordOrderChoice",
        "a write",
    ),
    ("attune.loyalty.v1.OfferService/GenerateOffers", "a write"),
    ("attune.loyalty.v1.OfferService/UpdateOfferState", "a write"),
    ("attune.delivery.v1.DeliveryService/AddAddress", "a write"),
    (
        "attune.delivery.v1.DeliveryService/DeleteAddress",
        "a write",
    ),
    ("attune.delivery.v1.DeliveryService/ReserveSlot", "a write"),
    (
        "attune.delivery.v1.DeliveryService/ConfirmReservation",
        "a write",
    ),
    (
        "attune.delivery.v1.DeliveryService/ReleaseReservation",
        "a write",
    ),
    (
        "attune.delivery.v1.DeliveryService/UpdateDeliveryPreferences",
        "a write",
    ),
];

/// The read `rpc` (`package.Service/Method`) is, if it is one.
pub fn read_of(rpc: &str) -> Option<&'static Read> {
    READS.iter().find(|read| read.rpc == rpc)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use prost::Message as _;
    use prost_types::FileDescriptorSet;

    use super::*;

    /// Every `package.Service/Method` of Attune's public APIs whose request
    /// carries a `customer_id` at its top level.
    fn methods_naming_a_customer() -> (BTreeSet<String>, BTreeSet<String>) {
        let set = FileDescriptorSet::decode(attune_proto::FILE_DESCRIPTOR_SET)
            .expect("the build's descriptor set decodes");
        let mut naming = BTreeSet::new();
        let mut all = BTreeSet::new();
        for file in &set.file {
            let package = file.package();
            if !package.starts_with("attune.") || package == "attune.privacy.v1" {
                continue;
            }
            for service in &file.service {
                for method in &service.method {
                    let rpc = format!("{package}.{}/{}", service.name(), method.name());
                    let input = method.input_type().rsplit('.').next().unwrap_or_default();
                    let names_customer = file
                        .message_type
                        .iter()
                        .find(|message| message.name() == input)
                        .is_some_and(|message| {
                            message
                                .field
                                .iter()
                                .any(|field| field.name().contains("customer_id"))
                        });
                    if names_customer {
                        naming.insert(rpc.clone());
                    }
                    all.insert(rpc);
                }
            }
        }
        (naming, all)
    }

    #[test]
    fn every_rpc_naming_a_customer_is_a_read_or_says_why_it_is_not_recorded() {
        let (naming, _) = methods_naming_a_customer();
        let unclassified: Vec<_> = naming
            .iter()
            .filter(|rpc| {
                read_of(rpc).is_none() && !NOT_RECORDED.iter().any(|(name, _)| name == *rpc)
            })
            .collect();
        assert!(unclassified.is_empty(), "classify these: {unclassified:?}");
    }

    #[test]
    fn every_listed_rpc_exists_once() {
        let (_, all) = methods_naming_a_customer();
        let listed: Vec<_> = READS
            .iter()
            .map(|read| read.rpc)
            .chain(NOT_RECORDED.iter().map(|(rpc, _)| *rpc))
            .collect();
        let distinct: BTreeSet<_> = listed.iter().collect();
        assert_eq!(distinct.len(), listed.len(), "an RPC is listed twice");
        let unknown: Vec<_> = listed.iter().filter(|rpc| !all.contains(**rpc)).collect();
        assert!(unknown.is_empty(), "no such RPC: {unknown:?}");
    }
}
