//! Where consent's own cached checker reads consent: straight from the store and
//! the change feed of this process, not over gRPC to itself.
//!
//! A load reads, in one snapshot, the stream position and the decision that
//! counts per consent-based purpose: what the checker keeps, and nothing of the
//! ledger records' proof. The stream is the feed every watcher gets, converted to
//! the wire messages the checker applies (summaries of decisions, no proof).

use std::sync::Arc;

use attune_kit::consent::{ChangeStream, ConsentSource, CustomerState, LoadError};
use attune_kit::error::ApiError;
use attune_kit::feed::StartAt;
use futures::future::BoxFuture;
use sea_orm::DatabaseConnection;
use tokio_stream::StreamExt;
use tonic::Status;

use crate::convert;
use crate::domain::CustomerId;
use crate::error::ConsentError;
use crate::store::{changes, ledger, purposes};
use crate::watch::ChangeFeed;

/// Consent's store and feed, as a [`ConsentSource`] for its own checker.
#[derive(Debug)]
pub struct LocalSource {
    db: DatabaseConnection,
    feed: Arc<ChangeFeed>,
}

impl LocalSource {
    /// A source over consent's database and this process's change feed.
    pub fn new(db: DatabaseConnection, feed: Arc<ChangeFeed>) -> Self {
        Self { db, feed }
    }

    async fn read(&self, customer: &CustomerId) -> Result<CustomerState, ConsentError> {
        let codes = purposes::consent_based_codes(&self.db).await?;
        let txn = attune_kit::db::begin_snapshot(&self.db).await?;
        let position = changes::newest_position(&txn).await?;
        let purposes = ledger::current(&txn, customer, &codes).await?;
        txn.commit().await?;
        Ok(CustomerState { position, purposes })
    }
}

impl ConsentSource for LocalSource {
    fn load<'a>(&'a self, customer_id: &'a str) -> BoxFuture<'a, Result<CustomerState, LoadError>> {
        Box::pin(async move {
            let Ok(customer) = CustomerId::parse(customer_id) else {
                return Err(LoadError::InvalidCustomer);
            };
            self.read(&customer).await.map_err(|error| {
                tracing::warn!(%error, "cannot load consent state");
                LoadError::Unavailable
            })
        })
    }

    fn watch(&self, after: Option<i64>) -> BoxFuture<'_, Result<ChangeStream, Status>> {
        Box::pin(async move {
            let start = after.map_or(StartAt::Newest, StartAt::After);
            let batches = self
                .feed
                .watch(start)
                .await
                .map_err(|error| Status::from(ApiError::from(error)))?;
            let responses = batches.map(|batch| match batch {
                Ok(batch) => Ok(convert::watch_response(batch)),
                Err(error) => Err(Status::from(ApiError::from(error))),
            });
            let stream: ChangeStream = Box::pin(responses);
            Ok(stream)
        })
    }
}
