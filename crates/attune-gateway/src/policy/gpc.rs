//! Global Privacy Control: a request carrying `sec-gpc: 1` records the
//! customer's opt-out of sale and sharing at consent
//! (`ApplyGlobalPrivacyControl`), whichever RPC it arrives on. Each customer is
//! recorded once per [`REMEMBER_FOR`]: repeated calls write nothing more, here
//! or at consent (which itself records a withdrawal only once).

use std::time::Duration;

use attune_kit::types::CustomerId;
use attune_proto::consent::v1::ApplyGlobalPrivacyControlRequest;
use attune_proto::consent::v1::consent_service_client::ConsentServiceClient;
use moka::sync::Cache;

use crate::backend::Backend;

/// The contract that records the signal.
const CONSENT_PACKAGE: &str = "attune.consent.v1";
/// How long a customer's signal counts as recorded.
const REMEMBER_FOR: Duration = Duration::from_secs(3600);
/// Customers remembered.
const REMEMBERED_CUSTOMERS: u64 = 1_000_000;

/// Records GPC signals at consent.
#[derive(Clone)]
pub(crate) struct GpcRecorder {
    consent: Option<Backend>,
    recorded: Cache<String, ()>,
}

impl std::fmt::Debug for GpcRecorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GpcRecorder").finish_non_exhaustive()
    }
}

impl GpcRecorder {
    pub(crate) fn new(backends: &[Backend]) -> Self {
        Self {
            consent: backends
                .iter()
                .find(|backend| backend.package() == CONSENT_PACKAGE)
                .cloned(),
            recorded: Cache::builder()
                .max_capacity(REMEMBERED_CUSTOMERS)
                .time_to_live(REMEMBER_FOR)
                .build(),
        }
    }

    /// Records the signal for `customer` unless it was recorded lately. Never
    /// fails the call: a consent that cannot be reached is logged and asked
    /// again on the next signalled call.
    pub(crate) async fn record(&self, customer: &str) {
        let Some(consent) = &self.consent else { return };
        if CustomerId::parse(customer).is_err() || self.recorded.contains_key(customer) {
            return;
        }
        let answer = ConsentServiceClient::new(consent.transport())
            .apply_global_privacy_control(ApplyGlobalPrivacyControlRequest {
                customer_id: customer.to_owned(),
            })
            .await;
        match answer {
            Ok(_) => self.recorded.insert(customer.to_owned(), ()),
            Err(status) => tracing::warn!(
                code = ?status.code(),
                "cannot record a Global Privacy Control signal now; will on the next call"
            ),
        }
    }
}
