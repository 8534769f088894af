use sea_orm::entity::prelude::*;

/// One decision in the append-only ledger.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "consent_records")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub customer_id: String,
    pub purpose_code: String,
    pub decision: String,
    pub notice_version: i32,
    pub channel: String,
    pub form_hash: Option<String>,
    pub user_agent: Option<String>,
    pub captured_by: Option<String>,
    pub decide_time: i64,
    pub expire_time: Option<i64>,
    pub record_time: i64,
    pub request_id: String,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
