//! Events: ingestion (consent-gated, idempotent by event id, one transaction per
//! batch), the per-customer listing, the feed stream and the traits kept from
//! them. Events are rows of the one feed table ([`crate::feed`]).

pub mod api;
mod ingest;
mod list;
mod stream;
pub(crate) mod subject;
pub mod traits;
mod validate;

use attune_kit::types::DataCategory;
use attune_proto::profile::v1 as pb;

pub use api::EventApi;

/// Most events in one request (or one stream message).
pub const MAX_BATCH: usize = 500;

/// The data category of an event kind: what consent must cover to store it.
pub fn kind_category(kind: pb::EventKind) -> DataCategory {
    use pb::EventKind as K;
    match kind {
        K::Purchase | K::Return => DataCategory::Purchases,
        K::StoreVisit => DataCategory::Location,
        K::EmailOpen | K::EmailClick | K::PushOpen | K::OfferSeen => DataCategory::Engagement,
        K::Unspecified
        | K::View
        | K::Search
        | K::AddToCart
        | K::RemoveFromCart
        | K::CheckoutStarted
        | K::RecommendationClick => DataCategory::Browsing,
    }
}
