//! Personalized offers and the next-best message.
//!
//! Offers are generated per customer by the retailer's offer rules from what the
//! other services know: profile's traits (inactivity, the open cart, orders),
//! zero-party data with its provenance (what was volunteered recently, the
//! preferred store, the time zone) and recommendation's buy-again answers.
//! Those are read before the write (no peer call holds the write lock); a
//! source that does not answer makes the rules that need it skip, saying so,
//! never guess. Every offer needs "personalization"; one meant for e-mail, SMS
//! or push also the channel's marketing purpose. Caps: offers per customer per
//! week, each rule's campaign budget, one live offer per rule and customer.
//!
//! The next-best message that carries them is `messages.rs`.

use attune_kit::ApiError;
use attune_kit::db::micros::to_micros;
use attune_kit::telemetry::TraceContextInterceptor;
use attune_kit::types::DataCategory;
use attune_proto::profile::v1 as profile_pb;
use attune_proto::profile::v1::event_service_client::EventServiceClient;
use attune_proto::profile::v1::profile_service_client::ProfileServiceClient;
use attune_proto::recommendation::v1 as rec_pb;
use attune_proto::recommendation::v1::recommendation_service_client::RecommendationServiceClient;
use chrono::{DateTime, Duration, Utc};
use sea_orm::{ConnectionTrait, DatabaseTransaction, DbErr, FromQueryResult};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::app::Loyalty;
use crate::domain::offers::{BuyAgain, due_items};
use crate::store::{all, exec, number, one};

/// What an offer rule looks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum OfferKind {
    Replenishment,
    WinBack,
    CartAbandon,
    ZeroPartyThanks,
    StoreEvent,
}

/// The channel an offer or message is meant for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Channel {
    InApp,
    Email,
    Sms,
    Push,
}

impl Channel {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::InApp => "in_app",
            Self::Email => "email",
            Self::Sms => "sms",
            Self::Push => "push",
        }
    }

    /// The marketing purpose the channel needs, if any.
    pub fn purpose(self) -> Option<&'static str> {
        match self {
            Self::InApp => None,
            Self::Email => Some("marketing_email"),
            Self::Sms => Some("marketing_sms"),
            Self::Push => Some("marketing_push"),
        }
    }
}

/// An offer rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OfferRule {
    pub rule_id: String,
    pub kind: OfferKind,
    pub active: bool,
    pub title: String,
    pub discount_bp: i32,
    pub validity: Duration,
    pub channel: Channel,
    pub campaign_id: String,
    pub campaign_budget: i64,
    pub inactive_days: i32,
    pub cart_idle_hours: i32,
    pub recent_days: i32,
    pub due_within: Duration,
    pub store_id: String,
    pub min_orders: i32,
}

/// Where an offer is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum OfferState {
    Issued,
    Seen,
    Redeemed,
    Expired,
}

impl OfferState {
    fn stored(self) -> &'static str {
        match self {
            Self::Issued => "issued",
            Self::Seen => "seen",
            Self::Redeemed => "redeemed",
            Self::Expired => "expired",
        }
    }
}

/// A personalized offer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Offer {
    pub offer_id: String,
    pub customer_id: String,
    pub rule_id: String,
    pub kind: OfferKind,
    pub state: OfferState,
    pub title: String,
    pub reason: String,
    /// Data categories by their stored names.
    pub data_categories: Vec<String>,
    pub discount_bp: i32,
    pub item_ids: Vec<String>,
    pub channel: Channel,
    pub campaign_id: String,
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
}

/// Why a rule issued nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Skip {
    NoConsent,
    NotEligible,
    AlreadyOffered,
    CustomerCap,
    BudgetSpent,
    SourceUnavailable,
}

/// What generation did.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Generated {
    pub issued: Vec<Offer>,
    pub skipped: Vec<(String, Skip, String)>,
}

#[derive(Debug, FromQueryResult)]
pub(crate) struct Body {
    pub body: String,
}

fn corrupt(what: &str) -> DbErr {
    DbErr::Custom(format!("stored {what} is unreadable"))
}

/// What generating one customer's offers reads before its write.
pub(crate) struct OfferInputs {
    rules: Vec<OfferRule>,
    /// Whether each marketing purpose a rule's channel needs is granted.
    marketing: std::collections::BTreeMap<&'static str, bool>,
    /// `None`: personalization is not granted.
    facts: Option<Facts>,
}

/// What the other services said about one customer; `None`: did not answer.
struct Facts {
    traits: Option<profile_pb::Traits>,
    zero_party: Option<profile_pb::ZeroPartyData>,
    buy_again: Option<Vec<BuyAgain>>,
}

async fn offer_rules(db: &impl ConnectionTrait) -> Result<Vec<OfferRule>, DbErr> {
    let rows: Vec<Body> = all(
        db,
        "SELECT body FROM loyalty_offer_rules ORDER BY rule_id",
        vec![],
    )
    .await?;
    rows.into_iter()
        .map(|r| serde_json::from_str(&r.body).map_err(|_| corrupt("offer rule")))
        .collect()
}

pub(crate) fn offer_of(body: &str, now: DateTime<Utc>) -> Result<Offer, DbErr> {
    let mut offer: Offer = serde_json::from_str(body).map_err(|_| corrupt("offer"))?;
    if matches!(offer.state, OfferState::Issued | OfferState::Seen) && offer.end <= now {
        offer.state = OfferState::Expired;
    }
    Ok(offer)
}

impl Loyalty {
    /// Creates or replaces an offer rule (its issued count is kept).
    pub async fn put_offer_rule(
        &self,
        rule: OfferRule,
        request_id: &str,
    ) -> Result<OfferRule, ApiError> {
        self.idempotent("put_offer_rule", request_id, &rule, async |txn| {
            let body = serde_json::to_string(&rule).map_err(ApiError::internal)?;
            exec(
                txn,
                "INSERT INTO loyalty_offer_rules (rule_id, body, issued_count, update_time) VALUES (?, ?, 0, ?) \
                 ON CONFLICT (rule_id) DO UPDATE SET body = excluded.body, update_time = excluded.update_time",
                vec![rule.rule_id.clone().into(), body.into(), to_micros(self.clock.now()).into()],
            )
            .await?;
            Ok(rule.clone())
        })
        .await
    }

    pub async fn offer_rules(&self) -> Result<Vec<OfferRule>, ApiError> {
        Ok(offer_rules(&self.db).await?)
    }

    async fn facts(&self, customer: &str, rules: &[OfferRule]) -> Facts {
        let needs = |kinds: &[OfferKind]| rules.iter().any(|r| r.active && kinds.contains(&r.kind));
        let mut facts = Facts {
            traits: None,
            zero_party: None,
            buy_again: None,
        };
        if let Some(peer) = &self.profile {
            if needs(&[
                OfferKind::WinBack,
                OfferKind::CartAbandon,
                OfferKind::StoreEvent,
            ]) {
                let mut client =
                    EventServiceClient::with_interceptor(peer.clone(), TraceContextInterceptor);
                facts.traits = client
                    .get_traits(profile_pb::GetTraitsRequest {
                        customer_id: customer.to_owned(),
                    })
                    .await
                    .ok()
                    .and_then(|r| r.into_inner().traits);
            }
            if needs(&[OfferKind::ZeroPartyThanks, OfferKind::StoreEvent]) {
                let mut client =
                    ProfileServiceClient::with_interceptor(peer.clone(), TraceContextInterceptor);
                facts.zero_party = match client
                    .get_zero_party_data(profile_pb::GetZeroPartyDataRequest {
                        customer_id: customer.to_owned(),
                    })
                    .await
                {
                    Ok(answer) => Some(answer.into_inner().data.unwrap_or_default()),
                    // No profile: nothing was volunteered.
                    Err(status) if status.code() == tonic::Code::NotFound => {
                        Some(Default::default())
                    }
                    Err(_) => None,
                };
            }
        }
        if let (Some(peer), true) = (&self.recommendation, needs(&[OfferKind::Replenishment])) {
            let mut client = RecommendationServiceClient::with_interceptor(
                peer.clone(),
                TraceContextInterceptor,
            );
            facts.buy_again = client
                .get_buy_again(rec_pb::GetBuyAgainRequest {
                    customer_id: customer.to_owned(),
                    filter: None,
                    max_results: 50,
                })
                .await
                .ok()
                .map(|answer| {
                    answer
                        .into_inner()
                        .items
                        .into_iter()
                        .map(|item| BuyAgain {
                            item_id: item.item.map(|i| i.item_id).unwrap_or_default(),
                            purchase_count: item.purchase_count,
                            last_purchase_time: item
                                .last_purchase_time
                                .and_then(|t| attune_kit::types::time::from_proto(t).ok()),
                            typical_interval: item
                                .typical_interval
                                .and_then(|d| Duration::try_seconds(d.seconds)),
                            expected_next_purchase_time: item
                                .expected_next_purchase_time
                                .and_then(|t| attune_kit::types::time::from_proto(t).ok()),
                        })
                        .collect()
                });
        }
        facts
    }

    /// Generates a customer's offers now.
    pub async fn generate_offers(
        &self,
        customer: &str,
        request_id: &str,
    ) -> Result<Generated, ApiError> {
        let inputs = self.offer_inputs(customer).await?;
        self.idempotent_about(
            customer,
            "generate_offers",
            request_id,
            &json!({ "customer_id": customer }),
            async |txn| self.issue_offers(txn, customer, &inputs).await,
        )
        .await
    }

    /// What generation for `customer` needs from outside loyalty's write: the
    /// active rules, the consents and the other services' facts (no peer call
    /// holds the write lock).
    pub(crate) async fn offer_inputs(&self, customer: &str) -> Result<OfferInputs, ApiError> {
        let rules: Vec<OfferRule> = offer_rules(&self.db)
            .await?
            .into_iter()
            .filter(|r| r.active)
            .collect();
        let personalization = self.checker.is_granted(customer, "personalization").await;
        let mut marketing = std::collections::BTreeMap::new();
        for rule in &rules {
            if let Some(purpose) = rule.channel.purpose()
                && !marketing.contains_key(purpose)
            {
                marketing.insert(purpose, self.checker.is_granted(customer, purpose).await);
            }
        }
        let facts = if personalization {
            Some(self.facts(customer, &rules).await)
        } else {
            None
        };
        Ok(OfferInputs {
            rules,
            marketing,
            facts,
        })
    }

    /// Issues the offers `inputs` allow in `txn`, within the weekly cap, one
    /// live offer per rule and the campaign budgets.
    pub(crate) async fn issue_offers(
        &self,
        txn: &DatabaseTransaction,
        customer: &str,
        inputs: &OfferInputs,
    ) -> Result<Generated, ApiError> {
        let OfferInputs {
            rules,
            marketing,
            facts,
        } = inputs;
        let per_week = i64::from(self.settings.offers_per_week);
        let now = self.clock.now();
        let mut done = Generated::default();
        let mut this_week = number(
            txn,
            "SELECT CAST(COUNT(*) AS BIGINT) AS n FROM loyalty_offers WHERE customer_id = ? AND issue_time > ?",
            vec![customer.into(), to_micros(now - Duration::days(7)).into()],
        )
        .await?;
        for rule in rules {
            let skip = |reason, detail: &str| (rule.rule_id.clone(), reason, detail.to_owned());
            let Some(facts) = &facts else {
                done.skipped
                    .push(skip(Skip::NoConsent, "personalization is not granted"));
                continue;
            };
            if let Some(purpose) = rule.channel.purpose()
                && marketing.get(purpose) != Some(&true)
            {
                done.skipped
                    .push(skip(Skip::NoConsent, &format!("{purpose} is not granted")));
                continue;
            }
            let live = number(
                txn,
                "SELECT CAST(COUNT(*) AS BIGINT) AS n FROM loyalty_offers WHERE customer_id = ? AND rule_id = ? \
                 AND state IN ('issued', 'seen') AND end_time > ?",
                vec![customer.into(), rule.rule_id.clone().into(), to_micros(now).into()],
            )
            .await?;
            if live > 0 {
                done.skipped.push(skip(
                    Skip::AlreadyOffered,
                    "a live offer of this rule exists",
                ));
                continue;
            }
            let decided = match eligible(rule, facts, now) {
                Err(detail) => {
                    done.skipped.push(skip(Skip::SourceUnavailable, detail));
                    continue;
                }
                Ok(None) => {
                    done.skipped.push(skip(
                        Skip::NotEligible,
                        "the customer does not meet the rule",
                    ));
                    continue;
                }
                Ok(Some(decided)) => decided,
            };
            if this_week >= per_week {
                done.skipped.push(skip(
                    Skip::CustomerCap,
                    "the customer's weekly offers are used",
                ));
                continue;
            }
            let taken = exec(
                txn,
                "UPDATE loyalty_offer_rules SET issued_count = issued_count + 1 WHERE rule_id = ? AND (? = 0 OR issued_count < ?)",
                vec![rule.rule_id.clone().into(), rule.campaign_budget.into(), rule.campaign_budget.into()],
            )
            .await?
            .rows_affected();
            if taken == 0 {
                done.skipped
                    .push(skip(Skip::BudgetSpent, "the campaign's budget is spent"));
                continue;
            }
            let (reason, categories, items) = decided;
            let offer = Offer {
                offer_id: uuid::Uuid::new_v4().to_string(),
                customer_id: customer.to_owned(),
                rule_id: rule.rule_id.clone(),
                kind: rule.kind,
                state: OfferState::Issued,
                title: rule.title.clone(),
                reason,
                data_categories: categories
                    .into_iter()
                    .map(|c| c.as_str().to_owned())
                    .collect(),
                discount_bp: rule.discount_bp,
                item_ids: items,
                channel: rule.channel,
                campaign_id: rule.campaign_id.clone(),
                start: now,
                end: now + rule.validity,
            };
            store_offer(txn, &offer, now).await?;
            this_week += 1;
            done.issued.push(offer);
        }
        Ok(done)
    }

    /// A page of a customer's offers, newest first, before `(issue time, id)`.
    pub async fn offers(
        &self,
        customer: &str,
        before: Option<(i64, String)>,
        limit: u32,
    ) -> Result<Vec<(i64, Offer)>, ApiError> {
        #[derive(Debug, FromQueryResult)]
        struct Row {
            issue_time: i64,
            body: String,
        }
        let (at, id) = before.unwrap_or((i64::MAX, String::new()));
        let rows: Vec<Row> = all(
            &self.db,
            "SELECT issue_time, body FROM loyalty_offers WHERE customer_id = ? AND \
             (issue_time < ? OR (issue_time = ? AND offer_id < ?)) ORDER BY issue_time DESC, offer_id DESC LIMIT ?",
            vec![customer.into(), at.into(), at.into(), id.into(), i64::from(limit).into()],
        )
        .await?;
        let now = self.clock.now();
        Ok(rows
            .into_iter()
            .map(|r| Ok((r.issue_time, offer_of(&r.body, now)?)))
            .collect::<Result<_, DbErr>>()?)
    }

    /// Moves an offer to SEEN or REDEEMED.
    pub async fn update_offer_state(
        &self,
        customer: &str,
        offer_id: &str,
        to: OfferState,
        request_id: &str,
    ) -> Result<Offer, ApiError> {
        let content = json!({ "customer_id": customer, "offer_id": offer_id, "state": to });
        self.idempotent_about(
            customer,
            "update_offer_state",
            request_id,
            &content,
            async |txn| {
                let now = self.clock.now();
                let row: Body = one(
                    txn,
                    "SELECT body FROM loyalty_offers WHERE offer_id = ? AND customer_id = ?",
                    vec![offer_id.into(), customer.into()],
                )
                .await?
                .ok_or_else(|| ApiError::NotFound("no such offer for this customer".into()))?;
                let mut offer = offer_of(&row.body, now)?;
                match (offer.state, to) {
                    (OfferState::Expired, _) => {
                        return Err(ApiError::FailedPrecondition("the offer has expired".into()));
                    }
                    (OfferState::Redeemed, _) => {
                        return Err(ApiError::FailedPrecondition(
                            "the offer was redeemed".into(),
                        ));
                    }
                    (OfferState::Seen, OfferState::Seen) => return Ok(offer),
                    _ => offer.state = to,
                }
                store_offer(txn, &offer, now).await?;
                Ok(offer)
            },
        )
        .await
    }
}

async fn store_offer(
    txn: &DatabaseTransaction,
    offer: &Offer,
    now: DateTime<Utc>,
) -> Result<(), DbErr> {
    let body = serde_json::to_string(offer).map_err(|_| corrupt("offer"))?;
    exec(
        txn,
        "INSERT INTO loyalty_offers (offer_id, customer_id, rule_id, state, channel, body, issue_time, end_time) \
         VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (offer_id) DO UPDATE SET state = excluded.state, body = excluded.body",
        vec![
            offer.offer_id.clone().into(),
            offer.customer_id.clone().into(),
            offer.rule_id.clone().into(),
            offer.state.stored().into(),
            offer.channel.as_str().into(),
            body.into(),
            to_micros(now).into(),
            to_micros(offer.end).into(),
        ],
    )
    .await?;
    Ok(())
}

type Decided = (String, Vec<DataCategory>, Vec<String>);

/// Whether `rule` applies to the customer `facts` describe: the reason, the data
/// categories used and the items, `None` when not eligible, an error when a
/// source the rule needs did not answer.
fn eligible(
    rule: &OfferRule,
    facts: &Facts,
    now: DateTime<Utc>,
) -> Result<Option<Decided>, &'static str> {
    let traits = || {
        facts
            .traits
            .as_ref()
            .ok_or("profile's traits are unavailable")
    };
    let zero_party = || {
        facts
            .zero_party
            .as_ref()
            .ok_or("profile's zero-party data is unavailable")
    };
    Ok(match rule.kind {
        OfferKind::WinBack => {
            let t = traits()?;
            t.days_since_last_purchase
                .filter(|days| *days >= rule.inactive_days)
                .map(|days| {
                    (
                        format!("We miss you: no order in {days} days"),
                        vec![DataCategory::Purchases],
                        vec![],
                    )
                })
        }
        OfferKind::CartAbandon => {
            let t = traits()?;
            t.open_cart
                .as_ref()
                .filter(|cart| !cart.items.is_empty() && cart.age_hours >= rule.cart_idle_hours)
                .map(|cart| {
                    let items = cart.items.iter().map(|i| i.item_id.clone()).collect();
                    (
                        "Your cart is waiting".to_owned(),
                        vec![DataCategory::Browsing],
                        items,
                    )
                })
        }
        OfferKind::ZeroPartyThanks => {
            let z = zero_party()?;
            let since = now - Duration::days(i64::from(rule.recent_days));
            z.provenance
                .values()
                .filter_map(|p| {
                    p.first_provide_time
                        .and_then(|t| attune_kit::types::time::from_proto(t).ok())
                })
                .any(|t| t > since)
                .then(|| {
                    (
                        "Thank you for telling us your preferences".to_owned(),
                        vec![DataCategory::Preferences],
                        vec![],
                    )
                })
        }
        OfferKind::StoreEvent => {
            let t = traits()?;
            let z = zero_party()?;
            let orders = t
                .windows
                .iter()
                .max_by_key(|w| w.days)
                .map_or(0, |w| w.order_count);
            let near =
                z.preferred_store_id == rule.store_id || t.usual_pickup_point_id == rule.store_id;
            (near && orders >= rule.min_orders).then(|| {
                (
                    "An invitation to an event in your store".to_owned(),
                    vec![DataCategory::Location, DataCategory::Purchases],
                    vec![],
                )
            })
        }
        OfferKind::Replenishment => {
            let items = facts
                .buy_again
                .as_ref()
                .ok_or("recommendation's buy-again answers are unavailable")?;
            let due = due_items(items, now, rule.due_within);
            (!due.is_empty()).then(|| {
                (
                    "Running low? Time to stock up".to_owned(),
                    vec![DataCategory::Purchases],
                    due.into_iter().take(5).collect(),
                )
            })
        }
    })
}
