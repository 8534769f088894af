//! Every RPC of attune.recommendation.v1 refuses each bad field with the right
//! code and field, and writes nothing.

#![allow(clippy::unwrap_used)] // panics fail tests

use attune_proto::recommendation::v1 as pb;
use attune_tests::backend_tests;
use attune_tests::bad_input::{Cases, assert_each_rejected};
use attune_tests::profile_events::eur;
use attune_tests::recommendation::{catalog_item, request_id};
use tonic::Code;

fn usd(minor: i64) -> attune_tests::common_pb::Money {
    attune_tests::common_pb::Money {
        amount_minor: minor,
        currency_code: "USD".into(),
    }
}

/// `cases` and a case per bad filter field.
fn filter_cases<R: 'static>(
    cases: Cases<R>,
    get: fn(&mut R) -> &mut pb::RecommendationFilter,
) -> Cases<R> {
    cases
        .invalid("bad category", "filter.category_ids[0]", move |r| {
            get(r).category_ids = vec!["has space".into()]
        })
        .invalid("too many categories", "filter.category_ids", move |r| {
            get(r).category_ids = (0..51).map(|n| format!("c{n}")).collect()
        })
        .invalid(
            "bad excluded category",
            "filter.exclude_category_ids[0]",
            move |r| get(r).exclude_category_ids = vec![String::new()],
        )
        .invalid("empty brand", "filter.brands", move |r| {
            get(r).brands = vec![String::new()]
        })
        .invalid("bad currency", "filter.min_price.currency_code", move |r| {
            get(r).min_price = Some(attune_tests::common_pb::Money {
                amount_minor: 1,
                currency_code: "EURO".into(),
            })
        })
        .invalid(
            "negative price",
            "filter.max_price.amount_minor",
            move |r| get(r).max_price = Some(eur(-1)),
        )
        .invalid(
            "currencies differ",
            "filter.max_price.currency_code",
            move |r| {
                get(r).min_price = Some(eur(1));
                get(r).max_price = Some(usd(2));
            },
        )
        .invalid("min above max", "filter.min_price", move |r| {
            get(r).min_price = Some(eur(5));
            get(r).max_price = Some(eur(2));
        })
        .invalid("negative lookback", "filter.purchased_lookback", move |r| {
            get(r).purchased_lookback = Some(prost_types::Duration {
                seconds: -1,
                nanos: 0,
            })
        })
        .invalid(
            "negative category cap",
            "filter.max_per_category",
            move |r| get(r).max_per_category = -1,
        )
        .invalid("negative brand cap", "filter.max_per_brand", move |r| {
            get(r).max_per_brand = -1
        })
        .invalid(
            "bad excluded item",
            "filter.exclude_item_ids[0]",
            move |r| get(r).exclude_item_ids = vec!["a b".into()],
        )
        .invalid("too many exclusions", "filter.exclude_item_ids", move |r| {
            get(r).exclude_item_ids = (0..501).map(|n| format!("i{n}")).collect()
        })
        .invalid(
            "bad repurchasable category",
            "filter.repurchasable_category_ids[0]",
            move |r| get(r).repurchasable_category_ids = vec![String::new()],
        )
        .invalid("empty attribute key", "filter.attributes", move |r| {
            get(r).attributes = [(String::new(), "x".into())].into()
        })
        .invalid("rule without a target", "filter.score_rules[0]", move |r| {
            get(r).score_rules = vec![pb::ScoreRule {
                factor: 2.0,
                ..Default::default()
            }]
        })
        .invalid(
            "rule with a zero factor",
            "filter.score_rules[0].factor",
            move |r| {
                get(r).score_rules = vec![pb::ScoreRule {
                    brand: "a".into(),
                    factor: 0.0,
                    ..Default::default()
                }]
            },
        )
        .invalid(
            "rule with a huge factor",
            "filter.score_rules[0].factor",
            move |r| {
                get(r).score_rules = vec![pb::ScoreRule {
                    brand: "a".into(),
                    factor: 1000.0,
                    ..Default::default()
                }]
            },
        )
        .invalid(
            "attribute key without value",
            "filter.score_rules[0].attribute_value",
            move |r| {
                get(r).score_rules = vec![pb::ScoreRule {
                    attribute_key: "colour".into(),
                    factor: 2.0,
                    ..Default::default()
                }]
            },
        )
}

/// `cases` and a case per bad context field.
fn context_cases<R: 'static>(
    cases: Cases<R>,
    get: fn(&mut R) -> &mut pb::RecommendationContext,
) -> Cases<R> {
    cases
        .invalid(
            "bad current item",
            "context.current_item_ids[0]",
            move |r| get(r).current_item_ids = vec![String::new()],
        )
        .invalid(
            "too many current items",
            "context.current_item_ids",
            move |r| get(r).current_item_ids = (0..21).map(|n| format!("i{n}")).collect(),
        )
        .invalid("bad cart item", "context.cart_item_ids[0]", move |r| {
            get(r).cart_item_ids = vec!["x y".into()]
        })
        .invalid("bad category", "context.category_id", move |r| {
            get(r).category_id = "x y".into()
        })
        .invalid("long query", "context.search_query", move |r| {
            get(r).search_query = "q".repeat(257)
        })
        .invalid("unknown channel", "context.channel", move |r| {
            get(r).channel = 999
        })
        .invalid("bad language", "context.language_code", move |r| {
            get(r).language_code = "de DE".into()
        })
}

/// The experiment of a PutExperimentRequest, to spoil.
fn experiment(request: &mut pb::PutExperimentRequest) -> &mut pb::Experiment {
    request.experiment.as_mut().unwrap()
}

backend_tests! {
    async fn every_rpc_refuses_bad_input_and_writes_nothing(app) {
        app.upsert_items(vec![catalog_item("known", &["shoes"], "acme", 100)]).await;
        let client = app.recommendation();
        let db = &app.config.database;

        let valid_upsert = || pb::UpsertItemsRequest { items: vec![catalog_item("new", &["shoes"], "acme", 100)], request_id: request_id(), update_mask: None };
        let cases = Cases::new()
            .invalid("no request id", "request_id", |r: &mut pb::UpsertItemsRequest| r.request_id.clear())
            .invalid("no items", "items", |r| r.items.clear())
            .invalid("too many items", "items", |r| r.items = (0..501).map(|n| catalog_item(&format!("i{n}"), &["c"], "b", 1)).collect())
            .invalid("empty item id", "items[0].item_id", |r| r.items[0].item_id.clear())
            .invalid("spaced item id", "items[0].item_id", |r| r.items[0].item_id = "a b".into())
            .invalid("duplicate item", "items[1].item_id", |r| r.items.push(r.items[0].clone()))
            .invalid("long title", "items[0].title", |r| r.items[0].title = "t".repeat(301))
            .invalid("no title", "items[0].title", |r| r.items[0].title.clear())
            .invalid("no categories", "items[0].category_path", |r| r.items[0].category_path.clear())
            .invalid("deep path", "items[0].category_path", |r| r.items[0].category_path = (0..9).map(|n| pb::CategoryRef { category_id: format!("c{n}"), display_name: String::new() }).collect())
            .invalid("bad category", "items[0].category_path[0].category_id", |r| r.items[0].category_path[0].category_id.clear())
            .invalid("long brand", "items[0].brand", |r| r.items[0].brand = "b".repeat(101))
            .invalid("no price", "items[0].price", |r| r.items[0].price = None)
            .invalid("bad currency", "items[0].price.currency_code", |r| r.items[0].price = Some(attune_tests::common_pb::Money { amount_minor: 1, currency_code: "xx".into() }))
            .invalid("negative price", "items[0].price.amount_minor", |r| r.items[0].price = Some(eur(-5)))
            .invalid("original in another currency", "items[0].original_price.currency_code", |r| r.items[0].original_price = Some(usd(5)))
            .invalid("negative stock", "items[0].stock_quantity", |r| r.items[0].stock_quantity = Some(-1))
            .invalid("bad attribute key", "items[0].attributes", |r| { r.items[0].attributes.insert("Colour".into(), "red".into()); })
            .invalid("long uri", "items[0].uri", |r| r.items[0].uri = "u".repeat(2049))
            .invalid("bad launch time", "items[0].launch_time", |r| r.items[0].launch_time = Some(prost_types::Timestamp { seconds: i64::MAX, nanos: 0 }))
            .invalid("negative version", "items[0].source_version", |r| r.items[0].source_version = -1)
            .invalid("bad mask path", "update_mask.paths[0]", |r| r.update_mask = Some(prost_types::FieldMask { paths: vec!["item_id".into()] }));
        assert_each_rejected(db, valid_upsert, cases, |request| {
            let mut client = client.clone();
            async move { client.upsert_items(request).await }
        }).await;

        let valid_delete = || pb::DeleteItemsRequest { item_ids: vec!["known".into()], request_id: request_id() };
        let cases = Cases::new()
            .invalid("no request id", "request_id", |r: &mut pb::DeleteItemsRequest| r.request_id.clear())
            .invalid("no ids", "item_ids", |r| r.item_ids.clear())
            .invalid("bad id", "item_ids[0]", |r| r.item_ids[0].clear())
            .invalid("duplicate", "item_ids[1]", |r| r.item_ids.push("known".into()));
        assert_each_rejected(db, valid_delete, cases, |request| {
            let mut client = client.clone();
            async move { client.delete_items(request).await }
        }).await;

        let cases = Cases::new()
            .invalid("empty id", "item_id", |r: &mut pb::GetItemRequest| r.item_id.clear())
            .refused("unknown", Code::NotFound, |r| r.item_id = "nope".into());
        assert_each_rejected(db, || pb::GetItemRequest { item_id: "known".into() }, cases, |request| {
            let mut client = client.clone();
            async move { client.get_item(request).await }
        }).await;

        let cases = Cases::new()
            .invalid("bad category", "category_id", |r: &mut pb::ListItemsRequest| r.category_id = "a b".into())
            .invalid("negative size", "page_size", |r| r.page_size = -1)
            .invalid("huge size", "page_size", |r| r.page_size = 1001)
            .invalid("foreign token", "page_token", |r| r.page_token = "nope".into());
        assert_each_rejected(db, pb::ListItemsRequest::default, cases, |request| {
            let mut client = client.clone();
            async move { client.list_items(request).await }
        }).await;

        let valid_recs = || pb::GetRecommendationsRequest { placement: pb::Placement::Home.into(), filter: Some(Default::default()), context: Some(Default::default()), ..Default::default() };
        let cases = Cases::new()
            .invalid("bad customer", "customer_id", |r: &mut pb::GetRecommendationsRequest| r.customer_id = "a b".into())
            .invalid("no placement", "placement", |r| r.placement = 0)
            .invalid("unknown placement", "placement", |r| r.placement = 99)
            .invalid("negative count", "max_results", |r| r.max_results = -1)
            .invalid("huge count", "max_results", |r| r.max_results = 101)
            .invalid("foreign token", "page_token", |r| r.page_token = "bm9wZQ".into());
        let cases = filter_cases(cases, |r: &mut pb::GetRecommendationsRequest| r.filter.as_mut().unwrap());
        let cases = context_cases(cases, |r: &mut pb::GetRecommendationsRequest| r.context.as_mut().unwrap());
        assert_each_rejected(db, valid_recs, cases, |request| {
            let mut client = client.clone();
            async move { client.get_recommendations(request).await }
        }).await;

        let valid_similar = || pb::GetSimilarItemsRequest { item_id: "known".into(), filter: Some(Default::default()), context: Some(Default::default()), ..Default::default() };
        let cases = Cases::new()
            .invalid("no item", "item_id", |r: &mut pb::GetSimilarItemsRequest| r.item_id.clear())
            .invalid("bad customer", "customer_id", |r| r.customer_id = "a b".into())
            .invalid("huge count", "max_results", |r| r.max_results = 101)
            .refused("unknown item", Code::NotFound, |r| r.item_id = "nope".into());
        let cases = filter_cases(cases, |r: &mut pb::GetSimilarItemsRequest| r.filter.as_mut().unwrap());
        assert_each_rejected(db, valid_similar, cases, |request| {
            let mut client = client.clone();
            async move { client.get_similar_items(request).await }
        }).await;

        let valid_complements = || pb::GetComplementsRequest { cart_item_ids: vec!["known".into()], filter: Some(Default::default()), context: Some(Default::default()), ..Default::default() };
        let cases = Cases::new()
            .invalid("empty cart", "cart_item_ids", |r: &mut pb::GetComplementsRequest| r.cart_item_ids.clear())
            .invalid("huge cart", "cart_item_ids", |r| r.cart_item_ids = (0..101).map(|n| format!("i{n}")).collect())
            .invalid("bad cart item", "cart_item_ids[0]", |r| r.cart_item_ids[0].clear())
            .invalid("bad customer", "customer_id", |r| r.customer_id = "a b".into())
            .invalid("negative count", "max_results", |r| r.max_results = -3);
        let cases = context_cases(cases, |r: &mut pb::GetComplementsRequest| r.context.as_mut().unwrap());
        assert_each_rejected(db, valid_complements, cases, |request| {
            let mut client = client.clone();
            async move { client.get_complements(request).await }
        }).await;

        let valid_rerank = || pb::RerankItemsRequest { customer_id: String::new(), candidate_item_ids: vec!["known".into(), "other".into()], context: Some(Default::default()) };
        let cases = Cases::new()
            .invalid("bad customer", "customer_id", |r: &mut pb::RerankItemsRequest| r.customer_id = "a b".into())
            .invalid("no candidates", "candidate_item_ids", |r| r.candidate_item_ids.clear())
            .invalid("too many", "candidate_item_ids", |r| r.candidate_item_ids = (0..501).map(|n| format!("i{n}")).collect())
            .invalid("bad candidate", "candidate_item_ids[1]", |r| r.candidate_item_ids[1] = "x y".into())
            .invalid("duplicate", "candidate_item_ids[2]", |r| r.candidate_item_ids.push("known".into()));
        let cases = context_cases(cases, |r: &mut pb::RerankItemsRequest| r.context.as_mut().unwrap());
        assert_each_rejected(db, valid_rerank, cases, |request| {
            let mut client = client.clone();
            async move { client.rerank_items(request).await }
        }).await;

        let valid_buy_again = || pb::GetBuyAgainRequest { customer_id: "c".into(), filter: Some(Default::default()), max_results: 0 };
        let cases = Cases::new()
            .invalid("no customer", "customer_id", |r: &mut pb::GetBuyAgainRequest| r.customer_id.clear())
            .invalid("long customer", "customer_id", |r| r.customer_id = "c".repeat(129))
            .invalid("huge count", "max_results", |r| r.max_results = 101);
        let cases = filter_cases(cases, |r: &mut pb::GetBuyAgainRequest| r.filter.as_mut().unwrap());
        assert_each_rejected(db, valid_buy_again, cases, |request| {
            let mut client = client.clone();
            async move { client.get_buy_again(request).await }
        }).await;

        let cases = Cases::new()
            .invalid("unknown kind", "kind", |r: &mut pb::ListRetargetingAudiencesRequest| r.kind = 99)
            .invalid("huge page", "page_size", |r| r.page_size = 501)
            .invalid("foreign token", "page_token", |r| r.page_token = "bm9wZQ".into());
        assert_each_rejected(db, pb::ListRetargetingAudiencesRequest::default, cases, |request| {
            let mut client = client.clone();
            async move { client.list_retargeting_audiences(request).await }
        }).await;

        let valid_members = || pb::ListAudienceMembersRequest { audience_id: "abandoned_cart_24h".into(), ..Default::default() };
        let cases = Cases::new()
            .invalid("huge item count", "max_items_per_member", |r: &mut pb::ListAudienceMembersRequest| r.max_items_per_member = 21)
            .invalid("bad language", "language_code", |r| r.language_code = "x y".into())
            .invalid("huge page", "page_size", |r| r.page_size = 1001)
            .invalid("negative idle", "min_idle", |r| r.min_idle = Some(prost_types::Duration { seconds: -5, nanos: 0 }))
            .invalid("no audience", "audience_id", |r| r.audience_id.clear())
            .refused("unknown audience", Code::NotFound, |r| r.audience_id = "nope".into());
        assert_each_rejected(db, valid_members, cases, |request| {
            let mut client = client.clone();
            async move { client.list_audience_members(request).await }
        }).await;

        let cases = Cases::new().invalid("no request id", "request_id", |r: &mut pb::TrainModelRequest| r.request_id.clear());
        assert_each_rejected(db, || pb::TrainModelRequest { request_id: request_id() }, cases, |request| {
            let mut client = client.clone();
            async move { client.train_model(request).await }
        }).await;

        let variant = |name: &str, kind: pb::VariantKind| pb::Variant { name: name.into(), kind: kind.into(), weight: 1, score_rules: vec![] };
        let valid_experiment = move || pb::PutExperimentRequest {
            experiment: Some(pb::Experiment { experiment_id: "e1".into(), variants: vec![variant("a", pb::VariantKind::Personalized), variant("b", pb::VariantKind::Holdout)], running: true, update_time: None }),
            request_id: request_id(),
        };
        let cases = Cases::new()
            .invalid("no request id", "request_id", |r: &mut pb::PutExperimentRequest| r.request_id.clear())
            .invalid("no experiment", "experiment", |r| r.experiment = None)
            .invalid("bad id", "experiment.experiment_id", |r| experiment(r).experiment_id = "E 1".into())
            .invalid("one variant", "experiment.variants", |r| { experiment(r).variants.pop(); })
            .invalid("bad variant name", "experiment.variants[0].name", |r| experiment(r).variants[0].name = "A".into())
            .invalid("duplicate variant", "experiment.variants[1].name", |r| experiment(r).variants[1].name = "a".into())
            .invalid("no kind", "experiment.variants[0].kind", |r| experiment(r).variants[0].kind = 0)
            .invalid("zero weight", "experiment.variants[0].weight", |r| experiment(r).variants[0].weight = 0)
            .invalid("rules without rules", "experiment.variants[0].score_rules", |r| experiment(r).variants[0].kind = pb::VariantKind::Rules.into())
            .invalid("rules on a holdout", "experiment.variants[1].score_rules", |r| experiment(r).variants[1].score_rules = vec![pb::ScoreRule { brand: "x".into(), factor: 2.0, ..Default::default() }]);
        assert_each_rejected(db, valid_experiment, cases, |request| {
            let mut client = client.clone();
            async move { client.put_experiment(request).await }
        }).await;

        let cases = Cases::new()
            .invalid("bad id", "experiment_id", |r: &mut pb::GetExperimentReportRequest| r.experiment_id = "E".into())
            .invalid("long window", "attribution_window", |r| r.attribution_window = Some(prost_types::Duration { seconds: 91 * 86_400, nanos: 0 }))
            .refused("unknown", Code::NotFound, |r| r.experiment_id = "nope".into());
        assert_each_rejected(db, || pb::GetExperimentReportRequest { experiment_id: "e1".into(), attribution_window: None }, cases, |request| {
            let mut client = client.clone();
            async move { client.get_experiment_report(request).await }
        }).await;
    }
}
