//! Session state in memory over its table: a bounded cache of customers'
//! sessions (a miss reads the table once), replaced whole when the follower
//! folds an event in, so the next answer reflects the last event. Entries
//! expire after a minute, so a replica whose follower is not the one holding
//! the feed's lease still sees other replicas' sessions that soon.

use std::sync::Arc;
use std::time::Duration;

use moka::sync::Cache;
use sea_orm::{ConnectionTrait, DbErr};

use crate::domain::Session;
use crate::store;

/// How long a session stays in memory without being replaced.
const TIME_TO_LIVE: Duration = Duration::from_secs(60);

/// The sessions held in memory.
pub struct Sessions {
    cache: Cache<String, Arc<Session>>,
}

impl Sessions {
    /// A cache of at most `capacity` customers.
    pub fn new(capacity: u64) -> Self {
        Self {
            cache: Cache::builder()
                .max_capacity(capacity)
                .time_to_live(TIME_TO_LIVE)
                .build(),
        }
    }

    /// The session of `customer_id` (empty when none is stored).
    pub async fn get(
        &self,
        db: &impl ConnectionTrait,
        customer_id: &str,
    ) -> Result<Arc<Session>, DbErr> {
        if let Some(session) = self.cache.get(customer_id) {
            return Ok(session);
        }
        let session = Arc::new(
            store::sessions::get(db, customer_id)
                .await?
                .unwrap_or_default(),
        );
        self.cache
            .insert(customer_id.to_owned(), Arc::clone(&session));
        Ok(session)
    }

    /// Holds `session` as the customer's from now on.
    pub fn set(&self, customer_id: &str, session: Session) {
        self.cache.insert(customer_id.to_owned(), Arc::new(session));
    }

    /// Forgets the customer's session (an erasure or a merge's source).
    pub fn forget(&self, customer_id: &str) {
        self.cache.invalidate(customer_id);
    }
}
