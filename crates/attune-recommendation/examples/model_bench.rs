//! Training time, snapshot size and in-process ranking latency of the
//! recommendation models on generated data with realistic skew.
//!
//!   cargo run --release -p attune-recommendation --example model_bench -- \
//!       [--users N] [--items N] [--interactions N] [--seed N] [--queries N]
//!
//! Defaults: 100,000 customers, 50,000 items, 1,000,000 interactions. The
//! generator draws items from a Zipf law (s = 1.0: a few best-sellers, a long
//! tail), gives each customer a handful of staples bought again and again, an
//! activity drawn from a heavy-tailed law, and a mix of views, cart adds and
//! removes, purchases (in baskets), returns and recommendation clicks over 180
//! days. It prints the training time, `Models::memory_bytes()` and the change
//! in the process's resident memory, per million customers, and the latency of
//! `recommend` and `score` (100 candidates) for random customers.

#![allow(clippy::print_stdout, clippy::unwrap_used)] // a benchmark prints; bad flags panic

use std::time::Instant;

use attune_recommendation::model::{
    Interaction, ItemFacts, ItemIx, ModelConfig, Models, Signal, Task, TrainingData, UserIx,
};

const DAY: i64 = 86_400 * 1_000_000;
const NOW: i64 = 1_796_000_000 * 1_000_000;

/// SplitMix64: small, fast, and the same numbers on every machine.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// Samples ranks 0..n with probability proportional to 1 / (rank + 1)^s.
struct Zipf {
    cdf: Vec<f64>,
}

impl Zipf {
    fn new(n: usize, s: f64) -> Zipf {
        let mut total = 0.0;
        let mut cdf: Vec<f64> = (0..n)
            .map(|rank| {
                total += 1.0 / ((rank + 1) as f64).powf(s);
                total
            })
            .collect();
        for c in &mut cdf {
            *c /= total;
        }
        Zipf { cdf }
    }

    fn sample(&self, rng: &mut Rng) -> usize {
        let u = rng.unit();
        self.cdf.partition_point(|&c| c < u).min(self.cdf.len() - 1)
    }
}

struct Options {
    users: u32,
    items: u32,
    interactions: usize,
    seed: u64,
    queries: usize,
}

fn options() -> Options {
    let mut options = Options {
        users: 100_000,
        items: 50_000,
        interactions: 1_000_000,
        seed: 7,
        queries: 20_000,
    };
    let args: Vec<String> = std::env::args().skip(1).collect();
    for pair in args.chunks(2) {
        let value = pair.get(1).map(String::as_str).unwrap_or_default();
        match pair[0].as_str() {
            "--users" => options.users = value.parse().unwrap(),
            "--items" => options.items = value.parse().unwrap(),
            "--interactions" => options.interactions = value.parse().unwrap(),
            "--seed" => options.seed = value.parse().unwrap(),
            "--queries" => options.queries = value.parse().unwrap(),
            other => panic!("unknown flag {other}"),
        }
    }
    options
}

fn catalogue(items: u32, rng: &mut Rng) -> Vec<ItemFacts> {
    (0..items)
        .map(|i| ItemFacts {
            categories: vec![i % 12, 12 + i % 120, 132 + i % 1_200],
            brand: Some(i % 2_000),
            launch: Some(NOW - rng.below(730) as i64 * DAY),
            active: rng.below(50) != 0,
        })
        .collect()
}

/// One customer's events: staples bought again and again, the rest drawn
/// from the whole catalogue's Zipf law; purchases grouped into baskets.
fn customer(
    user: UserIx,
    events: usize,
    popular: &Zipf,
    items: u32,
    rng: &mut Rng,
    out: &mut Vec<Interaction>,
) {
    // Popularity ranks map to scattered item indexes (best-sellers are not 0, 1, 2...).
    let item_at =
        |rank: usize| ((rank as u64).wrapping_mul(2_654_435_761) % u64::from(items)) as ItemIx;
    let staples: Vec<ItemIx> = (0..3 + rng.below(8))
        .map(|_| item_at(popular.sample(rng)))
        .collect();
    let mut time = NOW - 180 * DAY + rng.below(30) as i64 * DAY;
    let step = (150 * DAY) / events.max(1) as i64;
    let mut basket = 1u32;
    let mut in_basket = 0;
    for _ in 0..events {
        time += rng.below(step.max(1) as u64 * 2) as i64;
        let item = if rng.unit() < 0.4 {
            staples[rng.below(staples.len() as u64) as usize]
        } else {
            item_at(popular.sample(rng))
        };
        let roll = rng.below(100);
        let signal = match roll {
            0..60 => Signal::View,
            60..75 => Signal::CartAdd,
            75..78 => Signal::CartRemove,
            78..98 => Signal::Purchase,
            98 => Signal::Return,
            _ => Signal::RecommendationClick,
        };
        let order = if signal == Signal::Purchase {
            in_basket += 1;
            if in_basket > 2 + rng.below(8) {
                basket += 1;
                in_basket = 0;
            }
            basket
        } else {
            0
        };
        out.push(Interaction {
            user,
            item,
            signal,
            time,
            basket: order,
            quantity: 1,
        });
    }
}

fn generate(options: &Options) -> TrainingData {
    let mut rng = Rng(options.seed);
    let items = catalogue(options.items, &mut rng);
    let popular = Zipf::new(options.items as usize, 1.0);
    // Activity: a heavy tail (Pareto, alpha 1.5), scaled to the requested total.
    let weights: Vec<f64> = (0..options.users)
        .map(|_| (1.0 - rng.unit()).powf(-1.0 / 1.5))
        .collect();
    let total: f64 = weights.iter().sum();
    let mut interactions = Vec::with_capacity(options.interactions + options.users as usize);
    for (user, weight) in weights.iter().enumerate() {
        let events = ((weight / total) * options.interactions as f64)
            .round()
            .max(1.0) as usize;
        customer(
            user as UserIx,
            events,
            &popular,
            options.items,
            &mut rng,
            &mut interactions,
        );
    }
    TrainingData {
        users: options.users,
        items,
        interactions,
        now: NOW,
    }
}

/// The process's resident memory in bytes (Linux).
fn resident_bytes() -> usize {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|kb| {
            kb.trim()
                .trim_end_matches(" kB")
                .trim()
                .parse::<usize>()
                .ok()
        })
        .map_or(0, |kb| kb * 1024)
}

/// CPU time this process has used, user and system, in seconds (Linux): on a
/// shared machine the wall clock also counts other processes' turns.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name (which may hold spaces) start after ") ".
    let fields: Vec<&str> = stat
        .rsplit_once(") ")
        .map_or(Vec::new(), |(_, rest)| rest.split(' ').collect());
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // utime and stime are fields 14 and 15 (1-based), 11 and 12 here; 100 ticks a second.
    (ticks(11) + ticks(12)) / 100.0
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 * p) as usize).min(sorted.len() - 1)]
}

fn main() {
    let options = options();
    let started = Instant::now();
    let data = generate(&options);
    let with_purchases = data
        .interactions
        .iter()
        .filter(|e| e.signal == Signal::Purchase)
        .count();
    println!(
        "generated {} customers, {} items, {} interactions ({} purchases) in {:.1}s",
        data.users,
        data.items.len(),
        data.interactions.len(),
        with_purchases,
        started.elapsed().as_secs_f64()
    );

    let before = resident_bytes();
    let started = Instant::now();
    let cpu = cpu_seconds();
    let models = Models::train(&data, &ModelConfig::default()).unwrap();
    let training = started.elapsed().as_secs_f64();
    let training_cpu = cpu_seconds() - cpu;
    drop(data);
    let after = resident_bytes();
    let mib = |bytes: f64| bytes / f64::from(1u32 << 20);
    println!(
        "trained {} in {training:.2}s wall, {training_cpu:.2}s CPU",
        models.version()
    );
    println!(
        "snapshot: {:.1} MiB by memory_bytes for {} customers and {} items; \
         resident growth after dropping the training data: {:.1} MiB",
        mib(models.memory_bytes() as f64),
        models.users(),
        models.items(),
        mib(after.saturating_sub(before) as f64),
    );

    let mut rng = Rng(options.seed ^ 0xfeed);
    let mut recommend = Vec::with_capacity(options.queries);
    let mut rerank = Vec::with_capacity(options.queries);
    for _ in 0..options.queries {
        let user = rng.below(u64::from(options.users)) as UserIx;
        let recent = [(rng.below(u64::from(options.items)) as ItemIx, 1.0)];
        let started = Instant::now();
        let ranked = models.recommend(Some(user), &recent, Task::NextBasket, NOW, 20, &|_| false);
        recommend.push(started.elapsed().as_secs_f64() * 1e6);
        std::hint::black_box(ranked);
        let candidates: Vec<ItemIx> = (0..100)
            .map(|_| rng.below(u64::from(options.items)) as ItemIx)
            .collect();
        let started = Instant::now();
        let scored = models.score(Some(user), &recent, NOW, &candidates);
        rerank.push(started.elapsed().as_secs_f64() * 1e6);
        std::hint::black_box(scored);
    }
    for (name, samples) in [
        ("recommend 20", &mut recommend),
        ("score 100 candidates", &mut rerank),
    ] {
        samples.sort_by(f64::total_cmp);
        println!(
            "{name}: p50 {:.0} us, p99 {:.0} us, max {:.0} us over {} calls (one thread, in process)",
            percentile(samples, 0.5),
            percentile(samples, 0.99),
            samples.last().copied().unwrap_or_default(),
            samples.len()
        );
    }
}
