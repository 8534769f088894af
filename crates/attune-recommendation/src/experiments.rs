//! Experiments: the running one in memory (replaced whole when defined), each
//! customer's variant by a deterministic hash, and the report: click-through
//! and attributed revenue per variant with 95% confidence intervals.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use arc_swap::ArcSwap;
use attune_proto::common::v1 as common_pb;
use attune_proto::recommendation::v1 as pb;
use sha2::{Digest, Sha256};

use crate::domain::{Interaction, Signal};

/// The running experiment, if any.
#[derive(Default)]
pub struct Experiments {
    running: ArcSwap<Option<Arc<pb::Experiment>>>,
}

/// The variant an answer is served by.
#[derive(Debug, Clone)]
pub struct Assigned {
    pub experiment_id: String,
    pub variant: pb::Variant,
}

impl Assigned {
    /// Whether the variant is the non-personalized holdout.
    pub fn is_holdout(&self) -> bool {
        self.variant.kind == pb::VariantKind::Holdout as i32
    }
}

impl Experiments {
    /// Runs `experiment` from now on (or stops it, when it does not run).
    pub fn set(&self, experiment: Option<pb::Experiment>) {
        self.running
            .store(Arc::new(experiment.filter(|e| e.running).map(Arc::new)));
    }

    /// Stops `experiment_id` if it is the one running.
    pub fn stop_if(&self, experiment_id: &str) {
        let current = self.running.load();
        if current
            .as_ref()
            .as_ref()
            .is_some_and(|e| e.experiment_id == experiment_id)
        {
            self.running.store(Arc::new(None));
        }
    }

    /// The variant of `subject` (the customer id, or for a visitor without one,
    /// the answer's id) in the running experiment.
    pub fn assign(&self, subject: &str) -> Option<Assigned> {
        let current = self.running.load();
        let experiment = current.as_ref().as_ref()?;
        let variant = pick(experiment, subject)?;
        Some(Assigned {
            experiment_id: experiment.experiment_id.clone(),
            variant: variant.clone(),
        })
    }
}

/// The variant of `subject`: a hash of the experiment id and the subject, into
/// the variants' cumulative weights. The same customer always lands in the same
/// variant of one experiment; different experiments split independently.
pub fn pick<'a>(experiment: &'a pb::Experiment, subject: &str) -> Option<&'a pb::Variant> {
    let total: u64 = experiment
        .variants
        .iter()
        .map(|v| u64::try_from(v.weight.max(0)).unwrap_or(0))
        .sum();
    if total == 0 {
        return None;
    }
    let digest = Sha256::new()
        .chain_update(experiment.experiment_id.as_bytes())
        .chain_update([0])
        .chain_update(subject.as_bytes())
        .finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    let mut point = u64::from_be_bytes(first) % total;
    for variant in &experiment.variants {
        let weight = u64::try_from(variant.weight.max(0)).unwrap_or(0);
        if point < weight {
            return Some(variant);
        }
        point -= weight;
    }
    None
}

/// 1.96: the standard normal quantile of a two-sided 95% interval.
const Z95: f64 = 1.959_963_984_540_054;

/// The Wilson score interval of `successes` in `trials` (95%).
pub fn wilson(successes: u64, trials: u64) -> (f64, f64) {
    if trials == 0 {
        return (0.0, 0.0);
    }
    let n = trials as f64;
    let p = successes as f64 / n;
    let z2 = Z95 * Z95;
    let centre = (p + z2 / (2.0 * n)) / (1.0 + z2 / n);
    let half = Z95 * ((p * (1.0 - p) / n + z2 / (4.0 * n * n)).sqrt()) / (1.0 + z2 / n);
    ((centre - half).max(0.0), (centre + half).min(1.0))
}

/// The mean of `values` with its normal 95% interval.
fn mean_interval(values: &[f64]) -> (f64, f64, f64) {
    if values.is_empty() {
        return (0.0, 0.0, 0.0);
    }
    let n = values.len() as f64;
    let mean = values.iter().sum::<f64>() / n;
    if values.len() < 2 {
        return (mean, mean, mean);
    }
    let variance = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0);
    let half = Z95 * (variance / n).sqrt();
    (mean, mean - half, mean + half)
}

/// The report of `experiment` from its impressions (recommendation id,
/// variant) and the clicks and purchases of the customers who clicked: a
/// purchase of a clicked item by the clicking customer within `window` micros
/// after the click is attributed to the click's recommendation (once).
pub fn report(
    experiment: &pb::Experiment,
    impressions: &[(String, String)],
    events: &[Interaction],
    window: i64,
) -> Vec<pb::VariantReport> {
    let variant_of: HashMap<&str, &str> = impressions
        .iter()
        .map(|(rec, variant)| (rec.as_str(), variant.as_str()))
        .collect();
    // Clicks in time order: (customer, item) -> the click's recommendation and time.
    let mut open_clicks: HashMap<(&str, &str), Vec<(&str, i64)>> = HashMap::new();
    let mut clicked: HashMap<&str, bool> = HashMap::new();
    // Revenue per recommendation id, per currency.
    let mut revenue: HashMap<&str, BTreeMap<&str, i64>> = HashMap::new();
    for event in events {
        match event.signal {
            Signal::RecommendationClick => {
                let Some(rec) = event.recommendation_id.as_deref() else {
                    continue;
                };
                if !variant_of.contains_key(rec) {
                    continue;
                }
                clicked.insert(rec, true);
                open_clicks
                    .entry((event.customer_id.as_str(), event.item_id.as_str()))
                    .or_default()
                    .push((rec, event.occur_time));
            }
            Signal::Purchase => {
                let key = (event.customer_id.as_str(), event.item_id.as_str());
                let Some(clicks) = open_clicks.get_mut(&key) else {
                    continue;
                };
                // The latest click within the window before the purchase gets it.
                let Some(position) = clicks.iter().rposition(|(_, at)| {
                    *at <= event.occur_time && event.occur_time - *at <= window
                }) else {
                    continue;
                };
                let (rec, _) = clicks.remove(position);
                *revenue
                    .entry(rec)
                    .or_default()
                    .entry(event.currency_code.as_str())
                    .or_default() += event.revenue_minor;
            }
            Signal::View | Signal::CartAdd | Signal::CartRemove => {}
        }
    }
    // Revenue per impression is reported in the most common currency.
    let mut currency_use: HashMap<&str, usize> = HashMap::new();
    for amounts in revenue.values() {
        for currency in amounts.keys() {
            *currency_use.entry(currency).or_default() += 1;
        }
    }
    let main_currency = currency_use
        .into_iter()
        .max_by(|a, b| a.1.cmp(&b.1).then(b.0.cmp(a.0)))
        .map(|(currency, _)| currency);
    experiment
        .variants
        .iter()
        .map(|variant| {
            let recs: Vec<&str> = impressions
                .iter()
                .filter(|(_, v)| *v == variant.name)
                .map(|(rec, _)| rec.as_str())
                .collect();
            let impressions = recs.len() as u64;
            let clicks = recs.iter().filter(|rec| clicked.contains_key(*rec)).count() as u64;
            let (low, high) = wilson(clicks, impressions);
            let mut totals: BTreeMap<&str, i64> = BTreeMap::new();
            let per_impression: Vec<f64> = recs
                .iter()
                .map(|rec| {
                    let amounts = revenue.get(rec);
                    for (currency, amount) in amounts.into_iter().flatten() {
                        *totals.entry(currency).or_default() += amount;
                    }
                    main_currency
                        .and_then(|c| amounts.and_then(|a| a.get(c)))
                        .map_or(0.0, |amount| *amount as f64)
                })
                .collect();
            let (mean, mean_low, mean_high) = mean_interval(&per_impression);
            pb::VariantReport {
                variant: variant.name.clone(),
                impression_count: i64::try_from(impressions).unwrap_or(i64::MAX),
                clicked_count: i64::try_from(clicks).unwrap_or(i64::MAX),
                click_through_rate: if impressions == 0 {
                    0.0
                } else {
                    clicks as f64 / impressions as f64
                },
                click_through_rate_low: low,
                click_through_rate_high: high,
                attributed_revenue: totals
                    .into_iter()
                    .map(|(currency, amount)| common_pb::Money {
                        amount_minor: amount,
                        currency_code: currency.to_owned(),
                    })
                    .collect(),
                revenue_per_impression: mean,
                revenue_per_impression_low: mean_low,
                revenue_per_impression_high: mean_high,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wilson_brackets_the_rate_and_stays_in_zero_one() {
        let (low, high) = wilson(10, 100);
        assert!(low < 0.1 && 0.1 < high, "{low} {high}");
        assert!((low - 0.0552).abs() < 0.001, "{low}");
        assert!((high - 0.1744).abs() < 0.001, "{high}");
        assert_eq!(wilson(0, 0), (0.0, 0.0));
        let (low, high) = wilson(0, 5);
        assert_eq!(low, 0.0);
        assert!(high > 0.0 && high < 1.0);
    }

    #[test]
    fn the_split_is_deterministic_and_follows_the_weights() {
        let experiment = pb::Experiment {
            experiment_id: "e".into(),
            variants: vec![
                pb::Variant {
                    name: "a".into(),
                    kind: pb::VariantKind::Personalized as i32,
                    weight: 3,
                    score_rules: vec![],
                },
                pb::Variant {
                    name: "b".into(),
                    kind: pb::VariantKind::Holdout as i32,
                    weight: 1,
                    score_rules: vec![],
                },
            ],
            running: true,
            update_time: None,
        };
        let mut a = 0;
        for n in 0..4000 {
            let subject = format!("customer-{n}");
            let first = pick(&experiment, &subject).map(|v| v.name.clone());
            assert_eq!(first, pick(&experiment, &subject).map(|v| v.name.clone()));
            if first.as_deref() == Some("a") {
                a += 1;
            }
        }
        assert!((2850..3150).contains(&a), "{a} of 4000 in a");
    }
}
