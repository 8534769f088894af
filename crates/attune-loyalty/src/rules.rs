//! The programme's definitions as stored: versioned earn rules, the tier ladder,
//! offer rules. Each is a JSON document of its domain type, so a definition
//! reads back exactly as it was written.

use attune_kit::db::micros::{from_micros, to_micros};
use chrono::{DateTime, Utc};
use sea_orm::{ConnectionTrait, DatabaseTransaction, DbErr, FromQueryResult};
use serde::{Deserialize, Serialize};

use crate::domain::earning::PurchaseEarning;
use crate::domain::tiers::Ladder;
use crate::store::{all, exec, number, one};

/// What an earn rule earns from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Earning {
    Purchase(PurchaseEarning),
    /// (field, points).
    ZeroParty(Vec<(String, i64)>),
}

/// One version of an earn rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EarnRule {
    pub rule_id: String,
    pub version: i32,
    pub active: bool,
    pub earning: Earning,
    pub create_time: DateTime<Utc>,
}

fn corrupt(what: &str) -> DbErr {
    DbErr::Custom(format!("stored {what} is unreadable"))
}

#[derive(Debug, FromQueryResult)]
struct Body {
    body: String,
}

/// Stores a new version of `rule` (its version and time are assigned here).
pub async fn put_earn_rule(
    txn: &DatabaseTransaction,
    mut rule: EarnRule,
    now: DateTime<Utc>,
) -> Result<EarnRule, DbErr> {
    let version = number(
        txn,
        "SELECT CAST(COALESCE(MAX(version), 0) AS BIGINT) AS n FROM loyalty_earn_rules WHERE rule_id = ?",
        vec![rule.rule_id.clone().into()],
    )
    .await?;
    rule.version = i32::try_from(version + 1).map_err(|_| corrupt("rule version"))?;
    rule.create_time = now;
    let body = serde_json::to_string(&rule).map_err(|_| corrupt("earn rule"))?;
    exec(
        txn,
        "INSERT INTO loyalty_earn_rules (rule_id, version, body, create_time) VALUES (?, ?, ?, ?)",
        vec![
            rule.rule_id.clone().into(),
            rule.version.into(),
            body.into(),
            to_micros(now).into(),
        ],
    )
    .await?;
    Ok(rule)
}

/// The version in force of every earn rule, by id.
pub async fn earn_rules(db: &impl ConnectionTrait) -> Result<Vec<EarnRule>, DbErr> {
    let rows: Vec<Body> = all(
        db,
        "SELECT r.body FROM loyalty_earn_rules r WHERE r.version = \
         (SELECT MAX(v.version) FROM loyalty_earn_rules v WHERE v.rule_id = r.rule_id) \
         ORDER BY r.rule_id",
        vec![],
    )
    .await?;
    rows.into_iter()
        .map(|row| serde_json::from_str(&row.body).map_err(|_| corrupt("earn rule")))
        .collect()
}

/// The active purchase rule for `currency`, if any.
pub async fn purchase_rule(
    db: &impl ConnectionTrait,
    currency: &str,
) -> Result<Option<(EarnRule, PurchaseEarning)>, DbErr> {
    Ok(earn_rules(db)
        .await?
        .into_iter()
        .find_map(|rule| match &rule.earning {
            Earning::Purchase(p) if rule.active && p.currency == currency => {
                let p = p.clone();
                Some((rule, p))
            }
            _ => None,
        }))
}

pub(crate) const LADDER: &str = "tiers";

/// The tier ladder, if defined.
pub async fn ladder(db: &impl ConnectionTrait) -> Result<Option<Ladder>, DbErr> {
    one::<Body>(
        db,
        "SELECT body FROM loyalty_settings WHERE setting = ?",
        vec![LADDER.into()],
    )
    .await?
    .map(|row| parse_ladder(&row.body))
    .transpose()
}

/// The stored ladder `body`.
pub(crate) fn parse_ladder(body: &str) -> Result<Ladder, DbErr> {
    serde_json::from_str(body).map_err(|_| corrupt("tier ladder"))
}

/// Replaces the tier ladder.
pub async fn put_ladder(
    txn: &DatabaseTransaction,
    ladder: &Ladder,
    now: DateTime<Utc>,
) -> Result<(), DbErr> {
    let body = serde_json::to_string(ladder).map_err(|_| corrupt("tier ladder"))?;
    exec(
        txn,
        "INSERT INTO loyalty_settings (setting, body, update_time) VALUES (?, ?, ?) \
         ON CONFLICT (setting) DO UPDATE SET body = excluded.body, update_time = excluded.update_time",
        vec![LADDER.into(), body.into(), to_micros(now).into()],
    )
    .await?;
    Ok(())
}

/// A stored time.
pub fn time(micros: i64) -> Result<DateTime<Utc>, DbErr> {
    from_micros(micros).map_err(|_| corrupt("time"))
}
