//! Personalized offers and the next-best message over real gRPC, on hand-built
//! customers with an injected clock: each rule's condition, consent, the weekly
//! cap, campaign budgets, quiet hours, frequency caps and no repeats.

#![allow(clippy::unwrap_used)] // panics fail tests

use attune_tests::backend_tests;
use attune_tests::consent_requests::{request_id, timestamp};
use attune_tests::loyalty::{days, loyalty_pb as pb};
use attune_tests::profile_events::{cart, eur, item, purchase};
use attune_tests::{TestApp, common_pb, profile_pb};
use chrono::{TimeDelta, Timelike, Utc};

fn rule(rule_id: &str, kind: pb::OfferKind, channel: pb::MessageChannel) -> pb::OfferRule {
    pb::OfferRule {
        rule_id: rule_id.into(),
        kind: kind.into(),
        active: true,
        title: format!("Offer {rule_id}"),
        discount_basis_points: 1500,
        validity: Some(days(14)),
        channel: channel.into(),
        campaign_id: "spring".into(),
        campaign_budget: 0,
        inactive_days: 0,
        cart_idle_hours: 0,
        recent_days: 0,
        due_within: None,
        store_id: String::new(),
        min_orders: 0,
    }
}

async fn put(app: &TestApp, rule: pb::OfferRule) {
    app.offers()
        .put_offer_rule(pb::PutOfferRuleRequest {
            rule: Some(rule),
            request_id: request_id(),
        })
        .await
        .expect("stored");
}

async fn generate(app: &TestApp, customer: &str) -> pb::GenerateOffersResponse {
    app.offers()
        .generate_offers(pb::GenerateOffersRequest {
            customer_id: customer.into(),
            request_id: request_id(),
        })
        .await
        .expect("generated")
        .into_inner()
}

async fn set_zero_party(
    app: &TestApp,
    customer: &str,
    data: profile_pb::ZeroPartyData,
    paths: &[&str],
) {
    app.profiles()
        .set_zero_party_data(profile_pb::SetZeroPartyDataRequest {
            customer_id: customer.into(),
            data: Some(data),
            update_mask: Some(prost_types::FieldMask {
                paths: paths.iter().map(|p| (*p).to_owned()).collect(),
            }),
            channel: common_pb::Channel::Web.into(),
            request_id: request_id(),
        })
        .await
        .expect("stored");
}

fn issued_rules(answer: &pb::GenerateOffersResponse) -> Vec<&str> {
    answer.issued.iter().map(|o| o.rule_id.as_str()).collect()
}

fn skipped(answer: &pb::GenerateOffersResponse, rule_id: &str) -> Option<pb::SkipReason> {
    answer
        .skipped
        .iter()
        .find(|s| s.rule_id == rule_id)
        .map(|s| pb::SkipReason::try_from(s.reason).expect("a reason"))
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

backend_tests! {
    async fn each_offer_rule_issues_to_the_customer_it_fits_within_caps(app, clock) {
        // Daytime in UTC, so that nothing depends on when the test runs.
        clock.set(Utc::now().with_hour(10).expect("an hour") - TimeDelta::days(1));
        put(&app, pb::OfferRule { inactive_days: 30, ..rule("a_win_back", pb::OfferKind::WinBack, pb::MessageChannel::InApp) }).await;
        put(&app, pb::OfferRule { cart_idle_hours: 1, ..rule("b_cart", pb::OfferKind::CartAbandon, pb::MessageChannel::InApp) }).await;
        put(&app, pb::OfferRule { recent_days: 7, campaign_budget: 1, ..rule("c_thanks", pb::OfferKind::ZeroPartyThanks, pb::MessageChannel::InApp) }).await;
        put(&app, pb::OfferRule { store_id: "store-1".into(), min_orders: 1, ..rule("d_store", pb::OfferKind::StoreEvent, pb::MessageChannel::InApp) }).await;
        put(&app, pb::OfferRule { due_within: Some(days(7)), ..rule("e_refill", pb::OfferKind::Replenishment, pb::MessageChannel::InApp) }).await;
        put(&app, pb::OfferRule { inactive_days: 30, ..rule("f_mail", pb::OfferKind::WinBack, pb::MessageChannel::Email) }).await;

        // A customer who bought 40 days ago, left a cart two hours ago and just
        // told us their name and store: four rules fit, the weekly cap is 3.
        for customer in ["cust-1", "cust-2"] {
            app.grant(customer, &["personalization", "store_visits"]).await;
        }
        app.ingest(vec![purchase("p-1", "cust-1", clock.clock().now(), vec![item("tea", 1, Some(eur(900)), &["tea"], "b")], eur(900))]).await;
        clock.advance(TimeDelta::days(40));
        app.ingest(vec![cart(profile_pb::EventKind::AddToCart, "c-1", "cust-1", clock.clock().now(), vec![item("cup", 1, Some(eur(500)), &["cups"], "b")])]).await;
        set_zero_party(&app, "cust-1", profile_pb::ZeroPartyData { preferred_name: "Ana".into(), preferred_store_id: "store-1".into(), ..Default::default() }, &["preferred_name", "preferred_store_id"]).await;
        clock.advance(TimeDelta::hours(2));
        let first = generate(&app, "cust-1").await;
        assert_eq!(issued_rules(&first), ["a_win_back", "b_cart", "c_thanks"], "{first:?}");
        assert_eq!(skipped(&first, "d_store"), Some(pb::SkipReason::CustomerCap));
        assert_eq!(skipped(&first, "e_refill"), Some(pb::SkipReason::NotEligible), "tea was bought once: no cadence, nothing due");
        assert_eq!(skipped(&first, "f_mail"), Some(pb::SkipReason::NoConsent), "e-mail needs marketing_email");
        let cart_offer = &first.issued[1];
        assert_eq!(cart_offer.item_ids, ["cup"]);
        assert_eq!(cart_offer.data_categories, [common_pb::DataCategory::Browsing as i32]);
        assert!(first.issued.iter().all(|o| o.state == pb::OfferState::Issued as i32 && !o.reason.is_empty()));
        let again = generate(&app, "cust-1").await;
        assert!(again.issued.is_empty());
        assert_eq!(skipped(&again, "a_win_back"), Some(pb::SkipReason::AlreadyOffered));

        // A customer who just bought and named their store: the thank-you's
        // budget is spent, the store event fits, win-back does not.
        app.ingest(vec![purchase("p-2", "cust-2", clock.clock().now(), vec![item("tea", 1, Some(eur(900)), &["tea"], "b")], eur(900))]).await;
        set_zero_party(&app, "cust-2", profile_pb::ZeroPartyData { preferred_store_id: "store-1".into(), ..Default::default() }, &["preferred_store_id"]).await;
        let second = generate(&app, "cust-2").await;
        assert_eq!(issued_rules(&second), ["d_store"], "{second:?}");
        assert_eq!(skipped(&second, "c_thanks"), Some(pb::SkipReason::BudgetSpent));
        assert_eq!(skipped(&second, "a_win_back"), Some(pb::SkipReason::NotEligible));

        // Without personalization nothing is issued.
        let none = generate(&app, "cust-3").await;
        assert!(none.issued.is_empty() && none.skipped.iter().all(|s| s.reason == pb::SkipReason::NoConsent as i32));

        // The lifecycle: seen, redeemed, then final.
        let offer = first.issued[0].clone();
        let update = |state: pb::OfferState| pb::UpdateOfferStateRequest { customer_id: "cust-1".into(), offer_id: offer.offer_id.clone(), state: state.into(), request_id: request_id() };
        let seen = app.offers().update_offer_state(update(pb::OfferState::Seen)).await.expect("seen").into_inner();
        assert_eq!(seen.offer.expect("offer").state, pb::OfferState::Seen as i32);
        app.offers().update_offer_state(update(pb::OfferState::Redeemed)).await.expect("redeemed");
        let error = app.offers().update_offer_state(update(pb::OfferState::Seen)).await.unwrap_err();
        assert_eq!(error.code(), tonic::Code::FailedPrecondition);
        let other = app.offers().update_offer_state(pb::UpdateOfferStateRequest { customer_id: "cust-2".into(), ..update(pb::OfferState::Seen) }).await.unwrap_err();
        assert_eq!(other.code(), tonic::Code::NotFound, "another customer's offer");
        clock.advance(TimeDelta::days(15));
        let listed = app.offers().list_offers(pb::ListOffersRequest { customer_id: "cust-1".into(), page_size: 0, page_token: String::new() }).await.expect("listed").into_inner();
        assert_eq!(listed.offers.len(), 3);
        assert_eq!(listed.offers.iter().filter(|o| o.state == pb::OfferState::Expired as i32).count(), 2, "past their end");
    }

    async fn the_next_best_message_respects_consent_caps_quiet_hours_and_repeats(app, clock) {
        clock.set(Utc::now().with_hour(10).expect("an hour") - TimeDelta::days(1));
        put(&app, pb::OfferRule { inactive_days: 30, ..rule("mail_win_back", pb::OfferKind::WinBack, pb::MessageChannel::Email) }).await;
        app.grant("cust-m", &["personalization", "marketing_email", "store_visits"]).await;
        app.grant("cust-n", &["personalization"]).await;
        for customer in ["cust-m", "cust-n"] {
            app.ingest(vec![purchase(&format!("p-{customer}"), customer, clock.clock().now(), vec![item("tea", 1, Some(eur(900)), &["tea"], "b")], eur(900))]).await;
        }
        clock.advance(TimeDelta::days(40));
        assert_eq!(generate(&app, "cust-m").await.issued.len(), 1);
        assert_eq!(next_best(&app, "cust-n").await.no_message_reason, pb::NoMessageReason::NoConsent as i32);
        let due = next_best(&app, "cust-m").await;
        let message = due.message.clone().expect("a message is due");
        let offer = message.offer.clone().expect("it carries the offer");
        let listed = app.offers().list_due_messages(pb::ListDueMessagesRequest { channel: pb::MessageChannel::Email.into(), page_size: 0, page_token: String::new() }).await.expect("listed").into_inner();
        assert_eq!(listed.messages, [message]);
        // 10:00 UTC is 23:00 in Auckland in summer: quiet hours there.
        set_zero_party(&app, "cust-m", profile_pb::ZeroPartyData { time_zone: "Pacific/Auckland".into(), ..Default::default() }, &["time_zone"]).await;
        let in_auckland = next_best(&app, "cust-m").await;
        let quiet = clock.clock().now().with_timezone(&chrono::FixedOffset::east_opt(13 * 3600).expect("an offset")).hour();
        if !(8..21).contains(&quiet) {
            assert_eq!(in_auckland.no_message_reason, pb::NoMessageReason::QuietHours as i32, "{in_auckland:?}");
        }
        set_zero_party(&app, "cust-m", profile_pb::ZeroPartyData { time_zone: "Europe/London".into(), ..Default::default() }, &["time_zone"]).await;
        assert!(next_best(&app, "cust-m").await.message.is_some());
        let report = |offer_id: &str| pb::ReportSentMessagesRequest {
            channel: pb::MessageChannel::Email.into(),
            messages: vec![pb::SentMessage { customer_id: "cust-m".into(), offer_id: offer_id.into(), send_time: Some(timestamp(clock.clock().now())) }],
            request_id: request_id(),
        };
        app.offers().report_sent_messages(report(&offer.offer_id)).await.expect("recorded");
        assert_eq!(next_best(&app, "cust-m").await.no_message_reason, pb::NoMessageReason::NothingRelevant as i32, "no repeats");
        app.offers().report_sent_messages(report("newsletter")).await.expect("recorded");
        assert_eq!(next_best(&app, "cust-m").await.no_message_reason, pb::NoMessageReason::FrequencyCap as i32);
    }
}
