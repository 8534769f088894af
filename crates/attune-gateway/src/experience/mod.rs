//! `attune.gateway.v1.GatewayService`: one page's whole experience in one call,
//! and what Attune holds about a customer and why.
//!
//! A page is parsed once ([`request`]), the customer's consent checked once with
//! the kit's cached checker ([`consent`]), then every part asks its service in
//! parallel, each within its budget ([`attune_kit::peer::within`]): [`profile`],
//! [`recommendations`], [`loyalty`], [`delivery`] and, at a store's till,
//! [`store`]. A part's budget is the smaller of the caller's `part_budget` and
//! what remains of the caller's deadline, so the call answers in time whatever
//! a service does; a service that fails or is late degrades its part only
//! ([`status`]). Each part maps its service's answer to the gateway's own view
//! messages, field by field.

mod backends;
mod consent;
mod delivery;
mod explain;
mod ladder;
mod loyalty;
mod profile;
mod recommendations;
mod request;
mod status;
mod store;
mod survivor;

use std::time::Duration;

use attune_kit::clock::Clock;
use attune_kit::config::ConsentCheckerConfig;
use attune_kit::consent::ConsentChecker;
use attune_kit::peer::{Peer, budget, caller_deadline, within};
use attune_proto::gateway::v1 as pb;
use attune_proto::gateway::v1::gateway_service_server::GatewayService;
use attune_proto::profile::v1 as profile_pb;
use chrono::{DateTime, Utc};
use tokio::time::Instant;
use tonic::{Code, Request, Response, Status};

use crate::access_log::{AccessLog, Caller, read_of};
use crate::backend::Backend;
use crate::data_subject::DataSubjectRequests;
use crate::policy::Principal;
use backends::{PageBackends, timed};
use consent::Grants;
use ladder::LadderCache;
use request::{Identification, Page, PageRequest};
use survivor::Survivors;

/// Time kept back from the caller's deadline to compose and send the answer:
/// 10 ms, plus 5% of what remains (a busy machine takes longer to answer).
fn answer_margin(deadline: Option<Instant>) -> Duration {
    let remaining = deadline.map_or(Duration::ZERO, |deadline| {
        deadline.saturating_duration_since(Instant::now())
    });
    Duration::from_millis(10) + remaining / 20
}

/// The gateway's own API.
#[derive(Clone, Debug)]
pub struct Experience {
    backends: PageBackends,
    checker: Option<ConsentChecker>,
    subjects: DataSubjectRequests,
    survivors: Survivors,
    ladder: LadderCache,
    /// Where a page records the read of a customer the request did not name.
    access_log: Option<AccessLog>,
    clock: Clock,
}

impl Experience {
    /// The experience over `backends`, checking consent with a cached checker
    /// over the consent backend (none when consent is not among them: then every
    /// part that needs consent is omitted). Run [`Self::consent_checker`]'s
    /// `follow` in the background.
    pub fn new(backends: &[Backend], config: &ConsentCheckerConfig, clock: Clock) -> Self {
        let checker = PageBackends::consent(backends).map(|transport| {
            ConsentChecker::new(Peer::local(transport), config).with_clock(clock.clone())
        });
        Self {
            backends: PageBackends::new(backends),
            checker,
            subjects: DataSubjectRequests::new(backends),
            survivors: Survivors::default(),
            ladder: LadderCache::default(),
            access_log: None,
            clock,
        }
    }

    /// Records in `access_log` each page composed for a customer the request
    /// did not name (identified by card or app code at a till, or the survivor
    /// of a merged id): the policy records only the ids a request names.
    pub fn recording_reads(mut self, access_log: AccessLog) -> Self {
        self.access_log = Some(access_log);
        self
    }

    /// The cached checker, to follow consent's change stream.
    pub fn consent_checker(&self) -> Option<ConsentChecker> {
        self.checker.clone()
    }

    async fn grants(&self, customer_id: Option<&str>) -> Grants {
        match &self.checker {
            Some(checker) => Grants::check(checker, customer_id).await,
            None => Grants::unavailable(customer_id),
        }
    }

    /// The customer a STORE page is for: the profile the card or app code the
    /// customer showed is linked to.
    async fn identify(
        &self,
        identification: &Identification,
        deadline: Option<Instant>,
        part_budget: Duration,
    ) -> Result<String, Status> {
        let (identity_type, value) = match identification {
            Identification::LoyaltyCard(card) => {
                (profile_pb::IdentityType::LoyaltyCard, card.clone())
            }
            Identification::AppToken(token) => (profile_pb::IdentityType::DeviceId, token.clone()),
        };
        let Some(mut profiles) = self.backends.profile() else {
            return Err(Status::unavailable(
                "the customer cannot be identified now; retry",
            ));
        };
        let budget = budget(part_budget, deadline, answer_margin(deadline));
        let request = profile_pb::LookupProfileRequest {
            identity: Some(profile_pb::Identity {
                identity_type: identity_type.into(),
                value,
                channel: attune_proto::common::v1::Channel::Store.into(),
                link_time: None,
            }),
        };
        let answer = within(budget, profiles.lookup_profile(timed(request, budget))).await;
        if answer
            .refusal()
            .is_some_and(|refusal| refusal.code() == Code::NotFound)
        {
            return Err(Status::not_found(
                "no customer has this card or app code; ask the customer to sign up or use another",
            ));
        }
        answer
            .answered()
            .and_then(|answer| answer.profile)
            .map(|profile| profile.customer_id)
            .ok_or_else(|| Status::unavailable("the customer cannot be identified now; retry"))
    }

    async fn page(
        &self,
        request: PageRequest,
        principal: Option<&Principal>,
        deadline: Option<Instant>,
    ) -> Result<pb::GetPageExperienceResponse, Status> {
        let customer_id = match request
            .store
            .as_ref()
            .and_then(|s| s.identification.as_ref())
        {
            // Profile's lookup answers with the surviving profile already.
            Some(identification) => Some(
                self.identify(identification, deadline, request.part_budget)
                    .await?,
            ),
            None => match &request.customer {
                Some(customer) => Some(
                    self.survivors
                        .resolve(
                            customer.as_ref(),
                            principal,
                            &self.backends,
                            budget(request.part_budget, deadline, answer_margin(deadline)),
                        )
                        .await,
                ),
                None => None,
            },
        };
        let customer = customer_id.as_deref();
        if let Some(customer) = customer
            && request.customer.as_ref().map(AsRef::as_ref) != Some(customer)
        {
            self.record_read(customer, principal).await;
        }
        let grants = self.grants(customer).await;
        let page = Composition {
            request: &request,
            customer,
            grants: &grants,
            backends: &self.backends,
            ladder: &self.ladder,
            deadline,
            now: self.clock.now(),
        };
        let (profile, recommendations, loyalty, delivery, store) = tokio::join!(
            profile::compose(&page),
            recommendations::compose(&page),
            loyalty::compose(&page),
            delivery::compose(&page),
            store::compose(&page),
        );
        if request.page == Page::Store {
            // Who looked at which customer is for the data-access log; the log line
            // names the store only, never the customer.
            tracing::info!(
                store = request.store.as_ref().map(|s| s.store_id.as_str()),
                "a store associate viewed a customer"
            );
        }
        Ok(pb::GetPageExperienceResponse {
            customer_id: customer.unwrap_or_default().to_owned(),
            profile: Some(profile),
            recommendations,
            loyalty: Some(loyalty),
            delivery: Some(delivery),
            store: Some(store),
            consents: grants.report(),
            experience_id: uuid::Uuid::new_v4().to_string(),
            compose_time: Some(attune_kit::types::time::to_proto(page.now)),
        })
    }
}

impl Experience {
    async fn record_read(&self, customer: &str, principal: Option<&Principal>) {
        let (Some(log), Some(read), Ok(customer)) = (
            &self.access_log,
            read_of(PAGE_RPC),
            attune_kit::types::CustomerId::parse(customer),
        ) else {
            return;
        };
        let caller = principal.map_or_else(Caller::development, Principal::as_caller);
        log.record(read.by(caller, customer)).await;
    }
}

/// The page's RPC, as the data-access log names it.
const PAGE_RPC: &str = "attune.gateway.v1.GatewayService/GetPageExperience";

/// What every part of one page shares.
pub(crate) struct Composition<'a> {
    request: &'a PageRequest,
    /// The customer the page is for; `None` for a visitor without a profile.
    customer: Option<&'a str>,
    grants: &'a Grants,
    backends: &'a PageBackends,
    /// Loyalty's tier ladder, shared by every page.
    ladder: &'a LadderCache,
    deadline: Option<Instant>,
    now: DateTime<Utc>,
}

impl Composition<'_> {
    /// The time a part's call may take from now.
    fn budget(&self) -> Duration {
        budget(
            self.request.part_budget,
            self.deadline,
            answer_margin(self.deadline),
        )
    }
}

#[tonic::async_trait]
impl GatewayService for Experience {
    async fn get_page_experience(
        &self,
        request: Request<pb::GetPageExperienceRequest>,
    ) -> Result<Response<pb::GetPageExperienceResponse>, Status> {
        let deadline = caller_deadline(request.metadata());
        let principal = request.extensions().get::<Principal>().cloned();
        let request = PageRequest::try_from(request.into_inner())?;
        self.page(request, principal.as_ref(), deadline)
            .await
            .map(Response::new)
    }

    async fn explain_data_use(
        &self,
        request: Request<pb::ExplainDataUseRequest>,
    ) -> Result<Response<pb::ExplainDataUseResponse>, Status> {
        let (metadata, _, request) = request.into_parts();
        let customer = explain::parse(request)?;
        explain::explain(
            &self.subjects,
            &self.backends,
            self.checker.as_ref(),
            customer,
            &metadata,
            self.clock.now(),
        )
        .await
        .map(Response::new)
    }
}
