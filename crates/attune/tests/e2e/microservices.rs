//! Microservices mode for real, on PostgreSQL: every service as processes of the
//! real binary, two replicas of each on a database of its own, the gateway in
//! front of them with each service's two addresses (`gateway.backends.NAME`),
//! each service reaching the replicas of those it calls (`peers.NAME`).
//!
//! The customer journey (`journey`) runs through that gateway and through a
//! monolith (`attune serve`) on its own database, and both must answer alike.
//! Then writes race through both replicas of a service at once and every
//! invariant holds: the loyalty ledger (never overspent, the balance the sum of
//! its entries), slot capacity (never overbooked, counters equal to the
//! reservations), and profile's feed (events taken by both profile replicas,
//! followed by whichever loyalty and recommendation replica holds the feed,
//! each applied exactly once).

#![allow(clippy::unwrap_used)] // a panic is how a test fails

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::process::Command;
use std::sync::Arc;
use std::time::Instant;

use crate::journey::{self, Answers, Deployment};
use crate::support::{Process, attune};
use attune_kit::config::Config;
use attune_kit::db::{Backend, TestDatabase, fresh_test_database_on};
use attune_proto::common::v1::DeliveryMethod;
use attune_proto::profile::v1 as profile_pb;
use attune_proto::tonic::Code;
use attune_tests::TestApp;
use attune_tests::delivery::{assert_counters_agree, slot};
use attune_tests::loyalty::redemption;
use attune_tests::profile_events::{eur, item, purchase, statuses};
use chrono::{SubsecRound, Utc};

/// One pseudonymisation key for every process, so that the split deployment
/// and the monolith pseudonymise alike (and no replica races another to
/// generate one into a shared database).
const PSEUDONYM_KEY: &str = "6b1f0c2a9d8e7f60514233a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8";

/// The settings every process of the test shares.
fn configured(command: &mut Command) -> &mut Command {
    command
        .env("ATTUNE_SECRETS__PSEUDONYM_KEY", PSEUDONYM_KEY)
        // The background offer pass would issue offers behind the journey's back.
        .env("ATTUNE_LOYALTY__OFFER_GENERATION_INTERVAL", "0s")
        // Delivery gives up on loyalty's tier benefits after 150 ms by default: on
        // a loaded two-core machine running 13 processes, a first call (connect,
        // handshake) may take longer, and the options would differ by timing.
        .env("ATTUNE_DELIVERY__LOYALTY_TIMEOUT", "2s")
        // A pooled connection may take over the default second to open on such a
        // machine; a process that cannot check its schema at start exits.
        .env("ATTUNE_DATABASE__ACQUIRE_TIMEOUT", "10s")
}

/// Services whose two replicas start together on a database nobody migrated:
/// `serve` migrates on start, and replicas take turns (an advisory lock).
const RACING_MIGRATIONS: [&str; 2] = ["profile", "loyalty"];

/// Every service's two replicas and the gateway in front of them, each service
/// on its own database.
struct Split {
    /// The gateway, first to stop.
    gateway: Process,
    /// Each service's replicas, in the order of `attune::SERVICES`.
    replicas: Vec<(&'static str, [Process; 2])>,
    databases: BTreeMap<&'static str, TestDatabase>,
}

impl Split {
    /// Migrates most databases once (`attune migrate --service NAME`, as the
    /// Kubernetes Job does), then starts the replicas of each service together,
    /// after the services it calls. The replicas of the services in
    /// [`RACING_MIGRATIONS`] find a fresh database and migrate it themselves, at
    /// the same time.
    fn start(databases: BTreeMap<&'static str, TestDatabase>) -> Self {
        let migrations: Vec<_> = databases
            .iter()
            .filter(|(name, _)| !RACING_MIGRATIONS.contains(name))
            .map(|(name, database)| {
                let child = configured(&mut attune())
                    .args(["migrate", "--service", name])
                    .args(["--database-url", &database.config.url])
                    .stderr(std::process::Stdio::piped())
                    .spawn()
                    .unwrap();
                (*name, child)
            })
            .collect();
        for (name, child) in migrations {
            let output = child.wait_with_output().unwrap();
            assert!(
                output.status.success(),
                "{name} migrates: {}",
                String::from_utf8_lossy(&output.stderr)
            );
        }

        let mut replicas = Vec::new();
        let mut peers: Vec<(String, String)> = Vec::new();
        for service in attune::SERVICES {
            let name = service.name();
            let url = &databases[name].config.url;
            let start = || {
                Process::start(
                    configured(&mut attune())
                        .args(["serve", "--service", name, "--listen", "127.0.0.1:0"])
                        .args(["--database-url", url])
                        .envs(peers.iter().map(|(variable, urls)| (variable, urls))),
                )
            };
            let pair = std::thread::scope(|scope| {
                let first = scope.spawn(start);
                let second = start();
                [first.join().unwrap(), second]
            });
            peers.push((
                format!("ATTUNE_PEERS__{}", name.to_uppercase()),
                format!("{},{}", pair[0].url(), pair[1].url()),
            ));
            replicas.push((name, pair));
        }
        let backends = peers
            .iter()
            .map(|(variable, urls)| (variable.replace("PEERS", "GATEWAY__BACKENDS"), urls));
        let gateway = Process::start(
            configured(&mut attune())
                .args(["serve", "--service", "gateway", "--listen", "127.0.0.1:0"])
                .args(["--database-url", &databases["gateway"].config.url])
                .envs(backends),
        );
        Self {
            gateway,
            replicas,
            databases,
        }
    }

    /// The two replicas of `service`.
    fn replicas_of(&self, service: &str) -> &[Process; 2] {
        &self
            .replicas
            .iter()
            .find(|(name, _)| *name == service)
            .expect("every service runs")
            .1
    }

    /// Clients of both replicas of `service`, each able to read the service's
    /// database directly.
    async fn clients_of(&self, service: &str) -> [TestApp; 2] {
        let config = Config {
            database: self.databases[service].config.clone(),
            ..Config::default()
        };
        let [a, b] = self.replicas_of(service);
        [
            TestApp::attach(address(a), config.clone()).await,
            TestApp::attach(address(b), config).await,
        ]
    }

    /// Stops the gateway, then every replica at once (each drains on its own),
    /// and checks that each exits cleanly.
    fn terminate(self) {
        self.gateway.terminate();
        std::thread::scope(|scope| {
            for (_, pair) in self.replicas {
                for replica in pair {
                    scope.spawn(|| replica.terminate());
                }
            }
        });
        drop_all(self.databases.into_values());
    }
}

/// Drops each database at once: a drop waits for the server to drop it.
fn drop_all(databases: impl IntoIterator<Item = TestDatabase>) {
    std::thread::scope(|scope| {
        for database in databases {
            scope.spawn(move || drop(database));
        }
    });
}

fn address(process: &Process) -> SocketAddr {
    process.address().parse().unwrap()
}

/// A client of the public port at `process`, once every service it routes
/// reports SERVING through it.
async fn front(process: &Process) -> TestApp {
    let app = TestApp::attach(address(process), Config::default()).await;
    app.wait_until_serving("").await;
    for service in attune::SERVICES {
        for name in service.api_services() {
            app.wait_until_serving(name).await;
        }
    }
    app
}

#[test]
#[cfg_attr(
    not(attune_test_postgres),
    ignore = "set ATTUNE_TEST_DATABASE_URL to run on PostgreSQL"
)]
fn two_replicas_of_every_service_answer_as_the_monolith_and_keep_every_invariant() {
    let started = Instant::now();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let database = |name: &str| {
        runtime
            .block_on(fresh_test_database_on(Backend::Postgres, name))
            .unwrap()
            .expect("the test runs only when a PostgreSQL server is configured")
    };
    let mut databases = BTreeMap::new();
    for service in attune::SERVICES {
        databases.insert(
            service.name(),
            database(&format!("split_{}", service.name())),
        );
    }
    databases.insert(attune::GATEWAY, database("split_gateway"));
    let monolith_database = database("split_monolith");

    let (split, monolith) = std::thread::scope(|scope| {
        let monolith = scope.spawn(|| {
            Process::start(
                configured(&mut attune())
                    .args(["serve", "--listen", "127.0.0.1:0"])
                    .args(["--database-url", &monolith_database.config.url]),
            )
        });
        let split = Split::start(databases);
        (split, monolith.join().unwrap())
    });
    eprintln!("started in {:?}", started.elapsed());

    runtime.block_on(async {
        let split_deployment = Deployment {
            front: front(&split.gateway).await,
            recommenders: split.clients_of("recommendation").await.into(),
            deliverers: split.clients_of("delivery").await.into(),
        };
        let monolith_front = front(&monolith).await;
        let monolith_deployment = Deployment {
            recommenders: vec![TestApp::attach(address(&monolith), Config::default()).await],
            deliverers: vec![TestApp::attach(address(&monolith), Config::default()).await],
            front: monolith_front,
        };

        let now = Utc::now().trunc_subsecs(6);
        let (split_answers, monolith_answers) = tokio::join!(
            journey::run(&split_deployment, now),
            journey::run(&monolith_deployment, now)
        );
        assert_the_journey_went_through(&monolith_answers);
        assert_same_answers(&split_answers, &monolith_answers);
        eprintln!("journeys done at {:?}", started.elapsed());

        redemptions_through_both_replicas_never_overspend(&split).await;
        reservations_through_both_replicas_never_overbook(&split).await;
        events_through_both_profile_replicas_are_applied_once(&split, &split_deployment.front)
            .await;
        eprintln!("invariants held at {:?}", started.elapsed());
    });

    std::thread::scope(|scope| {
        scope.spawn(|| monolith.terminate());
        split.terminate();
    });
    drop_all([monolith_database]);
    eprintln!("wall time {:?}", started.elapsed());
}

/// What the journey must have got, whatever the deployment: so that two
/// deployments failing alike cannot pass as equal.
fn assert_the_journey_went_through(answers: &Answers) {
    use attune_proto::gateway::v1 as gateway_pb;
    use attune_proto::gateway::v1::PartState;
    use attune_tests::gateway_experience::state;

    for batch in &answers.ingested {
        assert!(
            batch
                .iter()
                .all(|status| *status == profile_pb::IngestStatus::Accepted),
            "{batch:?}"
        );
    }
    assert_eq!(answers.earned.available_points, 100);
    assert_eq!(
        answers.redeemed.account.as_ref().unwrap().available_points,
        70
    );
    assert_eq!(answers.statement.len(), 3, "two earnings and a redemption");
    assert!(!answers.recommendations.items.is_empty());
    assert!(!answers.delivery.delivery_options.is_empty());
    let home = &answers.home_page;
    assert_eq!(
        state(home.profile.as_ref().unwrap().status.as_ref()).0,
        PartState::Ok
    );
    assert_eq!(
        state(home.recommendations[0].status.as_ref()).0,
        PartState::Ok
    );
    assert_eq!(
        state(home.loyalty.as_ref().unwrap().status.as_ref()).0,
        PartState::Ok
    );
    assert_eq!(
        state(home.delivery.as_ref().unwrap().status.as_ref()).0,
        PartState::Ok
    );
    let store = answers.store_page.store.as_ref().unwrap();
    assert_eq!(store.store_id, "store-9");
    assert_eq!(store.preferred_name, "Anna");
    assert!(answers.erased.complete, "{:?}", answers.erased);
    assert!(
        answers
            .erased
            .receipts
            .iter()
            .all(|receipt| receipt.status() == gateway_pb::ReceiptStatus::Succeeded)
    );
    assert!(
        answers
            .after_erasure
            .iter()
            .all(|(_, code)| *code == Code::NotFound),
        "{:?}",
        answers.after_erasure
    );
    assert!(answers.export.len() >= attune::data_subject_receipts().len());
}

/// Compares part by part, so that a difference names its part; scores within
/// a float's noise (see `journey::without_scores`).
fn assert_same_answers(split: &Answers, monolith: &Answers) {
    let (split_scores, split) = &journey::without_scores(split);
    let (monolith_scores, monolith) = &journey::without_scores(monolith);
    assert_eq!(split_scores.len(), monolith_scores.len());
    for (a, b) in split_scores.iter().zip(monolith_scores) {
        assert!(
            (a - b).abs() <= 1e-4 * a.abs().max(b.abs()).max(1.0),
            "scores {split_scores:?} and {monolith_scores:?} differ beyond noise"
        );
    }
    same(&split.ingested, &monolith.ingested, "ingestion");
    same(&split.earned, &monolith.earned, "the account after earning");
    same(&split.redeemed, &monolith.redeemed, "the redemption");
    same(&split.statement, &monolith.statement, "the statement");
    same(
        &split.recommendations,
        &monolith.recommendations,
        "recommendations",
    );
    same(&split.delivery, &monolith.delivery, "delivery options");
    same(&split.home_page, &monolith.home_page, "the HOME page");
    same(&split.store_page, &monolith.store_page, "the STORE page");
    same(&split.export, &monolith.export, "the export");
    same(&split.erased, &monolith.erased, "the erasure");
    same(
        &split.after_erasure,
        &monolith.after_erasure,
        "after erasure",
    );
    assert_eq!(split, monolith);
}

/// Asserts `split == monolith`, showing where their debug forms part.
fn same<T: PartialEq + std::fmt::Debug>(split: &T, monolith: &T, what: &str) {
    if split == monolith {
        return;
    }
    let (a, b) = (format!("{split:?}"), format!("{monolith:?}"));
    let at = a
        .char_indices()
        .zip(b.chars())
        .find(|((_, x), y)| x != y)
        .map_or(a.len().min(b.len()), |((index, _), _)| index);
    let from = a[..at]
        .char_indices()
        .rev()
        .nth(200)
        .map_or(0, |(index, _)| index);
    let excerpt = |text: &str| {
        text.get(from..)
            .unwrap_or("")
            .chars()
            .take(500)
            .collect::<String>()
    };
    panic!(
        "{what} differ from the monolith's:\n split:    …{}\n monolith: …{}",
        excerpt(&a),
        excerpt(&b)
    );
}

/// 200 redemptions of one point against a balance of 100, half sent to each
/// loyalty replica directly, all at once: exactly 100 succeed, the rest are
/// refused, and the balance is the sum of the ledger.
async fn redemptions_through_both_replicas_never_overspend(split: &Split) {
    let [a, b] = split.clients_of("loyalty").await;
    let replicas = [Arc::new(a), Arc::new(b)];
    replicas[0].grant_points("race-ledger", 100).await;
    let calls: Vec<_> = (0..200)
        .map(|i| {
            let replica = Arc::clone(&replicas[i % 2]);
            tokio::spawn(async move {
                replica
                    .redeem_retrying(redemption("race-ledger", 1, &format!("race-{i}")))
                    .await
            })
        })
        .collect();
    let (mut succeeded, mut refused) = (0, 0);
    for call in calls {
        match call.await.unwrap() {
            Ok(_) => succeeded += 1,
            Err(status) if status.code() == Code::FailedPrecondition => refused += 1,
            Err(status) => panic!("a redemption failed otherwise: {status:?}"),
        }
    }
    assert_eq!((succeeded, refused), (100, 100));
    for replica in &replicas {
        let account = replica.assert_ledger_consistent("race-ledger").await;
        assert_eq!(account.available_points, 0);
        assert_eq!(replica.statement("race-ledger").await.len(), 101);
    }
}

/// 30 customers reserve a slot of capacity 5, alternating between the two
/// delivery replicas, all at once: exactly 5 hold a unit, the rest are told
/// it is full, and the slot's counter equals its reservations.
async fn reservations_through_both_replicas_never_overbook(split: &Split) {
    let [a, b] = split.clients_of("delivery").await;
    let start = Utc::now().trunc_subsecs(0) + chrono::Duration::days(2);
    a.upsert_slots(vec![slot(
        "race-slot",
        DeliveryMethod::HomeScheduled,
        start,
        5,
    )])
    .await;
    let replicas = [Arc::new(a), Arc::new(b)];
    let calls: Vec<_> = (0..30)
        .map(|i| {
            let replica = Arc::clone(&replicas[i % 2]);
            tokio::spawn(async move { replica.reserve(&format!("race-{i}"), "race-slot").await })
        })
        .collect();
    let mut held = 0;
    for call in calls {
        match call.await.unwrap() {
            Ok(_) => held += 1,
            Err(status) => assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}"),
        }
    }
    assert_eq!(held, 5);
    assert_counters_agree(&replicas[0]).await;
}

/// 20 customers each buy twice, one order sent to each profile replica, and
/// the first order sent again to the other replica: profile stores each event
/// once, and loyalty (whichever replica holds the feed) earns once per order;
/// recommendation learns each purchase once.
async fn events_through_both_profile_replicas_are_applied_once(split: &Split, front: &TestApp) {
    let [a, b] = split.clients_of("profile").await;
    let replicas = [Arc::new(a), Arc::new(b)];
    let recommenders = split.clients_of("recommendation").await;
    let now = Utc::now().trunc_subsecs(6);
    let customers: Vec<String> = (0..20).map(|i| format!("feed-{i}")).collect();
    for customer in &customers {
        front.grant(customer, &["personalization"]).await;
    }
    let order = |customer: &str, n: i64| {
        purchase(
            &format!("{customer}-order-{n}"),
            customer,
            now - chrono::Duration::minutes(n),
            vec![item(
                &format!("sku-{n}"),
                1,
                Some(eur(1000 * n)),
                &["shoes"],
                "Trailco",
            )],
            eur(1000 * n),
        )
    };
    let sends: Vec<_> = customers
        .iter()
        .flat_map(|customer| {
            [
                (0, order(customer, 1)),
                (1, order(customer, 2)),
                (1, order(customer, 1)),
            ]
        })
        .map(|(replica, event)| {
            let replica = Arc::clone(&replicas[replica]);
            tokio::spawn(async move { statuses(&replica.ingest(vec![event]).await.results) })
        })
        .collect();
    let mut accepted = 0;
    for send in sends {
        for status in send.await.unwrap() {
            match status {
                profile_pb::IngestStatus::Accepted => accepted += 1,
                profile_pb::IngestStatus::Duplicate => {}
                other => panic!("an event was not taken: {other:?}"),
            }
        }
    }
    assert_eq!(
        accepted, 40,
        "each event stored once, whichever replica took it"
    );

    for customer in &customers {
        let account = front
            .wait_for_account(customer, |account| account.available_points >= 30)
            .await;
        assert_eq!(
            account.available_points, 30,
            "10 + 20 euros, each order once"
        );
        let account = front.assert_ledger_consistent(customer).await;
        assert_eq!(account.available_points, 30);
        assert_eq!(
            front.statement(customer).await.len(),
            2,
            "one earning per order"
        );
    }
    // Two interactions per customer, whichever replica trains: the journey's
    // customer was erased with hers, and the other writes make none.
    for recommender in &recommenders {
        recommender.train_until(40).await;
    }
}
