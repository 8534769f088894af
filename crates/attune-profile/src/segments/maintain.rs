//! Keeping memberships current in the background:
//!
//! - a [`Follower`] of profile's own feed (`profile:segments`, its cursor in
//!   `feed_cursors`) re-evaluates the customers each batch touched (events,
//!   zero-party changes, both sides of a merge) in the batch's transaction, which
//!   holds profile's write lock like every other write, so the membership entries
//!   it appends to the same feed keep commit order;
//! - a sweep re-evaluates everyone every `profile.segment_sweep_interval` (and at
//!   start, retried with backoff when it fails), for conditions that change with
//!   the passing of time alone ("cart abandoned 24 h", "lapsed 60 days",
//!   birthdays), and as a repair;
//! - a second follower, of consent's change stream (`profile:segments-consent`),
//!   re-evaluates the customers whose consent changed, so a withdrawal ends the
//!   memberships built on what it covered without waiting for the sweep.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use attune_kit::ApiError;
use attune_kit::feed::StartAt;
use attune_kit::follower::{Apply, ApplyError, Backoff, BatchSource, SourceBatch, SourceStream};
use attune_proto::consent::v1 as consent_pb;
use attune_proto::profile::v1 as pb;
use futures::StreamExt;
use sea_orm::{DatabaseConnection, DatabaseTransaction, DbErr};
use tokio_util::sync::CancellationToken;
use tonic::Status;

use super::evaluate;
use super::facts::FactsSource;
use crate::app::Profile;
use crate::feed::ProfileFeed;
use crate::store::WRITE_LOCK;

/// The follower's name in `feed_cursors`.
pub const FOLLOWER: &str = "profile:segments";

/// Profile's feed read in-process, as the follower's source.
pub struct OwnFeed {
    feed: Arc<ProfileFeed>,
}

impl OwnFeed {
    pub fn new(feed: Arc<ProfileFeed>) -> Self {
        Self { feed }
    }
}

impl BatchSource for OwnFeed {
    type Item = pb::FeedEntry;

    async fn open(&self, after: i64) -> Result<SourceStream<pb::FeedEntry>, Status> {
        let stream = self
            .feed
            .watch(StartAt::After(after))
            .await
            .map_err(|error| Status::from(ApiError::from(error)))?;
        Ok(stream
            .map(|batch| {
                batch
                    .map(|batch| {
                        let entries = batch.changes.into_iter().map(|entry| entry.0).collect();
                        SourceBatch::from_kit_feed(entries, batch.position)
                    })
                    .map_err(Status::from)
            })
            .boxed())
    }
}

/// The customers whose facts an entry may have changed: an event's customer
/// (as the row attributes it now), a zero-party change's, both sides of a
/// merge. Membership changes change no facts; an erasure names a pseudonym, and
/// the erasure itself removes the customer's memberships.
fn touched(entry: &pb::FeedEntry) -> Vec<String> {
    use pb::feed_entry::Change;
    match &entry.change {
        Some(Change::Event(event)) => vec![event.resolved_customer_id.clone()],
        Some(Change::ZeroPartyDataChange(change)) => vec![change.customer_id.clone()],
        Some(Change::Merge(merge)) => vec![
            merge.source_customer_id.clone(),
            merge.target_customer_id.clone(),
        ],
        Some(Change::Erasure(_) | Change::SegmentMembershipChange(_)) | None => Vec::new(),
    }
}

/// Re-evaluates the customers a batch touched, in the batch's transaction.
pub struct Reevaluate {
    profile: Profile,
    source: FactsSource,
}

impl Reevaluate {
    pub fn new(profile: Profile, source: FactsSource) -> Self {
        Self { profile, source }
    }
}

impl Apply<pb::FeedEntry> for Reevaluate {
    fn begin(
        &self,
        db: &DatabaseConnection,
    ) -> impl Future<Output = Result<DatabaseTransaction, DbErr>> + Send {
        // It appends membership entries to the feed: like every feed writer it
        // holds the write lock from before it takes a sequence until it commits.
        attune_kit::db::begin_write(db, WRITE_LOCK)
    }

    async fn apply(
        &self,
        txn: &DatabaseTransaction,
        items: &[pb::FeedEntry],
    ) -> Result<(), ApplyError> {
        let mut customers: Vec<String> = items.iter().flat_map(touched).collect();
        customers.sort_unstable();
        customers.dedup();
        customers.retain(|id| !id.is_empty());
        if customers.is_empty() {
            return Ok(());
        }
        let definitions = evaluate::definitions(txn, self.profile.reporting_currency, None).await?;
        let now = self.profile.clock.now();
        for chunk in customers.chunks(500) {
            evaluate::reevaluate(txn, &self.source, &definitions, chunk, now).await?;
        }
        Ok(())
    }
}

/// The follower's name in `feed_cursors` for consent's change stream.
pub const CONSENT_FOLLOWER: &str = "profile:segments-consent";

/// The customers whose consent decisions a batch of consent's changes holds (an
/// erasure names nobody: profile's own erasure removes the memberships).
fn decided(changes: &[consent_pb::ConsentChange]) -> Vec<String> {
    use consent_pb::consent_change::Change;
    let mut customers: Vec<String> = changes
        .iter()
        .filter_map(|change| match &change.change {
            Some(Change::Decision(decision)) => Some(decision.customer_id.clone()),
            Some(Change::CustomerErased(_)) | None => None,
        })
        .filter(|id| !id.is_empty())
        .collect();
    customers.sort_unstable();
    customers.dedup();
    customers
}

/// Re-evaluates the customers whose consent changed: a condition on data whose
/// category is no longer covered stops matching (and a new grant may make one
/// match) without waiting for the sweep.
pub struct ConsentChanged {
    profile: Profile,
    source: FactsSource,
}

impl ConsentChanged {
    pub fn new(profile: Profile, source: FactsSource) -> Self {
        Self { profile, source }
    }
}

impl Apply<consent_pb::ConsentChange> for ConsentChanged {
    fn begin(
        &self,
        db: &DatabaseConnection,
    ) -> impl Future<Output = Result<DatabaseTransaction, DbErr>> + Send {
        attune_kit::db::begin_write(db, WRITE_LOCK)
    }

    async fn apply(
        &self,
        txn: &DatabaseTransaction,
        items: &[consent_pb::ConsentChange],
    ) -> Result<(), ApplyError> {
        let customers = decided(items);
        if customers.is_empty() {
            return Ok(());
        }
        let definitions = evaluate::definitions(txn, self.profile.reporting_currency, None).await?;
        if definitions.is_empty() {
            return Ok(());
        }
        // The checker follows the same stream on its own and may not have seen
        // these changes yet: ask consent again rather than trust its cache.
        for customer in &customers {
            self.profile.collection.checker().forget(customer);
        }
        let now = self.profile.clock.now();
        for chunk in customers.chunks(500) {
            evaluate::reevaluate(txn, &self.source, &definitions, chunk, now).await?;
        }
        Ok(())
    }
}

/// The first wait before a failed sweep is retried (consent may not be reachable
/// yet while the server starts); doubled after each failure up to the interval.
const RETRY_MIN: Duration = Duration::from_millis(100);

/// Re-evaluates everyone now and then every `interval`, until `cancel`; a failed
/// sweep is retried with backoff rather than a whole interval later.
pub async fn sweep(
    profile: Profile,
    source: FactsSource,
    interval: Duration,
    cancel: CancellationToken,
) {
    let mut retry = Backoff::new(RETRY_MIN, interval);
    loop {
        let wait = match evaluate::evaluate_everyone(&profile, &source, None).await {
            Ok(_) => {
                retry.reset();
                interval
            }
            Err(error) => {
                // The error names no customer.
                let wait = retry.next_wait();
                tracing::warn!(%error, retry_in = ?wait, "segment sweep failed; retrying");
                wait
            }
        };
        tokio::select! {
            () = cancel.cancelled() => return,
            () = tokio::time::sleep(wait) => {}
        }
    }
}
