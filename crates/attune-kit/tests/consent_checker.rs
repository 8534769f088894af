//! The cached consent checker against a fake consent server over real gRPC on
//! loopback: the test decides what `GetConsentState` answers and what the change
//! stream delivers, breaks and replaces, and when.

#![allow(clippy::unwrap_used)] // a panic is how a test fails

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use attune_kit::config::ConsentCheckerConfig;
use attune_kit::consent::{ConsentChecker, ConsentStatus, Reason};
use attune_proto::consent::v1 as pb;
use attune_proto::consent::v1::consent_service_server::{ConsentService, ConsentServiceServer};
use attune_proto::prost_types::Timestamp;
use tokio::sync::{mpsc, oneshot};
use tokio_stream::wrappers::{TcpListenerStream, UnboundedReceiverStream};
use tokio_util::sync::CancellationToken;
use tonic::transport::{Endpoint, Server};
use tonic::{Code, Request, Response, Status};

const FRESHNESS_BOUND: Duration = Duration::from_millis(300);
const HEARTBEAT_EVERY: Duration = Duration::from_millis(50);
const ADS: &str = "personalization";

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
struct FakeState {
    /// Per customer, the answers `GetConsentState` gives in turn (the last repeats).
    states: Mutex<HashMap<String, VecDeque<pb::GetConsentStateResponse>>>,
    state_calls: AtomicUsize,
    /// When set, the next `GetConsentState` waits for it.
    state_gate: Mutex<Option<oneshot::Receiver<()>>>,
    states_unavailable: AtomicBool,
    outgoing: Mutex<Outgoing>,
    /// While set, the server sends nothing but changes: no heartbeats.
    heartbeats_off: AtomicBool,
    /// While set, `WatchConsentChanges` fails with it (consent is down).
    refuse_watches: Mutex<Option<Code>>,
    watch_requests: Mutex<Vec<pb::WatchConsentChangesRequest>>,
}

/// A consent server whose answers the test controls.
#[derive(Clone, Default)]
struct FakeConsent {
    state: Arc<FakeState>,
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

fn decided(customer: &str, record_id: i64, decision: pb::Decision) -> pb::consent_change::Change {
    pb::consent_change::Change::Decision(pb::ConsentDecisionChange {
        customer_id: customer.into(),
        purpose_code: ADS.into(),
        recorded: Some(summary(record_id, decision)),
        current: Some(summary(record_id, decision)),
    })
}

fn erased() -> pb::consent_change::Change {
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
    fn answer_state(&self, customer: &str, position: i64, decision: Option<pb::Decision>) {
        self.state.states.lock().unwrap().remove(customer);
        self.then_answer_state(customer, position, decision, None);
    }

    /// Queues an answer after those already queued; the last one queued repeats.
    fn then_answer_state(
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

    fn state_calls(&self) -> usize {
        self.state.state_calls.load(Ordering::SeqCst)
    }

    /// Holds the next `GetConsentState` until the returned sender fires.
    fn hold_next_state(&self) -> oneshot::Sender<()> {
        let (release, gate) = oneshot::channel();
        *self.state.state_gate.lock().unwrap() = Some(gate);
        release
    }

    /// Commits a change at the next position and streams it; returns its position.
    fn publish(&self, change: pb::consent_change::Change) -> i64 {
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
    fn advance_to(&self, position: i64) {
        let mut outgoing = self.state.outgoing.lock().unwrap();
        outgoing.position = position;
    }

    fn position(&self) -> i64 {
        self.state.outgoing.lock().unwrap().position
    }

    /// Ends the open stream as a broken connection would.
    fn break_stream(&self) {
        self.state.outgoing.lock().unwrap().open = None;
    }

    /// Starts over with an empty database at position 0, ending the open stream.
    fn replace_database(&self) {
        let mut outgoing = self.state.outgoing.lock().unwrap();
        outgoing.position = 0;
        outgoing.log.clear();
        outgoing.open = None;
    }

    fn set_heartbeats(&self, on: bool) {
        self.state.heartbeats_off.store(!on, Ordering::SeqCst);
    }

    fn refuse_watches(&self, code: Option<Code>) {
        *self.state.refuse_watches.lock().unwrap() = code;
    }

    fn watch_requests(&self) -> Vec<pb::WatchConsentChangesRequest> {
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
}

/// A fake consent server on loopback and a checker for it, not yet following.
struct Setup {
    fake: FakeConsent,
    checker: ConsentChecker,
    cancel: CancellationToken,
}

impl Setup {
    async fn new() -> Self {
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
    async fn following(self) -> Self {
        tokio::spawn(self.checker.clone().follow(self.cancel.child_token()));
        let position = self.fake.position();
        self.wait_for_position(position).await;
        self
    }

    async fn wait_for_position(&self, position: i64) {
        wait_for("the checker to reach the position", || {
            self.checker.metrics().position == Some(position) && self.fresh()
        })
        .await;
    }

    fn fresh(&self) -> bool {
        self.checker
            .metrics()
            .since_last_response
            .is_some_and(|silence| silence < FRESHNESS_BOUND)
    }

    async fn reason(&self, customer: &str) -> Reason {
        self.checker.check(customer, &[ADS]).await[0].reason
    }
}

impl Drop for Setup {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

/// Polls `condition` every 10ms; fails the test after 5 seconds.
async fn wait_for(what: &str, mut condition: impl FnMut() -> bool) {
    for _ in 0..500 {
        if condition() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("timed out waiting for {what}");
}

const GRANTED: Reason = Reason::Status(ConsentStatus::Granted);
const WITHDRAWN: Reason = Reason::Status(ConsentStatus::Withdrawn);
const NOT_GIVEN: Reason = Reason::Status(ConsentStatus::NotGiven);

#[tokio::test]
async fn checks_fail_closed_until_the_stream_first_responds() {
    let setup = Setup::new().await;
    setup
        .fake
        .answer_state("c1", 100, Some(pb::Decision::Granted));

    let verdicts = setup.checker.check("c1", &[ADS, "analytics"]).await;
    assert!(verdicts.iter().all(|v| !v.granted));
    assert!(
        verdicts
            .iter()
            .all(|v| v.reason == Reason::FreshnessUnconfirmed)
    );
    assert_eq!(
        setup.fake.state_calls(),
        0,
        "no load while the cache cannot answer"
    );

    let setup = setup.following().await;
    assert!(setup.checker.is_granted("c1", ADS).await);
    assert_eq!(setup.checker.metrics().fail_closed, 1);
}

#[tokio::test]
async fn a_miss_loads_the_customer_once_and_later_checks_hit() {
    let setup = Setup::new().await.following().await;
    setup
        .fake
        .answer_state("c1", 100, Some(pb::Decision::Granted));

    let first = setup
        .checker
        .check("c1", &[ADS, "analytics", "unknown_purpose"])
        .await;
    let second = setup
        .checker
        .check("c1", &[ADS, "analytics", "unknown_purpose"])
        .await;
    assert_eq!(first, second);
    assert_eq!(first[0].purpose, ADS);
    assert!(first[0].granted);
    assert_eq!(first[0].reason, GRANTED);
    assert_eq!(first[0].notice_version, Some(3));
    for verdict in &first[1..] {
        assert!(!verdict.granted);
        assert_eq!(verdict.reason, NOT_GIVEN);
        assert_eq!(verdict.notice_version, None);
    }

    let metrics = setup.checker.metrics();
    assert_eq!((metrics.misses, metrics.hits), (1, 1));
    assert_eq!(setup.fake.state_calls(), 1);

    // An empty customer id has granted nothing, and costs no call.
    let empty = setup.checker.check("", &[ADS]).await;
    assert_eq!(empty[0].reason, NOT_GIVEN);
    assert_eq!(setup.fake.state_calls(), 1);
}

#[tokio::test]
async fn an_expired_grant_is_not_granted() {
    let setup = Setup::new().await.following().await;
    let past = Timestamp {
        seconds: 1_000_000_000,
        nanos: 0,
    };
    setup
        .fake
        .then_answer_state("c1", 100, Some(pb::Decision::Granted), Some(past));
    assert_eq!(
        setup.reason("c1").await,
        Reason::Status(ConsentStatus::Expired)
    );
}

#[tokio::test]
async fn a_change_for_a_cached_customer_is_applied_without_reloading() {
    let setup = Setup::new().await.following().await;
    setup
        .fake
        .answer_state("c1", 100, Some(pb::Decision::Granted));
    assert_eq!(setup.reason("c1").await, GRANTED);

    let position = setup
        .fake
        .publish(decided("c1", 2, pb::Decision::Withdrawn));
    setup.wait_for_position(position).await;

    let verdict = &setup.checker.check("c1", &[ADS]).await[0];
    assert_eq!(verdict.reason, WITHDRAWN);
    assert!(!verdict.granted);
    assert_eq!(setup.fake.state_calls(), 1);
    let metrics = setup.checker.metrics();
    assert_eq!((metrics.misses, metrics.hits), (1, 1));
    assert_eq!(metrics.changes_applied, 1);
}

#[tokio::test]
async fn a_load_older_than_the_stream_gets_the_changes_applied_meanwhile() {
    let setup = Setup::new().await.following().await;
    // The load reads "granted" at position 100…
    setup
        .fake
        .answer_state("c1", 100, Some(pb::Decision::Granted));
    let release = setup.fake.hold_next_state();
    let checker = setup.checker.clone();
    let check = tokio::spawn(async move { checker.check("c1", &[ADS]).await });
    wait_for("the load to start", || setup.fake.state_calls() == 1).await;

    // …while the stream applies a withdrawal at 101, skipped as c1 is not cached yet.
    let position = setup
        .fake
        .publish(decided("c1", 2, pb::Decision::Withdrawn));
    setup.wait_for_position(position).await;
    release.send(()).unwrap();

    let verdicts = check.await.unwrap();
    assert_eq!(
        verdicts[0].reason, WITHDRAWN,
        "the withdrawal is replayed onto the load"
    );
    assert_eq!(setup.reason("c1").await, WITHDRAWN, "and cached that way");
    assert_eq!(setup.fake.state_calls(), 1);
    assert_eq!(setup.checker.metrics().fills_unreconciled, 0);
}

#[tokio::test]
async fn a_load_older_than_an_erasure_is_fetched_again() {
    let setup = Setup::new().await.following().await;
    setup
        .fake
        .answer_state("c1", 100, Some(pb::Decision::Granted));
    setup.fake.then_answer_state("c1", 101, None, None);
    let release = setup.fake.hold_next_state();
    let checker = setup.checker.clone();
    let check = tokio::spawn(async move { checker.check("c1", &[ADS]).await });
    wait_for("the load to start", || setup.fake.state_calls() == 1).await;

    // An erasure names nobody: it may have been c1's, so the load at 100 is useless.
    let position = setup.fake.publish(erased());
    setup.wait_for_position(position).await;
    release.send(()).unwrap();

    assert_eq!(check.await.unwrap()[0].reason, NOT_GIVEN);
    assert_eq!(setup.fake.state_calls(), 2);
    assert_eq!(setup.checker.metrics().fills_unreconciled, 1);
}

#[tokio::test]
async fn a_load_older_than_the_streams_start_is_fetched_again_then_given_up() {
    let setup = Setup::new().await.following().await;
    // The stream started at 100: nothing before it is known, so a load at 90 cannot
    // be brought forward.
    setup
        .fake
        .answer_state("c1", 90, Some(pb::Decision::Granted));
    setup
        .fake
        .then_answer_state("c1", 100, Some(pb::Decision::Denied), None);
    assert_eq!(
        setup.reason("c1").await,
        Reason::Status(ConsentStatus::Denied)
    );
    assert_eq!(setup.fake.state_calls(), 2);

    // A consent that keeps answering from the past gets "unavailable" in the end.
    setup
        .fake
        .answer_state("c2", 90, Some(pb::Decision::Granted));
    let verdict = &setup.checker.check("c2", &[ADS]).await[0];
    assert_eq!(verdict.reason, Reason::Unavailable);
    assert!(!verdict.granted);
    assert_eq!(setup.fake.state_calls(), 2 + 3);
    assert_eq!(setup.checker.metrics().fills_unreconciled, 1 + 3);
}

#[tokio::test]
async fn an_erasure_empties_the_cache() {
    let setup = Setup::new().await.following().await;
    setup
        .fake
        .answer_state("c1", 100, Some(pb::Decision::Granted));
    setup
        .fake
        .answer_state("c2", 100, Some(pb::Decision::Granted));
    assert_eq!(setup.reason("c1").await, GRANTED);
    assert_eq!(setup.reason("c2").await, GRANTED);

    // c1 was erased: consent's answers from now on say so.
    let position = setup.fake.publish(erased());
    setup.fake.answer_state("c1", position, None);
    setup
        .fake
        .answer_state("c2", position, Some(pb::Decision::Granted));
    setup.wait_for_position(position).await;

    assert_eq!(setup.reason("c1").await, NOT_GIVEN);
    assert_eq!(setup.reason("c2").await, GRANTED);
    assert_eq!(
        setup.fake.state_calls(),
        4,
        "both customers were loaded again"
    );
    let metrics = setup.checker.metrics();
    assert_eq!(metrics.erasures, 1);
    assert_eq!(metrics.misses, 4);
}

#[tokio::test]
async fn a_broken_stream_resumes_after_its_cursor_and_misses_nothing() {
    let setup = Setup::new().await.following().await;
    setup
        .fake
        .answer_state("c1", 100, Some(pb::Decision::Granted));
    assert_eq!(setup.reason("c1").await, GRANTED);
    let before = setup.fake.publish(decided("c2", 5, pb::Decision::Granted));
    setup.wait_for_position(before).await;

    // The stream breaks, and consent is unreachable for a moment; meanwhile c1
    // withdraws.
    setup.fake.refuse_watches(Some(Code::Unavailable));
    setup.fake.break_stream();
    wait_for("a refused reconnect", || {
        setup.fake.watch_requests().len() >= 2
    })
    .await;
    let withdrawal = setup
        .fake
        .publish(decided("c1", 6, pb::Decision::Withdrawn));
    setup.fake.refuse_watches(None);

    setup.wait_for_position(withdrawal).await;
    assert_eq!(setup.reason("c1").await, WITHDRAWN);
    assert_eq!(setup.fake.state_calls(), 1, "resumed, not reloaded");

    let requests = setup.fake.watch_requests();
    assert!(requests[0].start_at_newest);
    for resumed in &requests[1..] {
        assert!(!resumed.start_at_newest);
        assert_eq!(
            resumed.after_position, before,
            "resumes after the last position"
        );
    }
    assert!(setup.checker.metrics().reconnects >= 2);
}

#[tokio::test]
async fn checks_fail_closed_when_the_stream_is_silent_past_the_bound_and_recover() {
    let setup = Setup::new().await.following().await;
    setup
        .fake
        .answer_state("c1", 100, Some(pb::Decision::Granted));
    assert_eq!(setup.reason("c1").await, GRANTED);

    setup.fake.set_heartbeats(false);
    tokio::time::sleep(FRESHNESS_BOUND + Duration::from_millis(100)).await;
    let verdict = &setup.checker.check("c1", &[ADS]).await[0];
    assert_eq!(verdict.reason, Reason::FreshnessUnconfirmed);
    assert!(!verdict.granted);
    assert_eq!(setup.checker.metrics().fail_closed, 1);

    setup.fake.set_heartbeats(true);
    wait_for("freshness to come back", || setup.fresh()).await;
    assert_eq!(setup.reason("c1").await, GRANTED);
    assert_eq!(
        setup.fake.state_calls(),
        1,
        "the cache survived the silence"
    );
}

#[tokio::test]
async fn checks_fail_closed_while_consent_is_down_and_recover() {
    let setup = Setup::new().await.following().await;
    setup
        .fake
        .answer_state("c1", 100, Some(pb::Decision::Granted));
    assert_eq!(setup.reason("c1").await, GRANTED);

    setup.fake.refuse_watches(Some(Code::Unavailable));
    setup.fake.break_stream();
    tokio::time::sleep(FRESHNESS_BOUND + Duration::from_millis(100)).await;
    assert_eq!(setup.reason("c1").await, Reason::FreshnessUnconfirmed);
    assert_eq!(setup.reason("c2").await, Reason::FreshnessUnconfirmed);

    setup.fake.refuse_watches(None);
    wait_for("freshness to come back", || setup.fresh()).await;
    assert_eq!(setup.reason("c1").await, GRANTED);
}

#[tokio::test]
async fn a_miss_answers_unavailable_when_consent_cannot_be_reached() {
    let setup = Setup::new().await.following().await;
    setup
        .fake
        .state
        .states_unavailable
        .store(true, Ordering::SeqCst);
    let verdict = &setup.checker.check("c1", &[ADS]).await[0];
    assert_eq!(verdict.reason, Reason::Unavailable);
    assert!(!verdict.granted);
    assert_eq!(setup.checker.metrics().fail_closed, 1);

    setup
        .fake
        .state
        .states_unavailable
        .store(false, Ordering::SeqCst);
    setup
        .fake
        .answer_state("c1", 100, Some(pb::Decision::Granted));
    assert_eq!(
        setup.reason("c1").await,
        GRANTED,
        "nothing was cached from the failure"
    );
}

#[tokio::test]
async fn an_out_of_range_cursor_resets_the_cache_and_restarts_at_newest() {
    let setup = Setup::new().await.following().await;
    setup
        .fake
        .answer_state("c1", 100, Some(pb::Decision::Granted));
    assert_eq!(setup.reason("c1").await, GRANTED);

    // Consent's database is replaced: the checker's cursor (100) is now beyond
    // its newest change (0), and c1 has decided nothing there.
    setup.fake.answer_state("c1", 0, None);
    setup.fake.replace_database();
    wait_for("the reset", || setup.checker.metrics().resets == 1).await;
    setup.wait_for_position(0).await;

    assert_eq!(setup.reason("c1").await, NOT_GIVEN);
    assert_eq!(setup.fake.state_calls(), 2, "c1 was loaded again");
    let requests = setup.fake.watch_requests();
    let last = requests.last().unwrap();
    assert!(last.start_at_newest, "restarted at the newest change");
    assert!(
        requests
            .iter()
            .any(|r| !r.start_at_newest && r.after_position == 100),
        "the old cursor was tried first"
    );
}
