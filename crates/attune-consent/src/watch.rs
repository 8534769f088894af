//! Serving the change stream: consent's change table as an [`attune_kit::feed`].
//!
//! Positions follow commit order (every consent write holds the write lock from
//! before it takes a position until it commits); the kit's feed relies on that to
//! move a watcher's cursor past erased rows without skipping a later commit.

use std::sync::Arc;

use attune_kit::feed::{self, FeedStore, Positioned};
use sea_orm::DatabaseConnection;

use crate::domain::Change;
use crate::error::ConsentError;
use crate::store::changes;

pub use attune_kit::feed::StartAt;

/// One response of the stream: changes, or a heartbeat when `changes` is empty.
pub type Batch = feed::Batch<Change>;

/// The change stream of one process.
pub type ChangeFeed = feed::Feed<ChangeTable>;

/// The batches of one watcher; the stream ends UNAVAILABLE at shutdown.
pub type Changes = feed::BatchStream<Change, ConsentError>;

/// Why a watch cannot start.
#[derive(Debug, thiserror::Error)]
pub enum WatchError {
    #[error("after_position {asked} is beyond the newest change ({newest})")]
    BeyondNewest { asked: i64, newest: i64 },
    #[error(transparent)]
    Consent(#[from] ConsentError),
}

impl From<feed::StartError<ConsentError>> for WatchError {
    fn from(error: feed::StartError<ConsentError>) -> Self {
        match error {
            feed::StartError::BeyondNewest { asked, newest } => {
                Self::BeyondNewest { asked, newest }
            }
            feed::StartError::NegativeCursor(_) => Self::Consent(ConsentError::Invalid(vec![(
                "after_position".to_owned(),
                "must be 0 or a position from an earlier response".to_owned(),
            )])),
            feed::StartError::Store(error) => Self::Consent(error),
        }
    }
}

/// Consent's change table, read for the feed.
#[derive(Debug, Clone)]
pub struct ChangeTable {
    db: DatabaseConnection,
}

impl ChangeTable {
    /// The change table in `db`.
    pub fn new(db: DatabaseConnection) -> Self {
        Self { db }
    }
}

impl Positioned for Change {
    fn position(&self) -> i64 {
        self.position
    }
}

impl FeedStore for ChangeTable {
    type Row = Change;
    type Error = ConsentError;

    async fn newest_position(&self) -> Result<i64, ConsentError> {
        changes::newest_position(&self.db).await
    }

    async fn after(&self, cursor: i64, limit: u64) -> Result<Vec<Change>, ConsentError> {
        changes::after(&self.db, cursor, limit).await
    }
}

/// Consent's change feed over `db`; its streams end when `stop` (the server's
/// shutdown) fires.
pub fn change_feed(
    db: DatabaseConnection,
    settings: attune_kit::config::FeedConfig,
    stop: tokio_util::sync::CancellationToken,
) -> Arc<ChangeFeed> {
    feed::Feed::new(ChangeTable::new(db), settings, stop)
}
