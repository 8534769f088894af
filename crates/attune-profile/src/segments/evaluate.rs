//! Keeping memberships equal to what the rules say: re-evaluating some customers
//! against some segments inside a write transaction, each entry and exit one
//! membership row change and one feed entry in that same transaction.
//!
//! Facts are read inside the transaction that writes the memberships, which holds
//! profile's write lock: no other write can change a customer's data between the
//! read and the write, so a slower evaluation never overwrites a newer one.

use std::collections::{BTreeMap, BTreeSet};

use attune_kit::ApiError;
use attune_kit::types::Currency;
use attune_proto::profile::v1 as pb;
use chrono::{DateTime, Utc};
use sea_orm::{ConnectionTrait, DatabaseTransaction, DbErr};

use super::facts::FactsSource;
use super::rule::Rule;
use super::store;
use crate::app::Profile;
use crate::feed;

/// Customers evaluated per write transaction in a full evaluation: large enough
/// to amortise the transaction, small enough not to hold the write lock long.
pub const CUSTOMERS_PER_TRANSACTION: u64 = 200;

/// A segment as evaluation needs it.
#[derive(Debug, Clone)]
pub struct Definition {
    pub segment_id: String,
    pub version: i32,
    pub rule: Rule,
}

/// The stored definitions whose rules parse (all, or only `only`). A rule that
/// no longer parses (the reporting currency was changed since it was saved) is
/// skipped with a warning: its memberships stay as they were.
pub async fn definitions(
    db: &impl ConnectionTrait,
    currency: Currency,
    only: Option<&str>,
) -> Result<Vec<Definition>, DbErr> {
    let rows = match only {
        Some(segment_id) => store::get(db, segment_id).await?.into_iter().collect(),
        None => store::all(db).await?,
    };
    let mut definitions = Vec::with_capacity(rows.len());
    for row in rows {
        let wire = row.decode_rule()?;
        let mut violations = Vec::new();
        match Rule::parse(Some(&wire), "rule", currency, &mut violations) {
            Some(rule) => definitions.push(Definition {
                segment_id: row.segment_id,
                version: row.version,
                rule,
            }),
            None => tracing::warn!(
                segment_id = %row.segment_id,
                problems = ?violations,
                "a stored segment rule no longer parses; its membership is not re-evaluated"
            ),
        }
    }
    Ok(definitions)
}

/// Re-evaluates `customer_ids` against `definitions` at `now` in `txn` (which
/// holds the write lock): live customers join the segments whose rule they match
/// and leave the others; ids that are no longer live customers (merged away,
/// erased, unknown) leave every segment. Returns how many memberships changed.
pub async fn reevaluate(
    txn: &DatabaseTransaction,
    source: &FactsSource,
    definitions: &[Definition],
    customer_ids: &[String],
    now: DateTime<Utc>,
) -> Result<usize, ApiError> {
    if definitions.is_empty() || customer_ids.is_empty() {
        return Ok(0);
    }
    let live: Vec<String> = FactsSource::live_among(txn, customer_ids)
        .await?
        .into_iter()
        .collect();
    let mut should: BTreeSet<(String, String)> = BTreeSet::new();
    for facts in source.load(txn, &live, now).await? {
        for definition in definitions {
            if definition.rule.matches(&facts) {
                should.insert((
                    definition.segment_id.clone(),
                    facts.customer_id().to_owned(),
                ));
            }
        }
    }
    let segment_ids: Vec<String> = definitions.iter().map(|d| d.segment_id.clone()).collect();
    let is: BTreeSet<(String, String)> = store::memberships_of(txn, customer_ids, &segment_ids)
        .await?
        .into_iter()
        .map(|row| (row.segment_id, row.customer_id))
        .collect();
    let entered: Vec<(String, String)> = should.difference(&is).cloned().collect();
    let left: Vec<(String, String)> = is.difference(&should).cloned().collect();
    let versions: BTreeMap<&str, i32> = definitions
        .iter()
        .map(|d| (d.segment_id.as_str(), d.version))
        .collect();
    apply_changes(txn, &entered, &left, &versions, now).await?;
    Ok(entered.len() + left.len())
}

/// Writes entries and exits with their feed entries and member counts.
pub async fn apply_changes(
    txn: &DatabaseTransaction,
    entered: &[(String, String)],
    left: &[(String, String)],
    versions: &BTreeMap<&str, i32>,
    now: DateTime<Utc>,
) -> Result<(), DbErr> {
    if entered.is_empty() && left.is_empty() {
        return Ok(());
    }
    store::add_members(txn, entered, now).await?;
    for (segment_id, customer_id) in left {
        store::remove_member(txn, segment_id, customer_id).await?;
    }
    let mut deltas: BTreeMap<&str, i64> = BTreeMap::new();
    for (segment_id, _) in entered {
        *deltas.entry(segment_id).or_default() += 1;
    }
    for (segment_id, _) in left {
        *deltas.entry(segment_id).or_default() -= 1;
    }
    for (segment_id, delta) in deltas {
        if delta != 0 {
            store::add_to_count(txn, segment_id, delta).await?;
        }
    }
    let change = |(segment_id, customer_id): &(String, String), entered: bool| feed::NewEntry {
        customer_id: customer_id.clone(),
        other_customer_id: None,
        event: None,
        change: pb::feed_entry::Change::SegmentMembershipChange(pb::SegmentMembershipChange {
            segment_id: segment_id.clone(),
            customer_id: customer_id.clone(),
            entered,
            segment_version: versions.get(segment_id.as_str()).copied().unwrap_or(0),
        }),
    };
    let entries = entered
        .iter()
        .map(|pair| change(pair, true))
        .chain(left.iter().map(|pair| change(pair, false)))
        .collect();
    let newest = feed::newest_sequence(txn).await?;
    feed::append(txn, newest, entries, now).await?;
    Ok(())
}

/// Re-evaluates every live customer (and drops members who are no longer live)
/// against every segment, or only against `only`, a page of customers per write
/// transaction; then records the evaluation time of each segment evaluated.
pub async fn evaluate_everyone(
    profile: &Profile,
    source: &FactsSource,
    only: Option<&str>,
) -> Result<usize, ApiError> {
    let started = profile.clock.now();
    let mut changed = 0;
    let mut after: Option<String> = None;
    let mut evaluated: Vec<(String, i32)>;
    loop {
        let txn = profile.begin_write().await?;
        let definitions = definitions(&txn, profile.reporting_currency, only).await?;
        if definitions.is_empty() {
            return Ok(changed);
        }
        evaluated = definitions
            .iter()
            .map(|d| (d.segment_id.clone(), d.version))
            .collect();
        let customers =
            FactsSource::live_customers(&txn, after.as_deref(), CUSTOMERS_PER_TRANSACTION).await?;
        let now = profile.clock.now();
        changed += reevaluate(&txn, source, &definitions, &customers, now).await?;
        txn.commit().await.map_err(ApiError::from)?;
        profile.committed();
        match customers.last() {
            Some(last) if customers.len() as u64 == CUSTOMERS_PER_TRANSACTION => {
                after = Some(last.clone());
            }
            _ => break,
        }
    }
    // Members whose profile was merged away or removed since they joined.
    loop {
        let txn = profile.begin_write().await?;
        let stale = store::stale_members(&txn, CUSTOMERS_PER_TRANSACTION).await?;
        if stale.is_empty() {
            break;
        }
        let definitions = definitions(&txn, profile.reporting_currency, None).await?;
        let now = profile.clock.now();
        let dropped = reevaluate(&txn, source, &definitions, &stale, now).await?;
        txn.commit().await.map_err(ApiError::from)?;
        profile.committed();
        changed += dropped;
        if dropped == 0 {
            // Only members of segments whose rule no longer parses are left.
            break;
        }
    }
    let txn = profile.begin_write().await?;
    if only.is_none() {
        store::recount(&txn).await?;
    }
    for (segment_id, version) in &evaluated {
        store::mark_evaluated(&txn, segment_id, *version, started).await?;
    }
    txn.commit().await.map_err(ApiError::from)?;
    Ok(changed)
}
