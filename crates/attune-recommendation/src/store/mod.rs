//! Recommendation's tables: the migrations, the request log, the secrets, the
//! write lock, and one module of queries per table.

pub mod experiments;
pub mod interactions;
pub mod items;
pub mod migration;
pub mod sessions;

use attune_kit::db::WriteLock;
use attune_kit::idempotency::RequestLog;
use attune_kit::secrets::SecretStore;

/// Remembered outcomes of recommendation's retryable writes.
pub(crate) const REQUESTS: RequestLog = RequestLog::new("recommendation_requests");

/// Recommendation's generated secrets (the key of request fingerprints in
/// development).
pub(crate) const SECRETS: SecretStore = SecretStore::new("recommendation_secrets");

/// Recommendation's write lock: catalogue writes, the feed follower and
/// erasures hold it, so an erasure never interleaves with a batch that would
/// bring the customer's rows back.
pub(crate) const WRITE_LOCK: WriteLock = WriteLock::for_service(3);
