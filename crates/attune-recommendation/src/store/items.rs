//! The catalogue mirror as stored: one row per item, the item encoded as its
//! protobuf message (the catalogue in memory is rebuilt from these rows).

use attune_proto::recommendation::v1 as pb;
use prost::Message;
use sea_orm::sea_query::{Expr, ExprTrait, OnConflict, Order, Query};
use sea_orm::{ConnectionTrait, DbErr};

const TABLE: &str = "recommendation_items";
const ITEM_ID: &str = "item_id";
const DATA: &str = "data";
const SOURCE_VERSION: &str = "source_version";
const UPDATE_TIME: &str = "update_time";

/// Decodes a stored item; a row that does not decode is a bug or corruption.
fn decode(bytes: &[u8]) -> Result<pb::CatalogItem, DbErr> {
    pb::CatalogItem::decode(bytes)
        .map_err(|e| DbErr::Custom(format!("stored item unreadable: {e}")))
}

/// The stored items with these ids (those that exist).
pub async fn get_many(
    db: &impl ConnectionTrait,
    ids: &[String],
) -> Result<Vec<pb::CatalogItem>, DbErr> {
    let mut items = Vec::with_capacity(ids.len());
    for chunk in ids.chunks(500) {
        let select = Query::select()
            .column(DATA)
            .from(TABLE)
            .and_where(Expr::col(ITEM_ID).is_in(chunk.iter().cloned()))
            .to_owned();
        for row in db.query_all(&select).await? {
            let bytes: Vec<u8> = row.try_get("", DATA)?;
            items.push(decode(&bytes)?);
        }
    }
    Ok(items)
}

/// Stores `items` (created or replaced whole; the caller merged them).
pub async fn put(
    db: &impl ConnectionTrait,
    items: &[pb::CatalogItem],
    update_time: i64,
) -> Result<(), DbErr> {
    for chunk in items.chunks(200) {
        let mut insert = Query::insert()
            .into_table(TABLE)
            .columns([ITEM_ID, DATA, SOURCE_VERSION, UPDATE_TIME])
            .on_conflict(
                OnConflict::column(ITEM_ID)
                    .update_columns([DATA, SOURCE_VERSION, UPDATE_TIME])
                    .to_owned(),
            )
            .to_owned();
        for item in chunk {
            insert.values_panic([
                item.item_id.clone().into(),
                item.encode_to_vec().into(),
                item.source_version.into(),
                update_time.into(),
            ]);
        }
        db.execute(&insert).await?;
    }
    Ok(())
}

/// Deletes the items with these ids; returns the ids that existed.
pub async fn delete(db: &impl ConnectionTrait, ids: &[String]) -> Result<Vec<String>, DbErr> {
    let existing: Vec<String> = get_many(db, ids)
        .await?
        .into_iter()
        .map(|item| item.item_id)
        .collect();
    if !existing.is_empty() {
        let delete = Query::delete()
            .from_table(TABLE)
            .and_where(Expr::col(ITEM_ID).is_in(existing.iter().cloned()))
            .to_owned();
        db.execute(&delete).await?;
    }
    Ok(existing)
}

/// Every stored item, in id order (to build the catalogue in memory).
pub async fn all(db: &impl ConnectionTrait) -> Result<Vec<pb::CatalogItem>, DbErr> {
    let select = Query::select()
        .column(DATA)
        .from(TABLE)
        .order_by(ITEM_ID, Order::Asc)
        .to_owned();
    db.query_all(&select)
        .await?
        .into_iter()
        .map(|row| decode(&row.try_get::<Vec<u8>>("", DATA)?))
        .collect()
}
