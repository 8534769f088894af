//! One customer's whole journey through the public port, written once and run
//! against any deployment (the monolith, every service split into replicas):
//! consent, profile events from the web and from a store, loyalty earning
//! through profile's feed and a redemption, recommendations, delivery options,
//! the HOME and STORE pages, export and erasure.
//!
//! [`run`] returns every answer the journey got, with what must differ between
//! two deployments cleared by [`normalize`]: generated ids and times, and
//! nothing else, so two deployments given the same input must return equal
//! [`Answers`].

use std::time::Duration;

use attune_proto::common::v1 as common_pb;
use attune_proto::gateway::v1 as gateway_pb;
use attune_proto::loyalty::v1 as loyalty_pb;
use attune_proto::profile::v1 as profile_pb;
use attune_proto::recommendation::v1 as rec_pb;
use attune_proto::tonic::Code;
use attune_tests::TestApp;
use attune_tests::delivery::{at, cart, pickup, rate};
use attune_tests::gateway_experience::{cart_page, state, store_page};
use attune_tests::loyalty::{eur_rule, redemption};
use attune_tests::profile_events::{self, eur, item, purchase, statuses, view};
use attune_tests::profile_people::{annas_preferences, create_known, identity};
use attune_tests::recommendation::catalog_item;
use chrono::{DateTime, Utc};

/// The journey's customer and the loyalty card she shows in the store.
pub const CUSTOMER: &str = "journey-anna";
const CARD: &str = "card-journey-anna";
const STORE: &str = "store-9";

/// What the models learn from the journey's events: the view, the cart and
/// two purchases, each one interaction.
pub const JOURNEY_INTERACTIONS: i64 = 4;

/// A deployment as the journey sees it.
pub struct Deployment {
    /// The public port (the gateway).
    pub front: TestApp,
    /// Each replica of recommendation, reached directly: every replica trains
    /// its own models (TrainModel trains the replica it reaches), so each is
    /// trained before recommendations are compared.
    pub recommenders: Vec<TestApp>,
    /// Each replica of delivery, reached directly: a replica serves the delivery
    /// network from memory and picks up a change made through another within
    /// `delivery.network_refresh` (1 s), so each is waited for.
    pub deliverers: Vec<TestApp>,
}

/// Every answer of the journey, normalized.
#[derive(Debug, Clone, PartialEq)]
pub struct Answers {
    pub ingested: Vec<Vec<profile_pb::IngestStatus>>,
    pub earned: loyalty_pb::Account,
    pub redeemed: loyalty_pb::RedeemPointsResponse,
    pub statement: Vec<loyalty_pb::LedgerEntry>,
    pub recommendations: rec_pb::GetRecommendationsResponse,
    pub delivery: attune_proto::delivery::v1::GetDeliveryOptionsResponse,
    pub home_page: gateway_pb::GetPageExperienceResponse,
    pub store_page: gateway_pb::GetPageExperienceResponse,
    pub export: Vec<ExportedPart>,
    pub erased: gateway_pb::EraseCustomerResponse,
    pub after_erasure: Vec<(&'static str, Code)>,
}

/// One service's part of the export: its receipt, and how many records of
/// each kind it sent (their ids and contents carry generated ids and times).
/// The gateway's data-access log holds one entry per read, and the journey
/// reads as often as it must wait for a background effect: its part is the
/// methods that read, each once, and its counts are cleared.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct ExportedPart {
    pub service: String,
    pub kinds: Vec<(String, usize)>,
    pub receipt: Option<(i32, i64, Vec<String>)>,
    pub methods_read: Vec<String>,
}

/// Runs the journey on `deployment`, its events dated relative to `now` (the
/// same instant for every deployment compared).
pub async fn run(deployment: &Deployment, now: DateTime<Utc>) -> Answers {
    let app = &deployment.front;
    set_up_the_shop(app).await;

    app.create_profile(create_known(
        CUSTOMER,
        vec![identity(profile_pb::IdentityType::LoyaltyCard, CARD)],
    ))
    .await;
    app.grant(CUSTOMER, &["personalization", "store_visits"])
        .await;
    app.profiles()
        .set_zero_party_data(annas_preferences(CUSTOMER))
        .await
        .expect("zero-party data is stored");

    let hours_ago = |hours| now - chrono::Duration::hours(hours);
    let web = vec![
        view("journey-view", CUSTOMER, hours_ago(5), "sku-1"),
        profile_events::cart(
            profile_pb::EventKind::AddToCart,
            "journey-cart",
            CUSTOMER,
            hours_ago(4),
            vec![item("sku-2", 1, Some(eur(9000)), &["shoes"], "Trailco")],
        ),
        purchase(
            "journey-web-order",
            CUSTOMER,
            hours_ago(3),
            vec![item("sku-1", 1, Some(eur(8000)), &["shoes"], "Trailco")],
            eur(8000),
        ),
    ];
    let store = vec![profile_pb::Event {
        channel: common_pb::Channel::Store.into(),
        store_id: STORE.into(),
        ..purchase(
            "journey-store-order",
            CUSTOMER,
            hours_ago(2),
            vec![item("sku-3", 2, Some(eur(1000)), &["socks"], "Knit")],
            eur(2000),
        )
    }];
    let mut ingested = Vec::new();
    for batch in [web, store] {
        ingested.push(statuses(&app.ingest(batch).await.results));
    }

    // Loyalty earns from profile's feed in the background: 80 + 20 euros.
    let earned = app
        .wait_for_account(CUSTOMER, |account| account.available_points == 100)
        .await;
    let redeemed = app
        .redeem_retrying(redemption(CUSTOMER, 30, "journey-redemption"))
        .await
        .expect("30 of 100 points are redeemed")
        .into_inner();
    let statement = app.statement(CUSTOMER).await;
    app.assert_ledger_consistent(CUSTOMER).await;

    for replica in &deployment.recommenders {
        replica.train_until(JOURNEY_INTERACTIONS).await;
    }
    let recommendations = app
        .recommendation()
        .get_recommendations(rec_pb::GetRecommendationsRequest {
            customer_id: CUSTOMER.into(),
            placement: rec_pb::Placement::Home.into(),
            max_results: 5,
            ..Default::default()
        })
        .await
        .expect("recommendations are answered")
        .into_inner();

    for replica in &deployment.deliverers {
        whole_network_options(replica).await;
    }
    let delivery = whole_network_options(app).await;
    let home_page = settled_page(app, home_page(CUSTOMER), |page| {
        granted(page, "personalization") && granted(page, "store_visits")
    })
    .await;
    let store_page = settled_page(app, store_page(STORE, CARD), |page| {
        page.store
            .as_ref()
            .is_some_and(|store| state(store.status.as_ref()).0 == gateway_pb::PartState::Ok)
    })
    .await;

    let export = exported_parts(app.export_customer(CUSTOMER, "journey-export").await);
    let erased = app.erase_customer(CUSTOMER, "journey-erase").await;
    let after_erasure = vec![
        (
            "loyalty account",
            code_of(
                app.loyalty()
                    .get_account(loyalty_pb::GetAccountRequest {
                        customer_id: CUSTOMER.into(),
                    })
                    .await,
            ),
        ),
        (
            "profile",
            code_of(
                app.profiles()
                    .get_profile(profile_pb::GetProfileRequest {
                        customer_id: CUSTOMER.into(),
                    })
                    .await,
            ),
        ),
    ];

    normalize(Answers {
        ingested,
        earned,
        redeemed,
        statement,
        recommendations,
        delivery,
        home_page,
        store_page,
        export,
        erased,
        after_erasure,
    })
}

/// The shop's catalogue, earning rule and delivery network.
async fn set_up_the_shop(app: &TestApp) {
    app.upsert_items(vec![
        catalog_item("sku-1", &["shoes"], "Trailco", 8000),
        catalog_item("sku-2", &["shoes"], "Trailco", 9000),
        catalog_item("sku-3", &["socks"], "Knit", 1000),
        catalog_item("sku-4", &["socks"], "Knit", 1200),
    ])
    .await;
    app.put_earn_rule(eur_rule("eur", 1, 0)).await;
    app.upsert_rates(vec![
        rate("de-next", common_pb::DeliveryMethod::HomeNextDay, 490),
        rate("de-std", common_pb::DeliveryMethod::HomeStandard, 290),
    ])
    .await;
    app.upsert_pickup_points(vec![pickup(
        "locker-mitte",
        attune_proto::delivery::v1::PickupPointKind::Locker,
        52.521,
        13.41,
    )])
    .await;
}

/// Delivery options once they show the whole network the shop set up (see
/// [`Deployment::deliverers`]).
async fn whole_network_options(
    app: &TestApp,
) -> attune_proto::delivery::v1::GetDeliveryOptionsResponse {
    for _ in 0..200 {
        let options = app
            .delivery_options(CUSTOMER, at(52.52, 13.405), cart(3000, 500))
            .await;
        if options.delivery_options.len() == 2 && options.pickup_points.len() == 1 {
            return options;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("delivery never served the network the shop set up");
}

/// The HOME page: one list of recommendations, every part asked for.
fn home_page(customer: &str) -> gateway_pb::GetPageExperienceRequest {
    gateway_pb::GetPageExperienceRequest {
        page_type: gateway_pb::PageType::Home.into(),
        placements: vec![gateway_pb::PlacementRequest {
            slot_id: "home-top".into(),
            placement: gateway_pb::SlotPlacement::Home.into(),
            max_items: 5,
            filter: None,
        }],
        ..cart_page(customer)
    }
}

fn granted(page: &gateway_pb::GetPageExperienceResponse, purpose: &str) -> bool {
    page.consents
        .iter()
        .any(|consent| consent.purpose_code == purpose && consent.granted)
}

/// Asks for the page until `ready` holds: a decision reaches the gateway's
/// consent cache through consent's change stream, within a second.
async fn settled_page(
    app: &TestApp,
    request: gateway_pb::GetPageExperienceRequest,
    ready: impl Fn(&gateway_pb::GetPageExperienceResponse) -> bool,
) -> gateway_pb::GetPageExperienceResponse {
    for _ in 0..200 {
        let page = app.page(request.clone()).await;
        if ready(&page) {
            return page;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("the page never reflected the consent the journey recorded");
}

fn exported_parts(messages: Vec<gateway_pb::ExportCustomerResponse>) -> Vec<ExportedPart> {
    let mut parts: Vec<ExportedPart> = Vec::new();
    for message in messages {
        let index = match parts
            .iter()
            .position(|part| part.service == message.service)
        {
            Some(index) => index,
            None => {
                parts.push(ExportedPart {
                    service: message.service.clone(),
                    kinds: Vec::new(),
                    receipt: None,
                    methods_read: Vec::new(),
                });
                parts.len() - 1
            }
        };
        let part = &mut parts[index];
        for record in &message.records {
            if part.service == attune_gateway::ACCESS_LOG_PACKAGE {
                part.methods_read.push(method_read(record));
            }
            match part.kinds.iter_mut().find(|(kind, _)| *kind == record.kind) {
                Some((_, count)) => *count += 1,
                None => part.kinds.push((record.kind.clone(), 1)),
            }
        }
        if let Some(receipt) = message.receipt {
            part.receipt = Some((receipt.status, receipt.record_count, receipt.retained));
        }
    }
    for part in &mut parts {
        part.kinds.sort();
        part.methods_read.sort();
        part.methods_read.dedup();
        if part.service == attune_gateway::ACCESS_LOG_PACKAGE {
            assert!(
                !part.methods_read.is_empty(),
                "the journey's reads are logged"
            );
            part.kinds.iter_mut().for_each(|(_, count)| *count = 0);
            if let Some((_, count, _)) = part.receipt.as_mut() {
                *count = 0;
            }
        }
    }
    parts.sort();
    parts
}

/// The method a data-access record says read the customer's data.
fn method_read(record: &attune_proto::privacy::v1::DataRecord) -> String {
    use attune_proto::prost_types::value::Kind;
    let rpc = record
        .data
        .as_ref()
        .and_then(|data| data.fields.get("rpc"))
        .and_then(|value| value.kind.as_ref());
    match rpc {
        Some(Kind::StringValue(rpc)) => rpc.clone(),
        _ => panic!("a data-access record names its method: {record:?}"),
    }
}

fn code_of<T>(answer: Result<T, attune_proto::tonic::Status>) -> Code {
    answer.map_or_else(|status| status.code(), |_| Code::Ok)
}

/// Clears what two deployments must answer differently given the same input,
/// and only that: ids the servers generate, and times they stamp from their
/// own clock (an account's opening, its review and its points' expiry, a
/// ledger entry's booking, a catalogue item's upsert, a delivery quote's
/// arrival window and expiry (and so its signed token), a page's composition,
/// an erasure's completion), and how many reads the data-access log counts. Recommendation scores are compared apart, within a
/// float's noise ([`without_scores`]).
fn normalize(mut answers: Answers) -> Answers {
    let account = |account: &mut loyalty_pb::Account| {
        account.open_time = None;
        account.tier_review_time = None;
        for expiry in &mut account.upcoming_expiries {
            expiry.expire_time = None;
        }
    };
    account(&mut answers.earned);
    if let Some(redeemed) = answers.redeemed.account.as_mut() {
        account(redeemed);
    }
    for entry in answers
        .redeemed
        .entry
        .iter_mut()
        .chain(answers.statement.iter_mut())
    {
        entry.entry_id = 0;
        entry.expire_time = None;
        entry.create_time = None;
    }
    answers.recommendations.recommendation_id.clear();
    answers.recommendations.model_version.clear();
    for recommended in &mut answers.recommendations.items {
        if let Some(item) = recommended.item.as_mut() {
            item.update_time = None;
        }
    }
    for option in &mut answers.delivery.delivery_options {
        option.earliest_arrival_time = None;
        option.latest_arrival_time = None;
        option.quote_token.clear();
        option.quote_expire_time = None;
    }
    for page in [&mut answers.home_page, &mut answers.store_page] {
        page.experience_id.clear();
        page.compose_time = None;
        if let Some(delivery) = page.delivery.as_mut() {
            for option in &mut delivery.options {
                option.earliest_arrival_time = None;
                option.latest_arrival_time = None;
                option.quote_token.clear();
                option.quote_expire_time = None;
            }
        }
        for list in &mut page.recommendations {
            list.recommendation_id.clear();
        }
        if let Some(loyalty) = page.loyalty.as_mut()
            && let Some(account) = loyalty.account.as_mut()
        {
            for expiry in &mut account.upcoming_expiries {
                expiry.expire_time = None;
            }
        }
    }
    answers.erased.erase_time = None;
    for receipt in &mut answers.erased.receipts {
        receipt.complete_time = None;
        // The data-access log holds one entry per read (see ExportedPart).
        if receipt.service == attune_gateway::ACCESS_LOG_PACKAGE {
            assert!(receipt.record_count > 0, "the journey's reads were logged");
            receipt.record_count = 0;
        }
    }
    answers
}

/// The recommendations' scores, then the answers without them: training sums
/// in floating point in an order that may differ between two processes, so two
/// models trained on the same data agree on scores to about 1e-7, not exactly.
/// The caller compares the scores within a tolerance and the rest exactly
/// (ranks, items, reasons).
pub fn without_scores(answers: &Answers) -> (Vec<f64>, Answers) {
    let mut answers = answers.clone();
    let scores = answers
        .recommendations
        .items
        .iter_mut()
        .map(|item| std::mem::take(&mut item.score))
        .collect();
    (scores, answers)
}
