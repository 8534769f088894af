//! The follower of profile's feed (`recommendation:profile`): each batch's
//! events become interactions and fold into session state, merges move a
//! visitor's interactions and session to the customer, all in the batch's
//! transaction with the cursor; the sessions in memory are replaced after.

use std::collections::HashMap;

use attune_kit::follower::{Apply, ApplyError};
use attune_proto::profile::v1 as pb;
use sea_orm::{ConnectionTrait, DatabaseConnection, DatabaseTransaction, DbErr};

use crate::app::Recommendation;
use crate::domain::{Interaction, Session, SessionChange, Signal};
use crate::replicas;
use crate::store;

/// The follower's name in `feed_cursors`.
pub const FOLLOWER: &str = "recommendation:profile";

/// The event kinds recommendation learns from (merges and erasures always come).
pub const KINDS: [pb::EventKind; 7] = [
    pb::EventKind::View,
    pb::EventKind::Search,
    pb::EventKind::AddToCart,
    pb::EventKind::RemoveFromCart,
    pb::EventKind::Purchase,
    pb::EventKind::Return,
    pb::EventKind::RecommendationClick,
];

/// Applies profile's feed to recommendation's tables and sessions.
pub struct Learn {
    app: Recommendation,
}

impl Learn {
    pub fn new(app: Recommendation) -> Self {
        Self { app }
    }
}

/// The sessions a batch changed, read once and written once per customer.
struct Touched<'a, C> {
    db: &'a C,
    sessions: HashMap<String, Session>,
}

impl<C: ConnectionTrait> Touched<'_, C> {
    async fn session(&mut self, customer_id: &str) -> Result<&mut Session, DbErr> {
        if !self.sessions.contains_key(customer_id) {
            let stored = store::sessions::get(self.db, customer_id)
                .await?
                .unwrap_or_default();
            self.sessions.insert(customer_id.to_owned(), stored);
        }
        Ok(self
            .sessions
            .get_mut(customer_id)
            .expect("the session was just inserted"))
    }
}

fn micros(time: Option<prost_types::Timestamp>) -> i64 {
    time.and_then(|t| attune_kit::types::time::from_proto(t).ok())
        .map_or(0, |t| t.timestamp_micros())
}

/// The interactions and session changes of one event.
fn learn(event: &pb::Event) -> (Vec<Interaction>, Vec<SessionChange>) {
    let customer_id = event.resolved_customer_id.clone();
    let at = micros(event.occur_time);
    let kind = pb::EventKind::try_from(event.kind).unwrap_or(pb::EventKind::Unspecified);
    let signal = match kind {
        pb::EventKind::View => Signal::View,
        pb::EventKind::AddToCart => Signal::CartAdd,
        pb::EventKind::RemoveFromCart => Signal::CartRemove,
        pb::EventKind::Purchase => Signal::Purchase,
        pb::EventKind::RecommendationClick => Signal::RecommendationClick,
        pb::EventKind::Search => {
            let change = SessionChange::Search {
                query: event.search_query.clone(),
                at,
            };
            return (Vec::new(), vec![change]);
        }
        _ => return (Vec::new(), Vec::new()),
    };
    let mut interactions = Vec::with_capacity(event.items.len());
    let mut changes = Vec::with_capacity(event.items.len() + 1);
    for item in &event.items {
        let quantity = u32::try_from(item.quantity.max(1)).unwrap_or(1);
        let (revenue_minor, currency_code) = match (&item.unit_price, signal) {
            (Some(price), Signal::Purchase) => (
                price.amount_minor.saturating_mul(i64::from(quantity)),
                price.currency_code.clone(),
            ),
            _ => (0, String::new()),
        };
        interactions.push(Interaction {
            customer_id: customer_id.clone(),
            item_id: item.item_id.clone(),
            signal,
            occur_time: at,
            order_id: (signal == Signal::Purchase).then(|| event.order_id.clone()),
            quantity,
            revenue_minor,
            currency_code,
            recommendation_id: (signal == Signal::RecommendationClick)
                .then(|| event.recommendation_id.clone()),
        });
        changes.push(SessionChange::Item {
            signal,
            item_id: item.item_id.clone(),
            quantity,
            at,
        });
    }
    if signal == Signal::Purchase {
        changes.push(SessionChange::OrderPlaced { at });
    }
    (interactions, changes)
}

impl Apply<pb::FeedEntry> for Learn {
    fn begin(
        &self,
        db: &DatabaseConnection,
    ) -> impl Future<Output = Result<DatabaseTransaction, DbErr>> + Send {
        // Erasures hold the write lock too: a batch never writes a customer's
        // rows back between an erasure's delete and its commit.
        attune_kit::db::begin_write(db, store::WRITE_LOCK)
    }

    async fn apply(
        &self,
        txn: &DatabaseTransaction,
        items: &[pb::FeedEntry],
    ) -> Result<(), ApplyError> {
        use pb::feed_entry::Change;
        let now = self.app.clock.now().timestamp_micros();
        let mut touched = Touched {
            db: txn,
            sessions: HashMap::new(),
        };
        let mut forgotten = Vec::new();
        let mut pending: Vec<Interaction> = Vec::new();
        for entry in items {
            match &entry.change {
                Some(Change::Event(event)) if !event.resolved_customer_id.is_empty() => {
                    let kind =
                        pb::EventKind::try_from(event.kind).unwrap_or(pb::EventKind::Unspecified);
                    if kind == pb::EventKind::Return {
                        // Rows of the batch not yet written are flushed first,
                        // so a purchase and its return in one batch cancel.
                        store::interactions::insert(txn, &pending).await?;
                        pending.clear();
                        for item in &event.items {
                            store::interactions::cancel_purchase(
                                txn,
                                &event.resolved_customer_id,
                                &event.order_id,
                                &item.item_id,
                            )
                            .await?;
                        }
                        continue;
                    }
                    let (interactions, changes) = learn(event);
                    pending.extend(interactions);
                    if !changes.is_empty() {
                        let session = touched.session(&event.resolved_customer_id).await?;
                        for change in &changes {
                            session.apply(change);
                        }
                    }
                }
                Some(Change::Merge(merge)) => {
                    store::interactions::insert(txn, &pending).await?;
                    pending.clear();
                    store::interactions::reassign(
                        txn,
                        &merge.source_customer_id,
                        &merge.target_customer_id,
                    )
                    .await?;
                    let source = std::mem::take(touched.session(&merge.source_customer_id).await?);
                    touched
                        .session(&merge.target_customer_id)
                        .await?
                        .absorb(source);
                    touched.sessions.remove(&merge.source_customer_id);
                    store::sessions::delete(txn, &merge.source_customer_id).await?;
                    forgotten.push(merge.source_customer_id.clone());
                }
                _ => {}
            }
        }
        store::interactions::insert(txn, &pending).await?;
        for (customer_id, session) in &touched.sessions {
            store::sessions::put(txn, customer_id, session, now).await?;
        }
        let changed = touched
            .sessions
            .keys()
            .chain(&forgotten)
            .map(|customer_id| self.app.names.of(customer_id));
        self.app
            .changes
            .record(txn, replicas::SESSION, changed, self.app.clock.now())
            .await?;
        // Memory runs ahead of the commit by an instant; a failed commit
        // re-applies the batch from the stored sessions and corrects it.
        for customer_id in forgotten {
            self.app.sessions.forget(&customer_id);
        }
        for (customer_id, session) in touched.sessions {
            self.app.sessions.set(&customer_id, session);
        }
        Ok(())
    }
}
