//! Ingestion of one batch: validate each event, then in one write transaction
//! find the events already stored (idempotency by event id), resolve customers
//! (merges, identities), honour tombstones and consent, store the accepted events
//! as feed rows, create or touch their profiles and fold them into the traits.
//! Every read and write is one statement per batch (per kind of row), not per
//! event: the hot path of the service.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use attune_kit::ApiError;
use attune_kit::db::micros;
use attune_kit::types::{DataCategory, time};
use attune_proto::profile::v1 as pb;
use chrono::{DateTime, Utc};
use sea_orm::sea_query::{Alias, Expr, ExprTrait, OnConflict, Query};
use sea_orm::{ConnectionTrait, DatabaseTransaction, DbErr, FromQueryResult, StatementBuilder};
use tokio::sync::Mutex;

use super::traits::{self, TraitState};
use super::validate::{Subject, ValidEvent, validate};
use crate::Profile;
use crate::collection::Allowance;
use crate::feed::{self, EventColumns, NewEntry};
use crate::identity::StoredIdentity;

use pb::IngestStatus as S;

/// Ids per `IN (...)` list: well under both databases' bound-value limits.
const IDS_PER_QUERY: usize = 1000;

/// The outcome of one batch: one result per event, in request order.
#[derive(Debug, Default)]
pub(crate) struct BatchOutcome {
    pub results: Vec<pb::EventResult>,
}

impl BatchOutcome {
    /// Events per status, ordered by status.
    pub fn status_counts(&self) -> Vec<pb::StatusCount> {
        let mut counts: BTreeMap<i32, i32> = BTreeMap::new();
        for result in &self.results {
            *counts.entry(result.status).or_default() += 1;
        }
        counts
            .into_iter()
            .map(|(status, count)| pb::StatusCount { status, count })
            .collect()
    }

    /// Events with `status`.
    fn count(&self, statuses: &[S]) -> i32 {
        let n = self
            .results
            .iter()
            .filter(|r| statuses.iter().any(|s| *s as i32 == r.status))
            .count();
        i32::try_from(n).unwrap_or(i32::MAX)
    }

    /// ACCEPTED, DUPLICATE, SKIPPED_* and REJECTED_* counts.
    pub fn totals(&self) -> (i32, i32, i32, i32) {
        (
            self.count(&[S::Accepted]),
            self.count(&[S::Duplicate]),
            self.count(&[
                S::SkippedNoConsent,
                S::SkippedErased,
                S::SkippedUnknownIdentity,
            ]),
            self.count(&[S::RejectedInvalid, S::RejectedConflict]),
        )
    }

    /// The highest sequence assigned now (0 when none).
    pub fn last_sequence(&self) -> i64 {
        self.results
            .iter()
            .filter(|r| r.status == S::Accepted as i32)
            .map(|r| r.sequence)
            .max()
            .unwrap_or(0)
    }
}

/// What happens to one valid event, decided step by step.
enum Fate {
    /// Decided: the status, sequence, resolved customer and message.
    Done(S, i64, String, String),
    /// A later copy of the batch's event at this index.
    SameAs(usize),
    /// Resolved to this customer; consent decides.
    Pending(String),
}

/// Ingests `events` (1 to [`super::MAX_BATCH`], checked by the caller) in one
/// transaction. UNAVAILABLE when consent or the database cannot answer: then
/// nothing was stored.
///
/// `turn` queues this process's batches for the write lock: on SQLite a writer
/// that finds the lock taken sleeps in the busy handler's growing steps, long
/// after the lock is free again, so batches wait their turn here instead (and
/// validate while they wait).
pub(crate) async fn ingest(
    profile: &Profile,
    turn: &Mutex<()>,
    events: Vec<pb::Event>,
) -> Result<BatchOutcome, ApiError> {
    let now = profile.clock.now();
    let mut results: Vec<pb::EventResult> = Vec::with_capacity(events.len());
    let mut valid: Vec<(usize, ValidEvent)> = Vec::with_capacity(events.len());
    for (index, event) in events.into_iter().enumerate() {
        results.push(pb::EventResult {
            index: i32::try_from(index).unwrap_or(i32::MAX),
            event_id: event.event_id.clone(),
            ..Default::default()
        });
        match validate(event, &profile.key, now) {
            Ok(event) => valid.push((index, event)),
            Err(message) => {
                results[index].status = S::RejectedInvalid as i32;
                results[index].message = message;
            }
        }
    }
    if valid.is_empty() {
        return Ok(BatchOutcome { results });
    }
    warm_consent(profile, &valid).await;
    let _turn = turn.lock().await;
    let txn = profile.begin_write().await?;
    let stored = store_batch(&txn, profile, &mut results, valid, now).await?;
    txn.commit().await.map_err(ApiError::from)?;
    if stored {
        profile.committed();
    }
    Ok(BatchOutcome { results })
}

/// Asks consent about every customer the events name, concurrently, before the
/// write lock is taken: a customer the checker has not cached yet then costs its
/// round trip to consent here, and the checks made under the lock (after merges
/// are resolved) answer from memory. The answers themselves are not used, so a
/// failure here is left for the check under the lock to report.
async fn warm_consent(profile: &Profile, valid: &[(usize, ValidEvent)]) {
    let mut needed: BTreeMap<&str, BTreeSet<DataCategory>> = BTreeMap::new();
    for (_, event) in valid {
        if let Subject::Customer(customer) = &event.subject {
            needed.entry(customer).or_default().insert(event.category);
        }
    }
    let checks = needed.into_iter().map(|(customer, categories)| async move {
        let categories: Vec<DataCategory> = categories.into_iter().collect();
        let _ = profile.collection.allowances(customer, &categories).await;
    });
    futures::future::join_all(checks).await;
}

/// Decides and stores the valid events inside `txn`; true when any was stored.
async fn store_batch(
    txn: &DatabaseTransaction,
    profile: &Profile,
    results: &mut [pb::EventResult],
    valid: Vec<(usize, ValidEvent)>,
    now: DateTime<Utc>,
) -> Result<bool, ApiError> {
    let event_ids: Vec<String> = unique(valid.iter().map(|(_, e)| e.event.event_id.clone()));
    let existing = stored_events(txn, &event_ids).await?;
    let identities: Vec<&StoredIdentity> = valid
        .iter()
        .filter_map(|(_, e)| match &e.subject {
            Subject::Identity(identity) => Some(identity),
            Subject::Customer(_) => None,
        })
        .collect();
    let by_identity = identity_owners(txn, &identities).await?;
    let named: Vec<String> = unique(
        valid
            .iter()
            .filter_map(|(_, e)| match &e.subject {
                Subject::Customer(id) => Some(id.clone()),
                Subject::Identity(_) => None,
            })
            .chain(by_identity.values().cloned()),
    );
    let redirects = merged_into(txn, &named).await?;
    let resolve = |id: &str| redirects.get(id).cloned().unwrap_or_else(|| id.to_owned());

    // Dedupe, resolve, tombstones: everything but consent.
    let mut first_of: HashMap<&str, (usize, &[u8])> = HashMap::new();
    let mut fates: Vec<Fate> = Vec::with_capacity(valid.len());
    for (position, (_, event)) in valid.iter().enumerate() {
        let id = event.event.event_id.as_str();
        let fate = if let Some((fingerprint, sequence, customer)) = existing.get(id) {
            if *fingerprint == event.fingerprint {
                Fate::Done(S::Duplicate, *sequence, customer.clone(), String::new())
            } else {
                conflict()
            }
        } else if let Some((first, fingerprint)) = first_of.get(id) {
            if *fingerprint == event.fingerprint.as_slice() {
                Fate::SameAs(*first)
            } else {
                conflict()
            }
        } else {
            first_of.insert(id, (position, event.fingerprint.as_slice()));
            match &event.subject {
                Subject::Customer(id) => Fate::Pending(resolve(id)),
                Subject::Identity(identity) => match by_identity.get(identity) {
                    Some(owner) => Fate::Pending(resolve(owner)),
                    None => Fate::Done(
                        S::SkippedUnknownIdentity,
                        0,
                        String::new(),
                        "identity: linked to no profile".into(),
                    ),
                },
            }
        };
        fates.push(fate);
    }
    let customers: Vec<String> = unique(fates.iter().filter_map(|fate| match fate {
        Fate::Pending(customer) => Some(customer.clone()),
        _ => None,
    }));
    let erased = erase_times(txn, profile, &customers).await?;
    for (fate, (_, event)) in fates.iter_mut().zip(&valid) {
        if let Fate::Pending(customer) = fate
            && erased
                .get(customer.as_str())
                .is_some_and(|erase_time| event.occur_time < *erase_time)
        {
            *fate = Fate::Done(
                S::SkippedErased,
                0,
                std::mem::take(customer),
                "customer_id: the customer was erased after the event occurred".into(),
            );
        }
    }

    // Consent: one question per customer, for the categories of its events.
    let mut needed: BTreeMap<&str, BTreeSet<DataCategory>> = BTreeMap::new();
    for (fate, (_, event)) in fates.iter().zip(&valid) {
        if let Fate::Pending(customer) = fate {
            needed.entry(customer).or_default().insert(event.category);
        }
    }
    let mut allowed: HashMap<(String, DataCategory), Allowance> = HashMap::new();
    for (customer, categories) in needed {
        let categories: Vec<DataCategory> = categories.into_iter().collect();
        let answers = profile.collection.allowances(customer, &categories).await?;
        for (category, answer) in categories.into_iter().zip(answers) {
            allowed.insert((customer.to_owned(), category), answer);
        }
    }

    // The accepted events, as feed rows.
    let mut accepted: Vec<(usize, pb::Event, String)> = Vec::new();
    let mut entries: Vec<NewEntry> = Vec::new();
    for (position, (fate, (_, event))) in fates.iter_mut().zip(&valid).enumerate() {
        let Fate::Pending(customer) = fate else {
            continue;
        };
        let customer = std::mem::take(customer);
        match allowed.get(&(customer.clone(), event.category)) {
            Some(Allowance::Allowed(purposes)) => {
                let stored = stored_event(event, &customer, purposes.clone(), now);
                entries.push(NewEntry {
                    customer_id: customer.clone(),
                    other_customer_id: None,
                    event: Some(EventColumns {
                        event_id: event.event.event_id.clone(),
                        kind: event.kind as i32,
                        occur_time: event.occur_time,
                        fingerprint: event.fingerprint.clone(),
                    }),
                    change: pb::feed_entry::Change::Event(stored.clone()),
                });
                accepted.push((position, stored, customer.clone()));
                *fate = Fate::Done(S::Accepted, 0, customer, String::new());
            }
            refused => {
                let message = refused
                    .and_then(|allowance| allowance.refusal("the event"))
                    .map(|error| error.to_string())
                    .unwrap_or_default();
                *fate = Fate::Done(S::SkippedNoConsent, 0, customer, message);
            }
        }
    }
    if !entries.is_empty() {
        let newest = feed::newest_sequence(txn).await?;
        let sequences = feed::append(txn, newest, entries, now).await?;
        for ((position, event, _), sequence) in accepted.iter_mut().zip(sequences) {
            event.sequence = sequence;
            if let Fate::Done(_, assigned, ..) = &mut fates[*position] {
                *assigned = sequence;
            }
        }
        touch_profiles(txn, &valid, &accepted, now).await?;
        fold_traits(txn, profile, &accepted, now).await?;
    }

    // Results, later copies of an event taking the first one's outcome.
    for position in 0..fates.len() {
        let (status, sequence, customer, message) = match &fates[position] {
            Fate::Done(status, sequence, customer, message) => {
                (*status, *sequence, customer.clone(), message.clone())
            }
            Fate::SameAs(first) => match &fates[*first] {
                Fate::Done(S::Accepted, sequence, customer, _) => {
                    (S::Duplicate, *sequence, customer.clone(), String::new())
                }
                Fate::Done(status, sequence, customer, message) => {
                    (*status, *sequence, customer.clone(), message.clone())
                }
                _ => unreachable!("a first occurrence is decided before its copies"),
            },
            Fate::Pending(_) => unreachable!("consent decided every pending event"),
        };
        let result = &mut results[valid[position].0];
        result.status = status as i32;
        result.sequence = sequence;
        result.resolved_customer_id = customer;
        result.message = message;
    }
    Ok(!accepted.is_empty())
}

fn conflict() -> Fate {
    Fate::Done(
        S::RejectedConflict,
        0,
        String::new(),
        "event_id: another event with this id and different content was sent earlier".into(),
    )
}

/// The event as stored: output fields set, the identity in its stored form (an
/// e-mail or phone number is kept only as its keyed hash).
fn stored_event(
    valid: &ValidEvent,
    customer: &str,
    purposes: Vec<pb::PurposeNotice>,
    now: DateTime<Utc>,
) -> pb::Event {
    let mut event = valid.event.clone();
    if let (Some(identity), Subject::Identity(stored)) = (event.identity.as_mut(), &valid.subject) {
        identity.value.clone_from(&stored.value);
    }
    event.resolved_customer_id = customer.to_owned();
    event.data_category = i32::from(valid.category);
    event.purposes = purposes;
    event.ingest_time = Some(time::to_proto(now));
    event
}

fn unique(ids: impl Iterator<Item = String>) -> Vec<String> {
    ids.collect::<BTreeSet<_>>().into_iter().collect()
}

#[derive(FromQueryResult)]
struct ExistingRow {
    event_id: String,
    fingerprint: Vec<u8>,
    sequence: i64,
    customer_id: String,
}

/// The stored events among `event_ids`: fingerprint, sequence, customer.
async fn stored_events(
    db: &impl ConnectionTrait,
    event_ids: &[String],
) -> Result<HashMap<String, (Vec<u8>, i64, String)>, DbErr> {
    let mut existing = HashMap::new();
    for chunk in event_ids.chunks(IDS_PER_QUERY) {
        let query = Query::select()
            .columns([
                Alias::new("event_id"),
                Alias::new("fingerprint"),
                Alias::new("sequence"),
                Alias::new("customer_id"),
            ])
            .from(Alias::new(feed::TABLE))
            .and_where(Expr::col(Alias::new("event_id")).is_in(chunk.iter().cloned()))
            .to_owned();
        let rows = ExistingRow::find_by_statement(StatementBuilder::build(
            &query,
            &db.get_database_backend(),
        ))
        .all(db)
        .await?;
        for row in rows {
            existing.insert(
                row.event_id,
                (row.fingerprint, row.sequence, row.customer_id),
            );
        }
    }
    Ok(existing)
}

#[derive(FromQueryResult)]
struct IdentityRow {
    identity_type: i16,
    value: String,
    customer_id: String,
}

/// The profile each of `identities` is linked to, if any.
async fn identity_owners(
    db: &impl ConnectionTrait,
    identities: &[&StoredIdentity],
) -> Result<HashMap<StoredIdentity, String>, DbErr> {
    let mut owners = HashMap::new();
    let values = unique(identities.iter().map(|identity| identity.value.clone()));
    for chunk in values.chunks(IDS_PER_QUERY) {
        let query = Query::select()
            .columns([
                Alias::new("identity_type"),
                Alias::new("value"),
                Alias::new("customer_id"),
            ])
            .from(Alias::new("profile_identities"))
            .and_where(Expr::col(Alias::new("value")).is_in(chunk.iter().cloned()))
            .to_owned();
        let rows = IdentityRow::find_by_statement(StatementBuilder::build(
            &query,
            &db.get_database_backend(),
        ))
        .all(db)
        .await?;
        for row in rows {
            owners.insert(
                StoredIdentity {
                    identity_type: i32::from(row.identity_type),
                    value: row.value,
                },
                row.customer_id,
            );
        }
    }
    Ok(owners)
}

#[derive(FromQueryResult)]
struct RedirectRow {
    customer_id: String,
    merged_into: String,
}

/// The survivor of each of `customer_ids` that was merged.
pub(crate) async fn merged_into(
    db: &impl ConnectionTrait,
    customer_ids: &[String],
) -> Result<HashMap<String, String>, DbErr> {
    let mut redirects = HashMap::new();
    for chunk in customer_ids.chunks(IDS_PER_QUERY) {
        let query = Query::select()
            .columns([Alias::new("customer_id"), Alias::new("merged_into")])
            .from(Alias::new("profile_profiles"))
            .and_where(Expr::col(Alias::new("customer_id")).is_in(chunk.iter().cloned()))
            .and_where(Expr::col(Alias::new("merged_into")).is_not_null())
            .to_owned();
        let rows = RedirectRow::find_by_statement(StatementBuilder::build(
            &query,
            &db.get_database_backend(),
        ))
        .all(db)
        .await?;
        redirects.extend(
            rows.into_iter()
                .map(|row| (row.customer_id, row.merged_into)),
        );
    }
    Ok(redirects)
}

#[derive(FromQueryResult)]
struct TombstoneRow {
    subject_hash: String,
    erase_time: i64,
}

/// When each of `customers` that was erased was erased.
async fn erase_times<'a>(
    db: &impl ConnectionTrait,
    profile: &Profile,
    customers: &'a [String],
) -> Result<HashMap<&'a str, DateTime<Utc>>, DbErr> {
    let digests: HashMap<String, &str> = customers
        .iter()
        .map(|customer| (profile.key.digest("customer", customer), customer.as_str()))
        .collect();
    let mut erased = HashMap::new();
    let hashes: Vec<String> = digests.keys().cloned().collect();
    for chunk in hashes.chunks(IDS_PER_QUERY) {
        let query = Query::select()
            .columns([Alias::new("subject_hash"), Alias::new("erase_time")])
            .from(Alias::new("profile_tombstones"))
            .and_where(Expr::col(Alias::new("subject_hash")).is_in(chunk.iter().cloned()))
            .to_owned();
        let rows = TombstoneRow::find_by_statement(StatementBuilder::build(
            &query,
            &db.get_database_backend(),
        ))
        .all(db)
        .await?;
        for row in rows {
            if let Some(customer) = digests.get(&row.subject_hash) {
                let time = micros::from_micros(row.erase_time)
                    .map_err(|error| DbErr::Custom(format!("tombstone: {error}")))?;
                erased.insert(*customer, time);
            }
        }
    }
    Ok(erased)
}

/// Creates the profiles of customer ids seen for the first time (their kind
/// from the first accepted event's `new_profile_kind`, created on its channel)
/// and moves every touched profile's `last_event_time` forward: one upsert.
async fn touch_profiles(
    db: &impl ConnectionTrait,
    valid: &[(usize, ValidEvent)],
    accepted: &[(usize, pb::Event, String)],
    now: DateTime<Utc>,
) -> Result<(), DbErr> {
    // customer -> (kind, channel, last event time)
    let mut touched: BTreeMap<&str, (i16, i16, i64)> = BTreeMap::new();
    for (position, event, customer) in accepted {
        let occur = micros::to_micros(valid[*position].1.occur_time);
        let kind = match pb::ProfileKind::try_from(event.new_profile_kind) {
            Ok(pb::ProfileKind::Anonymous) => pb::ProfileKind::Anonymous,
            _ => pb::ProfileKind::Known,
        } as i16;
        let channel = i16::try_from(event.channel).unwrap_or(0);
        touched
            .entry(customer)
            .and_modify(|(_, _, last)| *last = Ord::max(*last, occur))
            .or_insert((kind, channel, occur));
    }
    let at = micros::to_micros(now);
    let rows: Vec<_> = touched.into_iter().collect();
    for chunk in rows.chunks(IDS_PER_QUERY) {
        let mut insert = Query::insert()
            .into_table(Alias::new("profile_profiles"))
            .columns([
                Alias::new("customer_id"),
                Alias::new("kind"),
                Alias::new("create_channel"),
                Alias::new("create_time"),
                Alias::new("update_time"),
                Alias::new("last_event_time"),
            ])
            .on_conflict(
                OnConflict::column(Alias::new("customer_id"))
                    .value(
                        Alias::new("last_event_time"),
                        Expr::cust(
                            "CASE WHEN profile_profiles.last_event_time IS NULL \
                             OR profile_profiles.last_event_time < excluded.last_event_time \
                             THEN excluded.last_event_time \
                             ELSE profile_profiles.last_event_time END",
                        ),
                    )
                    .to_owned(),
            )
            .to_owned();
        for (customer, (kind, channel, last)) in chunk {
            insert.values_panic([
                (*customer).to_owned().into(),
                (*kind).into(),
                (*channel).into(),
                at.into(),
                at.into(),
                (*last).into(),
            ]);
        }
        db.execute(&insert).await?;
    }
    Ok(())
}

/// Folds the accepted events into their customers' trait states, in occurrence
/// order: one read and one write for the batch.
async fn fold_traits(
    db: &impl ConnectionTrait,
    profile: &Profile,
    accepted: &[(usize, pb::Event, String)],
    now: DateTime<Utc>,
) -> Result<(), DbErr> {
    let customers = unique(accepted.iter().map(|(_, _, customer)| customer.clone()));
    let mut states = traits::load_states(db, &customers).await?;
    let mut ordered: Vec<&(usize, pb::Event, String)> = accepted.iter().collect();
    ordered.sort_by_key(|(_, event, _)| {
        event
            .occur_time
            .map(|t| (t.seconds, t.nanos))
            .unwrap_or_default()
    });
    let at = micros::to_micros(now);
    for (_, event, customer) in ordered {
        states
            .entry(customer.clone())
            .or_insert_with(TraitState::default)
            .apply(event, profile.reporting_currency, at);
    }
    let rows: Vec<(&str, &TraitState)> = states
        .iter()
        .map(|(customer, state)| (customer.as_str(), state))
        .collect();
    traits::save_states(db, &rows, now).await
}
