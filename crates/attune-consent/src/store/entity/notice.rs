use sea_orm::entity::prelude::*;

/// One published notice version of a purpose; never changed once written.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "consent_purpose_notices")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub purpose_code: String,
    #[sea_orm(primary_key, auto_increment = false)]
    pub notice_version: i32,
    pub display_name: String,
    pub description: String,
    pub legal_basis: String,
    /// Stored category names, comma separated.
    pub data_categories: String,
    pub publish_time: i64,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
