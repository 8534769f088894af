//! Two replicas of recommendation over one database (the monolith's and a pod
//! started beside it), as Kubernetes runs them: what one replica writes, the
//! other serves within its `recommendation.replica_refresh`, not when its
//! caches expire or its next training runs. Sessions (the follower runs on one
//! replica only), the catalogue, a training asked for, and an erasure.

#![allow(clippy::unwrap_used)] // panics fail tests

use std::time::Duration;

use attune_proto::recommendation::v1 as pb;
use attune_tests::profile_events::{eur, item, purchase, view};
use attune_tests::recommendation::{catalog_item, home, request_id};
use attune_tests::{TestApp, backend_tests};
use chrono::{TimeDelta, Utc};
use tonic::Code;

async fn buy_again(replica: &TestApp, customer: &str) -> Vec<String> {
    let answer = replica
        .recommendation()
        .get_buy_again(pb::GetBuyAgainRequest {
            customer_id: customer.into(),
            filter: None,
            max_results: 5,
        })
        .await
        .unwrap()
        .into_inner();
    answer
        .items
        .into_iter()
        .filter_map(|i| i.item.map(|item| item.item_id))
        .collect()
}

/// Polls `check` on `replica` until it holds, for at most five seconds: far
/// longer than the replica refresh (250 ms), far shorter than the minute a
/// cached session lives or the hour between trainings.
async fn within_seconds<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    for _ in 0..250 {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("{what} did not reach the other replica");
}

backend_tests! {
    async fn a_session_folded_in_by_one_replica_is_served_by_both(app) {
        let pod = app.pod("recommendation").await;
        app.upsert_items(vec![
            catalog_item("s1", &["shoes"], "acme", 5000),
            catalog_item("s2", &["shoes"], "acme", 6000),
        ])
        .await;
        let c = "replica-session";
        app.grant(c, &["personalization"]).await;
        // Both replicas hold the customer's (empty) session in memory now.
        for replica in [&app, &pod] {
            let cold = replica.recommendation().get_recommendations(home(c)).await.unwrap().into_inner();
            assert!(!cold.personalization.unwrap().personalized);
        }
        // Only one of the two follows profile's feed (the lease): the other
        // learns of the session through the change log.
        app.ingest(vec![view("replica-v1", c, Utc::now(), "s2")]).await;
        for replica in [&app, &pod] {
            within_seconds("the viewed item", || async {
                let answer = replica.recommendation().get_recommendations(home(c)).await.unwrap().into_inner();
                answer.items.iter().any(|i| {
                    i.item_id == "s2"
                        && i.further_reasons.iter().chain(i.reason.iter()).any(|r| r.kind == pb::ReasonKind::RecentlyViewed as i32)
                })
            })
            .await;
        }
    }

    async fn catalogue_changes_through_one_replica_are_served_by_the_other(app) {
        let pod = app.pod("recommendation").await;
        let get = |replica: &TestApp, id: &str| {
            let mut client = replica.recommendation();
            let request = pb::GetItemRequest { item_id: id.into() };
            async move { client.get_item(request).await }
        };
        app.upsert_items(vec![catalog_item("late", &["shoes"], "acme", 5000)]).await;
        within_seconds("an upsert", || async { get(&pod, "late").await.is_ok() }).await;
        let mut cheaper = catalog_item("late", &["shoes"], "acme", 4000);
        cheaper.title = "Late, reduced".into();
        pod.upsert_items(vec![cheaper]).await;
        within_seconds("an update", || async {
            get(&app, "late").await.is_ok_and(|item| item.into_inner().item.is_some_and(|item| item.title == "Late, reduced"))
        })
        .await;
        pod.recommendation()
            .delete_items(pb::DeleteItemsRequest { item_ids: vec!["late".into()], request_id: request_id() })
            .await
            .unwrap();
        within_seconds("a deletion", || async {
            get(&app, "late").await.is_err_and(|status| status.code() == Code::NotFound)
        })
        .await;
    }

    async fn a_training_and_an_erasure_through_one_replica_hold_on_both(app) {
        let pod = app.pod("recommendation").await;
        app.upsert_items(vec![catalog_item("milk", &["food"], "farm", 120)]).await;
        let c = "replica-erase";
        app.grant(c, &["personalization"]).await;
        let now = Utc::now();
        let lines = vec![item("milk", 1, Some(eur(120)), &["food"], "farm")];
        app.ingest(vec![purchase("replica-o1", c, now - TimeDelta::days(3), lines, eur(120))]).await;
        // A training asked of one replica runs on both.
        app.train_until(1).await;
        within_seconds("a training", || async {
            let status = pod.model_status().await;
            !status.training && status.interaction_count == 1
        })
        .await;
        assert_eq!(buy_again(&app, c).await, ["milk"]);
        assert_eq!(buy_again(&pod, c).await, ["milk"], "the pod's own model knows the customer");

        // Erased through the gateway (which asks one replica): neither serves
        // the customer from its trained models any more, long before either
        // trains again.
        let erased = app.erase_customer(c, &request_id()).await;
        assert!(erased.complete, "{erased:?}");
        app.grant(c, &["personalization"]).await;
        for replica in [&app, &pod] {
            within_seconds("an erasure", || async { buy_again(replica, c).await.is_empty() }).await;
        }
        assert_eq!(pod.model_status().await.interaction_count, 1, "no training ran meanwhile");
    }
}
