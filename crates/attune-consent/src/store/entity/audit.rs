use sea_orm::entity::prelude::*;

/// One entry of the hash-chained privacy audit log. `subject` is a keyed hash of
/// the customer id, never the id itself, so erasure never has to touch the chain.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "consent_audit_log")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub sequence: i64,
    pub kind: String,
    pub subject: Option<String>,
    pub detail: String,
    pub occur_time: i64,
    pub prev_hash: String,
    pub hash: String,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
