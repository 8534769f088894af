//! Session state in memory over its table: a bounded cache of customers'
//! sessions (a miss reads the table once), replaced whole when the follower
//! folds an event in, so the next answer reflects the last event.

use std::sync::Arc;

use moka::sync::Cache;
use sea_orm::{ConnectionTrait, DbErr};

use crate::domain::Session;
use crate::store;

/// The sessions held in memory.
pub struct Sessions {
    cache: Cache<String, Arc<Session>>,
}

impl Sessions {
    /// A cache of at most `capacity` customers.
    pub fn new(capacity: u64) -> Self {
        Self {
            cache: Cache::new(capacity),
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
