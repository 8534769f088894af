//! What a segment rule is evaluated against: the [`Facts`] of one customer, and
//! the [`FactsSource`] that loads them for many customers at once.
//!
//! Rules never read storage themselves: evaluation is a pure function of the
//! facts (see `rule.rs`), so it is unit-tested with hand-made facts and the same
//! code runs for previews, the follower and the sweep.
//!
//! Behaviour (orders, events, traits) is the events part's incremental trait
//! state; zero-party data is the people part's table; the granted categories come
//! from consent's cached checker.

use std::collections::{BTreeSet, HashMap};

use attune_kit::ApiError;
use attune_kit::types::{Currency, DataCategory};
use attune_proto::profile::v1 as pb;
use chrono::{DateTime, Utc};
use prost::Message;
use sea_orm::sea_query::{Alias, Expr, ExprTrait, Query};
use sea_orm::{ConnectionTrait, DbErr, FromQueryResult, StatementBuilder};

use crate::app::Profile;

/// One customer's data as a rule sees it, at one instant.
pub trait Facts {
    /// The traits computed at [`now`](Self::now), with only the traits of granted
    /// categories filled.
    fn traits(&self) -> &pb::Traits;
    /// Orders in the last `days` days: (orders, revenue net of returns, gross paid
    /// for those orders), amounts in minor units of the reporting currency.
    fn orders_within(&self, days: u32) -> (u32, i64, i64);
    /// Number of events of `kind` (an `EventKind` wire number) in the last `days`
    /// days.
    fn events_within(&self, kind: i32, days: u32) -> u32;
    /// What the customer volunteered, if anything.
    fn zero_party(&self) -> Option<&pb::ZeroPartyData>;
    /// The data categories a granted purpose covers for this customer now.
    fn granted(&self) -> &BTreeSet<DataCategory>;
    /// The instant the facts describe.
    fn now(&self) -> DateTime<Utc>;
}

/// One customer's behaviour as the events part keeps it incrementally (its
/// `TraitState`), asked at an instant.
pub trait Behaviour: Send + Sync {
    /// The traits at `now`, with only the traits of `granted` categories filled.
    fn traits(
        &self,
        customer_id: &str,
        now: DateTime<Utc>,
        reporting_currency: Currency,
        granted: &BTreeSet<DataCategory>,
    ) -> pb::Traits;
    /// (orders, revenue net of returns, gross) over the last `days` days.
    fn orders_within(&self, days: u32, now: DateTime<Utc>) -> (u32, i64, i64);
    /// Events of `kind` over the last `days` days.
    fn events_within(&self, kind: i32, days: u32, now: DateTime<Utc>) -> u32;
}

/// A customer with no stored behaviour: no traits, no orders, no events.
struct NoBehaviour;

impl Behaviour for NoBehaviour {
    fn traits(
        &self,
        customer_id: &str,
        now: DateTime<Utc>,
        _reporting_currency: Currency,
        granted: &BTreeSet<DataCategory>,
    ) -> pb::Traits {
        pb::Traits {
            customer_id: customer_id.to_owned(),
            data_categories: granted.iter().map(|&c| i32::from(c)).collect(),
            compute_time: Some(attune_kit::types::time::to_proto(now)),
            ..Default::default()
        }
    }

    fn orders_within(&self, _days: u32, _now: DateTime<Utc>) -> (u32, i64, i64) {
        (0, 0, 0)
    }

    fn events_within(&self, _kind: i32, _days: u32, _now: DateTime<Utc>) -> u32 {
        0
    }
}

/// The events part's trait state is the behaviour rules read.
impl Behaviour for crate::events::traits::TraitState {
    fn traits(
        &self,
        customer_id: &str,
        now: DateTime<Utc>,
        reporting_currency: Currency,
        granted: &BTreeSet<DataCategory>,
    ) -> pb::Traits {
        Self::traits(self, customer_id, now, reporting_currency, granted)
    }

    fn orders_within(&self, days: u32, now: DateTime<Utc>) -> (u32, i64, i64) {
        Self::orders_within(self, days, now)
    }

    fn events_within(&self, kind: i32, days: u32, now: DateTime<Utc>) -> u32 {
        Self::events_within(self, kind, days, now)
    }
}

/// The trait states of `customer_ids`, by customer id (a customer without
/// events has none: see [`NoBehaviour`]).
async fn load_behaviour(
    db: &impl ConnectionTrait,
    customer_ids: &[String],
) -> Result<HashMap<String, Box<dyn Behaviour>>, DbErr> {
    let states = crate::events::traits::load_states(db, customer_ids).await?;
    Ok(states
        .into_iter()
        .map(|(id, state)| (id, Box::new(state) as Box<dyn Behaviour>))
        .collect())
}

/// The facts of one customer, loaded by [`FactsSource::load`].
pub struct CustomerFacts {
    customer_id: String,
    traits: pb::Traits,
    behaviour: Box<dyn Behaviour>,
    zero_party: Option<pb::ZeroPartyData>,
    granted: BTreeSet<DataCategory>,
    now: DateTime<Utc>,
}

impl CustomerFacts {
    /// The customer these facts are about.
    pub fn customer_id(&self) -> &str {
        &self.customer_id
    }
}

impl Facts for CustomerFacts {
    fn traits(&self) -> &pb::Traits {
        &self.traits
    }

    fn orders_within(&self, days: u32) -> (u32, i64, i64) {
        self.behaviour.orders_within(days, self.now)
    }

    fn events_within(&self, kind: i32, days: u32) -> u32 {
        self.behaviour.events_within(kind, days, self.now)
    }

    fn zero_party(&self) -> Option<&pb::ZeroPartyData> {
        self.zero_party.as_ref()
    }

    fn granted(&self) -> &BTreeSet<DataCategory> {
        &self.granted
    }

    fn now(&self) -> DateTime<Utc> {
        self.now
    }
}

/// Loads facts and lists the customers segments are evaluated for.
#[derive(Debug, Clone)]
pub struct FactsSource {
    profile: Profile,
}

/// The profiles table, read here only for the live customer ids.
const PROFILES: &str = "profile_profiles";
/// The zero-party table: one prost-encoded `ZeroPartyData` per customer.
const ZERO_PARTY: &str = "profile_zero_party";

impl FactsSource {
    /// Facts from `profile`'s tables and consent checker.
    pub fn new(profile: Profile) -> Self {
        Self { profile }
    }

    /// Up to `limit` live customers (profiles neither merged nor erased) after
    /// `after` in id order, the first page with `None`.
    pub async fn live_customers(
        db: &impl ConnectionTrait,
        after: Option<&str>,
        limit: u64,
    ) -> Result<Vec<String>, DbErr> {
        let mut query = Query::select()
            .column(Alias::new("customer_id"))
            .from(Alias::new(PROFILES))
            .and_where(Expr::col(Alias::new("merged_into")).is_null())
            .order_by(Alias::new("customer_id"), sea_orm::Order::Asc)
            .limit(limit)
            .to_owned();
        if let Some(after) = after {
            query.and_where(Expr::col(Alias::new("customer_id")).gt(after));
        }
        let rows = CustomerRow::find_by_statement(StatementBuilder::build(
            &query,
            &db.get_database_backend(),
        ))
        .all(db)
        .await?;
        Ok(rows.into_iter().map(|row| row.customer_id).collect())
    }

    /// Which of `customer_ids` are live customers (known, not merged away).
    pub async fn live_among(
        db: &impl ConnectionTrait,
        customer_ids: &[String],
    ) -> Result<BTreeSet<String>, DbErr> {
        if customer_ids.is_empty() {
            return Ok(BTreeSet::new());
        }
        let query = Query::select()
            .column(Alias::new("customer_id"))
            .from(Alias::new(PROFILES))
            .and_where(Expr::col(Alias::new("merged_into")).is_null())
            .and_where(Expr::col(Alias::new("customer_id")).is_in(customer_ids.iter().cloned()))
            .to_owned();
        let rows = CustomerRow::find_by_statement(StatementBuilder::build(
            &query,
            &db.get_database_backend(),
        ))
        .all(db)
        .await?;
        Ok(rows.into_iter().map(|row| row.customer_id).collect())
    }

    /// The facts of each of `customer_ids` at `now`, in the same order, read
    /// through `db` (the caller's transaction, so the facts and the memberships it
    /// writes agree). Consent unreachable is UNAVAILABLE.
    pub async fn load(
        &self,
        db: &impl ConnectionTrait,
        customer_ids: &[String],
        now: DateTime<Utc>,
    ) -> Result<Vec<CustomerFacts>, ApiError> {
        let mut behaviour = load_behaviour(db, customer_ids).await?;
        let mut zero_party = zero_party_of(db, customer_ids).await?;
        let mut facts = Vec::with_capacity(customer_ids.len());
        for customer_id in customer_ids {
            let granted = self
                .profile
                .collection
                .granted_categories(customer_id)
                .await?;
            let behaviour = behaviour
                .remove(customer_id)
                .unwrap_or_else(|| Box::new(NoBehaviour));
            let traits =
                behaviour.traits(customer_id, now, self.profile.reporting_currency, &granted);
            facts.push(CustomerFacts {
                customer_id: customer_id.clone(),
                traits,
                behaviour,
                zero_party: zero_party.remove(customer_id),
                granted,
                now,
            });
        }
        Ok(facts)
    }
}

#[derive(FromQueryResult)]
struct CustomerRow {
    customer_id: String,
}

#[derive(FromQueryResult)]
struct ZeroPartyRow {
    customer_id: String,
    data: Vec<u8>,
}

/// The zero-party data of those of `customer_ids` who volunteered any.
async fn zero_party_of(
    db: &impl ConnectionTrait,
    customer_ids: &[String],
) -> Result<HashMap<String, pb::ZeroPartyData>, DbErr> {
    if customer_ids.is_empty() {
        return Ok(HashMap::new());
    }
    let query = Query::select()
        .columns([Alias::new("customer_id"), Alias::new("data")])
        .from(Alias::new(ZERO_PARTY))
        .and_where(Expr::col(Alias::new("customer_id")).is_in(customer_ids.iter().cloned()))
        .to_owned();
    let rows = ZeroPartyRow::find_by_statement(StatementBuilder::build(
        &query,
        &db.get_database_backend(),
    ))
    .all(db)
    .await?;
    rows.into_iter()
        .map(|row| {
            // The row names no customer in the error: logs carry no personal data.
            let data = pb::ZeroPartyData::decode(row.data.as_slice())
                .map_err(|error| DbErr::Custom(format!("unreadable zero-party row: {error}")))?;
            Ok((row.customer_id, data))
        })
        .collect()
}
