//! Session state in memory over its table: a bounded cache of customers'
//! sessions (a miss reads the table once), replaced whole when the follower
//! folds an event in, so the next answer reflects the last event. The
//! follower runs on one replica at a time (it holds the feed's lease); the
//! others drop a session from their cache when its change reaches them through
//! the change log (`crate::replicas`, within `recommendation.replica_refresh`),
//! and read it again. Entries also expire after a minute without use.

use std::sync::Arc;
use std::time::Duration;

use moka::sync::Cache;
use sea_orm::{ConnectionTrait, DbErr};

use crate::domain::Session;
use crate::replicas::Pseudonyms;
use crate::store;

/// How long a session stays in memory without being replaced.
const TIME_TO_LIVE: Duration = Duration::from_secs(60);

/// The sessions held in memory.
pub struct Sessions {
    /// By the customer's pseudonym, the name other replicas drop it by.
    cache: Cache<String, Arc<Session>>,
    names: Pseudonyms,
}

impl Sessions {
    /// A cache of at most `capacity` customers.
    pub fn new(capacity: u64, names: Pseudonyms) -> Self {
        Self {
            cache: Cache::builder()
                .max_capacity(capacity)
                .time_to_live(TIME_TO_LIVE)
                .build(),
            names,
        }
    }

    /// The session of `customer_id` (empty when none is stored).
    pub async fn get(
        &self,
        db: &impl ConnectionTrait,
        customer_id: &str,
    ) -> Result<Arc<Session>, DbErr> {
        let name = self.names.of(customer_id);
        if let Some(session) = self.cache.get(&name) {
            return Ok(session);
        }
        let session = Arc::new(
            store::sessions::get(db, customer_id)
                .await?
                .unwrap_or_default(),
        );
        self.cache.insert(name, Arc::clone(&session));
        Ok(session)
    }

    /// Holds `session` as the customer's from now on.
    pub fn set(&self, customer_id: &str, session: Session) {
        self.cache
            .insert(self.names.of(customer_id), Arc::new(session));
    }

    /// Forgets the customer's session (an erasure or a merge's source).
    pub fn forget(&self, customer_id: &str) {
        self.cache.invalidate(&self.names.of(customer_id));
    }

    /// Forgets the session of the customer named `name` (a [`Pseudonyms`]
    /// name, as another replica's change gives it).
    pub fn forget_named(&self, name: &str) {
        self.cache.invalidate(name);
    }

    /// Forgets every session (they are read again as needed).
    pub fn forget_all(&self) {
        self.cache.invalidate_all();
    }
}
