//! Loyalty's tier benefits, asked with a short time budget: free shipping for
//! the customer's tier comes from `GetAccount(..).account.tier_benefits
//! .free_shipping` (an empty method list covers every method). Anything but an
//! answer in time (no loyalty in this deployment, UNIMPLEMENTED, UNAVAILABLE, a
//! timeout) ignores the benefits, and the caller says so.
//!
//! Every GetDeliveryOptions asks for them (every page of a storefront does), and
//! loyalty's answer takes several reads: [`TierBenefitsCache`] keeps each
//! customer's answer for [`TIER_BENEFITS_FOR`], so a tier reached or lost shows
//! in delivery's prices within that long. Only answers are kept, never a
//! failure to get one.

use std::time::Duration;

use moka::sync::Cache;

use attune_kit::peer::Peer;
use attune_kit::telemetry::TraceContextInterceptor;
use attune_kit::types::DeliveryMethod;
use attune_proto::delivery::v1 as pb;
use attune_proto::loyalty::v1 as loyalty_pb;
use attune_proto::loyalty::v1::loyalty_service_client::LoyaltyServiceClient;
use tonic::Code;

/// What loyalty said about a customer's free shipping.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TierBenefits {
    /// Whether the benefits were applied, and if not why.
    pub status: pb::TierBenefitsStatus,
    /// The methods shipped free; `None` when the tier gives no free shipping.
    pub free_shipping: Option<Vec<DeliveryMethod>>,
}

impl TierBenefits {
    fn ignored(status: pb::TierBenefitsStatus) -> Self {
        Self {
            status,
            free_shipping: None,
        }
    }

    /// Whether `method` ships free for the customer's tier.
    pub fn ships_free(&self, method: DeliveryMethod) -> bool {
        self.free_shipping
            .as_ref()
            .is_some_and(|methods| methods.is_empty() || methods.contains(&method))
    }
}

/// How long a customer's tier benefits are used without asking loyalty again.
pub const TIER_BENEFITS_FOR: Duration = Duration::from_secs(5);
/// Customers whose tier benefits are kept.
const CACHED_CUSTOMERS: u64 = 100_000;

/// Customers' tier benefits as loyalty last answered, each for
/// [`TIER_BENEFITS_FOR`]. Cheap to clone.
#[derive(Clone)]
pub struct TierBenefitsCache {
    answers: Cache<String, TierBenefits>,
}

impl std::fmt::Debug for TierBenefitsCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TierBenefitsCache").finish_non_exhaustive()
    }
}

impl Default for TierBenefitsCache {
    fn default() -> Self {
        Self {
            answers: Cache::builder()
                .max_capacity(CACHED_CUSTOMERS)
                .time_to_live(TIER_BENEFITS_FOR)
                .build(),
        }
    }
}

impl TierBenefitsCache {
    /// The customer's tier benefits: as loyalty answered within the last
    /// [`TIER_BENEFITS_FOR`], or asked now within `budget`.
    pub async fn get(
        &self,
        loyalty: Option<&Peer>,
        customer_id: &str,
        budget: Duration,
    ) -> TierBenefits {
        if let Some(known) = self.answers.get(customer_id) {
            return known;
        }
        let answer = tier_benefits(loyalty, customer_id, budget).await;
        if matches!(
            answer.status,
            pb::TierBenefitsStatus::Applied | pb::TierBenefitsStatus::NoAccount
        ) {
            self.answers.insert(customer_id.to_owned(), answer.clone());
        }
        answer
    }
}

/// The customer's tier benefits, within `budget`.
pub async fn tier_benefits(
    loyalty: Option<&Peer>,
    customer_id: &str,
    budget: Duration,
) -> TierBenefits {
    if customer_id.is_empty() {
        return TierBenefits::ignored(pb::TierBenefitsStatus::NoCustomer);
    }
    let Some(peer) = loyalty else {
        return TierBenefits::ignored(pb::TierBenefitsStatus::Unavailable);
    };
    let mut client = LoyaltyServiceClient::with_interceptor(peer.clone(), TraceContextInterceptor);
    let request = loyalty_pb::GetAccountRequest {
        customer_id: customer_id.to_owned(),
    };
    match tokio::time::timeout(budget, client.get_account(request)).await {
        Ok(Ok(response)) => {
            let free = response
                .into_inner()
                .account
                .and_then(|a| a.tier_benefits)
                .and_then(|b| b.free_shipping)
                .map(|f| {
                    f.delivery_methods
                        .into_iter()
                        .filter_map(|m| DeliveryMethod::from_proto(m).ok())
                        .collect()
                });
            TierBenefits {
                status: pb::TierBenefitsStatus::Applied,
                free_shipping: free,
            }
        }
        Ok(Err(status)) if status.code() == Code::NotFound => {
            TierBenefits::ignored(pb::TierBenefitsStatus::NoAccount)
        }
        Ok(Err(status)) => {
            tracing::debug!(code = ?status.code(), "loyalty's tier benefits ignored");
            TierBenefits::ignored(pb::TierBenefitsStatus::Unavailable)
        }
        Err(_) => {
            tracing::debug!("loyalty's tier benefits ignored: no answer in time");
            TierBenefits::ignored(pb::TierBenefitsStatus::Unavailable)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_shipping_without_methods_covers_every_method() {
        let every = TierBenefits {
            status: pb::TierBenefitsStatus::Applied,
            free_shipping: Some(Vec::new()),
        };
        assert!(DeliveryMethod::ALL.iter().all(|m| every.ships_free(*m)));
        let standard_only = TierBenefits {
            status: pb::TierBenefitsStatus::Applied,
            free_shipping: Some(vec![DeliveryMethod::HomeStandard]),
        };
        assert!(standard_only.ships_free(DeliveryMethod::HomeStandard));
        assert!(!standard_only.ships_free(DeliveryMethod::HomeSameDay));
        let none = TierBenefits::ignored(pb::TierBenefitsStatus::NoAccount);
        assert!(!none.ships_free(DeliveryMethod::HomeStandard));
    }

    #[tokio::test]
    async fn without_loyalty_or_a_customer_the_benefits_are_ignored_and_say_why() {
        let budget = Duration::from_millis(50);
        assert_eq!(
            tier_benefits(None, "", budget).await.status,
            pb::TierBenefitsStatus::NoCustomer
        );
        assert_eq!(
            tier_benefits(None, "c-1", budget).await.status,
            pb::TierBenefitsStatus::Unavailable
        );
        // A loyalty address where nothing listens: UNAVAILABLE, within the budget.
        let peer = Peer::remote("http://127.0.0.1:9").expect("a well-formed address");
        let started = std::time::Instant::now();
        let answer = tier_benefits(Some(&peer), "c-1", budget).await;
        assert_eq!(answer.status, pb::TierBenefitsStatus::Unavailable);
        assert!(started.elapsed() < Duration::from_secs(2));
    }
}
