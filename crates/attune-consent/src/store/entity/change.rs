use sea_orm::entity::prelude::*;

/// One position of the change stream: a recorded decision (with the decision that
/// counts after it) or an erasure, which names no customer.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "consent_changes")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub position: i64,
    pub kind: String,
    pub customer_id: Option<String>,
    pub purpose_code: Option<String>,
    pub record_id: Option<i64>,
    pub current_record_id: Option<i64>,
    pub change_time: i64,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
