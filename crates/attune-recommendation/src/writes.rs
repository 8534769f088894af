//! The service's writes: catalogue upserts and deletions, experiments. Each
//! runs in one transaction under the write lock, idempotent by request id; the
//! snapshots in memory change only after the commit, and only for fresh work.

use std::collections::{BTreeMap, HashMap, HashSet};

use attune_kit::ApiError;
use attune_kit::error::{Violations, checked};
use attune_kit::idempotency::Request as Logged;
use attune_kit::types::time;
use attune_proto::recommendation::v1 as pb;
use prost::Message;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::app::Recommendation;
use crate::catalogue::{self, Field};
use crate::convert;
use crate::replicas;
use crate::store::{self, REQUESTS};

/// Items per UpsertItems or DeleteItems call at most.
const MAX_BATCH: usize = 500;

/// The fingerprint of a request: a keyed digest of its canonical encoding
/// without the request id (maps sorted, since their wire order is not fixed).
fn fingerprint(app: &Recommendation, canonical: &[u8]) -> String {
    #[derive(Serialize)]
    struct Body {
        sha256: String,
    }
    app.key.fingerprint(&Body {
        sha256: hex::encode(Sha256::digest(canonical)),
    })
}

/// An item's canonical bytes: its encoding without attributes, then the
/// attributes in key order.
fn canonical_item(item: &pb::CatalogItem, out: &mut Vec<u8>) {
    let mut bare = item.clone();
    bare.attributes.clear();
    let encoded = bare.encode_to_vec();
    out.extend_from_slice(&(encoded.len() as u64).to_be_bytes());
    out.extend_from_slice(&encoded);
    let sorted: BTreeMap<&String, &String> = item.attributes.iter().collect();
    for (key, value) in sorted {
        for part in [key, value] {
            out.extend_from_slice(&(part.len() as u64).to_be_bytes());
            out.extend_from_slice(part.as_bytes());
        }
    }
}

/// What an upsert did, as remembered for its retries.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Upserted {
    pub created_count: i32,
    pub updated_count: i32,
    pub stale_item_ids: Vec<String>,
}

/// Creates or updates items (see the proto's Partial updates).
pub async fn upsert_items(
    app: &Recommendation,
    request: pb::UpsertItemsRequest,
) -> Result<Upserted, ApiError> {
    let pb::UpsertItemsRequest {
        items,
        request_id,
        update_mask,
    } = request;
    let mut v = Violations::default();
    let request_id = convert::request_id(&mut v, &request_id);
    if items.is_empty() || items.len() > MAX_BATCH {
        v.add("items", format!("must hold 1 to {MAX_BATCH} items"));
    }
    let mut seen = HashSet::new();
    for (n, item) in items.iter().enumerate() {
        catalogue::check_fields(&mut v, &format!("items[{n}]"), item);
        if !seen.insert(item.item_id.as_str()) {
            v.add(
                format!("items[{n}].item_id"),
                "is a duplicate in this batch",
            );
        }
    }
    let mut mask = Vec::new();
    for (n, path) in update_mask.iter().flat_map(|m| m.paths.iter()).enumerate() {
        match Field::parse(path) {
            Some(field) => mask.push(field),
            None => v.add(
                format!("update_mask.paths[{n}]"),
                "must name a top-level CatalogItem field other than item_id and update_time",
            ),
        }
    }
    v.finish()?;
    let request_id = checked(request_id);
    let mut canonical = Vec::new();
    for item in &items {
        canonical_item(item, &mut canonical);
    }
    for path in update_mask.iter().flat_map(|m| m.paths.iter()) {
        canonical.extend_from_slice(path.as_bytes());
        canonical.push(0);
    }
    let fingerprint = fingerprint(app, &canonical);
    let now = app.clock.now();
    let stamp = time::to_proto(now);
    let txn = app.begin_write().await?;
    let mut changed: Vec<pb::CatalogItem> = Vec::new();
    let outcome = REQUESTS
        .idempotent(
            &txn,
            Logged {
                operation: "UpsertItems",
                request_id: request_id.as_ref(),
                fingerprint: &fingerprint,
            },
            now,
            async |txn| {
                let ids: Vec<String> = items.iter().map(|i| i.item_id.clone()).collect();
                let stored: HashMap<String, pb::CatalogItem> = store::items::get_many(txn, &ids)
                    .await?
                    .into_iter()
                    .map(|item| (item.item_id.clone(), item))
                    .collect();
                let mut outcome = Upserted {
                    created_count: 0,
                    updated_count: 0,
                    stale_item_ids: Vec::new(),
                };
                let mut v = Violations::default();
                for (n, sent) in items.into_iter().enumerate() {
                    let merged = match stored.get(&sent.item_id) {
                        Some(old)
                            if sent.source_version != 0
                                && old.source_version > sent.source_version =>
                        {
                            outcome.stale_item_ids.push(sent.item_id);
                            continue;
                        }
                        Some(old) => {
                            outcome.updated_count += 1;
                            catalogue::merge(old, sent, &mask, stamp)
                        }
                        None => {
                            outcome.created_count += 1;
                            catalogue::create(sent, stamp)
                        }
                    };
                    catalogue::check_complete(&mut v, &format!("items[{n}]"), &merged);
                    changed.push(merged);
                }
                v.finish()?;
                store::items::put(txn, &changed, now.timestamp_micros()).await?;
                let ids = changed.iter().map(|item| &item.item_id);
                app.changes.record(txn, replicas::ITEMS, ids, now).await?;
                Ok::<_, ApiError>(outcome)
            },
        )
        .await?;
    txn.commit().await?;
    if outcome.is_fresh() {
        app.catalogue.apply(&changed, &[]);
    }
    Ok(outcome.into_inner())
}

/// What a deletion did, as remembered for its retries.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Deleted {
    pub deleted_count: i32,
    pub not_found_item_ids: Vec<String>,
}

/// Deletes items.
pub async fn delete_items(
    app: &Recommendation,
    request: pb::DeleteItemsRequest,
) -> Result<Deleted, ApiError> {
    let pb::DeleteItemsRequest {
        item_ids,
        request_id,
    } = request;
    let mut v = Violations::default();
    let request_id = convert::request_id(&mut v, &request_id);
    if item_ids.is_empty() || item_ids.len() > MAX_BATCH {
        v.add("item_ids", format!("must name 1 to {MAX_BATCH} items"));
    }
    let mut seen = HashSet::new();
    for (n, id) in item_ids.iter().enumerate() {
        v.check(format!("item_ids[{n}]"), catalogue::check_item_id(id));
        if !seen.insert(id.as_str()) {
            v.add(format!("item_ids[{n}]"), "is a duplicate");
        }
    }
    v.finish()?;
    let request_id = checked(request_id);
    let fingerprint = fingerprint(app, item_ids.join("\0").as_bytes());
    let now = app.clock.now();
    let txn = app.begin_write().await?;
    let mut gone = Vec::new();
    let outcome = REQUESTS
        .idempotent(
            &txn,
            Logged {
                operation: "DeleteItems",
                request_id: request_id.as_ref(),
                fingerprint: &fingerprint,
            },
            now,
            async |txn| {
                gone = store::items::delete(txn, &item_ids).await?;
                app.changes.record(txn, replicas::ITEMS, &gone, now).await?;
                let existed: HashSet<&String> = gone.iter().collect();
                Ok::<_, ApiError>(Deleted {
                    deleted_count: i32::try_from(gone.len()).unwrap_or(i32::MAX),
                    not_found_item_ids: item_ids
                        .iter()
                        .filter(|id| !existed.contains(id))
                        .cloned()
                        .collect(),
                })
            },
        )
        .await?;
    txn.commit().await?;
    if outcome.is_fresh() {
        app.catalogue.apply(&[], &gone);
    }
    Ok(outcome.into_inner())
}

/// Defines an experiment.
pub async fn put_experiment(
    app: &Recommendation,
    request: pb::PutExperimentRequest,
) -> Result<pb::Experiment, ApiError> {
    let pb::PutExperimentRequest {
        experiment,
        request_id,
    } = request;
    let mut v = Violations::default();
    let request_id = convert::request_id(&mut v, &request_id);
    if experiment.is_none() {
        v.add("experiment", "must be set");
    }
    let experiment = experiment.unwrap_or_default();
    let pb::Experiment {
        experiment_id,
        variants,
        running,
        update_time: _,
    } = experiment;
    convert::snake_id(&mut v, "experiment.experiment_id", &experiment_id);
    if !(2..=10).contains(&variants.len()) {
        v.add("experiment.variants", "must hold 2 to 10 variants");
    }
    let mut names = HashSet::new();
    for (n, variant) in variants.iter().enumerate() {
        let pb::Variant {
            name,
            kind,
            weight,
            score_rules,
        } = variant;
        let field = format!("experiment.variants[{n}]");
        convert::snake_id(&mut v, &format!("{field}.name"), name);
        if !names.insert(name.as_str()) {
            v.add(format!("{field}.name"), "is a duplicate");
        }
        let kind = pb::VariantKind::try_from(*kind).unwrap_or(pb::VariantKind::Unspecified);
        if kind == pb::VariantKind::Unspecified {
            v.add(
                format!("{field}.kind"),
                "must be a variant kind other than VARIANT_KIND_UNSPECIFIED",
            );
        }
        if !(1..=10_000).contains(weight) {
            v.add(format!("{field}.weight"), "must be 1 to 10000");
        }
        if kind == pb::VariantKind::Rules {
            if score_rules.is_empty() {
                v.add(
                    format!("{field}.score_rules"),
                    "must hold 1 to 20 rules for VARIANT_KIND_RULES",
                );
            }
            convert::score_rules(&mut v, &format!("{field}.score_rules"), score_rules);
        } else if !score_rules.is_empty() {
            v.add(
                format!("{field}.score_rules"),
                "must be empty unless the kind is VARIANT_KIND_RULES",
            );
        }
    }
    v.finish()?;
    let request_id = checked(request_id);
    let now = app.clock.now();
    let mut stored = pb::Experiment {
        experiment_id,
        variants,
        running,
        update_time: None,
    };
    let fingerprint = fingerprint(app, &stored.encode_to_vec());
    stored.update_time = Some(time::to_proto(now));
    let txn = app.begin_write().await?;
    let outcome = REQUESTS
        .idempotent(
            &txn,
            Logged {
                operation: "PutExperiment",
                request_id: request_id.as_ref(),
                fingerprint: &fingerprint,
            },
            now,
            async |txn| {
                store::experiments::put(txn, &stored, now.timestamp_micros()).await?;
                app.changes
                    .record(txn, replicas::EXPERIMENT, [""], now)
                    .await?;
                Ok::<_, ApiError>(hex::encode(stored.encode_to_vec()))
            },
        )
        .await?;
    txn.commit().await?;
    let fresh = outcome.is_fresh();
    let experiment = hex::decode(outcome.into_inner())
        .ok()
        .and_then(|bytes| pb::Experiment::decode(bytes.as_slice()).ok())
        .ok_or_else(|| ApiError::internal("a stored experiment outcome is unreadable"))?;
    if fresh {
        if experiment.running {
            app.experiments.set(Some(experiment.clone()));
        } else {
            app.experiments.stop_if(&experiment.experiment_id);
        }
    }
    Ok(experiment)
}

/// Reads the running experiment into memory (at start).
pub async fn load_experiments(app: &Recommendation) -> Result<(), sea_orm::DbErr> {
    let running = store::experiments::running(&app.db).await?;
    app.experiments.set(running);
    Ok(())
}

/// Starts a training, idempotent by request id: a replay answers the status
/// now without starting another.
pub async fn train_model(
    app: &Recommendation,
    request: pb::TrainModelRequest,
) -> Result<pb::ModelStatus, ApiError> {
    let pb::TrainModelRequest { request_id } = request;
    let mut v = Violations::default();
    let request_id = convert::request_id(&mut v, &request_id);
    v.finish()?;
    let request_id = checked(request_id);
    let now = app.clock.now();
    let fingerprint = fingerprint(app, b"TrainModel");
    let txn = app.begin_write().await?;
    let outcome = REQUESTS
        .idempotent(
            &txn,
            Logged {
                operation: "TrainModel",
                request_id: request_id.as_ref(),
                fingerprint: &fingerprint,
            },
            now,
            async |txn| {
                // Every replica trains: whichever answers next serves the new model.
                app.changes.record(txn, replicas::TRAIN, [""], now).await?;
                Ok::<_, ApiError>(true)
            },
        )
        .await?;
    txn.commit().await?;
    if outcome.is_fresh() {
        app.trainer.request();
    }
    Ok(crate::training::model_status(app))
}
