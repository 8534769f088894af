//! Retargeting audiences, computed from session state at the time asked:
//! abandoned carts, viewed but not bought, inactive. A customer is a member
//! only with the audience's consent purpose granted.

use std::collections::HashSet;

use attune_kit::ApiError;
use attune_kit::error::{Violations, checked};
use attune_kit::pagination::{decode_cursor, encode_page_token, page_size};
use attune_kit::types::time;
use attune_proto::common::v1 as common_pb;
use attune_proto::recommendation::v1 as pb;

use crate::app::Recommendation;
use crate::catalogue;
use crate::domain::Session;
use crate::model::Task;
use crate::store;

const HOUR: i64 = 3600 * 1_000_000;
const DAY: i64 = 24 * HOUR;
/// Sessions read per query while scanning.
const SCAN: u64 = 500;

/// One configured audience.
struct Audience {
    id: &'static str,
    kind: pb::AudienceKind,
    name: &'static str,
    description: &'static str,
    min_idle: i64,
    max_idle: i64,
    purpose: &'static str,
}

const AUDIENCES: [Audience; 3] = [
    Audience {
        id: "abandoned_cart_24h",
        kind: pb::AudienceKind::AbandonedCart,
        name: "Abandoned cart",
        description: "Cart idle 24 hours to 7 days, no purchase",
        min_idle: DAY,
        max_idle: 7 * DAY,
        purpose: "marketing_email",
    },
    Audience {
        id: "inactive_30d",
        kind: pb::AudienceKind::Inactive,
        name: "Inactive",
        description: "No activity for 30 days or more",
        min_idle: 30 * DAY,
        max_idle: 0,
        purpose: "marketing_email",
    },
    Audience {
        id: "viewed_not_bought_24h",
        kind: pb::AudienceKind::ViewedNotBought,
        name: "Viewed, not bought",
        description: "Viewed items 24 hours to 14 days ago without buying them",
        min_idle: DAY,
        max_idle: 14 * DAY,
        purpose: "marketing_email",
    },
];

fn duration(micros: i64) -> Option<prost_types::Duration> {
    (micros > 0).then_some(prost_types::Duration {
        seconds: micros / 1_000_000,
        nanos: 0,
    })
}

fn to_time(micros: i64) -> Option<prost_types::Timestamp> {
    chrono::DateTime::from_timestamp_micros(micros).map(time::to_proto)
}

/// When the qualifying activity of `session` happened for `audience`, if the
/// session qualifies at all.
fn activity(audience: &Audience, session: &Session) -> Option<i64> {
    match audience.kind {
        pb::AudienceKind::AbandonedCart => (!session.cart.is_empty()).then_some(session.cart_time),
        pb::AudienceKind::ViewedNotBought => {
            let bought: HashSet<&String> = session.bought.iter().map(|(i, _)| i).collect();
            session
                .viewed
                .iter()
                .filter(|(item, _)| !bought.contains(item))
                .map(|(_, at)| *at)
                .max()
        }
        pb::AudienceKind::Inactive => (session.last_activity > 0).then_some(session.last_activity),
        pb::AudienceKind::Unspecified => None,
    }
}

fn qualifies(audience: &Audience, min_idle: i64, session: &Session, now: i64) -> Option<i64> {
    let at = activity(audience, session)?;
    let idle = now - at;
    (idle >= min_idle && (audience.max_idle == 0 || idle <= audience.max_idle.max(min_idle)))
        .then_some(at)
}

/// The members of `audience` among sessions after `after`, up to `limit`.
async fn scan(
    app: &Recommendation,
    audience: &Audience,
    min_idle: i64,
    after: &str,
    limit: usize,
) -> Result<Vec<(String, Session, i64)>, ApiError> {
    let now = app.clock.now().timestamp_micros();
    let mut members = Vec::new();
    let mut cursor = after.to_owned();
    loop {
        let page = store::sessions::page(&app.db, &cursor, SCAN).await?;
        let Some((last, _)) = page.last() else {
            return Ok(members);
        };
        cursor = last.clone();
        let full = page.len() as u64 == SCAN;
        for (customer, session) in page {
            let Some(at) = qualifies(audience, min_idle, &session, now) else {
                continue;
            };
            if !app.consent.is_granted(&customer, audience.purpose).await {
                continue;
            }
            members.push((customer, session, at));
            if members.len() == limit {
                return Ok(members);
            }
        }
        if !full {
            return Ok(members);
        }
    }
}

/// Lists the audiences with their sizes now.
pub async fn list(
    app: &Recommendation,
    request: pb::ListRetargetingAudiencesRequest,
) -> Result<pb::ListRetargetingAudiencesResponse, ApiError> {
    let pb::ListRetargetingAudiencesRequest {
        kind,
        page_size: raw_size,
        page_token,
    } = request;
    let mut v = Violations::default();
    let kind = v.check(
        "kind",
        pb::AudienceKind::try_from(kind).map_err(|_| "is not a known audience kind"),
    );
    let limit = v.check_field(page_size("page_size", raw_size, 50, 500));
    let after = decode_cursor(&mut v, "page_token", &page_token, |c| {
        AUDIENCES.iter().any(|a| a.id == c).then(|| c.to_owned())
    });
    v.finish()?;
    let (kind, limit) = (checked(kind), checked(limit) as usize);
    let now = app.clock.now().timestamp_micros();
    let chosen: Vec<&Audience> = AUDIENCES
        .iter()
        .filter(|a| kind == pb::AudienceKind::Unspecified || a.kind == kind)
        .filter(|a| after.as_deref().is_none_or(|after| a.id > after))
        .collect();
    let mut audiences = Vec::new();
    for audience in chosen.iter().take(limit) {
        let members = scan(app, audience, audience.min_idle, "", usize::MAX).await?;
        audiences.push(pb::RetargetingAudience {
            audience_id: audience.id.to_owned(),
            kind: audience.kind.into(),
            display_name: audience.name.to_owned(),
            description: audience.description.to_owned(),
            min_idle: duration(audience.min_idle),
            max_idle: duration(audience.max_idle),
            purpose_code: audience.purpose.to_owned(),
            member_count: i64::try_from(members.len()).unwrap_or(i64::MAX),
            compute_time: to_time(now),
        });
    }
    let next_page_token = if chosen.len() > limit {
        audiences
            .last()
            .map(|a| encode_page_token(&a.audience_id))
            .unwrap_or_default()
    } else {
        String::new()
    };
    Ok(pb::ListRetargetingAudiencesResponse {
        audiences,
        next_page_token,
    })
}

/// Lists one audience's members with the items to remind each of.
pub async fn members(
    app: &Recommendation,
    request: pb::ListAudienceMembersRequest,
) -> Result<pb::ListAudienceMembersResponse, ApiError> {
    let pb::ListAudienceMembersRequest {
        audience_id,
        max_items_per_member,
        language_code,
        page_size: raw_size,
        page_token,
        min_idle,
    } = request;
    let mut v = Violations::default();
    let items = v.check_field(page_size(
        "max_items_per_member",
        max_items_per_member,
        3,
        20,
    ));
    if language_code.len() > 35
        || !language_code
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
    {
        v.add("language_code", "must be a BCP 47 language tag");
    }
    let limit = v.check_field(page_size("page_size", raw_size, 100, 1000));
    let after = decode_cursor(&mut v, "page_token", &page_token, |c| Some(c.to_owned()));
    let min_idle = min_idle.and_then(|d| {
        let micros = d.seconds.saturating_mul(1_000_000) + i64::from(d.nanos / 1000);
        if d.seconds < 0 || d.nanos < 0 || micros > 400 * DAY {
            v.add("min_idle", "must be 0 to 400 days");
            return None;
        }
        Some(micros)
    });
    if audience_id.is_empty() || audience_id.len() > 64 {
        v.add("audience_id", "must be 1 to 64 characters");
    }
    v.finish()?;
    let (items, limit) = (checked(items) as usize, checked(limit) as usize);
    let audience = AUDIENCES
        .iter()
        .find(|a| a.id == audience_id)
        .ok_or_else(|| ApiError::NotFound(format!("no audience {audience_id}")))?;
    let min_idle = min_idle.unwrap_or(audience.min_idle);
    let found = scan(
        app,
        audience,
        min_idle,
        after.as_deref().unwrap_or_default(),
        limit + 1,
    )
    .await?;
    let more = found.len() > limit;
    let catalogue = app.catalogue.load();
    let snapshot = app.served.load();
    let now = app.clock.now().timestamp_micros();
    let mut members = Vec::new();
    for (customer, session, at) in found.into_iter().take(limit) {
        let remind =
            |kind: pb::ReasonKind, text: &str, ids: Vec<String>| -> Vec<pb::RecommendedItem> {
                ids.into_iter()
                    .filter_map(|id| catalogue.get(&id).cloned())
                    .filter(|item| catalogue::is_active(item) && catalogue::is_in_stock(item))
                    .take(items)
                    .enumerate()
                    .map(|(n, item)| pb::RecommendedItem {
                        item_id: item.item_id.clone(),
                        rank: i32::try_from(n + 1).unwrap_or(i32::MAX),
                        score: 1.0 / (1.0 + n as f64),
                        reason: Some(pb::Reason {
                            kind: kind.into(),
                            text: text.to_owned(),
                            ref_item_id: item.item_id.clone(),
                            ref_category_id: String::new(),
                        }),
                        further_reasons: Vec::new(),
                        data_categories: vec![common_pb::DataCategory::Browsing.into()],
                        item: Some((*item).clone()),
                    })
                    .collect()
            };
        let (reminded, cart_value) = match audience.kind {
            pb::AudienceKind::AbandonedCart => {
                let ids = session.cart.iter().map(|(i, _)| i.clone()).collect();
                (
                    remind(pb::ReasonKind::InCart, "Still in your cart", ids),
                    cart_value(&catalogue, &session),
                )
            }
            pb::AudienceKind::ViewedNotBought => {
                let bought: HashSet<&String> = session.bought.iter().map(|(i, _)| i).collect();
                let ids = session
                    .viewed
                    .iter()
                    .filter(|(i, _)| !bought.contains(i))
                    .map(|(i, _)| i.clone())
                    .collect();
                (
                    remind(
                        pb::ReasonKind::RecentlyViewed,
                        "You recently looked at this",
                        ids,
                    ),
                    None,
                )
            }
            _ if app
                .consent
                .is_granted(&customer, crate::answer::personal::PURPOSE)
                .await =>
            {
                (
                    picks(app, snapshot.as_deref(), &customer, &session, items, now),
                    None,
                )
            }
            _ => (Vec::new(), None),
        };
        members.push(pb::AudienceMember {
            join_time: to_time(at + min_idle),
            last_activity_time: to_time(at),
            cart_value,
            items: reminded,
            customer_id: customer,
        });
    }
    let next_page_token = if more {
        members
            .last()
            .map(|m| encode_page_token(&m.customer_id))
            .unwrap_or_default()
    } else {
        String::new()
    };
    Ok(pb::ListAudienceMembersResponse {
        members,
        next_page_token,
    })
}

/// The cart's value in the currency of its first priced item.
fn cart_value(catalogue: &catalogue::Catalogue, session: &Session) -> Option<common_pb::Money> {
    let mut total: Option<common_pb::Money> = None;
    for (id, units) in &session.cart {
        let Some(price) = catalogue.get(id).and_then(|i| i.price.clone()) else {
            continue;
        };
        let line = price.amount_minor.saturating_mul(i64::from(*units));
        match &mut total {
            None => {
                total = Some(common_pb::Money {
                    amount_minor: line,
                    currency_code: price.currency_code,
                });
            }
            Some(sum) if sum.currency_code == price.currency_code => {
                sum.amount_minor = sum.amount_minor.saturating_add(line);
            }
            Some(_) => {}
        }
    }
    total
}

/// Personal picks for an inactive customer (their history, under the
/// audience's purpose and personalization alike).
fn picks(
    app: &Recommendation,
    snapshot: Option<&crate::served::Snapshot>,
    customer: &str,
    session: &Session,
    n: usize,
    now: i64,
) -> Vec<pb::RecommendedItem> {
    let Some(snapshot) = snapshot else {
        return Vec::new();
    };
    let catalogue = app.catalogue.load();
    let user = app.served.user(snapshot, customer);
    let recent: Vec<(u32, f32)> = session
        .recent_items()
        .into_iter()
        .filter_map(|(id, w)| snapshot.item(id).map(|ix| (ix, w)))
        .collect();
    let exclude = |ix: u32| {
        !snapshot
            .item_id(ix)
            .and_then(|id| catalogue.get(id))
            .is_some_and(|item| catalogue::is_active(item) && catalogue::is_in_stock(item))
    };
    snapshot
        .models
        .recommend(user, &recent, Task::NextBasket, now, n, &exclude)
        .into_iter()
        .filter_map(|s| {
            let item = catalogue.get(snapshot.item_id(s.item)?)?.clone();
            Some((s, item))
        })
        .enumerate()
        .map(|(n, (s, item))| pb::RecommendedItem {
            item_id: item.item_id.clone(),
            rank: i32::try_from(n + 1).unwrap_or(i32::MAX),
            score: f64::from(s.score),
            reason: Some(pb::Reason {
                kind: pb::ReasonKind::PersonalTaste.into(),
                text: "Picked for you".to_owned(),
                ref_item_id: String::new(),
                ref_category_id: String::new(),
            }),
            further_reasons: Vec::new(),
            data_categories: vec![
                common_pb::DataCategory::Browsing.into(),
                common_pb::DataCategory::Purchases.into(),
            ],
            item: Some((*item).clone()),
        })
        .collect()
}
