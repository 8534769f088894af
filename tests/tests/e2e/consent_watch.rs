//! The consent change stream over real gRPC: order, cursors, heartbeats, and the
//! promise that a watcher who reconnects with its cursor misses nothing and
//! receives nothing twice, even while others write concurrently.

#![allow(clippy::unwrap_used)] // a panic is how a test fails

use std::collections::BTreeSet;
use std::time::Duration;

use attune_tests::consent_requests::{decision, record, timestamp};
use attune_tests::{TestApp, backend_tests, consent_pb as pb};
use chrono::Utc;
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::TestRunner;
use tokio_stream::StreamExt;
use tonic::{Code, Streaming};

const PURPOSES: [&str; 3] = ["personalization", "analytics", "marketing_email"];

async fn next(
    stream: &mut Streaming<pb::WatchConsentChangesResponse>,
) -> pb::WatchConsentChangesResponse {
    tokio::time::timeout(Duration::from_secs(5), stream.next())
        .await
        .expect("the stream answers within 5 s")
        .unwrap()
        .unwrap()
}

/// Reads changes until `count` have arrived.
async fn changes(
    stream: &mut Streaming<pb::WatchConsentChangesResponse>,
    count: usize,
) -> Vec<pb::ConsentChange> {
    let mut changes = Vec::new();
    while changes.len() < count {
        changes.extend(next(stream).await.changes);
    }
    changes
}

fn decision_of(change: &pb::ConsentChange) -> &pb::ConsentDecisionChange {
    match change.change.as_ref().unwrap() {
        pb::consent_change::Change::Decision(decision) => decision,
        other => panic!("expected a decision, got {other:?}"),
    }
}

/// The position and recorded record id of each change in `response`.
fn received_in(
    response: &pb::WatchConsentChangesResponse,
) -> impl Iterator<Item = (i64, i64)> + '_ {
    response.changes.iter().map(|change| {
        let record_id = decision_of(change).recorded.as_ref().unwrap().record_id;
        (change.position, record_id)
    })
}

backend_tests! {
    async fn changes_arrive_in_order_with_the_decision_that_counts(app) {
        let start = app.newest_change_position().await;
        let mut stream = app.watch_changes(start).await;
        let mut consent = app.consent();
        let granted = consent
            .record_consent(record("w-1", vec![decision("analytics", pb::Decision::Granted)]))
            .await
            .unwrap()
            .into_inner();
        // A withdrawal made earlier but recorded later (an offline till) does not
        // count: the change says so.
        let mut late = record("w-1", vec![decision("analytics", pb::Decision::Withdrawn)]);
        late.decide_time = Some(timestamp(Utc::now() - chrono::Duration::hours(1)));
        let withdrawn = consent.record_consent(late).await.unwrap().into_inner();

        let received = changes(&mut stream, 2).await;
        assert!(received[0].position > start && received[1].position > received[0].position);
        let first = decision_of(&received[0]);
        assert_eq!((first.customer_id.as_str(), first.purpose_code.as_str()), ("w-1", "analytics"));
        let granted_id = granted.records[0].record_id;
        assert_eq!(first.recorded.as_ref().unwrap().record_id, granted_id);
        assert_eq!(first.current.as_ref().unwrap().record_id, granted_id);
        let second = decision_of(&received[1]);
        assert_eq!(second.recorded.as_ref().unwrap().record_id, withdrawn.records[0].record_id);
        assert_eq!(second.recorded.as_ref().unwrap().decision, pb::Decision::Withdrawn as i32);
        assert_eq!(second.current.as_ref().unwrap().record_id, granted_id);
        assert!(received.iter().all(|c| c.change_time.is_some()));
    }

    async fn a_quiet_stream_sends_heartbeats_with_its_cursor(app) {
        let start = app.newest_change_position().await;
        let mut stream = app.watch_changes(start).await;
        for _ in 0..3 {
            let heartbeat = next(&mut stream).await;
            assert!(heartbeat.changes.is_empty());
            assert_eq!(heartbeat.position, start);
            assert!(heartbeat.send_time.is_some());
        }
    }

    async fn a_stream_ends_unavailable_not_ok_when_the_server_shuts_down(app) {
        // OK would tell a client the feed is over; UNAVAILABLE tells it to resume
        // after its cursor, on this replica once restarted or on another.
        let mut app = app;
        let start = app.newest_change_position().await;
        let mut stream = app.watch_changes(start).await;
        assert_eq!(next(&mut stream).await.position, start);
        app.begin_shutdown();
        let ended = loop {
            match tokio::time::timeout(Duration::from_secs(5), stream.next())
                .await
                .expect("the stream ends within 5 s of the shutdown")
            {
                Some(Ok(heartbeat)) => assert!(heartbeat.changes.is_empty()),
                Some(Err(status)) => break status,
                None => panic!("the stream ended with OK at shutdown"),
            }
        };
        assert_eq!(ended.code(), Code::Unavailable, "{ended:?}");
        app.join().await.unwrap();
    }

    async fn state_reads_name_the_position_they_reflect(app) {
        let mut consent = app.consent();
        consent
            .record_consent(record("w-2", vec![decision("analytics", pb::Decision::Granted)]))
            .await
            .unwrap();
        let state = consent
            .get_consent_state(pb::GetConsentStateRequest {
                customer_id: "w-2".into(),
                purpose_codes: vec![],
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(state.change_position, app.newest_change_position().await);
        // Watching from that position delivers exactly what the state does not hold.
        let mut stream = app.watch_changes(state.change_position).await;
        consent
            .record_consent(record("w-2", vec![decision("analytics", pb::Decision::Withdrawn)]))
            .await
            .unwrap();
        let received = changes(&mut stream, 1).await;
        assert_eq!(received.len(), 1);
        assert_eq!(
            decision_of(&received[0]).recorded.as_ref().unwrap().decision,
            pb::Decision::Withdrawn as i32
        );
    }

    async fn bad_cursors_are_refused(app) {
        let newest = app.newest_change_position().await;
        let beyond = app
            .consent()
            .watch_consent_changes(pb::WatchConsentChangesRequest {
                after_position: newest + 1,
                start_at_newest: false,
            })
            .await
            .unwrap_err();
        assert_eq!(beyond.code(), Code::OutOfRange, "{beyond:?}");
        let negative = app
            .consent()
            .watch_consent_changes(pb::WatchConsentChangesRequest {
                after_position: -1,
                start_at_newest: false,
            })
            .await
            .unwrap_err();
        assert_eq!(negative.code(), Code::InvalidArgument, "{negative:?}");
        assert!(negative.message().contains("after_position"), "{negative:?}");
    }

    async fn a_watcher_that_reconnects_misses_nothing_and_repeats_nothing(app) {
        let mut runner = TestRunner::default();
        let plans = proptest::collection::vec(plan(), CASES).new_tree(&mut runner).unwrap().current();
        for (case, plan) in plans.iter().enumerate() {
            resume_case(&app, case, plan).await;
        }
    }
}

const CASES: usize = 6;

/// One random interleaving: how much each concurrent writer writes, and after how
/// many responses the watcher drops its stream and how long it stays away.
#[derive(Debug, Clone)]
struct Plan {
    writers: Vec<Vec<usize>>,
    disconnects: Vec<(usize, u64)>,
}

fn plan() -> impl Strategy<Value = Plan> {
    // Each writer sends requests of 1 to 3 decisions.
    let writer = proptest::collection::vec(1..=3usize, 1..8);
    let disconnect = (1..4usize, 0..25u64);
    (
        proptest::collection::vec(writer, 2..5),
        proptest::collection::vec(disconnect, 1..12),
    )
        .prop_map(|(writers, disconnects)| Plan {
            writers,
            disconnects,
        })
}

async fn resume_case(app: &TestApp, case: usize, plan: &Plan) {
    let start = app.newest_change_position().await;
    let writers: Vec<_> = plan
        .writers
        .iter()
        .enumerate()
        .map(|(writer, requests)| {
            let mut consent = app.consent();
            let requests = requests.clone();
            tokio::spawn(async move {
                let mut ids = Vec::new();
                for (n, size) in requests.into_iter().enumerate() {
                    let decisions = PURPOSES[..size]
                        .iter()
                        .map(|purpose| decision(purpose, pb::Decision::Granted))
                        .collect();
                    let request = record(&format!("r{case}-{writer}-{n}"), decisions);
                    let response = consent.record_consent(request).await.unwrap().into_inner();
                    ids.extend(response.records.into_iter().map(|r| r.record_id));
                }
                ids
            })
        })
        .collect();

    // The watcher drops and resumes its stream while the writers write.
    let mut cursor = start;
    let mut received: Vec<(i64, i64)> = Vec::new();
    for (responses, away_ms) in &plan.disconnects {
        let mut stream = app.watch_changes(cursor).await;
        for _ in 0..*responses {
            let response = next(&mut stream).await;
            received.extend(received_in(&response));
            cursor = response.position;
        }
        drop(stream);
        tokio::time::sleep(Duration::from_millis(*away_ms)).await;
    }
    let mut written = BTreeSet::new();
    for writer in writers {
        written.extend(writer.await.unwrap());
    }
    // Then it catches up with everything committed.
    let newest = app.newest_change_position().await;
    let mut stream = app.watch_changes(cursor).await;
    while cursor < newest {
        let response = next(&mut stream).await;
        received.extend(received_in(&response));
        cursor = response.position;
    }

    assert!(
        received.windows(2).all(|pair| pair[0].0 < pair[1].0),
        "case {case}: positions strictly increase across reconnects: {plan:?}"
    );
    let ids: Vec<i64> = received.iter().map(|(_, id)| *id).collect();
    let unique: BTreeSet<i64> = ids.iter().copied().collect();
    assert_eq!(
        unique.len(),
        ids.len(),
        "case {case}: a change came twice: {plan:?}"
    );
    assert_eq!(
        unique, written,
        "case {case}: every change arrives: {plan:?}"
    );
}
