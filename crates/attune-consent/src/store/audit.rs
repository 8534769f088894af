//! The privacy audit log's table: entries are appended inside the write
//! transaction that makes the change, and read back in pages to verify the chain.

use chrono::{DateTime, Utc};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, DatabaseConnection, EntityName, EntityTrait,
    QueryFilter, QueryOrder, QuerySelect,
};
use sea_orm_migration::SchemaManager;

use super::entity::audit;
use crate::domain::{AuditEntry, AuditEvent, AuditVerification, ChainVerifier};
use crate::error::ConsentError;
use attune_kit::db::micros::to_micros;

/// How many entries verification holds in memory at a time.
const PAGE: u64 = 1000;

/// Appends `event` after the newest entry. Must run inside a transaction begun
/// with `attune_kit::db::begin_write` under consent's `WRITE_LOCK`: its lock is
/// what keeps two writers from taking the same sequence or chaining to the same
/// previous entry.
pub async fn append(
    txn: &impl ConnectionTrait,
    event: AuditEvent,
    now: DateTime<Utc>,
) -> Result<(), ConsentError> {
    let newest = audit::Entity::find()
        .order_by_desc(audit::Column::Sequence)
        .one(txn)
        .await?
        .map(to_domain);
    let entry = AuditEntry::append(newest.as_ref(), &event, to_micros(now));
    let AuditEntry {
        sequence,
        kind,
        subject,
        detail,
        occur_micros,
        prev_hash,
        hash,
    } = entry;
    audit::Entity::insert(audit::ActiveModel {
        sequence: Set(sequence),
        kind: Set(kind),
        subject: Set(subject),
        detail: Set(detail),
        occur_time: Set(occur_micros),
        prev_hash: Set(prev_hash),
        hash: Set(hash),
    })
    .exec_without_returning(txn)
    .await?;
    Ok(())
}

/// Verifies the whole chain, reading it in pages by sequence so that memory stays
/// bounded however long the log grows. Entries appended while it runs are
/// verified too if they arrive before the last page is read.
pub async fn verify(db: &impl ConnectionTrait) -> Result<AuditVerification, ConsentError> {
    let mut verifier = ChainVerifier::default();
    let mut after = i64::MIN;
    loop {
        let page = audit::Entity::find()
            .filter(audit::Column::Sequence.gt(after))
            .order_by_asc(audit::Column::Sequence)
            .limit(PAGE)
            .all(db)
            .await?;
        let Some(last) = page.last() else { break };
        after = last.sequence;
        let full = page.len() as u64 == PAGE;
        for row in page {
            verifier.push(&to_domain(row));
        }
        if !full {
            break;
        }
    }
    Ok(verifier.finish())
}

/// Whether the database holds the audit log at all (consent's schema, migrated),
/// so that a tool can say so instead of failing on a missing table.
pub async fn exists(db: &DatabaseConnection) -> Result<bool, ConsentError> {
    Ok(SchemaManager::new(db)
        .has_table(audit::Entity.table_name())
        .await?)
}

fn to_domain(row: audit::Model) -> AuditEntry {
    let audit::Model {
        sequence,
        kind,
        subject,
        detail,
        occur_time,
        prev_hash,
        hash,
    } = row;
    AuditEntry {
        sequence,
        kind,
        subject,
        detail,
        occur_micros: occur_time,
        prev_hash,
        hash,
    }
}
