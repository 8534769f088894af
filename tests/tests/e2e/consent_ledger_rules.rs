//! The rule that turns the ledger into a current state, checked against a model on
//! random decision sequences recorded concurrently: the most recent decision time
//! wins, at the same instant a withdrawal beats a denial beats a grant, and among
//! equals the decision recorded last wins.

#![allow(clippy::unwrap_used)] // a panic is how a test fails

use attune_tests::consent_requests::{decision, record, timestamp};
use attune_tests::{TestApp, backend_tests, common_pb, consent_pb as pb};
use chrono::{Duration, SubsecRound, Utc};
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::TestRunner;

const PURPOSES: [&str; 2] = ["personalization", "analytics"];
const CASES: usize = 24;

#[derive(Debug, Clone)]
struct Step {
    purpose: usize,
    decision: pb::Decision,
    minutes_ago: i64,
}

fn steps() -> impl Strategy<Value = Vec<Step>> {
    let decision = prop_oneof![
        Just(pb::Decision::Granted),
        Just(pb::Decision::Denied),
        Just(pb::Decision::Withdrawn),
    ];
    // Few distinct times, so ties are common.
    let step =
        (0..PURPOSES.len(), decision, 0i64..4).prop_map(|(purpose, decision, minutes_ago)| Step {
            purpose,
            decision,
            minutes_ago,
        });
    proptest::collection::vec(step, 1..10)
}

fn precedence(decision: i32) -> i32 {
    match pb::Decision::try_from(decision).unwrap() {
        pb::Decision::Granted => 1,
        pb::Decision::Denied => 2,
        pb::Decision::Withdrawn => 3,
        pb::Decision::Unspecified => unreachable!("never recorded"),
    }
}

async fn check_case(app: &TestApp, case: usize, steps: &[Step]) {
    let customer = format!("prop-{case}");
    // Whole seconds: the model below ranks decision times by their seconds.
    let base = (Utc::now() - Duration::hours(1)).trunc_subsecs(0);
    // Record every step concurrently, one request each: record ids follow commit order.
    let calls = steps.iter().map(|step| {
        let mut client = app.consent();
        let time = base - Duration::minutes(step.minutes_ago);
        let mut request = record(
            &customer,
            vec![decision(PURPOSES[step.purpose], step.decision)],
        );
        request.channel = common_pb::Channel::Store.into();
        request.decide_time = Some(timestamp(time));
        tokio::spawn(async move { client.record_consent(request).await })
    });
    let mut records = Vec::new();
    for call in calls.collect::<Vec<_>>() {
        let response = call.await.unwrap().expect("a valid decision is recorded");
        records.extend(response.into_inner().records);
    }

    let state = app
        .consent()
        .get_consent_state(pb::GetConsentStateRequest {
            customer_id: customer.clone(),
            purpose_codes: PURPOSES.iter().map(|p| p.to_string()).collect(),
        })
        .await
        .unwrap()
        .into_inner();
    for purpose in PURPOSES {
        let expected = records
            .iter()
            .filter(|r| r.purpose_code == purpose)
            .max_by_key(|r| {
                let time = r.decide_time.as_ref().unwrap().seconds;
                (time, precedence(r.decision), r.record_id)
            });
        let actual = state
            .states
            .iter()
            .find(|s| s.purpose_code == purpose)
            .unwrap();
        assert_eq!(
            actual.latest.as_ref().map(|r| r.record_id),
            expected.map(|r| r.record_id),
            "case {case}, purpose {purpose}, steps {steps:?}"
        );
        let granted = expected.is_some_and(|r| r.decision == pb::Decision::Granted as i32);
        assert_eq!(
            actual.status == pb::ConsentStatus::Granted as i32,
            granted,
            "case {case}: {steps:?}"
        );
    }
}

backend_tests! {
    async fn the_current_state_follows_the_ranking_rule_under_concurrency(app) {
        let mut runner = TestRunner::default();
        let cases = proptest::collection::vec(steps(), CASES).new_tree(&mut runner).unwrap().current();
        for (case, steps) in cases.iter().enumerate() {
            check_case(&app, case, steps).await;
        }
    }
}
