//! The consent ledger (append-only records) and its projection of current states.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use sea_orm::sea_query::{Expr, OnConflict};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect,
};

use super::entity::{record, state};
use super::purposes;
use crate::domain::{
    Channel, ConsentRecord, CurrentDecision, CustomerId, Decision, LegalBasis, Proof, PurposeCode,
    RecordConsent,
};
use crate::error::ConsentError;
use attune_kit::db::micros::{from_micros, to_micros};

/// Appends the request's decisions and moves each purpose's current state forward
/// when the new decision supersedes it. Runs inside the caller's write transaction.
pub async fn append(
    txn: &impl ConnectionTrait,
    command: &RecordConsent,
    now: DateTime<Utc>,
) -> Result<Vec<ConsentRecord>, ConsentError> {
    for input in &command.decisions {
        let code = &input.purpose;
        let shown = purposes::get(txn, code, Some(input.notice_version)).await?;
        let Some(shown) = shown else {
            return Err(match purposes::get(txn, code, None).await? {
                None => ConsentError::PurposeNotFound(code.to_string()),
                Some(_) => ConsentError::NoticeVersionNotFound {
                    code: code.to_string(),
                    version: input.notice_version,
                },
            });
        };
        if shown.notice.legal_basis() != LegalBasis::Consent {
            return Err(ConsentError::NotConsentBased(code.to_string()));
        }
    }

    let decide_time = command.decide_time.unwrap_or(now);
    let effective_time = to_micros(command.effective_time(now));
    let mut records = Vec::with_capacity(command.decisions.len());
    for input in &command.decisions {
        let expire_time = match input.decision {
            Decision::Granted => command.expire_time,
            Decision::Denied | Decision::Withdrawn => None,
        };
        let row = record::ActiveModel {
            id: sea_orm::ActiveValue::NotSet,
            customer_id: Set(command.customer.to_string()),
            purpose_code: Set(input.purpose.to_string()),
            decision: Set(input.decision.as_str().to_owned()),
            notice_version: Set(input.notice_version),
            channel: Set(command.channel.as_str().to_owned()),
            form_hash: Set(command.proof.form_hash.clone()),
            user_agent: Set(command.proof.user_agent.clone()),
            captured_by: Set(command.proof.captured_by.clone()),
            decide_time: Set(to_micros(decide_time)),
            expire_time: Set(expire_time.map(to_micros)),
            record_time: Set(to_micros(now)),
            request_id: Set(command.request_id.as_ref().to_owned()),
        };
        let stored = record::Entity::insert(row).exec_with_returning(txn).await?;
        advance_state(txn, &stored, input.decision, effective_time).await?;
        super::changes::record_decision(txn, &stored, now).await?;
        records.push(to_domain(stored)?);
    }
    Ok(records)
}

/// Makes `stored` the current decision unless the current one outranks it: the
/// later effective time wins, then the higher precedence, then the later record.
/// One guarded upsert, so concurrent writers cannot interleave a read and a write.
async fn advance_state(
    txn: &impl ConnectionTrait,
    stored: &record::Model,
    decision: Decision,
    effective_time: i64,
) -> Result<(), ConsentError> {
    let row = state::ActiveModel {
        customer_id: Set(stored.customer_id.clone()),
        purpose_code: Set(stored.purpose_code.clone()),
        record_id: Set(stored.id),
        decision: Set(stored.decision.clone()),
        precedence: Set(decision.precedence()),
        notice_version: Set(stored.notice_version),
        decide_time: Set(stored.decide_time),
        expire_time: Set(stored.expire_time),
        effective_time: Set(effective_time),
    };
    state::Entity::insert(row)
        .on_conflict(
            OnConflict::columns([state::Column::CustomerId, state::Column::PurposeCode])
                .update_columns([
                    state::Column::RecordId,
                    state::Column::Decision,
                    state::Column::Precedence,
                    state::Column::NoticeVersion,
                    state::Column::DecideTime,
                    state::Column::ExpireTime,
                    state::Column::EffectiveTime,
                ])
                .action_and_where(Expr::cust(
                    "(excluded.effective_time, excluded.precedence, excluded.record_id) > \
                     (consent_states.effective_time, consent_states.precedence, \
                     consent_states.record_id)",
                ))
                .to_owned(),
        )
        .exec_without_returning(txn)
        .await?;
    Ok(())
}

/// The current decision per purpose for one customer, for the purposes asked.
pub async fn current(
    db: &impl ConnectionTrait,
    customer: &CustomerId,
    purposes: &[PurposeCode],
) -> Result<HashMap<String, CurrentDecision>, ConsentError> {
    let codes: Vec<&str> = purposes.iter().map(AsRef::as_ref).collect();
    let rows = state::Entity::find()
        .filter(state::Column::CustomerId.eq(customer.as_ref()))
        .filter(state::Column::PurposeCode.is_in(codes))
        .all(db)
        .await?;
    rows.into_iter()
        .map(|row| {
            let decision = parse_decision(&row.decision)?;
            let current = CurrentDecision {
                record_id: row.record_id,
                decision,
                notice_version: row.notice_version,
                expire_time: row.expire_time.map(from_micros).transpose()?,
            };
            Ok((row.purpose_code, current))
        })
        .collect()
}

/// Loads ledger records by id.
pub async fn records_by_id(
    db: &impl ConnectionTrait,
    ids: &[i64],
) -> Result<HashMap<i64, ConsentRecord>, ConsentError> {
    let rows = record::Entity::find()
        .filter(record::Column::Id.is_in(ids.iter().copied()))
        .all(db)
        .await?;
    rows.into_iter()
        .map(|row| Ok((row.id, to_domain(row)?)))
        .collect()
}

/// One customer's records in recording order, after record id `after`.
pub async fn history(
    db: &impl ConnectionTrait,
    customer: &CustomerId,
    purpose: Option<&PurposeCode>,
    after: Option<i64>,
    limit: u64,
) -> Result<Vec<ConsentRecord>, ConsentError> {
    let mut query = record::Entity::find()
        .filter(record::Column::CustomerId.eq(customer.as_ref()))
        .order_by_asc(record::Column::Id)
        .limit(limit);
    if let Some(purpose) = purpose {
        query = query.filter(record::Column::PurposeCode.eq(purpose.as_ref()));
    }
    if let Some(after) = after {
        query = query.filter(record::Column::Id.gt(after));
    }
    query.all(db).await?.into_iter().map(to_domain).collect()
}

fn parse_decision(stored: &str) -> Result<Decision, ConsentError> {
    Decision::from_stored(stored)
        .ok_or_else(|| ConsentError::Corrupt(format!("unknown decision {stored:?}")))
}

fn to_domain(row: record::Model) -> Result<ConsentRecord, ConsentError> {
    let corrupt = |what: &str| ConsentError::Corrupt(format!("record {}: {what}", row.id));
    Ok(ConsentRecord {
        record_id: row.id,
        customer: CustomerId::parse(&row.customer_id).map_err(|_| corrupt("customer id"))?,
        purpose: PurposeCode::parse(&row.purpose_code).map_err(|_| corrupt("purpose code"))?,
        decision: parse_decision(&row.decision)?,
        notice_version: row.notice_version,
        channel: Channel::from_stored(&row.channel).ok_or_else(|| corrupt("channel"))?,
        proof: Proof {
            form_hash: row.form_hash,
            user_agent: row.user_agent,
            captured_by: row.captured_by,
        },
        decide_time: from_micros(row.decide_time)?,
        expire_time: row.expire_time.map(from_micros).transpose()?,
        record_time: from_micros(row.record_time)?,
        request_id: row.request_id,
    })
}
