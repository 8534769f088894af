//! The cached consent checker against a fake consent server over real gRPC on
//! loopback: the test decides what `GetConsentState` answers and what the change
//! stream delivers, breaks and replaces, and when.

#![allow(clippy::unwrap_used)] // a panic is how a test fails

mod support;

use std::sync::atomic::Ordering;
use std::time::Duration;

use attune_kit::consent::{ConsentStatus, Reason};
use attune_proto::consent::v1 as pb;
use attune_proto::prost_types::Timestamp;
use tonic::Code;

use support::{ADS, FRESHNESS_BOUND, Setup, decided, erased, wait_for};

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

#[tokio::test]
async fn concurrent_misses_for_one_customer_share_one_load() {
    let setup = Setup::new().await.following().await;
    setup
        .fake
        .answer_state("c1", 100, Some(pb::Decision::Granted));
    let release = setup.fake.hold_next_state();
    let checks: Vec<_> = (0..8)
        .map(|_| {
            let checker = setup.checker.clone();
            tokio::spawn(async move { checker.check("c1", &[ADS]).await })
        })
        .collect();
    wait_for("the load to start", || setup.fake.state_calls() == 1).await;
    // Give the other misses time to join the load in flight.
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    release.send(()).unwrap();
    for check in checks {
        assert!(check.await.unwrap()[0].granted);
    }
    assert_eq!(setup.fake.state_calls(), 1, "one load served every miss");
    assert_eq!(setup.checker.metrics().misses, 8);
}

#[tokio::test]
async fn a_miss_after_a_forget_does_not_join_the_load_begun_before() {
    let setup = Setup::new().await.following().await;
    setup
        .fake
        .answer_state("c1", 100, Some(pb::Decision::Granted));
    let release = setup.fake.hold_next_state();
    let checker = setup.checker.clone();
    let before = tokio::spawn(async move { checker.check("c1", &[ADS]).await });
    wait_for("the load to start", || setup.fake.state_calls() == 1).await;

    // The owner of the data withdrew and forgot c1: a check from now on loads
    // again (joining the held load would wait for it) and sees the withdrawal.
    setup
        .fake
        .answer_state("c1", 100, Some(pb::Decision::Withdrawn));
    setup.checker.forget("c1");
    let after = tokio::time::timeout(
        std::time::Duration::from_secs(2),
        setup.checker.check("c1", &[ADS]),
    )
    .await
    .expect("the check does not wait for the load begun before the forget");
    assert_eq!(after[0].reason, WITHDRAWN);
    assert_eq!(setup.fake.state_calls(), 2);

    release.send(()).unwrap();
    assert_eq!(before.await.unwrap()[0].reason, WITHDRAWN);
    assert_eq!(setup.reason("c1").await, WITHDRAWN);
}

#[tokio::test]
async fn a_forget_refuses_the_loads_of_its_own_customer_only() {
    // Consent forgets a customer after each write for them. At hundreds of writes
    // a second, refusing every load in flight made most misses load twice or fail.
    let setup = Setup::new().await.following().await;
    for customer in ["c1", "c2"] {
        setup
            .fake
            .answer_state(customer, 100, Some(pb::Decision::Granted));
    }
    let release = setup.fake.hold_next_state();
    let checker = setup.checker.clone();
    let other = tokio::spawn(async move { checker.check("c2", &[ADS]).await });
    wait_for("c2's load to start", || setup.fake.state_calls() == 1).await;
    setup.checker.forget("c1");
    release.send(()).unwrap();
    assert!(other.await.unwrap()[0].granted);
    assert_eq!(setup.fake.state_calls(), 1, "c2's load was kept");
    assert_eq!(setup.checker.metrics().fills_unreconciled, 0);

    // The customer's own load in flight is refused and fetched again.
    let release = setup.fake.hold_next_state();
    let checker = setup.checker.clone();
    let own = tokio::spawn(async move { checker.check("c1", &[ADS]).await });
    wait_for("c1's load to start", || setup.fake.state_calls() == 2).await;
    setup
        .fake
        .answer_state("c1", 100, Some(pb::Decision::Withdrawn));
    setup.checker.forget("c1");
    release.send(()).unwrap();
    assert_eq!(own.await.unwrap()[0].reason, WITHDRAWN);
    assert_eq!(setup.fake.state_calls(), 3, "c1's load was fetched again");
    assert_eq!(setup.checker.metrics().fills_unreconciled, 1);
}

#[tokio::test]
async fn the_checker_sends_w3c_trace_context_on_every_call() {
    use opentelemetry::trace::TraceContextExt as _;
    use tracing::Instrument as _;
    use tracing_opentelemetry::OpenTelemetrySpanExt as _;

    attune_kit::telemetry::init_for_tests();
    let setup = Setup::new().await.following().await;
    // The stream is opened in a span of the checker's own.
    let watches = setup.fake.traceparents("watch");
    assert!(
        !watches.is_empty() && watches.iter().all(Option::is_some),
        "every watch carried a traceparent: {watches:?}"
    );

    // A miss loads within the caller's trace.
    setup
        .fake
        .answer_state("c1", 100, Some(pb::Decision::Granted));
    let caller = tracing::info_span!("caller");
    let trace_id = caller.context().span().span_context().trace_id();
    assert!(setup.checker.is_granted("c1", ADS).instrument(caller).await);
    let loads = setup.fake.traceparents("state");
    let traceparent = loads[0].as_deref().expect("the load carried a traceparent");
    assert!(
        traceparent.contains(&trace_id.to_string()),
        "{traceparent} continues trace {trace_id}"
    );
}
