//! How fast profile ingests events, through a real `attune serve` in another
//! process (`scripts/bench-profile-ingest` starts it and runs this): events per
//! second through `IngestEvents` (batches of `PROFILE_BENCH_BATCH`, from
//! `PROFILE_BENCH_SENDERS` concurrent senders) and through `IngestEventStream`
//! (one stream per sender), every event consent-checked and folded into its
//! customer's traits; the feed lag (commit to delivery to a follower) under the
//! batch load; and `GetTraits` and `GetProfile` latency unloaded and at 1,000
//! calls/s.
//!
//! `PROFILE_BENCH_ADDR` (default http://127.0.0.1:50171) names the server,
//! `PROFILE_BENCH_EVENTS` (default 100000) the events per mode,
//! `PROFILE_BENCH_CUSTOMERS` (default 1000) how many customers they spread over.

#![allow(clippy::print_stdout)] // a benchmark's report is its output
#![allow(clippy::unwrap_used)] // a failed setup is how a benchmark stops

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use attune_proto::consent::v1::consent_service_client::ConsentServiceClient;
use attune_proto::profile::v1::event_service_client::EventServiceClient;
use attune_proto::profile::v1::profile_service_client::ProfileServiceClient;
use attune_tests::consent_requests::{decision, record};
use attune_tests::profile_events::{cart, eur, item, purchase, view};
use attune_tests::{consent_pb, profile_pb as pb};
use chrono::{DateTime, TimeDelta, Utc};
use tokio_stream::StreamExt;
use tonic::transport::Channel;

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name).map_or(default, |value| {
        value
            .parse()
            .unwrap_or_else(|_| panic!("{name} must be a whole number, not {value:?}"))
    })
}

/// The `n`th event of run `run`: mostly views, some cart additions and purchases.
fn nth_event(run: &str, n: u64, customers: u64, at: DateTime<Utc>) -> pb::Event {
    let id = format!("{run}-{n}");
    let customer = format!("bench-{}", n % customers);
    let sku = format!("sku-{}", n % 97);
    let at = at - TimeDelta::milliseconds(i64::try_from(n % 1000).unwrap());
    // Each customer gets every kind, not always the same one.
    match (n + n / customers) % 10 {
        0 => purchase(
            &id,
            &customer,
            at,
            vec![item(&sku, 1, Some(eur(1999)), &["c1", "c2"], "acme")],
            eur(1999),
        ),
        1 | 2 => cart(
            pb::EventKind::AddToCart,
            &id,
            &customer,
            at,
            vec![item(&sku, 1, Some(eur(1999)), &["c1", "c2"], "acme")],
        ),
        _ => view(&id, &customer, at, &sku),
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    #[allow(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        clippy::cast_precision_loss
    )]
    let index = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[index]
}

#[tokio::main]
async fn main() {
    let addr = std::env::var("PROFILE_BENCH_ADDR").unwrap_or("http://127.0.0.1:50171".into());
    let total = env_number("PROFILE_BENCH_EVENTS", 100_000);
    let customers = env_number("PROFILE_BENCH_CUSTOMERS", 1000);
    let batch = env_number("PROFILE_BENCH_BATCH", 500);
    let senders = env_number("PROFILE_BENCH_SENDERS", 4);
    let channel = Channel::from_shared(addr.clone())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut consent = ConsentServiceClient::new(channel.clone());
    for customer in 0..customers {
        consent
            .record_consent(record(
                &format!("bench-{customer}"),
                vec![decision("personalization", consent_pb::Decision::Granted)],
            ))
            .await
            .unwrap();
    }
    let run = format!("r{}", Utc::now().timestamp());
    // Warm up: every customer's consent in the checker, every profile created.
    let warm = ingest_batches(
        &channel,
        &format!("{run}-warm"),
        customers,
        customers,
        batch,
        senders,
    )
    .await;
    assert_eq!(warm.0, customers, "warm-up events accepted");
    println!(
        "profile ingestion at {addr}: {total} events per mode over {customers} customers, {senders} senders, batches of {batch}"
    );

    // The feed lag, measured by a follower from the head while batches go in.
    // Its start is taken before the load begins: a stream that stops at the head
    // would not stop while writers keep moving it.
    let stop = Arc::new(AtomicBool::new(false));
    let head = feed_head(&channel).await;
    let follower = tokio::spawn(follow(channel.clone(), head, Arc::clone(&stop)));
    let started = Instant::now();
    let (accepted, _) = ingest_batches(
        &channel,
        &format!("{run}-b"),
        total,
        customers,
        batch,
        senders,
    )
    .await;
    let elapsed = started.elapsed();
    stop.store(true, Ordering::Relaxed);
    let mut lags = follower.await.unwrap();
    lags.sort();
    assert_eq!(accepted, total, "every batch event accepted");
    report("IngestEvents (batches)", total, elapsed);
    println!(
        "  feed lag (commit to follower) p50 {:?} p99 {:?} over {} entries",
        percentile(&lags, 0.5),
        percentile(&lags, 0.99),
        lags.len()
    );

    let started = Instant::now();
    let accepted = ingest_streams(
        &channel,
        &format!("{run}-s"),
        total,
        customers,
        batch,
        senders,
    )
    .await;
    let elapsed = started.elapsed();
    assert_eq!(accepted, total, "every stream event accepted");
    report("IngestEventStream", total, elapsed);

    traits_latency(&channel, customers).await;
}

fn report(what: &str, events: u64, elapsed: Duration) {
    #[allow(clippy::cast_precision_loss)]
    let rate = events as f64 / elapsed.as_secs_f64();
    println!("{what}: {events} events in {elapsed:.2?}: {rate:.0} events/s");
}

/// Sends events 0..total of `run` in batches from `senders` tasks; returns
/// (accepted, duplicates).
async fn ingest_batches(
    channel: &Channel,
    run: &str,
    total: u64,
    customers: u64,
    batch: u64,
    senders: u64,
) -> (u64, u64) {
    let now = Utc::now();
    let mut tasks = Vec::new();
    for sender in 0..senders {
        let mut client = EventServiceClient::new(channel.clone());
        let run = run.to_owned();
        tasks.push(tokio::spawn(async move {
            let (mut accepted, mut duplicates) = (0, 0);
            let mut start = sender * batch;
            while start < total {
                let events = (start..(start + batch).min(total))
                    .map(|n| nth_event(&run, n, customers, now))
                    .collect();
                let response = client
                    .ingest_events(pb::IngestEventsRequest {
                        events,
                        request_id: String::new(),
                    })
                    .await
                    .unwrap()
                    .into_inner();
                accepted += u64::try_from(response.accepted_count).unwrap();
                duplicates += u64::try_from(response.duplicate_count).unwrap();
                start += senders * batch;
            }
            (accepted, duplicates)
        }));
    }
    let mut totals = (0, 0);
    for task in tasks {
        let (accepted, duplicates) = task.await.unwrap();
        totals.0 += accepted;
        totals.1 += duplicates;
    }
    totals
}

/// Sends events 0..total of `run` over one stream per sender; returns accepted.
async fn ingest_streams(
    channel: &Channel,
    run: &str,
    total: u64,
    customers: u64,
    batch: u64,
    senders: u64,
) -> u64 {
    let now = Utc::now();
    let mut tasks = Vec::new();
    for sender in 0..senders {
        let mut client = EventServiceClient::new(channel.clone());
        let run = run.to_owned();
        tasks.push(tokio::spawn(async move {
            let messages = (0..)
                .map(move |k| (sender + k * senders) * batch)
                .take_while(move |start| *start < total)
                .map(move |start| pb::IngestEventStreamRequest {
                    events: (start..(start + batch).min(total))
                        .map(|n| nth_event(&run, n, customers, now))
                        .collect(),
                });
            let mut responses = client
                .ingest_event_stream(tokio_stream::iter(messages))
                .await
                .unwrap()
                .into_inner();
            let mut accepted = 0;
            while let Some(response) = responses.next().await {
                accepted += u64::try_from(response.unwrap().accepted_count).unwrap();
            }
            accepted
        }));
    }
    let mut accepted = 0;
    for task in tasks {
        accepted += task.await.unwrap();
    }
    accepted
}

/// The feed's newest sequence.
async fn feed_head(channel: &Channel) -> i64 {
    let mut client = EventServiceClient::new(channel.clone());
    // Filtered to a kind the bench never sends, so only cursors come back.
    let mut head = 0;
    let mut probe = client
        .stream_events(pb::StreamEventsRequest {
            after_sequence: 0,
            event_kinds: vec![pb::EventKind::RecommendationClick.into()],
            max_batch_size: 1000,
            stop_at_head: true,
        })
        .await
        .unwrap()
        .into_inner();
    while let Some(response) = probe.next().await {
        head = response.unwrap().through_sequence;
    }
    head
}

/// Follows the feed after `head` until `stop`; returns each entry's lag.
async fn follow(channel: Channel, head: i64, stop: Arc<AtomicBool>) -> Vec<Duration> {
    let mut client = EventServiceClient::new(channel);
    let mut stream = client
        .stream_events(pb::StreamEventsRequest {
            after_sequence: head,
            event_kinds: vec![],
            max_batch_size: 1000,
            stop_at_head: false,
        })
        .await
        .unwrap()
        .into_inner();
    let mut lags = Vec::new();
    // Until the load has stopped and the feed is quiet (heartbeats only).
    loop {
        let response = match tokio::time::timeout(Duration::from_millis(500), stream.next()).await {
            Ok(Some(response)) => response.unwrap(),
            Ok(None) => break,
            Err(_) if stop.load(Ordering::Relaxed) => break,
            Err(_) => continue,
        };
        if response.entries.is_empty() && stop.load(Ordering::Relaxed) {
            break;
        }
        let received = Utc::now();
        for entry in response.entries {
            let committed =
                attune_kit::types::time::from_proto_required(entry.commit_time).unwrap();
            lags.push((received - committed).to_std().unwrap_or_default());
        }
    }
    lags
}

/// One read's latency: 2,000 sequential calls unloaded, then 3,000 paced at
/// 1,000 calls/s.
async fn read_latency<F, Fut>(what: &str, call: F)
where
    F: Fn(u64) -> Fut,
    Fut: std::future::Future<Output = Duration> + Send + 'static,
{
    let mut unloaded = Vec::new();
    for n in 0..2000 {
        unloaded.push(call(n).await);
    }
    unloaded.sort();
    println!(
        "{what} unloaded: p50 {:?} p99 {:?}",
        percentile(&unloaded, 0.5),
        percentile(&unloaded, 0.99)
    );
    let mut ticker = tokio::time::interval(Duration::from_millis(1));
    let mut calls = Vec::new();
    for n in 0..3000 {
        ticker.tick().await;
        calls.push(tokio::spawn(call(n)));
    }
    let mut paced = Vec::new();
    for call in calls {
        paced.push(call.await.unwrap());
    }
    paced.sort();
    println!(
        "{what} at 1,000 calls/s: p50 {:?} p99 {:?}",
        percentile(&paced, 0.5),
        percentile(&paced, 0.99)
    );
}

/// `GetTraits` and `GetProfile` latency, unloaded and at 1,000 calls/s.
async fn traits_latency(channel: &Channel, customers: u64) {
    let events = EventServiceClient::new(channel.clone());
    read_latency("GetTraits", |n: u64| {
        let mut client = events.clone();
        async move {
            let started = Instant::now();
            client
                .get_traits(pb::GetTraitsRequest {
                    customer_id: format!("bench-{}", n % customers),
                })
                .await
                .unwrap();
            started.elapsed()
        }
    })
    .await;
    let profiles = ProfileServiceClient::new(channel.clone());
    read_latency("GetProfile", |n: u64| {
        let mut client = profiles.clone();
        async move {
            let started = Instant::now();
            client
                .get_profile(pb::GetProfileRequest {
                    customer_id: format!("bench-{}", n % customers),
                })
                .await
                .unwrap();
            started.elapsed()
        }
    })
    .await;
}
