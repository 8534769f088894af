//! Experiments over real gRPC: a deterministic split by customer, the holdout
//! served without personal data, attribution of clicks and purchases per
//! variant; a model swapped in under load never fails a call, and a training
//! that fails keeps the previous model in service.

#![allow(clippy::unwrap_used, clippy::float_cmp)] // panics fail tests

use std::collections::BTreeMap;

use attune_kit::sea_orm::{ConnectionTrait, Statement};
use attune_proto::recommendation::v1 as pb;
use attune_tests::profile_events::{eur, event, item, purchase, view};
use attune_tests::recommendation::{catalog_item, request_id};
use attune_tests::{TestApp, backend_tests, profile_pb};
use chrono::TimeDelta;

fn variant(name: &str, kind: pb::VariantKind, weight: i32) -> pb::Variant {
    pb::Variant {
        name: name.into(),
        kind: kind.into(),
        weight,
        score_rules: vec![],
    }
}

async fn put(app: &TestApp, experiment: pb::Experiment) -> pb::Experiment {
    app.recommendation()
        .put_experiment(pb::PutExperimentRequest {
            experiment: Some(experiment),
            request_id: request_id(),
        })
        .await
        .unwrap()
        .into_inner()
        .experiment
        .unwrap()
}

async fn report(app: &TestApp, experiment_id: &str) -> pb::GetExperimentReportResponse {
    app.recommendation()
        .get_experiment_report(pb::GetExperimentReportRequest {
            experiment_id: experiment_id.into(),
            attribution_window: None,
        })
        .await
        .unwrap()
        .into_inner()
}

backend_tests! {
    async fn experiments_split_by_customer_and_attribute_clicks_and_revenue(app, clock) {
        app.upsert_items(vec![catalog_item("tea", &["food"], "leaf", 500), catalog_item("jam", &["food"], "berry", 300)]).await;
        let now = clock.clock().now();
        let customers: Vec<String> = (0..24).map(|n| format!("exp-{n}")).collect();
        let mut history = Vec::new();
        for (n, c) in customers.iter().enumerate() {
            app.grant(c, &["personalization"]).await;
            history.push(view(&format!("exp-v{n}"), c, now - TimeDelta::hours(2), "tea"));
        }
        app.ingest(history).await;
        app.train_until(24).await;
        let stored = put(&app, pb::Experiment {
            experiment_id: "home_v1".into(),
            variants: vec![variant("control", pb::VariantKind::Personalized, 1), variant("holdout", pb::VariantKind::Holdout, 1)],
            running: true,
            update_time: None,
        }).await;
        assert!(stored.update_time.is_some());

        let mut by_variant: BTreeMap<String, Vec<(String, String)>> = BTreeMap::new();
        for c in &customers {
            let ask = pb::GetRecommendationsRequest { customer_id: c.clone(), placement: pb::Placement::Home.into(), max_results: 2, ..Default::default() };
            let first = app.recommendation().get_recommendations(ask.clone()).await.unwrap().into_inner();
            let second = app.recommendation().get_recommendations(ask).await.unwrap().into_inner();
            assert_eq!(first.variant, second.variant, "a customer stays in one variant");
            let personalized = first.personalization.as_ref().unwrap().personalized;
            assert_eq!(personalized, first.variant == "control", "{first:?}");
            if first.variant == "holdout" {
                let why = first.personalization.as_ref().unwrap().non_personalized_reason;
                assert_eq!(why, attune_tests::common_pb::NonPersonalizedReason::Holdout as i32, "the holdout says it is one");
            }
            by_variant.entry(first.variant.clone()).or_default().push((c.clone(), first.recommendation_id.clone()));
            by_variant.entry(second.variant.clone()).or_default().push((c.clone(), second.recommendation_id.clone()));
        }
        assert_eq!(by_variant.keys().collect::<Vec<_>>(), ["control", "holdout"], "both variants get traffic");

        // The first control answer is clicked and its item bought; one holdout answer is clicked only.
        let (clicker, control_rec) = by_variant["control"][0].clone();
        let (holdout_clicker, holdout_rec) = by_variant["holdout"][0].clone();
        let click = |id: &str, customer: &str, rec: &str| profile_pb::Event {
            items: vec![item("tea", 1, None, &["food"], "leaf")],
            recommendation_id: rec.into(),
            ..event(profile_pb::EventKind::RecommendationClick, id, customer, now)
        };
        let paid = purchase("exp-buy", &clicker, now + TimeDelta::minutes(1), vec![item("tea", 2, Some(eur(500)), &["food"], "leaf")], eur(1000));
        clock.advance(TimeDelta::minutes(2));
        app.ingest(vec![click("exp-c1", &clicker, &control_rec), click("exp-c2", &holdout_clicker, &holdout_rec), paid]).await;
        app.train_until(24 + 3).await;

        let counted = |r: &pb::GetExperimentReportResponse| r.variants.iter().map(|v| v.impression_count).sum::<i64>() == 48;
        let mut answer = report(&app, "home_v1").await;
        for _ in 0..200 {
            if counted(&answer) && answer.variants.iter().all(|v| v.clicked_count == 1) { break; }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            answer = report(&app, "home_v1").await;
        }
        let control = answer.variants.iter().find(|v| v.variant == "control").unwrap();
        let holdout = answer.variants.iter().find(|v| v.variant == "holdout").unwrap();
        assert_eq!(control.impression_count, by_variant["control"].len() as i64);
        assert_eq!(holdout.impression_count, by_variant["holdout"].len() as i64);
        assert_eq!((control.clicked_count, holdout.clicked_count), (1, 1));
        assert_eq!(control.attributed_revenue, [eur(1000)]);
        assert!(holdout.attributed_revenue.is_empty());
        let rate = 1.0 / control.impression_count as f64;
        assert_eq!(control.click_through_rate, rate);
        assert!(control.click_through_rate_low < rate && rate < control.click_through_rate_high);
        assert!(control.click_through_rate_low >= 0.0 && control.click_through_rate_high <= 1.0);
        assert_eq!(control.revenue_per_impression, 1000.0 / control.impression_count as f64);
        assert!(control.revenue_per_impression_low <= control.revenue_per_impression && control.revenue_per_impression <= control.revenue_per_impression_high);
        assert_eq!(holdout.revenue_per_impression, 0.0);

        // Stopped: answers name no variant.
        put(&app, pb::Experiment { running: false, ..stored }).await;
        let plain = app.recommendation().get_recommendations(pb::GetRecommendationsRequest { customer_id: clicker, placement: pb::Placement::Home.into(), ..Default::default() }).await.unwrap().into_inner();
        assert_eq!(plain.variant, "");
    }

    async fn a_model_swap_under_load_never_fails_a_call(app, clock) {
        let items: Vec<_> = (0..30).map(|n| catalog_item(&format!("i{n}"), &["all"], "a", 100)).collect();
        app.upsert_items(items).await;
        let now = clock.clock().now();
        let mut events = Vec::new();
        for n in 0..30 {
            let c = format!("load-{}", n % 5);
            if n < 5 { app.grant(&c, &["personalization"]).await; }
            events.push(view(&format!("load-v{n}"), &c, now - TimeDelta::minutes(60 - n), &format!("i{n}")));
        }
        app.ingest(events).await;
        app.train_until(30).await;
        let readers: Vec<_> = (0..4).map(|n| {
            let mut client = app.recommendation();
            tokio::spawn(async move {
                let mut answered = 0;
                for round in 0..150 {
                    let answer = client.get_recommendations(pb::GetRecommendationsRequest {
                        customer_id: format!("load-{}", (n + round) % 5),
                        placement: pb::Placement::Home.into(),
                        max_results: 5,
                        ..Default::default()
                    }).await.expect("no call fails while models swap");
                    assert_eq!(answer.into_inner().items.len(), 5);
                    answered += 1;
                }
                answered
            })
        }).collect();
        let mut versions = Vec::new();
        for _ in 0..5 {
            clock.advance(TimeDelta::seconds(1));
            versions.push(app.train_until(30).await.model_version);
        }
        for reader in readers {
            assert_eq!(reader.await.unwrap(), 150);
        }
        versions.dedup();
        assert!(versions.len() > 1, "the models were swapped: {versions:?}");
    }

    async fn a_failed_training_keeps_the_previous_model_in_service(app, clock) {
        app.upsert_items(vec![catalog_item("tea", &["food"], "leaf", 500), catalog_item("jam", &["food"], "berry", 300)]).await;
        let c = "fails-1";
        app.grant(c, &["personalization"]).await;
        let now = clock.clock().now();
        app.ingest(vec![purchase("fails-o1", c, now - TimeDelta::days(3), vec![item("tea", 1, Some(eur(500)), &["food"], "leaf")], eur(500))]).await;
        let trained = app.train_until(1).await;
        let buy_again = || async {
            let answer = app.recommendation().get_buy_again(pb::GetBuyAgainRequest { customer_id: c.into(), filter: None, max_results: 5 }).await.unwrap().into_inner();
            let ids: Vec<String> = answer.items.iter().map(|i| i.item.as_ref().unwrap().item_id.clone()).collect();
            (ids, answer.personalization.unwrap().personalized)
        };
        assert_eq!(buy_again().await, (vec!["tea".to_owned()], true), "buy-again comes from the trained model");

        // A stored interaction this version cannot read (a signal it does not
        // know, as a newer version or a damaged restore could leave): the
        // trainer refuses the data rather than train on part of it.
        let db = attune_kit::db::connect(&app.config.database).await.unwrap();
        let backend = db.get_database_backend();
        db.execute_raw(Statement::from_string(backend, "INSERT INTO recommendation_interactions \
            (customer_id, item_id, signal, occur_time, order_id, quantity, revenue_minor, currency_code) \
            VALUES ('fails-2', 'jam', 'teleport', 0, NULL, 1, 0, 'EUR')")).await.unwrap();
        clock.advance(TimeDelta::seconds(5));
        app.recommendation().train_model(pb::TrainModelRequest { request_id: request_id() }).await.unwrap();
        let mut failed = app.model_status().await;
        for _ in 0..500 {
            if !failed.training { break; }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            failed = app.model_status().await;
        }
        assert!(!failed.training, "the training ended");
        assert!(failed.last_error.contains("unknown stored signal"), "GetModelStatus says why: {failed:?}");
        assert!(failed.last_attempt_time.unwrap().seconds > trained.last_attempt_time.unwrap().seconds, "{failed:?}");
        assert_eq!(failed.model_version, trained.model_version, "the previous model stays in service");
        assert_eq!((failed.train_time, failed.interaction_count), (trained.train_time, 1));

        // Answers still come from the previous model.
        assert_eq!(buy_again().await, (vec!["tea".to_owned()], true));
        let home = app.recommendation().get_recommendations(pb::GetRecommendationsRequest {
            customer_id: c.into(), placement: pb::Placement::Home.into(), max_results: 2, ..Default::default()
        }).await.unwrap().into_inner();
        assert_eq!(home.model_version, trained.model_version);
        assert!(home.personalization.unwrap().personalized);

        // Once the row is gone the next training succeeds and replaces it.
        db.execute_raw(Statement::from_string(backend, "DELETE FROM recommendation_interactions WHERE signal = 'teleport'")).await.unwrap();
        let retrained = app.train_until(1).await;
        assert!(retrained.last_error.is_empty());
        assert_ne!(retrained.model_version, trained.model_version, "{retrained:?}");
    }

    async fn model_status_tells_the_part_of_the_snapshot_that_grows_with_customers(app, clock) {
        app.upsert_items(vec![catalog_item("tea", &["food"], "leaf", 500), catalog_item("jam", &["food"], "berry", 300)]).await;
        let now = clock.clock().now();
        // Each customer buys one item once: no pair of items, so the per-item
        // parts (neighbour lists, popularity) stay as they are.
        let buy = |n: usize| {
            let c = format!("size-{n:03}");
            purchase(&format!("size-o{n}"), &c, now - TimeDelta::days(2), vec![item("tea", 1, Some(eur(500)), &["food"], "leaf")], eur(500))
        };
        for n in 0..=40 {
            app.grant(&format!("size-{n:03}"), &["personalization"]).await;
        }
        app.ingest(vec![buy(0)]).await;
        let one = app.train_until(1).await;
        assert_eq!(one.customer_count, 1);
        assert!(one.customer_memory_bytes > 0 && one.customer_memory_bytes < one.memory_bytes, "{one:?}");

        app.ingest((1..=40).map(buy).collect()).await;
        clock.advance(TimeDelta::seconds(5));
        let many = app.train_until(41).await;
        assert_eq!(many.customer_count, 41);
        assert!(many.customer_memory_bytes > one.customer_memory_bytes, "{one:?} {many:?}");
        assert_eq!(
            many.memory_bytes - many.customer_memory_bytes,
            one.memory_bytes - one.customer_memory_bytes,
            "the per-item parts did not grow: {one:?} {many:?}"
        );
        // Each further customer: one history row (16 bytes), an offset and
        // their id in the index; far under a kilobyte.
        let each = (many.customer_memory_bytes - one.customer_memory_bytes) as f64 / 40.0;
        assert!(each < 200.0, "{each} bytes per customer");
    }
}
