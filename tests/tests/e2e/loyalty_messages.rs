//! The next-best message carries recommendation's items for the customer,
//! alongside an offer or instead of one, gated by the channel's marketing
//! consent; with recommendation stopped it degrades to the offer alone and
//! never makes items up. ListDueMessages lists every member due a message,
//! items alone included, exactly as GetNextBestMessage answers for each.

#![allow(clippy::unwrap_used)] // panics fail tests

use attune_tests::consent_requests::{request_id, timestamp};
use attune_tests::loyalty::{days, loyalty_pb as pb};
use attune_tests::profile_events::{eur, item, purchase};
use attune_tests::recommendation::catalog_item;
use attune_tests::{Backend, TestApp, eventually, every_page};
use chrono::{TimeDelta, Utc};

const CATALOGUE: [&str; 3] = ["sku-1", "sku-2", "sku-3"];

/// The app with quiet hours off, so nothing depends on when the test runs,
/// and time enough for recommendation's items on a loaded machine (a stopped
/// recommendation is refused at once).
async fn app(backend: Backend) -> Option<TestApp> {
    TestApp::spawn_configured(backend, |config| {
        config.loyalty.quiet_hours_start = 0;
        config.loyalty.quiet_hours_end = 0;
        config.loyalty.message_items_budget = std::time::Duration::from_secs(10);
    })
    .await
}

async fn next_best(app: &TestApp, customer: &str) -> pb::GetNextBestMessageResponse {
    app.offers()
        .get_next_best_message(pb::GetNextBestMessageRequest {
            customer_id: customer.into(),
            channel: pb::MessageChannel::Email.into(),
        })
        .await
        .expect("answered")
        .into_inner()
}

/// cust-m is due a win-back offer by e-mail; cust-r has no offer; both may be
/// e-mailed; cust-x has not granted marketing e-mail.
async fn seed(app: &TestApp) -> pb::Offer {
    app.upsert_items(
        CATALOGUE
            .iter()
            .map(|id| catalog_item(id, &["tea"], "Leaf", 900))
            .collect(),
    )
    .await;
    app.offers()
        .put_offer_rule(pb::PutOfferRuleRequest {
            rule: Some(pb::OfferRule {
                rule_id: "mail_win_back".into(),
                kind: pb::OfferKind::WinBack.into(),
                active: true,
                title: "We miss you".into(),
                discount_basis_points: 1000,
                validity: Some(days(14)),
                channel: pb::MessageChannel::Email.into(),
                campaign_id: "spring".into(),
                campaign_budget: 0,
                inactive_days: 30,
                cart_idle_hours: 0,
                recent_days: 0,
                due_within: None,
                store_id: String::new(),
                min_orders: 0,
            }),
            request_id: request_id(),
        })
        .await
        .expect("stored");
    app.grant("cust-m", &["personalization", "marketing_email"])
        .await;
    app.grant("cust-r", &["personalization", "marketing_email"])
        .await;
    app.grant("cust-x", &["personalization"]).await;
    let long_ago = Utc::now() - TimeDelta::days(40);
    app.ingest(vec![purchase(
        "p-m",
        "cust-m",
        long_ago,
        vec![item("old-tea", 1, Some(eur(900)), &["tea"], "b")],
        eur(900),
    )])
    .await;
    let generated = app
        .offers()
        .generate_offers(pb::GenerateOffersRequest {
            customer_id: "cust-m".into(),
            request_id: request_id(),
        })
        .await
        .expect("generated")
        .into_inner();
    assert_eq!(generated.issued.len(), 1, "{generated:?}");
    generated.issued[0].clone()
}

/// Waits until `pod`'s consent checker answers: a new pod's first check can
/// time out on a loaded machine, and consent fails closed.
async fn consent_reaches(pod: &TestApp) {
    eventually("the pod reads cust-m's consent", async || {
        next_best(pod, "cust-m").await.no_message_reason != pb::NoMessageReason::NoConsent as i32
    })
    .await;
}

fn assert_items_from_recommendation(message: &pb::Message) {
    assert!(!message.recommended_items.is_empty(), "{message:?}");
    assert!(message.recommended_items.len() <= 3);
    for item in &message.recommended_items {
        assert!(CATALOGUE.contains(&item.item_id.as_str()), "{item:?}");
        assert_eq!(item.title, format!("Title of {}", item.item_id));
        assert!(
            !item.reasons.is_empty() && item.reasons.iter().all(|r| !r.is_empty()),
            "{item:?}"
        );
    }
}

async fn messages_carry_recommended_items(backend: Backend) {
    let Some(app) = app(backend).await else {
        return;
    };
    let offer = seed(&app).await;

    // Alongside the offer.
    let with_offer = next_best(&app, "cust-m")
        .await
        .message
        .expect("a message is due");
    assert_eq!(with_offer.offer.as_ref().unwrap().offer_id, offer.offer_id);
    assert_eq!(with_offer.message_id, offer.offer_id);
    assert_items_from_recommendation(&with_offer);

    // Instead of an offer.
    let items_only = next_best(&app, "cust-r")
        .await
        .message
        .expect("items are worth sending");
    assert!(items_only.offer.is_none());
    assert!(
        items_only.message_id.starts_with("items-"),
        "{items_only:?}"
    );
    assert!(!items_only.reason.is_empty());
    assert_items_from_recommendation(&items_only);
    assert_eq!(
        next_best(&app, "cust-r").await.message.unwrap().message_id,
        items_only.message_id,
        "the same items, the same id"
    );

    // The channel's marketing consent gates items as it gates offers.
    assert_eq!(
        next_best(&app, "cust-x").await.no_message_reason,
        pb::NoMessageReason::NoConsent as i32
    );

    // Sent once, the same items are not sent again.
    app.offers()
        .report_sent_messages(pb::ReportSentMessagesRequest {
            channel: pb::MessageChannel::Email.into(),
            messages: vec![pb::SentMessage {
                customer_id: "cust-r".into(),
                offer_id: items_only.message_id.clone(),
                send_time: Some(timestamp(Utc::now())),
            }],
            request_id: request_id(),
        })
        .await
        .expect("recorded");
    assert_eq!(
        next_best(&app, "cust-r").await.no_message_reason,
        pb::NoMessageReason::NothingRelevant as i32
    );

    // The batch lists the offer's customer with the items too.
    let due = app
        .offers()
        .list_due_messages(pb::ListDueMessagesRequest {
            channel: pb::MessageChannel::Email.into(),
            page_size: 0,
            page_token: String::new(),
        })
        .await
        .expect("listed")
        .into_inner();
    assert_eq!(due.messages.len(), 1);
    assert_eq!(due.messages[0].customer_id, "cust-m");
    assert_items_from_recommendation(&due.messages[0]);

    // With recommendation stopped (a loyalty pod whose recommendation peer
    // does not answer): the offer alone, and no made-up items.
    let pod = app
        .pod_with_peer_at("loyalty", "recommendation", "http://127.0.0.1:1")
        .await;
    consent_reaches(&pod).await;
    let alone = next_best(&pod, "cust-m")
        .await
        .message
        .expect("the offer is still due");
    assert_eq!(alone.items_status, pb::ItemsStatus::Skipped as i32);
    assert_eq!(alone.offer.unwrap().offer_id, offer.offer_id);
    assert!(
        alone.recommended_items.is_empty(),
        "{:?}",
        alone.recommended_items
    );
    let nothing = next_best(&pod, "cust-x").await;
    assert_eq!(
        nothing.no_message_reason,
        pb::NoMessageReason::NoConsent as i32
    );
    // cust-q would get items alone from the full app; without recommendation
    // there is nothing to send yet, and the answer says why.
    app.grant("cust-q", &["personalization", "marketing_email"])
        .await;
    assert_items_from_recommendation(&next_best(&app, "cust-q").await.message.expect("items"));
    let other = next_best(&pod, "cust-q").await;
    assert_eq!(
        other.no_message_reason,
        pb::NoMessageReason::ItemsUnavailable as i32,
        "{other:?}"
    );
}

async fn due_page(
    app: &TestApp,
    page_size: i32,
    page_token: String,
) -> pb::ListDueMessagesResponse {
    app.offers()
        .list_due_messages(pb::ListDueMessagesRequest {
            channel: pb::MessageChannel::Email.into(),
            page_size,
            page_token,
        })
        .await
        .expect("listed")
        .into_inner()
}

/// Every message due on e-mail, paging `page_size` customers at a time; each
/// page's items-skipped count is added to `skipped`.
async fn every_due(app: &TestApp, page_size: i32, skipped: &mut i32) -> Vec<pb::Message> {
    every_page(async |token| {
        let page = due_page(app, page_size, token).await;
        *skipped += page.items_skipped_count;
        (page.messages, page.next_page_token)
    })
    .await
}

async fn open_account(app: &TestApp, customer: &str) {
    app.loyalty()
        .open_account(pb::OpenAccountRequest {
            customer_id: customer.into(),
            request_id: request_id(),
        })
        .await
        .expect("opened");
}

/// Members with e-mail consent and no offer: each is due recommendation's
/// items alone.
const MEMBERS: [&str; 4] = ["cust-a", "cust-b", "cust-c", "cust-r"];

async fn due_messages_list_items_alone(backend: Backend) {
    let Some(app) = app(backend).await else {
        return;
    };
    let offer = seed(&app).await;
    for customer in MEMBERS {
        open_account(&app, customer).await;
        app.grant(customer, &["personalization", "marketing_email"])
            .await;
    }
    // A member without marketing e-mail consent is scanned, never listed.
    open_account(&app, "cust-x").await;

    // Two customers a page: the offer's customer and every member due items
    // alone, each exactly as GetNextBestMessage answers for them.
    let mut skipped = 0;
    let due = every_due(&app, 2, &mut skipped).await;
    assert_eq!(skipped, 0);
    let listed: Vec<&str> = due.iter().map(|m| m.customer_id.as_str()).collect();
    assert_eq!(listed, ["cust-a", "cust-b", "cust-c", "cust-m", "cust-r"]);
    for message in &due {
        assert_eq!(
            Some(message),
            next_best(&app, &message.customer_id).await.message.as_ref(),
            "the list answers what GetNextBestMessage answers"
        );
        assert_eq!(message.items_status, pb::ItemsStatus::Answered as i32);
        assert_items_from_recommendation(message);
    }
    let with_offer = &due[3];
    assert_eq!(with_offer.offer.as_ref().unwrap().offer_id, offer.offer_id);
    let items_alone = &due[4];
    assert!(items_alone.offer.is_none());
    assert!(
        items_alone.message_id.starts_with("items-"),
        "{items_alone:?}"
    );

    // A page token names where the next page starts: asked again, the same page.
    let first = due_page(&app, 2, String::new()).await;
    let second = due_page(&app, 2, first.next_page_token.clone()).await;
    assert_eq!(due_page(&app, 2, first.next_page_token).await, second);

    // The tool reports the items-alone message it sent: cust-r is not listed
    // again, nor is the message repeated.
    let recorded = app
        .offers()
        .report_sent_messages(pb::ReportSentMessagesRequest {
            channel: pb::MessageChannel::Email.into(),
            messages: vec![pb::SentMessage {
                customer_id: "cust-r".into(),
                offer_id: items_alone.message_id.clone(),
                send_time: Some(timestamp(Utc::now())),
            }],
            request_id: request_id(),
        })
        .await
        .expect("recorded")
        .into_inner();
    assert_eq!(recorded.recorded_count, 1);
    let listed_after: Vec<String> = every_due(&app, 0, &mut skipped)
        .await
        .into_iter()
        .map(|m| m.customer_id)
        .collect();
    assert_eq!(listed_after, ["cust-a", "cust-b", "cust-c", "cust-m"]);
    assert_eq!(
        next_best(&app, "cust-r").await.no_message_reason,
        pb::NoMessageReason::NothingRelevant as i32
    );

    // With recommendation stopped: the offer alone, marked as skipping its
    // items; members due items alone are left out and counted, never faked.
    let pod = app
        .pod_with_peer_at("loyalty", "recommendation", "http://127.0.0.1:1")
        .await;
    consent_reaches(&pod).await;
    let mut skipped = 0;
    let down = every_due(&pod, 2, &mut skipped).await;
    assert_eq!(down.len(), 1, "{down:?}");
    assert_eq!(down[0].customer_id, "cust-m");
    assert_eq!(down[0].offer.as_ref().unwrap().offer_id, offer.offer_id);
    assert!(down[0].recommended_items.is_empty());
    assert_eq!(down[0].items_status, pb::ItemsStatus::Skipped as i32);
    assert_eq!(
        Some(&down[0]),
        next_best(&pod, "cust-m").await.message.as_ref()
    );
    // cust-a, b, c, r and m: every customer whose items were not asked.
    assert_eq!(skipped, 5);
    assert_eq!(
        next_best(&pod, "cust-a").await.no_message_reason,
        pb::NoMessageReason::ItemsUnavailable as i32
    );
}

/// A page asks recommendation for at most 100 customers, and the pages still
/// list everyone due.
async fn a_page_bounds_what_it_asks_recommendation(backend: Backend) {
    let Some(app) = app(backend).await else {
        return;
    };
    seed(&app).await;
    let members: Vec<String> = (0..105).map(|i| format!("member-{i:03}")).collect();
    for customer in &members {
        open_account(&app, customer).await;
        app.grant(customer, &["personalization", "marketing_email"])
            .await;
    }
    let first = due_page(&app, 1000, String::new()).await;
    assert!(first.messages.len() <= 100, "{}", first.messages.len());
    assert!(!first.next_page_token.is_empty());
    let mut skipped = 0;
    let listed: Vec<String> = every_due(&app, 1000, &mut skipped)
        .await
        .into_iter()
        .map(|m| m.customer_id)
        .collect();
    assert_eq!(skipped, 0);
    let mut expected = vec!["cust-m".to_owned()];
    expected.extend(members);
    assert_eq!(listed, expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn due_messages_list_items_alone_with_recommendation_up_and_down_on_sqlite() {
    due_messages_list_items_alone(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_bounds_what_it_asks_recommendation_on_sqlite() {
    a_page_bounds_what_it_asks_recommendation(Backend::Sqlite).await;
}

attune_tests::postgres_test! {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn due_messages_list_items_alone_with_recommendation_up_and_down_on_postgres() {
        due_messages_list_items_alone(Backend::Postgres).await;
    }
}

attune_tests::postgres_test! {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_page_bounds_what_it_asks_recommendation_on_postgres() {
        a_page_bounds_what_it_asks_recommendation(Backend::Postgres).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_carry_recommended_items_and_degrade_to_the_offer_on_sqlite() {
    messages_carry_recommended_items(Backend::Sqlite).await;
}

attune_tests::postgres_test! {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn messages_carry_recommended_items_and_degrade_to_the_offer_on_postgres() {
        messages_carry_recommended_items(Backend::Postgres).await;
    }
}
