//! Every loyalty RPC refuses bad input with the right code, names the field, and
//! changes nothing (`attune_tests::bad_input` compares every table's row count).

#![allow(clippy::unwrap_used)] // panics fail tests

use attune_tests::backend_tests;
use attune_tests::bad_input::{Cases, assert_each_rejected};
use attune_tests::loyalty::{days, eur_rule, loyalty_pb as pb, reward};
use attune_tests::profile_events::eur;
use tonic::Code;

fn adjust() -> pb::AdjustPointsRequest {
    pb::AdjustPointsRequest {
        customer_id: "cust-1".into(),
        points: -5,
        reason_code: pb::ReasonCode::Correction.into(),
        description: "fix".into(),
        request_id: "adj-new".into(),
    }
}

backend_tests! {
    async fn every_loyalty_rpc_refuses_bad_input_and_writes_nothing(app) {
        // Something to refer to: an account with 10 points, a reward, a rule.
        app.grant_points("cust-1", 10).await;
        app.put_earn_rule(eur_rule("base_eur", 1, 0)).await;
        app.loyalty().put_reward(pb::PutRewardRequest { reward: Some(reward("mug", 40, Some(1))), request_id: "put-mug".into() }).await.unwrap();
        let db = &app.config.database;
        let client = app.loyalty();

        assert_each_rejected(db, || pb::OpenAccountRequest { customer_id: "cust-2".into(), request_id: "open-1".into() },
            Cases::<pb::OpenAccountRequest>::new()
                .invalid("empty customer", "customer_id", |r| r.customer_id.clear())
                .invalid("customer with a space", "customer_id", |r| r.customer_id = "a b".into())
                .invalid("empty request id", "request_id", |r| r.request_id.clear())
                .invalid("long request id", "request_id", |r| r.request_id = "r".repeat(65)),
            |r| { let mut c = client.clone(); async move { c.open_account(r).await } }).await;

        assert_each_rejected(db, || pb::GetAccountRequest { customer_id: "cust-1".into() },
            Cases::<pb::GetAccountRequest>::new()
                .invalid("empty customer", "customer_id", |r| r.customer_id.clear())
                .refused("no account", Code::NotFound, |r| r.customer_id = "nobody".into()),
            |r| { let mut c = client.clone(); async move { c.get_account(r).await } }).await;

        assert_each_rejected(db, || pb::ListStatementRequest { customer_id: "cust-1".into(), page_size: 0, page_token: String::new() },
            Cases::<pb::ListStatementRequest>::new()
                .invalid("empty customer", "customer_id", |r| r.customer_id.clear())
                .invalid("negative page size", "page_size", |r| r.page_size = -1)
                .invalid("huge page size", "page_size", |r| r.page_size = 501)
                .invalid("foreign token", "page_token", |r| r.page_token = "nope".into())
                .refused("no account", Code::NotFound, |r| r.customer_id = "nobody".into()),
            |r| { let mut c = client.clone(); async move { c.list_statement(r).await } }).await;

        assert_each_rejected(db, || pb::ListUpcomingExpiriesRequest { customer_id: "cust-1".into(), page_size: 0, page_token: String::new() },
            Cases::<pb::ListUpcomingExpiriesRequest>::new()
                .invalid("empty customer", "customer_id", |r| r.customer_id.clear())
                .invalid("negative page size", "page_size", |r| r.page_size = -1)
                .invalid("huge page size", "page_size", |r| r.page_size = 1001)
                .invalid("foreign token", "page_token", |r| r.page_token = "nope".into())
                .refused("no account", Code::NotFound, |r| r.customer_id = "nobody".into()),
            |r| { let mut c = client.clone(); async move { c.list_upcoming_expiries(r).await } }).await;

        assert_each_rejected(db, || pb::RedeemPointsRequest { customer_id: "cust-1".into(), points: 5, order_id: String::new(), description: String::new(), request_id: "redeem-new".into() },
            Cases::<pb::RedeemPointsRequest>::new()
                .invalid("empty customer", "customer_id", |r| r.customer_id.clear())
                .invalid("zero points", "points", |r| r.points = 0)
                .invalid("negative points", "points", |r| r.points = -3)
                .invalid("long order", "order_id", |r| r.order_id = "o".repeat(129))
                .invalid("long description", "description", |r| r.description = "d".repeat(201))
                .invalid("empty request id", "request_id", |r| r.request_id.clear())
                .refused("more than available", Code::FailedPrecondition, |r| r.points = 11)
                .refused("no account", Code::NotFound, |r| r.customer_id = "nobody".into()),
            |r| { let mut c = client.clone(); async move { c.redeem_points(r).await } }).await;

        assert_each_rejected(db, adjust,
            Cases::<pb::AdjustPointsRequest>::new()
                .invalid("empty customer", "customer_id", |r| r.customer_id.clear())
                .invalid("zero points", "points", |r| r.points = 0)
                .invalid("too many points", "points", |r| r.points = 2_000_000_000)
                .invalid("the most negative number", "points", |r| r.points = i64::MIN)
                .invalid("no reason", "reason_code", |r| r.reason_code = 0)
                .invalid("unknown reason", "reason_code", |r| r.reason_code = 99)
                .invalid("long description", "description", |r| r.description = "d".repeat(201))
                .invalid("empty request id", "request_id", |r| r.request_id.clear())
                .refused("below zero", Code::FailedPrecondition, |r| r.points = -11)
                .refused("no account", Code::NotFound, |r| r.customer_id = "nobody".into()),
            |r| { let mut c = client.clone(); async move { c.adjust_points(r).await } }).await;

        assert_each_rejected(db, || pb::BulkAdjustPointsRequest { adjustments: vec![adjust(), pb::AdjustPointsRequest { request_id: "adj-2".into(), points: 3, ..adjust() }] },
            Cases::<pb::BulkAdjustPointsRequest>::new()
                .invalid("empty batch", "adjustments", |r| r.adjustments.clear())
                .invalid("bad entry", "adjustments[1].points", |r| r.adjustments[1].points = 0)
                .invalid("repeated id", "adjustments[1].request_id", |r| r.adjustments[1].request_id = "adj-new".into()),
            |r| { let mut c = client.clone(); async move { c.bulk_adjust_points(r).await } }).await;

        assert_each_rejected(db, || pb::RunScheduledWorkRequest { request_id: "run-1".into() },
            Cases::<pb::RunScheduledWorkRequest>::new().invalid("empty request id", "request_id", |r| r.request_id.clear()),
            |r| { let mut c = client.clone(); async move { c.run_scheduled_work(r).await } }).await;

        let rule = || {
            let mut rule = eur_rule("other_eur", 1, 0);
            rule.active = false;
            pb::PutEarnRuleRequest { rule: Some(rule), request_id: "rule-new".into() }
        };
        fn with_purchase(r: &mut pb::PutEarnRuleRequest, change: impl FnOnce(&mut pb::PurchaseEarning)) {
            if let Some(pb::earn_rule::Earning::Purchase(p)) = r.rule.as_mut().and_then(|rule| rule.earning.as_mut()) {
                change(p);
            }
        }
        assert_each_rejected(db, rule,
            Cases::<pb::PutEarnRuleRequest>::new()
                .invalid("no rule", "rule", |r| r.rule = None)
                .invalid("bad id", "rule.rule_id", |r| r.rule.as_mut().unwrap().rule_id = "Base".into())
                .invalid("no earning", "rule.earning", |r| r.rule.as_mut().unwrap().earning = None)
                .invalid("bad currency", "rule.purchase.currency_code", |r| with_purchase(r, |p| p.currency_code = "EURO".into()))
                .invalid("zero rate", "rule.purchase.points_per_unit", |r| with_purchase(r, |p| p.points_per_unit = 0))
                .invalid("weak multiplier", "rule.purchase.category_multipliers[0].multiplier_basis_points", |r| with_purchase(r, |p| p.category_multipliers.push(pb::CategoryMultiplier { category_id: "x".into(), multiplier_basis_points: 9000 })))
                .invalid("period cap without period", "rule.purchase.cap_period", |r| with_purchase(r, |p| p.max_points_per_period = 10))
                .invalid("long return window", "rule.purchase.return_window", |r| with_purchase(r, |p| p.return_window = Some(days(400))))
                .invalid("empty bonuses", "rule.zero_party.bonuses", |r| r.rule.as_mut().unwrap().earning = Some(pb::earn_rule::Earning::ZeroParty(pb::ZeroPartyBonuses { bonuses: vec![] })))
                .invalid("empty request id", "request_id", |r| r.request_id.clear())
                .refused("a second active rule for EUR", Code::FailedPrecondition, |r| r.rule.as_mut().unwrap().active = true),
            |r| { let mut c = client.clone(); async move { c.put_earn_rule(r).await } }).await;

        assert_each_rejected(db, || pb::SimulateRequest { customer_id: "cust-1".into(), lines: vec![pb::CartLine { item_id: "a".into(), category_path: vec![], amount: Some(eur(100)) }] },
            Cases::<pb::SimulateRequest>::new()
                .invalid("empty customer", "customer_id", |r| r.customer_id.clear())
                .invalid("no lines", "lines", |r| r.lines.clear())
                .invalid("no amount", "lines[0].amount", |r| r.lines[0].amount = None)
                .invalid("negative amount", "lines[0].amount", |r| r.lines[0].amount = Some(eur(-1)))
                .invalid("empty item", "lines[0].item_id", |r| r.lines[0].item_id.clear()),
            |r| { let mut c = client.clone(); async move { c.simulate(r).await } }).await;

        let tiers = || pb::PutTiersRequest {
            tiers: vec![pb::Tier { tier_id: "base".into(), display_name: "Base".into(), threshold: 0, benefits: None }, pb::Tier { tier_id: "gold".into(), display_name: "Gold".into(), threshold: 100, benefits: None }],
            basis: pb::TierBasis::Points.into(),
            spend_currency_code: String::new(),
            request_id: "tiers-1".into(),
        };
        assert_each_rejected(db, tiers,
            Cases::<pb::PutTiersRequest>::new()
                .invalid("no tiers", "tiers", |r| r.tiers.clear())
                .invalid("no basis", "basis", |r| r.basis = 0)
                .invalid("spend without currency", "spend_currency_code", |r| r.basis = pb::TierBasis::Spend.into())
                .invalid("base not at zero", "tiers[0].threshold", |r| r.tiers[0].threshold = 5)
                .invalid("thresholds not rising", "tiers[1].threshold", |r| r.tiers[1].threshold = 0)
                .invalid("same id twice", "tiers[1].tier_id", |r| r.tiers[1].tier_id = "base".into())
                .invalid("no name", "tiers[0].display_name", |r| r.tiers[0].display_name.clear())
                .invalid("weak multiplier", "tiers[1].benefits.earn_multiplier_basis_points", |r| r.tiers[1].benefits = Some(pb::TierBenefits { earn_multiplier_basis_points: 5, free_shipping: None, early_access: false }))
                .invalid("empty request id", "request_id", |r| r.request_id.clear()),
            |r| { let mut c = client.clone(); async move { c.put_tiers(r).await } }).await;

        assert_each_rejected(db, || pb::PutRewardRequest { reward: Some(reward("cap", 10, None)), request_id: "reward-new".into() },
            Cases::<pb::PutRewardRequest>::new()
                .invalid("no reward", "reward", |r| r.reward = None)
                .invalid("bad id", "reward.reward_id", |r| r.reward.as_mut().unwrap().reward_id = "x".into())
                .invalid("no name", "reward.display_name", |r| r.reward.as_mut().unwrap().display_name.clear())
                .invalid("no kind", "reward.kind", |r| { let w = r.reward.as_mut().unwrap(); w.kind = 0; w.discount_basis_points = 0; })
                .invalid("percent too high", "reward.discount_basis_points", |r| r.reward.as_mut().unwrap().discount_basis_points = 10_001)
                .invalid("free", "reward.points_cost", |r| r.reward.as_mut().unwrap().points_cost = 0)
                .invalid("negative stock", "reward.stock", |r| r.reward.as_mut().unwrap().stock = Some(-1))
                .invalid("no validity", "reward.voucher_validity", |r| r.reward.as_mut().unwrap().voucher_validity = None)
                .invalid("empty request id", "request_id", |r| r.request_id.clear()),
            |r| { let mut c = client.clone(); async move { c.put_reward(r).await } }).await;

        assert_each_rejected(db, || pb::ListRewardsRequest { page_size: 0, page_token: String::new() },
            Cases::<pb::ListRewardsRequest>::new()
                .invalid("negative page size", "page_size", |r| r.page_size = -1)
                .invalid("foreign token", "page_token", |r| r.page_token = "nope".into()),
            |r| { let mut c = client.clone(); async move { c.list_rewards(r).await } }).await;

        assert_each_rejected(db, || pb::RedeemRewardRequest { customer_id: "cust-1".into(), reward_id: "mug".into(), request_id: "rr-new".into() },
            Cases::<pb::RedeemRewardRequest>::new()
                .invalid("empty customer", "customer_id", |r| r.customer_id.clear())
                .invalid("bad reward id", "reward_id", |r| r.reward_id = "Mug!".into())
                .invalid("empty request id", "request_id", |r| r.request_id.clear())
                .refused("too few points", Code::FailedPrecondition, |_| {})
                .refused("unknown reward", Code::NotFound, |r| r.reward_id = "tent".into())
                .refused("no account", Code::NotFound, |r| r.customer_id = "nobody".into()),
            |r| { let mut c = client.clone(); async move { c.redeem_reward(r).await } }).await;

        assert_each_rejected(db, || pb::ListVouchersRequest { customer_id: "cust-1".into(), page_size: 0, page_token: String::new() },
            Cases::<pb::ListVouchersRequest>::new()
                .invalid("empty customer", "customer_id", |r| r.customer_id.clear())
                .invalid("huge page size", "page_size", |r| r.page_size = 501)
                .invalid("foreign token", "page_token", |r| r.page_token = "nope".into()),
            |r| { let mut c = client.clone(); async move { c.list_vouchers(r).await } }).await;

        assert_each_rejected(db, || pb::CancelRedemptionRequest { customer_id: "cust-1".into(), voucher_code: "ABC".into(), request_id: "cancel-1".into() },
            Cases::<pb::CancelRedemptionRequest>::new()
                .invalid("empty customer", "customer_id", |r| r.customer_id.clear())
                .invalid("empty code", "voucher_code", |r| r.voucher_code.clear())
                .invalid("long code", "voucher_code", |r| r.voucher_code = "C".repeat(33))
                .invalid("empty request id", "request_id", |r| r.request_id.clear())
                .refused("unknown voucher", Code::NotFound, |_| {}),
            |r| { let mut c = client.clone(); async move { c.cancel_redemption(r).await } }).await;

        assert_each_rejected(db, || pb::UseVoucherRequest { customer_id: "cust-1".into(), voucher_code: "ABC".into(), order_id: "o-1".into(), request_id: "use-1".into() },
            Cases::<pb::UseVoucherRequest>::new()
                .invalid("empty customer", "customer_id", |r| r.customer_id.clear())
                .invalid("empty code", "voucher_code", |r| r.voucher_code.clear())
                .invalid("long code", "voucher_code", |r| r.voucher_code = "C".repeat(33))
                .invalid("empty order", "order_id", |r| r.order_id.clear())
                .invalid("long order", "order_id", |r| r.order_id = "o".repeat(129))
                .invalid("empty request id", "request_id", |r| r.request_id.clear())
                .refused("unknown voucher", Code::NotFound, |_| {}),
            |r| { let mut c = client.clone(); async move { c.use_voucher(r).await } }).await;

        assert_each_rejected(db, || pb::ReleaseVoucherRequest { customer_id: "cust-1".into(), voucher_code: "ABC".into(), order_id: "o-1".into(), request_id: "release-1".into() },
            Cases::<pb::ReleaseVoucherRequest>::new()
                .invalid("empty customer", "customer_id", |r| r.customer_id.clear())
                .invalid("empty code", "voucher_code", |r| r.voucher_code.clear())
                .invalid("empty order", "order_id", |r| r.order_id.clear())
                .invalid("empty request id", "request_id", |r| r.request_id.clear())
                .refused("unknown voucher", Code::NotFound, |_| {}),
            |r| { let mut c = client.clone(); async move { c.release_voucher(r).await } }).await;
    }

    async fn every_offer_rpc_refuses_bad_input_and_writes_nothing(app) {
        let db = &app.config.database;
        let client = app.offers();
        let rule = || pb::PutOfferRuleRequest {
            rule: Some(pb::OfferRule {
                rule_id: "win_back".into(),
                kind: pb::OfferKind::WinBack.into(),
                active: true,
                title: "We miss you".into(),
                discount_basis_points: 1000,
                validity: Some(days(7)),
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
            request_id: "rule-1".into(),
        };
        assert_each_rejected(db, rule,
            Cases::<pb::PutOfferRuleRequest>::new()
                .invalid("no rule", "rule", |r| r.rule = None)
                .invalid("bad id", "rule.rule_id", |r| r.rule.as_mut().unwrap().rule_id = "W".into())
                .invalid("no kind", "rule.kind", |r| r.rule.as_mut().unwrap().kind = 0)
                .invalid("no title", "rule.title", |r| r.rule.as_mut().unwrap().title.clear())
                .invalid("no discount", "rule.discount_basis_points", |r| r.rule.as_mut().unwrap().discount_basis_points = 0)
                .invalid("no validity", "rule.validity", |r| r.rule.as_mut().unwrap().validity = None)
                .invalid("no channel", "rule.channel", |r| r.rule.as_mut().unwrap().channel = 0)
                .invalid("no campaign", "rule.campaign_id", |r| r.rule.as_mut().unwrap().campaign_id.clear())
                .invalid("negative budget", "rule.campaign_budget", |r| r.rule.as_mut().unwrap().campaign_budget = -1)
                .invalid("no inactivity", "rule.inactive_days", |r| r.rule.as_mut().unwrap().inactive_days = 0)
                .invalid("empty request id", "request_id", |r| r.request_id.clear()),
            |r| { let mut c = client.clone(); async move { c.put_offer_rule(r).await } }).await;

        assert_each_rejected(db, || pb::GenerateOffersRequest { customer_id: "cust-1".into(), request_id: "gen-1".into() },
            Cases::<pb::GenerateOffersRequest>::new()
                .invalid("empty customer", "customer_id", |r| r.customer_id.clear())
                .invalid("empty request id", "request_id", |r| r.request_id.clear()),
            |r| { let mut c = client.clone(); async move { c.generate_offers(r).await } }).await;

        assert_each_rejected(db, || pb::ListOffersRequest { customer_id: "cust-1".into(), page_size: 0, page_token: String::new() },
            Cases::<pb::ListOffersRequest>::new()
                .invalid("empty customer", "customer_id", |r| r.customer_id.clear())
                .invalid("huge page size", "page_size", |r| r.page_size = 501)
                .invalid("foreign token", "page_token", |r| r.page_token = "nope".into()),
            |r| { let mut c = client.clone(); async move { c.list_offers(r).await } }).await;

        assert_each_rejected(db, || pb::UpdateOfferStateRequest { customer_id: "cust-1".into(), offer_id: "o-1".into(), state: pb::OfferState::Seen.into(), request_id: "u-1".into() },
            Cases::<pb::UpdateOfferStateRequest>::new()
                .invalid("empty customer", "customer_id", |r| r.customer_id.clear())
                .invalid("empty offer", "offer_id", |r| r.offer_id.clear())
                .invalid("expired is not a move", "state", |r| r.state = pb::OfferState::Expired.into())
                .invalid("empty request id", "request_id", |r| r.request_id.clear())
                .refused("unknown offer", Code::NotFound, |_| {}),
            |r| { let mut c = client.clone(); async move { c.update_offer_state(r).await } }).await;

        assert_each_rejected(db, || pb::GetNextBestMessageRequest { customer_id: "cust-1".into(), channel: pb::MessageChannel::Sms.into() },
            Cases::<pb::GetNextBestMessageRequest>::new()
                .invalid("empty customer", "customer_id", |r| r.customer_id.clear())
                .invalid("in-app is no message channel", "channel", |r| r.channel = pb::MessageChannel::InApp.into())
                .invalid("no channel", "channel", |r| r.channel = 0),
            |r| { let mut c = client.clone(); async move { c.get_next_best_message(r).await } }).await;

        assert_each_rejected(db, || pb::ListDueMessagesRequest { channel: pb::MessageChannel::Push.into(), page_size: 0, page_token: String::new() },
            Cases::<pb::ListDueMessagesRequest>::new()
                .invalid("no channel", "channel", |r| r.channel = 0)
                .invalid("huge page size", "page_size", |r| r.page_size = 1001)
                .invalid("foreign token", "page_token", |r| r.page_token = "!".into()),
            |r| { let mut c = client.clone(); async move { c.list_due_messages(r).await } }).await;

        let sent = || pb::ReportSentMessagesRequest {
            channel: pb::MessageChannel::Email.into(),
            messages: vec![pb::SentMessage { customer_id: "cust-1".into(), offer_id: "o-1".into(), send_time: Some(attune_tests::consent_requests::timestamp(chrono::Utc::now())) }],
            request_id: "sent-1".into(),
        };
        assert_each_rejected(db, sent,
            Cases::<pb::ReportSentMessagesRequest>::new()
                .invalid("no channel", "channel", |r| r.channel = 0)
                .invalid("no messages", "messages", |r| r.messages.clear())
                .invalid("empty customer", "messages[0].customer_id", |r| r.messages[0].customer_id.clear())
                .invalid("no time", "messages[0].send_time", |r| r.messages[0].send_time = None)
                .invalid("future", "messages[0].send_time", |r| r.messages[0].send_time = Some(attune_tests::consent_requests::timestamp(chrono::Utc::now() + chrono::TimeDelta::hours(1))))
                .invalid("empty request id", "request_id", |r| r.request_id.clear()),
            |r| { let mut c = client.clone(); async move { c.report_sent_messages(r).await } }).await;
    }
}
