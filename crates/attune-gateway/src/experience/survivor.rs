//! Which profile a page is for: an anonymous id that profile merged into a
//! customer (the visitor signed in) answers for the surviving customer, so the
//! page shows the customer's consent, greeting, points and recommendations, not
//! the emptied visitor's.
//!
//! A customer's token needs no question: the policy let it name only itself and
//! the ids merged into it ([`crate::policy`]'s linked ids), so any other id it
//! names resolves to the customer itself. A customer naming its own id is never
//! redirected (an anonymous visitor's old token must not reach the customer it
//! was merged into). Every other caller (a storefront's server, a store device,
//! development mode) asks profile's `ListMergedCustomerIds`, which answers with
//! the surviving profile's id, cached: a merge never undoes, so a merged id is
//! kept for [`MERGED_FOR`]; an id that was not merged may be merged at any time,
//! so that answer is trusted for [`UNMERGED_FOR`] only (the longest a new merge
//! takes to reach the page). When profile cannot answer in time the page is
//! for the id as given, uncached.

use std::sync::Arc;
use std::time::{Duration, Instant};

use attune_kit::peer::{Within, within};
use attune_proto::profile::v1 as profile_pb;
use moka::Expiry;
use moka::sync::Cache;

use super::backends::{PageBackends, timed};
use crate::policy::Principal;

/// How long an id that profile did not report merged is trusted to stay so.
const UNMERGED_FOR: Duration = Duration::from_secs(5);
/// How long a merged id's survivor is kept (a merge never undoes; bounded so an
/// erased customer's id does not linger in memory).
const MERGED_FOR: Duration = Duration::from_secs(300);
/// Ids whose resolution is kept.
const CACHED_IDS: u64 = 100_000;

/// What profile said about an id.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Resolution {
    /// Not merged (a live or an unknown profile): the page is for the id itself.
    Itself,
    /// Merged into this surviving profile.
    MergedInto(Arc<str>),
}

struct ByResolution;

impl Expiry<String, Resolution> for ByResolution {
    fn expire_after_create(
        &self,
        _id: &String,
        resolution: &Resolution,
        _created_at: Instant,
    ) -> Option<Duration> {
        Some(match resolution {
            Resolution::Itself => UNMERGED_FOR,
            Resolution::MergedInto(_) => MERGED_FOR,
        })
    }
}

/// Survivors of merged ids, cached.
#[derive(Clone)]
pub(crate) struct Survivors {
    cache: Cache<String, Resolution>,
}

impl std::fmt::Debug for Survivors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Survivors").finish_non_exhaustive()
    }
}

impl Default for Survivors {
    fn default() -> Self {
        Self {
            cache: Cache::builder()
                .max_capacity(CACHED_IDS)
                .expire_after(ByResolution)
                .build(),
        }
    }
}

impl Survivors {
    /// The customer a page asked for `id` by `principal` is for, asking
    /// profile within `budget` when the answer is not known.
    pub(crate) async fn resolve(
        &self,
        id: &str,
        principal: Option<&Principal>,
        backends: &PageBackends,
        budget: Duration,
    ) -> String {
        if let Some(Principal::Customer { id: own, .. }) = principal {
            // The policy admitted `id` as the customer's own or merged into it.
            return own.clone();
        }
        match self.cache.get(id) {
            Some(Resolution::Itself) => return id.to_owned(),
            Some(Resolution::MergedInto(survivor)) => return survivor.as_ref().to_owned(),
            None => {}
        }
        let Some(mut profiles) = backends.profile() else {
            return id.to_owned();
        };
        let request = profile_pb::ListMergedCustomerIdsRequest {
            customer_id: id.to_owned(),
            page_size: 1,
            page_token: String::new(),
        };
        let answer = within(
            budget,
            profiles.list_merged_customer_ids(timed(request, budget)),
        )
        .await;
        let resolution = match answer {
            Within::Answered(page) if !page.customer_id.is_empty() && page.customer_id != id => {
                Resolution::MergedInto(page.customer_id.into())
            }
            Within::Answered(_) => Resolution::Itself,
            // Profile knows no such id: an anonymous visitor without a profile.
            Within::Refused(refusal) if refusal.code() == tonic::Code::NotFound => {
                Resolution::Itself
            }
            // Not known now: the page is for the id as given, and profile is
            // asked again next time.
            Within::Refused(_) | Within::Unavailable(_) | Within::TimedOut => {
                return id.to_owned();
            }
        };
        self.cache.insert(id.to_owned(), resolution.clone());
        match resolution {
            Resolution::Itself => id.to_owned(),
            Resolution::MergedInto(survivor) => survivor.as_ref().to_owned(),
        }
    }
}
