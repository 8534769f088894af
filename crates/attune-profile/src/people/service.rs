//! The operations of ProfileService on validated commands: each write runs in
//! one transaction holding profile's write lock, idempotent by request id (the
//! encoded response is the remembered outcome, so a replay answers exactly what
//! the first call answered).

use std::collections::{BTreeMap, BTreeSet};

use attune_kit::error::ApiError;
use attune_kit::idempotency::{DataSubject, Request};
use attune_kit::pagination::next_page;
use attune_kit::types::{CustomerId, DataCategory, RequestId, time};
use attune_proto::profile::v1 as pb;
use chrono::{DateTime, Utc};
use prost::Message;
use sea_orm::DatabaseTransaction;

use super::convert::{Create, IdentityChange, SetZeroParty, Update};
use super::profiles::{self, MergedRow, NewProfile, ProfileRow};
use super::{identities, zero_party, zero_party_store};
use crate::Profile;
use crate::feed::{self, NewEntry};
use crate::identity::StoredIdentity;
use crate::store::REQUESTS;
use crate::tombstone::{customer_digest, identity_digest, is_tombstoned};

/// Profiles, identities, merges and zero-party data over profile's state.
#[derive(Debug, Clone)]
pub(crate) struct People {
    pub(super) profile: Profile,
}

pub(super) fn not_found() -> ApiError {
    ApiError::NotFound("no profile has this customer id".into())
}

impl People {
    pub fn new(profile: Profile) -> Self {
        Self { profile }
    }

    /// Runs `work` once per request id in a write transaction, commits, and
    /// answers its response (the stored one on a replay). The request is logged
    /// as about `customer_id`: the stored response names the customer, so the
    /// customer's erasure forgets it.
    pub(super) async fn write<M>(
        &self,
        operation: &str,
        request_id: &RequestId,
        fingerprint: &str,
        customer_id: &str,
        work: impl AsyncFnOnce(&DatabaseTransaction, DateTime<Utc>) -> Result<M, ApiError>,
    ) -> Result<M, ApiError>
    where
        M: Message + Default,
    {
        let txn = self.profile.begin_write().await?;
        let now = self.profile.clock.now();
        let request = Request {
            operation,
            request_id: request_id.as_ref(),
            fingerprint,
        };
        let subject = DataSubject::of(&self.profile.key, customer_id);
        let outcome = REQUESTS
            .idempotent_about(&txn, request, &subject, now, async |txn| {
                let answer = work(txn, now).await?;
                Ok::<String, ApiError>(hex::encode(answer.encode_to_vec()))
            })
            .await?;
        txn.commit().await?;
        if outcome.is_fresh() {
            self.profile.committed();
        }
        let encoded = hex::decode(outcome.into_inner()).map_err(ApiError::internal)?;
        M::decode(encoded.as_slice()).map_err(ApiError::internal)
    }

    async fn resolve(&self, customer_id: &CustomerId) -> Result<ProfileRow, ApiError> {
        profiles::resolve(&self.profile.db, customer_id.as_ref())
            .await?
            .ok_or_else(not_found)
    }

    /// The id consent is asked about for a write to `customer_id`: the profile it
    /// resolves to (unknown ids are answered NOT_FOUND inside the write).
    async fn consent_subject(&self, customer_id: &CustomerId) -> Result<String, ApiError> {
        Ok(profiles::resolve(&self.profile.db, customer_id.as_ref())
            .await?
            .map_or_else(|| customer_id.as_ref().to_owned(), |row| row.customer_id))
    }

    pub async fn create(&self, command: Create) -> Result<pb::Profile, ApiError> {
        let key = &self.profile.key;
        let fingerprint = command.fingerprint(key);
        // A visitor's id is drawn before the write, so that the request log
        // knows whom the request is about; a replay answers the first one drawn.
        let customer_id = match &command.customer_id {
            Some(id) => id.as_ref().to_owned(),
            None => format!("anon_{}", uuid::Uuid::new_v4().simple()),
        };
        let response = self
            .write(
                "create_profile",
                &command.request_id,
                &fingerprint,
                &customer_id,
                async |txn, now| {
                let mut digests = vec![customer_digest(key, &customer_id)];
                digests.extend(command.identities.iter().map(|(id, _)| identity_digest(key, id)));
                if is_tombstoned(txn, &digests).await? {
                    return Err(ApiError::FailedPrecondition(
                        "the customer id or one of the identities belongs to an erased customer"
                            .into(),
                    ));
                }
                if profiles::find(txn, &customer_id).await?.is_some() {
                    return Err(ApiError::AlreadyExists(
                        "a profile with this customer id exists already".into(),
                    ));
                }
                for (i, (identity, _)) in command.identities.iter().enumerate() {
                    if identities::owner(txn, identity).await?.is_some() {
                        return Err(ApiError::AlreadyExists(format!(
                            "identities[{i}] is linked to another profile; merge the profiles instead"
                        )));
                    }
                }
                let new = NewProfile {
                    customer_id: &customer_id,
                    kind: command.kind,
                    create_channel: command.channel.to_proto().into(),
                    now,
                };
                profiles::insert(txn, &new).await?;
                for (identity, channel) in &command.identities {
                    identities::insert(txn, &customer_id, identity, *channel, now).await?;
                }
                Ok(pb::CreateProfileResponse {
                    profile: Some(profiles::wire_of(txn, &customer_id).await?),
                })
            },
            )
            .await?;
        response
            .profile
            .ok_or_else(|| ApiError::internal("a stored answer without its profile"))
    }

    pub async fn get(&self, customer_id: &CustomerId) -> Result<pb::Profile, ApiError> {
        let row = self.resolve(customer_id).await?;
        Ok(profiles::to_wire(&self.profile.db, &row).await?)
    }

    pub async fn update(&self, command: Update) -> Result<pb::Profile, ApiError> {
        let mut refusal = None;
        if command.sets_a_value() {
            let subject = self.consent_subject(&command.customer_id).await?;
            let allowances = self
                .profile
                .collection
                .allowances(&subject, &[DataCategory::Preferences])
                .await?;
            let field = if command
                .home_store_id
                .as_ref()
                .is_some_and(|id| !id.is_empty())
            {
                "profile field home_store_id"
            } else {
                "profile field attributes"
            };
            refusal = allowances
                .first()
                .and_then(|allowance| allowance.refusal(field));
        }
        let fingerprint = command.fingerprint(&self.profile.key);
        let response = self
            .write(
                "update_profile",
                &command.request_id,
                &fingerprint,
                command.customer_id.as_ref(),
                async |txn, now| {
                    let row = profiles::resolve(txn, command.customer_id.as_ref())
                        .await?
                        .ok_or_else(not_found)?;
                    if let Some(refusal) = refusal {
                        return Err(refusal);
                    }
                    let home_store_id = match &command.home_store_id {
                        Some(new) => (!new.is_empty()).then(|| new.clone()),
                        None => row.home_store_id.clone(),
                    };
                    let attributes = match &command.attributes {
                        Some(new) => new.clone(),
                        None => row.attributes()?,
                    };
                    profiles::set_writable(
                        txn,
                        &row.customer_id,
                        home_store_id.as_deref(),
                        &attributes,
                        now,
                    )
                    .await?;
                    Ok(pb::UpdateProfileResponse {
                        profile: Some(profiles::wire_of(txn, &row.customer_id).await?),
                    })
                },
            )
            .await?;
        response
            .profile
            .ok_or_else(|| ApiError::internal("a stored answer without its profile"))
    }

    pub async fn list_merged(
        &self,
        customer_id: &CustomerId,
        after: Option<(i64, String)>,
        limit: u32,
    ) -> Result<pb::ListMergedCustomerIdsResponse, ApiError> {
        let row = self.resolve(customer_id).await?;
        let db = &self.profile.db;
        let rows =
            profiles::merged_after(db, &row.customer_id, after.as_ref(), u64::from(limit) + 1)
                .await?;
        let (rows, next_page_token) = next_page(rows, limit, MergedRow::cursor);
        Ok(pb::ListMergedCustomerIdsResponse {
            customer_id: row.customer_id.clone(),
            merged_customers: rows
                .iter()
                .map(MergedRow::to_wire)
                .collect::<Result<_, _>>()?,
            next_page_token,
            total_count: profiles::merged_count(db, &row.customer_id).await?,
        })
    }

    pub async fn lookup(&self, identity: &StoredIdentity) -> Result<pb::Profile, ApiError> {
        let db = &self.profile.db;
        let not_linked = || ApiError::NotFound("no profile has this identity".into());
        let owner = identities::owner(db, identity)
            .await?
            .ok_or_else(not_linked)?;
        let row = profiles::resolve(db, &owner)
            .await?
            .ok_or_else(not_linked)?;
        Ok(profiles::to_wire(db, &row).await?)
    }

    pub async fn link(&self, command: IdentityChange) -> Result<pb::Profile, ApiError> {
        let key = &self.profile.key;
        let fingerprint = command.fingerprint(key);
        let response = self
            .write(
                "link_identity",
                &command.request_id,
                &fingerprint,
                command.customer_id.as_ref(),
                async |txn, now| {
                    let row = profiles::resolve(txn, command.customer_id.as_ref())
                        .await?
                        .ok_or_else(not_found)?;
                    if is_tombstoned(txn, &[identity_digest(key, &command.identity)]).await? {
                        return Err(ApiError::FailedPrecondition(
                            "the identity belongs to an erased customer".into(),
                        ));
                    }
                    match identities::owner(txn, &command.identity).await? {
                        Some(owner) if owner == row.customer_id => {}
                        Some(_) => {
                            return Err(ApiError::AlreadyExists(
                            "the identity is linked to another profile; merge the profiles instead"
                                .into(),
                        ));
                        }
                        None => {
                            if identities::count(txn, &row.customer_id).await?
                                >= identities::MAX_PER_PROFILE
                            {
                                return Err(ApiError::ResourceExhausted {
                                    message: format!(
                                        "a profile has at most {} identities; unlink one first",
                                        identities::MAX_PER_PROFILE
                                    ),
                                    retry_after: None,
                                });
                            }
                            identities::insert(
                                txn,
                                &row.customer_id,
                                &command.identity,
                                command.channel,
                                now,
                            )
                            .await?;
                            profiles::touch(txn, &row.customer_id, now).await?;
                        }
                    }
                    Ok(pb::LinkIdentityResponse {
                        profile: Some(profiles::wire_of(txn, &row.customer_id).await?),
                    })
                },
            )
            .await?;
        response
            .profile
            .ok_or_else(|| ApiError::internal("a stored answer without its profile"))
    }

    pub async fn unlink(&self, command: IdentityChange) -> Result<pb::Profile, ApiError> {
        let fingerprint = command.fingerprint(&self.profile.key);
        let response = self
            .write(
                "unlink_identity",
                &command.request_id,
                &fingerprint,
                command.customer_id.as_ref(),
                async |txn, now| {
                    let row = profiles::resolve(txn, command.customer_id.as_ref())
                        .await?
                        .ok_or_else(not_found)?;
                    if !identities::delete(txn, &row.customer_id, &command.identity).await? {
                        return Err(ApiError::NotFound(
                            "the profile does not have this identity".into(),
                        ));
                    }
                    profiles::touch(txn, &row.customer_id, now).await?;
                    Ok(pb::UnlinkIdentityResponse {
                        profile: Some(profiles::wire_of(txn, &row.customer_id).await?),
                    })
                },
            )
            .await?;
        response
            .profile
            .ok_or_else(|| ApiError::internal("a stored answer without its profile"))
    }

    pub async fn set_zero_party(
        &self,
        command: SetZeroParty,
    ) -> Result<pb::ZeroPartyData, ApiError> {
        // Consent is asked before the write lock is taken; its refusal is
        // answered inside the write, so a replay still gets the first answer.
        let categories: BTreeSet<DataCategory> =
            command.fields_set().map(|field| field.category()).collect();
        let mut purposes = BTreeMap::new();
        let mut refusal = None;
        if !categories.is_empty() {
            let subject = self.consent_subject(&command.customer_id).await?;
            let categories: Vec<DataCategory> = categories.into_iter().collect();
            let allowances = self
                .profile
                .collection
                .allowances(&subject, &categories)
                .await?;
            for (category, allowance) in categories.iter().zip(&allowances) {
                match allowance.purposes() {
                    Some(allowed) => {
                        purposes.insert(*category, allowed.to_vec());
                    }
                    None if refusal.is_none() => {
                        let field = command
                            .fields_set()
                            .find(|field| field.category() == *category)
                            .map_or("a field", |field| field.name());
                        refusal = allowance.refusal(&format!("zero-party field {field}"));
                    }
                    None => {}
                }
            }
        }
        let fingerprint = command.fingerprint(&self.profile.key);
        let response = self
            .write(
                "set_zero_party_data",
                &command.request_id,
                &fingerprint,
                command.customer_id.as_ref(),
                async |txn, now| {
                    let row = profiles::resolve(txn, command.customer_id.as_ref())
                        .await?
                        .ok_or_else(not_found)?;
                    if let Some(refusal) = refusal {
                        return Err(refusal);
                    }
                    let mut stored = zero_party_store::load(txn, &row.customer_id).await?;
                    let changes = zero_party::apply(
                        &mut stored,
                        &command.data,
                        &command.fields,
                        command.channel,
                        &purposes,
                        time::to_proto(now),
                    );
                    if !changes.is_empty() {
                        zero_party_store::save(txn, &row.customer_id, &stored, now).await?;
                        profiles::touch(txn, &row.customer_id, now).await?;
                        let change = pb::ZeroPartyDataChange {
                            customer_id: row.customer_id.clone(),
                            provided_fields: changes.provided,
                            updated_fields: changes.updated,
                            cleared_fields: changes.cleared,
                            channel: command.channel.to_proto().into(),
                        };
                        let entry = NewEntry {
                            customer_id: row.customer_id.clone(),
                            other_customer_id: None,
                            event: None,
                            change: pb::feed_entry::Change::ZeroPartyDataChange(change),
                        };
                        let newest = feed::newest_sequence(txn).await?;
                        feed::append(txn, newest, vec![entry], now).await?;
                    }
                    Ok(pb::SetZeroPartyDataResponse { data: Some(stored) })
                },
            )
            .await?;
        Ok(response.data.unwrap_or_default())
    }

    pub async fn get_zero_party(
        &self,
        customer_id: &CustomerId,
    ) -> Result<pb::ZeroPartyData, ApiError> {
        zero_party_store::load_resolved(&self.profile.db, customer_id.as_ref())
            .await?
            .ok_or_else(not_found)
    }
}
