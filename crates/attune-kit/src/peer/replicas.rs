//! Several replicas of one service behind one configured address: a
//! comma-separated list of URLs, each of which may be a host name standing for
//! every pod behind it (a headless Kubernetes Service).
//!
//! Calls go to the replicas in turn, skipping any that failed (a transport
//! error: refused, reset, no answer to connect). A failed replica comes back
//! into rotation once a TCP connection to it succeeds again; while every
//! replica is failing, calls still go to one of them and fail fast, as with one
//! address. A host name is resolved again every `replicas.resolve_interval`, so
//! pods that appear are added (once they accept connections) and pods that are
//! gone are dropped; a resolution that fails or finds nothing keeps what was.
//!
//! Why not tonic's `Channel::balance_channel`: its endpoints connect lazily,
//! and a lazy endpoint that cannot connect reports itself ready and fails the
//! call instead, so the power-of-two-choices balancer never takes it out of
//! rotation (every load is 0); and with no endpoint at all it holds calls
//! until their deadline instead of failing them.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, PoisonError, RwLock, Weak};
use std::task::{Context, Poll};
use std::time::Duration;

use http::Uri;
use tonic::body::Body;
use tonic::transport::{Channel, Endpoint};
use tower::ServiceExt;

use super::{PeerAddressError, PeerError};
use crate::config::ReplicasConfig;

/// How often a failed replica is tried again (a TCP connect), and the longest
/// such a try waits.
const PROBE_INTERVAL: Duration = Duration::from_secs(1);

/// The replicas of one service, as a tower service a generated client takes.
/// Cheap to clone; the background task that resolves names and probes failed
/// replicas ends when the last clone is dropped.
#[derive(Clone)]
pub struct Replicas {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Replicas {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Replicas")
            .field("addresses", &self.addresses())
            .finish()
    }
}

struct Shared {
    /// Never empty: a resolution that finds nothing keeps the replicas it had.
    rotation: RwLock<Arc<Vec<Arc<Replica>>>>,
    next: AtomicUsize,
}

/// One replica: a lazily connected channel to one address.
struct Replica {
    /// `10.0.0.7:50051`, or the configured URL while its name is unresolved.
    address: String,
    /// Where a probe connects: an address, or a host and port to resolve.
    probe: (String, u16),
    channel: Channel,
    failed: AtomicBool,
}

/// One comma-separated entry of the configuration.
struct Source {
    uri: Uri,
    /// The host name to resolve again; `None` for an IP address.
    name: Option<String>,
    port: u16,
    replicas: Vec<Arc<Replica>>,
}

impl Replicas {
    /// The replicas at `addresses` (`http://a:50051,http://b:50051`), connected
    /// on first use. Call it inside a Tokio runtime: channels and the task that
    /// resolves names again and probes failed replicas run on it.
    pub fn new(addresses: &str, settings: &ReplicasConfig) -> Result<Self, PeerAddressError> {
        let mut sources = Vec::new();
        for address in addresses.split(',').map(str::trim) {
            sources.push(Source::parse(address).map_err(|reason| PeerAddressError {
                address: addresses.to_owned(),
                reason: if addresses.contains(',') {
                    format!("{address:?}: {reason}")
                } else {
                    reason
                },
            })?);
        }
        let rotation: Vec<_> = sources
            .iter()
            .flat_map(|source| source.replicas.iter().cloned())
            .collect();
        let shared = Arc::new(Shared {
            rotation: RwLock::new(Arc::new(rotation)),
            next: AtomicUsize::new(0),
        });
        // One IP address is one replica: nothing to resolve or choose between,
        // and it reconnects by itself, exactly as a single channel does.
        let single_address = sources.len() == 1 && sources[0].name.is_none();
        if !single_address {
            tokio::spawn(maintain(
                Arc::downgrade(&shared),
                sources,
                settings.resolve_interval,
            ));
        }
        Ok(Self { shared })
    }

    /// The addresses in rotation now, failed ones included (for logs and tests).
    pub fn addresses(&self) -> Vec<String> {
        self.shared
            .current()
            .iter()
            .map(|replica| replica.address.clone())
            .collect()
    }
}

impl Shared {
    fn current(&self) -> Arc<Vec<Arc<Replica>>> {
        Arc::clone(&self.rotation.read().unwrap_or_else(PoisonError::into_inner))
    }

    /// The next replica in turn that has not failed; when every one has, the
    /// next in turn, so the call fails fast (or finds it back).
    fn pick(&self) -> Arc<Replica> {
        let rotation = self.current();
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let count = rotation.len();
        (0..count)
            .map(|offset| &rotation[(start + offset) % count])
            .find(|replica| !replica.failed.load(Ordering::Relaxed))
            .unwrap_or(&rotation[start % count])
            .clone()
    }
}

impl Replica {
    fn new(address: String, probe: (String, u16), endpoint: Endpoint) -> Arc<Self> {
        Arc::new(Self {
            address,
            probe,
            channel: super::configured(endpoint).connect_lazy(),
            failed: AtomicBool::new(false),
        })
    }

    fn mark_failed(&self, error: &dyn std::fmt::Display) {
        if !self.failed.swap(true, Ordering::Relaxed) {
            tracing::warn!(replica = %self.address, %error, "replica out of rotation");
        }
    }

    fn mark_answering(&self) {
        if self.failed.swap(false, Ordering::Relaxed) {
            tracing::info!(replica = %self.address, "replica back in rotation");
        }
    }

    /// Whether it accepts a TCP connection now.
    async fn accepts_connections(&self) -> bool {
        let (host, port) = (&self.probe.0, self.probe.1);
        matches!(
            tokio::time::timeout(
                PROBE_INTERVAL,
                tokio::net::TcpStream::connect((host.as_str(), port))
            )
            .await,
            Ok(Ok(_))
        )
    }
}

impl Source {
    fn parse(address: &str) -> Result<Self, String> {
        let endpoint =
            Endpoint::from_shared(address.to_owned()).map_err(|error| error.to_string())?;
        let uri = endpoint.uri().clone();
        let Some(host) = uri.host() else {
            return Err("it names no host".into());
        };
        let port = uri
            .port_u16()
            .unwrap_or(if uri.scheme_str() == Some("https") {
                443
            } else {
                80
            });
        // An IPv6 host keeps its brackets in a URI.
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        let name = bare
            .parse::<std::net::IpAddr>()
            .is_err()
            .then(|| bare.to_owned());
        let replica = Replica::new(address.to_owned(), (bare.to_owned(), port), endpoint);
        Ok(Self {
            uri,
            name,
            port,
            replicas: vec![replica],
        })
    }

    /// Resolves the name again; `true` when the replicas changed. Addresses
    /// still there keep their replica (and its connection); new ones start as
    /// failed, entering rotation once a probe connects.
    async fn resolve(&mut self) -> bool {
        let Some(name) = &self.name else {
            return false;
        };
        let mut found: Vec<SocketAddr> = match tokio::net::lookup_host((name.as_str(), self.port))
            .await
        {
            Ok(addresses) => addresses.collect(),
            Err(error) => {
                tracing::warn!(host = %name, %error, "cannot resolve replicas; keeping the last ones");
                return false;
            }
        };
        found.sort_unstable();
        found.dedup();
        if found.is_empty() {
            return false;
        }
        let mut changed = found.len() != self.replicas.len();
        let mut replicas = Vec::with_capacity(found.len());
        for address in found {
            let text = address.to_string();
            if let Some(known) = self.replicas.iter().find(|r| r.address == text) {
                replicas.push(Arc::clone(known));
                continue;
            }
            changed = true;
            match self.endpoint_at(address) {
                Ok(endpoint) => {
                    let replica =
                        Replica::new(text, (address.ip().to_string(), address.port()), endpoint);
                    replica.failed.store(true, Ordering::Relaxed);
                    replicas.push(replica);
                }
                Err(error) => tracing::warn!(%address, %error, "cannot use a resolved replica"),
            }
        }
        if replicas.is_empty() {
            return false;
        }
        self.replicas = replicas;
        changed
    }

    /// A channel's endpoint at one resolved `address`, still naming the
    /// configured host in its `:authority`.
    fn endpoint_at(&self, address: SocketAddr) -> Result<Endpoint, String> {
        let scheme = self.uri.scheme_str().unwrap_or("http");
        Endpoint::from_shared(format!("{scheme}://{address}"))
            .map(|endpoint| endpoint.origin(self.uri.clone()))
            .map_err(|error| error.to_string())
    }
}

/// Resolves host names every `resolve_interval` and probes failed replicas
/// every [`PROBE_INTERVAL`], until every [`Replicas`] clone is dropped.
async fn maintain(shared: Weak<Shared>, mut sources: Vec<Source>, resolve_interval: Duration) {
    let mut next_resolution = tokio::time::Instant::now();
    loop {
        let resolve = tokio::time::Instant::now() >= next_resolution;
        let mut changed = false;
        if resolve {
            next_resolution += resolve_interval;
            for source in &mut sources {
                changed |= source.resolve().await;
            }
        }
        let rotation: Vec<Arc<Replica>> = sources
            .iter()
            .flat_map(|source| source.replicas.iter().cloned())
            .collect();
        let failed = rotation
            .iter()
            .filter(|replica| replica.failed.load(Ordering::Relaxed));
        for (replica, accepts) in futures::future::join_all(
            failed.map(|replica| async move { (replica, replica.accepts_connections().await) }),
        )
        .await
        {
            if accepts {
                replica.mark_answering();
            }
        }
        {
            let Some(shared) = shared.upgrade() else {
                return;
            };
            if changed {
                tracing::info!(
                    replicas = ?rotation.iter().map(|r| r.address.as_str()).collect::<Vec<_>>(),
                    "replicas resolved"
                );
                *shared
                    .rotation
                    .write()
                    .unwrap_or_else(PoisonError::into_inner) = Arc::new(rotation);
            }
        }
        tokio::time::sleep(PROBE_INTERVAL).await;
    }
}

impl tower::Service<http::Request<Body>> for Replicas {
    type Response = http::Response<Body>;
    type Error = PeerError;
    type Future =
        Pin<Box<dyn Future<Output = Result<http::Response<Body>, PeerError>> + Send + 'static>>;

    /// Always ready: the replica is chosen per call, and its channel's own
    /// readiness is awaited inside the call.
    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), PeerError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        let replica = self.shared.pick();
        Box::pin(async move {
            match replica.channel.clone().oneshot(request).await {
                Ok(response) => {
                    replica.mark_answering();
                    Ok(response)
                }
                Err(error) => {
                    replica.mark_failed(&error);
                    Err(error.into())
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> ReplicasConfig {
        ReplicasConfig::default()
    }

    #[tokio::test]
    async fn a_list_is_one_replica_per_address_in_order() {
        let replicas = Replicas::new(
            "http://127.0.0.1:1, http://127.0.0.1:2,http://[::1]:3",
            &settings(),
        )
        .expect("valid addresses");
        assert_eq!(
            replicas.addresses(),
            ["http://127.0.0.1:1", "http://127.0.0.1:2", "http://[::1]:3"]
        );
    }

    #[tokio::test]
    async fn a_bad_entry_is_named_in_the_error() {
        let error = Replicas::new("http://127.0.0.1:1,,http://x:2", &settings())
            .expect_err("an empty entry is invalid");
        assert!(error.reason.starts_with("\"\":"), "{error}");
        let error = Replicas::new("http://127.0.0.1:1,/no-host", &settings())
            .expect_err("an entry without a host is invalid");
        assert!(error.reason.contains("/no-host"), "{error}");
    }

    #[tokio::test]
    async fn calls_take_turns_and_skip_a_failed_replica() {
        let replicas = Replicas::new(
            "http://127.0.0.1:1,http://127.0.0.1:2,http://127.0.0.1:3",
            &settings(),
        )
        .expect("valid addresses");
        let shared = &replicas.shared;
        let turns: Vec<_> = (0..3).map(|_| shared.pick().address.clone()).collect();
        assert_eq!(
            turns,
            [
                "http://127.0.0.1:1",
                "http://127.0.0.1:2",
                "http://127.0.0.1:3"
            ]
        );
        shared.current()[1].mark_failed(&"refused");
        let turns: Vec<_> = (0..4).map(|_| shared.pick().address.clone()).collect();
        assert!(
            !turns.contains(&"http://127.0.0.1:2".to_owned()),
            "{turns:?}"
        );
        for replica in shared.current().iter() {
            replica.mark_failed(&"refused");
        }
        // Every replica failing: calls still go somewhere, and fail fast there.
        let _ = shared.pick();
    }

    /// A gRPC health server on a loopback port reporting `status` for "probe",
    /// and the trigger that stops it.
    async fn health_server(
        status: tonic_health::ServingStatus,
    ) -> (String, tokio::sync::oneshot::Sender<()>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a loopback port");
        let address = format!("http://{}", listener.local_addr().expect("bound"));
        let (reporter, service) = tonic_health::server::health_reporter();
        reporter.set_service_status("probe", status).await;
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming_shutdown(
                    tokio_stream::wrappers::TcpListenerStream::new(listener),
                    async {
                        let _ = stopped.await;
                    },
                ),
        );
        (address, stop)
    }

    async fn probe(replicas: &Replicas) -> Result<i32, tonic::Status> {
        tonic_health::pb::health_client::HealthClient::new(replicas.clone())
            .check(tonic_health::pb::HealthCheckRequest {
                service: "probe".into(),
            })
            .await
            .map(|answer| answer.into_inner().status)
    }

    #[tokio::test]
    async fn calls_reach_every_replica_and_a_stopped_one_leaves_rotation() {
        use tonic_health::ServingStatus;
        let (serving, stop_serving) = health_server(ServingStatus::Serving).await;
        let (not_serving, _keep) = health_server(ServingStatus::NotServing).await;
        let replicas =
            Replicas::new(&format!("{serving},{not_serving}"), &settings()).expect("valid");
        let mut answers = Vec::new();
        for _ in 0..4 {
            answers.push(probe(&replicas).await.expect("both replicas answer"));
        }
        answers.sort_unstable();
        // SERVING is 1 and NOT_SERVING 2 on the wire: each replica took two.
        assert_eq!(answers, [1, 1, 2, 2]);

        stop_serving.send(()).expect("the server runs");
        tokio::time::sleep(Duration::from_millis(100)).await;
        let mut failures = 0;
        for _ in 0..10 {
            match probe(&replicas).await {
                Ok(status) => assert_eq!(status, 2, "only the replica still up answers"),
                Err(_) => failures += 1,
            }
        }
        assert!(
            failures <= 1,
            "a stopped replica fails one call at most: {failures}"
        );
    }

    #[tokio::test]
    async fn a_host_name_is_resolved_to_its_addresses_keeping_the_authority() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a loopback port");
        let port = listener.local_addr().expect("bound").port();
        let mut source = Source::parse(&format!("http://localhost:{port}")).expect("valid");
        assert_eq!(source.name.as_deref(), Some("localhost"));
        assert!(source.resolve().await, "localhost resolves to an address");
        assert!(
            source
                .replicas
                .iter()
                .any(|replica| replica.address == format!("127.0.0.1:{port}")),
            "{:?}",
            source
                .replicas
                .iter()
                .map(|r| &r.address)
                .collect::<Vec<_>>()
        );
        assert!(!source.resolve().await, "the same addresses change nothing");
        let listening = source
            .replicas
            .iter()
            .find(|replica| replica.address == format!("127.0.0.1:{port}"))
            .expect("found above");
        assert!(
            listening.failed.load(Ordering::Relaxed),
            "new replicas wait for a probe"
        );
        assert!(listening.accepts_connections().await);
    }
}
