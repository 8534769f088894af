//! The next-best message, for one customer and for a CRM's whole list.
//!
//! A customer's message on a channel is the newest live offer for the channel
//! not sent in `repeat_after`, with recommendation's items alongside, or those
//! items alone when no offer is due; none when the customer has not consented
//! to the channel's marketing, reached the channel's weekly cap, or is in quiet
//! hours in their time zone. [`Loyalty::next_best_message`] answers for one
//! customer and [`Loyalty::due_messages`] for a page of customers through the
//! same [`Loyalty::evaluate`], so the list says exactly what the single call
//! would.
//!
//! Recommendation's items are optional: a customer whose items could not be
//! asked (recommendation down, failing or late) gets the offer alone, marked
//! [`NextBest::items_skipped`], or no message with
//! [`NoMessage::ItemsUnavailable`]; items are never made up. A page of the
//! list bounds what it asks recommendation ([`PAGE_LOOKUPS`] customers, about
//! [`PAGE_BUDGET`] of time) and stops asking once recommendation fails in it.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::Duration as StdDuration;

use attune_kit::ApiError;
use attune_kit::db::micros::to_micros;
use attune_kit::peer::{Within, within};
use attune_kit::telemetry::TraceContextInterceptor;
use attune_proto::profile::v1 as profile_pb;
use attune_proto::profile::v1::profile_service_client::ProfileServiceClient;
use attune_proto::recommendation::v1 as rec_pb;
use attune_proto::recommendation::v1::recommendation_service_client::RecommendationServiceClient;
use chrono::{DateTime, Duration, Utc};
use sea_orm::FromQueryResult;
use serde_json::json;
use tokio::time::Instant;

use crate::app::Loyalty;
use crate::domain::offers::in_quiet_hours;
use crate::offers::{Body, Channel, Offer, offer_of};
use crate::store::{all, exec, number};

/// At most this many recommended items in a message.
const MESSAGE_ITEMS: i32 = 3;

/// How long a message waits for the customer's time zone before it takes UTC.
const PROFILE_BUDGET: StdDuration = StdDuration::from_millis(500);

/// At most this many customers' items asked of recommendation per page.
pub const PAGE_LOOKUPS: u32 = 100;

/// A page starts no further customers after this long (nor past the caller's
/// deadline less [`PAGE_MARGIN`]); what it started finishes within
/// `loyalty.message_items_budget` and [`PROFILE_BUDGET`].
pub const PAGE_BUDGET: StdDuration = StdDuration::from_secs(2);

/// What a page keeps of the caller's deadline to finish the customers it
/// started and answer (with the default 500 ms items budget).
const PAGE_MARGIN: StdDuration = StdDuration::from_millis(1200);

/// Customers of a page evaluated at once.
const PAGE_CONCURRENCY: usize = 10;

/// An item recommendation suggests for the customer, carried by a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SuggestedItem {
    pub item_id: String,
    pub title: String,
    /// Why, for the customer, the primary reason first.
    pub reasons: Vec<String>,
    /// `attune.common.v1.DataCategory` values.
    pub data_categories: Vec<i32>,
}

/// The message worth sending now.
#[derive(Debug, Clone)]
pub struct NextBest {
    /// What the sending tool reports back (the offer's id when there is one).
    pub message_id: String,
    pub offer: Option<Offer>,
    pub items: Vec<SuggestedItem>,
    /// Recommendation could not be asked: `items` is empty, not its answer.
    pub items_skipped: bool,
}

/// Why no message is due.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoMessage {
    NoConsent,
    FrequencyCap,
    QuietHours,
    NothingRelevant,
    /// No offer is due and recommendation could not be asked for items.
    ItemsUnavailable,
}

/// One customer's answer.
pub type Answer = Result<NextBest, NoMessage>;

/// One page of [`Loyalty::due_messages`].
#[derive(Debug)]
pub struct DuePage {
    /// The messages due, by customer id.
    pub messages: Vec<(String, NextBest)>,
    /// Customers scanned whose items were skipped.
    pub items_skipped: u32,
    /// The last customer scanned, when more may follow.
    pub next_after: Option<String>,
}

/// What recommendation said about a customer's items.
enum Items {
    Answered(Vec<SuggestedItem>),
    Skipped,
}

/// Asks recommendation for items on behalf of one call or one page: once it
/// fails or is late, the rest of the page skips it rather than wait again.
#[derive(Debug, Default)]
struct ItemLookups {
    failed: AtomicBool,
    asked: AtomicU32,
}

impl ItemLookups {
    fn asked(&self) -> u32 {
        self.asked.load(Ordering::Relaxed)
    }

    async fn items(&self, loyalty: &Loyalty, customer: &str) -> Items {
        let Some(peer) = &loyalty.recommendation else {
            return Items::Skipped;
        };
        if self.failed.load(Ordering::Relaxed) {
            return Items::Skipped;
        }
        self.asked.fetch_add(1, Ordering::Relaxed);
        let mut client =
            RecommendationServiceClient::with_interceptor(peer.clone(), TraceContextInterceptor);
        let mut request = tonic::Request::new(rec_pb::GetRecommendationsRequest {
            customer_id: customer.to_owned(),
            placement: rec_pb::Placement::Email.into(),
            context: None,
            filter: Some(rec_pb::RecommendationFilter {
                in_stock_only: true,
                ..Default::default()
            }),
            max_results: MESSAGE_ITEMS,
            page_token: String::new(),
        });
        let budget = loyalty.settings.message_items_budget;
        request.set_timeout(budget);
        match within(budget, client.get_recommendations(request)).await {
            Within::Answered(answer) => Items::Answered(suggested(answer)),
            // Recommendation's own refusal is an answer: nothing to suggest.
            Within::Refused(_) => Items::Answered(Vec::new()),
            Within::Unavailable(_) | Within::TimedOut => {
                self.failed.store(true, Ordering::Relaxed);
                Items::Skipped
            }
        }
    }
}

fn suggested(answer: rec_pb::GetRecommendationsResponse) -> Vec<SuggestedItem> {
    answer
        .items
        .into_iter()
        .map(|item| SuggestedItem {
            title: item.item.map(|i| i.title).unwrap_or_default(),
            reasons: item
                .reason
                .into_iter()
                .chain(item.further_reasons)
                .map(|r| r.text)
                .filter(|text| !text.is_empty())
                .collect(),
            data_categories: item.data_categories,
            item_id: item.item_id,
        })
        .collect()
}

impl Loyalty {
    /// The next-best message for `customer` on `channel` now.
    pub async fn next_best_message(
        &self,
        customer: &str,
        channel: Channel,
    ) -> Result<Answer, ApiError> {
        self.evaluate(customer, channel, self.clock.now(), &ItemLookups::default())
            .await
    }

    /// A page of the customers due a message on `channel`: those scanned after
    /// `after`, at most `size`, stopping early once the page asked
    /// recommendation for [`PAGE_LOOKUPS`] customers or ran out of time
    /// (`deadline`: the caller's, if it set one).
    pub async fn due_messages(
        &self,
        channel: Channel,
        after: &str,
        size: u32,
        deadline: Option<Instant>,
    ) -> Result<DuePage, ApiError> {
        let now = self.clock.now();
        let page_budget = attune_kit::peer::budget(PAGE_BUDGET, deadline, PAGE_MARGIN);
        let started = Instant::now();
        let customers = self.candidates(channel, after, size + 1, now).await?;
        let mut more = customers.len() > size as usize;
        let scanned = &customers[..customers.len().min(size as usize)];
        let lookups = ItemLookups::default();
        let mut page = DuePage {
            messages: Vec::new(),
            items_skipped: 0,
            next_after: None,
        };
        let mut last = None;
        for (i, chunk) in scanned.chunks(PAGE_CONCURRENCY).enumerate() {
            // The first customers always go, so every page moves on.
            let spent = lookups.asked() + chunk.len() as u32 > PAGE_LOOKUPS
                || started.elapsed() >= page_budget;
            if i > 0 && spent {
                more = true;
                break;
            }
            let answers = futures::future::join_all(
                chunk
                    .iter()
                    .map(|customer| self.evaluate(customer, channel, now, &lookups)),
            )
            .await;
            for (customer, answer) in chunk.iter().zip(answers) {
                match answer? {
                    Ok(message) => {
                        page.items_skipped += u32::from(message.items_skipped);
                        page.messages.push((customer.clone(), message));
                    }
                    Err(NoMessage::ItemsUnavailable) => page.items_skipped += 1,
                    Err(_) => {}
                }
                last = Some(customer);
            }
        }
        if more {
            page.next_after = last.cloned();
        }
        Ok(page)
    }

    /// `customer`'s message on `channel` at `now`: consent, the weekly cap,
    /// the live offer, quiet hours, then items (so no one in quiet hours costs
    /// recommendation a call) and the repeat rule for items alone.
    async fn evaluate(
        &self,
        customer: &str,
        channel: Channel,
        now: DateTime<Utc>,
        lookups: &ItemLookups,
    ) -> Result<Answer, ApiError> {
        let Some(purpose) = channel.purpose() else {
            return Ok(Err(NoMessage::NothingRelevant));
        };
        if !self.checker.is_granted(customer, purpose).await {
            return Ok(Err(NoMessage::NoConsent));
        }
        let sent = number(
            &self.db,
            "SELECT CAST(COUNT(*) AS BIGINT) AS n FROM loyalty_messages WHERE customer_id = ? AND channel = ? AND send_time > ?",
            vec![customer.into(), channel.as_str().into(), to_micros(now - Duration::days(7)).into()],
        )
        .await?;
        if sent >= i64::from(self.settings.messages_per_week) {
            return Ok(Err(NoMessage::FrequencyCap));
        }
        let repeat = Duration::from_std(self.settings.repeat_after).unwrap_or(Duration::days(30));
        let rows: Vec<Body> = all(
            &self.db,
            "SELECT o.body FROM loyalty_offers o WHERE o.customer_id = ? AND o.channel = ? \
             AND o.state IN ('issued', 'seen') AND o.end_time > ? AND NOT EXISTS (SELECT 1 FROM loyalty_messages m \
             WHERE m.customer_id = o.customer_id AND m.offer_id = o.offer_id AND m.send_time > ?) \
             ORDER BY o.issue_time DESC, o.offer_id DESC LIMIT 1",
            vec![customer.into(), channel.as_str().into(), to_micros(now).into(), to_micros(now - repeat).into()],
        )
        .await?;
        let offer = rows
            .into_iter()
            .next()
            .map(|row| offer_of(&row.body, now))
            .transpose()?;
        if self.quiet_now(customer, now).await {
            return Ok(Err(NoMessage::QuietHours));
        }
        let items = lookups.items(self, customer).await;
        Ok(match (offer, items) {
            (Some(offer), items) => {
                let (mut items, items_skipped) = match items {
                    Items::Answered(items) => (items, false),
                    Items::Skipped => (Vec::new(), true),
                };
                items.retain(|item| !offer.item_ids.contains(&item.item_id));
                Ok(NextBest {
                    message_id: offer.offer_id.clone(),
                    offer: Some(offer),
                    items,
                    items_skipped,
                })
            }
            (None, Items::Skipped) => Err(NoMessage::ItemsUnavailable),
            (None, Items::Answered(items)) if items.is_empty() => Err(NoMessage::NothingRelevant),
            (None, Items::Answered(items)) => {
                let message_id = self.items_message_id(&items);
                let recently = number(
                    &self.db,
                    "SELECT CAST(COUNT(*) AS BIGINT) AS n FROM loyalty_messages WHERE customer_id = ? AND channel = ? \
                     AND offer_id = ? AND send_time > ?",
                    vec![customer.into(), channel.as_str().into(), message_id.clone().into(), to_micros(now - repeat).into()],
                )
                .await?;
                if recently > 0 {
                    Err(NoMessage::NothingRelevant)
                } else {
                    Ok(NextBest {
                        message_id,
                        offer: None,
                        items,
                        items_skipped: false,
                    })
                }
            }
        })
    }

    /// The id of a message of `items` alone: the same items, the same id.
    fn items_message_id(&self, items: &[SuggestedItem]) -> String {
        let mut ids: Vec<&str> = items.iter().map(|i| i.item_id.as_str()).collect();
        ids.sort_unstable();
        let digest = self.key.digest("loyalty-message-items", &ids.join("\n"));
        format!("items-{}", &digest[..32])
    }

    /// Whether it is quiet hours for `customer` (their zero-party time zone; UTC
    /// when they gave none or profile cannot say within [`PROFILE_BUDGET`]).
    async fn quiet_now(&self, customer: &str, now: DateTime<Utc>) -> bool {
        let (start, end) = (
            self.settings.quiet_hours_start,
            self.settings.quiet_hours_end,
        );
        if start == end {
            // No quiet hours: the time zone cannot matter.
            return false;
        }
        let mut offset = 0;
        if let Some(peer) = &self.profile {
            let mut client =
                ProfileServiceClient::with_interceptor(peer.clone(), TraceContextInterceptor);
            let mut request = tonic::Request::new(profile_pb::GetZeroPartyDataRequest {
                customer_id: customer.to_owned(),
            });
            request.set_timeout(PROFILE_BUDGET);
            if let Some(answer) = within(PROFILE_BUDGET, client.get_zero_party_data(request))
                .await
                .answered()
            {
                let zone = answer.data.map(|d| d.time_zone).unwrap_or_default();
                offset = crate::zone::offset(&zone, now).unwrap_or(0);
            }
        }
        in_quiet_hours(now, offset, start, end)
    }

    /// Customers after `after` that may be due a message on `channel`, at most
    /// `limit`, by customer id: loyalty's members (items alone may be due them)
    /// and anyone holding a live offer for the channel.
    async fn candidates(
        &self,
        channel: Channel,
        after: &str,
        limit: u32,
        now: DateTime<Utc>,
    ) -> Result<Vec<String>, ApiError> {
        #[derive(Debug, FromQueryResult)]
        struct Row {
            customer_id: String,
        }
        let rows: Vec<Row> = all(
            &self.db,
            "SELECT customer_id FROM (SELECT customer_id FROM loyalty_accounts WHERE customer_id > ? \
             UNION SELECT customer_id FROM loyalty_offers WHERE channel = ? AND state IN ('issued', 'seen') \
             AND end_time > ? AND customer_id > ?) c ORDER BY customer_id LIMIT ?",
            vec![
                after.into(),
                channel.as_str().into(),
                to_micros(now).into(),
                after.into(),
                i64::from(limit).into(),
            ],
        )
        .await?;
        Ok(rows.into_iter().map(|r| r.customer_id).collect())
    }

    /// Records sent messages.
    pub async fn report_sent(
        &self,
        channel: Channel,
        sent: Vec<(String, String, DateTime<Utc>)>,
        request_id: &str,
    ) -> Result<i32, ApiError> {
        let content = json!({ "channel": channel, "sent": sent });
        self.idempotent("report_sent_messages", request_id, &content, async |txn| {
            for (customer, offer, at) in &sent {
                exec(
                    txn,
                    "INSERT INTO loyalty_messages (customer_id, channel, offer_id, send_time) VALUES (?, ?, ?, ?)",
                    vec![customer.clone().into(), channel.as_str().into(), offer.clone().into(), to_micros(*at).into()],
                )
                .await?;
            }
            Ok(i32::try_from(sent.len()).unwrap_or(i32::MAX))
        })
        .await
    }
}
