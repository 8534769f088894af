//! Traits, kept incrementally: each stored event is folded into its customer's
//! [`TraitState`] in the transaction that stores it, and `GetTraits` computes the
//! traits from the state alone. Only a merge, which brings two histories
//! together, recomputes a state from the stored events ([`rebuild`]).

mod compute;
mod state;
mod store;

pub use compute::WINDOWS;
pub use state::TraitState;
pub use store::load_states;
pub(crate) use store::{delete_states, save_states};

use attune_kit::db::micros;
use attune_kit::types::Currency;
use attune_proto::profile::v1::feed_entry::Change;
use chrono::{DateTime, Utc};
use sea_orm::sea_query::{Alias, Expr, ExprTrait, Query};
use sea_orm::{ConnectionTrait, DatabaseTransaction, DbErr, StatementBuilder};

use crate::Profile;
use crate::feed::{self, EntryType, Row};

/// Recomputes `customer_id`'s state from every event stored under it, folded in
/// occurrence order (then sequence), and stores it (or removes it when the
/// customer has no events). A merge calls it for the survivor after moving the
/// source's events, so that nothing is counted twice.
pub async fn rebuild(
    txn: &DatabaseTransaction,
    profile: &Profile,
    customer_id: &str,
) -> Result<(), DbErr> {
    rebuild_at(
        txn,
        profile.reporting_currency,
        profile.clock.now(),
        customer_id,
    )
    .await
}

/// [`rebuild`] with the reporting currency and "now" given: what a test or a
/// tool without the service's state calls.
pub async fn rebuild_at(
    txn: &DatabaseTransaction,
    reporting_currency: Currency,
    now: DateTime<Utc>,
    customer_id: &str,
) -> Result<(), DbErr> {
    let query = Query::select()
        .columns([
            Alias::new("sequence"),
            Alias::new("customer_id"),
            Alias::new("commit_time"),
            Alias::new("payload"),
        ])
        .from(Alias::new(feed::TABLE))
        .and_where(Expr::col(Alias::new("entry_type")).eq(EntryType::Event as i16))
        .and_where(Expr::col(Alias::new("customer_id")).eq(customer_id))
        .order_by(Alias::new("occur_time"), sea_orm::Order::Asc)
        .order_by(Alias::new("sequence"), sea_orm::Order::Asc)
        .to_owned();
    let rows = <Row as sea_orm::FromQueryResult>::find_by_statement(StatementBuilder::build(
        &query,
        &txn.get_database_backend(),
    ))
    .all(txn)
    .await?;
    let at = micros::to_micros(now);
    let mut state = TraitState::default();
    for row in rows {
        if let Some(Change::Event(event)) = row.into_entry()?.change {
            state.apply(&event, reporting_currency, at);
        }
    }
    if state.is_empty() {
        delete_states(txn, &[customer_id.to_owned()]).await?;
    } else {
        save_states(txn, &[(customer_id, &state)], now).await?;
    }
    Ok(())
}
