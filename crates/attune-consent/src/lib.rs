//! Consent: the purposes catalogue, the append-only consent ledger and the check
//! every other Attune service runs before it touches personal data.
//!
//! `api` is the gRPC face, `convert` translates between wire and domain, `service`
//! runs the operations, `domain` holds the rules (no tonic, no sea-orm), `store`
//! the entities, migrations and queries.

mod api;
mod convert;
pub mod domain;
mod error;
mod service;
pub mod store;

use attune_kit::config::Limits;
use attune_proto::consent::v1::consent_service_server::ConsentServiceServer;
use sea_orm::DatabaseConnection;

pub use api::ConsentApi;
pub use error::ConsentError;
pub use service::Consent;
pub use store::migration::Migrator;

/// The consent gRPC service over `db` (migrated with [`Migrator`]), with `limits` applied.
pub async fn grpc_service(
    db: DatabaseConnection,
    limits: &Limits,
) -> Result<ConsentServiceServer<ConsentApi>, ConsentError> {
    let consent = Consent::open(db).await?;
    Ok(attune_kit::with_limits!(
        ConsentServiceServer::new(ConsentApi::new(consent)),
        limits
    ))
}
