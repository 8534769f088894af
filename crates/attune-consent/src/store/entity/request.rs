use sea_orm::entity::prelude::*;

/// A write that has been done, by its client-chosen request id: what makes a retry
/// return the original answer instead of writing twice.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "consent_requests")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub operation: String,
    #[sea_orm(primary_key, auto_increment = false)]
    pub request_id: String,
    /// Digest of the request's content, to refuse the same id with other content.
    pub fingerprint: String,
    /// What the write produced, enough to answer a replay (ids, a version).
    pub outcome: String,
    pub create_time: i64,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
