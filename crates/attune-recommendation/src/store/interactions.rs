//! Interactions learned from profile's feed: one row per item of a view, cart
//! change, purchase or recommendation click. A return deletes the purchase rows
//! it cancels; a merge moves the visitor's rows to the customer; an erasure
//! deletes the customer's rows.

use sea_orm::sea_query::{Expr, ExprTrait, Order, Query};
use sea_orm::{ConnectionTrait, DbErr};
use serde::Serialize;

use crate::domain::{Interaction, Signal};

const TABLE: &str = "recommendation_interactions";
const ID: &str = "id";
const CUSTOMER_ID: &str = "customer_id";
const ITEM_ID: &str = "item_id";
const SIGNAL: &str = "signal";
const OCCUR_TIME: &str = "occur_time";
const ORDER_ID: &str = "order_id";
const QUANTITY: &str = "quantity";
const REVENUE_MINOR: &str = "revenue_minor";
const CURRENCY_CODE: &str = "currency_code";
const RECOMMENDATION_ID: &str = "recommendation_id";

const COLUMNS: [&str; 9] = [
    CUSTOMER_ID,
    ITEM_ID,
    SIGNAL,
    OCCUR_TIME,
    ORDER_ID,
    QUANTITY,
    REVENUE_MINOR,
    CURRENCY_CODE,
    RECOMMENDATION_ID,
];

/// Appends `rows`.
pub async fn insert(db: &impl ConnectionTrait, rows: &[Interaction]) -> Result<(), DbErr> {
    for chunk in rows.chunks(200) {
        let mut insert = Query::insert()
            .into_table(TABLE)
            .columns(COLUMNS)
            .to_owned();
        for row in chunk {
            insert.values_panic([
                row.customer_id.clone().into(),
                row.item_id.clone().into(),
                row.signal.as_str().into(),
                row.occur_time.into(),
                row.order_id.clone().into(),
                i32::try_from(row.quantity).unwrap_or(i32::MAX).into(),
                row.revenue_minor.into(),
                row.currency_code.clone().into(),
                row.recommendation_id.clone().into(),
            ]);
        }
        db.execute(&insert).await?;
    }
    Ok(())
}

/// Deletes the purchase rows of `item_id` in `order_id` of `customer_id`: a
/// return cancels the purchase signal. Returns how many rows went.
pub async fn cancel_purchase(
    db: &impl ConnectionTrait,
    customer_id: &str,
    order_id: &str,
    item_id: &str,
) -> Result<u64, DbErr> {
    let delete = Query::delete()
        .from_table(TABLE)
        .and_where(Expr::col(CUSTOMER_ID).eq(customer_id))
        .and_where(Expr::col(ORDER_ID).eq(order_id))
        .and_where(Expr::col(ITEM_ID).eq(item_id))
        .and_where(Expr::col(SIGNAL).eq(Signal::Purchase.as_str()))
        .to_owned();
    Ok(db.execute(&delete).await?.rows_affected())
}

/// Moves every row of `source` to `target` (a merge).
pub async fn reassign(db: &impl ConnectionTrait, source: &str, target: &str) -> Result<(), DbErr> {
    let update = Query::update()
        .table(TABLE)
        .value(CUSTOMER_ID, target)
        .and_where(Expr::col(CUSTOMER_ID).eq(source))
        .to_owned();
    db.execute(&update).await?;
    Ok(())
}

/// Deletes every row of `customer_id`; returns how many went.
pub async fn delete_customer(db: &impl ConnectionTrait, customer_id: &str) -> Result<u64, DbErr> {
    let delete = Query::delete()
        .from_table(TABLE)
        .and_where(Expr::col(CUSTOMER_ID).eq(customer_id))
        .to_owned();
    Ok(db.execute(&delete).await?.rows_affected())
}

fn read(row: &sea_orm::QueryResult) -> Result<(i64, Interaction), DbErr> {
    let signal: String = row.try_get("", SIGNAL)?;
    let quantity: i32 = row.try_get("", QUANTITY)?;
    Ok((
        row.try_get("", ID)?,
        Interaction {
            customer_id: row.try_get("", CUSTOMER_ID)?,
            item_id: row.try_get("", ITEM_ID)?,
            signal: Signal::from_stored(&signal)
                .ok_or_else(|| DbErr::Custom(format!("unknown stored signal {signal:?}")))?,
            occur_time: row.try_get("", OCCUR_TIME)?,
            order_id: row.try_get("", ORDER_ID)?,
            quantity: u32::try_from(quantity).unwrap_or(1),
            revenue_minor: row.try_get("", REVENUE_MINOR)?,
            currency_code: row.try_get("", CURRENCY_CODE)?,
            recommendation_id: row.try_get("", RECOMMENDATION_ID)?,
        },
    ))
}

fn select() -> sea_orm::sea_query::SelectStatement {
    let mut select = Query::select();
    select.column(ID).columns(COLUMNS).from(TABLE);
    select
}

/// Up to `limit` rows after id `after`, in id order: training reads all rows a
/// page at a time.
pub async fn page(
    db: &impl ConnectionTrait,
    after: i64,
    limit: u64,
) -> Result<Vec<(i64, Interaction)>, DbErr> {
    let select = select()
        .and_where(Expr::col(ID).gt(after))
        .order_by(ID, Order::Asc)
        .limit(limit)
        .to_owned();
    db.query_all(&select).await?.iter().map(read).collect()
}

/// Up to `limit` rows of `customer_id` after id `after`, in id order (export).
pub async fn of_customer(
    db: &impl ConnectionTrait,
    customer_id: &str,
    after: i64,
    limit: u64,
) -> Result<Vec<(i64, Interaction)>, DbErr> {
    let select = select()
        .and_where(Expr::col(CUSTOMER_ID).eq(customer_id))
        .and_where(Expr::col(ID).gt(after))
        .order_by(ID, Order::Asc)
        .limit(limit)
        .to_owned();
    db.query_all(&select).await?.iter().map(read).collect()
}

/// The clicks and purchases attribution needs: clicks that name one of the
/// experiment's recommendation ids, and every purchase of the customers who
/// clicked, in time order.
pub async fn attribution(
    db: &impl ConnectionTrait,
    experiment_id: &str,
) -> Result<Vec<Interaction>, DbErr> {
    let clicked_customers = Query::select()
        .column((sea_orm::sea_query::Alias::new("c"), CUSTOMER_ID))
        .from_as(TABLE, sea_orm::sea_query::Alias::new("c"))
        .and_where(Expr::col(SIGNAL).eq(Signal::RecommendationClick.as_str()))
        .and_where(
            Expr::col(RECOMMENDATION_ID).in_subquery(
                Query::select()
                    .column(RECOMMENDATION_ID)
                    .from("recommendation_impressions")
                    .and_where(Expr::col("experiment_id").eq(experiment_id))
                    .to_owned(),
            ),
        )
        .to_owned();
    let select = select()
        .and_where(Expr::col(CUSTOMER_ID).in_subquery(clicked_customers))
        .and_where(Expr::col(SIGNAL).is_in([
            Signal::RecommendationClick.as_str(),
            Signal::Purchase.as_str(),
        ]))
        .order_by(OCCUR_TIME, Order::Asc)
        .order_by(ID, Order::Asc)
        .to_owned();
    db.query_all(&select)
        .await?
        .iter()
        .map(|row| read(row).map(|(_, interaction)| interaction))
        .collect()
}

/// An interaction as an export record's content.
#[derive(Serialize)]
pub struct Exported<'a> {
    pub item_id: &'a str,
    pub signal: &'a str,
    pub occur_time_micros: i64,
    pub order_id: Option<&'a str>,
    pub quantity: u32,
    pub revenue_minor: i64,
    pub currency_code: &'a str,
    pub recommendation_id: Option<&'a str>,
}

impl Interaction {
    /// The interaction as exported.
    pub fn exported(&self) -> Exported<'_> {
        Exported {
            item_id: &self.item_id,
            signal: self.signal.as_str(),
            occur_time_micros: self.occur_time,
            order_id: self.order_id.as_deref(),
            quantity: self.quantity,
            revenue_minor: self.revenue_minor,
            currency_code: &self.currency_code,
            recommendation_id: self.recommendation_id.as_deref(),
        }
    }
}
