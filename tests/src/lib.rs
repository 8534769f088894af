//! One way to start Attune for a test: [`TestApp::spawn`] runs the real monolith
//! (the same `attune::serve` as `attune serve`: every service's backend behind the
//! gateway) on an ephemeral loopback port against a fresh database of its own,
//! and hands out a typed client per service through the public port. Dropping it
//! shuts the server down.
//!
//! [`TestApp::pod`] starts one service's backend alone on its own port over the
//! same database, as a Kubernetes pod runs it, to reach what the public port does
//! not route (a service's internal `attune.privacy.v1.DataSubjectService`).
//! [`TestApp::spawn_split`] runs consent and the gateway as two servers, the
//! gateway reaching consent over the network. [`TestApp::spawn_with_clock`] runs
//! the monolith on a [`ManualClock`], so that a test moves time instead of
//! sleeping.
//!
//! Every storage test runs on SQLite, and on PostgreSQL too when
//! `ATTUNE_TEST_DATABASE_URL` is set: write it once with [`backend_tests!`].
//!
//! Each service's helpers live in its own module ([`consent`]: calls such as
//! [`TestApp::record_consent`]; [`consent_requests`]: ready-made requests);
//! [`data_subject`] has the gateway's export and erasure every service's tests
//! use; this file holds only what every service's tests share.

use std::net::SocketAddr;

use attune::Role;
use attune_kit::clock::Clock;
use attune_kit::config::Config;
use attune_kit::db::{TestDatabase, fresh_test_database_on};
use attune_proto::consent::v1::consent_service_client::ConsentServiceClient;
use attune_proto::gateway::v1::data_access_service_client::DataAccessServiceClient;
use attune_proto::gateway::v1::data_subject_request_service_client::DataSubjectRequestServiceClient;
use attune_proto::privacy::v1::data_subject_service_client::DataSubjectServiceClient;
use attune_proto::profile::v1::event_service_client::EventServiceClient;
use attune_proto::profile::v1::profile_service_client::ProfileServiceClient;
use attune_proto::profile::v1::segment_service_client::SegmentServiceClient;
use chrono::{SubsecRound, Utc};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tonic::Status;
use tonic::transport::Channel;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_types::StatusExt;

pub use attune_kit::clock::ManualClock;
pub use attune_kit::db::Backend;
pub use attune_proto::common::v1 as common_pb;
pub use attune_proto::consent::v1 as consent_pb;
pub use attune_proto::gateway::v1 as gateway_pb;
pub use attune_proto::privacy::v1 as privacy_pb;
pub use attune_proto::profile::v1 as profile_pb;

pub mod bad_input;
pub mod consent;
pub mod consent_requests;
pub mod data_subject;
pub mod delivery;
pub mod gateway_experience;
pub mod gateway_policy;
pub mod gateway_subject;
pub mod loyalty;
pub mod pacing;
pub mod profile_events;
pub mod profile_people;
pub mod recommendation;

/// A running Attune server.
pub struct TestApp {
    /// A connection to the server's port (the public port of the monolith).
    pub channel: Channel,
    /// The server's configuration, with its database and address.
    pub config: Config,
    /// The address the server listens on.
    pub address: SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
    server: Option<JoinHandle<anyhow::Result<()>>>,
    /// Further pods this server needs (the gateway of [`Self::spawn_split`]
    /// reaches every service's pod), stopped after it.
    _pods: Vec<TestApp>,
    // Declared last: the database outlives the server that uses it. A server
    // sharing another's database (a pod, a gateway) holds none.
    _database: Option<TestDatabase>,
}

impl TestApp {
    /// Starts the monolith against a fresh database on `backend`, or returns `None`
    /// for PostgreSQL when no test server is configured.
    pub async fn spawn(backend: Backend) -> Option<Self> {
        Self::spawn_on(backend, Clock::system()).await
    }

    /// [`spawn`](Self::spawn), every service reading "now" from `clock`: time
    /// stands still until the test moves it.
    pub async fn spawn_with_clock(backend: Backend, clock: &ManualClock) -> Option<Self> {
        Self::spawn_on(backend, clock.clock()).await
    }

    /// [`spawn`](Self::spawn) with `configure` applied to the configuration
    /// first (the gateway's security, limits).
    pub async fn spawn_configured(
        backend: Backend,
        configure: impl FnOnce(&mut Config),
    ) -> Option<Self> {
        let (mut config, database) = fresh_config(backend).await?;
        configure(&mut config);
        let mut app = Self::start(config, Role::All, Clock::system()).await;
        app._database = Some(database);
        Some(app)
    }

    /// [`spawn_configured`](Self::spawn_configured), every service reading
    /// "now" from `clock`.
    pub async fn spawn_configured_with_clock(
        backend: Backend,
        clock: &ManualClock,
        configure: impl FnOnce(&mut Config),
    ) -> Option<Self> {
        let (mut config, database) = fresh_config(backend).await?;
        configure(&mut config);
        let mut app = Self::start(config, Role::All, clock.clock()).await;
        app._database = Some(database);
        Some(app)
    }

    async fn spawn_on(backend: Backend, clock: Clock) -> Option<Self> {
        let (config, database) = fresh_config(backend).await?;
        let mut app = Self::start(config, Role::All, clock).await;
        app._database = Some(database);
        Some(app)
    }

    /// Starts `service`'s backend alone (`attune serve --service NAME`) on its own
    /// port, over this app's database: its public API, its internal
    /// `DataSubjectService`, health and reflection. It stops when dropped.
    pub async fn pod(&self, service: &str) -> Self {
        // A pod calls consent through this server's port, which serves or
        // routes consent's API.
        self.pod_with_consent_at(service, &format!("http://{}", self.address))
            .await
    }

    /// [`pod`](Self::pod), calling consent at `consent` (for example an address
    /// where nothing listens, to see what the service does without consent).
    pub async fn pod_with_consent_at(&self, service: &str, consent: &str) -> Self {
        self.pod_with_peer_at(service, "consent", consent).await
    }

    /// [`pod`](Self::pod), calling its peer `peer` at `address` (for example
    /// an address where nothing listens, to see how the service degrades).
    pub async fn pod_with_peer_at(&self, service: &str, peer: &str, address: &str) -> Self {
        let role = Role::named(Some(service)).expect("the service is registered");
        let mut config = self.config.clone();
        // Every other peer is reached through this server's port too.
        for peer in attune::SERVICES {
            config
                .peers
                .addresses
                .insert(peer.name().into(), format!("http://{}", self.address));
        }
        config
            .peers
            .addresses
            .insert(peer.into(), address.to_owned());
        Self::start(config, role, Clock::system()).await
    }

    /// Every service as its own server (`attune serve --service NAME`) and the
    /// gateway in front of them (`--service gateway`), reaching each over HTTP/2
    /// at the address from `gateway.backends.NAME`; services call the pods
    /// started before them at `peers.NAME`. Returns the gateway (which keeps the other pods running),
    /// then consent.
    pub async fn spawn_split(backend: Backend) -> Option<(Self, Self)> {
        let (mut config, database) = fresh_config(backend).await?;
        let consent_role = Role::named(Some("consent")).ok()?;
        let mut consent = Self::start(config.clone(), consent_role, Clock::system()).await;
        consent._database = Some(database);
        let consent_address = format!("http://{}", consent.address);
        config
            .peers
            .addresses
            .insert("consent".into(), consent_address.clone());
        config
            .gateway
            .backends
            .insert("consent".into(), consent_address);
        let mut pods = Vec::new();
        for service in attune::SERVICES {
            if service.name() == "consent" {
                continue;
            }
            let pod = Self::start(config.clone(), Role::Service(*service), Clock::system()).await;
            let pod_address = format!("http://{}", pod.address);
            // Services are listed after those they call: the next pods reach
            // this one as a peer.
            config
                .peers
                .addresses
                .insert(service.name().into(), pod_address.clone());
            config
                .gateway
                .backends
                .insert(service.name().into(), pod_address);
            pods.push(pod);
        }
        let mut gateway = Self::start(config, Role::Gateway, Clock::system()).await;
        gateway._pods = pods;
        Some((gateway, consent))
    }

    /// A client of a server this test did not start (a process of the real
    /// binary) at `address`, so that every helper works against it; `config`
    /// names what a helper may read directly (its database). Dropping it stops
    /// nothing.
    pub async fn attach(address: SocketAddr, config: Config) -> Self {
        let channel = Channel::from_shared(format!("http://{address}"))
            .expect("a socket address is a valid URI")
            .connect()
            .await
            .expect("the server accepts connections");
        Self {
            channel,
            config,
            address,
            shutdown: None,
            server: None,
            _pods: Vec::new(),
            _database: None,
        }
    }

    /// Serves `role` with `config` on `clock` on an ephemeral port and waits
    /// until it and every service it serves report SERVING.
    async fn start(config: Config, role: Role, clock: Clock) -> Self {
        let app = Self::launch(config, role, clock).await;
        let services: Vec<&str> = match role {
            Role::Service(service) => service.api_services().to_vec(),
            Role::All | Role::Gateway => attune::SERVICES
                .iter()
                .flat_map(|service| service.api_services().iter().copied())
                .collect(),
        };
        for service in std::iter::once("").chain(services) {
            app.wait_until_serving(service).await;
        }
        app
    }

    /// Serves `role` with `config` on `clock` on an ephemeral port, without
    /// waiting for anything but the connection.
    async fn launch(mut config: Config, role: Role, clock: Clock) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("an ephemeral loopback port is free");
        let address = listener
            .local_addr()
            .expect("a bound listener has an address");
        config.listen = address;
        let (shutdown, stop) = oneshot::channel::<()>();
        let stopped = async move {
            let _ = stop.await;
        };
        let server = tokio::spawn(attune::serve_with_clock(
            config.clone(),
            role,
            listener,
            stopped,
            clock,
        ));
        // The listener is bound before the server starts, so connecting cannot race it.
        let channel = Channel::from_shared(format!("http://{address}"))
            .expect("a socket address is a valid URI")
            .connect()
            .await
            .expect("the test server accepts connections");
        Self {
            channel,
            config,
            address,
            shutdown: Some(shutdown),
            server: Some(server),
            _pods: Vec::new(),
            _database: None,
        }
    }

    /// Waits until health says `service` is SERVING (`""`: the server). For the
    /// server, migrations have run and every backend is mounted, so a test may
    /// also reach into the database; for a routed service, the gateway has seen
    /// its backend SERVING.
    pub async fn wait_until_serving(&self, service: &str) {
        for _ in 0..500 {
            if self.health(service).await == Some(ServingStatus::Serving) {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        panic!("{service:?} was not SERVING within 5 seconds");
    }

    /// What health reports for `service` now (`None`: no answer or not known).
    pub async fn health(&self, service: &str) -> Option<ServingStatus> {
        HealthClient::new(self.channel.clone())
            .check(HealthCheckRequest {
                service: service.into(),
            })
            .await
            .ok()
            .and_then(|response| ServingStatus::try_from(response.into_inner().status).ok())
    }

    /// A consent client on the shared connection.
    pub fn consent(&self) -> ConsentServiceClient<Channel> {
        ConsentServiceClient::new(self.channel.clone())
    }

    /// A profile client (profiles, identities, zero-party data) on the shared connection.
    pub fn profiles(&self) -> ProfileServiceClient<Channel> {
        ProfileServiceClient::new(self.channel.clone())
    }

    /// Profile's events, feed and traits on the shared connection.
    pub fn events(&self) -> EventServiceClient<Channel> {
        EventServiceClient::new(self.channel.clone())
    }

    /// A client of profile's segments on the shared connection.
    pub fn segments(&self) -> SegmentServiceClient<Channel> {
        SegmentServiceClient::new(self.channel.clone())
    }

    /// The gateway's data-subject requests (export and erasure across services).
    pub fn data_subject_requests(&self) -> DataSubjectRequestServiceClient<Channel> {
        DataSubjectRequestServiceClient::new(self.channel.clone())
    }

    /// The gateway's data-access log: who read a customer's data.
    pub fn data_access(&self) -> DataAccessServiceClient<Channel> {
        DataAccessServiceClient::new(self.channel.clone())
    }

    /// A service's own, internal data-subject API: served by a [`pod`](Self::pod),
    /// never by the public port.
    pub fn internal_data_subject(&self) -> DataSubjectServiceClient<Channel> {
        DataSubjectServiceClient::new(self.channel.clone())
    }

    /// Signals shutdown without waiting for it.
    pub fn begin_shutdown(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
    }

    /// Waits for the server task to finish.
    pub async fn join(&mut self) -> anyhow::Result<()> {
        match self.server.take() {
            Some(server) => server.await.expect("the server task does not panic"),
            None => Ok(()),
        }
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.begin_shutdown();
    }
}

/// The default configuration over a fresh database on `backend` (`None`: no
/// PostgreSQL test server is configured), with test logging installed.
async fn fresh_config(backend: Backend) -> Option<(Config, TestDatabase)> {
    attune_kit::telemetry::init_for_tests();
    let database = fresh_test_database_on(backend, "e2e")
        .await
        .expect("a fresh test database can be created")?;
    let mut config = Config::default();
    config.database = database.config.clone();
    // Loyalty's background offer pass would issue offers behind a test's back;
    // the tests of the pass turn it on.
    config.loyalty.offer_generation_interval = std::time::Duration::ZERO;
    Some((config, database))
}

/// A [`ManualClock`] standing at the system's time now, to the microsecond (the
/// precision Attune stores): a test's times relative to it round-trip exactly.
pub fn manual_clock_at_now() -> ManualClock {
    ManualClock::starting_at(Utc::now().trunc_subsecs(6))
}

/// Every item of a paged listing: `page` reads the page a token names (the first
/// page: an empty token) as its items and the next page's token. Panics after 100
/// pages, so that a token that never advances fails rather than hangs.
pub async fn every_page<T>(mut page: impl AsyncFnMut(String) -> (Vec<T>, String)) -> Vec<T> {
    let mut items = Vec::new();
    let mut token = String::new();
    for _ in 0..100 {
        let (more, next) = page(token).await;
        items.extend(more);
        if next.is_empty() {
            return items;
        }
        token = next;
    }
    panic!(
        "100 pages and the listing has not ended ({} items so far)",
        items.len()
    );
}

/// The field each violation in a status's google.rpc.BadRequest details names, in
/// order (none without such details).
pub fn violated_fields(status: &Status) -> Vec<String> {
    status
        .get_details_bad_request()
        .map(|details| {
            details
                .field_violations
                .into_iter()
                .map(|violation| violation.field)
                .collect()
        })
        .unwrap_or_default()
}

/// Writes each test once and runs it on every backend: `sqlite` always, `postgres`
/// when `ATTUNE_TEST_DATABASE_URL` was set when the tests were built (see
/// `tests/build.rs`); otherwise the `postgres` case is ignored, so nextest reports it
/// as skipped rather than as a pass.
///
/// `async fn name(app) { .. }` gets a [`TestApp`] on the system clock;
/// `async fn name(app, clock) { .. }` one on a [`ManualClock`] (standing at the
/// system's time, to the microsecond, when the test starts) that the test moves.
#[macro_export]
macro_rules! backend_tests {
    () => {};
    (async fn $name:ident($app:ident) $body:block $($rest:tt)*) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            async fn run($app: $crate::TestApp) $body

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                let app = $crate::TestApp::spawn($crate::Backend::Sqlite)
                    .await
                    .expect("SQLite is always available");
                run(app).await;
            }

            $crate::postgres_test! {
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn postgres() {
                    let app = $crate::TestApp::spawn($crate::Backend::Postgres)
                        .await
                        .expect("ATTUNE_TEST_DATABASE_URL is set at run time as it was at build time");
                    run(app).await;
                }
            }
        }
        $crate::backend_tests! { $($rest)* }
    };
    (async fn $name:ident($app:ident, $clock:ident) $body:block $($rest:tt)*) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            async fn run($app: $crate::TestApp, $clock: $crate::ManualClock) $body

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                let clock = $crate::manual_clock_at_now();
                let app = $crate::TestApp::spawn_with_clock($crate::Backend::Sqlite, &clock)
                    .await
                    .expect("SQLite is always available");
                run(app, clock).await;
            }

            $crate::postgres_test! {
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn postgres() {
                    let clock = $crate::manual_clock_at_now();
                    let app = $crate::TestApp::spawn_with_clock($crate::Backend::Postgres, &clock)
                        .await
                        .expect("ATTUNE_TEST_DATABASE_URL is set at run time as it was at build time");
                    run(app, clock).await;
                }
            }
        }
        $crate::backend_tests! { $($rest)* }
    };
}

/// Polls `probe` until it holds, for up to 10 seconds: for effects a server
/// applies in the background (a follower, a sweep, a batched writer).
pub async fn eventually(what: &str, mut probe: impl AsyncFnMut() -> bool) {
    for _ in 0..200 {
        if probe().await {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("{what} did not happen within 10 seconds");
}

/// Marks a PostgreSQL-only test as ignored unless this crate was built with
/// `ATTUNE_TEST_DATABASE_URL` set. Decided here, where `tests/build.rs` sets the
/// cfg, not where the macro is expanded.
#[cfg(attune_test_postgres)]
#[doc(hidden)]
#[macro_export]
macro_rules! postgres_test {
    ($test:item) => {
        $test
    };
}

/// Marks a PostgreSQL-only test as ignored unless this crate was built with
/// `ATTUNE_TEST_DATABASE_URL` set.
#[cfg(not(attune_test_postgres))]
#[doc(hidden)]
#[macro_export]
macro_rules! postgres_test {
    ($test:item) => {
        #[ignore = "set ATTUNE_TEST_DATABASE_URL to run on PostgreSQL"]
        $test
    };
}
