//! Consent's change stream as a [`BatchSource`], for services that apply consent
//! changes to their own database with a [`Follower`](crate::follower::Follower).

use attune_proto::consent::v1 as pb;
use attune_proto::consent::v1::consent_service_client::ConsentServiceClient;
use futures::StreamExt;
use tonic::Status;

use crate::follower::{BatchSource, SourceBatch, SourceStream};
use crate::peer::Peer;
use crate::telemetry::TraceContextInterceptor;

/// `WatchConsentChanges` over a channel to consent, with the caller's trace context.
#[derive(Debug, Clone)]
pub struct ConsentChangeSource {
    peer: Peer,
}

impl ConsentChangeSource {
    /// A source reading consent's changes through `peer` (a channel, or consent's backend in this process).
    pub fn new(peer: impl Into<Peer>) -> Self {
        Self { peer: peer.into() }
    }
}

impl BatchSource for ConsentChangeSource {
    type Item = pb::ConsentChange;

    async fn open(&self, after: i64) -> Result<SourceStream<pb::ConsentChange>, Status> {
        let mut client =
            ConsentServiceClient::with_interceptor(self.peer.clone(), TraceContextInterceptor);
        let request = pb::WatchConsentChangesRequest {
            after_position: after,
            start_at_newest: false,
        };
        let responses = client.watch_consent_changes(request).await?.into_inner();
        Ok(responses
            .map(|response| {
                response
                    .map(|response| SourceBatch::from_kit_feed(response.changes, response.position))
            })
            .boxed())
    }
}
