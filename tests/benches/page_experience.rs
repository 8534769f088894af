//! The page experience's benchmark, against a real `attune serve` in another
//! process (`scripts/bench-page-experience` starts it on one core and runs this
//! on the other):
//!
//! 1. Seeds realistic data through the public port: a catalogue of
//!    `PAGE_BENCH_ITEMS` items, `PAGE_BENCH_CUSTOMERS` customers, each with a
//!    profile, a name and sizes, consent to personalization, a loyalty account
//!    and views and purchases (which recommendation learns from profile's
//!    feed, then trains on), and a German delivery network.
//! 2. Open loop: `PAGE_BENCH_RATE` cart pages per second (every part: profile,
//!    one recommendation list, loyalty, delivery) for `PAGE_BENCH_SECONDS`,
//!    each sent at its scheduled time whatever the previous ones do, latency
//!    counted from that time (no coordinated omission): p50, p99, max, and the
//!    pages whose parts were not all OK.
//! 3. Closed loop: `PAGE_BENCH_CONCURRENCY` callers as fast as they can, the
//!    most pages per second.
//!
//! `PAGE_BENCH_PARTS` (comma-separated: profile, recommendations, loyalty,
//! delivery; default all four) asks for those parts only, to see what each
//! costs. `PAGE_BENCH_ADDR` (default http://127.0.0.1:50191) names the server. With
//! `PAGE_BENCH_SERVER_PID` (the script sets it) each phase also reports the
//! server's CPU time (user + system, from `/proc/PID/stat`) per page: unlike
//! latency, that stays true while other work shares the machine.

#![allow(clippy::print_stdout)] // a benchmark's report is its output
#![allow(clippy::unwrap_used)] // a failed setup is how a benchmark stops

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use attune_proto::common::v1 as common_pb;
use attune_proto::common::v1::DeliveryMethod as M;
use attune_proto::consent::v1 as consent_pb;
use attune_proto::consent::v1::consent_service_client::ConsentServiceClient;
use attune_proto::delivery::v1 as delivery_pb;
use attune_proto::delivery::v1::delivery_service_client::DeliveryServiceClient;
use attune_proto::gateway::v1 as pb;
use attune_proto::gateway::v1::gateway_service_client::GatewayServiceClient;
use attune_proto::loyalty::v1 as loyalty_pb;
use attune_proto::loyalty::v1::loyalty_service_client::LoyaltyServiceClient;
use attune_proto::profile::v1 as profile_pb;
use attune_proto::profile::v1::event_service_client::EventServiceClient;
use attune_proto::profile::v1::profile_service_client::ProfileServiceClient;
use attune_proto::recommendation::v1 as rec_pb;
use attune_proto::recommendation::v1::recommendation_service_client::RecommendationServiceClient;
use attune_tests::consent_requests::{decision, record};
use attune_tests::delivery::{pickup, rate};
use attune_tests::gateway_experience::cart_page;
use attune_tests::profile_events::{eur, item, purchase, view};
use attune_tests::profile_people::{create_known, identity, set_zero_party};
use attune_tests::recommendation::catalog_item;
use chrono::Utc;
use tonic::transport::Channel;

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name).map_or(default, |value| {
        value
            .parse()
            .unwrap_or_else(|_| panic!("{name} must be a whole number, not {value:?}"))
    })
}

/// The server's CPU time so far (user + system), when its pid is known.
fn server_cpu() -> Option<Duration> {
    let pid = std::env::var("PAGE_BENCH_SERVER_PID").ok()?;
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command (which may hold spaces) in parentheses: utime
    // and stime are the 14th and 15th of the whole line, in clock ticks.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split(' ').collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(Duration::from_secs_f64(
        ticks as f64 / clock_ticks_per_second(),
    ))
}

/// `getconf CLK_TCK`: 100 on every Linux this runs on.
fn clock_ticks_per_second() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|out| String::from_utf8(out.stdout).ok())
        .and_then(|text| text.trim().parse().ok())
        .unwrap_or(100.0)
}

/// `, server CPU N µs/page (M% of a core)` for `pages` served in `wall`
/// since `before`; empty without the server's pid.
fn cpu_report(before: Option<Duration>, pages: usize, wall: Duration) -> String {
    match (before, server_cpu()) {
        (Some(before), Some(after)) => {
            let cpu = after.saturating_sub(before);
            format!(
                ", server CPU {:.0} µs/page ({:.0}% of a core)",
                cpu.as_secs_f64() * 1e6 / pages.max(1) as f64,
                cpu.as_secs_f64() * 100.0 / wall.as_secs_f64(),
            )
        }
        _ => String::new(),
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

/// The page every call asks for: a cart page with the parts `PAGE_BENCH_PARTS` names.
fn page_for(n: u64) -> pb::GetPageExperienceRequest {
    let mut page = cart_page(&customer(n));
    if let Ok(parts) = std::env::var("PAGE_BENCH_PARTS") {
        page.parts = parts
            .split(',')
            .map(|part| match part.trim() {
                "profile" => pb::PagePart::Profile,
                "recommendations" => pb::PagePart::Recommendations,
                "loyalty" => pb::PagePart::Loyalty,
                "delivery" => pb::PagePart::Delivery,
                other => panic!("PAGE_BENCH_PARTS: unknown part {other:?}"),
            } as i32)
            .collect();
    }
    page
}

fn customer(n: u64) -> String {
    format!("bench-c-{n}")
}

async fn seed(channel: &Channel, customers: u64, items: u64) {
    let mut recommendation = RecommendationServiceClient::new(channel.clone());
    let categories = [
        "shoes", "tops", "trousers", "socks", "bags", "jackets", "hats", "belts",
    ];
    let brands = ["Trailco", "Knit", "Northway", "Urbana", "Fjell"];
    let mut batch = Vec::new();
    for i in 0..items {
        let category = categories[(i % categories.len() as u64) as usize];
        batch.push(catalog_item(
            &format!("sku-{i}"),
            &["apparel", category],
            brands[(i % brands.len() as u64) as usize],
            1000 + (i as i64 % 50) * 250,
        ));
        if batch.len() == 500 {
            recommendation
                .upsert_items(rec_pb::UpsertItemsRequest {
                    items: std::mem::take(&mut batch),
                    request_id: format!("bench-items-{i}"),
                    update_mask: None,
                })
                .await
                .unwrap();
        }
    }
    if !batch.is_empty() {
        recommendation
            .upsert_items(rec_pb::UpsertItemsRequest {
                items: batch,
                request_id: "bench-items-last".into(),
                update_mask: None,
            })
            .await
            .unwrap();
    }
    let mut delivery = DeliveryServiceClient::new(channel.clone());
    delivery
        .upsert_shipping_rates(delivery_pb::UpsertShippingRatesRequest {
            rates: vec![
                rate("bench-std", M::HomeStandard, 499),
                rate("bench-nd", M::HomeNextDay, 899),
                rate("bench-pp", M::PickupPoint, 299),
            ],
            request_id: "bench-rates".into(),
            update_mask: None,
        })
        .await
        .unwrap();
    delivery
        .upsert_pickup_points(delivery_pb::UpsertPickupPointsRequest {
            pickup_points: (0..200)
                .map(|i| {
                    pickup(
                        &format!("bench-pp-{i}"),
                        delivery_pb::PickupPointKind::Locker,
                        52.40 + (i % 20) as f64 * 0.01,
                        13.30 + (i / 20) as f64 * 0.02,
                    )
                })
                .collect(),
            request_id: "bench-points".into(),
            update_mask: None,
        })
        .await
        .unwrap();

    let mut consent = ConsentServiceClient::new(channel.clone());
    let mut profiles = ProfileServiceClient::new(channel.clone());
    let mut events = EventServiceClient::new(channel.clone());
    let mut loyalty = LoyaltyServiceClient::new(channel.clone());
    let now = Utc::now() - chrono::Duration::minutes(1);
    for n in 0..customers {
        let id = customer(n);
        consent
            .record_consent(record(
                &id,
                vec![decision("personalization", consent_pb::Decision::Granted)],
            ))
            .await
            .unwrap();
        let mut request = create_known(
            &id,
            vec![identity(
                profile_pb::IdentityType::LoyaltyCard,
                &format!("card-{n}"),
            )],
        );
        request.request_id = format!("bench-profile-{n}");
        profiles.create_profile(request).await.unwrap();
        profiles
            .set_zero_party_data(set_zero_party(
                &id,
                profile_pb::ZeroPartyData {
                    preferred_name: format!("Customer {n}"),
                    sizes: vec![profile_pb::SizePreference {
                        size_type: "shoes".into(),
                        value: format!("{}", 36 + n % 10),
                        size_system: "EU".into(),
                    }],
                    ..Default::default()
                },
                &["preferred_name", "sizes"],
                common_pb::Channel::Web,
            ))
            .await
            .unwrap();
        let sku = |k: u64| format!("sku-{}", (n * 7 + k * 13) % items);
        let mut batch = Vec::new();
        for k in 0..8 {
            batch.push(view(&format!("bench-v-{n}-{k}"), &id, now, &sku(k)));
        }
        for k in 0..3 {
            batch.push(purchase(
                &format!("bench-p-{n}-{k}"),
                &id,
                now,
                vec![item(&sku(k), 1, Some(eur(2500)), &["apparel"], "Trailco")],
                eur(2500),
            ));
        }
        events
            .ingest_events(profile_pb::IngestEventsRequest {
                events: batch,
                ..Default::default()
            })
            .await
            .unwrap();
        loyalty
            .adjust_points(loyalty_pb::AdjustPointsRequest {
                customer_id: id,
                points: 100 + n as i64 % 900,
                reason_code: loyalty_pb::ReasonCode::Promotion.into(),
                description: "welcome".into(),
                request_id: format!("bench-points-{n}"),
            })
            .await
            .unwrap();
    }
    // Let recommendation learn the events from profile's feed, then train.
    tokio::time::sleep(Duration::from_secs(2)).await;
    recommendation
        .train_model(rec_pb::TrainModelRequest {
            request_id: "bench-train".into(),
        })
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
}

fn all_ok(page: &pb::GetPageExperienceResponse) -> bool {
    let ok = |status: Option<&pb::PartStatus>| {
        status.is_some_and(|status| status.state == pb::PartState::Ok as i32)
    };
    ok(page.profile.as_ref().and_then(|p| p.status.as_ref()))
        && page.recommendations.iter().all(|l| ok(l.status.as_ref()))
        && ok(page.loyalty.as_ref().and_then(|p| p.status.as_ref()))
        && ok(page.delivery.as_ref().and_then(|p| p.status.as_ref()))
}

/// Pages at a fixed arrival rate; latency from each page's scheduled time.
async fn open_loop(channel: Channel, customers: u64, rate: u64, seconds: u64) {
    let degraded = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let cpu_before = server_cpu();
    let counts = (Arc::clone(&degraded), Arc::clone(&failed));
    let run = attune_tests::pacing::open_loop(rate, seconds, move |n| {
        let mut client = GatewayServiceClient::new(channel.clone());
        let (degraded, failed) = (Arc::clone(&counts.0), Arc::clone(&counts.1));
        async move {
            match client.get_page_experience(page_for(n % customers)).await {
                Ok(page) if all_ok(page.get_ref()) => {}
                Ok(_) => {
                    degraded.fetch_add(1, Ordering::Relaxed);
                }
                Err(_) => {
                    failed.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    })
    .await;
    let mut samples: Vec<Duration> = run.calls.iter().map(|(latency, ())| *latency).collect();
    let wall = run.elapsed;
    let cpu = cpu_report(cpu_before, samples.len(), wall);
    samples.sort();
    println!(
        "GetPageExperience open loop at {rate}/s: {} pages in {:.2}s ({:.0}/s), p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms, {} degraded, {} failed{cpu}",
        samples.len(),
        wall.as_secs_f64(),
        samples.len() as f64 / wall.as_secs_f64(),
        percentile(&samples, 0.5).as_secs_f64() * 1e3,
        percentile(&samples, 0.99).as_secs_f64() * 1e3,
        samples.last().unwrap().as_secs_f64() * 1e3,
        degraded.load(Ordering::Relaxed),
        failed.load(Ordering::Relaxed),
    );
}

/// As many pages as `concurrency` callers can get.
async fn closed_loop(channel: Channel, customers: u64, concurrency: u64, seconds: u64) {
    let cpu_before = server_cpu();
    let started = Instant::now();
    let end = started + Duration::from_secs(seconds);
    let mut tasks = Vec::new();
    for worker in 0..concurrency {
        let mut client = GatewayServiceClient::new(channel.clone());
        tasks.push(tokio::spawn(async move {
            let mut samples = Vec::new();
            let mut n = worker;
            while Instant::now() < end {
                let t = Instant::now();
                client
                    .get_page_experience(page_for(n % customers))
                    .await
                    .unwrap();
                samples.push(t.elapsed());
                n += concurrency;
            }
            samples
        }));
    }
    let mut samples = Vec::new();
    for task in tasks {
        samples.extend(task.await.unwrap());
    }
    let wall = started.elapsed();
    let cpu = cpu_report(cpu_before, samples.len(), wall);
    samples.sort();
    println!(
        "GetPageExperience closed loop x{concurrency} callers: {} pages in {:.2}s ({:.0}/s), p50 {:.2} ms, p99 {:.2} ms{cpu}",
        samples.len(),
        wall.as_secs_f64(),
        samples.len() as f64 / wall.as_secs_f64(),
        percentile(&samples, 0.5).as_secs_f64() * 1e3,
        percentile(&samples, 0.99).as_secs_f64() * 1e3,
    );
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let address =
        std::env::var("PAGE_BENCH_ADDR").unwrap_or_else(|_| "http://127.0.0.1:50191".into());
    let customers = env_number("PAGE_BENCH_CUSTOMERS", 500);
    let items = env_number("PAGE_BENCH_ITEMS", 2000);
    let rate = env_number("PAGE_BENCH_RATE", 1000);
    let seconds = env_number("PAGE_BENCH_SECONDS", 10);
    let concurrency = env_number("PAGE_BENCH_CONCURRENCY", 32);
    // Several connections, as a storefront's many servers would open.
    let channels: Vec<Channel> = futures_channels(&address, 4).await;
    let seeding = Instant::now();
    seed(&channels[0], customers, items).await;
    println!(
        "seeded {customers} customers and {items} items in {:.1}s",
        seeding.elapsed().as_secs_f64()
    );
    // Warm up: every customer's consent in the gateway's cache once.
    for n in 0..customers {
        GatewayServiceClient::new(channels[0].clone())
            .get_page_experience(cart_page(&customer(n)))
            .await
            .unwrap();
    }
    let balanced = Channel::balance_list(
        channels
            .iter()
            .map(|_| tonic::transport::Endpoint::from_shared(address.clone()).unwrap()),
    );
    open_loop(balanced.clone(), customers, rate, seconds).await;
    closed_loop(balanced, customers, concurrency, seconds).await;
}

async fn futures_channels(address: &str, count: usize) -> Vec<Channel> {
    let mut channels = Vec::with_capacity(count);
    for _ in 0..count {
        channels.push(
            tonic::transport::Endpoint::from_shared(address.to_owned())
                .unwrap()
                .connect()
                .await
                .unwrap(),
        );
    }
    channels
}
