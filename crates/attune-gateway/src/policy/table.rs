//! The policy table: one rule for every RPC the public port answers, next to
//! the routing. A method without a rule is refused (PERMISSION_DENIED), so a new
//! RPC cannot be reached until someone decides who may call it; the unit tests
//! below read `attune_proto::FILE_DESCRIPTOR_SET` and fail when a public method
//! has no rule, when a rule names no method, or when a request field that names
//! a customer (`customer_id`, `events[].customer_id`, ...) is not declared.
//!
//! Scopes are OAuth-style strings granted by the token issuer (or an API key's
//! configuration). `admin` grants every scope to a service or staff principal,
//! never to a customer.

/// The scopes the table uses, each a capability a token or API key grants.
pub mod scope {
    /// Read a customer's profile, identities, events, traits and segments.
    pub const PROFILE_READ: &str = "profile.read";
    /// Create and change a customer's profile, identities and zero-party data.
    pub const PROFILE_WRITE: &str = "profile.write";
    /// Send behavioural events.
    pub const EVENTS_WRITE: &str = "events.write";
    /// Read consent state, history and the purposes catalogue.
    pub const CONSENT_READ: &str = "consent.read";
    /// Record consent decisions and privacy signals.
    pub const CONSENT_WRITE: &str = "consent.write";
    /// Read recommendations and the item catalogue.
    pub const RECOMMENDATION_READ: &str = "recommendation.read";
    /// Read a loyalty account, statement, offers, tiers and rewards.
    pub const LOYALTY_READ: &str = "loyalty.read";
    /// Enrol in loyalty and mark offers seen or used.
    pub const LOYALTY_WRITE: &str = "loyalty.write";
    /// Spend points and rewards.
    pub const LOYALTY_REDEEM: &str = "loyalty.redeem";
    /// Read addresses, preferences, reservations, options and pickup points.
    pub const DELIVERY_READ: &str = "delivery.read";
    /// Change addresses and preferences, reserve slots.
    pub const DELIVERY_WRITE: &str = "delivery.write";
    /// Read a page's whole experience.
    pub const EXPERIENCE_READ: &str = "experience.read";
    /// Export a customer's data (Art. 15/20).
    pub const PRIVACY_EXPORT: &str = "privacy.export";
    /// Erase a customer everywhere (Art. 17).
    pub const PRIVACY_ERASE: &str = "privacy.erase";
    /// A store associate's device: the in-store view of a customer at the till.
    pub const STORE_CLIENTELING: &str = "store.clienteling";
    /// Operators and back-office services: rules, catalogues, the delivery
    /// network, feeds, bulk reads, model training. Implies every other scope
    /// for a service or staff principal.
    pub const ADMIN: &str = "admin";
}

use scope::*;

/// Who may call a method and what it is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// No credentials needed: health and reflection, which load balancers and
    /// tools call and which reveal nothing about anyone.
    Open,
    /// No customer's data: catalogues and public configuration. Any
    /// authenticated principal holding one of `scopes`.
    Catalogue {
        /// Any one of these is enough.
        scopes: &'static [&'static str],
    },
    /// One or more customers' data, named by the request fields `ids` (dotted
    /// paths through nested and repeated messages). A customer principal may
    /// name only itself and the anonymous ids merged into it.
    Customer {
        /// Any one of these is enough.
        scopes: &'static [&'static str],
        /// Where the request names customers.
        ids: &'static [&'static str],
        /// Whether a customer principal may send no id at all (a visitor's
        /// non-personalized answer); otherwise it must name itself.
        visitors: bool,
        /// Fields that address a customer some other way (an identity such as a
        /// loyalty card): a customer principal may not set them.
        not_for_customers: &'static [&'static str],
    },
    /// Operators, services and staff devices only, never a customer principal:
    /// rules, catalogues' writes, the delivery network, feeds, bulk reads.
    Operator {
        /// Any one of these is enough.
        scopes: &'static [&'static str],
        /// Where the request names customers (for per-customer rate limits and
        /// privacy signals; no object-level check applies).
        ids: &'static [&'static str],
    },
}

impl Access {
    /// The fields naming customers, whatever the access.
    pub fn ids(&self) -> &'static [&'static str] {
        match self {
            Self::Customer { ids, .. } | Self::Operator { ids, .. } => ids,
            Self::Open | Self::Catalogue { .. } => &[],
        }
    }

    /// The scopes of which a caller needs one (none for [`Access::Open`]).
    pub fn scopes(&self) -> &'static [&'static str] {
        match self {
            Self::Catalogue { scopes }
            | Self::Customer { scopes, .. }
            | Self::Operator { scopes, .. } => scopes,
            Self::Open => &[],
        }
    }
}

/// One method's rule.
#[derive(Debug, Clone, Copy)]
pub struct Rule {
    /// `package.Service/Method`, as in the call's path without its leading `/`.
    pub method: &'static str,
    /// Who may call it.
    pub access: Access,
}

const fn open(method: &'static str) -> Rule {
    Rule {
        method,
        access: Access::Open,
    }
}

const fn catalogue(method: &'static str, scopes: &'static [&'static str]) -> Rule {
    Rule {
        method,
        access: Access::Catalogue { scopes },
    }
}

/// A method about the customer named at `customer_id`, who must be the caller
/// when the caller is a customer.
const fn own(method: &'static str, scopes: &'static [&'static str]) -> Rule {
    customer(method, scopes, &["customer_id"])
}

const fn customer(
    method: &'static str,
    scopes: &'static [&'static str],
    ids: &'static [&'static str],
) -> Rule {
    Rule {
        method,
        access: Access::Customer {
            scopes,
            ids,
            visitors: false,
            not_for_customers: &[],
        },
    }
}

/// A method a visitor may call without an id; an id given must be the caller's.
const fn own_or_visitor(
    method: &'static str,
    scopes: &'static [&'static str],
    ids: &'static [&'static str],
) -> Rule {
    Rule {
        method,
        access: Access::Customer {
            scopes,
            ids,
            visitors: true,
            not_for_customers: &[],
        },
    }
}

const fn admin(method: &'static str) -> Rule {
    admin_about(method, &[])
}

const fn admin_about(method: &'static str, ids: &'static [&'static str]) -> Rule {
    Rule {
        method,
        access: Access::Operator {
            scopes: &[ADMIN],
            ids,
        },
    }
}

/// Events name their customer by id or by an identity (a loyalty card); a
/// customer may send events only under its own id.
const EVENT_ACCESS: Access = Access::Customer {
    scopes: &[EVENTS_WRITE],
    ids: &["events.customer_id", "events.resolved_customer_id"],
    visitors: false,
    not_for_customers: &["events.identity"],
};

/// Streams that follow changes for as long as the caller listens (watches and
/// feeds). Each holds a place among the long-lived streams, not among the
/// calls in progress, so open watches never starve unary calls. Every other
/// stream ends on its own (an export, an ingestion stream) and counts as a
/// call in progress until its last message; a unit test fails for a
/// server-streaming method in neither list.
pub static LONG_LIVED: &[&str] = &[
    "grpc.health.v1.Health/Watch",
    "attune.consent.v1.ConsentService/WatchConsentChanges",
    "attune.profile.v1.EventService/StreamEvents",
];

/// Server-streaming methods whose answer ends on its own.
pub static BOUNDED_STREAMS: &[&str] = &[
    "attune.gateway.v1.DataSubjectRequestService/ExportCustomer",
    "attune.profile.v1.EventService/IngestEventStream",
];

/// Every RPC reachable on the public port. Grouped by service, in the order of
/// the `.proto` files.
pub static RULES: &[Rule] = &[
    // Health and reflection: what probes and grpcurl need.
    open("grpc.health.v1.Health/Check"),
    open("grpc.health.v1.Health/Watch"),
    open("grpc.reflection.v1.ServerReflection/ServerReflectionInfo"),
    open("grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo"),
    // Consent.
    admin("attune.consent.v1.ConsentService/CreatePurpose"),
    admin("attune.consent.v1.ConsentService/UpdatePurpose"),
    catalogue(
        "attune.consent.v1.ConsentService/GetPurpose",
        &[CONSENT_READ],
    ),
    catalogue(
        "attune.consent.v1.ConsentService/ListPurposes",
        &[CONSENT_READ],
    ),
    own(
        "attune.consent.v1.ConsentService/RecordConsent",
        &[CONSENT_WRITE],
    ),
    own(
        "attune.consent.v1.ConsentService/GetConsentState",
        &[CONSENT_READ],
    ),
    own(
        "attune.consent.v1.ConsentService/ListConsentHistory",
        &[CONSENT_READ],
    ),
    own(
        "attune.consent.v1.ConsentService/CheckConsent",
        &[CONSENT_READ],
    ),
    admin("attune.consent.v1.ConsentService/WatchConsentChanges"),
    admin("attune.consent.v1.ConsentService/ListExpiringConsents"),
    own(
        "attune.consent.v1.ConsentService/ApplyGlobalPrivacyControl",
        &[CONSENT_WRITE],
    ),
    admin("attune.consent.v1.ConsentService/VerifyAuditLog"),
    admin_about(
        "attune.consent.v1.ConsentService/AuditDataSubjectRequest",
        &["customer_id"],
    ),
    // Profile.
    own_or_visitor(
        "attune.profile.v1.ProfileService/CreateProfile",
        &[PROFILE_WRITE],
        &["customer_id"],
    ),
    own(
        "attune.profile.v1.ProfileService/GetProfile",
        &[PROFILE_READ],
    ),
    customer(
        "attune.profile.v1.ProfileService/UpdateProfile",
        &[PROFILE_WRITE],
        &["profile.customer_id", "profile.merged_customer_ids"],
    ),
    own(
        "attune.profile.v1.ProfileService/ListMergedCustomerIds",
        &[PROFILE_READ],
    ),
    // Finds a customer by an identity: services. A store device identifies
    // the customer at its till through the STORE page, which sees only what
    // the customer allowed staff to see; the profile itself is not for it.
    Rule {
        method: "attune.profile.v1.ProfileService/LookupProfile",
        access: Access::Operator {
            scopes: &[PROFILE_READ],
            ids: &[],
        },
    },
    own(
        "attune.profile.v1.ProfileService/LinkIdentity",
        &[PROFILE_WRITE],
    ),
    own(
        "attune.profile.v1.ProfileService/UnlinkIdentity",
        &[PROFILE_WRITE],
    ),
    customer(
        "attune.profile.v1.ProfileService/MergeProfiles",
        &[PROFILE_WRITE],
        &["source_customer_id", "target_customer_id"],
    ),
    own(
        "attune.profile.v1.ProfileService/SetZeroPartyData",
        &[PROFILE_WRITE],
    ),
    own(
        "attune.profile.v1.ProfileService/GetZeroPartyData",
        &[PROFILE_READ],
    ),
    Rule {
        method: "attune.profile.v1.EventService/IngestEvents",
        access: EVENT_ACCESS,
    },
    Rule {
        method: "attune.profile.v1.EventService/IngestEventStream",
        access: EVENT_ACCESS,
    },
    own("attune.profile.v1.EventService/ListEvents", &[PROFILE_READ]),
    admin("attune.profile.v1.EventService/StreamEvents"),
    own("attune.profile.v1.EventService/GetTraits", &[PROFILE_READ]),
    admin("attune.profile.v1.SegmentService/CreateSegment"),
    admin("attune.profile.v1.SegmentService/UpdateSegment"),
    admin("attune.profile.v1.SegmentService/GetSegment"),
    admin("attune.profile.v1.SegmentService/ListSegments"),
    admin("attune.profile.v1.SegmentService/DeleteSegment"),
    admin("attune.profile.v1.SegmentService/PreviewSegment"),
    own(
        "attune.profile.v1.SegmentService/ListCustomerSegments",
        &[PROFILE_READ],
    ),
    admin("attune.profile.v1.SegmentService/ListSegmentMembers"),
    // Recommendation.
    admin("attune.recommendation.v1.RecommendationService/UpsertItems"),
    admin("attune.recommendation.v1.RecommendationService/DeleteItems"),
    catalogue(
        "attune.recommendation.v1.RecommendationService/GetItem",
        &[RECOMMENDATION_READ],
    ),
    catalogue(
        "attune.recommendation.v1.RecommendationService/ListItems",
        &[RECOMMENDATION_READ],
    ),
    own_or_visitor(
        "attune.recommendation.v1.RecommendationService/GetRecommendations",
        &[RECOMMENDATION_READ],
        &["customer_id"],
    ),
    own_or_visitor(
        "attune.recommendation.v1.RecommendationService/GetSimilarItems",
        &[RECOMMENDATION_READ],
        &["customer_id"],
    ),
    own_or_visitor(
        "attune.recommendation.v1.RecommendationService/GetComplements",
        &[RECOMMENDATION_READ],
        &["customer_id"],
    ),
    own_or_visitor(
        "attune.recommendation.v1.RecommendationService/RerankItems",
        &[RECOMMENDATION_READ],
        &["customer_id"],
    ),
    admin("attune.recommendation.v1.RecommendationService/ListRetargetingAudiences"),
    admin("attune.recommendation.v1.RecommendationService/ListAudienceMembers"),
    own(
        "attune.recommendation.v1.RecommendationService/GetBuyAgain",
        &[RECOMMENDATION_READ],
    ),
    admin("attune.recommendation.v1.RecommendationService/TrainModel"),
    admin("attune.recommendation.v1.RecommendationService/GetModelStatus"),
    admin("attune.recommendation.v1.RecommendationService/PutExperiment"),
    admin("attune.recommendation.v1.RecommendationService/GetExperimentReport"),
    // Loyalty.
    own(
        "attune.loyalty.v1.LoyaltyService/OpenAccount",
        &[LOYALTY_WRITE],
    ),
    own(
        "attune.loyalty.v1.LoyaltyService/GetAccount",
        &[LOYALTY_READ],
    ),
    own(
        "attune.loyalty.v1.LoyaltyService/ListStatement",
        &[LOYALTY_READ],
    ),
    own(
        "attune.loyalty.v1.LoyaltyService/ListUpcomingExpiries",
        &[LOYALTY_READ],
    ),
    own(
        "attune.loyalty.v1.LoyaltyService/RedeemPoints",
        &[LOYALTY_REDEEM],
    ),
    admin_about(
        "attune.loyalty.v1.LoyaltyService/AdjustPoints",
        &["customer_id"],
    ),
    admin_about(
        "attune.loyalty.v1.LoyaltyService/BulkAdjustPoints",
        &["adjustments.customer_id"],
    ),
    admin("attune.loyalty.v1.LoyaltyService/RunScheduledWork"),
    admin("attune.loyalty.v1.LoyaltyService/PutEarnRule"),
    admin("attune.loyalty.v1.LoyaltyService/ListEarnRules"),
    own("attune.loyalty.v1.LoyaltyService/Simulate", &[LOYALTY_READ]),
    admin("attune.loyalty.v1.LoyaltyService/PutTiers"),
    catalogue(
        "attune.loyalty.v1.LoyaltyService/ListTiers",
        &[LOYALTY_READ],
    ),
    admin("attune.loyalty.v1.LoyaltyService/PutReward"),
    catalogue(
        "attune.loyalty.v1.LoyaltyService/ListRewards",
        &[LOYALTY_READ],
    ),
    own(
        "attune.loyalty.v1.LoyaltyService/RedeemReward",
        &[LOYALTY_REDEEM],
    ),
    own(
        "attune.loyalty.v1.LoyaltyService/ListVouchers",
        &[LOYALTY_READ],
    ),
    own(
        "attune.loyalty.v1.LoyaltyService/CancelRedemption",
        &[LOYALTY_REDEEM],
    ),
    // Checkout spends and gives back a customer's voucher.
    own(
        "attune.loyalty.v1.LoyaltyService/UseVoucher",
        &[LOYALTY_REDEEM],
    ),
    own(
        "attune.loyalty.v1.LoyaltyService/ReleaseVoucher",
        &[LOYALTY_REDEEM],
    ),
    admin("attune.loyalty.v1.OfferService/PutOfferRule"),
    admin("attune.loyalty.v1.OfferService/ListOfferRules"),
    admin_about(
        "attune.loyalty.v1.OfferService/GenerateOffers",
        &["customer_id"],
    ),
    own("attune.loyalty.v1.OfferService/ListOffers", &[LOYALTY_READ]),
    own(
        "attune.loyalty.v1.OfferService/UpdateOfferState",
        &[LOYALTY_WRITE],
    ),
    admin_about(
        "attune.loyalty.v1.OfferService/GetNextBestMessage",
        &["customer_id"],
    ),
    admin("attune.loyalty.v1.OfferService/ListDueMessages"),
    admin_about(
        "attune.loyalty.v1.OfferService/ReportSentMessages",
        &["messages.customer_id"],
    ),
    // Delivery.
    own(
        "attune.delivery.v1.DeliveryService/AddAddress",
        &[DELIVERY_WRITE],
    ),
    own(
        "attune.delivery.v1.DeliveryService/DeleteAddress",
        &[DELIVERY_WRITE],
    ),
    own(
        "attune.delivery.v1.DeliveryService/ListAddresses",
        &[DELIVERY_READ],
    ),
    admin("attune.delivery.v1.DeliveryService/UpsertPickupPoints"),
    catalogue(
        "attune.delivery.v1.DeliveryService/ListPickupPoints",
        &[DELIVERY_READ],
    ),
    catalogue(
        "attune.delivery.v1.DeliveryService/FindNearestPickupPoints",
        &[DELIVERY_READ],
    ),
    admin("attune.delivery.v1.DeliveryService/UpsertShippingRates"),
    admin("attune.delivery.v1.DeliveryService/UpsertSlots"),
    admin("attune.delivery.v1.DeliveryService/UpsertPaymentMethodRules"),
    own(
        "attune.delivery.v1.DeliveryService/ReserveSlot",
        &[DELIVERY_WRITE],
    ),
    own(
        "attune.delivery.v1.DeliveryService/ConfirmReservation",
        &[DELIVERY_WRITE],
    ),
    own(
        "attune.delivery.v1.DeliveryService/ReleaseReservation",
        &[DELIVERY_WRITE],
    ),
    own(
        "attune.delivery.v1.DeliveryService/GetReservation",
        &[DELIVERY_READ],
    ),
    // The slot calendar is the retailer's, not a customer's.
    catalogue(
        "attune.delivery.v1.DeliveryService/ListAvailableSlots",
        &[DELIVERY_READ],
    ),
    own(
        "attune.delivery.v1.DeliveryService/RecordOrderChoice",
        &[DELIVERY_WRITE],
    ),
    own(
        "attune.delivery.v1.DeliveryService/GetDeliveryPreferences",
        &[DELIVERY_READ],
    ),
    own(
        "attune.delivery.v1.DeliveryService/UpdateDeliveryPreferences",
        &[DELIVERY_WRITE],
    ),
    own_or_visitor(
        "attune.delivery.v1.DeliveryService/GetDeliveryOptions",
        &[DELIVERY_READ],
        &["customer_id"],
    ),
    // The gateway's own services. A customer may export or erase only itself
    // and only with the scope, which the identity provider grants to its
    // privacy centre, not to every session.
    own(
        "attune.gateway.v1.DataSubjectRequestService/ExportCustomer",
        &[PRIVACY_EXPORT],
    ),
    own(
        "attune.gateway.v1.DataSubjectRequestService/EraseCustomer",
        &[PRIVACY_ERASE],
    ),
    // A request's status: the customer's own (the request's customer must be
    // named), or an operator's with either privacy scope.
    own(
        "attune.gateway.v1.DataSubjectRequestService/GetDataSubjectRequest",
        &[PRIVACY_EXPORT, PRIVACY_ERASE],
    ),
    // Who used my data: the customer's own privacy centre reads it.
    own(
        "attune.gateway.v1.DataAccessService/ListDataAccess",
        &[PRIVACY_EXPORT],
    ),
    // A store device (holding only `store.clienteling`) reaches only the
    // STORE page of its store for the customer identified there by card or
    // app code (`policy/clienteling.rs`). A customer may not identify someone
    // else by a card or app code.
    Rule {
        method: "attune.gateway.v1.GatewayService/GetPageExperience",
        access: Access::Customer {
            scopes: &[EXPERIENCE_READ, STORE_CLIENTELING],
            ids: &["customer_id"],
            visitors: true,
            not_for_customers: &["store.loyalty_card_number", "store.app_token"],
        },
    },
    own_or_visitor(
        "attune.gateway.v1.GatewayService/ExplainDataUse",
        &[CONSENT_READ],
        &["customer_id"],
    ),
];
