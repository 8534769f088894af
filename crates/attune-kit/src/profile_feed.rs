//! Profile's event feed (`attune.profile.v1.EventService/StreamEvents`) as a
//! [`BatchSource`], for the services that learn from it (recommendation, loyalty,
//! delivery): give it to a [`Follower`](crate::follower::Follower) with the
//! service's [`Apply`](crate::follower::Apply), and every stored event, merge,
//! zero-party change, segment change and erasure reaches the consumer's own
//! database exactly once, in commit order.

use attune_proto::profile::v1 as pb;
use attune_proto::profile::v1::event_service_client::EventServiceClient;
use futures::StreamExt;
use tonic::Status;

use crate::follower::{BatchSource, SourceBatch, SourceStream};
use crate::peer::Peer;
use crate::telemetry::TraceContextInterceptor;

/// Entries per response: the kit feed's batch limit, so that a shorter batch
/// means the producer had nothing newer (see [`SourceBatch::from_kit_feed`]).
const BATCH: i32 = crate::feed::BATCH_LIMIT as i32;

/// `StreamEvents` through a peer to profile, with the caller's trace context.
#[derive(Debug, Clone)]
pub struct ProfileFeedSource {
    peer: Peer,
    event_kinds: Vec<i32>,
}

impl ProfileFeedSource {
    /// Every entry of profile's feed, through `peer` (profile's backend in this
    /// process, or a channel to its pod).
    pub fn new(peer: impl Into<Peer>) -> Self {
        Self {
            peer: peer.into(),
            event_kinds: Vec::new(),
        }
    }

    /// Only events of these kinds (merges, zero-party and segment changes and
    /// erasures always come): what a consumer does not use never crosses the
    /// network, and the cursor still moves past it. (A batch thinned by the
    /// filter can look caught up before the head: only the lag metric notices.)
    pub fn only(mut self, kinds: impl IntoIterator<Item = pb::EventKind>) -> Self {
        self.event_kinds = kinds.into_iter().map(i32::from).collect();
        self
    }
}

impl BatchSource for ProfileFeedSource {
    type Item = pb::FeedEntry;

    async fn open(&self, after: i64) -> Result<SourceStream<pb::FeedEntry>, Status> {
        let mut client =
            EventServiceClient::with_interceptor(self.peer.clone(), TraceContextInterceptor);
        let request = pb::StreamEventsRequest {
            after_sequence: after,
            event_kinds: self.event_kinds.clone(),
            max_batch_size: BATCH,
            stop_at_head: false,
        };
        let responses = client.stream_events(request).await?.into_inner();
        Ok(responses
            .map(|response| {
                response.map(|response| {
                    SourceBatch::from_kit_feed(response.entries, response.through_sequence)
                })
            })
            .boxed())
    }
}
