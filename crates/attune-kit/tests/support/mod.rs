//! A fake consent server on loopback, whose answers and change stream the test
//! controls, and a cached checker following it: shared by the checker's test
//! binaries.

// Each test binary uses its own part of the fake.
#![allow(dead_code)]
#![allow(clippy::unwrap_used)] // a panic is how a test fails

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use attune_kit::config::ConsentCheckerConfig;
use attune_kit::consent::{ConsentChecker, Reason};
use attune_proto::consent::v1 as pb;
use attune_proto::consent::v1::consent_service_server::{ConsentService, ConsentServiceServer};
use attune_proto::prost_types::Timestamp;
use tokio::sync::{mpsc, oneshot};
use tokio_stream::wrappers::{TcpListenerStream, UnboundedReceiverStream};
use tokio_util::sync::CancellationToken;
use tonic::transport::{Endpoint, Server};
use tonic::{Code, Request, Response, Status};

pub const FRESHNESS_BOUND: Duration = Duration::from_millis(300);
const HEARTBEAT_EVERY: Duration = Duration::from_millis(50);
pub const ADS: &str = "personalization";

type WatchItem = Result<pb::WatchConsentChangesResponse, Status>;

/// The fake's change stream: every change ever published, and the open stream.
#[derive(Default)]
struct Outgoing {
    /// The newest position (the fake's database).
    position: i64,
    log: Vec<pb::ConsentChange>,
    /// The open stream, with an id so that a heartbeat task stops with its stream.
    open: Option<(u64, mpsc::UnboundedSender<WatchItem>)>,
    next_stream_id: u64,
}

#[derive(Default)]
pub struct FakeState {
    /// Per customer, the answers `GetConsentState` gives in turn (the last repeats).
    states: Mutex<HashMap<String, VecDeque<pb::GetConsentStateResponse>>>,
    state_calls: AtomicUsize,
    /// When set, the next `GetConsentState` waits for it.
    state_gate: Mutex<Option<oneshot::Receiver<()>>>,
    pub states_unavailable: AtomicBool,
    outgoing: Mutex<Outgoing>,
    /// While set, the server sends nothing but changes: no heartbeats.
    heartbeats_off: AtomicBool,
    /// While set, `WatchConsentChanges` fails with it (consent is down).
    refuse_watches: Mutex<Option<Code>>,
    watch_requests: Mutex<Vec<pb::WatchConsentChangesRequest>>,
    /// The `traceparent` of each call, in order: (`"state"` or `"watch"`, value).
    traceparents: Mutex<Vec<(&'static str, Option<String>)>>,
}

/// A consent server whose answers the test controls.
#[derive(Clone, Default)]
pub struct FakeConsent {
    pub state: Arc<FakeState>,
}

fn summary(record_id: i64, decision: pb::Decision) -> pb::DecisionSummary {
    pb::DecisionSummary {
        record_id,
        decision: decision.into(),
        notice_version: 3,
        decide_time: None,
        expire_time: None,
    }
}

pub fn decided(
    customer: &str,
    record_id: i64,
    decision: pb::Decision,
) -> pb::consent_change::Change {
    pb::consent_change::Change::Decision(pb::ConsentDecisionChange {
        customer_id: customer.into(),
        purpose_code: ADS.into(),
        recorded: Some(summary(record_id, decision)),
        current: Some(summary(record_id, decision)),
    })
}

pub fn erased() -> pb::consent_change::Change {
    pb::consent_change::Change::CustomerErased(pb::CustomerErased {})
}

fn heartbeat(position: i64) -> pb::WatchConsentChangesResponse {
    pb::WatchConsentChangesResponse {
        changes: Vec::new(),
        position,
        send_time: None,
    }
}

impl FakeConsent {
    /// From now on `GetConsentState` answers that the customer's `personalization`
    /// decision is `decision` (or none), as of stream position `position`.
    pub fn answer_state(&self, customer: &str, position: i64, decision: Option<pb::Decision>) {
        self.state.states.lock().unwrap().remove(customer);
        self.then_answer_state(customer, position, decision, None);
    }

    /// Queues an answer after those already queued; the last one queued repeats.
    pub fn then_answer_state(
        &self,
        customer: &str,
        position: i64,
        decision: Option<pb::Decision>,
        expire_time: Option<Timestamp>,
    ) {
        let latest = decision.map(|decision| pb::ConsentRecord {
            record_id: 1,
            customer_id: customer.into(),
            purpose_code: ADS.into(),
            decision: decision.into(),
            notice_version: 3,
            expire_time,
            ..Default::default()
        });
        let response = pb::GetConsentStateResponse {
            states: vec![
                pb::PurposeState {
                    purpose_code: "analytics".into(),
                    status: pb::ConsentStatus::NotGiven.into(),
                    latest: None,
                },
                pb::PurposeState {
                    purpose_code: ADS.into(),
                    status: pb::ConsentStatus::Unspecified.into(),
                    latest,
                },
            ],
            change_position: position,
        };
        self.state
            .states
            .lock()
            .unwrap()
            .entry(customer.into())
            .or_default()
            .push_back(response);
    }

    /// The `traceparent` each call of `rpc` (`"state"` or `"watch"`) carried.
    pub fn traceparents(&self, rpc: &str) -> Vec<Option<String>> {
        self.state
            .traceparents
            .lock()
            .unwrap()
            .iter()
            .filter(|(called, _)| *called == rpc)
            .map(|(_, traceparent)| traceparent.clone())
            .collect()
    }

    fn record_traceparent<T>(&self, rpc: &'static str, request: &Request<T>) {
        let traceparent = request
            .metadata()
            .get("traceparent")
            .and_then(|value| value.to_str().ok())
            .map(str::to_owned);
        self.state
            .traceparents
            .lock()
            .unwrap()
            .push((rpc, traceparent));
    }

    pub fn state_calls(&self) -> usize {
        self.state.state_calls.load(Ordering::SeqCst)
    }

    /// Holds the next `GetConsentState` until the returned sender fires.
    pub fn hold_next_state(&self) -> oneshot::Sender<()> {
        let (release, gate) = oneshot::channel();
        *self.state.state_gate.lock().unwrap() = Some(gate);
        release
    }

    /// Commits a change at the next position and streams it; returns its position.
    pub fn publish(&self, change: pb::consent_change::Change) -> i64 {
        let mut outgoing = self.state.outgoing.lock().unwrap();
        outgoing.position += 1;
        let change = pb::ConsentChange {
            position: outgoing.position,
            change_time: None,
            change: Some(change),
        };
        outgoing.log.push(change.clone());
        let response = pb::WatchConsentChangesResponse {
            changes: vec![change],
            position: outgoing.position,
            send_time: None,
        };
        if let Some((_, stream)) = &outgoing.open {
            let _ = stream.send(Ok(response));
        }
        outgoing.position
    }

    /// Advances the newest position without a change the checker sees (another
    /// customer's, say): for making a load older than the stream.
    pub fn advance_to(&self, position: i64) {
        let mut outgoing = self.state.outgoing.lock().unwrap();
        outgoing.position = position;
    }

    pub fn position(&self) -> i64 {
        self.state.outgoing.lock().unwrap().position
    }

    /// Ends the open stream as a broken connection would.
    pub fn break_stream(&self) {
        self.state.outgoing.lock().unwrap().open = None;
    }

    /// Starts over with an empty database at position 0, ending the open stream.
    pub fn replace_database(&self) {
        let mut outgoing = self.state.outgoing.lock().unwrap();
        outgoing.position = 0;
        outgoing.log.clear();
        outgoing.open = None;
    }

    pub fn set_heartbeats(&self, on: bool) {
        self.state.heartbeats_off.store(!on, Ordering::SeqCst);
    }

    pub fn refuse_watches(&self, code: Option<Code>) {
        *self.state.refuse_watches.lock().unwrap() = code;
    }

    pub fn watch_requests(&self) -> Vec<pb::WatchConsentChangesRequest> {
        self.state.watch_requests.lock().unwrap().clone()
    }

    /// Sends a heartbeat on stream `id` every HEARTBEAT_EVERY, until it is closed.
    async fn heartbeats(self, id: u64) {
        loop {
            tokio::time::sleep(HEARTBEAT_EVERY).await;
            let outgoing = self.state.outgoing.lock().unwrap();
            let Some((open_id, stream)) = &outgoing.open else {
                return;
            };
            if *open_id != id {
                return;
            }
            if !self.state.heartbeats_off.load(Ordering::SeqCst) {
                let _ = stream.send(Ok(heartbeat(outgoing.position)));
            }
        }
    }
}

type Rpc<T> = Result<Response<T>, Status>;

#[tonic::async_trait]
impl ConsentService for FakeConsent {
    async fn get_consent_state(
        &self,
        request: Request<pb::GetConsentStateRequest>,
    ) -> Rpc<pb::GetConsentStateResponse> {
        self.state.state_calls.fetch_add(1, Ordering::SeqCst);
        self.record_traceparent("state", &request);
        let gate = self.state.state_gate.lock().unwrap().take();
        if let Some(gate) = gate {
            let _ = gate.await;
        }
        if self.state.states_unavailable.load(Ordering::SeqCst) {
            return Err(Status::unavailable("consent is down"));
        }
        let request = request.into_inner();
        assert!(
            request.purpose_codes.is_empty(),
            "the checker loads every purpose"
        );
        let mut states = self.state.states.lock().unwrap();
        let answers = states.entry(request.customer_id).or_default();
        let answer = if answers.len() > 1 {
            answers.pop_front()
        } else {
            answers.front().cloned()
        };
        Ok(Response::new(answer.unwrap_or_else(|| {
            pb::GetConsentStateResponse {
                states: Vec::new(),
                change_position: self.position(),
            }
        })))
    }

    type WatchConsentChangesStream = UnboundedReceiverStream<WatchItem>;

    async fn watch_consent_changes(
        &self,
        request: Request<pb::WatchConsentChangesRequest>,
    ) -> Rpc<Self::WatchConsentChangesStream> {
        self.record_traceparent("watch", &request);
        let request = request.into_inner();
        self.state.watch_requests.lock().unwrap().push(request);
        if let Some(code) = *self.state.refuse_watches.lock().unwrap() {
            return Err(Status::new(code, "refused by the test"));
        }
        let (sender, receiver) = mpsc::unbounded_channel();
        let id = {
            let mut outgoing = self.state.outgoing.lock().unwrap();
            let silent = self.state.heartbeats_off.load(Ordering::SeqCst);
            if request.start_at_newest {
                if !silent {
                    let _ = sender.send(Ok(heartbeat(outgoing.position)));
                }
            } else if request.after_position > outgoing.position {
                return Err(Status::out_of_range("cursor beyond the newest change"));
            } else {
                let missed: Vec<_> = outgoing
                    .log
                    .iter()
                    .filter(|change| change.position > request.after_position)
                    .cloned()
                    .collect();
                if !missed.is_empty() || !silent {
                    let _ = sender.send(Ok(pb::WatchConsentChangesResponse {
                        changes: missed,
                        position: outgoing.position,
                        send_time: None,
                    }));
                }
            }
            outgoing.next_stream_id += 1;
            let id = outgoing.next_stream_id;
            outgoing.open = Some((id, sender));
            id
        };
        tokio::spawn(self.clone().heartbeats(id));
        Ok(Response::new(UnboundedReceiverStream::new(receiver)))
    }

    async fn create_purpose(
        &self,
        _: Request<pb::CreatePurposeRequest>,
    ) -> Rpc<pb::CreatePurposeResponse> {
        Err(Status::unimplemented("not in this fake"))
    }

    async fn update_purpose(
        &self,
        _: Request<pb::UpdatePurposeRequest>,
    ) -> Rpc<pb::UpdatePurposeResponse> {
        Err(Status::unimplemented("not in this fake"))
    }

    async fn get_purpose(&self, _: Request<pb::GetPurposeRequest>) -> Rpc<pb::GetPurposeResponse> {
        Err(Status::unimplemented("not in this fake"))
    }

    async fn list_purposes(
        &self,
        _: Request<pb::ListPurposesRequest>,
    ) -> Rpc<pb::ListPurposesResponse> {
        Err(Status::unimplemented("not in this fake"))
    }

    async fn record_consent(
        &self,
        _: Request<pb::RecordConsentRequest>,
    ) -> Rpc<pb::RecordConsentResponse> {
        Err(Status::unimplemented("not in this fake"))
    }

    async fn list_consent_history(
        &self,
        _: Request<pb::ListConsentHistoryRequest>,
    ) -> Rpc<pb::ListConsentHistoryResponse> {
        Err(Status::unimplemented("not in this fake"))
    }

    async fn check_consent(
        &self,
        _: Request<pb::CheckConsentRequest>,
    ) -> Rpc<pb::CheckConsentResponse> {
        Err(Status::unimplemented(
            "the checker never calls CheckConsent",
        ))
    }

    async fn list_expiring_consents(
        &self,
        _: Request<pb::ListExpiringConsentsRequest>,
    ) -> Rpc<pb::ListExpiringConsentsResponse> {
        Err(Status::unimplemented("not in this fake"))
    }

    async fn apply_global_privacy_control(
        &self,
        _: Request<pb::ApplyGlobalPrivacyControlRequest>,
    ) -> Rpc<pb::ApplyGlobalPrivacyControlResponse> {
        Err(Status::unimplemented("not in this fake"))
    }

    async fn verify_audit_log(
        &self,
        _: Request<pb::VerifyAuditLogRequest>,
    ) -> Rpc<pb::VerifyAuditLogResponse> {
        Err(Status::unimplemented("not in this fake"))
    }

    async fn audit_data_subject_request(
        &self,
        _: Request<pb::AuditDataSubjectRequestRequest>,
    ) -> Rpc<pb::AuditDataSubjectRequestResponse> {
        Err(Status::unimplemented("not in this fake"))
    }
}

/// A fake consent server on loopback and a checker for it, not yet following.
pub struct Setup {
    pub fake: FakeConsent,
    pub checker: ConsentChecker,
    cancel: CancellationToken,
}

impl Setup {
    pub async fn new() -> Self {
        let fake = FakeConsent::default();
        fake.advance_to(100);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let cancel = CancellationToken::new();
        let server = Server::builder()
            .add_service(ConsentServiceServer::new(fake.clone()))
            .serve_with_incoming_shutdown(
                TcpListenerStream::new(listener),
                cancel.clone().cancelled_owned(),
            );
        tokio::spawn(server);
        let channel = Endpoint::from_shared(format!("http://{address}"))
            .unwrap()
            .connect_lazy();
        let config = ConsentCheckerConfig {
            freshness_bound: FRESHNESS_BOUND,
            ..ConsentCheckerConfig::default()
        };
        let checker = ConsentChecker::new(channel, &config);
        Self {
            fake,
            checker,
            cancel,
        }
    }

    /// Starts following the stream and waits for its first response.
    pub async fn following(self) -> Self {
        tokio::spawn(self.checker.clone().follow(self.cancel.child_token()));
        let position = self.fake.position();
        self.wait_for_position(position).await;
        self
    }

    pub async fn wait_for_position(&self, position: i64) {
        wait_for("the checker to reach the position", || {
            self.checker.metrics().position == Some(position) && self.fresh()
        })
        .await;
    }

    pub fn fresh(&self) -> bool {
        self.checker
            .metrics()
            .since_last_response
            .is_some_and(|silence| silence < FRESHNESS_BOUND)
    }

    pub async fn reason(&self, customer: &str) -> Reason {
        self.checker.check(customer, &[ADS]).await[0].reason
    }
}

impl Drop for Setup {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

/// Polls `condition` every 10ms; fails the test after 5 seconds.
pub async fn wait_for(what: &str, mut condition: impl FnMut() -> bool) {
    for _ in 0..500 {
        if condition() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("timed out waiting for {what}");
}
