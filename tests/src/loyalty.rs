//! Loyalty for end-to-end tests: typed clients, rules, grants, and the ledger
//! invariant every loyalty test checks.

use std::time::Duration;

use attune_proto::loyalty::v1 as pb;
use attune_proto::loyalty::v1::loyalty_service_client::LoyaltyServiceClient;
use attune_proto::loyalty::v1::offer_service_client::OfferServiceClient;
use tonic::Code;
use tonic::transport::Channel;

use crate::TestApp;
use crate::consent_requests::request_id;

pub use attune_proto::loyalty::v1 as loyalty_pb;

/// `days` as a protobuf duration.
pub fn days(days: i64) -> prost_types::Duration {
    prost_types::Duration {
        seconds: days * 86_400,
        nanos: 0,
    }
}

/// A purchase rule in EUR: `points_per_unit` points per euro, points pending for
/// `return_window_days` (0: available at once).
pub fn eur_rule(rule_id: &str, points_per_unit: i64, return_window_days: i64) -> pb::EarnRule {
    pb::EarnRule {
        rule_id: rule_id.into(),
        version: 0,
        active: true,
        earning: Some(pb::earn_rule::Earning::Purchase(pb::PurchaseEarning {
            currency_code: "EUR".into(),
            points_per_unit,
            category_multipliers: vec![],
            promotions: vec![],
            max_points_per_order: 0,
            max_points_per_period: 0,
            cap_period: None,
            return_window: (return_window_days > 0).then(|| days(return_window_days)),
        })),
        create_time: None,
    }
}

/// A redemption of `points` by `customer` under `request_id`.
pub fn redemption(customer: &str, points: i64, request_id: &str) -> pb::RedeemPointsRequest {
    pb::RedeemPointsRequest {
        customer_id: customer.into(),
        points,
        order_id: String::new(),
        description: "a coffee".into(),
        request_id: request_id.into(),
    }
}

impl TestApp {
    /// Redeems, retrying with the same request id while the server sheds load
    /// (UNAVAILABLE: its connection pool is busy) or the call was cut before an
    /// answer (a transport error), as a client should: the id makes the retry safe,
    /// so the outcome counted is the request's one real outcome.
    pub async fn redeem_retrying(
        &self,
        request: pb::RedeemPointsRequest,
    ) -> Result<tonic::Response<pb::RedeemPointsResponse>, tonic::Status> {
        loop {
            match self.loyalty().redeem_points(request.clone()).await {
                Err(status)
                    if matches!(
                        status.code(),
                        // Transport trouble under a thousand concurrent streams (a pool
                        // timeout, a GOAWAY the client sees as RESOURCE_EXHAUSTED): the
                        // same request id makes the retry safe.
                        Code::Unavailable
                            | Code::Unknown
                            | Code::Cancelled
                            | Code::DeadlineExceeded
                            | Code::ResourceExhausted
                    ) =>
                {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                answer => return answer,
            }
        }
    }

    /// The loyalty API through the public port.
    pub fn loyalty(&self) -> LoyaltyServiceClient<Channel> {
        LoyaltyServiceClient::new(self.channel.clone())
    }

    /// Loyalty's offers and messages through the public port.
    pub fn offers(&self) -> OfferServiceClient<Channel> {
        OfferServiceClient::new(self.channel.clone())
    }

    /// Stores `rule`, which must be accepted.
    pub async fn put_earn_rule(&self, rule: pb::EarnRule) -> pb::EarnRule {
        self.loyalty()
            .put_earn_rule(pb::PutEarnRuleRequest {
                rule: Some(rule),
                request_id: request_id(),
            })
            .await
            .expect("the rule is stored")
            .into_inner()
            .rule
            .expect("the rule is answered")
    }

    /// Grants `points` to `customer` (opening the account), which must succeed.
    pub async fn grant_points(&self, customer: &str, points: i64) -> pb::AdjustPointsResponse {
        self.loyalty()
            .adjust_points(pb::AdjustPointsRequest {
                customer_id: customer.into(),
                points,
                reason_code: pb::ReasonCode::Promotion.into(),
                description: "welcome".into(),
                request_id: request_id(),
            })
            .await
            .expect("the grant is booked")
            .into_inner()
    }

    /// `customer`'s account, which must exist.
    pub async fn loyalty_account(&self, customer: &str) -> pb::Account {
        self.loyalty()
            .get_account(pb::GetAccountRequest {
                customer_id: customer.into(),
            })
            .await
            .expect("the account exists")
            .into_inner()
            .account
            .expect("an account is answered")
    }

    /// Every entry of `customer`'s statement, newest first.
    pub async fn statement(&self, customer: &str) -> Vec<pb::LedgerEntry> {
        crate::every_page(async |page_token| {
            let page = self
                .loyalty()
                .list_statement(pb::ListStatementRequest {
                    customer_id: customer.into(),
                    page_size: 500,
                    page_token,
                })
                .await
                .expect("the statement is readable")
                .into_inner();
            (page.entries, page.next_page_token)
        })
        .await
    }

    /// Asserts the ledger invariant for `customer`: available, pending and debt
    /// each equal the sum of their column of the ledger, none is negative, and
    /// debt is only owed while nothing is available. Returns the account.
    pub async fn assert_ledger_consistent(&self, customer: &str) -> pb::Account {
        let account = self.loyalty_account(customer).await;
        let entries = self.statement(customer).await;
        let sum = |f: fn(&pb::LedgerEntry) -> i64| entries.iter().map(f).sum::<i64>();
        assert_eq!(
            account.available_points,
            sum(|e| e.points),
            "available = sum of the ledger"
        );
        assert_eq!(
            account.pending_points,
            sum(|e| e.pending_points),
            "pending = sum of the ledger"
        );
        assert_eq!(
            account.debt_points,
            sum(|e| e.debt_points),
            "debt = sum of the ledger"
        );
        assert!(account.available_points >= 0, "{account:?}");
        assert!(account.pending_points >= 0, "{account:?}");
        assert!(account.debt_points >= 0, "{account:?}");
        assert!(
            account.debt_points == 0 || account.available_points == 0,
            "{account:?}"
        );
        let upcoming: i64 = self
            .upcoming_expiries(&account)
            .await
            .iter()
            .map(|e| e.points)
            .sum();
        assert_eq!(
            upcoming, account.available_points,
            "every available point has an expiry"
        );
        account
    }

    /// Every upcoming expiry of `account`: the ones it shows, then the rest
    /// through ListUpcomingExpiries from its page token.
    pub async fn upcoming_expiries(&self, account: &pb::Account) -> Vec<pb::PointsExpiry> {
        let mut expiries = account.upcoming_expiries.clone();
        let mut token = account.upcoming_expiries_next_page_token.clone();
        while !token.is_empty() {
            let page = self
                .loyalty()
                .list_upcoming_expiries(pb::ListUpcomingExpiriesRequest {
                    customer_id: account.customer_id.clone(),
                    page_size: 0,
                    page_token: token,
                })
                .await
                .expect("a page of expiries")
                .into_inner();
            expiries.extend(page.expiries);
            token = page.next_page_token;
        }
        expiries
    }

    /// Waits until `customer`'s account satisfies `done` (the follower of
    /// profile's feed runs in the background), for at most ten seconds.
    pub async fn wait_for_account(
        &self,
        customer: &str,
        done: impl Fn(&pb::Account) -> bool,
    ) -> pb::Account {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let answer = self
                .loyalty()
                .get_account(pb::GetAccountRequest {
                    customer_id: customer.into(),
                })
                .await;
            if let Ok(answer) = answer {
                let account = answer.into_inner().account.expect("an account is answered");
                if done(&account) {
                    return account;
                }
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "the account never got there: {account:?}"
                );
            } else {
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "the account never opened: {answer:?}"
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// A percent-off reward costing `points_cost`, with `stock` units.
pub fn reward(reward_id: &str, points_cost: i64, stock: Option<i64>) -> pb::Reward {
    pb::Reward {
        reward_id: reward_id.into(),
        display_name: format!("A {reward_id}"),
        description: String::new(),
        kind: pb::RewardKind::PercentOff.into(),
        amount_off: None,
        discount_basis_points: 1000,
        free_item_id: String::new(),
        points_cost,
        stock,
        active: true,
        start_time: None,
        end_time: None,
        voucher_validity: Some(days(30)),
    }
}

/// Consent, profile and loyalty each as a pod of its own over one database
/// (`attune serve --service NAME`), so that a test can stop loyalty, its
/// feed follower with it, and start it again while profile keeps taking
/// purchases.
pub struct LoyaltyPods {
    // Dropped first to last: loyalty, profile, then consent, which holds the
    // database.
    loyalty: Option<TestApp>,
    /// Profile's pod: ingest purchases here.
    pub profile: TestApp,
    /// Consent's pod: grant consent here.
    pub consent: TestApp,
    config: attune_kit::config::Config,
}

impl LoyaltyPods {
    /// Starts the three pods on a fresh database, or `None` for PostgreSQL when
    /// no test server is configured.
    pub async fn spawn(backend: crate::Backend) -> Option<Self> {
        let (mut config, database) = crate::fresh_config(backend).await?;
        let mut consent = TestApp::start(config.clone(), role("consent"), clock()).await;
        consent._database = Some(database);
        config
            .peers
            .addresses
            .insert("consent".into(), format!("http://{}", consent.address));
        let profile = TestApp::start(config.clone(), role("profile"), clock()).await;
        config
            .peers
            .addresses
            .insert("profile".into(), format!("http://{}", profile.address));
        let loyalty = TestApp::start(config.clone(), role("loyalty"), clock()).await;
        Some(Self {
            loyalty: Some(loyalty),
            profile,
            consent,
            config,
        })
    }

    /// Loyalty's pod; panics while it is stopped.
    pub fn loyalty(&self) -> &TestApp {
        self.loyalty.as_ref().expect("loyalty is running")
    }

    /// Stops loyalty's pod and waits until it has stopped: its follower is
    /// cancelled wherever it is, a batch in flight rolled back.
    pub async fn stop_loyalty(&mut self) {
        let mut loyalty = self.loyalty.take().expect("loyalty is running");
        loyalty.begin_shutdown();
        loyalty.join().await.expect("loyalty stops cleanly");
    }

    /// Starts loyalty's pod again on the same database.
    pub async fn start_loyalty(&mut self) {
        assert!(self.loyalty.is_none(), "loyalty is stopped");
        self.loyalty = Some(TestApp::start(self.config.clone(), role("loyalty"), clock()).await);
    }
}

fn role(service: &str) -> attune::Role {
    attune::Role::named(Some(service)).expect("the service is registered")
}

fn clock() -> attune_kit::clock::Clock {
    attune_kit::clock::Clock::system()
}
