//! Profile's tables: the migrations, and the tables every part of the service
//! shares (the request log, the secrets, the feed, the tombstones).

pub mod migration;

use attune_kit::db::WriteLock;
use attune_kit::idempotency::RequestLog;
use attune_kit::secrets::SecretStore;

/// Remembered outcomes of profile's retryable writes.
pub(crate) const REQUESTS: RequestLog = RequestLog::new("profile_requests");

/// Profile's generated secrets (the pseudonymisation key in development).
pub(crate) const SECRETS: SecretStore = SecretStore::new("profile_secrets");

/// Profile's write lock: every write holds it from its first statement to its
/// commit, so feed sequences follow commit order.
pub(crate) const WRITE_LOCK: WriteLock = WriteLock::for_service(2);
