//! Consent checks per second, three ways, in one run and one process:
//!
//! - (a) the cached `ConsentChecker` on a warm cache, in process;
//! - (b) `CheckConsent` over gRPC on loopback against the real server (SQLite);
//! - (c) a bare tonic service on loopback answering a canned `CheckConsentResponse`
//!   of the same encoded size: the floor gRPC itself sets for (b).
//!
//! One more row tells how much of the gap between (b) and (c) is the server stack:
//!
//! - (e) the canned service of (c) behind attune-kit's `GrpcServer` (its layers:
//!   trace context, deadline, per-connection concurrency limit).
//!
//! The consent server answers (b) from its own cached checker, which follows its
//! change stream; (b) measures the served path a retailer's backend calls.
//!
//! It also times how soon after a withdrawal is recorded a cached checker in
//! another "service" (its own connection) stops answering "granted".
//!
//! One load generator drives each: `CONSENT_BENCH_TASKS` concurrent Tokio tasks
//! (default 64) calling in a loop for `CONSENT_BENCH_SECONDS` (default 5), counting
//! completed calls. Run with `cargo bench -p attune-tests --bench consent_check`.

#![allow(clippy::print_stdout)] // a benchmark's report is its output
#![allow(clippy::unwrap_used)] // a failed setup is how a benchmark stops

use std::future::Future;
use std::time::{Duration, Instant};

use attune_kit::consent::ConsentChecker;
use attune_kit::server::GrpcServer;
use attune_proto::consent::v1::consent_service_client::ConsentServiceClient;
use attune_proto::consent::v1::consent_service_server::{ConsentService, ConsentServiceServer};
use attune_proto::prost::Message as _;
use attune_tests::{Backend, TestApp, common_pb, consent_pb as pb};
use tokio_util::sync::CancellationToken;
use tonic::transport::server::TcpIncoming;
use tonic::transport::{Channel, Endpoint, Server};
use tonic::{Request, Response, Status};

const CUSTOMER: &str = "bench-customer";
const PURPOSES: [&str; 3] = ["personalization", "analytics", "marketing_email"];

fn main() {
    let seconds = env_number("CONSENT_BENCH_SECONDS", 5);
    let tasks = env_number("CONSENT_BENCH_TASKS", 64);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(run(Duration::from_secs(seconds), tasks));
}

fn env_number(name: &str, default: u64) -> u64 {
    match std::env::var(name) {
        Ok(value) => value
            .parse()
            .unwrap_or_else(|_| panic!("{name} must be a whole number, not {value:?}")),
        Err(_) => default,
    }
}

async fn run(duration: Duration, tasks: u64) {
    println!(
        "consent_check: {tasks} tasks x {}s each, {} worker threads",
        duration.as_secs(),
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    let app = TestApp::spawn(Backend::Sqlite).await.unwrap();
    grant(&app).await;

    // (a) The cached checker, warm. A hit completes without awaiting anything, so
    // each call yields once, as a request handler would between requests:
    // otherwise 64 busy tasks starve the follow task and the server's heartbeats,
    // and the checker (rightly) fails closed.
    let checker = ConsentChecker::new(
        connect(app.config.listen).await,
        &app.config.consent_checker,
    );
    let stop = CancellationToken::new();
    tokio::spawn(checker.clone().follow(stop.clone()));
    warm(&checker).await;
    let cached = {
        let checker = checker.clone();
        load(tasks, duration, move || {
            let checker = checker.clone();
            async move {
                let verdicts = checker.check(CUSTOMER, &PURPOSES).await;
                assert!(
                    verdicts[0].granted,
                    "the warm cache answers granted: {verdicts:?}"
                );
                tokio::task::yield_now().await;
            }
        })
        .await
    };
    let propagation = withdrawal_propagation(&app, &checker).await;
    stop.cancel();

    // (b) CheckConsent over gRPC against the real server.
    let real = app.consent();
    let request = pb::CheckConsentRequest {
        customer_id: CUSTOMER.into(),
        purpose_codes: PURPOSES.iter().map(|p| p.to_string()).collect(),
    };
    let canned = real
        .clone()
        .check_consent(request.clone())
        .await
        .unwrap()
        .into_inner();
    let grpc = load_checks(tasks, duration, real, request.clone()).await;

    // (c) The bare tonic baseline, answering the very response (b) gets.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let baseline_stop = CancellationToken::new();
    tokio::spawn(
        Server::builder()
            .add_service(ConsentServiceServer::new(Canned(canned.clone())))
            .serve_with_incoming_shutdown(
                TcpIncoming::from(listener).with_nodelay(Some(true)),
                baseline_stop.clone().cancelled_owned(),
            ),
    );
    let bare = load_checks(tasks, duration, client_at(address).await, request.clone()).await;
    baseline_stop.cancel();

    // (e) The canned service behind the kit's server stack.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let (kit_stop, kit_stopped) = tokio::sync::oneshot::channel::<()>();
    let mut server = GrpcServer::new(app.config.limits.clone());
    server.add_service(attune_kit::with_limits!(
        ConsentServiceServer::new(Canned(canned.clone())),
        &app.config.limits
    ));
    let kit_server = tokio::spawn(server.serve(listener, async move {
        let _ = kit_stopped.await;
    }));
    let kit = load_checks(tasks, duration, client_at(address).await, request).await;
    let _ = kit_stop.send(());
    let _ = kit_server.await;

    println!("response size: {} bytes encoded", canned.encoded_len());
    println!("(a) ConsentChecker::check, warm cache, in process: {cached:>12.0} calls/s");
    println!("(b) CheckConsent over gRPC, real server (SQLite):  {grpc:>12.0} calls/s");
    println!("(c) bare tonic unary, canned response:             {bare:>12.0} calls/s");
    println!("(b)/(c) = {:.2} (target >= 0.5)", grpc / bare);
    println!("(a)/(b) = {:.1}", cached / grpc);
    println!(
        "withdrawal enforced by a cached checker, from RecordConsent's return \
         ({WITHDRAWAL_ROUNDS} rounds): median {:?}, p95 {:?}, max {:?}",
        propagation[propagation.len() / 2],
        propagation[propagation.len() * 95 / 100],
        propagation[propagation.len() - 1],
    );
    println!("breakdown of (b):");
    println!("(e) canned response behind attune-kit GrpcServer:  {kit:>12.0} calls/s");
}

/// How many withdrawals the propagation measurement times.
const WITHDRAWAL_ROUNDS: usize = 50;

/// For fresh customers, one at a time: grant, wait until the checker has the
/// customer cached as granted, withdraw, and time how long after RecordConsent
/// returns the checker stops answering "granted". Sorted, fastest first.
async fn withdrawal_propagation(app: &TestApp, checker: &ConsentChecker) -> Vec<Duration> {
    let mut consent = app.consent();
    let mut latencies = Vec::with_capacity(WITHDRAWAL_ROUNDS);
    for round in 0..WITHDRAWAL_ROUNDS {
        let customer = format!("latency-{round}");
        let decide = |decision: pb::Decision| pb::RecordConsentRequest {
            customer_id: customer.clone(),
            decisions: vec![pb::PurposeDecision {
                purpose_code: PURPOSES[0].into(),
                decision: decision.into(),
                notice_version: 1,
            }],
            channel: common_pb::Channel::Web.into(),
            proof: None,
            decide_time: None,
            expire_time: None,
            request_id: format!("latency-{round}-{}", decision.as_str_name()),
        };
        consent
            .record_consent(decide(pb::Decision::Granted))
            .await
            .unwrap();
        while !checker.is_granted(&customer, PURPOSES[0]).await {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        consent
            .record_consent(decide(pb::Decision::Withdrawn))
            .await
            .unwrap();
        let recorded = Instant::now();
        while checker.is_granted(&customer, PURPOSES[0]).await {
            tokio::time::sleep(Duration::from_micros(200)).await;
        }
        latencies.push(recorded.elapsed());
    }
    latencies.sort();
    latencies
}

/// Grants two of the three purposes checked.
async fn grant(app: &TestApp) {
    let decisions = ["personalization", "analytics"]
        .into_iter()
        .map(|code| pb::PurposeDecision {
            purpose_code: code.into(),
            decision: pb::Decision::Granted.into(),
            notice_version: 1,
        })
        .collect();
    app.consent()
        .record_consent(pb::RecordConsentRequest {
            customer_id: CUSTOMER.into(),
            decisions,
            channel: common_pb::Channel::Web.into(),
            proof: None,
            decide_time: None,
            expire_time: None,
            request_id: "bench-grant".into(),
        })
        .await
        .unwrap();
}

/// Waits until the checker answers from a warm cache.
async fn warm(checker: &ConsentChecker) {
    for _ in 0..500 {
        if checker.is_granted(CUSTOMER, PURPOSES[0]).await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("the checker did not warm up within 5 seconds");
}

/// `CheckConsent` calls per second through `client`, each answered "granted".
async fn load_checks(
    tasks: u64,
    duration: Duration,
    client: ConsentServiceClient<Channel>,
    request: pb::CheckConsentRequest,
) -> f64 {
    load(tasks, duration, move || {
        let (mut client, request) = (client.clone(), request.clone());
        async move {
            let checks = client
                .check_consent(request)
                .await
                .unwrap()
                .into_inner()
                .checks;
            assert!(checks[0].granted, "the first purpose is granted");
        }
    })
    .await
}

async fn client_at(address: std::net::SocketAddr) -> ConsentServiceClient<Channel> {
    ConsentServiceClient::new(connect(address).await)
}

async fn connect(address: std::net::SocketAddr) -> Channel {
    Endpoint::from_shared(format!("http://{address}"))
        .unwrap()
        .connect()
        .await
        .unwrap()
}

/// Runs `tasks` tasks calling `call` in a loop until `duration` is over; returns
/// completed calls per second.
async fn load<F, Fut>(tasks: u64, duration: Duration, call: F) -> f64
where
    F: Fn() -> Fut + Clone + Send + 'static,
    Fut: Future<Output = ()> + Send,
{
    let start = Instant::now();
    let deadline = start + duration;
    let workers: Vec<_> = (0..tasks)
        .map(|_| {
            let call = call.clone();
            tokio::spawn(async move {
                let mut done = 0_u64;
                while Instant::now() < deadline {
                    call().await;
                    done += 1;
                }
                done
            })
        })
        .collect();
    let mut total = 0;
    for worker in workers {
        total += worker.await.unwrap();
    }
    total as f64 / start.elapsed().as_secs_f64()
}

/// `CheckConsent` answering one pre-built response; nothing else.
struct Canned(pb::CheckConsentResponse);

type Rpc<T> = Result<Response<T>, Status>;

#[tonic::async_trait]
impl ConsentService for Canned {
    async fn check_consent(
        &self,
        _: Request<pb::CheckConsentRequest>,
    ) -> Rpc<pb::CheckConsentResponse> {
        Ok(Response::new(self.0.clone()))
    }

    type WatchConsentChangesStream =
        tokio_stream::Empty<Result<pb::WatchConsentChangesResponse, Status>>;

    async fn watch_consent_changes(
        &self,
        _: Request<pb::WatchConsentChangesRequest>,
    ) -> Rpc<Self::WatchConsentChangesStream> {
        Err(Status::unimplemented("baseline"))
    }

    async fn create_purpose(
        &self,
        _: Request<pb::CreatePurposeRequest>,
    ) -> Rpc<pb::CreatePurposeResponse> {
        Err(Status::unimplemented("baseline"))
    }

    async fn update_purpose(
        &self,
        _: Request<pb::UpdatePurposeRequest>,
    ) -> Rpc<pb::UpdatePurposeResponse> {
        Err(Status::unimplemented("baseline"))
    }

    async fn get_purpose(&self, _: Request<pb::GetPurposeRequest>) -> Rpc<pb::GetPurposeResponse> {
        Err(Status::unimplemented("baseline"))
    }

    async fn list_purposes(
        &self,
        _: Request<pb::ListPurposesRequest>,
    ) -> Rpc<pb::ListPurposesResponse> {
        Err(Status::unimplemented("baseline"))
    }

    async fn record_consent(
        &self,
        _: Request<pb::RecordConsentRequest>,
    ) -> Rpc<pb::RecordConsentResponse> {
        Err(Status::unimplemented("baseline"))
    }

    async fn get_consent_state(
        &self,
        _: Request<pb::GetConsentStateRequest>,
    ) -> Rpc<pb::GetConsentStateResponse> {
        Err(Status::unimplemented("baseline"))
    }

    async fn list_consent_history(
        &self,
        _: Request<pb::ListConsentHistoryRequest>,
    ) -> Rpc<pb::ListConsentHistoryResponse> {
        Err(Status::unimplemented("baseline"))
    }

    async fn list_expiring_consents(
        &self,
        _: Request<pb::ListExpiringConsentsRequest>,
    ) -> Rpc<pb::ListExpiringConsentsResponse> {
        Err(Status::unimplemented("baseline"))
    }

    async fn apply_global_privacy_control(
        &self,
        _: Request<pb::ApplyGlobalPrivacyControlRequest>,
    ) -> Rpc<pb::ApplyGlobalPrivacyControlResponse> {
        Err(Status::unimplemented("baseline"))
    }

    async fn verify_audit_log(
        &self,
        _: Request<pb::VerifyAuditLogRequest>,
    ) -> Rpc<pb::VerifyAuditLogResponse> {
        Err(Status::unimplemented("baseline"))
    }
}
