//! Delivery's benchmark, against a real `attune serve` in another process
//! (`scripts/bench-delivery` starts it and runs this):
//!
//! 1. `GetDeliveryOptions` latency (p50/p99) with 5,000 pickup points, six rates
//!    and slots, from `DELIVERY_BENCH_CONCURRENCY` concurrent callers at random
//!    places in Germany; `FindNearestPickupPoints` latency alike.
//! 2. `ReserveSlot` throughput: `DELIVERY_BENCH_RESERVATIONS` attempts from as
//!    many concurrent callers on `DELIVERY_BENCH_SLOTS` slots of capacity
//!    `DELIVERY_BENCH_CAPACITY`, more attempts than units; then the capacity
//!    invariant is checked in the server's database itself
//!    (`DELIVERY_BENCH_DATABASE_URL`): no slot holds more live reservations than
//!    its capacity, and the successes equal the rows.
//!
//! `DELIVERY_BENCH_ADDR` (default http://127.0.0.1:50181) names the server.

#![allow(clippy::print_stdout)] // a benchmark's report is its output
#![allow(clippy::unwrap_used)] // a failed setup is how a benchmark stops

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use attune_kit::config::DatabaseConfig;
use attune_kit::sea_orm::{ConnectionTrait, Statement};
use attune_proto::common::v1::DeliveryMethod as M;
use attune_proto::delivery::v1 as pb;
use attune_proto::delivery::v1::delivery_service_client::DeliveryServiceClient;
use attune_tests::delivery::{at, cart, geo, pickup, rate, slot};
use chrono::Utc;
use tonic::Code;
use tonic::transport::Channel;

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name).map_or(default, |value| {
        value
            .parse()
            .unwrap_or_else(|_| panic!("{name} must be a whole number, not {value:?}"))
    })
}

/// A deterministic pseudo-random sequence (xorshift), so runs compare.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// A uniform value in [lo, hi).
    fn between(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * ((self.next() % 1_000_000) as f64 / 1_000_000.0)
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

fn report(name: &str, mut samples: Vec<Duration>, wall: Duration) {
    samples.sort();
    println!(
        "{name}: {} calls in {:.2}s ({:.0}/s), p50 {:.2} ms, p99 {:.2} ms",
        samples.len(),
        wall.as_secs_f64(),
        samples.len() as f64 / wall.as_secs_f64(),
        percentile(&samples, 0.5).as_secs_f64() * 1e3,
        percentile(&samples, 0.99).as_secs_f64() * 1e3,
    );
}

/// 5,000 pickup points over Germany (lockers, counters, every tenth a store).
async fn seed_network(client: &mut DeliveryServiceClient<Channel>, points: u64) {
    let mut rng = Rng(0x5eed);
    let mut batch = Vec::new();
    for i in 0..points {
        let kind = match i % 10 {
            0 => pb::PickupPointKind::Store,
            1..=5 => pb::PickupPointKind::Locker,
            _ => pb::PickupPointKind::Counter,
        };
        batch.push(pickup(
            &format!("bench-pp-{i}"),
            kind,
            rng.between(47.3, 55.0),
            rng.between(5.9, 15.0),
        ));
        if batch.len() == 500 {
            client
                .upsert_pickup_points(pb::UpsertPickupPointsRequest {
                    update_mask: None,
                    pickup_points: std::mem::take(&mut batch),
                    request_id: format!("bench-points-{i}"),
                })
                .await
                .unwrap();
        }
    }
    if !batch.is_empty() {
        client
            .upsert_pickup_points(pb::UpsertPickupPointsRequest {
                update_mask: None,
                pickup_points: batch,
                request_id: "bench-points-last".into(),
            })
            .await
            .unwrap();
    }
    client
        .upsert_shipping_rates(pb::UpsertShippingRatesRequest {
            update_mask: None,
            rates: vec![
                rate("bench-std", M::HomeStandard, 499),
                rate("bench-nd", M::HomeNextDay, 899),
                rate("bench-sd", M::HomeSameDay, 1299),
                rate("bench-sched", M::HomeScheduled, 699),
                rate("bench-pp", M::PickupPoint, 299),
                rate("bench-store", M::StorePickup, 0),
            ],
            request_id: "bench-rates".into(),
        })
        .await
        .unwrap();
    let start = Utc::now() + chrono::Duration::days(1);
    client
        .upsert_slots(pb::UpsertSlotsRequest {
            update_mask: None,
            slots: (0..24)
                .map(|h| {
                    slot(
                        &format!("bench-home-{h}"),
                        M::HomeScheduled,
                        start + chrono::Duration::hours(h),
                        1000,
                    )
                })
                .collect(),
            request_id: "bench-home-slots".into(),
        })
        .await
        .unwrap();
}

async fn options_latency(channel: Channel, concurrency: u64, calls: u64) {
    let started = Instant::now();
    let mut tasks = Vec::new();
    for worker in 0..concurrency {
        let mut client = DeliveryServiceClient::new(channel.clone());
        tasks.push(tokio::spawn(async move {
            let mut rng = Rng(0xabcd + worker);
            let mut samples = Vec::new();
            for n in 0..calls / concurrency {
                let request = pb::GetDeliveryOptionsRequest {
                    customer_id: format!("bench-c-{}", (worker * 1000 + n) % 500),
                    location: Some(at(rng.between(47.5, 54.8), rng.between(6.0, 14.8))),
                    cart: Some(cart(2000 + (n as i64 % 20) * 500, 800)),
                    max_pickup_points: 5,
                    ..Default::default()
                };
                let t = Instant::now();
                let answer = client
                    .get_delivery_options(request)
                    .await
                    .unwrap()
                    .into_inner();
                samples.push(t.elapsed());
                assert!(!answer.delivery_options.is_empty());
            }
            samples
        }));
    }
    let mut samples = Vec::new();
    for task in tasks {
        samples.extend(task.await.unwrap());
    }
    report(
        &format!("GetDeliveryOptions x{concurrency} callers"),
        samples,
        started.elapsed(),
    );
}

async fn nearest_latency(channel: Channel, calls: u64) {
    let mut client = DeliveryServiceClient::new(channel);
    let mut rng = Rng(0xfeed);
    let mut samples = Vec::new();
    let started = Instant::now();
    for _ in 0..calls {
        let t = Instant::now();
        client
            .find_nearest_pickup_points(pb::FindNearestPickupPointsRequest {
                location: Some(geo(rng.between(47.5, 54.8), rng.between(6.0, 14.8))),
                max_results: 10,
                ..Default::default()
            })
            .await
            .unwrap();
        samples.push(t.elapsed());
    }
    report(
        "FindNearestPickupPoints x1 caller",
        samples,
        started.elapsed(),
    );
}

async fn reservations(
    channel: Channel,
    slots: u64,
    capacity: i32,
    attempts: u64,
    callers: u64,
) -> u64 {
    let mut client = DeliveryServiceClient::new(channel.clone());
    let start = Utc::now() + chrono::Duration::days(2);
    let run = Utc::now().timestamp_micros();
    client
        .upsert_slots(pb::UpsertSlotsRequest {
            update_mask: None,
            slots: (0..slots)
                .map(|i| {
                    slot(
                        &format!("bench-r-{run}-{i}"),
                        M::HomeScheduled,
                        start + chrono::Duration::minutes(i as i64),
                        capacity,
                    )
                })
                .collect(),
            request_id: format!("bench-r-slots-{run}"),
        })
        .await
        .unwrap();
    let next = Arc::new(AtomicU64::new(0));
    let ok = Arc::new(AtomicU64::new(0));
    let full = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..callers {
        let (next, ok, full) = (Arc::clone(&next), Arc::clone(&ok), Arc::clone(&full));
        let mut client = DeliveryServiceClient::new(channel.clone());
        tasks.push(tokio::spawn(async move {
            loop {
                let n = next.fetch_add(1, Ordering::Relaxed);
                if n >= attempts {
                    break;
                }
                let answer = client
                    .reserve_slot(pb::ReserveSlotRequest {
                        customer_id: format!("bench-c-{}", n % 5000),
                        slot_id: format!("bench-r-{run}-{}", n % slots),
                        request_id: format!("bench-r-{run}-{n}"),
                        ..Default::default()
                    })
                    .await;
                match answer {
                    Ok(_) => ok.fetch_add(1, Ordering::Relaxed),
                    Err(status) if status.code() == Code::ResourceExhausted => {
                        full.fetch_add(1, Ordering::Relaxed)
                    }
                    Err(status) => panic!("reservation failed: {status:?}"),
                };
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let wall = started.elapsed();
    let (ok, full) = (ok.load(Ordering::Relaxed), full.load(Ordering::Relaxed));
    println!(
        "ReserveSlot x{callers} callers: {attempts} attempts in {:.2}s ({:.0} attempts/s, {:.0} reservations/s): {ok} held, {full} refused as full ({slots} slots of {capacity})",
        wall.as_secs_f64(),
        attempts as f64 / wall.as_secs_f64(),
        ok as f64 / wall.as_secs_f64(),
    );
    assert_eq!(
        ok,
        (slots * capacity as u64).min(attempts),
        "every free unit is taken, no more"
    );
    run as u64
}

async fn check_capacity(url: &str, run: u64, capacity: i64, expected: u64) {
    let config = DatabaseConfig {
        url: url.to_owned(),
        ..DatabaseConfig::default()
    };
    let db = attune_kit::db::connect(&config).await.unwrap();
    let backend = db.get_database_backend();
    let rows = db
        .query_all_raw(Statement::from_string(
            backend,
            format!(
                "SELECT slot_id, COUNT(*) AS n FROM delivery_reservations \
                 WHERE slot_id LIKE 'bench-r-{run}-%' GROUP BY slot_id"
            ),
        ))
        .await
        .unwrap();
    let mut total = 0;
    for row in &rows {
        let n: i64 = row.try_get("", "n").unwrap();
        assert!(
            n <= capacity,
            "a slot holds {n} reservations, capacity {capacity}"
        );
        total += n as u64;
    }
    assert_eq!(total, expected, "the rows are the successes");
    // Each slot's counter equals the reservations holding a unit of it.
    let counters = db
        .query_all_raw(Statement::from_string(
            backend,
            format!(
                "SELECT s.slot_id, CAST(s.reserved AS BIGINT) AS reserved, \
                 (SELECT COUNT(*) FROM delivery_reservations r WHERE r.slot_id = s.slot_id \
                  AND r.state IN ('held', 'confirmed')) AS holding \
                 FROM delivery_slots s WHERE s.slot_id LIKE 'bench-r-{run}-%'"
            ),
        ))
        .await
        .unwrap();
    for row in &counters {
        let reserved: i64 = row.try_get("", "reserved").unwrap();
        let holding: i64 = row.try_get("", "holding").unwrap();
        assert_eq!(
            reserved, holding,
            "a slot's counter disagrees with its rows"
        );
        assert!(
            reserved <= capacity,
            "a slot's counter is above its capacity"
        );
    }
    println!(
        "capacity invariant: {} slots, none above {capacity}, {total} rows = successes, \
         {} counters = their rows",
        rows.len(),
        counters.len()
    );
}

#[tokio::main]
async fn main() {
    let address =
        std::env::var("DELIVERY_BENCH_ADDR").unwrap_or_else(|_| "http://127.0.0.1:50181".into());
    let channel = Channel::from_shared(address)
        .unwrap()
        .connect()
        .await
        .unwrap();
    let points = env_number("DELIVERY_BENCH_POINTS", 5000);
    let calls = env_number("DELIVERY_BENCH_CALLS", 4000);
    let concurrency = env_number("DELIVERY_BENCH_CONCURRENCY", 8);
    let slots = env_number("DELIVERY_BENCH_SLOTS", 100);
    let capacity = env_number("DELIVERY_BENCH_CAPACITY", 50);
    let attempts = env_number("DELIVERY_BENCH_RESERVATIONS", 10_000);
    let mut client = DeliveryServiceClient::new(channel.clone());
    let t = Instant::now();
    seed_network(&mut client, points).await;
    println!(
        "seeded {points} pickup points, 6 rates, 24 slots in {:.2}s",
        t.elapsed().as_secs_f64()
    );
    // Warm the index and the connections.
    options_latency(channel.clone(), 1, 50).await;
    options_latency(channel.clone(), 1, calls / 4).await;
    options_latency(channel.clone(), concurrency, calls).await;
    nearest_latency(channel.clone(), calls / 4).await;
    let run = reservations(channel.clone(), slots, capacity as i32, attempts, 32).await;
    if let Ok(url) = std::env::var("DELIVERY_BENCH_DATABASE_URL") {
        check_capacity(&url, run, capacity as i64, (slots * capacity).min(attempts)).await;
    } else {
        println!("capacity invariant not checked: DELIVERY_BENCH_DATABASE_URL is not set");
    }
}
