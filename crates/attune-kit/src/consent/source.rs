//! Where a [`ConsentChecker`](super::ConsentChecker) reads consent: one
//! customer's state with the stream position it reflects, and the change stream
//! after a cursor.
//!
//! Every other service (and every other pod) reads over gRPC with
//! [`GrpcConsentSource`]. The consent service itself plugs in a local source that
//! calls its own store and feed directly: no HTTP/2 hop to itself, and a load
//! reads only what the checker needs, not the records' personal proof fields.

use std::collections::HashMap;
use std::time::Duration;

use attune_proto::consent::v1 as pb;
use attune_proto::consent::v1::consent_service_client::ConsentServiceClient;
use futures::StreamExt;
use futures::future::BoxFuture;
use futures::stream::BoxStream;
use tonic::Status;

use super::rule::CurrentDecision;
use super::wire;
use crate::peer::Peer;
use crate::telemetry::TraceContextInterceptor;

/// How long a load waits for consent before answering "unavailable": a caller is
/// waiting, and an answer that late is worth less than a retry.
const LOAD_TIMEOUT: Duration = Duration::from_secs(2);

/// What one customer's consent looks like at one stream position: the decision
/// that counts per purpose. Purposes absent from `purposes` are "not given".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CustomerState {
    /// The stream position the state reflects: every change up to it, none after.
    pub position: i64,
    /// The decision that counts, per consent-based purpose the customer decided on.
    pub purposes: HashMap<String, CurrentDecision>,
}

/// Why a customer could not be loaded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoadError {
    /// No customer can have this id: such a customer has granted nothing.
    InvalidCustomer,
    /// Consent could not be reached or answered something unreadable.
    Unavailable,
}

/// The change stream: `WatchConsentChanges` responses until an error ends it
/// (OUT_OF_RANGE: the cursor is beyond consent's newest change).
pub type ChangeStream = BoxStream<'static, Result<pb::WatchConsentChangesResponse, Status>>;

/// Where a checker reads consent.
pub trait ConsentSource: Send + Sync + std::fmt::Debug + 'static {
    /// The customer's current decisions and the stream position they reflect,
    /// read in one snapshot.
    fn load<'a>(&'a self, customer_id: &'a str) -> BoxFuture<'a, Result<CustomerState, LoadError>>;

    /// The changes after `after`, or after the newest change when `None`; the
    /// first response comes at once and carries the stream's cursor.
    fn watch(&self, after: Option<i64>) -> BoxFuture<'_, Result<ChangeStream, Status>>;
}

/// Consent's API over a gRPC channel, sending the caller's trace context.
#[derive(Debug, Clone)]
pub struct GrpcConsentSource {
    peer: Peer,
}

impl GrpcConsentSource {
    /// A source calling consent through `peer` (a channel, or consent's backend in this process).
    pub fn new(peer: impl Into<Peer>) -> Self {
        Self { peer: peer.into() }
    }

    fn client(
        &self,
    ) -> ConsentServiceClient<
        tonic::service::interceptor::InterceptedService<Peer, TraceContextInterceptor>,
    > {
        ConsentServiceClient::with_interceptor(self.peer.clone(), TraceContextInterceptor)
    }
}

impl ConsentSource for GrpcConsentSource {
    fn load<'a>(&'a self, customer_id: &'a str) -> BoxFuture<'a, Result<CustomerState, LoadError>> {
        Box::pin(async move {
            let mut request = tonic::Request::new(pb::GetConsentStateRequest {
                customer_id: customer_id.to_owned(),
                purpose_codes: Vec::new(),
            });
            request.set_timeout(LOAD_TIMEOUT);
            match self.client().get_consent_state(request).await {
                Ok(response) => wire::customer_state(response.into_inner()).ok_or_else(|| {
                    tracing::warn!("consent state holds a record this checker cannot read");
                    LoadError::Unavailable
                }),
                // Consent rejects ids no customer can have.
                Err(status) if status.code() == tonic::Code::InvalidArgument => {
                    Err(LoadError::InvalidCustomer)
                }
                Err(status) => {
                    tracing::warn!(code = ?status.code(), "cannot load consent state");
                    Err(LoadError::Unavailable)
                }
            }
        })
    }

    fn watch(&self, after: Option<i64>) -> BoxFuture<'_, Result<ChangeStream, Status>> {
        Box::pin(async move {
            let request = match after {
                Some(cursor) => pb::WatchConsentChangesRequest {
                    after_position: cursor,
                    start_at_newest: false,
                },
                None => pb::WatchConsentChangesRequest {
                    after_position: 0,
                    start_at_newest: true,
                },
            };
            let stream = self
                .client()
                .watch_consent_changes(request)
                .await?
                .into_inner();
            Ok(stream.boxed())
        })
    }
}
