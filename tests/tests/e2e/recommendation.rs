//! Recommendation over real gRPC, on small hand-built catalogues where the
//! right answer is known: the catalogue mirror, popularity and the business
//! rules, buy-again, complements, similar items, session state, paging,
//! re-ranking, consent and erasure, and the content fallback for a new
//! customer from what profile knows of their tastes.

#![allow(clippy::unwrap_used, clippy::float_cmp)] // panics fail tests

use attune_proto::recommendation::v1 as pb;
use attune_tests::profile_events::{cart, eur, item, purchase, view};
use attune_tests::recommendation::{catalog_item, home, request_id};
use attune_tests::{TestApp, backend_tests, common_pb, every_page, privacy_pb, profile_pb};
use chrono::{DateTime, TimeDelta, Utc};
use tonic::Code;

fn ids(items: &[pb::RecommendedItem]) -> Vec<&str> {
    items.iter().map(|i| i.item_id.as_str()).collect()
}

fn kind(item: &pb::RecommendedItem) -> pb::ReasonKind {
    pb::ReasonKind::try_from(item.reason.as_ref().unwrap().kind).unwrap()
}

fn with_filter(
    mut request: pb::GetRecommendationsRequest,
    filter: pb::RecommendationFilter,
) -> pb::GetRecommendationsRequest {
    request.filter = Some(filter);
    request
}

async fn recommend(
    app: &TestApp,
    request: pb::GetRecommendationsRequest,
) -> pb::GetRecommendationsResponse {
    app.recommendation()
        .get_recommendations(request)
        .await
        .unwrap()
        .into_inner()
}

/// A purchase of one unit of each of `items` at 10 EUR.
fn bought(event_id: &str, customer: &str, at: DateTime<Utc>, items: &[&str]) -> profile_pb::Event {
    let lines = items
        .iter()
        .map(|i| item(i, 1, Some(eur(1000)), &["food"], "acme"))
        .collect();
    purchase(
        event_id,
        customer,
        at,
        lines,
        eur(1000 * items.len() as i64),
    )
}

/// Shoes from two brands at rising prices; s5 is the odd one (inactive).
async fn shoe_catalogue(app: &TestApp) {
    let mut items = vec![
        catalog_item("s1", &["shoes", "running"], "acme", 5000),
        catalog_item("s2", &["shoes", "running"], "acme", 6000),
        catalog_item("s3", &["shoes", "trail"], "bolt", 7000),
        catalog_item("s4", &["shoes", "trail"], "bolt", 8000),
        catalog_item("s5", &["shoes", "trail"], "bolt", 9000),
    ];
    items[4].active = Some(false);
    app.upsert_items(items).await;
}

/// Popularity: s1 bought by 4 customers, s2 by 3, s3 by 2, s4 by 1: ten
/// interactions.
async fn popularity(app: &TestApp, now: DateTime<Utc>) {
    let buyers = [
        ("p1", vec!["s1", "s2", "s3", "s4"]),
        ("p2", vec!["s1", "s2", "s3"]),
        ("p3", vec!["s1", "s2"]),
        ("p4", vec!["s1"]),
    ];
    let mut events = Vec::new();
    for (n, (customer, items)) in buyers.iter().enumerate() {
        app.grant(customer, &["personalization"]).await;
        events.push(bought(
            &format!("pop-{n}"),
            customer,
            now - TimeDelta::days(2),
            items,
        ));
    }
    app.ingest(events).await;
    app.train_until(10).await;
}

backend_tests! {
    async fn the_catalogue_merges_field_by_field_and_pages_by_id(app) {
        let mut client = app.recommendation();
        let created = app.upsert_items(vec![
            catalog_item("b", &["shoes"], "acme", 5000),
            catalog_item("a", &["bags"], "acme", 3000),
            catalog_item("c", &["shoes"], "bolt", 4000),
        ]).await;
        assert_eq!((created.created_count, created.updated_count), (3, 0));
        let stored = client.get_item(pb::GetItemRequest { item_id: "b".into() }).await.unwrap().into_inner().item.unwrap();
        assert_eq!(stored.in_stock, Some(true), "new items default to in stock");
        assert_eq!(stored.active, Some(true));
        assert!(stored.update_time.is_some());

        // An empty mask changes only what is populated.
        let update = pb::CatalogItem { item_id: "b".into(), in_stock: Some(false), brand: "bolt".into(), ..Default::default() };
        let updated = app.upsert_items(vec![update]).await;
        assert_eq!((updated.created_count, updated.updated_count), (0, 1));
        let after = client.get_item(pb::GetItemRequest { item_id: "b".into() }).await.unwrap().into_inner().item.unwrap();
        assert_eq!((after.in_stock, after.brand.as_str(), after.title.as_str()), (Some(false), "bolt", stored.title.as_str()));
        assert_eq!(after.price, stored.price);

        // A mask replaces the named fields, clearing unpopulated ones.
        let masked = pb::UpsertItemsRequest {
            items: vec![pb::CatalogItem { item_id: "b".into(), original_price: None, uri: "https://shop/b".into(), ..Default::default() }],
            request_id: request_id(),
            update_mask: Some(prost_types::FieldMask { paths: vec!["brand".into(), "uri".into()] }),
        };
        client.upsert_items(masked).await.unwrap();
        let after = client.get_item(pb::GetItemRequest { item_id: "b".into() }).await.unwrap().into_inner().item.unwrap();
        assert_eq!((after.brand.as_str(), after.uri.as_str()), ("", "https://shop/b"));

        // A lower source version than stored is stale.
        let mut v5 = catalog_item("d", &["shoes"], "acme", 100);
        v5.source_version = 5;
        app.upsert_items(vec![v5.clone()]).await;
        let mut v4 = v5.clone();
        v4.source_version = 4;
        v4.title = "older".into();
        let stale = app.upsert_items(vec![v4]).await;
        assert_eq!(stale.stale_item_ids, ["d"]);
        assert_eq!(client.get_item(pb::GetItemRequest { item_id: "d".into() }).await.unwrap().into_inner().item.unwrap().title, v5.title);

        // A new item missing required fields is refused whole.
        let error = client.upsert_items(pb::UpsertItemsRequest {
            items: vec![catalog_item("e", &["x"], "y", 1), pb::CatalogItem { item_id: "f".into(), ..Default::default() }],
            request_id: request_id(),
            update_mask: None,
        }).await.unwrap_err();
        assert_eq!(error.code(), Code::InvalidArgument);
        assert_eq!(client.get_item(pb::GetItemRequest { item_id: "e".into() }).await.unwrap_err().code(), Code::NotFound);

        // Replays answer the same; other content under the same id is refused.
        let once = pb::UpsertItemsRequest { items: vec![catalog_item("g", &["x"], "y", 1)], request_id: request_id(), update_mask: None };
        let first = client.upsert_items(once.clone()).await.unwrap().into_inner();
        assert_eq!(client.upsert_items(once.clone()).await.unwrap().into_inner(), first);
        let mut other = once.clone();
        other.items[0].title = "changed".into();
        assert_eq!(client.upsert_items(other).await.unwrap_err().code(), Code::AlreadyExists);

        // Pages by id, filtered by category.
        let mut seen = Vec::new();
        let mut token = String::new();
        loop {
            let page = client.list_items(pb::ListItemsRequest { category_id: String::new(), include_inactive: true, page_size: 2, page_token: token }).await.unwrap().into_inner();
            seen.extend(page.items.into_iter().map(|i| i.item_id));
            if page.next_page_token.is_empty() { break; }
            token = page.next_page_token;
        }
        assert_eq!(seen, ["a", "b", "c", "d", "g"]);
        let shoes = client.list_items(pb::ListItemsRequest { category_id: "shoes".into(), include_inactive: false, page_size: 0, page_token: String::new() }).await.unwrap().into_inner();
        assert_eq!(shoes.items.iter().map(|i| i.item_id.as_str()).collect::<Vec<_>>(), ["b", "c", "d"]);

        let deleted = client.delete_items(pb::DeleteItemsRequest { item_ids: vec!["a".into(), "zz".into()], request_id: request_id() }).await.unwrap().into_inner();
        assert_eq!((deleted.deleted_count, deleted.not_found_item_ids), (1, vec!["zz".to_owned()]));
        assert_eq!(client.get_item(pb::GetItemRequest { item_id: "a".into() }).await.unwrap_err().code(), Code::NotFound);
    }

    async fn popular_items_come_first_and_every_rule_applies(app, clock) {
        shoe_catalogue(&app).await;
        popularity(&app, clock.clock().now()).await;
        let answer = recommend(&app, home("")).await;
        assert_eq!(ids(&answer.items)[..4], ["s1", "s2", "s3", "s4"], "{answer:?}");
        assert!(!ids(&answer.items).contains(&"s5"), "inactive items are never recommended");
        assert_eq!(kind(&answer.items[0]), pb::ReasonKind::Popular);
        let personalization = answer.personalization.unwrap();
        assert!(!personalization.personalized);
        assert_eq!(personalization.non_personalized_reason, common_pb::NonPersonalizedReason::NoCustomer as i32);
        assert!(answer.items.iter().all(|i| i.data_categories.is_empty()));
        assert!(!answer.recommendation_id.is_empty());
        assert!(!answer.model_version.is_empty());
        assert_eq!(answer.items[0].rank, 1);
        assert_eq!(answer.items[0].item.as_ref().unwrap().title, "Title of s1");

        // In stock only.
        app.upsert_items(vec![pb::CatalogItem { item_id: "s1".into(), in_stock: Some(false), ..Default::default() }]).await;
        let filter = pb::RecommendationFilter { in_stock_only: true, ..Default::default() };
        assert_eq!(ids(&recommend(&app, with_filter(home(""), filter)).await.items)[..3], ["s2", "s3", "s4"]);
        // Category (anywhere on the path), excluded category, brand.
        let filter = pb::RecommendationFilter { category_ids: vec!["trail".into()], ..Default::default() };
        assert_eq!(ids(&recommend(&app, with_filter(home(""), filter)).await.items), ["s3", "s4"]);
        let filter = pb::RecommendationFilter { exclude_category_ids: vec!["running".into()], ..Default::default() };
        assert_eq!(ids(&recommend(&app, with_filter(home(""), filter)).await.items), ["s3", "s4"]);
        let filter = pb::RecommendationFilter { brands: vec!["acme".into()], ..Default::default() };
        assert_eq!(ids(&recommend(&app, with_filter(home(""), filter)).await.items), ["s1", "s2"]);
        // Price band, inclusive.
        let filter = pb::RecommendationFilter { min_price: Some(eur(6000)), max_price: Some(eur(7000)), ..Default::default() };
        assert_eq!(ids(&recommend(&app, with_filter(home(""), filter)).await.items), ["s2", "s3"]);
        // Exclusion list.
        let filter = pb::RecommendationFilter { exclude_item_ids: vec!["s1".into(), "s3".into()], ..Default::default() };
        assert_eq!(ids(&recommend(&app, with_filter(home(""), filter)).await.items), ["s2", "s4"]);
        // Attributes.
        let mut red = catalog_item("s3", &["shoes", "trail"], "bolt", 7000);
        red.attributes.insert("colour".into(), "red".into());
        app.upsert_items(vec![red]).await;
        let filter = pb::RecommendationFilter { attributes: [("colour".to_owned(), "red".to_owned())].into(), ..Default::default() };
        assert_eq!(ids(&recommend(&app, with_filter(home(""), filter)).await.items), ["s3"]);
        // Diversity: one per brand, one per leaf category.
        let filter = pb::RecommendationFilter { max_per_brand: 1, ..Default::default() };
        assert_eq!(ids(&recommend(&app, with_filter(home(""), filter)).await.items), ["s1", "s3"]);
        let filter = pb::RecommendationFilter { max_per_category: 1, ..Default::default() };
        assert_eq!(ids(&recommend(&app, with_filter(home(""), filter)).await.items), ["s1", "s3"]);
        // Boost a brand, bury a category.
        let filter = pb::RecommendationFilter {
            score_rules: vec![
                pb::ScoreRule { brand: "bolt".into(), factor: 50.0, ..Default::default() },
                pb::ScoreRule { category_id: "trail".into(), attribute_key: "colour".into(), attribute_value: "red".into(), factor: 0.001, ..Default::default() },
            ],
            ..Default::default()
        };
        assert_eq!(ids(&recommend(&app, with_filter(home(""), filter)).await.items), ["s4", "s1", "s2", "s3"]);
        // A category page shows its category; a product page never its product.
        let mut category_page = home("");
        category_page.placement = pb::Placement::CategoryPage.into();
        category_page.context = Some(pb::RecommendationContext { category_id: "trail".into(), ..Default::default() });
        let answer = recommend(&app, category_page).await;
        assert_eq!(ids(&answer.items), ["s3", "s4"]);
        assert_eq!(kind(&answer.items[0]), pb::ReasonKind::PopularInCategory);
        assert_eq!(answer.items[0].reason.as_ref().unwrap().ref_category_id, "trail");
        let mut product_page = home("p1");
        product_page.placement = pb::Placement::ProductPage.into();
        product_page.context = Some(pb::RecommendationContext { current_item_ids: vec!["s1".into()], ..Default::default() });
        let answer = recommend(&app, product_page).await;
        assert!(!answer.items.is_empty() && !ids(&answer.items).contains(&"s1"), "{answer:?}");
    }

    async fn buy_again_ranks_repeat_purchases_with_their_cadence(app, clock) {
        app.upsert_items(vec![
            catalog_item("milk", &["food", "dairy"], "farm", 120),
            catalog_item("bread", &["food", "bakery"], "mill", 250),
            catalog_item("tv", &["electronics"], "acme", 50_000),
        ]).await;
        let c = "ba-1";
        app.grant(c, &["personalization"]).await;
        let now = clock.clock().now();
        let ago = |days| now - TimeDelta::days(days);
        app.ingest(vec![
            bought("o1", c, ago(30), &["milk", "bread"]),
            bought("o2", c, ago(20), &["milk"]),
            bought("o3", c, ago(10), &["milk", "tv"]),
        ]).await;
        app.train_until(5).await;
        let answer = app.recommendation().get_buy_again(pb::GetBuyAgainRequest { customer_id: c.into(), filter: None, max_results: 10 }).await.unwrap().into_inner();
        let personalization = answer.personalization.clone().unwrap();
        assert!(personalization.personalized, "{personalization:?}");
        assert_eq!(personalization.purpose_codes, ["personalization"]);
        assert_eq!(personalization.data_categories, [common_pb::DataCategory::Purchases as i32]);
        let first = &answer.items[0];
        let item = first.item.as_ref().unwrap();
        assert_eq!(item.item_id, "milk", "{answer:?}");
        assert_eq!(first.purchase_count, 3);
        assert_eq!(first.typical_interval.unwrap().seconds, 10 * 86_400);
        let last = first.last_purchase_time.unwrap();
        let expected = first.expected_next_purchase_time.unwrap();
        assert_eq!(expected.seconds - last.seconds, 10 * 86_400);
        assert_eq!(kind(item), pb::ReasonKind::Purchased);
        assert!(item.reason.as_ref().unwrap().text.contains("every ~10 days"), "{item:?}");
        let bread = answer.items.iter().find(|i| i.item.as_ref().unwrap().item_id == "bread").unwrap();
        assert_eq!(bread.purchase_count, 1);
        assert!(bread.typical_interval.is_none() && bread.expected_next_purchase_time.is_none());
        // The filter applies to buy-again too.
        let filter = pb::RecommendationFilter { category_ids: vec!["electronics".into()], ..Default::default() };
        let only_tv = app.recommendation().get_buy_again(pb::GetBuyAgainRequest { customer_id: c.into(), filter: Some(filter), max_results: 0 }).await.unwrap().into_inner();
        assert_eq!(only_tv.items.iter().map(|i| i.item.as_ref().unwrap().item_id.as_str()).collect::<Vec<_>>(), ["tv"]);
    }

    async fn consent_decides_whether_history_is_read_and_a_withdrawal_counts_at_once(app, clock) {
        app.upsert_items(vec![catalog_item("milk", &["food"], "farm", 120), catalog_item("tea", &["food"], "leaf", 300)]).await;
        let c = "consent-1";
        app.grant(c, &["personalization"]).await;
        let now = clock.clock().now();
        app.ingest(vec![bought("o1", c, now - TimeDelta::days(9), &["milk"]), bought("o2", c, now - TimeDelta::days(2), &["milk"])]).await;
        app.train_until(2).await;
        let ask = || pb::GetBuyAgainRequest { customer_id: c.into(), filter: None, max_results: 5 };
        let granted = app.recommendation().get_buy_again(ask()).await.unwrap().into_inner();
        assert_eq!(granted.items.len(), 1);
        assert!(granted.personalization.unwrap().personalized);
        let personal = recommend(&app, home(c)).await;
        assert!(personal.personalization.as_ref().unwrap().personalized);
        assert_eq!(personal.items[0].item_id, "milk");
        assert_eq!(kind(&personal.items[0]), pb::ReasonKind::Purchased);
        assert_eq!(personal.items[0].data_categories, [common_pb::DataCategory::Purchases as i32]);

        // Withdrawn: the next call reads nothing of the customer.
        app.record_consent(attune_tests::consent_requests::record(c, vec![attune_tests::consent_requests::decision("personalization", attune_tests::consent_pb::Decision::Withdrawn)])).await;
        let mut withdrawn = None;
        for _ in 0..200 {
            let answer = app.recommendation().get_buy_again(ask()).await.unwrap().into_inner();
            if !answer.personalization.as_ref().unwrap().personalized { withdrawn = Some(answer); break; }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        let withdrawn = withdrawn.expect("the withdrawal took effect");
        assert!(withdrawn.items.is_empty());
        assert_eq!(withdrawn.personalization.unwrap().non_personalized_reason, common_pb::NonPersonalizedReason::NoConsent as i32);
        let anonymous = recommend(&app, home(c)).await;
        let why = anonymous.personalization.unwrap();
        assert!(!why.personalized && why.data_categories.is_empty());
        assert!(anonymous.items.iter().all(|i| kind(i) != pb::ReasonKind::Purchased && i.data_categories.is_empty()), "{:?}", anonymous.items);

        // Never given.
        let stranger = app.recommendation().get_buy_again(pb::GetBuyAgainRequest { customer_id: "never-asked".into(), filter: None, max_results: 5 }).await.unwrap().into_inner();
        assert!(stranger.items.is_empty());
        assert_eq!(stranger.personalization.unwrap().non_personalized_reason, common_pb::NonPersonalizedReason::NoConsent as i32);
    }

    async fn complements_are_bought_together_and_never_in_the_cart(app, clock) {
        app.upsert_items(vec![
            catalog_item("pasta", &["food"], "a", 100),
            catalog_item("sauce", &["food"], "a", 200),
            catalog_item("cheese", &["food"], "a", 300),
            catalog_item("soap", &["home"], "b", 400),
        ]).await;
        let now = clock.clock().now();
        let mut events = Vec::new();
        for n in 0..4 {
            let customer = format!("cx-{n}");
            app.grant(&customer, &["personalization"]).await;
            events.push(bought(&format!("cx-o{n}"), &customer, now - TimeDelta::days(3), &["pasta", "sauce"]));
            events.push(bought(&format!("cx-s{n}"), &customer, now - TimeDelta::days(1), &["soap"]));
        }
        events.push(bought("cx-o9", "cx-0", now - TimeDelta::days(2), &["pasta", "cheese"]));
        app.ingest(events).await;
        app.train_until(14).await;
        let answer = app.recommendation().get_complements(pb::GetComplementsRequest { cart_item_ids: vec!["pasta".into()], max_results: 2, ..Default::default() }).await.unwrap().into_inner();
        assert_eq!(ids(&answer.items), ["sauce", "cheese"], "{answer:?}");
        let reason = answer.items[0].reason.as_ref().unwrap();
        assert_eq!(reason.kind, pb::ReasonKind::BoughtTogether as i32);
        assert_eq!(reason.ref_item_id, "pasta");
        assert!(reason.text.contains("Title of pasta"), "{reason:?}");
        // A cart of unknown items gets popular items.
        let unknown = app.recommendation().get_complements(pb::GetComplementsRequest { cart_item_ids: vec!["nope".into()], max_results: 1, ..Default::default() }).await.unwrap().into_inner();
        assert_eq!(kind(&unknown.items[0]), pb::ReasonKind::Popular);
        // The cart placement asks the same of the context's cart.
        let mut cart_page = home("");
        cart_page.placement = pb::Placement::Cart.into();
        cart_page.context = Some(pb::RecommendationContext { cart_item_ids: vec!["pasta".into()], ..Default::default() });
        cart_page.filter = Some(pb::RecommendationFilter { exclude_in_cart: true, ..Default::default() });
        let answer = recommend(&app, cart_page).await;
        assert_eq!(answer.items[0].item_id, "sauce");
        assert!(!ids(&answer.items).contains(&"pasta"));
    }

    async fn similar_items_follow_views_and_exclude_the_item_itself(app, clock) {
        app.upsert_items(vec![
            catalog_item("x", &["shoes"], "a", 100),
            catalog_item("y", &["shoes"], "a", 100),
            catalog_item("z", &["shoes"], "a", 100),
            catalog_item("w", &["bags"], "a", 100),
        ]).await;
        let now = clock.clock().now();
        let mut events = Vec::new();
        for n in 0..3 {
            let customer = format!("sim-{n}");
            app.grant(&customer, &["personalization"]).await;
            events.push(view(&format!("sim-v{n}a"), &customer, now - TimeDelta::minutes(30), "x"));
            events.push(view(&format!("sim-v{n}b"), &customer, now - TimeDelta::minutes(29), "y"));
        }
        app.grant("sim-9", &["personalization"]).await;
        events.push(view("sim-v9a", "sim-9", now - TimeDelta::minutes(20), "x"));
        events.push(view("sim-v9b", "sim-9", now - TimeDelta::minutes(19), "z"));
        app.ingest(events).await;
        app.train_until(8).await;
        let answer = app.recommendation().get_similar_items(pb::GetSimilarItemsRequest { item_id: "x".into(), max_results: 2, ..Default::default() }).await.unwrap().into_inner();
        assert_eq!(ids(&answer.items), ["y", "z"], "{answer:?}");
        assert_eq!(answer.items[0].reason.as_ref().unwrap().ref_item_id, "x");
        let error = app.recommendation().get_similar_items(pb::GetSimilarItemsRequest { item_id: "missing".into(), ..Default::default() }).await.unwrap_err();
        assert_eq!(error.code(), Code::NotFound);
    }

    async fn the_last_event_is_reflected_on_the_next_call(app, clock) {
        shoe_catalogue(&app).await;
        popularity(&app, clock.clock().now()).await;
        let c = "session-1";
        app.grant(c, &["personalization"]).await;
        // Not known yet: consented but nothing to go by.
        let cold = recommend(&app, home(c)).await;
        assert_eq!(cold.personalization.unwrap().non_personalized_reason, common_pb::NonPersonalizedReason::UnknownCustomer as i32);
        let now = clock.clock().now();
        app.ingest(vec![view("sess-v1", c, now, "s4")]).await;
        let answer = app.recommendations_until(home(c), |a| a.personalization.as_ref().unwrap().personalized).await;
        let personalization = answer.personalization.unwrap();
        assert_eq!(personalization.data_categories, [common_pb::DataCategory::Browsing as i32]);
        let s4 = answer.items.iter().find(|i| i.item_id == "s4").expect("the viewed item counts at once");
        assert!(s4.further_reasons.iter().any(|r| r.kind == pb::ReasonKind::RecentlyViewed as i32), "{s4:?}");
        // A cart add: excluded when asked, at once.
        app.ingest(vec![cart(profile_pb::EventKind::AddToCart, "sess-c1", c, now, vec![item("s2", 1, None, &["shoes"], "acme")])]).await;
        let no_cart = with_filter(home(c), pb::RecommendationFilter { exclude_in_cart: true, ..Default::default() });
        app.recommendations_until(no_cart, |a| !ids(&a.items).contains(&"s2")).await;
    }

    async fn pages_never_repeat_an_item(app) {
        let items: Vec<_> = (0..25).map(|n| catalog_item(&format!("p{n:02}"), &["all"], "a", 100 + n)).collect();
        app.upsert_items(items).await;
        let mut request = home("");
        request.max_results = 10;
        let mut seen = Vec::new();
        let mut recommendation_id = None;
        loop {
            let page = recommend(&app, request.clone()).await;
            assert!(page.items.len() <= 10);
            if let Some(id) = &recommendation_id { assert_eq!(id, &page.recommendation_id, "pages share the answer's id"); }
            recommendation_id = Some(page.recommendation_id.clone());
            seen.extend(page.items.iter().map(|i| i.item_id.clone()));
            if page.next_page_token.is_empty() { break; }
            request.page_token = page.next_page_token;
        }
        let mut unique = seen.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), seen.len(), "no repeats: {seen:?}");
        assert_eq!(seen.len(), 25, "every item once");
    }

    async fn rerank_moves_the_customers_items_up_only_with_consent(app, clock) {
        shoe_catalogue(&app).await;
        popularity(&app, clock.clock().now()).await;
        let candidates: Vec<String> = ["s4", "unknown", "s3", "s2", "s1"].iter().map(|s| (*s).to_owned()).collect();
        let plain = app.recommendation().rerank_items(pb::RerankItemsRequest { customer_id: String::new(), candidate_item_ids: candidates.clone(), context: None }).await.unwrap().into_inner();
        assert_eq!(plain.items.iter().map(|i| i.item_id.as_str()).collect::<Vec<_>>(), ["s4", "unknown", "s3", "s2", "s1"]);
        assert!(plain.items.iter().all(|i| i.reason.as_ref().unwrap().kind == pb::ReasonKind::SearchMatch as i32));
        assert!(!plain.items[1].known);
        // p1 bought everything; s1 most often of all customers: personal order
        // puts the known items first by score, unknown last.
        let personal = app.recommendation().rerank_items(pb::RerankItemsRequest { customer_id: "p1".into(), candidate_item_ids: candidates, context: None }).await.unwrap().into_inner();
        assert!(personal.personalization.as_ref().unwrap().personalized);
        let order: Vec<_> = personal.items.iter().map(|i| i.item_id.as_str()).collect();
        assert_eq!(order.last(), Some(&"unknown"), "{order:?}");
        assert_eq!(personal.items.len(), 5);
        assert!(personal.items.windows(2).take(3).all(|w| w[0].score >= w[1].score), "{personal:?}");
    }

    async fn erasure_removes_the_customer_from_sessions_and_serving_at_once(app, clock) {
        app.upsert_items(vec![catalog_item("milk", &["food"], "farm", 120)]).await;
        let c = "erase-1";
        app.grant(c, &["personalization"]).await;
        let now = clock.clock().now();
        app.ingest(vec![bought("eo1", c, now - TimeDelta::days(3), &["milk"]), view("ev1", c, now, "milk")]).await;
        app.train_until(2).await;
        assert!(!app.recommendation().get_buy_again(pb::GetBuyAgainRequest { customer_id: c.into(), filter: None, max_results: 5 }).await.unwrap().into_inner().items.is_empty());
        let exported = app.export_customer(c, &request_id()).await;
        let mine: Vec<_> = exported.iter().filter(|m| m.service == "attune.recommendation.v1").flat_map(|m| m.records.clone()).collect();
        assert_eq!(mine.iter().filter(|r| r.kind == "interaction").count(), 2, "{mine:?}");
        assert_eq!(mine.iter().filter(|r| r.kind == "session").count(), 1);
        // Recommendation's own export a record at a time: never more than the
        // page size (the session shares no page), every record exactly once.
        let pod = app.pod("recommendation").await;
        let mut subject = pod.internal_data_subject();
        let export_id = request_id();
        let paged = every_page(async |page_token| {
            let page = subject
                .export_customer_data(privacy_pb::ExportCustomerDataRequest { customer_id: c.into(), request_id: export_id.clone(), page_token, page_size: 1 })
                .await
                .unwrap()
                .into_inner();
            assert!(page.records.len() <= 1, "{page:?}");
            (page.records, page.next_page_token)
        })
        .await;
        assert_eq!(paged, mine, "paging neither skips nor repeats");
        // The same export id for another customer is another request.
        let reused = subject
            .export_customer_data(privacy_pb::ExportCustomerDataRequest { customer_id: "someone-else".into(), request_id: export_id, page_token: String::new(), page_size: 0 })
            .await
            .unwrap_err();
        assert_eq!(reused.code(), Code::AlreadyExists, "{reused:?}");
        let erased = app.erase_customer(c, &request_id()).await;
        let receipt = erased.receipts.iter().find(|r| r.service == "attune.recommendation.v1").unwrap();
        assert_eq!(receipt.record_count, 3, "two interactions and the session");
        // Consent is erased too, but serving forgets the customer whatever it says.
        app.grant(c, &["personalization"]).await;
        let after = app.recommendation().get_buy_again(pb::GetBuyAgainRequest { customer_id: c.into(), filter: None, max_results: 5 }).await.unwrap().into_inner();
        assert!(after.items.is_empty(), "{after:?}");
        let answer = recommend(&app, home(c)).await;
        assert!(!answer.personalization.unwrap().personalized);
        let again = app.export_customer(c, &request_id()).await;
        assert!(again.iter().filter(|m| m.service == "attune.recommendation.v1").all(|m| m.records.is_empty()));
    }

    async fn a_new_customers_told_tastes_lead_with_consent_and_a_profile_outage_degrades(app, clock) {
        shoe_catalogue(&app).await;
        let now = clock.clock().now();
        popularity(&app, now).await;
        // A new customer: nothing bought or viewed, but they told us they like trail shoes.
        let c = "taste-1";
        app.grant(c, &["personalization"]).await;
        app.create_profile(attune_tests::profile_people::create_known(c, vec![])).await;
        let told = profile_pb::ZeroPartyData { favourite_category_ids: vec!["trail".into()], ..Default::default() };
        app.profiles().set_zero_party_data(attune_tests::profile_people::set_zero_party(c, told, &["favourite_category_ids"], common_pb::Channel::Web)).await.unwrap();
        let answer = recommend(&app, home(c)).await;
        let why = answer.personalization.clone().unwrap();
        assert!(why.personalized, "{why:?}");
        assert!(why.data_categories.contains(&(common_pb::DataCategory::Preferences as i32)), "{why:?}");
        assert_eq!(ids(&answer.items)[..2], ["s3", "s4"], "the told category first, popular within it: {answer:?}");
        assert_eq!(kind(&answer.items[0]), pb::ReasonKind::PreferenceMatch);
        assert_eq!(answer.items[0].reason.as_ref().unwrap().text, "Matches what you told us");
        assert_eq!(answer.items[0].data_categories, [common_pb::DataCategory::Preferences as i32]);
        assert_eq!(ids(&answer.items)[2..], ["s1", "s2"], "then what is popular");

        // A profile that cannot be reached: the same customer is answered at
        // once, without the tastes (and so, knowing nothing else, not personalized).
        let pod = app.pod_with_peer_at("recommendation", "profile", "http://127.0.0.1:1").await;
        pod.train_until(10).await;
        let degraded = pod.recommendation().get_recommendations(home(c)).await.unwrap().into_inner();
        let why = degraded.personalization.unwrap();
        assert!(!why.personalized && why.data_categories.is_empty(), "{why:?}");
        assert_eq!(why.non_personalized_reason, common_pb::NonPersonalizedReason::UnknownCustomer as i32);
        assert_eq!(ids(&degraded.items), ["s1", "s2", "s3", "s4"]);

        // Withdrawn: the tastes are not read any more.
        app.record_consent(attune_tests::consent_requests::record(c, vec![attune_tests::consent_requests::decision("personalization", attune_tests::consent_pb::Decision::Withdrawn)])).await;
        let mut withdrawn = None;
        for _ in 0..200 {
            let answer = recommend(&app, home(c)).await;
            if !answer.personalization.as_ref().unwrap().personalized { withdrawn = Some(answer); break; }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        let withdrawn = withdrawn.expect("the withdrawal took effect");
        assert_eq!(ids(&withdrawn.items), ["s1", "s2", "s3", "s4"]);
        assert!(withdrawn.items.iter().all(|i| i.data_categories.is_empty()));
    }
}
