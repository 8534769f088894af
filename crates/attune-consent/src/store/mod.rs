//! Consent's storage: entities, migrations and the queries the service runs, the
//! same on SQLite and PostgreSQL. The write path itself (write lock, snapshots,
//! idempotency, secrets, time columns) is the kit's; this module names consent's
//! instances of it.

pub mod audit;
pub(crate) mod changes;
pub mod entity;
pub(crate) mod erasure;
pub(crate) mod expiring;
pub(crate) mod ledger;
pub mod migration;
pub(crate) mod purposes;

use attune_kit::db::WriteLock;
use attune_kit::idempotency::RequestLog;
use attune_kit::secrets::SecretStore;

/// The lock every consent write holds until it commits (`attune_kit::db::begin_write`).
/// One writer at a time is what makes change-stream positions follow commit
/// order and lets each audit entry read the hash before it.
pub(crate) const WRITE_LOCK: WriteLock = WriteLock::for_service(1);

/// Consent's done requests, by request id (created by migration m0001, outcomes
/// JSON since m0004).
pub(crate) const REQUESTS: RequestLog = RequestLog::new("consent_requests");

/// Consent's generated secrets (created by migration m0003).
pub(crate) const SECRETS: SecretStore = SecretStore::new("consent_secrets");
