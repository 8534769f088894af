//! Reading the rows of a built query as a `FromQueryResult` type, on whichever
//! backend the connection is: the two lines every store module would repeat.

use sea_orm::sea_query::SelectStatement;
use sea_orm::{ConnectionTrait, DbErr, FromQueryResult, StatementBuilder};

/// Every row `query` selects, read as `T`.
pub async fn select_all<T: FromQueryResult>(
    db: &impl ConnectionTrait,
    query: &SelectStatement,
) -> Result<Vec<T>, DbErr> {
    T::find_by_statement(StatementBuilder::build(query, &db.get_database_backend()))
        .all(db)
        .await
}

/// The first row `query` selects, read as `T`.
pub async fn select_one<T: FromQueryResult>(
    db: &impl ConnectionTrait,
    query: &SelectStatement,
) -> Result<Option<T>, DbErr> {
    T::find_by_statement(StatementBuilder::build(query, &db.get_database_backend()))
        .one(db)
        .await
}
