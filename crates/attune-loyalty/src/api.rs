//! `attune.loyalty.v1.LoyaltyService`: each RPC parses its request (every
//! violation at once), calls the service, converts the answer back.

use attune_kit::ApiError;
use attune_kit::db::micros::to_micros;
use attune_kit::error::{Violations, checked};
use attune_kit::pagination::{decode_cursor, next_page, page_size};
use attune_kit::types::{CustomerId, Money, RequestId, time};
use attune_proto::loyalty::v1 as pb;
use attune_proto::loyalty::v1::loyalty_service_server::LoyaltyService;
use chrono::Duration;
use tonic::{Request, Response, Status};

use crate::app::Loyalty;
use crate::convert::{self, MAX_POINTS, account_to_proto, entry_to_proto};
use crate::points::{AdjustOutcome, Adjustment};
use crate::rewards::{Gives, Reward, Voucher, VoucherState};

/// The loyalty API over the service's state.
#[derive(Debug, Clone)]
pub struct LoyaltyApi {
    loyalty: Loyalty,
}

impl LoyaltyApi {
    pub fn new(loyalty: Loyalty) -> Self {
        Self { loyalty }
    }
}

type Answer<T> = Result<Response<T>, Status>;

fn ok<T>(value: T) -> Answer<T> {
    Ok(Response::new(value))
}

fn adjustment(
    v: &mut Violations,
    prefix: &str,
    req: pb::AdjustPointsRequest,
) -> Option<Adjustment> {
    let pb::AdjustPointsRequest {
        customer_id,
        points,
        reason_code,
        description,
        request_id,
    } = req;
    let customer = convert::customer(v, &format!("{prefix}customer_id"), &customer_id);
    if points == 0 || !(-MAX_POINTS..=MAX_POINTS).contains(&points) {
        v.add(
            format!("{prefix}points"),
            "must be non-zero and at most 1000000000 either way",
        );
    }
    let reason = convert::reason(v, &format!("{prefix}reason_code"), reason_code);
    convert::text(v, &format!("{prefix}description"), &description, 200);
    let id = convert::request_id(v, &format!("{prefix}request_id"), &request_id);
    Some(Adjustment {
        customer_id: customer?.into_string(),
        points,
        reason: reason?,
        description,
        request_id: id?.into_string(),
    })
}

fn voucher_to_proto(voucher: Voucher) -> pb::Voucher {
    let Voucher {
        code,
        customer_id,
        reward_id,
        points,
        state,
        issue_time,
        expire_time,
        order_id,
        use_time,
    } = voucher;
    pb::Voucher {
        voucher_code: code,
        customer_id,
        reward_id,
        points,
        state: match state {
            VoucherState::Issued => pb::VoucherState::Issued,
            VoucherState::Expired => pb::VoucherState::Expired,
            VoucherState::Cancelled => pb::VoucherState::Cancelled,
            VoucherState::Used => pb::VoucherState::Used,
        }
        .into(),
        issue_time: Some(time::to_proto(issue_time)),
        expire_time: Some(time::to_proto(expire_time)),
        order_id: order_id.unwrap_or_default(),
        use_time: use_time.map(time::to_proto),
    }
}

fn reward_to_proto(reward: Reward) -> pb::Reward {
    let Reward {
        reward_id,
        display_name,
        description,
        gives,
        points_cost,
        stock,
        active,
        start,
        end,
        voucher_validity,
    } = reward;
    let mut out = pb::Reward {
        reward_id,
        display_name,
        description,
        kind: 0,
        amount_off: None,
        discount_basis_points: 0,
        free_item_id: String::new(),
        points_cost,
        stock,
        active,
        start_time: start.map(time::to_proto),
        end_time: end.map(time::to_proto),
        voucher_validity: Some(convert::to_duration(voucher_validity)),
    };
    out.kind = match gives {
        Gives::AmountOff {
            amount_minor,
            currency,
        } => {
            out.amount_off = Some(attune_proto::common::v1::Money {
                amount_minor,
                currency_code: currency,
            });
            pb::RewardKind::AmountOff
        }
        Gives::PercentOff { basis_points } => {
            out.discount_basis_points = basis_points;
            pb::RewardKind::PercentOff
        }
        Gives::FreeProduct { item_id } => {
            out.free_item_id = item_id;
            pb::RewardKind::FreeProduct
        }
        Gives::FreeDelivery => pb::RewardKind::FreeDelivery,
        Gives::Experience => pb::RewardKind::Experience,
    }
    .into();
    out
}

fn parse_reward(v: &mut Violations, reward: Option<pb::Reward>) -> Option<Reward> {
    let Some(reward) = reward else {
        v.add("reward", "is required");
        return None;
    };
    let pb::Reward {
        reward_id,
        display_name,
        description,
        kind,
        amount_off,
        discount_basis_points,
        free_item_id,
        points_cost,
        stock,
        active,
        start_time,
        end_time,
        voucher_validity,
    } = reward;
    convert::code(v, "reward.reward_id", &reward_id);
    convert::required_text(v, "reward.display_name", &display_name, 200);
    convert::text(v, "reward.description", &description, 2000);
    let kind = pb::RewardKind::try_from(kind).unwrap_or(pb::RewardKind::Unspecified);
    let wrong = |v: &mut Violations, field: &str| {
        v.add(format!("reward.{field}"), "must be unset for this kind")
    };
    if kind != pb::RewardKind::AmountOff && amount_off.is_some() {
        wrong(v, "amount_off");
    }
    if kind != pb::RewardKind::PercentOff && discount_basis_points != 0 {
        wrong(v, "discount_basis_points");
    }
    if kind != pb::RewardKind::FreeProduct && !free_item_id.is_empty() {
        wrong(v, "free_item_id");
    }
    let gives = match kind {
        pb::RewardKind::Unspecified => {
            v.add("reward.kind", "is required");
            None
        }
        pb::RewardKind::AmountOff => v
            .check_field(Money::from_proto_required("reward.amount_off", amount_off))
            .map(|m| {
                if m.amount_minor() <= 0 {
                    v.add("reward.amount_off", "must be positive");
                }
                Gives::AmountOff {
                    amount_minor: m.amount_minor(),
                    currency: m.currency().to_string(),
                }
            }),
        pb::RewardKind::PercentOff => {
            if !(1..=10_000).contains(&discount_basis_points) {
                v.add("reward.discount_basis_points", "must be 1 to 10000");
            }
            Some(Gives::PercentOff {
                basis_points: discount_basis_points,
            })
        }
        pb::RewardKind::FreeProduct => {
            if let Err(e) = attune_kit::types::printable_ascii(&free_item_id, 128) {
                v.add("reward.free_item_id", e);
            }
            Some(Gives::FreeProduct {
                item_id: free_item_id,
            })
        }
        pb::RewardKind::FreeDelivery => Some(Gives::FreeDelivery),
        pb::RewardKind::Experience => Some(Gives::Experience),
    };
    if !(1..=MAX_POINTS).contains(&points_cost) {
        v.add("reward.points_cost", "must be 1 to 1000000000");
    }
    if stock.is_some_and(|s| s < 0) {
        v.add("reward.stock", "must not be negative");
    }
    let start = v.check("reward.start_time", time::from_proto_optional(start_time));
    let end = v.check("reward.end_time", time::from_proto_optional(end_time));
    if let (Some(Some(s)), Some(Some(e))) = (start, end)
        && e <= s
    {
        v.add("reward.end_time", "must be after start_time");
    }
    let validity = convert::duration(
        v,
        "reward.voucher_validity",
        voucher_validity,
        Duration::days(1),
        Duration::days(3 * 366),
    );
    Some(Reward {
        reward_id,
        display_name,
        description,
        gives: gives?,
        points_cost,
        stock,
        active,
        start: start?,
        end: end?,
        voucher_validity: validity?,
    })
}

#[tonic::async_trait]
impl LoyaltyService for LoyaltyApi {
    async fn open_account(
        &self,
        request: Request<pb::OpenAccountRequest>,
    ) -> Answer<pb::OpenAccountResponse> {
        let pb::OpenAccountRequest {
            customer_id,
            request_id,
        } = request.into_inner();
        let mut v = Violations::default();
        let customer = convert::customer(&mut v, "customer_id", &customer_id);
        let id = convert::request_id(&mut v, "request_id", &request_id);
        v.finish()?;
        let account = self
            .loyalty
            .open_account(checked(customer).as_ref(), checked(id).as_ref())
            .await?;
        ok(pb::OpenAccountResponse {
            account: Some(account_to_proto(account)),
        })
    }

    async fn get_account(
        &self,
        request: Request<pb::GetAccountRequest>,
    ) -> Answer<pb::GetAccountResponse> {
        let pb::GetAccountRequest { customer_id } = request.into_inner();
        let mut v = Violations::default();
        let customer = convert::customer(&mut v, "customer_id", &customer_id);
        v.finish()?;
        let account = self.loyalty.account(checked(customer).as_ref()).await?;
        ok(pb::GetAccountResponse {
            account: Some(account_to_proto(account)),
        })
    }

    async fn list_statement(
        &self,
        request: Request<pb::ListStatementRequest>,
    ) -> Answer<pb::ListStatementResponse> {
        let pb::ListStatementRequest {
            customer_id,
            page_size: size,
            page_token,
        } = request.into_inner();
        let mut v = Violations::default();
        let customer = convert::customer(&mut v, "customer_id", &customer_id);
        let size = v.check_field(page_size("page_size", size, 50, 500));
        let before = convert::int_cursor(&mut v, &page_token);
        v.finish()?;
        let size = checked(size);
        let rows = self
            .loyalty
            .statement(checked(customer).as_ref(), before, size)
            .await?;
        let (rows, next_page_token) = next_page(rows, size, |e| e.entry_id.to_string());
        ok(pb::ListStatementResponse {
            entries: rows.into_iter().map(entry_to_proto).collect(),
            next_page_token,
        })
    }

    async fn list_upcoming_expiries(
        &self,
        request: Request<pb::ListUpcomingExpiriesRequest>,
    ) -> Answer<pb::ListUpcomingExpiriesResponse> {
        let pb::ListUpcomingExpiriesRequest {
            customer_id,
            page_size: size,
            page_token,
        } = request.into_inner();
        let mut v = Violations::default();
        let customer = convert::customer(&mut v, "customer_id", &customer_id);
        let size = v.check_field(page_size("page_size", size, 100, 1000));
        let after = convert::int_cursor(&mut v, &page_token);
        v.finish()?;
        let size = checked(size);
        let rows = self
            .loyalty
            .upcoming_expiries(checked(customer).as_ref(), after, size)
            .await?;
        let (rows, next_page_token) = next_page(rows, size, |(at, _)| to_micros(*at).to_string());
        ok(pb::ListUpcomingExpiriesResponse {
            expiries: rows.into_iter().map(convert::expiry_to_proto).collect(),
            next_page_token,
        })
    }

    async fn redeem_points(
        &self,
        request: Request<pb::RedeemPointsRequest>,
    ) -> Answer<pb::RedeemPointsResponse> {
        let pb::RedeemPointsRequest {
            customer_id,
            points,
            order_id,
            description,
            request_id,
        } = request.into_inner();
        let mut v = Violations::default();
        let customer = convert::customer(&mut v, "customer_id", &customer_id);
        if !(1..=MAX_POINTS).contains(&points) {
            v.add("points", "must be 1 to 1000000000");
        }
        convert::text(&mut v, "order_id", &order_id, 128);
        convert::text(&mut v, "description", &description, 200);
        let id = convert::request_id(&mut v, "request_id", &request_id);
        v.finish()?;
        let booked = self
            .loyalty
            .redeem(
                checked(customer).as_ref(),
                points,
                &order_id,
                &description,
                checked(id).as_ref(),
            )
            .await?;
        ok(pb::RedeemPointsResponse {
            entry: Some(entry_to_proto(booked.entry)),
            account: Some(account_to_proto(booked.account)),
        })
    }

    async fn adjust_points(
        &self,
        request: Request<pb::AdjustPointsRequest>,
    ) -> Answer<pb::AdjustPointsResponse> {
        let mut v = Violations::default();
        let adjustment = adjustment(&mut v, "", request.into_inner());
        v.finish()?;
        let booked = self.loyalty.adjust(checked(adjustment)).await?;
        ok(pb::AdjustPointsResponse {
            entry: Some(entry_to_proto(booked.entry)),
            account: Some(account_to_proto(booked.account)),
        })
    }

    async fn bulk_adjust_points(
        &self,
        request: Request<pb::BulkAdjustPointsRequest>,
    ) -> Answer<pb::BulkAdjustPointsResponse> {
        let pb::BulkAdjustPointsRequest { adjustments } = request.into_inner();
        let mut v = Violations::default();
        if adjustments.is_empty() || adjustments.len() > 5000 {
            v.add("adjustments", "must have 1 to 5000 entries");
        }
        let mut ids = std::collections::BTreeSet::new();
        let parsed: Vec<Option<Adjustment>> = adjustments
            .into_iter()
            .enumerate()
            .map(|(i, a)| {
                let prefix = format!("adjustments[{i}].");
                if !ids.insert(a.request_id.clone()) {
                    v.add(format!("{prefix}request_id"), "is used twice in the batch");
                }
                adjustment(&mut v, &prefix, a)
            })
            .collect();
        v.finish()?;
        let parsed: Vec<Adjustment> = parsed.into_iter().map(checked).collect();
        let ids: Vec<String> = parsed.iter().map(|a| a.request_id.clone()).collect();
        let outcomes = self.loyalty.bulk_adjust(parsed).await?;
        let results = ids
            .into_iter()
            .zip(outcomes)
            .map(|(request_id, outcome)| match outcome {
                AdjustOutcome::Booked(entry) => pb::BulkAdjustResult {
                    request_id,
                    code: 0,
                    message: String::new(),
                    entry: Some(entry_to_proto(entry)),
                },
                AdjustOutcome::Refused(error) => pb::BulkAdjustResult {
                    request_id,
                    code: error.code() as i32,
                    message: error.to_string(),
                    entry: None,
                },
            })
            .collect();
        ok(pb::BulkAdjustPointsResponse { results })
    }

    async fn run_scheduled_work(
        &self,
        request: Request<pb::RunScheduledWorkRequest>,
    ) -> Answer<pb::RunScheduledWorkResponse> {
        let pb::RunScheduledWorkRequest { request_id } = request.into_inner();
        let mut v = Violations::default();
        let id = convert::request_id(&mut v, "request_id", &request_id);
        v.finish()?;
        let done = self
            .loyalty
            .run_scheduled(Some(checked(id).as_ref()))
            .await?;
        ok(pb::RunScheduledWorkResponse {
            released_points: done.released,
            expired_points: done.expired,
            reviewed_accounts: done.reviewed,
        })
    }

    async fn put_earn_rule(
        &self,
        request: Request<pb::PutEarnRuleRequest>,
    ) -> Answer<pb::PutEarnRuleResponse> {
        let (rule, id) = convert::put_earn_rule(request.into_inner())?;
        let rule = self.loyalty.put_earn_rule(rule, id.as_ref()).await?;
        ok(pb::PutEarnRuleResponse {
            rule: Some(convert::earn_rule_to_proto(rule)),
        })
    }

    async fn list_earn_rules(
        &self,
        request: Request<pb::ListEarnRulesRequest>,
    ) -> Answer<pb::ListEarnRulesResponse> {
        let pb::ListEarnRulesRequest {} = request.into_inner();
        let rules = self.loyalty.earn_rules().await?;
        ok(pb::ListEarnRulesResponse {
            rules: rules.into_iter().map(convert::earn_rule_to_proto).collect(),
        })
    }

    async fn simulate(
        &self,
        request: Request<pb::SimulateRequest>,
    ) -> Answer<pb::SimulateResponse> {
        let pb::SimulateRequest { customer_id, lines } = request.into_inner();
        let mut v = Violations::default();
        let customer = convert::customer(&mut v, "customer_id", &customer_id);
        let (lines, currency) = convert::cart_lines(&mut v, lines);
        v.finish()?;
        let currency =
            currency.ok_or_else(|| ApiError::invalid("lines", "must have 1 to 100 lines"))?;
        let simulated = self
            .loyalty
            .simulate(checked(customer).as_ref(), &lines, &currency)
            .await?;
        ok(pb::SimulateResponse {
            points: simulated.points,
            rule_id: simulated.rule_id,
            rule_version: simulated.rule_version,
            pending: simulated.pending,
            unlocked_reward_ids: simulated.unlocked_reward_ids,
        })
    }

    async fn put_tiers(
        &self,
        request: Request<pb::PutTiersRequest>,
    ) -> Answer<pb::PutTiersResponse> {
        let (ladder, id) = convert::put_tiers(request.into_inner())?;
        let ladder = self.loyalty.put_tiers(ladder, id.as_ref()).await?;
        ok(pb::PutTiersResponse {
            tiers: ladder.tiers.iter().map(convert::tier_to_proto).collect(),
        })
    }

    async fn list_tiers(
        &self,
        request: Request<pb::ListTiersRequest>,
    ) -> Answer<pb::ListTiersResponse> {
        let pb::ListTiersRequest {} = request.into_inner();
        let Some(ladder) = self.loyalty.ladder().await? else {
            return ok(pb::ListTiersResponse::default());
        };
        let (basis, spend_currency_code) = convert::basis_to_proto(&ladder.basis);
        ok(pb::ListTiersResponse {
            tiers: ladder.tiers.iter().map(convert::tier_to_proto).collect(),
            basis: basis.into(),
            spend_currency_code,
        })
    }

    async fn put_reward(
        &self,
        request: Request<pb::PutRewardRequest>,
    ) -> Answer<pb::PutRewardResponse> {
        let pb::PutRewardRequest { reward, request_id } = request.into_inner();
        let mut v = Violations::default();
        let reward = parse_reward(&mut v, reward);
        let id = convert::request_id(&mut v, "request_id", &request_id);
        v.finish()?;
        let reward = self
            .loyalty
            .put_reward(checked(reward), checked(id).as_ref())
            .await?;
        ok(pb::PutRewardResponse {
            reward: Some(reward_to_proto(reward)),
        })
    }

    async fn list_rewards(
        &self,
        request: Request<pb::ListRewardsRequest>,
    ) -> Answer<pb::ListRewardsResponse> {
        let pb::ListRewardsRequest {
            page_size: size,
            page_token,
        } = request.into_inner();
        let mut v = Violations::default();
        let size = v.check_field(page_size("page_size", size, 50, 500));
        let after = decode_cursor(&mut v, "page_token", &page_token, |c| {
            let (cost, id) = c.split_once(':')?;
            Some((cost.parse::<i64>().ok()?, id.to_owned()))
        });
        v.finish()?;
        let size = checked(size);
        let rows = self.loyalty.rewards(after, size + 1).await?;
        let (rows, next_page_token) =
            next_page(rows, size, |r| format!("{}:{}", r.points_cost, r.reward_id));
        ok(pb::ListRewardsResponse {
            rewards: rows.into_iter().map(reward_to_proto).collect(),
            next_page_token,
        })
    }

    async fn redeem_reward(
        &self,
        request: Request<pb::RedeemRewardRequest>,
    ) -> Answer<pb::RedeemRewardResponse> {
        let pb::RedeemRewardRequest {
            customer_id,
            reward_id,
            request_id,
        } = request.into_inner();
        let mut v = Violations::default();
        let customer = convert::customer(&mut v, "customer_id", &customer_id);
        convert::code(&mut v, "reward_id", &reward_id);
        let id = convert::request_id(&mut v, "request_id", &request_id);
        v.finish()?;
        let redeemed = self
            .loyalty
            .redeem_reward(checked(customer).as_ref(), &reward_id, checked(id).as_ref())
            .await?;
        ok(pb::RedeemRewardResponse {
            voucher: Some(voucher_to_proto(redeemed.voucher)),
            account: Some(account_to_proto(redeemed.account)),
        })
    }

    async fn list_vouchers(
        &self,
        request: Request<pb::ListVouchersRequest>,
    ) -> Answer<pb::ListVouchersResponse> {
        let pb::ListVouchersRequest {
            customer_id,
            page_size: size,
            page_token,
        } = request.into_inner();
        let mut v = Violations::default();
        let customer = convert::customer(&mut v, "customer_id", &customer_id);
        let size = v.check_field(page_size("page_size", size, 50, 500));
        let before = decode_cursor(&mut v, "page_token", &page_token, |c| {
            let (at, code) = c.split_once(':')?;
            Some((at.parse::<i64>().ok()?, code.to_owned()))
        });
        v.finish()?;
        let size = checked(size);
        let rows = self
            .loyalty
            .vouchers(checked(customer).as_ref(), before, size + 1)
            .await?;
        let (rows, next_page_token) = next_page(rows, size, |r| {
            format!(
                "{}:{}",
                attune_kit::db::micros::to_micros(r.issue_time),
                r.code
            )
        });
        ok(pb::ListVouchersResponse {
            vouchers: rows.into_iter().map(voucher_to_proto).collect(),
            next_page_token,
        })
    }

    async fn cancel_redemption(
        &self,
        request: Request<pb::CancelRedemptionRequest>,
    ) -> Answer<pb::CancelRedemptionResponse> {
        let pb::CancelRedemptionRequest {
            customer_id,
            voucher_code,
            request_id,
        } = request.into_inner();
        let mut v = Violations::default();
        let customer = convert::customer(&mut v, "customer_id", &customer_id);
        convert::required_text(&mut v, "voucher_code", &voucher_code, 32);
        let id = convert::request_id(&mut v, "request_id", &request_id);
        v.finish()?;
        let cancelled = self
            .loyalty
            .cancel_redemption(
                checked(customer).as_ref(),
                &voucher_code,
                checked(id).as_ref(),
            )
            .await?;
        ok(pb::CancelRedemptionResponse {
            voucher: Some(voucher_to_proto(cancelled.voucher)),
            account: Some(account_to_proto(cancelled.account)),
        })
    }

    async fn use_voucher(
        &self,
        request: Request<pb::UseVoucherRequest>,
    ) -> Answer<pb::UseVoucherResponse> {
        let pb::UseVoucherRequest {
            customer_id,
            voucher_code,
            order_id,
            request_id,
        } = request.into_inner();
        let order = VoucherOrder::parse(&customer_id, voucher_code, order_id, &request_id)?;
        let voucher = self
            .loyalty
            .use_voucher(
                order.customer.as_ref(),
                &order.voucher_code,
                &order.order_id,
                order.request_id.as_ref(),
            )
            .await?;
        ok(pb::UseVoucherResponse {
            voucher: Some(voucher_to_proto(voucher)),
        })
    }

    async fn release_voucher(
        &self,
        request: Request<pb::ReleaseVoucherRequest>,
    ) -> Answer<pb::ReleaseVoucherResponse> {
        let pb::ReleaseVoucherRequest {
            customer_id,
            voucher_code,
            order_id,
            request_id,
        } = request.into_inner();
        let order = VoucherOrder::parse(&customer_id, voucher_code, order_id, &request_id)?;
        let voucher = self
            .loyalty
            .release_voucher(
                order.customer.as_ref(),
                &order.voucher_code,
                &order.order_id,
                order.request_id.as_ref(),
            )
            .await?;
        ok(pb::ReleaseVoucherResponse {
            voucher: Some(voucher_to_proto(voucher)),
        })
    }
}

/// A voucher applied to or given back from an order: UseVoucher's and
/// ReleaseVoucher's request, validated alike.
struct VoucherOrder {
    customer: CustomerId,
    voucher_code: String,
    order_id: String,
    request_id: RequestId,
}

impl VoucherOrder {
    fn parse(
        customer_id: &str,
        voucher_code: String,
        order_id: String,
        request_id: &str,
    ) -> Result<Self, Status> {
        let mut v = Violations::default();
        let customer = convert::customer(&mut v, "customer_id", customer_id);
        convert::required_text(&mut v, "voucher_code", &voucher_code, 32);
        convert::required_text(&mut v, "order_id", &order_id, 128);
        let request_id = convert::request_id(&mut v, "request_id", request_id);
        v.finish()?;
        Ok(Self {
            customer: checked(customer),
            voucher_code,
            order_id,
            request_id: checked(request_id),
        })
    }
}
