//! The anonymous ids merged into a customer, which a customer principal may
//! reach as its own. Asked of every data-holding backend through its internal
//! `attune.privacy.v1.DataSubjectService/ListLinkedCustomerIds` (profile
//! answers; the others have none), so the gateway names no service. Cached
//! briefly: a merge shows within [`CACHE_FOR`], and a merge or erasure passing
//! through the gateway drops the entries of the ids it names at once.

use std::sync::Arc;
use std::time::Duration;

use attune_proto::privacy::v1::ListLinkedCustomerIdsRequest;
use attune_proto::privacy::v1::data_subject_service_client::DataSubjectServiceClient;
use moka::sync::Cache;
use tonic::Status;

use crate::backend::Backend;

/// How long a customer's linked ids are trusted without asking again.
const CACHE_FOR: Duration = Duration::from_secs(5);
/// Customers whose linked ids are kept.
const CACHED_CUSTOMERS: u64 = 100_000;
/// At most this many pages of linked ids are read (1000 each).
const MAX_PAGES: usize = 10;

/// Linked ids by customer.
#[derive(Clone)]
pub(crate) struct LinkedIds {
    backends: Arc<[Backend]>,
    cache: Cache<String, Arc<[String]>>,
}

impl std::fmt::Debug for LinkedIds {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LinkedIds").finish_non_exhaustive()
    }
}

impl LinkedIds {
    pub(crate) fn new(backends: &[Backend]) -> Self {
        Self {
            backends: backends
                .iter()
                .filter(|backend| backend.holds_personal_data())
                .cloned()
                .collect(),
            cache: Cache::builder()
                .max_capacity(CACHED_CUSTOMERS)
                .time_to_live(CACHE_FOR)
                .build(),
        }
    }

    /// Whether `id` is `customer`'s own or merged into it. A backend that
    /// cannot answer makes this an error (UNAVAILABLE): access is never
    /// granted on a guess.
    pub(crate) async fn belongs_to(&self, id: &str, customer: &str) -> Result<bool, Status> {
        if id == customer {
            return Ok(true);
        }
        let linked = match self.cache.get(customer) {
            Some(linked) => linked,
            None => {
                let linked = self.fetch(customer).await?;
                self.cache.insert(customer.to_owned(), Arc::clone(&linked));
                linked
            }
        };
        Ok(linked.iter().any(|linked| linked == id))
    }

    /// Forgets what is known about `customer` (a merge or erasure names it).
    pub(crate) fn forget(&self, customer: &str) {
        self.cache.invalidate(customer);
    }

    async fn fetch(&self, customer: &str) -> Result<Arc<[String]>, Status> {
        let mut linked = Vec::new();
        for backend in self.backends.iter() {
            let mut client = DataSubjectServiceClient::new(backend.transport());
            let mut page_token = String::new();
            for _ in 0..MAX_PAGES {
                let page = client
                    .list_linked_customer_ids(ListLinkedCustomerIdsRequest {
                        customer_id: customer.to_owned(),
                        page_size: 0,
                        page_token: page_token.clone(),
                    })
                    .await
                    .map_err(|status| {
                        tracing::warn!(
                            backend = backend.package(),
                            code = ?status.code(),
                            "cannot learn a customer's merged ids; refusing access to them"
                        );
                        Status::unavailable("access cannot be checked now; retry")
                    })?
                    .into_inner();
                linked.extend(page.customer_ids);
                if page.next_page_token.is_empty() || page.next_page_token == page_token {
                    break;
                }
                page_token = page.next_page_token;
            }
        }
        Ok(linked.into())
    }
}
