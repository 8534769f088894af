//! The real `attune serve` with `--metrics-listen`: a few gRPC calls, then a
//! scrape of `GET /metrics`, parsed as Prometheus parses it: the calls by
//! server, method and status with their histogram buckets, the database pool,
//! the consent checker's counters and each feed follower's lag. Every metric
//! the alert rules and the dashboard in `deploy/monitoring/` name must be in it.

#![allow(clippy::unwrap_used)] // a panic is how a test fails

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read as _, Write as _};
use std::time::{Duration, Instant};

use crate::support::{Process, attune, postgres_database, sqlite_url};
use attune_proto::consent::v1 as consent_pb;
use attune_proto::recommendation::v1 as recommendation_pb;

/// One sample line: its labels and value.
#[derive(Debug, Clone)]
struct Sample {
    labels: BTreeMap<String, String>,
    value: f64,
}

/// A parsed scrape: samples by series name, and each family's declared type.
#[derive(Debug, Default)]
struct Scrape {
    samples: BTreeMap<String, Vec<Sample>>,
    types: BTreeMap<String, String>,
}

impl Scrape {
    /// Parses the text format, failing on any line Prometheus would refuse.
    fn parse(text: &str) -> Self {
        let mut scrape = Self::default();
        for line in text.lines() {
            if let Some(declaration) = line.strip_prefix("# TYPE ") {
                let (name, kind) = declaration.split_once(' ').unwrap();
                let earlier = scrape.types.insert(name.to_owned(), kind.to_owned());
                assert!(earlier.is_none(), "{name} is declared twice");
                continue;
            }
            if line.starts_with("# HELP ") {
                continue;
            }
            assert!(
                !line.is_empty() && !line.starts_with('#'),
                "odd line {line:?}"
            );
            let (series, value) = line.rsplit_once(' ').unwrap();
            let value = match value {
                "+Inf" => f64::INFINITY,
                "-Inf" => f64::NEG_INFINITY,
                value => value
                    .parse()
                    .unwrap_or_else(|_| panic!("value of {line:?}")),
            };
            let (name, labels) = match series.split_once('{') {
                Some((name, labels)) => (name, parse_labels(labels.strip_suffix('}').unwrap())),
                None => (series, BTreeMap::new()),
            };
            assert!(
                name.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'),
                "metric name {name:?}"
            );
            scrape
                .samples
                .entry(name.to_owned())
                .or_default()
                .push(Sample { labels, value });
        }
        scrape
    }

    /// The samples of `name` whose labels include every pair of `labels`.
    fn find(&self, name: &str, labels: &[(&str, &str)]) -> Vec<Sample> {
        self.samples
            .get(name)
            .into_iter()
            .flatten()
            .filter(|sample| {
                labels
                    .iter()
                    .all(|(k, v)| sample.labels.get(*k).map(String::as_str) == Some(*v))
            })
            .cloned()
            .collect()
    }

    /// The one sample of `name` with exactly these labels' values (others free).
    fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let found = self.find(name, labels);
        assert!(found.len() <= 1, "{name} {labels:?} matches {found:?}");
        found.first().map(|sample| sample.value)
    }

    /// Whether a family of this name (or a histogram's series) was scraped.
    fn has_family(&self, family: &str) -> bool {
        self.types.contains_key(family)
    }
}

/// `a="x",b="y\"z"` as a map, unescaping values.
fn parse_labels(text: &str) -> BTreeMap<String, String> {
    let mut labels = BTreeMap::new();
    let mut rest = text;
    while !rest.is_empty() {
        let (name, after) = rest.split_once("=\"").unwrap();
        let mut value = String::new();
        let mut chars = after.char_indices();
        let end = loop {
            let (at, c) = chars.next().expect("a closing quote");
            match c {
                '\\' => match chars.next().unwrap().1 {
                    'n' => value.push('\n'),
                    escaped => value.push(escaped),
                },
                '"' => break at,
                c => value.push(c),
            }
        };
        let duplicate = labels.insert(name.to_owned(), value);
        assert!(duplicate.is_none(), "label {name} twice in {text}");
        rest = after[end + 1..]
            .strip_prefix(',')
            .unwrap_or(&after[end + 1..]);
    }
    labels
}

/// `GET /metrics` over plain HTTP/1.1: the body of a 200 answer.
fn scrape(address: &str) -> String {
    let mut stream = std::net::TcpStream::connect(address).unwrap();
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: attune\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    let (head, body) = answer.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: text/plain; version=0.0.4"),
        "{head}"
    );
    body.to_owned()
}

/// Scrapes until `ready` holds (background work such as a follower taking its
/// lease reports a moment after start), or fails after 20 s.
fn scrape_until(address: &str, ready: impl Fn(&Scrape) -> bool) -> Scrape {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let scraped = Scrape::parse(&scrape(address));
        if ready(&scraped) {
            return scraped;
        }
        assert!(
            Instant::now() < deadline,
            "the scrape never got ready: {scraped:#?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// One OK and one INVALID_ARGUMENT CheckConsent through the public port, and
/// two recommendation calls for one customer (the checker's miss, then its hit).
async fn make_calls(url: String) {
    let mut consent =
        consent_pb::consent_service_client::ConsentServiceClient::connect(url.clone())
            .await
            .unwrap();
    consent
        .check_consent(consent_pb::CheckConsentRequest {
            customer_id: "cust-metrics".into(),
            purpose_codes: vec!["personalization".into()],
        })
        .await
        .unwrap();
    let refused = consent
        .check_consent(consent_pb::CheckConsentRequest {
            customer_id: String::new(),
            purpose_codes: vec!["personalization".into()],
        })
        .await
        .unwrap_err();
    assert_eq!(
        refused.code(),
        attune_proto::tonic::Code::InvalidArgument,
        "{refused:?}"
    );

    let mut recommendation =
        recommendation_pb::recommendation_service_client::RecommendationServiceClient::connect(url)
            .await
            .unwrap();
    for _ in 0..2 {
        recommendation
            .get_recommendations(recommendation_pb::GetRecommendationsRequest {
                customer_id: "cust-metrics".into(),
                placement: recommendation_pb::Placement::Home.into(),
                ..Default::default()
            })
            .await
            .unwrap();
    }
}

/// Metric names (`attune_…`) in a file of `deploy/monitoring/`.
fn names_used_in(file: &str) -> BTreeSet<String> {
    let path = format!(
        "{}/../../deploy/monitoring/{file}",
        env!("CARGO_MANIFEST_DIR")
    );
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let mut names = BTreeSet::new();
    let mut rest = text.as_str();
    while let Some(at) = rest.find("attune_") {
        let name: String = rest[at..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        rest = &rest[at + name.len()..];
        names.insert(name);
    }
    names
}

/// The family a series name belongs to (a histogram's `_bucket`, `_sum`, `_count`).
fn family_of<'a>(scrape: &Scrape, series: &'a str) -> Option<&'a str> {
    ["", "_bucket", "_sum", "_count"]
        .iter()
        .filter_map(|suffix| series.strip_suffix(suffix))
        .find(|family| scrape.has_family(family))
}

const DURATION: &str = "attune_rpc_server_duration_seconds";
const CHECK_CONSENT: [(&str, &str); 2] = [
    ("grpc_service", "attune.consent.v1.ConsentService"),
    ("grpc_method", "CheckConsent"),
];

fn scraped_after_calls(database_url: &str) {
    let attune = Process::start(attune().args([
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--metrics-listen",
        "127.0.0.1:0",
        "--database-url",
        database_url,
    ]));
    let metrics = attune
        .logged_field("metrics endpoint is serving", "address")
        .expect("the endpoint logs its address before the server serves");
    tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(make_calls(attune.url()));

    let scraped = scrape_until(&metrics, |scrape| {
        // Each follower of profile's feed reports once it holds its lease.
        [
            "recommendation:profile",
            "loyalty:profile",
            "delivery:profile",
        ]
        .iter()
        .all(|feed| {
            scrape
                .value("attune_feed_follower_lag_seconds", &[("feed", feed)])
                .is_some()
        })
    });

    // Calls by server, method and status: the public port saw both calls, the
    // consent backend behind it the one the gateway let through.
    let count = |server: &str, code: &str| {
        let mut labels = CHECK_CONSENT.to_vec();
        labels.extend([("server", server), ("grpc_code", code)]);
        scraped.value(&format!("{DURATION}_count"), &labels)
    };
    assert_eq!(count("gateway", "OK"), Some(1.0));
    assert_eq!(count("gateway", "INVALID_ARGUMENT"), Some(1.0));
    assert_eq!(count("backend", "OK"), Some(1.0));
    assert_eq!(scraped.types[DURATION], "histogram");
    let mut labels = CHECK_CONSENT.to_vec();
    labels.extend([("server", "gateway"), ("grpc_code", "OK")]);
    let buckets = scraped.find(&format!("{DURATION}_bucket"), &labels);
    let bounds: Vec<&str> = buckets.iter().map(|b| b.labels["le"].as_str()).collect();
    assert_eq!(
        bounds,
        [
            "0.0005", "0.001", "0.0025", "0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5",
            "1", "2.5", "5", "10", "+Inf"
        ]
    );
    assert!(
        buckets.windows(2).all(|w| w[0].value <= w[1].value),
        "{buckets:?}"
    );
    assert_eq!(buckets.last().unwrap().value, 1.0);
    let sum = scraped.value(&format!("{DURATION}_sum"), &labels).unwrap();
    assert!(sum > 0.0 && sum < 10.0, "{sum}");
    // Nothing labels a series with a customer.
    assert!(
        scraped
            .samples
            .values()
            .flatten()
            .all(|s| s.labels.values().all(|v| !v.contains("cust-"))),
        "a customer id in a label"
    );

    // The one pool of `attune serve`, at its configured bound.
    let pool = [("pool", "all")];
    assert_eq!(
        scraped.value("attune_db_pool_max_connections", &pool),
        Some(10.0)
    );
    let in_use = scraped
        .value(
            "attune_db_pool_connections",
            &[("pool", "all"), ("state", "in_use")],
        )
        .unwrap();
    let idle = scraped
        .value(
            "attune_db_pool_connections",
            &[("pool", "all"), ("state", "idle")],
        )
        .unwrap();
    assert!(
        in_use + idle >= 1.0 && in_use + idle <= 10.0,
        "{in_use} + {idle}"
    );

    // The consent checkers: recommendation's missed the customer, then hit.
    let counter = |name: &str| scraped.value(name, &[]).unwrap();
    assert!(counter("attune_consent_checker_misses_total") >= 1.0);
    assert!(counter("attune_consent_checker_hits_total") >= 1.0);
    assert!(scraped.has_family("attune_consent_checker_fail_closed_total"));
    assert_eq!(
        scraped.types["attune_consent_checker_hits_total"],
        "counter"
    );
    assert!(counter("attune_consent_checker_lag_seconds") >= 0.0);

    // Feed lag per follower.
    for feed in [
        "recommendation:profile",
        "loyalty:profile",
        "delivery:profile",
    ] {
        let lag = scraped
            .value("attune_feed_follower_lag_seconds", &[("feed", feed)])
            .unwrap();
        assert!(lag >= 0.0, "{feed}: {lag}");
    }

    // What the alerts and the dashboard ask for is what a process exposes.
    for file in ["attune.rules.yaml", "attune.json"] {
        let names = names_used_in(file);
        assert!(!names.is_empty(), "{file} names no metric");
        for name in names {
            assert!(
                family_of(&scraped, &name).is_some(),
                "{file} uses {name}, which no scrape holds"
            );
        }
    }

    attune.terminate();
}

#[test]
fn a_scrape_shows_calls_pool_consent_cache_and_feed_lag_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let url = sqlite_url(&dir);
    scraped_after_calls(&url);
}

#[test]
#[cfg_attr(
    not(attune_test_postgres),
    ignore = "set ATTUNE_TEST_DATABASE_URL to run on PostgreSQL"
)]
fn a_scrape_shows_calls_pool_consent_cache_and_feed_lag_on_postgres() {
    let database = postgres_database("metrics_scrape");
    scraped_after_calls(&database.config.url);
    drop(database);
}

#[test]
fn without_metrics_listen_no_endpoint_starts() {
    let dir = tempfile::tempdir().unwrap();
    let url = sqlite_url(&dir);
    let attune = Process::start(attune().args([
        "serve",
        "--service",
        "consent",
        "--listen",
        "127.0.0.1:0",
        "--database-url",
        &url,
    ]));
    assert!(
        attune
            .logged_field("metrics endpoint is serving", "address")
            .is_none()
    );
    // At once after it said it serves: the signal handlers are in place by
    // then, so even this early a SIGTERM stops it cleanly.
    attune.terminate();
}
