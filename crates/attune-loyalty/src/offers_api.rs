//! `attune.loyalty.v1.OfferService`: parse, call, convert back.

use attune_kit::error::{Violations, checked};
use attune_kit::pagination::{decode_cursor, encode_page_token, page_size};
use attune_kit::types::time;
use attune_proto::loyalty::v1 as pb;
use attune_proto::loyalty::v1::offer_service_server::OfferService;
use chrono::Duration;
use tonic::{Request, Response, Status};

use crate::app::Loyalty;
use crate::convert;
use crate::messages::{NextBest, NoMessage};
use crate::offers::{Channel, Offer, OfferKind, OfferRule, OfferState, Skip};

/// The offers API over the service's state.
#[derive(Debug, Clone)]
pub struct OfferApi {
    loyalty: Loyalty,
}

impl OfferApi {
    pub fn new(loyalty: Loyalty) -> Self {
        Self { loyalty }
    }
}

type Answer<T> = Result<Response<T>, Status>;

fn kind_from(raw: i32) -> Option<OfferKind> {
    match pb::OfferKind::try_from(raw).ok()? {
        pb::OfferKind::Replenishment => Some(OfferKind::Replenishment),
        pb::OfferKind::WinBack => Some(OfferKind::WinBack),
        pb::OfferKind::CartAbandon => Some(OfferKind::CartAbandon),
        pb::OfferKind::ZeroPartyThanks => Some(OfferKind::ZeroPartyThanks),
        pb::OfferKind::StoreEvent => Some(OfferKind::StoreEvent),
        pb::OfferKind::Unspecified => None,
    }
}

fn kind_to(kind: OfferKind) -> pb::OfferKind {
    match kind {
        OfferKind::Replenishment => pb::OfferKind::Replenishment,
        OfferKind::WinBack => pb::OfferKind::WinBack,
        OfferKind::CartAbandon => pb::OfferKind::CartAbandon,
        OfferKind::ZeroPartyThanks => pb::OfferKind::ZeroPartyThanks,
        OfferKind::StoreEvent => pb::OfferKind::StoreEvent,
    }
}

fn channel_from(raw: i32) -> Option<Channel> {
    match pb::MessageChannel::try_from(raw).ok()? {
        pb::MessageChannel::InApp => Some(Channel::InApp),
        pb::MessageChannel::Email => Some(Channel::Email),
        pb::MessageChannel::Sms => Some(Channel::Sms),
        pb::MessageChannel::Push => Some(Channel::Push),
        pb::MessageChannel::Unspecified => None,
    }
}

fn channel_to(channel: Channel) -> pb::MessageChannel {
    match channel {
        Channel::InApp => pb::MessageChannel::InApp,
        Channel::Email => pb::MessageChannel::Email,
        Channel::Sms => pb::MessageChannel::Sms,
        Channel::Push => pb::MessageChannel::Push,
    }
}

/// A channel a message can go out on (not in-app).
fn message_channel(v: &mut Violations, field: &str, raw: i32) -> Option<Channel> {
    match channel_from(raw) {
        Some(Channel::InApp) | None => {
            v.add(field, "must be EMAIL, SMS or PUSH");
            None
        }
        channel => channel,
    }
}

fn state_to(state: OfferState) -> pb::OfferState {
    match state {
        OfferState::Issued => pb::OfferState::Issued,
        OfferState::Seen => pb::OfferState::Seen,
        OfferState::Redeemed => pb::OfferState::Redeemed,
        OfferState::Expired => pb::OfferState::Expired,
    }
}

fn offer_to_proto(offer: Offer) -> pb::Offer {
    let Offer {
        offer_id,
        customer_id,
        rule_id,
        kind,
        state,
        title,
        reason,
        data_categories,
        discount_bp,
        item_ids,
        channel,
        campaign_id,
        start,
        end,
    } = offer;
    pb::Offer {
        offer_id,
        customer_id,
        rule_id,
        kind: kind_to(kind).into(),
        state: state_to(state).into(),
        title,
        reason,
        data_categories: data_categories
            .iter()
            .filter_map(|c| attune_kit::types::DataCategory::from_stored(c))
            .map(|c| c.to_proto().into())
            .collect(),
        discount_basis_points: discount_bp,
        item_ids,
        channel: channel_to(channel).into(),
        campaign_id,
        start_time: Some(time::to_proto(start)),
        end_time: Some(time::to_proto(end)),
    }
}

fn rule_to_proto(rule: OfferRule) -> pb::OfferRule {
    let OfferRule {
        rule_id,
        kind,
        active,
        title,
        discount_bp,
        validity,
        channel,
        campaign_id,
        campaign_budget,
        inactive_days,
        cart_idle_hours,
        recent_days,
        due_within,
        store_id,
        min_orders,
    } = rule;
    pb::OfferRule {
        rule_id,
        kind: kind_to(kind).into(),
        active,
        title,
        discount_basis_points: discount_bp,
        validity: Some(convert::to_duration(validity)),
        channel: channel_to(channel).into(),
        campaign_id,
        campaign_budget,
        inactive_days,
        cart_idle_hours,
        recent_days,
        due_within: (!due_within.is_zero()).then(|| convert::to_duration(due_within)),
        store_id,
        min_orders,
    }
}

fn parse_rule(v: &mut Violations, rule: Option<pb::OfferRule>) -> Option<OfferRule> {
    let Some(rule) = rule else {
        v.add("rule", "is required");
        return None;
    };
    let pb::OfferRule {
        rule_id,
        kind,
        active,
        title,
        discount_basis_points,
        validity,
        channel,
        campaign_id,
        campaign_budget,
        inactive_days,
        cart_idle_hours,
        recent_days,
        due_within,
        store_id,
        min_orders,
    } = rule;
    convert::code(v, "rule.rule_id", &rule_id);
    let kind = kind_from(kind);
    if kind.is_none() {
        v.add("rule.kind", "is required");
    }
    convert::required_text(v, "rule.title", &title, 200);
    if !(1..=10_000).contains(&discount_basis_points) {
        v.add("rule.discount_basis_points", "must be 1 to 10000");
    }
    let validity = convert::duration(
        v,
        "rule.validity",
        validity,
        Duration::hours(1),
        Duration::days(366),
    );
    let channel = channel_from(channel);
    if channel.is_none() {
        v.add("rule.channel", "is required");
    }
    convert::required_text(v, "rule.campaign_id", &campaign_id, 64);
    if campaign_budget < 0 {
        v.add("rule.campaign_budget", "must not be negative");
    }
    let mut due = Some(Duration::zero());
    match kind {
        Some(OfferKind::WinBack) if !(1..=3650).contains(&inactive_days) => {
            v.add("rule.inactive_days", "must be 1 to 3650")
        }
        Some(OfferKind::CartAbandon) if !(1..=720).contains(&cart_idle_hours) => {
            v.add("rule.cart_idle_hours", "must be 1 to 720")
        }
        Some(OfferKind::ZeroPartyThanks) if !(1..=365).contains(&recent_days) => {
            v.add("rule.recent_days", "must be 1 to 365")
        }
        Some(OfferKind::StoreEvent) => {
            convert::required_text(v, "rule.store_id", &store_id, 64);
            if min_orders < 1 {
                v.add("rule.min_orders", "must be at least 1");
            }
        }
        Some(OfferKind::Replenishment) => {
            due = convert::duration(
                v,
                "rule.due_within",
                due_within,
                Duration::hours(1),
                Duration::days(90),
            );
        }
        _ => {}
    }
    Some(OfferRule {
        rule_id,
        kind: kind?,
        active,
        title,
        discount_bp: discount_basis_points,
        validity: validity?,
        channel: channel?,
        campaign_id,
        campaign_budget,
        inactive_days,
        cart_idle_hours,
        recent_days,
        due_within: due?,
        store_id,
        min_orders,
    })
}

fn message(customer: &str, channel: Channel, message: NextBest) -> pb::Message {
    let NextBest {
        message_id,
        offer,
        items,
        items_skipped,
    } = message;
    let reason = match (&offer, items.first()) {
        (Some(offer), _) => format!("{}; not sent to you recently", offer.reason),
        (None, Some(item)) => format!(
            "Items picked for you ({}); not sent to you recently",
            item.reasons.first().map_or("recommended", String::as_str)
        ),
        (None, None) => String::new(),
    };
    pb::Message {
        customer_id: customer.to_owned(),
        channel: channel_to(channel).into(),
        reason,
        offer: offer.map(offer_to_proto),
        recommended_items: items
            .into_iter()
            .map(|item| pb::MessageItem {
                item_id: item.item_id,
                title: item.title,
                reasons: item.reasons,
                data_categories: item.data_categories,
            })
            .collect(),
        message_id,
        items_status: if items_skipped {
            pb::ItemsStatus::Skipped
        } else {
            pb::ItemsStatus::Answered
        }
        .into(),
    }
}

#[tonic::async_trait]
impl OfferService for OfferApi {
    async fn put_offer_rule(
        &self,
        request: Request<pb::PutOfferRuleRequest>,
    ) -> Answer<pb::PutOfferRuleResponse> {
        let pb::PutOfferRuleRequest { rule, request_id } = request.into_inner();
        let mut v = Violations::default();
        let rule = parse_rule(&mut v, rule);
        let id = convert::request_id(&mut v, "request_id", &request_id);
        v.finish()?;
        let rule = self
            .loyalty
            .put_offer_rule(checked(rule), checked(id).as_ref())
            .await?;
        Ok(Response::new(pb::PutOfferRuleResponse {
            rule: Some(rule_to_proto(rule)),
        }))
    }

    async fn list_offer_rules(
        &self,
        request: Request<pb::ListOfferRulesRequest>,
    ) -> Answer<pb::ListOfferRulesResponse> {
        let pb::ListOfferRulesRequest {} = request.into_inner();
        let rules = self.loyalty.offer_rules().await?;
        Ok(Response::new(pb::ListOfferRulesResponse {
            rules: rules.into_iter().map(rule_to_proto).collect(),
        }))
    }

    async fn generate_offers(
        &self,
        request: Request<pb::GenerateOffersRequest>,
    ) -> Answer<pb::GenerateOffersResponse> {
        let pb::GenerateOffersRequest {
            customer_id,
            request_id,
        } = request.into_inner();
        let mut v = Violations::default();
        let customer = convert::customer(&mut v, "customer_id", &customer_id);
        let id = convert::request_id(&mut v, "request_id", &request_id);
        v.finish()?;
        let generated = self
            .loyalty
            .generate_offers(checked(customer).as_ref(), checked(id).as_ref())
            .await?;
        Ok(Response::new(pb::GenerateOffersResponse {
            issued: generated.issued.into_iter().map(offer_to_proto).collect(),
            skipped: generated
                .skipped
                .into_iter()
                .map(|(rule_id, reason, detail)| pb::SkippedRule {
                    rule_id,
                    reason: match reason {
                        Skip::NoConsent => pb::SkipReason::NoConsent,
                        Skip::NotEligible => pb::SkipReason::NotEligible,
                        Skip::AlreadyOffered => pb::SkipReason::AlreadyOffered,
                        Skip::CustomerCap => pb::SkipReason::CustomerCap,
                        Skip::BudgetSpent => pb::SkipReason::BudgetSpent,
                        Skip::SourceUnavailable => pb::SkipReason::SourceUnavailable,
                    }
                    .into(),
                    detail,
                })
                .collect(),
        }))
    }

    async fn list_offers(
        &self,
        request: Request<pb::ListOffersRequest>,
    ) -> Answer<pb::ListOffersResponse> {
        let pb::ListOffersRequest {
            customer_id,
            page_size: size,
            page_token,
        } = request.into_inner();
        let mut v = Violations::default();
        let customer = convert::customer(&mut v, "customer_id", &customer_id);
        let size = v.check_field(page_size("page_size", size, 50, 500));
        let before = decode_cursor(&mut v, "page_token", &page_token, |c| {
            let (at, id) = c.split_once(':')?;
            Some((at.parse::<i64>().ok()?, id.to_owned()))
        });
        v.finish()?;
        let size = checked(size);
        let rows = self
            .loyalty
            .offers(checked(customer).as_ref(), before, size + 1)
            .await?;
        let (rows, next_page_token) =
            attune_kit::pagination::next_page(rows, size, |(at, o)| format!("{at}:{}", o.offer_id));
        Ok(Response::new(pb::ListOffersResponse {
            offers: rows.into_iter().map(|(_, o)| offer_to_proto(o)).collect(),
            next_page_token,
        }))
    }

    async fn update_offer_state(
        &self,
        request: Request<pb::UpdateOfferStateRequest>,
    ) -> Answer<pb::UpdateOfferStateResponse> {
        let pb::UpdateOfferStateRequest {
            customer_id,
            offer_id,
            state,
            request_id,
        } = request.into_inner();
        let mut v = Violations::default();
        let customer = convert::customer(&mut v, "customer_id", &customer_id);
        convert::required_text(&mut v, "offer_id", &offer_id, 64);
        let to = match pb::OfferState::try_from(state) {
            Ok(pb::OfferState::Seen) => Some(OfferState::Seen),
            Ok(pb::OfferState::Redeemed) => Some(OfferState::Redeemed),
            _ => {
                v.add("state", "must be SEEN or REDEEMED");
                None
            }
        };
        let id = convert::request_id(&mut v, "request_id", &request_id);
        v.finish()?;
        let offer = self
            .loyalty
            .update_offer_state(
                checked(customer).as_ref(),
                &offer_id,
                checked(to),
                checked(id).as_ref(),
            )
            .await?;
        Ok(Response::new(pb::UpdateOfferStateResponse {
            offer: Some(offer_to_proto(offer)),
        }))
    }

    async fn get_next_best_message(
        &self,
        request: Request<pb::GetNextBestMessageRequest>,
    ) -> Answer<pb::GetNextBestMessageResponse> {
        let pb::GetNextBestMessageRequest {
            customer_id,
            channel,
        } = request.into_inner();
        let mut v = Violations::default();
        let customer = convert::customer(&mut v, "customer_id", &customer_id);
        let channel = message_channel(&mut v, "channel", channel);
        v.finish()?;
        let (customer, channel) = (checked(customer), checked(channel));
        let answer = match self
            .loyalty
            .next_best_message(customer.as_ref(), channel)
            .await?
        {
            Ok(next) => pb::GetNextBestMessageResponse {
                message: Some(message(customer.as_ref(), channel, next)),
                no_message_reason: pb::NoMessageReason::Unspecified.into(),
            },
            Err(reason) => pb::GetNextBestMessageResponse {
                message: None,
                no_message_reason: match reason {
                    NoMessage::NoConsent => pb::NoMessageReason::NoConsent,
                    NoMessage::FrequencyCap => pb::NoMessageReason::FrequencyCap,
                    NoMessage::QuietHours => pb::NoMessageReason::QuietHours,
                    NoMessage::NothingRelevant => pb::NoMessageReason::NothingRelevant,
                    NoMessage::ItemsUnavailable => pb::NoMessageReason::ItemsUnavailable,
                }
                .into(),
            },
        };
        Ok(Response::new(answer))
    }

    async fn list_due_messages(
        &self,
        request: Request<pb::ListDueMessagesRequest>,
    ) -> Answer<pb::ListDueMessagesResponse> {
        let deadline = attune_kit::peer::caller_deadline(request.metadata());
        let pb::ListDueMessagesRequest {
            channel,
            page_size: size,
            page_token,
        } = request.into_inner();
        let mut v = Violations::default();
        let channel = message_channel(&mut v, "channel", channel);
        let size = v.check_field(page_size("page_size", size, 100, 1000));
        let after = decode_cursor(&mut v, "page_token", &page_token, |c| Some(c.to_owned()));
        v.finish()?;
        let (channel, size) = (checked(channel), checked(size));
        let page = self
            .loyalty
            .due_messages(channel, &after.unwrap_or_default(), size, deadline)
            .await?;
        Ok(Response::new(pb::ListDueMessagesResponse {
            messages: page
                .messages
                .into_iter()
                .map(|(customer, next)| message(&customer, channel, next))
                .collect(),
            next_page_token: page
                .next_after
                .map(|after| encode_page_token(&after))
                .unwrap_or_default(),
            items_skipped_count: i32::try_from(page.items_skipped).unwrap_or(i32::MAX),
        }))
    }

    async fn report_sent_messages(
        &self,
        request: Request<pb::ReportSentMessagesRequest>,
    ) -> Answer<pb::ReportSentMessagesResponse> {
        let pb::ReportSentMessagesRequest {
            channel,
            messages,
            request_id,
        } = request.into_inner();
        let mut v = Violations::default();
        let channel = message_channel(&mut v, "channel", channel);
        if messages.is_empty() || messages.len() > 1000 {
            v.add("messages", "must have 1 to 1000 messages");
        }
        let latest = self.loyalty.clock.now() + Duration::minutes(5);
        let sent: Vec<_> = messages
            .into_iter()
            .enumerate()
            .filter_map(|(i, m)| {
                let pb::SentMessage {
                    customer_id,
                    offer_id,
                    send_time,
                } = m;
                let customer =
                    convert::customer(&mut v, &format!("messages[{i}].customer_id"), &customer_id);
                convert::required_text(&mut v, &format!("messages[{i}].offer_id"), &offer_id, 64);
                let at = v.check(
                    format!("messages[{i}].send_time"),
                    time::from_proto_required(send_time),
                );
                if at.is_some_and(|at| at > latest) {
                    v.add(
                        format!("messages[{i}].send_time"),
                        "must not be in the future",
                    );
                }
                Some((customer?.into_string(), offer_id, at?))
            })
            .collect();
        let id = convert::request_id(&mut v, "request_id", &request_id);
        v.finish()?;
        let recorded = self
            .loyalty
            .report_sent(checked(channel), sent, checked(id).as_ref())
            .await?;
        Ok(Response::new(pb::ReportSentMessagesResponse {
            recorded_count: recorded,
        }))
    }
}
