//! What profile knows of a customer's tastes, for the content fallback of a
//! customer the models do not know yet (new, or arrived since the last
//! training): the category and brand affinities profile derives from their
//! events (traits), and the favourite categories and brands they volunteered
//! (zero-party data).
//!
//! Asked only for a customer whose `personalization` consent was just
//! checked, with a short deadline, and cached for a few minutes so a page of
//! calls asks profile once. When profile is not configured, down or slow, the
//! answer is built without them (from the session alone) and nothing fails;
//! after a failure profile is not asked again for a few seconds, so an outage
//! costs one deadline, not one per call.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use attune_kit::peer::Peer;
use attune_kit::telemetry::TraceContextInterceptor;
use attune_proto::profile::v1 as profile_pb;
use attune_proto::profile::v1::event_service_client::EventServiceClient;
use attune_proto::profile::v1::profile_service_client::ProfileServiceClient;
use moka::sync::Cache;

use crate::replicas::Pseudonyms;

/// How long one read of profile may take before the answer goes without it.
const DEADLINE: Duration = Duration::from_millis(250);
/// How long a customer's tastes are reused.
const TIME_TO_LIVE: Duration = Duration::from_secs(300);
/// How long profile is not asked after it failed or was late.
const BACK_OFF: Duration = Duration::from_secs(5);
/// How many customers' tastes are held.
const CAPACITY: u64 = 100_000;
/// The weight of a favourite the customer named, against derived affinities
/// (the strongest of which weighs 1).
const DECLARED_WEIGHT: f32 = 2.0;

/// A customer's tastes: category ids and brands with weights.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Tastes {
    pub categories: Vec<(String, f32)>,
    pub brands: Vec<(String, f32)>,
    /// Some of it is what the customer told us (zero-party data: PREFERENCES).
    pub declared: bool,
    /// Some of it is derived from their events (traits: browsing and purchases).
    pub derived: bool,
}

impl Tastes {
    pub fn is_empty(&self) -> bool {
        self.categories.is_empty() && self.brands.is_empty()
    }
}

/// Reads and caches tastes from profile.
pub struct ProfileTastes {
    peer: Option<Peer>,
    /// By the customer's pseudonym, the name other replicas drop it by.
    cache: Cache<String, Arc<Tastes>>,
    names: Pseudonyms,
    unavailable_until: Mutex<Option<Instant>>,
}

impl ProfileTastes {
    /// Tastes read from `peer` (none when profile is not configured).
    pub fn new(peer: Option<Peer>, names: Pseudonyms) -> Self {
        Self {
            peer,
            names,
            cache: Cache::builder()
                .max_capacity(CAPACITY)
                .time_to_live(TIME_TO_LIVE)
                .build(),
            unavailable_until: Mutex::new(None),
        }
    }

    /// The customer's tastes, or `None` when profile cannot tell now. Call only
    /// after the customer's `personalization` consent was checked.
    pub async fn of(&self, customer_id: &str) -> Option<Arc<Tastes>> {
        let peer = self.peer.as_ref()?;
        let name = self.names.of(customer_id);
        if let Some(tastes) = self.cache.get(&name) {
            return Some(tastes);
        }
        if self.backing_off() {
            return None;
        }
        match tokio::time::timeout(DEADLINE, read(peer, customer_id)).await {
            Ok(Ok(tastes)) => {
                let tastes = Arc::new(tastes);
                self.cache.insert(name, Arc::clone(&tastes));
                Some(tastes)
            }
            Ok(Err(status)) => {
                tracing::warn!(
                    code = ?status.code(),
                    "profile did not answer for tastes: the content fallback runs without them"
                );
                self.back_off();
                None
            }
            Err(_) => {
                tracing::warn!(
                    deadline_ms = DEADLINE.as_millis(),
                    "profile was late with tastes: the content fallback runs without them"
                );
                self.back_off();
                None
            }
        }
    }

    /// Forgets the customer's tastes (an erasure).
    pub fn forget(&self, customer_id: &str) {
        self.cache.invalidate(&self.names.of(customer_id));
    }

    /// Forgets the tastes of the customer named `name` (a [`Pseudonyms`] name).
    pub fn forget_named(&self, name: &str) {
        self.cache.invalidate(name);
    }

    /// Forgets every customer's tastes (they are asked again as needed).
    pub fn forget_all(&self) {
        self.cache.invalidate_all();
    }

    fn backing_off(&self) -> bool {
        let until = self
            .unavailable_until
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        until.is_some_and(|until| Instant::now() < until)
    }

    fn back_off(&self) {
        *self
            .unavailable_until
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(Instant::now() + BACK_OFF);
    }
}

/// Traits and zero-party data, asked at once. A customer profile does not
/// know has no tastes (not an error).
async fn read(peer: &Peer, customer_id: &str) -> Result<Tastes, tonic::Status> {
    let mut events = EventServiceClient::with_interceptor(peer.clone(), TraceContextInterceptor);
    let mut profiles =
        ProfileServiceClient::with_interceptor(peer.clone(), TraceContextInterceptor);
    let (traits, declared) = tokio::join!(
        events.get_traits(profile_pb::GetTraitsRequest {
            customer_id: customer_id.to_owned(),
        }),
        profiles.get_zero_party_data(profile_pb::GetZeroPartyDataRequest {
            customer_id: customer_id.to_owned(),
        }),
    );
    let absent = |status: &tonic::Status| status.code() == tonic::Code::NotFound;
    let traits = match traits {
        Ok(answer) => answer.into_inner().traits.unwrap_or_default(),
        Err(status) if absent(&status) => profile_pb::Traits::default(),
        Err(status) => return Err(status),
    };
    let declared = match declared {
        Ok(answer) => answer.into_inner().data.unwrap_or_default(),
        Err(status) if absent(&status) => profile_pb::ZeroPartyData::default(),
        Err(status) => return Err(status),
    };
    Ok(tastes(&traits, &declared))
}

fn tastes(traits: &profile_pb::Traits, declared: &profile_pb::ZeroPartyData) -> Tastes {
    let derived = |affinities: &[profile_pb::Affinity]| -> Vec<(String, f32)> {
        affinities
            .iter()
            .filter(|a| a.score.is_finite() && a.score > 0.0)
            .map(|a| (a.key.clone(), a.score as f32))
            .collect()
    };
    let mut categories = derived(&traits.category_affinities);
    let mut brands = derived(&traits.brand_affinities);
    let is_derived = !categories.is_empty() || !brands.is_empty();
    categories.extend(
        declared
            .favourite_category_ids
            .iter()
            .map(|c| (c.clone(), DECLARED_WEIGHT)),
    );
    brands.extend(
        declared
            .favourite_brands
            .iter()
            .map(|b| (b.clone(), DECLARED_WEIGHT)),
    );
    Tastes {
        declared: !declared.favourite_category_ids.is_empty()
            || !declared.favourite_brands.is_empty(),
        derived: is_derived,
        categories,
        brands,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn favourites_named_weigh_more_than_derived_affinities() {
        let traits = profile_pb::Traits {
            category_affinities: vec![profile_pb::Affinity {
                key: "tea".into(),
                score: 1.0,
                ..Default::default()
            }],
            ..Default::default()
        };
        let declared = profile_pb::ZeroPartyData {
            favourite_category_ids: vec!["outdoor".into()],
            favourite_brands: vec!["peak".into()],
            ..Default::default()
        };
        let both = tastes(&traits, &declared);
        assert_eq!(
            both.categories,
            [
                ("tea".to_owned(), 1.0),
                ("outdoor".to_owned(), DECLARED_WEIGHT)
            ]
        );
        assert_eq!(both.brands, [("peak".to_owned(), DECLARED_WEIGHT)]);
        assert!(both.declared && both.derived);
        assert!(tastes(&profile_pb::Traits::default(), &Default::default()).is_empty());
    }
}
