//! The operations on points: open, redeem, adjust (alone and in bulk), the
//! scheduled work, rules, tiers and Simulate. Each write is one transaction
//! under loyalty's write lock, idempotent by its request id.

use attune_kit::ApiError;
use attune_kit::idempotency::Request;

use chrono::{DateTime, Utc};
use sea_orm::{DatabaseTransaction, TransactionTrait};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::app::Loyalty;
use crate::domain::earning::{Line, purchase_points};
use crate::domain::entry::{EntryKind, ReasonCode};
use crate::domain::tiers::Ladder;
use crate::ledger::{self, AccountView, Entry, NewEntry, Settled};
use crate::rules::{self, EarnRule};
use crate::store::REQUESTS;

/// An entry with the account after it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Booked {
    pub entry: Entry,
    pub account: AccountView,
}

/// A correction to book.
#[derive(Debug, Clone, Serialize)]
pub struct Adjustment {
    pub customer_id: String,
    pub points: i64,
    pub reason: ReasonCode,
    pub description: String,
    #[serde(skip)]
    pub request_id: String,
}

/// The outcome of one correction of a batch.
#[derive(Debug)]
pub enum AdjustOutcome {
    Booked(Entry),
    Refused(ApiError),
}

fn not_found() -> ApiError {
    ApiError::NotFound("the customer has no loyalty account".into())
}

impl Loyalty {
    /// Opens an account, or answers the open one.
    pub async fn open_account(
        &self,
        customer: &str,
        request_id: &str,
    ) -> Result<AccountView, ApiError> {
        let lifetime = self.points_lifetime();
        self.idempotent_about(
            customer,
            "open_account",
            request_id,
            &json!({ "customer_id": customer }),
            async |txn| {
                let now = self.clock.now();
                ledger::open(txn, customer, now).await?;
                ledger::settle(txn, Some(customer), now, lifetime).await?;
                ledger::require_view(txn, customer, now).await
            },
        )
        .await
    }

    /// The account now.
    pub async fn account(&self, customer: &str) -> Result<AccountView, ApiError> {
        ledger::require_view(&self.db, customer, self.clock.now()).await
    }

    /// A page of the statement.
    pub async fn statement(
        &self,
        customer: &str,
        before: Option<i64>,
        limit: u32,
    ) -> Result<Vec<Entry>, ApiError> {
        if !ledger::exists(&self.db, customer).await? {
            return Err(not_found());
        }
        Ok(ledger::statement(&self.db, customer, before, limit + 1).await?)
    }

    /// A page of the upcoming expiries after `after` (an expire time).
    pub async fn upcoming_expiries(
        &self,
        customer: &str,
        after: Option<i64>,
        limit: u32,
    ) -> Result<Vec<(DateTime<Utc>, i64)>, ApiError> {
        if !ledger::exists(&self.db, customer).await? {
            return Err(not_found());
        }
        Ok(ledger::upcoming_expiries(&self.db, customer, after, limit + 1).await?)
    }

    /// Spends points.
    pub async fn redeem(
        &self,
        customer: &str,
        points: i64,
        order_id: &str,
        description: &str,
        request_id: &str,
    ) -> Result<Booked, ApiError> {
        let content = json!({ "customer_id": customer, "points": points, "order_id": order_id, "description": description });
        let lifetime = self.points_lifetime();
        self.idempotent_about(
            customer,
            "redeem_points",
            request_id,
            &content,
            async |txn| {
                let now = self.clock.now();
                if !ledger::exists(txn, customer).await? {
                    return Err(not_found());
                }
                ledger::settle(txn, Some(customer), now, lifetime).await?;
                let mut entry = NewEntry::new(
                    EntryKind::Redeem,
                    -points,
                    format!("redeem_points/{request_id}"),
                );
                entry.order_id = order_id.to_owned();
                entry.description = description.to_owned();
                let entry = ledger::debit(txn, customer, entry, now, lifetime).await?;
                let account = ledger::require_view(txn, customer, now).await?;
                Ok(Booked { entry, account })
            },
        )
        .await
    }

    /// Books one correction in `txn` at `now`. `settled` says whether the
    /// customer's account is known open and settled at `now` in this transaction already
    /// (a batch settles each customer once: settling again at the same `now`
    /// finds nothing due, and each statement is a round trip that a loaded
    /// PostgreSQL makes slow). `ladder` is the tier ladder read in `txn`.
    async fn adjust_in(
        &self,
        txn: &DatabaseTransaction,
        adjustment: &Adjustment,
        now: DateTime<Utc>,
        settled: bool,
        ladder: Option<&Ladder>,
    ) -> Result<Entry, ApiError> {
        let lifetime = self.points_lifetime();
        let customer = adjustment.customer_id.as_str();
        let mut entry = NewEntry::new(
            EntryKind::Adjust,
            adjustment.points,
            format!("adjust/{}", adjustment.request_id),
        );
        entry.reason = Some(adjustment.reason);
        entry.description = adjustment.description.clone();
        if adjustment.points > 0 {
            if !settled {
                ledger::open(txn, customer, now).await?;
                ledger::settle(txn, Some(customer), now, lifetime).await?;
            }
            ledger::credit_under(txn, customer, entry, now, lifetime, ladder)
                .await?
                .ok_or_else(|| {
                    ApiError::internal(sea_orm::DbErr::Custom("adjustment booked twice".into()))
                })
        } else {
            if !settled {
                if !ledger::exists(txn, customer).await? {
                    return Err(not_found());
                }
                ledger::settle(txn, Some(customer), now, lifetime).await?;
            }
            Ok(ledger::debit(txn, customer, entry, now, lifetime).await?)
        }
    }

    /// Books a correction.
    pub async fn adjust(&self, adjustment: Adjustment) -> Result<Booked, ApiError> {
        self.idempotent_about(
            &adjustment.customer_id.clone(),
            "adjust_points",
            &adjustment.request_id.clone(),
            &adjustment,
            async |txn| {
                let now = self.clock.now();
                // Only a credit reviews the tier.
                let ladder = match adjustment.points > 0 {
                    true => rules::ladder(txn).await?,
                    false => None,
                };
                let entry = self
                    .adjust_in(txn, &adjustment, now, false, ladder.as_ref())
                    .await?;
                let account = ledger::require_view(txn, &adjustment.customer_id, now).await?;
                Ok(Booked { entry, account })
            },
        )
        .await
    }

    /// Books many corrections in one transaction; each is the same request as
    /// an AdjustPoints with its request id. A debit, which may be refused after
    /// it claimed its request id, runs in a savepoint of its own so that its
    /// refusal undoes only itself. A credit is never refused once its work
    /// begins (any failure there fails the whole batch), so it needs no
    /// savepoint: two statements fewer per entry, which on SQLite are two
    /// thread handoffs and on PostgreSQL two round trips.
    pub async fn bulk_adjust(
        &self,
        adjustments: Vec<Adjustment>,
    ) -> Result<Vec<AdjustOutcome>, ApiError> {
        let txn = self.begin_write().await?;
        let now = self.clock.now();
        // Read once: the batch holds the write lock, so no one changes it meanwhile.
        let ladder = rules::ladder(&txn).await?;
        let mut outcomes = Vec::with_capacity(adjustments.len());
        // Customers whose account a committed entry of this batch opened (or
        // found open) and settled; every entry of the batch books at `now`.
        let mut settled = std::collections::HashSet::new();
        for adjustment in adjustments {
            let known = settled.contains(&adjustment.customer_id);
            let fingerprint = self.key.fingerprint(&adjustment);
            let subject = self.subject(&adjustment.customer_id);
            let savepoint = match adjustment.points < 0 {
                true => Some(txn.begin().await?),
                false => None,
            };
            let conn = savepoint.as_ref().unwrap_or(&txn);
            // Whether the work ran (the request id was new): a credit's error
            // after that may have left writes behind.
            let worked = std::sync::atomic::AtomicBool::new(false);
            let result = REQUESTS
                .idempotent_about(
                    conn,
                    Request {
                        operation: "adjust_points",
                        request_id: &adjustment.request_id,
                        fingerprint: &fingerprint,
                    },
                    &subject,
                    now,
                    async |sp| -> Result<Booked, ApiError> {
                        worked.store(true, std::sync::atomic::Ordering::Relaxed);
                        let entry = self
                            .adjust_in(sp, &adjustment, now, known, ladder.as_ref())
                            .await?;
                        let account =
                            ledger::require_view(sp, &adjustment.customer_id, now).await?;
                        Ok(Booked { entry, account })
                    },
                )
                .await;
            match result {
                Ok(outcome) => {
                    if let Some(savepoint) = savepoint {
                        savepoint.commit().await?;
                    }
                    if outcome.is_fresh() {
                        settled.insert(adjustment.customer_id.clone());
                    }
                    outcomes.push(AdjustOutcome::Booked(outcome.into_inner().entry));
                }
                Err(error) => {
                    // A database failure, or a credit that failed part way,
                    // fails the whole batch (nothing of it commits). Otherwise
                    // dropping the savepoint rolls the refused debit back; a
                    // request refused before its work wrote nothing.
                    let partial =
                        savepoint.is_none() && worked.load(std::sync::atomic::Ordering::Relaxed);
                    drop(savepoint);
                    if partial || matches!(error, ApiError::Internal(_) | ApiError::Unavailable(_))
                    {
                        return Err(error);
                    }
                    outcomes.push(AdjustOutcome::Refused(error));
                }
            }
        }
        txn.commit().await?;
        Ok(outcomes)
    }

    /// The scheduled work, for everyone.
    pub async fn run_scheduled(&self, request_id: Option<&str>) -> Result<Settled, ApiError> {
        let lifetime = self.points_lifetime();
        let work = async |txn: &DatabaseTransaction| -> Result<Settled, ApiError> {
            Ok(ledger::settle(txn, None, self.clock.now(), lifetime).await?)
        };
        match request_id {
            Some(id) => {
                self.idempotent("run_scheduled_work", id, &json!({}), work)
                    .await
            }
            None => {
                let txn = self.begin_write().await?;
                let done = work(&txn).await?;
                txn.commit().await?;
                Ok(done)
            }
        }
    }

    /// Stores a new version of an earn rule; at most one active purchase rule per
    /// currency.
    pub async fn put_earn_rule(
        &self,
        rule: EarnRule,
        request_id: &str,
    ) -> Result<EarnRule, ApiError> {
        self.idempotent("put_earn_rule", request_id, &rule, async |txn| {
            if let (true, rules::Earning::Purchase(p)) = (rule.active, &rule.earning)
                && let Some((other, _)) = rules::purchase_rule(txn, &p.currency).await?
                && other.rule_id != rule.rule_id
            {
                return Err(ApiError::FailedPrecondition(format!(
                    "rule {} already earns on {} purchases",
                    other.rule_id, p.currency
                )));
            }
            Ok(rules::put_earn_rule(txn, rule.clone(), self.clock.now()).await?)
        })
        .await
    }

    /// The earn rules in force.
    pub async fn earn_rules(&self) -> Result<Vec<EarnRule>, ApiError> {
        Ok(rules::earn_rules(&self.db).await?)
    }

    /// Replaces the tier ladder and reviews nobody: accounts move up on their
    /// next credit and down only at their period's end.
    pub async fn put_tiers(&self, ladder: Ladder, request_id: &str) -> Result<Ladder, ApiError> {
        self.idempotent("put_tiers", request_id, &ladder, async |txn| {
            rules::put_ladder(txn, &ladder, self.clock.now()).await?;
            Ok(ladder.clone())
        })
        .await
    }

    /// The tier ladder, if any.
    pub async fn ladder(&self) -> Result<Option<Ladder>, ApiError> {
        Ok(rules::ladder(&self.db).await?)
    }

    /// What a cart would earn now, and the rewards it would bring within reach.
    pub async fn simulate(
        &self,
        customer: &str,
        lines: &[Line],
        currency: &str,
    ) -> Result<Simulated, ApiError> {
        let now = self.clock.now();
        let Some((rule, purchase)) = rules::purchase_rule(&self.db, currency).await? else {
            return Ok(Simulated::default());
        };
        let tier = ledger::tier_multiplier(&self.db, customer).await?;
        let period = crate::earn::points_in_period(
            &self.db,
            customer,
            &rule.rule_id,
            now - purchase.cap_period,
        )
        .await?;
        let total: i64 = lines
            .iter()
            .fold(0i64, |sum, l| sum.saturating_add(l.amount_minor));
        let earned = purchase_points(&purchase, lines, total, now, tier, period);
        let available = ledger::view(&self.db, customer, now)
            .await?
            .map_or(0, |a| a.available);
        let unlocked = crate::rewards::affordable_between(
            &self.db,
            available,
            available.saturating_add(earned.points),
            now,
        )
        .await?;
        Ok(Simulated {
            points: earned.points,
            rule_id: rule.rule_id,
            rule_version: rule.version,
            pending: !purchase.return_window.is_zero(),
            unlocked_reward_ids: unlocked,
        })
    }
}

/// What Simulate answers.
#[derive(Debug, Default)]
pub struct Simulated {
    pub points: i64,
    pub rule_id: String,
    pub rule_version: i32,
    pub pending: bool,
    pub unlocked_reward_ids: Vec<String>,
}
