//! The rewards catalogue and its vouchers. Redeeming a reward books a REDEEM
//! entry, takes one unit of stock with a guarded update (`stock > 0`) and issues
//! a voucher, all in one transaction under the write lock; cancelling gives the
//! points and the unit back. Voucher codes come from the operating system's
//! cryptographic random generator.

use attune_kit::ApiError;
use attune_kit::db::micros::to_micros;
use chrono::{DateTime, Duration, Utc};
use sea_orm::{ConnectionTrait, DbErr, FromQueryResult};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::app::Loyalty;
use crate::domain::entry::EntryKind;
use crate::ledger::{self, AccountView, NewEntry};
use crate::rules::time;
use crate::store::{all, exec, one};

/// What a reward gives.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Gives {
    AmountOff { amount_minor: i64, currency: String },
    PercentOff { basis_points: i32 },
    FreeProduct { item_id: String },
    FreeDelivery,
    Experience,
}

/// A reward of the catalogue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reward {
    pub reward_id: String,
    pub display_name: String,
    pub description: String,
    pub gives: Gives,
    pub points_cost: i64,
    /// Units left; `None` is unlimited.
    pub stock: Option<i64>,
    pub active: bool,
    pub start: Option<DateTime<Utc>>,
    pub end: Option<DateTime<Utc>>,
    pub voucher_validity: Duration,
}

impl Reward {
    fn redeemable_at(&self, now: DateTime<Utc>) -> bool {
        self.active && self.start.is_none_or(|s| s <= now) && self.end.is_none_or(|e| now < e)
    }
}

/// Where a voucher is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum VoucherState {
    Issued,
    Expired,
    Cancelled,
    /// Used for an order at checkout.
    Used,
}

/// A reward redemption's voucher.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Voucher {
    pub code: String,
    pub customer_id: String,
    pub reward_id: String,
    pub points: i64,
    pub state: VoucherState,
    pub issue_time: DateTime<Utc>,
    pub expire_time: DateTime<Utc>,
    /// The order it is used for, when used.
    #[serde(default)]
    pub order_id: Option<String>,
    /// When it was used.
    #[serde(default)]
    pub use_time: Option<DateTime<Utc>>,
}

#[derive(Debug, FromQueryResult)]
struct RewardRow {
    stock: Option<i64>,
    body: String,
}

impl RewardRow {
    fn into_reward(self) -> Result<Reward, DbErr> {
        let mut reward: Reward = serde_json::from_str(&self.body)
            .map_err(|_| DbErr::Custom("stored reward is unreadable".into()))?;
        reward.stock = self.stock;
        Ok(reward)
    }
}

#[derive(Debug, FromQueryResult)]
struct VoucherRow {
    voucher_code: String,
    customer_id: String,
    reward_id: String,
    points: i64,
    entry_id: i64,
    state: String,
    issue_time: i64,
    expire_time: i64,
    order_id: Option<String>,
    use_time: Option<i64>,
}

impl VoucherRow {
    fn into_voucher(self, now: DateTime<Utc>) -> Result<Voucher, DbErr> {
        let expire_time = time(self.expire_time)?;
        let state = match self.state.as_str() {
            "cancelled" => VoucherState::Cancelled,
            // Used stays used after the voucher's time: the order keeps it.
            "used" => VoucherState::Used,
            _ if expire_time <= now => VoucherState::Expired,
            _ => VoucherState::Issued,
        };
        Ok(Voucher {
            code: self.voucher_code,
            customer_id: self.customer_id,
            reward_id: self.reward_id,
            points: self.points,
            state,
            issue_time: time(self.issue_time)?,
            expire_time,
            order_id: self.order_id,
            use_time: self.use_time.map(time).transpose()?,
        })
    }
}

const VOUCHER_COLUMNS: &str = "voucher_code, customer_id, reward_id, points, entry_id, state, \
     issue_time, expire_time, order_id, use_time";

/// Crockford's base 32 without look-alikes (no I, L, O, U).
const ALPHABET: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";

/// A 16-character voucher code: 80 bits from the operating system's
/// cryptographic random generator.
pub fn voucher_code() -> Result<String, ApiError> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes)
        .map_err(|e| ApiError::internal(format!("random generator: {e}")))?;
    Ok(bytes
        .iter()
        .map(|b| char::from(ALPHABET[usize::from(b % 32)]))
        .collect())
}

async fn reward(db: &impl ConnectionTrait, reward_id: &str) -> Result<Option<Reward>, DbErr> {
    one::<RewardRow>(
        db,
        "SELECT stock, body FROM loyalty_rewards WHERE reward_id = ?",
        vec![reward_id.into()],
    )
    .await?
    .map(RewardRow::into_reward)
    .transpose()
}

/// Ids of the redeemable, in-stock rewards costing more than `from` points and at
/// most `to`, by cost.
pub async fn affordable_between(
    db: &impl ConnectionTrait,
    from: i64,
    to: i64,
    now: DateTime<Utc>,
) -> Result<Vec<String>, DbErr> {
    let rows: Vec<RewardRow> = all(
        db,
        "SELECT stock, body FROM loyalty_rewards WHERE points_cost > ? AND points_cost <= ? \
         AND (stock IS NULL OR stock > 0) ORDER BY points_cost, reward_id LIMIT 100",
        vec![from.into(), to.into()],
    )
    .await?;
    let mut ids = Vec::new();
    for row in rows {
        let reward = row.into_reward()?;
        if reward.redeemable_at(now) {
            ids.push(reward.reward_id);
        }
    }
    Ok(ids)
}

/// A redemption's outcome.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Redeemed {
    pub voucher: Voucher,
    pub account: AccountView,
}

impl Loyalty {
    /// Creates or replaces a reward.
    pub async fn put_reward(&self, reward: Reward, request_id: &str) -> Result<Reward, ApiError> {
        self.idempotent("put_reward", request_id, &reward, async |txn| {
            let body = serde_json::to_string(&reward).map_err(ApiError::internal)?;
            exec(
                txn,
                "INSERT INTO loyalty_rewards (reward_id, points_cost, stock, body, update_time) \
                 VALUES (?, ?, ?, ?, ?) ON CONFLICT (reward_id) DO UPDATE SET \
                 points_cost = excluded.points_cost, stock = excluded.stock, body = excluded.body, \
                 update_time = excluded.update_time",
                vec![
                    reward.reward_id.clone().into(),
                    reward.points_cost.into(),
                    reward.stock.into(),
                    body.into(),
                    to_micros(self.clock.now()).into(),
                ],
            )
            .await?;
            Ok(reward.clone())
        })
        .await
    }

    /// A page of rewards by cost then id, after `(cost, id)`.
    pub async fn rewards(
        &self,
        after: Option<(i64, String)>,
        limit: u32,
    ) -> Result<Vec<Reward>, ApiError> {
        let (cost, id) = after.unwrap_or((i64::MIN, String::new()));
        let rows: Vec<RewardRow> = all(
            &self.db,
            "SELECT stock, body FROM loyalty_rewards WHERE points_cost > ? OR (points_cost = ? AND reward_id > ?) \
             ORDER BY points_cost, reward_id LIMIT ?",
            vec![cost.into(), cost.into(), id.into(), i64::from(limit).into()],
        )
        .await?;
        Ok(rows
            .into_iter()
            .map(RewardRow::into_reward)
            .collect::<Result<_, _>>()?)
    }

    /// Redeems a reward for points.
    pub async fn redeem_reward(
        &self,
        customer: &str,
        reward_id: &str,
        request_id: &str,
    ) -> Result<Redeemed, ApiError> {
        let content = json!({ "customer_id": customer, "reward_id": reward_id });
        let lifetime = self.points_lifetime();
        self.idempotent_about(customer, "redeem_reward", request_id, &content, async |txn| {
            let now = self.clock.now();
            if !ledger::exists(txn, customer).await? {
                return Err(ApiError::NotFound("the customer has no loyalty account".into()));
            }
            let reward = reward(txn, reward_id)
                .await?
                .ok_or_else(|| ApiError::NotFound(format!("no reward {reward_id}")))?;
            if !reward.redeemable_at(now) {
                return Err(ApiError::FailedPrecondition(format!("reward {reward_id} cannot be redeemed now")));
            }
            ledger::settle(txn, Some(customer), now, lifetime).await?;
            let taken = exec(
                txn,
                "UPDATE loyalty_rewards SET stock = stock - 1 WHERE reward_id = ? AND (stock IS NULL OR stock > 0)",
                vec![reward_id.into()],
            )
            .await?
            .rows_affected();
            if taken == 0 {
                return Err(ApiError::ResourceExhausted { message: format!("reward {reward_id} is out of stock"), retry_after: None });
            }
            let mut entry = NewEntry::new(EntryKind::Redeem, -reward.points_cost, format!("redeem_reward/{request_id}"));
            entry.rule_id = format!("reward:{reward_id}");
            entry.description = reward.display_name.clone();
            let booked = ledger::debit(txn, customer, entry, now, lifetime).await?;
            let code = voucher_code()?;
            let expire_time = now + reward.voucher_validity;
            exec(
                txn,
                &format!("INSERT INTO loyalty_vouchers ({VOUCHER_COLUMNS}) VALUES (?, ?, ?, ?, ?, 'issued', ?, ?, NULL, NULL)"),
                vec![
                    code.clone().into(),
                    customer.into(),
                    reward_id.into(),
                    reward.points_cost.into(),
                    booked.entry_id.into(),
                    to_micros(now).into(),
                    to_micros(expire_time).into(),
                ],
            )
            .await?;
            Ok(Redeemed {
                voucher: Voucher {
                    code,
                    customer_id: customer.to_owned(),
                    reward_id: reward_id.to_owned(),
                    points: reward.points_cost,
                    state: VoucherState::Issued,
                    issue_time: now,
                    expire_time,
                    order_id: None,
                    use_time: None,
                },
                account: ledger::require_view(txn, customer, now).await?,
            })
        })
        .await
    }

    /// A page of a customer's vouchers, newest first, before `(issue time, code)`.
    pub async fn vouchers(
        &self,
        customer: &str,
        before: Option<(i64, String)>,
        limit: u32,
    ) -> Result<Vec<Voucher>, ApiError> {
        let (at, code) = before.unwrap_or((i64::MAX, String::new()));
        let rows: Vec<VoucherRow> = all(
            &self.db,
            &format!(
                "SELECT {VOUCHER_COLUMNS} FROM loyalty_vouchers WHERE customer_id = ? AND \
                 (issue_time < ? OR (issue_time = ? AND voucher_code < ?)) \
                 ORDER BY issue_time DESC, voucher_code DESC LIMIT ?"
            ),
            vec![
                customer.into(),
                at.into(),
                at.into(),
                code.into(),
                i64::from(limit).into(),
            ],
        )
        .await?;
        let now = self.clock.now();
        Ok(rows
            .into_iter()
            .map(|r| r.into_voucher(now))
            .collect::<Result<_, _>>()?)
    }

    /// Cancels a redemption: the points and the stock unit come back.
    pub async fn cancel_redemption(
        &self,
        customer: &str,
        code: &str,
        request_id: &str,
    ) -> Result<Redeemed, ApiError> {
        let content = json!({ "customer_id": customer, "voucher_code": code });
        let lifetime = self.points_lifetime();
        self.idempotent_about(customer, "cancel_redemption", request_id, &content, async |txn| {
            let now = self.clock.now();
            let row = one::<VoucherRow>(
                txn,
                &format!("SELECT {VOUCHER_COLUMNS} FROM loyalty_vouchers WHERE voucher_code = ? AND customer_id = ?"),
                vec![code.into(), customer.into()],
            )
            .await?
            .ok_or_else(|| ApiError::NotFound("no such voucher for this customer".into()))?;
            if row.state == "cancelled" {
                return Err(ApiError::FailedPrecondition("the voucher is already cancelled".into()));
            }
            if row.state == "used" {
                return Err(ApiError::FailedPrecondition(
                    "the voucher is used for an order; release it first".into(),
                ));
            }
            exec(
                txn,
                "UPDATE loyalty_vouchers SET state = 'cancelled' WHERE voucher_code = ?",
                vec![code.into()],
            )
            .await?;
            exec(
                txn,
                "UPDATE loyalty_rewards SET stock = stock + 1 WHERE reward_id = ? AND stock IS NOT NULL",
                vec![row.reward_id.clone().into()],
            )
            .await?;
            ledger::settle(txn, Some(customer), now, lifetime).await?;
            let mut entry = NewEntry::new(EntryKind::Reversal, row.points, format!("cancel_redemption/{request_id}"));
            entry.rule_id = format!("reward:{}", row.reward_id);
            entry.description = format!("Cancelled redemption (entry {})", row.entry_id);
            ledger::credit(txn, customer, entry, now, lifetime).await?;
            let mut voucher = row.into_voucher(now)?;
            voucher.state = VoucherState::Cancelled;
            Ok(Redeemed { voucher, account: ledger::require_view(txn, customer, now).await? })
        })
        .await
    }

    /// Uses a voucher for an order, once: a guarded update from `issued`
    /// (unexpired) to `used`, under the write lock like every loyalty write.
    pub async fn use_voucher(
        &self,
        customer: &str,
        code: &str,
        order_id: &str,
        request_id: &str,
    ) -> Result<Voucher, ApiError> {
        let content =
            json!({ "customer_id": customer, "voucher_code": code, "order_id": order_id });
        self.idempotent_about(customer, "use_voucher", request_id, &content, async |txn| {
            let now = self.clock.now();
            let used = exec(
                txn,
                "UPDATE loyalty_vouchers SET state = 'used', order_id = ?, use_time = ? \
                 WHERE voucher_code = ? AND customer_id = ? AND state = 'issued' AND expire_time > ?",
                vec![
                    order_id.into(),
                    to_micros(now).into(),
                    code.into(),
                    customer.into(),
                    to_micros(now).into(),
                ],
            )
            .await?
            .rows_affected();
            let voucher = self.voucher_in(txn, customer, code, now).await?;
            match voucher.state {
                _ if used == 1 => Ok(voucher),
                VoucherState::Used if voucher.order_id.as_deref() == Some(order_id) => Ok(voucher),
                VoucherState::Used => Err(ApiError::FailedPrecondition(
                    "the voucher is already used for another order".into(),
                )),
                VoucherState::Cancelled => {
                    Err(ApiError::FailedPrecondition("the voucher is cancelled".into()))
                }
                VoucherState::Expired | VoucherState::Issued => {
                    Err(ApiError::FailedPrecondition("the voucher has expired".into()))
                }
            }
        })
        .await
    }

    /// Gives a used voucher back from its cancelled order.
    pub async fn release_voucher(
        &self,
        customer: &str,
        code: &str,
        order_id: &str,
        request_id: &str,
    ) -> Result<Voucher, ApiError> {
        let content =
            json!({ "customer_id": customer, "voucher_code": code, "order_id": order_id });
        self.idempotent_about(
            customer,
            "release_voucher",
            request_id,
            &content,
            async |txn| {
                let now = self.clock.now();
                exec(
                txn,
                "UPDATE loyalty_vouchers SET state = 'issued', order_id = NULL, use_time = NULL \
                 WHERE voucher_code = ? AND customer_id = ? AND state = 'used' AND order_id = ?",
                vec![code.into(), customer.into(), order_id.into()],
            )
            .await?;
                let voucher = self.voucher_in(txn, customer, code, now).await?;
                match voucher.state {
                    VoucherState::Used => Err(ApiError::FailedPrecondition(
                        "the voucher is used for another order".into(),
                    )),
                    VoucherState::Cancelled => Err(ApiError::FailedPrecondition(
                        "the voucher is cancelled".into(),
                    )),
                    VoucherState::Issued | VoucherState::Expired => Ok(voucher),
                }
            },
        )
        .await
    }

    async fn voucher_in(
        &self,
        txn: &impl ConnectionTrait,
        customer: &str,
        code: &str,
        now: DateTime<Utc>,
    ) -> Result<Voucher, ApiError> {
        let row = one::<VoucherRow>(
            txn,
            &format!("SELECT {VOUCHER_COLUMNS} FROM loyalty_vouchers WHERE voucher_code = ? AND customer_id = ?"),
            vec![code.into(), customer.into()],
        )
        .await?
        .ok_or_else(|| ApiError::NotFound("no such voucher for this customer".into()))?;
        Ok(row.into_voucher(now)?)
    }
}
