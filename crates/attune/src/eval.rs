//! `attune eval`: the offline evaluation of the recommendation models on
//! real order data. It trains [`Models`] exactly as the server does and asks
//! [`Models::recommend`] (one code path), next to two references computed
//! here: the user's own most frequent items and popularity.
//!
//! The split is by time: each user's last basket is held out (`--split test`);
//! `--split tuning` holds out the basket before it instead, so knobs are chosen
//! without looking at the test baskets.

mod dataset;
mod metrics;
mod progress;

use std::collections::HashMap;
use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, bail};
use attune_recommendation::model::{Collaborative, ItemIx, ModelConfig, Models, Task};
use clap::{Args, ValueEnum};

use dataset::{Case, Dataset, Split};
use metrics::{Summary, Tally};
use progress::Progress;

#[derive(Debug, Args)]
pub struct EvalArgs {
    /// CSV of order lines with a header: user, item, timestamp (seconds since
    /// the epoch or RFC 3339) or sequence (order number), optional basket.
    #[arg(long)]
    input: PathBuf,
    /// Next basket (every held-out item counts), discovery (only items never
    /// bought before count, and none may be recommended), or both.
    #[arg(long, value_enum, default_value_t = TaskArg::Both)]
    task: TaskArg,
    /// Models to evaluate, comma-separated (default: all). `blend` is what the server serves.
    #[arg(long, value_delimiter = ',', value_parser = clap::builder::PossibleValuesParser::new(MODELS))]
    models: Vec<String>,
    #[arg(long, value_enum, default_value_t = SplitArg::Test)]
    split: SplitArg,
    /// The cut-off of every metric.
    #[arg(long, default_value_t = 10)]
    k: usize,
    /// Overrides a knob of every trained model, e.g. `--set basket_decay=0.8`
    /// (repeatable; see `ModelConfig`).
    #[arg(long = "set", value_name = "KNOB=VALUE")]
    knobs: Vec<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum TaskArg {
    NextBasket,
    Discovery,
    Both,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum SplitArg {
    /// Each user's last basket held out.
    Test,
    /// The basket before the last held out (the last is not used at all).
    Tuning,
}

/// Every model `attune eval` knows, in table order.
const MODELS: [&str; 7] = [
    "own-most-frequent",
    "popularity",
    "tifu",
    "item-knn",
    "rp3beta",
    "ease",
    "blend",
];

/// How one model ranks.
#[derive(Clone, Debug)]
enum Ranker {
    /// The user's items by how many baskets held them, then how recently.
    OwnMostFrequent,
    /// `Models::popular`.
    Popularity,
    /// `Models::recommend` with this configuration.
    Recommend(ModelConfig),
}

fn ranker(name: &str, knobs: &ModelConfig) -> Ranker {
    let only = |personal: f32, collaborative: f32, model: Option<Collaborative>| ModelConfig {
        personal_weight: personal,
        collaborative_weight: collaborative,
        popularity_weight: 0.0,
        discovery_collaborative_weight: collaborative,
        discovery_popularity_weight: 0.0,
        collaborative: model.unwrap_or(knobs.collaborative),
        ..knobs.clone()
    };
    match name {
        "own-most-frequent" => Ranker::OwnMostFrequent,
        "popularity" => Ranker::Popularity,
        // TIFU-KNN's personal part alone: the time-decayed frequency vector.
        "tifu" => Ranker::Recommend(only(1.0, 0.0, None)),
        "item-knn" => Ranker::Recommend(only(
            0.0,
            1.0,
            Some(Collaborative::ItemKnn { shrink: 20.0 }),
        )),
        "rp3beta" => Ranker::Recommend(only(
            0.0,
            1.0,
            Some(Collaborative::Rp3Beta {
                alpha: 0.5,
                beta: 0.2,
            }),
        )),
        "ease" => Ranker::Recommend(only(
            0.0,
            1.0,
            Some(match knobs.collaborative {
                ease @ Collaborative::Ease { .. } => ease,
                _ => EASE,
            }),
        )),
        _ => Ranker::Recommend(knobs.clone()),
    }
}

/// EASE's knobs when the blend runs another collaborative model.
const EASE: Collaborative = Collaborative::Ease {
    lambda: 300.0,
    head: 4000,
    tail_weight: 0.0,
};

/// Applies `--set knob=value` overrides to the default configuration.
fn configure(knobs: &[String]) -> anyhow::Result<ModelConfig> {
    let mut config = ModelConfig::default();
    for knob in knobs {
        let (name, value) = knob
            .split_once('=')
            .with_context(|| format!("--set {knob}: expected KNOB=VALUE"))?;
        let number = || -> anyhow::Result<f32> {
            value
                .parse()
                .with_context(|| format!("--set {name}: {value:?} is not a number"))
        };
        let count = || -> anyhow::Result<usize> {
            value
                .parse()
                .with_context(|| format!("--set {name}: {value:?} is not a count"))
        };
        match name {
            "basket_decay" => config.basket_decay = number()?,
            "personal_weight" => config.personal_weight = number()?,
            "collaborative_weight" => config.collaborative_weight = number()?,
            "popularity_weight" => config.popularity_weight = number()?,
            "discovery_collaborative_weight" => config.discovery_collaborative_weight = number()?,
            "discovery_popularity_weight" => config.discovery_popularity_weight = number()?,
            "popularity_half_life_days" => config.popularity_half_life_days = number()?,
            "due_floor" => config.due_floor = number()?,
            "neighbours" => config.neighbours = count()?,
            "seeds" => config.seeds = count()?,
            "max_items_per_user" => config.max_items_per_user = count()?,
            "item_knn_shrink" => {
                config.collaborative = Collaborative::ItemKnn { shrink: number()? }
            }
            "rp3beta" => {
                let (alpha, beta) = value.split_once(':').context("--set rp3beta=ALPHA:BETA")?;
                config.collaborative = Collaborative::Rp3Beta {
                    alpha: alpha.parse().context("rp3beta alpha")?,
                    beta: beta.parse().context("rp3beta beta")?,
                };
            }
            "ease" => {
                let mut parts = value.split(':');
                let mut next = |what: &str| {
                    parts
                        .next()
                        .with_context(|| format!("--set ease=LAMBDA:HEAD:TAIL_WEIGHT: no {what}"))
                };
                config.collaborative = Collaborative::Ease {
                    lambda: next("lambda")?.parse().context("ease lambda")?,
                    head: next("head")?.parse().context("ease head")?,
                    tail_weight: next("tail weight")?.parse().context("ease tail weight")?,
                };
            }
            _ => bail!("--set {name}: unknown knob"),
        }
    }
    Ok(config)
}

/// One line of the table.
struct Row {
    task: Task,
    model: &'static str,
    summary: Summary,
}

pub fn run(args: &EvalArgs, out: &mut impl Write) -> anyhow::Result<()> {
    if args.k == 0 {
        bail!("--k must be at least 1");
    }
    let knobs = configure(&args.knobs)?;
    let file = std::fs::File::open(&args.input)
        .with_context(|| format!("cannot open {}", args.input.display()))?;
    let dataset = Dataset::read(std::io::BufReader::new(file))
        .with_context(|| format!("cannot read {}", args.input.display()))?;
    let held_out = match args.split {
        SplitArg::Test => 1,
        SplitArg::Tuning => 2,
    };
    let split = dataset.split(held_out);
    if split.cases.is_empty() {
        bail!("no user has a basket to predict after a basket to learn from");
    }
    let tasks: &[Task] = match args.task {
        TaskArg::NextBasket => &[Task::NextBasket],
        TaskArg::Discovery => &[Task::Discovery],
        TaskArg::Both => &[Task::NextBasket, Task::Discovery],
    };
    let names: Vec<&'static str> = MODELS
        .iter()
        .copied()
        .filter(|name| args.models.is_empty() || args.models.iter().any(|m| m == name))
        .collect();

    let mut trained: HashMap<String, Models> = HashMap::new();
    let mut rows = Vec::new();
    for &task in tasks {
        for &name in &names {
            let ranker = ranker(name, &knobs);
            if matches!((task, &ranker), (Task::Discovery, Ranker::OwnMostFrequent)) {
                continue; // Recommends only what was bought before: nothing to discover.
            }
            let models = match &ranker {
                Ranker::OwnMostFrequent => None,
                Ranker::Popularity => Some(train(&mut trained, &split, &knobs, "popularity")?),
                Ranker::Recommend(config) => Some(train(&mut trained, &split, config, name)?),
            };
            let summary = evaluate(&ranker, models, &split, &dataset, task, args.k, name)?;
            rows.push(Row {
                task,
                model: name,
                summary,
            });
        }
    }
    write_table(out, args, &dataset, &split, &rows)
}

/// Trains `config` once (models that share a configuration share the snapshot).
fn train<'a>(
    trained: &'a mut HashMap<String, Models>,
    split: &Split,
    config: &ModelConfig,
    name: &str,
) -> anyhow::Result<&'a Models> {
    let key = format!("{config:?}");
    if !trained.contains_key(&key) {
        let started = Instant::now();
        let models = Models::train(&split.data, config).context("training failed")?;
        let mut err = std::io::stderr().lock();
        writeln!(
            err,
            "trained {name} in {:.2}s ({:.1} MiB)",
            started.elapsed().as_secs_f64(),
            models.memory_bytes() as f64 / (1024.0 * 1024.0)
        )?;
        trained.insert(key.clone(), models);
    }
    trained
        .get(&key)
        .context("a trained snapshot is kept until the end")
}

fn evaluate(
    ranker: &Ranker,
    models: Option<&Models>,
    split: &Split,
    dataset: &Dataset,
    task: Task,
    k: usize,
    name: &str,
) -> anyhow::Result<Summary> {
    let mut tally = Tally::new(k, dataset.items.len());
    let label = format!("{} {name}", task_name(task));
    let mut progress = Progress::new(label, split.cases.len());
    for case in &split.cases {
        progress.step();
        let bought = case.bought();
        let was_bought = |item: ItemIx| bought.binary_search(&item).is_ok();
        let relevant: Vec<ItemIx> = match task {
            Task::NextBasket => case.target.items.clone(),
            Task::Discovery => case
                .target
                .items
                .iter()
                .copied()
                .filter(|&item| !was_bought(item))
                .collect(),
        };
        if relevant.is_empty() {
            continue; // Nothing new in this basket: no discovery to score.
        }
        let ranked: Vec<ItemIx> = match (ranker, models) {
            (Ranker::OwnMostFrequent, _) => own_most_frequent(case, dataset, k),
            (Ranker::Popularity, Some(models)) => {
                let exclude = |item: ItemIx| task == Task::Discovery && was_bought(item);
                models
                    .popular(None, k, &exclude)
                    .iter()
                    .map(|s| s.item)
                    .collect()
            }
            (Ranker::Recommend(_), Some(models)) => models
                .recommend(Some(case.user), &[], task, case.target.time, k, &|_| false)
                .iter()
                .map(|s| s.item)
                .collect(),
            (_, None) => bail!("{name} needs a trained snapshot"),
        };
        if task == Task::Discovery && ranked.iter().any(|&item| was_bought(item)) {
            bail!("{name} recommended an item the user bought before on the discovery task");
        }
        tally.add(&ranked, &relevant);
    }
    progress.finish();
    Ok(tally.summary())
}

/// The reference every next-basket model must beat: the user's items by the
/// number of baskets that held them, then the most recent, then the smaller id
/// (numerically when ids are numbers, as the baseline script sorts them).
fn own_most_frequent(case: &Case, dataset: &Dataset, k: usize) -> Vec<ItemIx> {
    let mut counts: HashMap<ItemIx, (usize, usize)> = HashMap::new();
    for (ordinal, basket) in case.trained.iter().enumerate() {
        for &item in &basket.items {
            let entry = counts.entry(item).or_insert((0, 0));
            entry.0 += 1;
            entry.1 = ordinal;
        }
    }
    let mut items: Vec<(ItemIx, (usize, usize))> = counts.into_iter().collect();
    let label = |item: ItemIx| {
        let label = &dataset.items[item as usize];
        (label.parse::<u64>().unwrap_or(u64::MAX), label.clone())
    };
    items.sort_by(|(a, (na, la)), (b, (nb, lb))| {
        nb.cmp(na)
            .then(lb.cmp(la))
            .then_with(|| label(*a).cmp(&label(*b)))
    });
    items.into_iter().take(k).map(|(item, _)| item).collect()
}

fn task_name(task: Task) -> &'static str {
    match task {
        Task::NextBasket => "next basket",
        Task::Discovery => "discovery",
    }
}

fn write_table(
    out: &mut impl Write,
    args: &EvalArgs,
    dataset: &Dataset,
    split: &Split,
    rows: &[Row],
) -> anyhow::Result<()> {
    let held_out = match args.split {
        SplitArg::Test => "each user's last basket held out",
        SplitArg::Tuning => "each user's second-to-last basket held out (tuning)",
    };
    writeln!(
        out,
        "{}: {} lines, {} users, {} items, {} baskets; {held_out}; {} users evaluated",
        args.input.display(),
        dataset.lines,
        dataset.users.len(),
        dataset.items.len(),
        dataset.basket_count(),
        split.cases.len()
    )?;
    let k = args.k;
    writeln!(
        out,
        "| task | model | NDCG@{k} | precision@{k} | recall@{k} | hit rate@{k} | coverage | users |"
    )?;
    writeln!(out, "|---|---|---|---|---|---|---|---|")?;
    for row in rows {
        let s = row.summary;
        writeln!(
            out,
            "| {} | {} | {:.4} | {:.4} | {:.4} | {:.4} | {:.4} | {} |",
            task_name(row.task),
            row.model,
            s.ndcg,
            s.precision,
            s.recall,
            s.hit_rate,
            s.coverage,
            s.users
        )?;
    }
    Ok(())
}
