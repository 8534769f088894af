//! How a service calls another service: a [`Peer`] is the other service's gRPC
//! transport, whichever way the process runs.
//!
//! In `attune serve` every service runs in one process, and a peer is the other
//! service's backend server called directly as a tower service (no socket, no
//! HTTP/2 framing). In Kubernetes a peer is the other service's [`Replicas`]:
//! lazily connected channels to its pods' addresses (`peers.NAME` in the
//! configuration, a list or a name resolved to several), taking calls in turn. A
//! generated client takes either, so a service's code is the same in both modes.
//!
//! A call whose answer is optional runs [`within`] a time budget: answered,
//! refused, unavailable or timed out, never holding its caller up.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::task::{Context, Poll};
use std::time::Duration;

use tonic::body::Body;
use tonic::transport::{Channel, Endpoint};
use tower::ServiceExt;
use tower::util::BoxCloneSyncService;

use crate::server::HttpService;

mod replicas;
mod within;

pub use replicas::Replicas;
pub use within::{Within, budget, caller_deadline, within};

use crate::config::ReplicasConfig;

/// Why a call through a peer failed before the other service answered.
pub type PeerError = Box<dyn std::error::Error + Send + Sync>;

/// Another service's gRPC transport: give it to a generated client
/// (`ConsentServiceClient::new(peer)`). Cheap to clone.
#[derive(Clone)]
pub struct Peer {
    transport: BoxCloneSyncService<http::Request<Body>, http::Response<Body>, PeerError>,
}

impl std::fmt::Debug for Peer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Peer")
    }
}

impl Peer {
    /// A peer in this process: its backend server's tower service
    /// ([`LocalServer::service`](crate::LocalServer::service)).
    pub fn local(service: HttpService) -> Self {
        Self {
            transport: BoxCloneSyncService::new(
                service.map_err(|never: Infallible| -> PeerError { match never {} }),
            ),
        }
    }

    /// A peer reached over `channel`.
    pub fn channel(channel: Channel) -> Self {
        Self {
            transport: BoxCloneSyncService::new(channel.map_err(PeerError::from)),
        }
    }

    /// A peer at `address` (`http://consent:50051`), connected on first use and
    /// reconnected by itself: while it is away, calls fail fast with UNAVAILABLE.
    /// Several addresses or a host name are [`Replicas`] with the default settings.
    pub fn remote(address: &str) -> Result<Self, PeerAddressError> {
        Self::replicas(address, &ReplicasConfig::default())
    }

    /// A peer at `addresses`: one or several replicas (see [`Replicas`]).
    pub fn replicas(addresses: &str, settings: &ReplicasConfig) -> Result<Self, PeerAddressError> {
        Ok(Self {
            transport: BoxCloneSyncService::new(Replicas::new(addresses, settings)?),
        })
    }
}

/// A channel to another pod at `address` (`http://consent:50051`), connected on
/// first use and reconnected by itself. It fails fast while the pod is away and
/// notices a dead connection that never closed, so health turns NOT_SERVING and
/// calls UNAVAILABLE within seconds, and recover when the pod is back.
pub fn lazy_channel(address: &str) -> Result<Channel, PeerAddressError> {
    let invalid = |reason: String| PeerAddressError {
        address: address.to_owned(),
        reason,
    };
    let endpoint =
        Endpoint::from_shared(address.to_owned()).map_err(|error| invalid(error.to_string()))?;
    if endpoint.uri().host().is_none() {
        return Err(invalid("it names no host".into()));
    }
    Ok(configured(endpoint).connect_lazy())
}

/// `endpoint` set to fail fast while its pod is away and to notice a dead
/// connection that never closed.
fn configured(endpoint: Endpoint) -> Endpoint {
    endpoint
        .connect_timeout(Duration::from_secs(1))
        .http2_keep_alive_interval(Duration::from_secs(10))
        .keep_alive_timeout(Duration::from_secs(5))
        .keep_alive_while_idle(true)
}

impl From<Channel> for Peer {
    fn from(channel: Channel) -> Self {
        Self::channel(channel)
    }
}

impl tower::Service<http::Request<Body>> for Peer {
    type Response = http::Response<Body>;
    type Error = PeerError;
    type Future = <BoxCloneSyncService<http::Request<Body>, http::Response<Body>, PeerError> as tower::Service<http::Request<Body>>>::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), PeerError>> {
        self.transport.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        self.transport.call(request)
    }
}

/// An address that cannot be a gRPC endpoint.
#[derive(Debug, thiserror::Error)]
#[error("address {address:?} is invalid: {reason}")]
pub struct PeerAddressError {
    /// The address as configured.
    pub address: String,
    /// What is wrong with it.
    pub reason: String,
}

/// The services this one may call, by name.
#[derive(Debug, Clone, Default)]
pub struct Peers {
    peers: BTreeMap<String, Peer>,
}

/// A service this one needs is not known to the process.
#[derive(Debug, thiserror::Error)]
#[error(
    "the {name} service is not reachable from here: in one process it must be mounted \
     before the services that call it; as its own pod, set peers.{name} \
     (ATTUNE_PEERS__{upper}), e.g. http://{name}:50051",
    upper = name.to_ascii_uppercase()
)]
pub struct MissingPeer {
    name: String,
}

impl Peers {
    /// Adds (or replaces) the peer called `name`.
    pub fn insert(&mut self, name: impl Into<String>, peer: Peer) {
        self.peers.insert(name.into(), peer);
    }

    /// Every peer named in `addresses` (`peers` in the configuration), connected
    /// lazily, each to one or several replicas (see [`Replicas`]).
    pub fn remote(
        addresses: &BTreeMap<String, String>,
        settings: &ReplicasConfig,
    ) -> Result<Self, PeerAddressError> {
        let mut peers = Self::default();
        for (name, address) in addresses {
            peers.insert(name.clone(), Peer::replicas(address, settings)?);
        }
        Ok(peers)
    }

    /// The peer called `name`.
    pub fn get(&self, name: &str) -> Result<Peer, MissingPeer> {
        self.peers.get(name).cloned().ok_or_else(|| MissingPeer {
            name: name.to_owned(),
        })
    }
}
