//! Loyalty's tier ladder, which a page needs only for the display name of the
//! customer's tier. It is the same for every customer and changes rarely (an
//! operator's PutTiers), so the gateway asks for it at most once per
//! [`LADDER_FOR`] instead of once per page; a change shows within that long.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use attune_kit::peer::within;
use attune_proto::loyalty::v1 as loyalty_pb;
use tokio::time::Instant;

use super::backends::{PageBackends, timed};

/// How long a ladder is used before loyalty is asked again.
const LADDER_FOR: Duration = Duration::from_secs(1);

/// A ladder as loyalty answered it, and when it was asked.
type Answered = (Instant, Arc<[loyalty_pb::Tier]>);

/// The ladder as loyalty last answered, and when. Cheap to clone.
#[derive(Clone, Debug, Default)]
pub(crate) struct LadderCache {
    last: Arc<Mutex<Option<Answered>>>,
}

impl LadderCache {
    /// The tiers: as loyalty answered within [`LADDER_FOR`], or asked now
    /// within `budget`. Empty when loyalty does not answer in time (the page
    /// then names a tier by its id).
    pub(crate) async fn tiers(
        &self,
        backends: &PageBackends,
        budget: Duration,
    ) -> Arc<[loyalty_pb::Tier]> {
        if let Some((at, tiers)) = self.current()
            && at.elapsed() < LADDER_FOR
        {
            return tiers;
        }
        let Some(mut loyalty) = backends.loyalty() else {
            return Arc::from([]);
        };
        let asked = Instant::now();
        match within(
            budget,
            loyalty.list_tiers(timed(loyalty_pb::ListTiersRequest {}, budget)),
        )
        .await
        .answered()
        {
            Some(answer) => {
                let tiers: Arc<[loyalty_pb::Tier]> = answer.tiers.into();
                *self.last.lock().unwrap_or_else(PoisonError::into_inner) =
                    Some((asked, Arc::clone(&tiers)));
                tiers
            }
            // The last ladder known, however old, names tiers better than none.
            None => self
                .current()
                .map_or_else(|| Arc::from([]), |(_, tiers)| tiers),
        }
    }

    fn current(&self) -> Option<Answered> {
        self.last
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}
