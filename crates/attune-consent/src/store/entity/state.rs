use sea_orm::entity::prelude::*;

/// The decision that currently counts for one customer and purpose: a projection
/// of the ledger kept for the hot path, so a check reads one row per purpose.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "consent_states")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub customer_id: String,
    #[sea_orm(primary_key, auto_increment = false)]
    pub purpose_code: String,
    pub record_id: i64,
    pub decision: String,
    /// `Decision::precedence`, stored so the database can order ties.
    pub precedence: i16,
    pub notice_version: i32,
    /// The decision time as stated by the client.
    pub decide_time: i64,
    pub expire_time: Option<i64>,
    /// What orders decisions: the decision time, but never later than the
    /// record time (`ConsentRecord::effective_time`).
    pub effective_time: i64,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
