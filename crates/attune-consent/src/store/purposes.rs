//! The purposes catalogue and its notice versions.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use sea_orm::sea_query::{Expr, ExprTrait, OnConflict};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, Condition, ConnectionTrait, DbErr, EntityTrait, QueryFilter,
    QueryOrder, QuerySelect,
};

use super::entity::{notice, purpose};
use crate::domain::{DataCategory, LegalBasis, NewPurpose, Purpose, PurposeCode, PurposeNotice};
use crate::error::ConsentError;
use attune_kit::db::micros::{from_micros, to_micros};

/// Inserts a purpose with its notice as version 1; false when the code is taken.
pub async fn insert_new(
    db: &impl ConnectionTrait,
    new: &NewPurpose,
    now: DateTime<Utc>,
) -> Result<bool, DbErr> {
    let row = purpose::ActiveModel {
        code: Set(new.code.to_string()),
        notice_version: Set(1),
        create_time: Set(to_micros(now)),
    };
    let inserted = purpose::Entity::insert(row)
        .on_conflict(
            OnConflict::column(purpose::Column::Code)
                .do_nothing()
                .to_owned(),
        )
        .exec_without_returning(db)
        .await?;
    if inserted == 0 {
        return Ok(false);
    }
    insert_notice(db, &new.code, 1, &new.notice, now).await?;
    Ok(true)
}

/// What publishing a notice did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Publication {
    /// The purpose's notice version now.
    pub version: i32,
    /// False when the notice was already the current one, so nothing was published.
    pub new: bool,
}

/// Publishes `notice` as the purpose's next version, or keeps the current version
/// when the notice says exactly what it already says (re-publishing identical text
/// would force needless re-consent).
pub async fn publish_notice(
    db: &impl ConnectionTrait,
    update: &NewPurpose,
    now: DateTime<Utc>,
) -> Result<Publication, ConsentError> {
    let current = get(db, &update.code, None)
        .await?
        .ok_or_else(|| ConsentError::PurposeNotFound(update.code.to_string()))?;
    if current.notice == update.notice {
        return Ok(Publication {
            version: current.notice_version,
            new: false,
        });
    }
    // One guarded statement, so two concurrent updates get two distinct versions.
    let bumped = purpose::Entity::update_many()
        .col_expr(
            purpose::Column::NoticeVersion,
            Expr::col(purpose::Column::NoticeVersion).add(1),
        )
        .filter(purpose::Column::Code.eq(update.code.as_ref()))
        .exec_with_returning(db)
        .await?;
    let version = bumped
        .first()
        .map(|row| row.notice_version)
        .ok_or_else(|| ConsentError::PurposeNotFound(update.code.to_string()))?;
    insert_notice(db, &update.code, version, &update.notice, now).await?;
    Ok(Publication { version, new: true })
}

async fn insert_notice(
    db: &impl ConnectionTrait,
    code: &PurposeCode,
    version: i32,
    notice: &PurposeNotice,
    now: DateTime<Utc>,
) -> Result<(), DbErr> {
    let categories: Vec<&str> = notice
        .data_categories()
        .iter()
        .map(|c| c.as_str())
        .collect();
    let row = notice::ActiveModel {
        purpose_code: Set(code.to_string()),
        notice_version: Set(version),
        display_name: Set(notice.display_name().to_owned()),
        description: Set(notice.description().to_owned()),
        legal_basis: Set(notice.legal_basis().as_str().to_owned()),
        data_categories: Set(categories.join(",")),
        publish_time: Set(to_micros(now)),
    };
    notice::Entity::insert(row)
        .exec_without_returning(db)
        .await?;
    Ok(())
}

/// Reads a purpose at `version`, or at its current version when `None`.
pub async fn get(
    db: &impl ConnectionTrait,
    code: &PurposeCode,
    version: Option<i32>,
) -> Result<Option<Purpose>, ConsentError> {
    let Some(head) = purpose::Entity::find_by_id(code.to_string())
        .one(db)
        .await?
    else {
        return Ok(None);
    };
    let version = version.unwrap_or(head.notice_version);
    let Some(notice) = notice::Entity::find_by_id((code.to_string(), version))
        .one(db)
        .await?
    else {
        return Ok(None);
    };
    assemble(head, notice).map(Some)
}

/// Lists purposes at their current versions, ordered by code, after `after`.
pub async fn list(
    db: &impl ConnectionTrait,
    after: Option<&str>,
    limit: u64,
) -> Result<Vec<Purpose>, ConsentError> {
    let mut query = purpose::Entity::find().order_by_asc(purpose::Column::Code);
    if let Some(after) = after {
        query = query.filter(purpose::Column::Code.gt(after));
    }
    let heads = query.limit(limit).all(db).await?;
    if heads.is_empty() {
        return Ok(Vec::new());
    }
    // One query for all current notices rather than one per purpose.
    let current = heads.iter().fold(Condition::any(), |any, head| {
        any.add(
            Condition::all()
                .add(notice::Column::PurposeCode.eq(head.code.as_str()))
                .add(notice::Column::NoticeVersion.eq(head.notice_version)),
        )
    });
    let mut notices: HashMap<String, notice::Model> = notice::Entity::find()
        .filter(current)
        .all(db)
        .await?
        .into_iter()
        .map(|notice| (notice.purpose_code.clone(), notice))
        .collect();
    heads
        .into_iter()
        .map(|head| {
            let notice = notices.remove(&head.code).ok_or_else(|| {
                ConsentError::Corrupt(format!("purpose {} lost its notice", head.code))
            })?;
            assemble(head, notice)
        })
        .collect()
}

/// The codes of every purpose whose current notice is based on consent, in order.
pub async fn consent_based_codes(
    db: &impl ConnectionTrait,
) -> Result<Vec<PurposeCode>, ConsentError> {
    let mut codes = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let page = list(db, after.as_deref(), 500).await?;
        let Some(last) = page.last() else { break };
        after = Some(last.code.to_string());
        codes.extend(
            page.into_iter()
                .filter(|purpose| purpose.notice.legal_basis() == LegalBasis::Consent)
                .map(|purpose| purpose.code),
        );
    }
    Ok(codes)
}

fn assemble(head: purpose::Model, notice: notice::Model) -> Result<Purpose, ConsentError> {
    let corrupt = |what: &str| ConsentError::Corrupt(format!("purpose {}: {what}", head.code));
    let legal_basis =
        LegalBasis::from_stored(&notice.legal_basis).ok_or_else(|| corrupt("legal basis"))?;
    let data_categories = notice
        .data_categories
        .split(',')
        .map(|name| DataCategory::from_stored(name).ok_or_else(|| corrupt("data category")))
        .collect::<Result<Vec<_>, _>>()?;
    let parsed = PurposeNotice::parse(
        &notice.display_name,
        &notice.description,
        legal_basis,
        data_categories,
    )
    .map_err(|_| corrupt("notice"))?;
    Ok(Purpose {
        code: PurposeCode::parse(&head.code).map_err(|_| corrupt("code"))?,
        notice: parsed,
        notice_version: notice.notice_version,
        create_time: from_micros(head.create_time)?,
        notice_publish_time: from_micros(notice.publish_time)?,
    })
}
