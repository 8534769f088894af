//! How fast consent is checked, and how soon a withdrawal is enforced:
//!
//! - (b) served: `CheckConsent` through the public port of a real, release-built
//!   `attune serve` pinned to core 0, against a bare tonic unary service on the same
//!   core, loaded alternately by h2load in its own process on core 1, in one run
//!   (`scripts/bench-consent`, on grpc-baseline's `compare.sh`): the throughput ratio
//!   and the ratio of server CPU per call (from /proc/PID/stat). Targets: at least
//!   0.8 of the bare throughput, at most 1.25x its CPU per call. It runs first, while
//!   this process is idle, so nothing here competes with the server or the generator.
//! - (a) the cached `ConsentChecker` on a warm cache, in process (no network; what
//!   every other service pays per check);
//! - the time from a withdrawal's `RecordConsent` returning until a cached checker
//!   in another "service" (its own connection) stops answering "granted".
//!
//! (a) uses `CONSENT_BENCH_TASKS` concurrent Tokio tasks (default 64) calling in a
//! loop for `CONSENT_BENCH_SECONDS` (default 5), which is also (b)'s measured time
//! per server. `CONSENT_BENCH_SERVED=0` skips (b) (e.g. without h2load).
//! Run with `cargo bench -p attune-tests --bench consent_check`.

#![allow(clippy::print_stdout)] // a benchmark's report is its output
#![allow(clippy::unwrap_used)] // a failed setup is how a benchmark stops

use std::future::Future;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use attune_kit::consent::ConsentChecker;
use attune_tests::{Backend, TestApp, common_pb, consent_pb as pb};
use tokio_util::sync::CancellationToken;
use tonic::transport::{Channel, Endpoint};

const CUSTOMER: &str = "bench-customer";
const PURPOSES: [&str; 3] = ["personalization", "analytics", "marketing_email"];

fn main() {
    let seconds = env_number("CONSENT_BENCH_SECONDS", 5);
    let tasks = env_number("CONSENT_BENCH_TASKS", 64);
    if env_number("CONSENT_BENCH_SERVED", 1) != 0 {
        served(seconds);
    }
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

/// (b): `scripts/bench-consent` prints its table and the two ratios.
fn served(seconds: u64) {
    println!("(b) CheckConsent served by a release `attune serve` vs bare tonic, one run:");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/bench-consent");
    let status = Command::new(&script)
        .args(["--duration", &seconds.to_string(), "--rounds", "6"])
        .status()
        .unwrap_or_else(|err| panic!("cannot run {}: {err}", script.display()));
    assert!(
        status.success(),
        "{} failed ({status}); CONSENT_BENCH_SERVED=0 skips it",
        script.display()
    );
}

async fn run(duration: Duration, tasks: u64) {
    println!(
        "consent_check (a): {tasks} tasks x {}s, {} worker threads",
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

    println!("(a) ConsentChecker::check, warm cache, in process: {cached:>12.0} calls/s");
    println!(
        "withdrawal enforced by a cached checker, from RecordConsent's return \
         ({WITHDRAWAL_ROUNDS} rounds): median {:?}, p95 {:?}, max {:?}",
        propagation[propagation.len() / 2],
        propagation[propagation.len() * 95 / 100],
        propagation[propagation.len() - 1],
    );
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
