//! The services a page is composed from, found among the gateway's backends by
//! API package, each as a generated client over the backend's transport (a
//! direct call in one process, HTTP/2 to its pod otherwise).

use std::time::Duration;

use attune_kit::server::HttpService;
use attune_kit::telemetry::TraceContextInterceptor;
use attune_proto::consent::v1::consent_service_client::ConsentServiceClient;
use attune_proto::delivery::v1::delivery_service_client::DeliveryServiceClient;
use attune_proto::loyalty::v1::loyalty_service_client::LoyaltyServiceClient;
use attune_proto::loyalty::v1::offer_service_client::OfferServiceClient;
use attune_proto::profile::v1::event_service_client::EventServiceClient;
use attune_proto::profile::v1::profile_service_client::ProfileServiceClient;
use attune_proto::profile::v1::segment_service_client::SegmentServiceClient;
use attune_proto::recommendation::v1::recommendation_service_client::RecommendationServiceClient;
use tonic::Request;
use tonic::service::interceptor::InterceptedService;

use crate::backend::Backend;

pub(crate) const PROFILE: &str = "attune.profile.v1";
pub(crate) const RECOMMENDATION: &str = "attune.recommendation.v1";
pub(crate) const LOYALTY: &str = "attune.loyalty.v1";
pub(crate) const DELIVERY: &str = "attune.delivery.v1";
pub(crate) const CONSENT: &str = "attune.consent.v1";

type Transport = InterceptedService<HttpService, TraceContextInterceptor>;

/// The transports of the services a page uses; `None` for one not deployed
/// behind this gateway, whose parts are then unavailable.
#[derive(Clone, Debug, Default)]
pub(crate) struct PageBackends {
    profile: Option<HttpService>,
    recommendation: Option<HttpService>,
    loyalty: Option<HttpService>,
    delivery: Option<HttpService>,
    consent: Option<HttpService>,
}

fn find(backends: &[Backend], package: &str) -> Option<HttpService> {
    backends
        .iter()
        .find(|backend| backend.package() == package)
        .map(Backend::transport)
}

fn intercepted(transport: &HttpService) -> Transport {
    InterceptedService::new(transport.clone(), TraceContextInterceptor)
}

impl PageBackends {
    pub(crate) fn new(backends: &[Backend]) -> Self {
        Self {
            profile: find(backends, PROFILE),
            recommendation: find(backends, RECOMMENDATION),
            loyalty: find(backends, LOYALTY),
            delivery: find(backends, DELIVERY),
            consent: find(backends, CONSENT),
        }
    }

    /// The consent backend's transport, for the cached checker.
    pub(crate) fn consent(backends: &[Backend]) -> Option<HttpService> {
        find(backends, CONSENT)
    }

    /// A consent client (the catalogue).
    pub(crate) fn consent_client(&self) -> Option<ConsentServiceClient<Transport>> {
        self.consent
            .as_ref()
            .map(|t| ConsentServiceClient::new(intercepted(t)))
    }

    pub(crate) fn profile(&self) -> Option<ProfileServiceClient<Transport>> {
        self.profile
            .as_ref()
            .map(|t| ProfileServiceClient::new(intercepted(t)))
    }

    pub(crate) fn segments(&self) -> Option<SegmentServiceClient<Transport>> {
        self.profile
            .as_ref()
            .map(|t| SegmentServiceClient::new(intercepted(t)))
    }

    pub(crate) fn events(&self) -> Option<EventServiceClient<Transport>> {
        self.profile
            .as_ref()
            .map(|t| EventServiceClient::new(intercepted(t)))
    }

    pub(crate) fn recommendation(&self) -> Option<RecommendationServiceClient<Transport>> {
        self.recommendation
            .as_ref()
            .map(|t| RecommendationServiceClient::new(intercepted(t)))
    }

    pub(crate) fn loyalty(&self) -> Option<LoyaltyServiceClient<Transport>> {
        self.loyalty
            .as_ref()
            .map(|t| LoyaltyServiceClient::new(intercepted(t)))
    }

    pub(crate) fn offers(&self) -> Option<OfferServiceClient<Transport>> {
        self.loyalty
            .as_ref()
            .map(|t| OfferServiceClient::new(intercepted(t)))
    }

    pub(crate) fn delivery(&self) -> Option<DeliveryServiceClient<Transport>> {
        self.delivery
            .as_ref()
            .map(|t| DeliveryServiceClient::new(intercepted(t)))
    }
}

/// How much longer than the gateway waits the backend is told it may take: the
/// gateway's own timer must fire first, so a late answer reads as late
/// (DEADLINE_EXCEEDED) rather than as the transport's timeout error, which a
/// channel to a pod reports like a broken connection.
const BACKEND_SLACK: Duration = Duration::from_millis(50);

/// A backend request that tells the backend how long the gateway will wait.
pub(crate) fn timed<T>(message: T, budget: Duration) -> Request<T> {
    let mut request = Request::new(message);
    request.set_timeout(budget + BACKEND_SLACK);
    request
}
