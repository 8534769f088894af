//! Merging an anonymous profile into another when the visitor signs in: the
//! source's identities, unset zero-party fields (with their provenance), own
//! fields and events move to the target; the source becomes a redirect; one
//! merge entry goes on the feed; the target's traits are recomputed.

use attune_kit::error::ApiError;
use attune_kit::types::time;
use attune_proto::profile::v1 as pb;
use chrono::{DateTime, Utc};
use sea_orm::sea_query::{Alias, Expr, ExprTrait, Query};
use sea_orm::{ConnectionTrait, DatabaseTransaction, DbErr};

use super::convert::Merge;
use super::profiles::{self, ProfileRow};
use super::service::People;
use super::{identities, zero_party, zero_party_store};
use crate::Profile;
use crate::feed::{self, EntryType, NewEntry};

/// At most this many profile attributes; a merge adds the source's only up to it.
const MAX_ATTRIBUTES: usize = 50;

impl People {
    pub async fn merge(&self, command: Merge) -> Result<pb::MergeProfilesResponse, ApiError> {
        let fingerprint = command.fingerprint(&self.profile.key);
        let profile = &self.profile;
        self.write(
            "merge_profiles",
            &command.request_id,
            &fingerprint,
            // Its answer names both ids; the target's erasure covers the source.
            command.target.as_ref(),
            async |txn, now| {
                let source = profiles::find(txn, command.source.as_ref())
                    .await?
                    .ok_or_else(|| {
                        ApiError::NotFound("no profile has source_customer_id".into())
                    })?;
                let target = profiles::resolve(txn, command.target.as_ref())
                    .await?
                    .ok_or_else(|| {
                        ApiError::NotFound("no profile has target_customer_id".into())
                    })?;
                if command.source == command.target {
                    return Err(ApiError::FailedPrecondition(
                        "the source and the target are the same profile".into(),
                    ));
                }
                if let Some(survivor) = &source.merged_into {
                    if *survivor != target.customer_id {
                        return Err(ApiError::FailedPrecondition(
                            "the source profile was merged into another profile already".into(),
                        ));
                    }
                    // Merged into this target before: nothing moves again.
                    return Ok(pb::MergeProfilesResponse {
                        profile: Some(profiles::to_wire(txn, &target).await?),
                        moved_identity_count: 0,
                        moved_event_count: 0,
                        moved_zero_party_fields: Vec::new(),
                        sequence: source.merge_sequence.unwrap_or_default(),
                    });
                }
                if source.customer_id == target.customer_id {
                    return Err(ApiError::FailedPrecondition(
                        "the source and the target are the same profile".into(),
                    ));
                }
                if !source.is_anonymous() {
                    return Err(ApiError::FailedPrecondition(
                        "only an ANONYMOUS profile can be merged into another".into(),
                    ));
                }
                merge_into(txn, profile, &source, &target, now).await
            },
        )
        .await
    }
}

async fn merge_into(
    txn: &DatabaseTransaction,
    profile: &Profile,
    source: &ProfileRow,
    target: &ProfileRow,
    now: DateTime<Utc>,
) -> Result<pb::MergeProfilesResponse, ApiError> {
    let (from, to) = (source.customer_id.as_str(), target.customer_id.as_str());
    let moved_identity_count = identities::move_all(txn, from, to).await?;
    let moved_zero_party_fields = move_zero_party(txn, from, to, now).await?;
    move_own_fields(txn, source, target, now).await?;
    let moved_event_count = reattribute_events(txn, from, to).await?;
    let entry = NewEntry {
        customer_id: to.to_owned(),
        other_customer_id: Some(from.to_owned()),
        event: None,
        change: pb::feed_entry::Change::Merge(pb::ProfileMerge {
            source_customer_id: from.to_owned(),
            target_customer_id: to.to_owned(),
        }),
    };
    let newest = feed::newest_sequence(txn).await?;
    let sequence = feed::append(txn, newest, vec![entry], now)
        .await?
        .first()
        .copied()
        .ok_or_else(|| ApiError::internal("the merge entry got no sequence"))?;
    profiles::redirect(txn, from, to, now, sequence).await?;
    profiles::move_redirects(txn, from, to, sequence).await?;
    recompute_traits_after_merge(txn, profile, from, to).await?;
    Ok(pb::MergeProfilesResponse {
        profile: Some(profiles::wire_of(txn, to).await?),
        moved_identity_count: i32::try_from(moved_identity_count).unwrap_or(i32::MAX),
        moved_event_count: i64::try_from(moved_event_count).unwrap_or(i64::MAX),
        moved_zero_party_fields,
        sequence,
    })
}

/// Copies the zero-party fields the target has not set, with their provenance,
/// and drops the source's record (the redirect holds no data of its own).
async fn move_zero_party(
    txn: &DatabaseTransaction,
    from: &str,
    to: &str,
    now: DateTime<Utc>,
) -> Result<Vec<String>, DbErr> {
    let source = zero_party_store::load(txn, from).await?;
    let mut target = zero_party_store::load(txn, to).await?;
    let moved = zero_party::fill_from(&mut target, &source, time::to_proto(now));
    if !moved.is_empty() {
        zero_party_store::save(txn, to, &target, now).await?;
    }
    zero_party_store::delete(txn, &[from.to_owned()]).await?;
    Ok(moved)
}

/// The target keeps its own `home_store_id` and attributes and gains those of
/// the source it lacks; the latest event time is the later of the two.
async fn move_own_fields(
    txn: &DatabaseTransaction,
    source: &ProfileRow,
    target: &ProfileRow,
    now: DateTime<Utc>,
) -> Result<(), DbErr> {
    let mut attributes = target.attributes()?;
    for (key, value) in source.attributes()? {
        if attributes.len() >= MAX_ATTRIBUTES {
            break;
        }
        attributes.entry(key).or_insert(value);
    }
    let home_store_id = target
        .home_store_id
        .as_ref()
        .or(source.home_store_id.as_ref());
    profiles::set_writable(
        txn,
        &target.customer_id,
        home_store_id.map(String::as_str),
        &attributes,
        now,
    )
    .await?;
    profiles::keep_latest_event_time(txn, &target.customer_id, source.last_event_time).await
}

/// Re-attributes the source's events to the target by their customer column
/// (payloads stay as stored); returns how many moved.
async fn reattribute_events(txn: &DatabaseTransaction, from: &str, to: &str) -> Result<u64, DbErr> {
    let update = Query::update()
        .table(Alias::new(feed::TABLE))
        .value(Alias::new("customer_id"), to)
        .and_where(Expr::col(Alias::new("customer_id")).eq(from))
        .and_where(Expr::col(Alias::new("entry_type")).eq(EntryType::Event as i16))
        .to_owned();
    Ok(txn.execute(&update).await?.rows_affected())
}

/// Recomputes the target's traits from all its events, now including the
/// source's, so nothing is counted twice. The last step of the merge.
async fn recompute_traits_after_merge(
    txn: &DatabaseTransaction,
    profile: &Profile,
    source: &str,
    target: &str,
) -> Result<(), DbErr> {
    // The target's state from all its events, now the source's too (folding the
    // two states together would count what they share twice); the source has
    // no events left, so its state goes.
    crate::events::traits::rebuild(txn, profile, target).await?;
    crate::events::traits::rebuild(txn, profile, source).await
}
