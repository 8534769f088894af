//! Recommendation's RPCs through a real `attune serve` in another process
//! (`scripts/bench-recommendation` starts it and runs this twice):
//!
//! - `REC_BENCH_MODE=seed` (before the server starts) writes a generated
//!   catalogue of `REC_BENCH_ITEMS` items and `REC_BENCH_INTERACTIONS`
//!   interactions of `REC_BENCH_CUSTOMERS` customers straight into the
//!   recommendation tables of `REC_BENCH_DATABASE_URL`, with realistic skew
//!   (item popularity by a power law, views, cart adds and baskets of
//!   purchases), so the server trains on them at start;
//! - `REC_BENCH_MODE=load` waits for that training (its time, the snapshot's
//!   size), grants consent to `REC_BENCH_CONSENTED` customers, then measures
//!   GetRecommendations (home, personalized) p50/p99 and calls/s from
//!   `REC_BENCH_CONCURRENCY` concurrent callers (closed loop: throughput),
//!   then at each fixed rate of `REC_BENCH_RATE` (calls/s, comma-separated;
//!   open loop: latency at that rate), RerankItems of 100 candidates p50/p99, and the feed lag (profile
//!   commit to recommendation's cursor) while events are ingested. With
//!   `REC_BENCH_SERVER_PID` each load also reports the server's CPU time per
//!   call, which a shared machine's noise moves far less than calls/s.
//!   `REC_BENCH_CONSENT_ADDR` and `REC_BENCH_PROFILE_ADDR` name consent and
//!   profile when recommendation runs as a service of its own.

#![allow(clippy::print_stdout)] // a benchmark's report is its output
#![allow(clippy::unwrap_used)] // a failed setup is how a benchmark stops

use std::time::{Duration, Instant};

use attune_kit::config::DatabaseConfig;
use attune_kit::sea_orm::{ConnectionTrait, Statement, TransactionTrait};
use attune_proto::consent::v1::consent_service_client::ConsentServiceClient;
use attune_proto::profile::v1::event_service_client::EventServiceClient;
use attune_proto::recommendation::v1 as pb;
use attune_proto::recommendation::v1::recommendation_service_client::RecommendationServiceClient;
use attune_tests::consent_pb;
use attune_tests::consent_requests::{decision, record};
use attune_tests::profile_events::view;
use attune_tests::recommendation::catalog_item;
use prost::Message;
use tonic::transport::Channel;

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name).map_or(default, |value| {
        value
            .parse()
            .unwrap_or_else(|_| panic!("{name} must be a whole number, not {value:?}"))
    })
}

/// xorshift64*: deterministic and dependency-free.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// An index below `n`, small ones far more likely (popularity ~ rank^-1.2).
    fn skewed(&mut self, n: u64) -> u64 {
        let u = self.unit();
        ((n as f64) * u.powf(3.0)) as u64 % n
    }
}

fn item_id(n: u64) -> String {
    format!("sku-{n:06}")
}

fn customer_id(n: u64) -> String {
    format!("bench-{n:07}")
}

async fn seed(url: &str, items: u64, interactions: u64, customers: u64) {
    let db = attune_kit::db::connect(&DatabaseConfig {
        url: url.to_owned(),
        ..DatabaseConfig::default()
    })
    .await
    .unwrap();
    let backend = db.get_database_backend();
    let now = chrono::Utc::now().timestamp_micros();
    let started = Instant::now();
    let txn = db.begin().await.unwrap();
    for chunk in (0..items).collect::<Vec<_>>().chunks(500) {
        let mut sql = String::from(
            "INSERT INTO recommendation_items (item_id, data, source_version, update_time) VALUES ",
        );
        let mut values = Vec::new();
        for (k, &n) in chunk.iter().enumerate() {
            let category = n % 200;
            let item = catalog_item(
                &item_id(n),
                &[
                    &format!("dept-{}", category / 20),
                    &format!("cat-{category}"),
                ],
                &format!("brand-{}", n % 500),
                100 + (n % 5000) as i64,
            );
            let item = pb::CatalogItem {
                in_stock: Some(n % 10 != 0),
                active: Some(true),
                ..item
            };
            if k > 0 {
                sql.push(',');
            }
            let base = values.len();
            sql.push_str(&match backend {
                attune_kit::sea_orm::DbBackend::Postgres => {
                    format!("(${}, ${}, 0, ${})", base + 1, base + 2, base + 3)
                }
                _ => "(?, ?, 0, ?)".to_owned(),
            });
            values.push(item_id(n).into());
            values.push(item.encode_to_vec().into());
            values.push(now.into());
        }
        txn.execute_raw(Statement::from_sql_and_values(backend, sql, values))
            .await
            .unwrap();
    }
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut written = 0u64;
    let mut order = 0u64;
    let mut rows: Vec<(String, String, &str, i64, Option<String>)> = Vec::new();
    while written < interactions {
        let customer = customer_id(rng.skewed(customers));
        let at = now - (rng.next() % (90 * 86_400)) as i64 * 1_000_000;
        let roll = rng.next() % 100;
        if roll < 25 {
            order += 1;
            for _ in 0..(1 + rng.next() % 6) {
                rows.push((
                    customer.clone(),
                    item_id(rng.skewed(items)),
                    "purchase",
                    at,
                    Some(format!("o{order}")),
                ));
            }
        } else if roll < 40 {
            rows.push((customer, item_id(rng.skewed(items)), "cart_add", at, None));
        } else {
            rows.push((customer, item_id(rng.skewed(items)), "view", at, None));
        }
        if rows.len() >= 1000 || written + rows.len() as u64 >= interactions {
            let mut sql = String::from(
                "INSERT INTO recommendation_interactions (customer_id, item_id, signal, occur_time, order_id, quantity, revenue_minor, currency_code) VALUES ",
            );
            let mut values = Vec::new();
            for (k, (customer, item, signal, at, order)) in rows.drain(..).enumerate() {
                if k > 0 {
                    sql.push(',');
                }
                let b = values.len();
                sql.push_str(&match backend {
                    attune_kit::sea_orm::DbBackend::Postgres => format!(
                        "(${}, ${}, ${}, ${}, ${}, 1, 100, 'EUR')",
                        b + 1,
                        b + 2,
                        b + 3,
                        b + 4,
                        b + 5
                    ),
                    _ => "(?, ?, ?, ?, ?, 1, 100, 'EUR')".to_owned(),
                });
                values.extend([
                    customer.into(),
                    item.into(),
                    signal.into(),
                    at.into(),
                    order.into(),
                ]);
                written += 1;
            }
            txn.execute_raw(Statement::from_sql_and_values(backend, sql, values))
                .await
                .unwrap();
        }
    }
    txn.commit().await.unwrap();
    println!(
        "seeded {items} items and {written} interactions of up to {customers} customers in {:.1} s",
        started.elapsed().as_secs_f64()
    );
}

/// The server's CPU time so far (user + system), from `/proc/PID/stat`, when
/// `REC_BENCH_SERVER_PID` names it: CPU per call moves far less than calls/s
/// on a shared machine.
fn server_cpu() -> Option<Duration> {
    let pid = std::env::var("REC_BENCH_SERVER_PID").ok()?;
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command's closing parenthesis; utime and stime are the
    // 14th and 15th fields of the whole line (12th and 13th after it).
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    // USER_HZ is 100 on every Linux this runs on.
    Some(Duration::from_millis(ticks * 10))
}

/// "load average 1.23" for the report.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().next().map(str::to_owned))
        .unwrap_or_else(|| "?".to_owned())
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1000.0
}

/// GetRecommendations at a fixed `rate` (calls/s) for `seconds`, each call
/// sent on schedule whatever the earlier ones do (open loop), its latency
/// counted from when it was due: so a stall shows in the percentiles instead
/// of slowing the generator down (coordinated omission).
async fn open_loop(
    channel: &Channel,
    ask: impl Fn(u64) -> pb::GetRecommendationsRequest + Send + 'static,
    rate: u64,
    seconds: u64,
) {
    if rate == 0 {
        return;
    }
    let calls = rate * seconds;
    let cpu_before = server_cpu();
    let channel = channel.clone();
    let run = attune_tests::pacing::open_loop(rate, seconds, move |n| {
        let mut client = RecommendationServiceClient::new(channel.clone());
        let request = ask(n * 7919);
        async move { client.get_recommendations(request).await.is_ok() }
    })
    .await;
    // A rate beyond the server's capacity builds a queue until h2 or the
    // gateway's protection refuses calls: counted, not a panic.
    let failed = run.calls.iter().filter(|(_, answered)| !answered).count();
    let mut latencies: Vec<Duration> = run
        .calls
        .iter()
        .filter(|(_, answered)| *answered)
        .map(|(latency, _)| *latency)
        .collect();
    if latencies.is_empty() {
        println!("GetRecommendations open loop at {rate} calls/s: every call failed");
        return;
    }
    let elapsed = run.elapsed.as_secs_f64();
    let cpu_per_call = match (cpu_before, server_cpu()) {
        (Some(before), Some(after)) => format!(
            ", server CPU {:.0} µs/call",
            (after - before).as_secs_f64() * 1e6 / calls as f64
        ),
        _ => String::new(),
    };
    latencies.sort();
    let mut started_late = run.started_late;
    started_late.sort();
    println!(
        "GetRecommendations open loop at {rate} calls/s: {:.0} calls/s answered, {failed} failed, p50 {:.2} ms, p99 {:.2} ms, p99.9 {:.2} ms{cpu_per_call}; the generator started calls late by p99 {:.2} ms, p99.9 {:.2} ms (load average {})",
        latencies.len() as f64 / elapsed,
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.99),
        percentile(&latencies, 0.999),
        percentile(&started_late, 0.99),
        percentile(&started_late, 0.999),
        load_average(),
    );
}

async fn load(
    address: &str,
    url: &str,
    consented: u64,
    (concurrency, rates): (u64, &[u64]),
    seconds: u64,
) {
    let channel = Channel::from_shared(address.to_owned())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut recommendation = RecommendationServiceClient::new(channel.clone());
    let status = loop {
        let status = recommendation
            .get_model_status(pb::GetModelStatusRequest {})
            .await
            .unwrap()
            .into_inner()
            .status
            .unwrap();
        if !status.model_version.is_empty() && !status.training {
            break status;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let train = status.train_duration.unwrap();
    // Per million customers from the part that grows with customers; the
    // rest grows with the items and is reported whole.
    let per_customer = status.customer_memory_bytes as f64 / status.customer_count.max(1) as f64;
    let mib = |bytes: i64| bytes as f64 / (1 << 20) as f64;
    println!(
        "training: {:.2} s for {} interactions, {} customers, {} items; snapshot {:.1} MiB: {:.1} MiB for customers ({:.0} bytes each, {:.3} GiB per million customers) and {:.1} MiB for items",
        train.seconds as f64 + f64::from(train.nanos) / 1e9,
        status.interaction_count,
        status.customer_count,
        status.item_count,
        mib(status.memory_bytes),
        mib(status.customer_memory_bytes),
        per_customer,
        per_customer * 1e6 / (1u64 << 30) as f64,
        mib(status.memory_bytes - status.customer_memory_bytes),
    );
    let mut consent =
        ConsentServiceClient::new(peer_channel("REC_BENCH_CONSENT_ADDR", &channel).await);
    for n in 0..consented {
        consent
            .record_consent(record(
                &customer_id(n),
                vec![decision("personalization", consent_pb::Decision::Granted)],
            ))
            .await
            .unwrap();
    }
    let ask = move |n: u64| pb::GetRecommendationsRequest {
        customer_id: customer_id(n % consented),
        placement: pb::Placement::Home.into(),
        max_results: 10,
        filter: Some(pb::RecommendationFilter {
            in_stock_only: true,
            ..Default::default()
        }),
        ..Default::default()
    };
    // Warm the consent cache and the session cache.
    for n in 0..consented {
        recommendation.get_recommendations(ask(n)).await.unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let started = Instant::now();
    let cpu_before = server_cpu();
    let callers: Vec<_> = (0..concurrency)
        .map(|c| {
            let mut client = RecommendationServiceClient::new(channel.clone());
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                let mut n = c * 7919;
                let mut personalized = 0u64;
                while Instant::now() < deadline {
                    let sent = Instant::now();
                    let answer = client
                        .get_recommendations(ask(n))
                        .await
                        .unwrap()
                        .into_inner();
                    latencies.push(sent.elapsed());
                    personalized += u64::from(answer.personalization.unwrap().personalized);
                    n += 1;
                }
                (latencies, personalized)
            })
        })
        .collect();
    let mut latencies = Vec::new();
    let mut personalized = 0;
    for caller in callers {
        let (mine, p) = caller.await.unwrap();
        latencies.extend(mine);
        personalized += p;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let cpu_per_call = match (cpu_before, server_cpu()) {
        (Some(before), Some(after)) => format!(
            ", server CPU {:.0} µs/call",
            (after - before).as_secs_f64() * 1e6 / latencies.len() as f64
        ),
        _ => String::new(),
    };
    latencies.sort();
    println!(
        "GetRecommendations (home, 10 items, in stock, {concurrency} callers): {:.0} calls/s, p50 {:.2} ms, p99 {:.2} ms, {:.0}% personalized{cpu_per_call} (load average {})",
        latencies.len() as f64 / elapsed,
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.99),
        100.0 * personalized as f64 / latencies.len() as f64,
        load_average(),
    );

    for &rate in rates {
        open_loop(&channel, ask, rate, seconds).await;
    }

    let mut rng = Rng(7);
    let mut rerank = Vec::new();
    for n in 0..2000u64 {
        let mut candidates: Vec<String> = Vec::new();
        while candidates.len() < 100 {
            let id = item_id(rng.skewed(50_000));
            if !candidates.contains(&id) {
                candidates.push(id);
            }
        }
        let sent = Instant::now();
        recommendation
            .rerank_items(pb::RerankItemsRequest {
                customer_id: customer_id(n % consented),
                candidate_item_ids: candidates,
                context: None,
            })
            .await
            .unwrap();
        rerank.push(sent.elapsed());
    }
    rerank.sort();
    println!(
        "RerankItems (100 candidates, one caller): p50 {:.2} ms, p99 {:.2} ms",
        percentile(&rerank, 0.5),
        percentile(&rerank, 0.99)
    );

    // Feed lag: views ingested through profile, until recommendation's cursor
    // passes each batch's last sequence.
    let db = attune_kit::db::connect(&DatabaseConfig {
        url: url.to_owned(),
        ..DatabaseConfig::default()
    })
    .await
    .unwrap();
    let mut events =
        EventServiceClient::new(peer_channel("REC_BENCH_PROFILE_ADDR", &channel).await);
    let mut lags = Vec::new();
    for batch in 0..50u64 {
        let now = chrono::Utc::now();
        let views = (0..100u64)
            .map(|k| {
                let n = batch * 100 + k;
                view(
                    &format!("lag-{n}"),
                    &customer_id(n % consented),
                    now,
                    &item_id(rng.skewed(50_000)),
                )
            })
            .collect();
        let sent = Instant::now();
        let answer = events
            .ingest_events(attune_proto::profile::v1::IngestEventsRequest {
                events: views,
                request_id: String::new(),
            })
            .await
            .unwrap()
            .into_inner();
        let last = answer.results.iter().map(|r| r.sequence).max().unwrap_or(0);
        loop {
            let row = db
                .query_one_raw(Statement::from_string(
                    db.get_database_backend(),
                    "SELECT position FROM feed_cursors WHERE name = 'recommendation:profile'",
                ))
                .await
                .unwrap();
            let position: i64 = row.map_or(0, |r| r.try_get("", "position").unwrap());
            if position >= last {
                break;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        lags.push(sent.elapsed());
    }
    lags.sort();
    println!(
        "feed lag (IngestEvents of 100 views to recommendation's cursor past them): p50 {:.1} ms, p99 {:.1} ms",
        percentile(&lags, 0.5),
        percentile(&lags, 0.99)
    );
}

/// A channel to the service whose address `variable` names (when
/// recommendation runs apart from it), or else `channel` (one process serves all).
async fn peer_channel(variable: &str, channel: &Channel) -> Channel {
    match std::env::var(variable) {
        Ok(address) => Channel::from_shared(address)
            .unwrap()
            .connect()
            .await
            .unwrap(),
        Err(_) => channel.clone(),
    }
}

/// `REC_BENCH_RATE`: the open loop's rates, e.g. `2500,5000`.
fn rates() -> Vec<u64> {
    std::env::var("REC_BENCH_RATE")
        .unwrap_or_else(|_| "2500,5000".into())
        .split(',')
        .map(|rate| {
            rate.trim()
                .parse()
                .unwrap_or_else(|_| panic!("REC_BENCH_RATE holds calls/s, not {rate:?}"))
        })
        .collect()
}

#[tokio::main]
async fn main() {
    let url =
        std::env::var("REC_BENCH_DATABASE_URL").expect("REC_BENCH_DATABASE_URL names the database");
    match std::env::var("REC_BENCH_MODE").as_deref() {
        Ok("seed") => {
            seed(
                &url,
                env_number("REC_BENCH_ITEMS", 50_000),
                env_number("REC_BENCH_INTERACTIONS", 1_000_000),
                env_number("REC_BENCH_CUSTOMERS", 100_000),
            )
            .await;
        }
        Ok("load") => {
            let address =
                std::env::var("REC_BENCH_ADDR").unwrap_or_else(|_| "http://127.0.0.1:50181".into());
            load(
                &address,
                &url,
                env_number("REC_BENCH_CONSENTED", 1000),
                (env_number("REC_BENCH_CONCURRENCY", 16), &rates()),
                env_number("REC_BENCH_SECONDS", 10),
            )
            .await;
        }
        other => panic!("REC_BENCH_MODE must be seed or load, not {other:?}"),
    }
}
