//! A database outage on PostgreSQL: calls fail fast with UNAVAILABLE (never
//! INTERNAL, never a wait past the client's deadline), health reports
//! NOT_SERVING, and when the database is back both recover without a restart.
//!
//! The server reaches its database through a TCP proxy this test controls:
//! cutting the proxy is the outage as the server sees it (connections dropped,
//! new ones refused), without stopping the PostgreSQL server other tests share.

use std::net::SocketAddr;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use attune::Role;
use attune_kit::config::Config;
use attune_kit::db::{Backend, fresh_test_database_on};
use attune_tests::consent_pb;
use attune_tests::consent_requests::{decision, record};
use consent_pb::consent_service_client::ConsentServiceClient;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;
use tonic::{Code, Request};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

/// The deadline a typical client sets; every answer must come well inside it.
const CLIENT_DEADLINE: Duration = Duration::from_secs(2);

/// A TCP proxy to `upstream` that can be cut (open connections dropped, the port
/// closed so new connections are refused, as with a stopped server) and
/// restored on the same port.
struct Proxy {
    address: SocketAddr,
    upstream: SocketAddr,
    /// The accept loop and the token its connections end on, while up.
    up: Mutex<Option<(tokio::task::JoinHandle<()>, CancellationToken)>>,
}

impl Proxy {
    async fn start(upstream: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a loopback port is free");
        let address = listener
            .local_addr()
            .expect("a bound listener has an address");
        let proxy = Self {
            address,
            upstream,
            up: Mutex::new(None),
        };
        proxy.accept_on(listener);
        proxy
    }

    fn accept_on(&self, listener: TcpListener) {
        let (upstream, token) = (self.upstream, CancellationToken::new());
        let cut = token.clone();
        let accepting = tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                let cut = cut.clone();
                tokio::spawn(async move {
                    let Ok(mut server) = TcpStream::connect(upstream).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                        () = cut.cancelled() => {}
                    }
                });
            }
        });
        *self.up.lock().unwrap_or_else(PoisonError::into_inner) = Some((accepting, token));
    }

    fn cut(&self) {
        if let Some((accepting, token)) = self
            .up
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
        {
            accepting.abort(); // drops the listener: connecting is refused
            token.cancel();
        }
    }

    async fn restore(&self) {
        // The accept task may take a moment to drop the old listener.
        for _ in 0..100 {
            if let Ok(listener) = TcpListener::bind(self.address).await {
                self.accept_on(listener);
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("the proxy's port {} cannot be bound again", self.address);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.cut();
    }
}

/// `url` with its `host:port` replaced by `address`, and the address it named.
fn through(url: &str, address: SocketAddr) -> (String, SocketAddr) {
    let authority_start = url
        .find('@')
        .map_or_else(|| url.find("://").map_or(0, |i| i + 3), |i| i + 1);
    let authority_end = authority_start
        + url[authority_start..]
            .find('/')
            .unwrap_or(url.len() - authority_start);
    let upstream = url[authority_start..authority_end]
        .parse()
        .expect("the test server is named by IP address and port");
    (
        format!(
            "{}{address}{}",
            &url[..authority_start],
            &url[authority_end..]
        ),
        upstream,
    )
}

/// Consent's health on the public port, which the gateway mirrors from consent's
/// backend (the overall `""` is the gateway's own, which stays up while one
/// backend is down).
async fn health(channel: &Channel) -> Option<i32> {
    let mut request = Request::new(HealthCheckRequest {
        service: "attune.consent.v1.ConsentService".into(),
    });
    request.set_timeout(CLIENT_DEADLINE);
    HealthClient::new(channel.clone())
        .check(request)
        .await
        .ok()
        .map(|response| response.into_inner().status)
}

async fn wait_for_health(channel: &Channel, wanted: ServingStatus, within: Duration) -> Duration {
    let start = Instant::now();
    while start.elapsed() < within {
        if health(channel).await == Some(wanted as i32) {
            return start.elapsed();
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("health did not report {wanted:?} within {within:?}");
}

/// One history read (a database read on every call), with the client's deadline:
/// its code and how long it took.
async fn read_history(
    client: &mut ConsentServiceClient<Channel>,
    customer: &str,
) -> (Code, Duration) {
    let mut request = Request::new(consent_pb::ListConsentHistoryRequest {
        customer_id: customer.into(),
        purpose_code: String::new(),
        page_size: 0,
        page_token: String::new(),
    });
    request.set_timeout(CLIENT_DEADLINE);
    let start = Instant::now();
    let code = match client.list_consent_history(request).await {
        Ok(_) => Code::Ok,
        Err(status) => status.code(),
    };
    (code, start.elapsed())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(attune_test_postgres),
    ignore = "set ATTUNE_TEST_DATABASE_URL to run on PostgreSQL"
)]
async fn a_database_outage_fails_fast_reports_not_serving_and_recovers() {
    attune_kit::telemetry::init_for_tests();
    let database = fresh_test_database_on(Backend::Postgres, "outage")
        .await
        .expect("a configured server accepts CREATE DATABASE")
        .expect("the test runs only when a PostgreSQL server is configured");
    let (_, upstream) = through(
        &database.config.url,
        "127.0.0.1:1".parse().expect("address"),
    );
    let proxy = Proxy::start(upstream).await;
    let mut config = Config::default();
    config.database = database.config.clone();
    config.database.url = through(&database.config.url, proxy.address).0;
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a loopback port is free");
    let address = listener
        .local_addr()
        .expect("a bound listener has an address");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(attune::serve(config, Role::All, listener, async move {
        let _ = stopped.await;
    }));
    let channel = Channel::from_shared(format!("http://{address}"))
        .expect("a socket address is a valid URI")
        .connect()
        .await
        .expect("the server accepts connections");
    wait_for_health(&channel, ServingStatus::Serving, Duration::from_secs(10)).await;
    let mut consent = ConsentServiceClient::new(channel.clone());
    let customer = "cust-outage";
    consent
        .record_consent(record(
            customer,
            vec![decision("marketing_email", consent_pb::Decision::Granted)],
        ))
        .await
        .expect("the database is up");
    assert_eq!(read_history(&mut consent, customer).await.0, Code::Ok);

    proxy.cut();
    // Before the probe notices, a call waits at most the pool's acquire timeout
    // (1 s by default): it must still answer inside the client's deadline.
    let (code, took) = read_history(&mut consent, customer).await;
    eprintln!("the first call after the cut answered {code:?} in {took:?}");
    assert_eq!(
        code,
        Code::Unavailable,
        "an outage is UNAVAILABLE, not INTERNAL, inside the deadline ({took:?})"
    );

    let noticed =
        wait_for_health(&channel, ServingStatus::NotServing, Duration::from_secs(3)).await;
    eprintln!("NOT_SERVING {noticed:?} after the first failure");
    let liveness = HealthClient::new(channel.clone())
        .check(HealthCheckRequest {
            service: attune_kit::server::LIVENESS.into(),
        })
        .await
        .expect("liveness is answered")
        .into_inner()
        .status;
    assert_eq!(
        liveness,
        ServingStatus::Serving as i32,
        "a process that waits for its database is alive: no restart"
    );
    for _ in 0..5 {
        let (code, took) = read_history(&mut consent, customer).await;
        assert_eq!(code, Code::Unavailable);
        // Refused without waiting on the pool: well under its 1 s acquire timeout.
        assert!(
            took < Duration::from_millis(800),
            "a call took {took:?} once the outage was known"
        );
    }
    let write = consent
        .record_consent(record(
            customer,
            vec![decision("marketing_email", consent_pb::Decision::Withdrawn)],
        ))
        .await
        .expect_err("nothing can be written while the database is away");
    assert_eq!(write.code(), Code::Unavailable);

    proxy.restore().await;
    let recovered = wait_for_health(&channel, ServingStatus::Serving, Duration::from_secs(5)).await;
    eprintln!("SERVING again {recovered:?} after the database came back");
    assert_eq!(read_history(&mut consent, customer).await.0, Code::Ok);
    consent
        .record_consent(record(
            customer,
            vec![decision("marketing_email", consent_pb::Decision::Withdrawn)],
        ))
        .await
        .expect("writes work again");

    let _ = stop.send(());
    server
        .await
        .expect("the server task does not panic")
        .expect("the server stops cleanly");
}
