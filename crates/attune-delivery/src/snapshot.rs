//! The delivery network served from memory: pickup points by position, the
//! active shipping rates by country and the payment method rules, as one
//! immutable snapshot swapped atomically (`ArcSwap`), so a ranking reads the
//! network without touching the database or taking a lock.
//!
//! Freshness. Every admin upsert of points, rates or payment rules moves the
//! `network` row of `delivery_network_versions` in its transaction. The replica
//! that made the change rebuilds its snapshot before it answers, so its own
//! changes are served at once; every replica also reads the version every
//! `delivery.network_refresh` (1 s by default) and rebuilds when it moved. An
//! admin change made through another replica is therefore served within that
//! interval (plus one rebuild), never later. Slots are not in the snapshot:
//! their availability changes with every reservation and is read live.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use attune_kit::ApiError;
use attune_proto::delivery::v1 as pb;
use prost::Message;
use sea_orm::sea_query::{Expr, ExprTrait, OnConflict, Order, Query};
use sea_orm::{ConnectionTrait, DbErr, FromQueryResult};
use tokio_util::sync::CancellationToken;

use crate::geo::{Point, PointIndex};
use crate::store::{self, Write};

/// The name of the version every network change moves.
const VERSION: &str = "network";

/// One consistent view of the network, as of `version` (or newer: the rows are
/// read after the version, so a snapshot is never older than its label).
#[derive(Debug, Default)]
pub struct NetworkSnapshot {
    /// The network version it was built at; -1 before the first build.
    pub version: i64,
    /// The active pickup points by position.
    pub pickup_points: PointIndex<pb::PickupPoint>,
    /// The active rates of each country, by rate id.
    rates: HashMap<String, Vec<pb::ShippingRate>>,
    /// Every payment method rule.
    pub payment_rules: Vec<pb::PaymentMethodRule>,
}

impl NetworkSnapshot {
    /// The active rates serving `country_code`, ordered by rate id.
    pub fn rates_of(&self, country_code: &str) -> &[pb::ShippingRate] {
        self.rates.get(country_code).map_or(&[], Vec::as_slice)
    }
}

/// The snapshot a replica serves, and what keeps it fresh.
#[derive(Debug)]
pub struct NetworkCache {
    current: ArcSwap<NetworkSnapshot>,
    /// One rebuild at a time: concurrent callers that find the snapshot stale
    /// wait for the rebuild under way instead of each reading the network.
    rebuilding: tokio::sync::Mutex<()>,
}

impl Default for NetworkCache {
    fn default() -> Self {
        Self {
            current: ArcSwap::from_pointee(NetworkSnapshot {
                version: -1,
                ..NetworkSnapshot::default()
            }),
            rebuilding: tokio::sync::Mutex::new(()),
        }
    }
}

#[derive(FromQueryResult)]
struct VersionRow {
    version: i64,
}

#[derive(FromQueryResult)]
struct BodyRow {
    body: Vec<u8>,
}

async fn version(db: &impl ConnectionTrait) -> Result<i64, DbErr> {
    let query = Query::select()
        .column("version")
        .from("delivery_network_versions")
        .and_where(Expr::col("name").eq(VERSION))
        .to_owned();
    Ok(store::one::<VersionRow>(db, &query)
        .await?
        .map_or(0, |row| row.version))
}

/// Moves the network's version, in the transaction of a network change.
pub async fn bump_version(db: &impl ConnectionTrait) -> Result<(), DbErr> {
    // One statement: concurrent changes each move it (no read-then-write).
    Query::insert()
        .into_table("delivery_network_versions")
        .columns(["name", "version"])
        .values_panic([VERSION.into(), 1.into()])
        .on_conflict(
            OnConflict::column("name")
                .value(
                    "version",
                    Expr::col(("delivery_network_versions", "version")).add(1),
                )
                .to_owned(),
        )
        .to_owned()
        .run(db)
        .await?;
    Ok(())
}

async fn bodies(
    db: &impl ConnectionTrait,
    table: &str,
    active_only: bool,
) -> Result<Vec<Vec<u8>>, DbErr> {
    let mut query = Query::select()
        .column("body")
        .from(table.to_owned())
        .to_owned();
    if active_only {
        query.and_where(Expr::col("active").eq(true));
    }
    Ok(store::all::<BodyRow>(db, &query)
        .await?
        .into_iter()
        .map(|row| row.body)
        .collect())
}

async fn build(db: &impl ConnectionTrait, version: i64) -> Result<NetworkSnapshot, ApiError> {
    let mut points = Vec::new();
    for body in bodies(db, "delivery_pickup_points", true).await? {
        let point = pb::PickupPoint::decode(body.as_slice()).map_err(ApiError::internal)?;
        let at = point
            .location
            .as_ref()
            .and_then(|p| Point::parse(p.latitude_microdegrees, p.longitude_microdegrees).ok())
            .ok_or_else(|| ApiError::internal("a stored pickup point has no valid location"))?;
        points.push((at, point));
    }
    let mut rates: HashMap<String, Vec<pb::ShippingRate>> = HashMap::new();
    for body in bodies(db, "delivery_rates", true).await? {
        let rate = pb::ShippingRate::decode(body.as_slice()).map_err(ApiError::internal)?;
        let country = rate
            .service_area
            .as_ref()
            .map(|a| a.country_code.clone())
            .unwrap_or_default();
        rates.entry(country).or_default().push(rate);
    }
    for list in rates.values_mut() {
        list.sort_by(|a, b| a.rate_id.cmp(&b.rate_id));
    }
    let query = Query::select()
        .column("body")
        .from("delivery_payment_rules")
        .order_by("method", Order::Asc)
        .to_owned();
    let payment_rules = store::all::<BodyRow>(db, &query)
        .await?
        .into_iter()
        .map(|row| pb::PaymentMethodRule::decode(row.body.as_slice()).map_err(ApiError::internal))
        .collect::<Result<_, _>>()?;
    Ok(NetworkSnapshot {
        version,
        pickup_points: PointIndex::build(points),
        rates,
        payment_rules,
    })
}

impl NetworkCache {
    /// The snapshot to serve: the current one, or the first build when none was
    /// made yet.
    pub async fn get(&self, db: &impl ConnectionTrait) -> Result<Arc<NetworkSnapshot>, ApiError> {
        let current = self.current.load_full();
        if current.version >= 0 {
            return Ok(current);
        }
        self.refresh(db).await
    }

    /// Reads the network's version and rebuilds the snapshot when it moved:
    /// called after every network change this replica commits, and on an
    /// interval by [`follow`](Self::follow).
    pub async fn refresh(
        &self,
        db: &impl ConnectionTrait,
    ) -> Result<Arc<NetworkSnapshot>, ApiError> {
        let latest = version(db).await?;
        let current = self.current.load_full();
        if current.version == latest {
            return Ok(current);
        }
        let _one_at_a_time = self.rebuilding.lock().await;
        let current = self.current.load_full();
        if current.version >= latest {
            return Ok(current);
        }
        let snapshot = Arc::new(build(db, latest).await?);
        self.current.store(Arc::clone(&snapshot));
        Ok(snapshot)
    }

    /// Refreshes every `interval` until `cancel`, so changes other replicas
    /// make reach this one. A failed refresh keeps serving the last snapshot.
    pub async fn follow(
        self: Arc<Self>,
        db: sea_orm::DatabaseConnection,
        interval: Duration,
        cancel: CancellationToken,
    ) {
        loop {
            tokio::select! {
                () = cancel.cancelled() => return,
                () = tokio::time::sleep(interval) => {}
            }
            if let Err(error) = self.refresh(&db).await {
                tracing::warn!(%error, "delivery network refresh failed; serving the last snapshot");
            }
        }
    }
}
