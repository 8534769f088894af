//! Events for end-to-end tests: builders that make valid events of each kind
//! (a test changes what it cares about), and the calls tests make over and over.

use attune_proto::common::v1 as common_pb;
use attune_proto::profile::v1 as pb;
use chrono::{DateTime, Utc};
use tokio_stream::StreamExt;

use crate::TestApp;
use crate::consent_requests::timestamp;

/// `minor` cents of euro.
pub fn eur(minor: i64) -> common_pb::Money {
    common_pb::Money {
        amount_minor: minor,
        currency_code: "EUR".into(),
    }
}

/// An item: `quantity` units at `price` (if any), with its categories and brand.
pub fn item(
    item_id: &str,
    quantity: i32,
    price: Option<common_pb::Money>,
    categories: &[&str],
    brand: &str,
) -> pb::EventItem {
    pb::EventItem {
        item_id: item_id.into(),
        quantity,
        unit_price: price,
        category_path: categories.iter().map(|c| (*c).to_owned()).collect(),
        brand: brand.into(),
    }
}

/// A bare event of `kind` for `customer` at `at` on the web; valid for kinds
/// that need nothing more (CHECKOUT_STARTED), a start for the others.
pub fn event(kind: pb::EventKind, event_id: &str, customer: &str, at: DateTime<Utc>) -> pb::Event {
    pb::Event {
        event_id: event_id.into(),
        customer_id: customer.into(),
        kind: kind.into(),
        occur_time: Some(timestamp(at)),
        channel: common_pb::Channel::Web.into(),
        ..Default::default()
    }
}

/// A product view of `item_id`.
pub fn view(event_id: &str, customer: &str, at: DateTime<Utc>, item_id: &str) -> pb::Event {
    pb::Event {
        items: vec![item(item_id, 1, None, &["shoes"], "acme")],
        ..event(pb::EventKind::View, event_id, customer, at)
    }
}

/// A purchase of `items` paying `amount`.
pub fn purchase(
    event_id: &str,
    customer: &str,
    at: DateTime<Utc>,
    items: Vec<pb::EventItem>,
    amount: common_pb::Money,
) -> pb::Event {
    pb::Event {
        order_id: format!("order-{event_id}"),
        items,
        amount: Some(amount),
        ..event(pb::EventKind::Purchase, event_id, customer, at)
    }
}

/// A cart change (`kind` ADD_TO_CART or REMOVE_FROM_CART) of `items`.
pub fn cart(
    kind: pb::EventKind,
    event_id: &str,
    customer: &str,
    at: DateTime<Utc>,
    items: Vec<pb::EventItem>,
) -> pb::Event {
    pb::Event {
        items,
        ..event(kind, event_id, customer, at)
    }
}

/// The status of each result, in order.
pub fn statuses(results: &[pb::EventResult]) -> Vec<pb::IngestStatus> {
    results
        .iter()
        .map(|r| pb::IngestStatus::try_from(r.status).expect("a known status"))
        .collect()
}

impl TestApp {
    /// Ingests `events` in one batch, which must be answered.
    pub async fn ingest(&self, events: Vec<pb::Event>) -> pb::IngestEventsResponse {
        self.events()
            .ingest_events(pb::IngestEventsRequest {
                events,
                request_id: String::new(),
            })
            .await
            .expect("the batch is answered")
            .into_inner()
    }

    /// Every feed entry after `after_sequence` up to the head.
    pub async fn feed_to_head(&self, after_sequence: i64) -> Vec<pb::FeedEntry> {
        let mut stream = self
            .events()
            .stream_events(pb::StreamEventsRequest {
                after_sequence,
                event_kinds: vec![],
                max_batch_size: 1000,
                stop_at_head: true,
            })
            .await
            .expect("the feed opens")
            .into_inner();
        let mut entries = Vec::new();
        while let Some(response) = stream.next().await {
            entries.extend(response.expect("the feed streams").entries);
        }
        entries
    }

    /// A customer's traits now.
    pub async fn traits(&self, customer: &str) -> pb::Traits {
        self.events()
            .get_traits(pb::GetTraitsRequest {
                customer_id: customer.into(),
            })
            .await
            .expect("traits are read")
            .into_inner()
            .traits
            .expect("traits are set")
    }
}
