//! Earning from profile's feed: purchases earn by the rule in force for their
//! currency (pending while the rule's return window is open), returns take
//! their lines' points back, and each zero-party field a customer volunteers
//! earns its bonus once. The kit's follower applies each batch in one
//! transaction with its cursor, and every entry is keyed by its order (or
//! customer and field), so each purchase earns exactly once even when the
//! follower dies mid-batch or profile stores the order twice. A merge moves
//! the visitor's account to the customer (`ledger::merge_into`).

use std::future::Future;

use attune_kit::db::micros::to_micros;
use attune_kit::follower::{Apply, ApplyError};
use attune_kit::types::time;
use attune_proto::profile::v1 as pb;
use chrono::{DateTime, Utc};
use sea_orm::{ConnectionTrait, DatabaseConnection, DatabaseTransaction, DbErr, FromQueryResult};

use crate::app::Loyalty;
use crate::domain::earning::{Line, LinePoints, purchase_points, return_points};
use crate::domain::entry::EntryKind;
use crate::ledger::{self, NewEntry};
use crate::rules::{self, Earning};
use crate::store::{WRITE_LOCK, exec, number, one};

/// The follower's name in `feed_cursors`.
pub const FOLLOWER: &str = "loyalty:profile";

/// The event kinds loyalty reads (zero-party changes always come).
pub const KINDS: [pb::EventKind; 2] = [pb::EventKind::Purchase, pb::EventKind::Return];

/// Purchase points `customer` earned under `rule_id` since `since`, for the
/// rule's cap per period.
pub async fn points_in_period(
    db: &impl ConnectionTrait,
    customer: &str,
    rule_id: &str,
    since: DateTime<Utc>,
) -> Result<i64, DbErr> {
    number(
        db,
        "SELECT CAST(COALESCE(SUM(qualifying), 0) AS BIGINT) AS n FROM loyalty_entries \
         WHERE customer_id = ? AND rule_id = ? AND create_time > ?",
        vec![customer.into(), rule_id.into(), to_micros(since).into()],
    )
    .await
}

/// Applies profile's feed to the ledger.
pub struct EarnFromFeed {
    loyalty: Loyalty,
}

impl EarnFromFeed {
    pub fn new(loyalty: Loyalty) -> Self {
        Self { loyalty }
    }
}

impl Apply<pb::FeedEntry> for EarnFromFeed {
    fn begin(
        &self,
        db: &DatabaseConnection,
    ) -> impl Future<Output = Result<DatabaseTransaction, DbErr>> + Send {
        attune_kit::db::begin_write(db, WRITE_LOCK)
    }

    async fn apply(
        &self,
        txn: &DatabaseTransaction,
        items: &[pb::FeedEntry],
    ) -> Result<(), ApplyError> {
        use pb::feed_entry::Change;
        for item in items {
            match &item.change {
                Some(Change::Event(event)) => match pb::EventKind::try_from(event.kind) {
                    Ok(pb::EventKind::Purchase) => self.purchase(txn, event).await?,
                    Ok(pb::EventKind::Return) => self.returned(txn, event).await?,
                    _ => {}
                },
                Some(Change::ZeroPartyDataChange(change)) => self.zero_party(txn, change).await?,
                // A visitor who signed in: their points go with them.
                Some(Change::Merge(merge)) => {
                    ledger::merge_into(
                        txn,
                        &merge.source_customer_id,
                        &merge.target_customer_id,
                        self.loyalty.clock.now(),
                        self.loyalty.points_lifetime(),
                    )
                    .await?;
                }
                // Erasure reaches loyalty through its DataSubjectService.
                Some(Change::Erasure(_) | Change::SegmentMembershipChange(_)) | None => {}
            }
        }
        Ok(())
    }
}

fn customer_of(event: &pb::Event) -> &str {
    if event.resolved_customer_id.is_empty() {
        &event.customer_id
    } else {
        &event.resolved_customer_id
    }
}

#[derive(Debug, FromQueryResult)]
struct Order {
    entry_id: i64,
    lines: String,
}

impl EarnFromFeed {
    async fn purchase(
        &self,
        txn: &DatabaseTransaction,
        event: &pb::Event,
    ) -> Result<(), ApplyError> {
        let customer = customer_of(event);
        let Some(amount) = &event.amount else {
            return Ok(());
        };
        if customer.is_empty() || event.order_id.is_empty() {
            return Ok(());
        }
        let Some((rule, purchase)) = rules::purchase_rule(txn, &amount.currency_code).await? else {
            return Ok(());
        };
        let known = number(
            txn,
            "SELECT CAST(COUNT(*) AS BIGINT) AS n FROM loyalty_orders WHERE customer_id = ? AND order_id = ?",
            vec![customer.into(), event.order_id.clone().into()],
        )
        .await?;
        if known > 0 {
            return Ok(());
        }
        let now = self.loyalty.clock.now();
        let lifetime = self.loyalty.points_lifetime();
        let at = event
            .occur_time
            .map(time::from_proto)
            .transpose()
            .map_err(|e| DbErr::Custom(format!("feed event time: {e}")))?
            .unwrap_or(now);
        ledger::open(txn, customer, now).await?;
        ledger::settle(txn, Some(customer), now, lifetime).await?;
        let lines: Vec<Line> = event
            .items
            .iter()
            .map(|item| {
                let quantity = i64::from(item.quantity.max(1));
                Line {
                    item_id: item.item_id.clone(),
                    quantity,
                    amount_minor: item
                        .unit_price
                        .as_ref()
                        .map_or(0, |p| p.amount_minor)
                        .saturating_mul(quantity),
                    category_path: item.category_path.clone(),
                }
            })
            .collect();
        let tier = ledger::tier_multiplier(txn, customer).await?;
        let period =
            points_in_period(txn, customer, &rule.rule_id, at - purchase.cap_period).await?;
        let earned = purchase_points(&purchase, &lines, amount.amount_minor, at, tier, period);
        let key = format!("purchase/{customer}/{}", event.order_id);
        let pending = !purchase.return_window.is_zero();
        let mut entry = if pending {
            let mut entry = NewEntry::new(EntryKind::Pending, 0, key);
            entry.pending_points = earned.points;
            entry.release_time = Some(at + purchase.return_window);
            entry
        } else {
            NewEntry::new(EntryKind::Earn, earned.points, key)
        };
        entry.rule_id = rule.rule_id.clone();
        entry.rule_version = rule.version;
        entry.order_id = event.order_id.clone();
        entry.description = "Purchase".into();
        entry.qualifying = earned.points;
        entry.spend_minor = amount.amount_minor;
        entry.spend_currency = amount.currency_code.clone();
        let booked = if pending {
            let booked = ledger::book(txn, customer, entry, now, lifetime).await?;
            ledger::review_tier(txn, customer, now).await?;
            booked
        } else {
            ledger::credit(txn, customer, entry, now, lifetime).await?
        };
        let Some(booked) = booked else { return Ok(()) };
        let lines = serde_json::to_string(&earned.lines)?;
        exec(
            txn,
            "INSERT INTO loyalty_orders (customer_id, order_id, entry_id, lines) VALUES (?, ?, ?, ?)",
            vec![customer.into(), event.order_id.clone().into(), booked.entry_id.into(), lines.into()],
        )
        .await?;
        Ok(())
    }

    async fn returned(
        &self,
        txn: &DatabaseTransaction,
        event: &pb::Event,
    ) -> Result<(), ApplyError> {
        let customer = customer_of(event);
        let Some(order) = one::<Order>(
            txn,
            "SELECT entry_id, lines FROM loyalty_orders WHERE customer_id = ? AND order_id = ?",
            vec![customer.into(), event.order_id.clone().into()],
        )
        .await?
        else {
            return Ok(());
        };
        let now = self.loyalty.clock.now();
        let lifetime = self.loyalty.points_lifetime();
        let key = format!("return/{customer}/{}/{}", event.order_id, event.event_id);
        let done = number(
            txn,
            "SELECT CAST(COUNT(*) AS BIGINT) AS n FROM loyalty_entries WHERE idempotency_key LIKE ?",
            vec![format!("{key}/%").into()],
        )
        .await?;
        if done > 0 {
            return Ok(());
        }
        ledger::settle(txn, Some(customer), now, lifetime).await?;
        let mut lines: Vec<LinePoints> = serde_json::from_str(&order.lines)?;
        let returned: Vec<(String, i64)> = event
            .items
            .iter()
            .map(|item| (item.item_id.clone(), i64::from(item.quantity.max(1))))
            .collect();
        let points = return_points(&mut lines, &returned);
        let mut template = NewEntry::new(EntryKind::Reversal, 0, key);
        template.order_id = event.order_id.clone();
        template.description = "Return".into();
        template.qualifying = -points;
        if let Some(amount) = &event.amount {
            template.spend_minor = -amount.amount_minor;
            template.spend_currency = amount.currency_code.clone();
        }
        ledger::take_back(
            txn,
            customer,
            order.entry_id,
            points,
            template,
            now,
            lifetime,
        )
        .await?;
        exec(
            txn,
            "UPDATE loyalty_orders SET lines = ? WHERE customer_id = ? AND order_id = ?",
            vec![
                serde_json::to_string(&lines)?.into(),
                customer.into(),
                event.order_id.clone().into(),
            ],
        )
        .await?;
        Ok(())
    }

    async fn zero_party(
        &self,
        txn: &DatabaseTransaction,
        change: &pb::ZeroPartyDataChange,
    ) -> Result<(), ApplyError> {
        if change.provided_fields.is_empty() || change.customer_id.is_empty() {
            return Ok(());
        }
        let customer = change.customer_id.as_str();
        let now = self.loyalty.clock.now();
        let lifetime = self.loyalty.points_lifetime();
        for rule in rules::earn_rules(txn).await? {
            let Earning::ZeroParty(bonuses) = &rule.earning else {
                continue;
            };
            if !rule.active {
                continue;
            }
            for (field, points) in bonuses {
                if !change.provided_fields.contains(field) {
                    continue;
                }
                ledger::open(txn, customer, now).await?;
                let mut entry = NewEntry::new(
                    EntryKind::Earn,
                    *points,
                    format!("zero_party/{customer}/{field}"),
                );
                entry.rule_id = rule.rule_id.clone();
                entry.rule_version = rule.version;
                entry.description = format!("Thank you for sharing your {field}");
                ledger::credit(txn, customer, entry, now, lifetime).await?;
            }
        }
        Ok(())
    }
}
