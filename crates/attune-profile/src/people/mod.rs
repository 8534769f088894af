//! ProfileService: profiles and their identities across channels, merges of
//! anonymous profiles into known ones, and zero-party data with per-field
//! provenance.
//!
//! `api` is the gRPC face, `convert` validates requests into commands,
//! `service` runs them (one write transaction each, idempotent by request id),
//! `merge` is the merge, `zero_party` the field table and its rules (no
//! storage), `profiles`, `identities` and `zero_party_store` the tables, and
//! `subject` what export and erasure need.

mod api;
mod convert;
mod identities;
mod merge;
mod profiles;
mod service;
pub(crate) mod subject;
mod zero_party;
mod zero_party_store;

pub use api::ProfileApi;

/// The customer id `customer_id` resolves to: itself, or the profile it was
/// merged into (a redirect always names the final survivor, so one read
/// suffices); `None` when no profile has it (unknown or erased). Events,
/// segments and the data-subject API address the surviving profile through it.
pub(crate) async fn resolve_customer_id(
    db: &impl sea_orm::ConnectionTrait,
    customer_id: &str,
) -> Result<Option<String>, sea_orm::DbErr> {
    Ok(profiles::find(db, customer_id)
        .await?
        .map(|row| row.merged_into.unwrap_or(row.customer_id)))
}
