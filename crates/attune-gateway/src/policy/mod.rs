//! The public port's policy, in front of every call it answers (routed
//! services, the gateway's own, health and reflection), before any service
//! validates anything:
//!
//! 1. the method's rule from [`table::RULES`]; none: PERMISSION_DENIED;
//! 2. authentication ([`authenticate`]): a JWT bearer token or an API key;
//!    any failure is UNAUTHENTICATED with one generic message;
//! 3. the caller's rate limit (under its network address when it has no
//!    credentials: development mode, health and reflection, refused
//!    credentials), then its scopes (PERMISSION_DENIED);
//! 4. for a method about customers, the ids read from the first request
//!    message ([`first_message`], [`wire`]): a customer principal may name only
//!    itself and the anonymous ids merged into it ([`linked`]), a store device
//!    only the customer identified at its till ([`clienteling`]); each
//!    customer's own rate limit;
//! 5. `sec-gpc: 1` records the customer's opt-out of sale and sharing ([`gpc`])
//!    once the service has accepted the request (not on INVALID_ARGUMENT);
//! 6. a default deadline when the caller sent none, and the call goes on with
//!    its original bytes, the principal in its extensions and the credentials
//!    removed.
//!
//! Before all of these the call takes a place among the calls in progress (or
//! among the long-lived streams), shed beyond it, and holds it until its answer
//! has been sent, a stream's last message included.
//!
//! With no authentication configured the gateway is in development mode:
//! every call is allowed, and only a loopback address may be served.

mod api_keys;
mod authenticate;
mod clienteling;
mod descriptors;
mod first_message;
mod gpc;
mod jwt;
mod linked;
mod principal;
mod protection;
pub mod table;
mod wire;

use std::convert::Infallible;
use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use attune_kit::clock::Clock;
use attune_kit::config::Config;
use attune_kit::server::{GrpcServer, HttpService};
use attune_kit::types::CustomerId;
use tonic::Status;
use tonic::body::Body;
use tonic::transport::server::TcpConnectInfo;

use crate::access_log::{Access as LoggedAccess, AccessLog, Read, read_of};
use crate::backend::Backend;
use authenticate::Authenticator;
use descriptors::{CompiledRule, CompiledTable};
use first_message::FirstMessage;
use gpc::GpcRecorder;
use linked::LinkedIds;
use protection::{Permitted, Protection};
use table::Access;

pub use jwt::KeyError;
pub use principal::{Principal, Scopes};

/// How often idle rate-limit buckets are dropped.
const FORGET_IDLE_EVERY: Duration = Duration::from_secs(60);

/// Why the gateway refuses to start.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    /// No authentication is configured and the address is not loopback.
    #[error(
        "refusing to serve {address} without authentication: configure security.jwt \
         (a key, issuer and audience) or security.api_keys, or listen on a loopback \
         address such as 127.0.0.1 for development"
    )]
    DevelopmentModeNotLoopback {
        /// The address asked for.
        address: SocketAddr,
    },
    /// A key or setting is unusable.
    #[error(transparent)]
    Key(#[from] KeyError),
    /// The policy table does not match the contracts.
    #[error("the policy table does not match the contracts: {0}")]
    Table(String),
}

/// The policy of one public port.
#[derive(Clone)]
pub struct Policy {
    state: Arc<State>,
}

impl std::fmt::Debug for Policy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Policy")
            .field("development_mode", &self.development_mode())
            .finish_non_exhaustive()
    }
}

struct State {
    table: CompiledTable,
    /// `None`: development mode.
    authenticator: Option<Authenticator>,
    linked: LinkedIds,
    gpc: GpcRecorder,
    access_log: AccessLog,
    protection: Protection,
    max_message_bytes: usize,
    /// `grpc-timeout` given to a call that has none.
    default_timeout: http::HeaderValue,
}

/// What a policy is made of that comes from configuration alone, checked
/// before anything starts.
pub struct PolicySettings {
    table: CompiledTable,
    authenticator: Option<Authenticator>,
    protection: Protection,
    max_message_bytes: usize,
    default_timeout: http::HeaderValue,
}

impl std::fmt::Debug for PolicySettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PolicySettings")
            .field("development_mode", &self.authenticator.is_none())
            .finish_non_exhaustive()
    }
}

impl PolicySettings {
    /// The policy `config` describes for a port at `listen`. Without
    /// authentication configured it is development mode, which refuses any
    /// address but loopback.
    pub fn load(config: &Config, listen: SocketAddr, clock: Clock) -> Result<Self, PolicyError> {
        let authenticator = Authenticator::from_config(&config.security, clock)?;
        if authenticator.is_none() {
            if !listen.ip().is_loopback() {
                return Err(PolicyError::DevelopmentModeNotLoopback { address: listen });
            }
            tracing::warn!(
                %listen,
                "DEVELOPMENT MODE: no authentication is configured (security.jwt, \
                 security.api_keys); every call is allowed, on loopback only"
            );
        }
        let millis = config
            .limits
            .request_timeout
            .as_millis()
            .clamp(1, 99_999_999);
        Ok(Self {
            table: descriptors::compile().map_err(PolicyError::Table)?,
            authenticator,
            protection: Protection::from_config(&config.security.protection)?,
            max_message_bytes: config.limits.max_message_bytes,
            default_timeout: http::HeaderValue::from_str(&format!("{millis}m"))
                .expect("digits and a unit are a valid header value"),
        })
    }

    /// The policy in front of `backends` (which answer its questions about
    /// merged ids and record privacy signals), recording every read of a
    /// customer's data it lets through in `access_log`.
    pub fn in_front_of(self, backends: &[Backend], access_log: AccessLog) -> Policy {
        let Self {
            table,
            authenticator,
            protection,
            max_message_bytes,
            default_timeout,
        } = self;
        Policy {
            state: Arc::new(State {
                table,
                authenticator,
                linked: LinkedIds::new(backends),
                gpc: GpcRecorder::new(backends),
                access_log,
                protection,
                max_message_bytes,
                default_timeout,
            }),
        }
    }
}

impl Policy {
    /// Whether every call is allowed (no authentication configured).
    pub fn development_mode(&self) -> bool {
        self.state.authenticator.is_none()
    }

    /// Puts this policy in front of every call `server` answers.
    pub fn protect(self, server: &mut GrpcServer) {
        let state = Arc::clone(&self.state);
        server.spawn_background("gateway-rate-limit-cleanup", move |cancel| async move {
            loop {
                tokio::select! {
                    () = cancel.cancelled() => return,
                    () = tokio::time::sleep(FORGET_IDLE_EVERY) => state.protection.forget_idle(),
                }
            }
        });
        server.front_every_call(move |inner| {
            HttpService::new(PolicyService {
                state: self.state,
                inner,
            })
        });
    }
}

/// An encoded request of `method` (`package.Service/Method`) naming `customer`
/// at every field where the policy table says the method names customers, and
/// nothing else; `None` for a method without such fields. For tests and tools
/// that exercise the table (the authorization matrix is generated from it).
pub fn request_naming(method: &str, customer: &str) -> Option<Vec<u8>> {
    let table = descriptors::compile().ok()?;
    let rule = table.get(&format!("/{method}"))?;
    if rule.ids.is_empty() {
        return None;
    }
    Some(
        rule.ids
            .iter()
            .flat_map(|path| wire::naming(path, customer))
            .collect(),
    )
}

/// The policy as a tower service in front of the port's dispatch.
#[derive(Clone)]
struct PolicyService {
    state: Arc<State>,
    inner: HttpService,
}

impl tower::Service<http::Request<Body>> for PolicyService {
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        // Each call goes through `oneshot` on the inner service.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        let (state, inner) = (Arc::clone(&self.state), self.inner.clone());
        Box::pin(async move {
            let rule = state.table.get(request.uri().path());
            let permit = match state
                .protection
                .admit(rule.is_some_and(|rule| rule.long_lived))
            {
                Ok(permit) => permit,
                Err(status) => return Ok(status.into_http()),
            };
            let Admitted {
                request,
                signalled,
                reads,
            } = match admit(&state, rule, request).await {
                Ok(admitted) => admitted,
                Err(status) => return Ok(status.into_http()),
            };
            let response = tower::ServiceExt::oneshot(inner, request).await?;
            // A request the service refused as bad input changes nothing, the
            // privacy signal it carried included.
            if !signalled.is_empty() && !refused_as_bad_input(&response) {
                for customer in &signalled {
                    state.gpc.record(customer).await;
                }
            }
            // A call refused at once returned no data: nothing was read.
            if !refused_at_once(&response) {
                for access in reads {
                    state.access_log.record(access).await;
                }
            }
            Ok(Permitted::hold(response, permit))
        })
    }
}

/// The caller's network address; unknown (never on a TCP port) counts as one
/// address.
fn peer_address(request: &http::Request<Body>) -> IpAddr {
    request
        .extensions()
        .get::<TcpConnectInfo>()
        .and_then(TcpConnectInfo::remote_addr)
        .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |address| address.ip())
}

/// Whether the answer is INVALID_ARGUMENT (a refusal comes as a trailers-only
/// answer: its status is in the headers).
fn refused_as_bad_input(response: &http::Response<Body>) -> bool {
    response
        .headers()
        .get("grpc-status")
        .is_some_and(|status| status.as_bytes() == b"3")
}

/// Whether the answer is an error without a body (trailers-only): the call
/// was refused before anything was read or written.
fn refused_at_once(response: &http::Response<Body>) -> bool {
    response
        .headers()
        .get("grpc-status")
        .is_some_and(|status| status.as_bytes() != b"0")
}

/// A request the policy let through, and what to record once it is answered.
struct Admitted {
    /// The request as it is to be forwarded.
    request: http::Request<Body>,
    /// The customers whose Global Privacy Control signal it carries (recorded
    /// once the service accepted the request).
    signalled: Vec<String>,
    /// The reads of customers' data it makes (recorded unless it is refused).
    reads: Vec<LoggedAccess>,
}

/// Everything the policy checks.
async fn admit(
    state: &State,
    rule: Option<&CompiledRule>,
    mut request: http::Request<Body>,
) -> Result<Admitted, Status> {
    let mut signalled = Vec::new();
    let mut reads = Vec::new();
    if matches!(
        rule,
        Some(CompiledRule {
            access: Access::Open,
            ..
        })
    ) {
        state.protection.check_address(peer_address(&request))?;
        return Ok(Admitted {
            request,
            signalled,
            reads,
        });
    }
    let principal = match &state.authenticator {
        None => {
            state.protection.check_address(peer_address(&request))?;
            Principal::Development
        }
        Some(authenticator) => {
            // Until the caller is known, it counts under its address: probing
            // for methods or credentials is limited like any other calling.
            let by_address = || state.protection.check_address(peer_address(&request));
            let Some(rule) = rule else {
                by_address()?;
                return Err(Status::permission_denied("this method is not allowed"));
            };
            let principal = authenticator
                .authenticate(request.headers())
                .map_err(|refused| by_address().err().unwrap_or(refused))?;
            if let Some(caller) = principal.rate_key() {
                state.protection.check_caller(&caller)?;
            }
            authorize_scope(&principal, rule)?;
            principal
        }
    };
    let gpc = attune_kit::privacy::gpc_signalled_in_headers(request.headers());
    if let Some(rule) = rule {
        let names_customers = !rule.ids.is_empty() || !rule.not_for_customers.is_empty();
        let per_customer =
            matches!(rule.access, Access::Customer { .. }) && principal != Principal::Development;
        let store_device = clienteling::only_as_store_device(&principal, rule);
        let read = read_of(request.uri().path().trim_start_matches('/'));
        if store_device && !names_customers {
            clienteling::check(&principal, request.uri().path(), &FirstMessage::Missing)?;
        }
        if names_customers && (gpc || per_customer || store_device || read.is_some()) {
            let (parts, body) = request.into_parts();
            let (message, body) = first_message::read(body, state.max_message_bytes).await?;
            request = http::Request::from_parts(parts, body);
            if store_device {
                clienteling::check(&principal, request.uri().path(), &message)?;
            }
            let ids = authorize_customers(state, &principal, rule, &message).await?;
            if gpc {
                signalled = match &principal {
                    Principal::Customer { id, .. } => vec![id.clone()],
                    _ => ids.clone(),
                };
            }
            if per_customer {
                check_customer_rates(state, &principal, &ids)?;
            }
            if let Some(read) = read {
                reads = accesses(read, &principal, &ids);
            }
            if request.uri().path().ends_with("/MergeProfiles")
                || request.uri().path().ends_with("/EraseCustomer")
            {
                for id in &ids {
                    state.linked.forget(id);
                }
            }
        } else if gpc && let Principal::Customer { id, .. } = &principal {
            signalled.push(id.clone());
        }
    }
    let headers = request.headers_mut();
    headers.remove(http::header::AUTHORIZATION);
    headers.remove(authenticate::API_KEY_HEADER);
    if !headers.contains_key("grpc-timeout") {
        headers.insert("grpc-timeout", state.default_timeout.clone());
    }
    request.extensions_mut().insert(principal);
    Ok(Admitted {
        request,
        signalled,
        reads,
    })
}

/// The principal holds one of the rule's scopes; operator methods are never a
/// customer's.
fn authorize_scope(principal: &Principal, rule: &CompiledRule) -> Result<(), Status> {
    if matches!(rule.access, Access::Operator { .. })
        && matches!(principal, Principal::Customer { .. })
    {
        return Err(Status::permission_denied(
            "this method is for operators and services",
        ));
    }
    if !principal.holds_any(rule.access.scopes()) {
        return Err(Status::permission_denied(format!(
            "this method needs one of the scopes {:?}",
            rule.access.scopes()
        )));
    }
    Ok(())
}

/// The customer ids the request names; for a customer principal, checks that
/// each is its own (or merged into it).
async fn authorize_customers(
    state: &State,
    principal: &Principal,
    rule: &CompiledRule,
    message: &FirstMessage,
) -> Result<Vec<String>, Status> {
    let denied = || Status::permission_denied("not allowed for this customer");
    let customer = match principal {
        Principal::Customer { id, .. } => Some(id.as_str()),
        _ => None,
    };
    let bytes = match message {
        FirstMessage::Plain(bytes) => bytes,
        // Nothing to read: only a caller allowed every customer goes on (the
        // service then refuses the call or its compression itself).
        FirstMessage::Compressed | FirstMessage::Missing => {
            return match customer {
                Some(_) => Err(denied()),
                None => Ok(Vec::new()),
            };
        }
    };
    let mut ids = Vec::new();
    for path in &rule.ids {
        match wire::strings_at(bytes, path) {
            Ok(found) => ids.extend(found),
            Err(wire::Malformed) if customer.is_none() => return Ok(Vec::new()),
            Err(wire::Malformed) => return Err(denied()),
        }
    }
    ids.sort_unstable();
    ids.dedup();
    let Some(customer) = customer else {
        return Ok(ids);
    };
    let Access::Customer { visitors, .. } = rule.access else {
        return Err(denied());
    };
    if rule.client_streaming {
        // Only the first message of a stream is read: a customer sends its
        // events in IngestEvents, where every event is checked.
        return Err(Status::permission_denied(
            "customers send events with IngestEvents, not a stream",
        ));
    }
    for path in &rule.not_for_customers {
        if wire::occurs(bytes, path).map_err(|_| denied())? {
            return Err(denied());
        }
    }
    if ids.is_empty() && !visitors {
        return Err(denied());
    }
    for id in &ids {
        if !state.linked.belongs_to(id, customer).await? {
            return Err(denied());
        }
    }
    Ok(ids)
}

/// The call as a read of each customer's data it names.
fn accesses(read: &Read, principal: &Principal, ids: &[String]) -> Vec<LoggedAccess> {
    ids.iter()
        // The policy read the ids from the request; one the service would
        // refuse as malformed reads nothing.
        .filter_map(|id| CustomerId::parse(id).ok())
        .map(|customer| read.by(principal.as_caller(), customer))
        .collect()
}

/// Each customer the call is about has a rate of its own.
fn check_customer_rates(
    state: &State,
    principal: &Principal,
    ids: &[String],
) -> Result<(), Status> {
    match principal {
        // A customer's calls count once, under its own id.
        Principal::Customer { id, .. } => state.protection.check_customer(id),
        _ => ids
            .iter()
            .try_for_each(|id| state.protection.check_customer(id)),
    }
}
