//! One way to start Attune for a test: [`TestApp::spawn`] runs the real server
//! (the same `attune::serve` as the binary) on an ephemeral loopback port against
//! a fresh database of its own, and hands out typed clients. Dropping it shuts the
//! server down.
//!
//! Every storage test runs on SQLite, and on PostgreSQL too when
//! `ATTUNE_TEST_DATABASE_URL` is set: write it once with [`backend_tests!`].

use attune::ServiceName;
use attune_kit::config::Config;
use attune_kit::db::{TestDatabase, fresh_test_database_on};
use attune_proto::consent::v1::consent_service_client::ConsentServiceClient;
use attune_proto::privacy::v1::data_subject_service_client::DataSubjectServiceClient;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tonic::transport::Channel;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

pub use attune_kit::db::Backend;
pub use attune_proto::common::v1 as common_pb;
pub use attune_proto::consent::v1 as consent_pb;
pub use attune_proto::privacy::v1 as privacy_pb;

/// A running Attune server with its own database.
pub struct TestApp {
    pub channel: Channel,
    pub config: Config,
    shutdown: Option<oneshot::Sender<()>>,
    server: Option<JoinHandle<anyhow::Result<()>>>,
    // Declared last: the database outlives the server that uses it.
    _database: TestDatabase,
}

impl TestApp {
    /// Starts every service against a fresh database on `backend`, or returns `None`
    /// for PostgreSQL when no test server is configured.
    pub async fn spawn(backend: Backend) -> Option<Self> {
        attune_kit::telemetry::init_for_tests();
        let database = fresh_test_database_on(backend, "e2e")
            .await
            .expect("a fresh test database can be created")?;
        let mut config = Config::default();
        config.database = database.config.clone();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("an ephemeral loopback port is free");
        let address = listener
            .local_addr()
            .expect("a bound listener has an address");
        config.listen = address;
        let (shutdown, stop) = oneshot::channel::<()>();
        let server = tokio::spawn(attune::serve(
            config.clone(),
            &ServiceName::ALL,
            listener,
            async move {
                let _ = stop.await;
            },
        ));
        // The listener is bound before the server starts, so connecting cannot race it.
        let channel = Channel::from_shared(format!("http://{address}"))
            .expect("a socket address is a valid URI")
            .connect()
            .await
            .expect("the test server accepts connections");
        let app = Self {
            channel,
            config,
            shutdown: Some(shutdown),
            server: Some(server),
            _database: database,
        };
        app.wait_until_serving().await;
        Some(app)
    }

    /// Waits until health says SERVING: migrations have run and every service is
    /// mounted, so a test may also reach into the database directly.
    async fn wait_until_serving(&self) {
        let mut health = HealthClient::new(self.channel.clone());
        for _ in 0..500 {
            let status = health
                .check(HealthCheckRequest {
                    service: String::new(),
                })
                .await
                .map(|response| response.into_inner().status);
            if status.is_ok_and(|status| status == ServingStatus::Serving as i32) {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        panic!("the test server did not report SERVING within 5 seconds");
    }

    /// A consent client on the shared connection.
    pub fn consent(&self) -> ConsentServiceClient<Channel> {
        ConsentServiceClient::new(self.channel.clone())
    }

    /// A data-subject client (consent's export and erasure) on the shared connection.
    pub fn privacy(&self) -> DataSubjectServiceClient<Channel> {
        DataSubjectServiceClient::new(self.channel.clone())
    }

    /// A customer's whole consent history (every page), optionally for one purpose.
    pub async fn consent_history(
        &self,
        customer: &str,
        purpose: &str,
    ) -> Vec<consent_pb::ConsentRecord> {
        let mut records = Vec::new();
        let mut page_token = String::new();
        loop {
            let page = self
                .consent()
                .list_consent_history(consent_pb::ListConsentHistoryRequest {
                    customer_id: customer.into(),
                    purpose_code: purpose.into(),
                    page_size: 0,
                    page_token,
                })
                .await
                .expect("history can be listed")
                .into_inner();
            records.extend(page.records);
            if page.next_page_token.is_empty() {
                return records;
            }
            page_token = page.next_page_token;
        }
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

/// Writes each test once and runs it on every backend: `sqlite` always, `postgres`
/// when `ATTUNE_TEST_DATABASE_URL` is set (otherwise that case returns at once).
#[macro_export]
macro_rules! backend_tests {
    ($(async fn $name:ident($app:ident) $body:block)*) => {
        $(
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

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn postgres() {
                    if let Some(app) = $crate::TestApp::spawn($crate::Backend::Postgres).await {
                        run(app).await;
                    }
                }
            }
        )*
    };
}
