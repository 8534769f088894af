//! One way to start Attune for a test: [`TestApp::spawn`] runs the real server
//! (the same `attune::serve` as the binary) on an ephemeral loopback port against
//! a fresh database of its own, and hands out typed clients. Dropping it shuts the
//! server down.
//!
//! Every storage test runs on SQLite, and on PostgreSQL too when
//! `ATTUNE_TEST_DATABASE_URL` is set: write it once with [`backend_tests!`].
//!
//! Consent requests come ready-made from [`consent_requests`]; calls that need the
//! server ([`TestApp::record_consent`], [`TestApp::check_consent`], ...) are methods.

use attune::ServiceName;
use attune_kit::config::Config;
use attune_kit::db::{TestDatabase, fresh_test_database_on};
use attune_proto::consent::v1::consent_service_client::ConsentServiceClient;
use attune_proto::privacy::v1::data_subject_service_client::DataSubjectServiceClient;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_stream::StreamExt;
use tonic::transport::Channel;
use tonic::{Status, Streaming};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_types::StatusExt;

pub use attune_kit::db::Backend;
pub use attune_proto::common::v1 as common_pb;
pub use attune_proto::consent::v1 as consent_pb;
pub use attune_proto::privacy::v1 as privacy_pb;

pub mod bad_input;
pub mod consent_requests;

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
        self.consent_history_paged(customer, purpose, 0).await
    }

    /// The same history read in pages of `page_size` (0: the server's default).
    pub async fn consent_history_paged(
        &self,
        customer: &str,
        purpose: &str,
        page_size: i32,
    ) -> Vec<consent_pb::ConsentRecord> {
        every_page(async |page_token| {
            let page = self
                .consent()
                .list_consent_history(consent_pb::ListConsentHistoryRequest {
                    customer_id: customer.into(),
                    purpose_code: purpose.into(),
                    page_size,
                    page_token,
                })
                .await
                .expect("history can be listed")
                .into_inner();
            (page.records, page.next_page_token)
        })
        .await
    }

    /// Records `request`, which must succeed; returns the ledger records it holds.
    pub async fn record_consent(
        &self,
        request: consent_pb::RecordConsentRequest,
    ) -> Vec<consent_pb::ConsentRecord> {
        self.consent()
            .record_consent(request)
            .await
            .expect("the decision is recorded")
            .into_inner()
            .records
    }

    /// CheckConsent's answers for `customer` on `codes`, in the order asked.
    pub async fn check_consent(
        &self,
        customer: &str,
        codes: &[&str],
    ) -> Vec<consent_pb::PurposeCheck> {
        self.consent()
            .check_consent(consent_pb::CheckConsentRequest {
                customer_id: customer.into(),
                purpose_codes: codes.iter().map(|code| (*code).into()).collect(),
            })
            .await
            .expect("check succeeds")
            .into_inner()
            .checks
    }

    /// The change stream from just after `after_position` (0: from the start).
    pub async fn watch_changes(
        &self,
        after_position: i64,
    ) -> Streaming<consent_pb::WatchConsentChangesResponse> {
        self.consent()
            .watch_consent_changes(consent_pb::WatchConsentChangesRequest {
                after_position,
                start_at_newest: false,
            })
            .await
            .expect("the change stream opens")
            .into_inner()
    }

    /// The newest change position, as the first response of a watch at the newest says.
    pub async fn newest_change_position(&self) -> i64 {
        let mut stream = self
            .consent()
            .watch_consent_changes(consent_pb::WatchConsentChangesRequest {
                after_position: 0,
                start_at_newest: true,
            })
            .await
            .expect("the change stream opens")
            .into_inner();
        let first = stream
            .next()
            .await
            .expect("the stream sends a first response")
            .expect("the first response is not an error");
        assert!(
            first.changes.is_empty(),
            "a watch at the newest starts with a heartbeat"
        );
        first.position
    }

    /// VerifyAuditLog's verdict on the whole audit log.
    pub async fn verify_audit_log(&self) -> consent_pb::VerifyAuditLogResponse {
        self.consent()
            .verify_audit_log(consent_pb::VerifyAuditLogRequest {})
            .await
            .expect("verification answers")
            .into_inner()
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
        )*
    };
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
