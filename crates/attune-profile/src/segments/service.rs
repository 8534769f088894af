//! The segment operations: definitions written idempotently, membership
//! evaluated after each change, previews and listings read.

use std::collections::BTreeMap;

use attune_kit::ApiError;
use attune_kit::idempotency::Request;
use attune_kit::types::CustomerId;
use attune_proto::profile::v1 as pb;
use prost::Message;

use super::convert::{NewSegment, Page, SegmentDeletion, SegmentUpdate};
use super::evaluate::{self, CUSTOMERS_PER_TRANSACTION};
use super::facts::FactsSource;
use super::rule::Rule;
use super::store::{self, Definition};
use crate::app::Profile;
use crate::store::REQUESTS;

/// How many matching customer ids a preview shows.
const PREVIEW_SAMPLE: usize = 10;

/// Segments over profile's state.
#[derive(Debug, Clone)]
pub struct Segments {
    profile: Profile,
    source: FactsSource,
}

fn not_found(segment_id: &str) -> ApiError {
    ApiError::NotFound(format!("segment {segment_id} does not exist"))
}

/// The definition a write left, as its idempotent outcome: the encoded segment
/// (ids, names and the retailer's rule; no personal data), hex in JSON.
fn written(row: store::SegmentRow) -> Result<String, ApiError> {
    Ok(hex::encode(row.into_proto()?.encode_to_vec()))
}

fn unwritten(outcome: &str) -> Result<pb::Segment, ApiError> {
    let bytes = hex::decode(outcome).map_err(ApiError::internal)?;
    pb::Segment::decode(bytes.as_slice()).map_err(ApiError::internal)
}

impl Segments {
    pub fn new(profile: Profile) -> Self {
        let source = FactsSource::new(profile.clone());
        Self { profile, source }
    }

    pub fn profile(&self) -> &Profile {
        &self.profile
    }

    pub fn source(&self) -> &FactsSource {
        &self.source
    }

    pub async fn create(&self, new: NewSegment) -> Result<pb::Segment, ApiError> {
        let now = self.profile.clock.now();
        let txn = self.profile.begin_write().await?;
        let fingerprint = self.profile.key.fingerprint(&new);
        let request = Request {
            operation: "create_segment",
            request_id: new.request_id.as_ref(),
            fingerprint: &fingerprint,
        };
        let outcome = REQUESTS
            .idempotent(&txn, request, now, async |txn| {
                let definition = Definition {
                    segment_id: &new.segment_id,
                    display_name: &new.display_name,
                    description: &new.description,
                    rule: &new.rule,
                };
                if !store::insert(txn, &definition, now).await? {
                    return Err(ApiError::AlreadyExists(format!(
                        "segment {} exists already",
                        new.segment_id
                    )));
                }
                let row = store::get(txn, &new.segment_id)
                    .await?
                    .ok_or_else(|| not_found(&new.segment_id))?;
                written(row)
            })
            .await?
            .into_inner();
        txn.commit().await.map_err(ApiError::from)?;
        self.answer(unwritten(&outcome)?).await
    }

    pub async fn update(&self, update: SegmentUpdate) -> Result<pb::Segment, ApiError> {
        let now = self.profile.clock.now();
        let txn = self.profile.begin_write().await?;
        let fingerprint = self.profile.key.fingerprint(&update);
        let request = Request {
            operation: "update_segment",
            request_id: update.request_id.as_ref(),
            fingerprint: &fingerprint,
        };
        let outcome = REQUESTS
            .idempotent(&txn, request, now, async |txn| {
                let current = store::get(txn, &update.segment_id)
                    .await?
                    .ok_or_else(|| not_found(&update.segment_id))?;
                let rule = match &update.rule {
                    Some(rule) => rule.clone(),
                    None => current.decode_rule()?,
                };
                let definition = Definition {
                    segment_id: &update.segment_id,
                    display_name: update
                        .display_name
                        .as_deref()
                        .unwrap_or(&current.display_name),
                    description: update
                        .description
                        .as_deref()
                        .unwrap_or(&current.description),
                    rule: &rule,
                };
                store::replace(txn, &definition, now)
                    .await?
                    .ok_or_else(|| not_found(&update.segment_id))?;
                let row = store::get(txn, &update.segment_id)
                    .await?
                    .ok_or_else(|| not_found(&update.segment_id))?;
                written(row)
            })
            .await?
            .into_inner();
        txn.commit().await.map_err(ApiError::from)?;
        self.answer(unwritten(&outcome)?).await
    }

    /// The segment a write left, after evaluating every customer against it
    /// unless that was done since its last change (also on a retry, so a write
    /// whose evaluation failed is evaluated when the client retries); member
    /// count and evaluation time as they are now.
    async fn answer(&self, mut segment: pb::Segment) -> Result<pb::Segment, ApiError> {
        let Some(current) = store::get(&self.profile.db, &segment.segment_id).await? else {
            // Deleted since: no members.
            return Ok(segment);
        };
        if current
            .evaluate_time
            .is_none_or(|time| time < current.update_time)
        {
            evaluate::evaluate_everyone(&self.profile, &self.source, Some(&segment.segment_id))
                .await?;
        }
        if let Some(current) = store::get(&self.profile.db, &segment.segment_id).await? {
            let current = current.into_proto()?;
            segment.member_count = current.member_count;
            if current.version == segment.version {
                segment.evaluate_time = current.evaluate_time;
            }
        }
        Ok(segment)
    }

    pub async fn delete(&self, deletion: SegmentDeletion) -> Result<(), ApiError> {
        let now = self.profile.clock.now();
        let txn = self.profile.begin_write().await?;
        let fingerprint = self.profile.key.fingerprint(&deletion);
        let request = Request {
            operation: "delete_segment",
            request_id: deletion.request_id.as_ref(),
            fingerprint: &fingerprint,
        };
        let segment_id = deletion.segment_id.as_str();
        REQUESTS
            .idempotent(&txn, request, now, async |txn| {
                let current = store::get(txn, segment_id)
                    .await?
                    .ok_or_else(|| not_found(segment_id))?;
                let versions = BTreeMap::from([(segment_id, current.version)]);
                // Every member leaves, each exit on the feed.
                loop {
                    let members = store::members(txn, segment_id, None, 1000).await?;
                    if members.is_empty() {
                        break;
                    }
                    let left: Vec<(String, String)> = members
                        .into_iter()
                        .map(|row| (row.segment_id, row.customer_id))
                        .collect();
                    evaluate::apply_changes(txn, &[], &left, &versions, now).await?;
                }
                store::delete(txn, segment_id).await?;
                Ok::<(), ApiError>(())
            })
            .await?;
        txn.commit().await.map_err(ApiError::from)?;
        self.profile.committed();
        Ok(())
    }

    pub async fn get(&self, segment_id: &str) -> Result<pb::Segment, ApiError> {
        let row = store::get(&self.profile.db, segment_id)
            .await?
            .ok_or_else(|| not_found(segment_id))?;
        Ok(row.into_proto()?)
    }

    /// Up to `limit` segments after `after`.
    pub async fn list(
        &self,
        after: Option<&str>,
        limit: u64,
    ) -> Result<Vec<pb::Segment>, ApiError> {
        let rows = store::list(&self.profile.db, after, limit).await?;
        Ok(rows
            .into_iter()
            .map(store::SegmentRow::into_proto)
            .collect::<Result<_, _>>()?)
    }

    /// How many live customers `rule` matches now, out of how many, with the first
    /// matching ids. Reads only.
    pub async fn preview(&self, rule: &Rule) -> Result<pb::PreviewSegmentResponse, ApiError> {
        let db = &self.profile.db;
        let now = self.profile.clock.now();
        let mut response = pb::PreviewSegmentResponse::default();
        let mut after: Option<String> = None;
        loop {
            let customers =
                FactsSource::live_customers(db, after.as_deref(), CUSTOMERS_PER_TRANSACTION)
                    .await?;
            for facts in self.source.load(db, &customers, now).await? {
                response.evaluated_count += 1;
                if rule.matches(&facts) {
                    response.member_count += 1;
                    if response.sample_customer_ids.len() < PREVIEW_SAMPLE {
                        response
                            .sample_customer_ids
                            .push(facts.customer_id().to_owned());
                    }
                }
            }
            match customers.last() {
                Some(last) if customers.len() as u64 == CUSTOMERS_PER_TRANSACTION => {
                    after = Some(last.clone());
                }
                _ => return Ok(response),
            }
        }
    }

    /// A customer's memberships (a merged id: the survivor's), a page after
    /// segment `after`; NOT_FOUND for an unknown customer.
    pub async fn customer_segments(
        &self,
        customer_id: &CustomerId,
        page: &Page,
        limit: u64,
    ) -> Result<Vec<pb::SegmentMembership>, ApiError> {
        let db = &self.profile.db;
        // The id is personal data: the error does not repeat it.
        let rows =
            store::customer_memberships(db, customer_id.as_ref(), page.after.as_deref(), limit)
                .await?
                .ok_or_else(|| ApiError::NotFound("no profile has this customer id".into()))?;
        Ok(rows
            .into_iter()
            .map(|row| {
                store::MemberRow {
                    segment_id: row.segment_id,
                    customer_id: row.customer_id,
                    join_time: row.join_time,
                }
                .into_proto(row.display_name)
            })
            .collect::<Result<_, _>>()?)
    }

    /// A segment's members, a page after customer `after`; NOT_FOUND for an
    /// unknown segment.
    pub async fn members(
        &self,
        segment_id: &str,
        page: &Page,
        limit: u64,
    ) -> Result<Vec<pb::SegmentMembership>, ApiError> {
        let db = &self.profile.db;
        let segment = store::get(db, segment_id)
            .await?
            .ok_or_else(|| not_found(segment_id))?;
        let rows = store::members(db, segment_id, page.after.as_deref(), limit).await?;
        Ok(rows
            .into_iter()
            .map(|row| row.into_proto(segment.display_name.clone()))
            .collect::<Result<_, _>>()?)
    }
}
