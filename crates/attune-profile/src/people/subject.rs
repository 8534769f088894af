//! What the data-subject API (export, erasure) needs from profiles, identities
//! and zero-party data. The caller (profile's `DataSubjectService`) decides which
//! ids: a customer and every id merged into it ([`merged_ids`]).

use attune_proto::profile::v1 as pb;
use sea_orm::{ConnectionTrait, DatabaseTransaction, DbErr};
use serde_json::{Value, json};

use super::{identities, profiles, zero_party_store};
use crate::identity::StoredIdentity;

/// Every id merged into `customer_id`, in merge order.
pub(crate) async fn merged_ids(
    db: &impl ConnectionTrait,
    customer_id: &str,
) -> Result<Vec<String>, DbErr> {
    profiles::merged_ids(db, customer_id).await
}

/// The identities linked to any of `ids`, as stored (e-mail and phone hashed),
/// so erasure can tombstone them.
pub(crate) async fn identities_of(
    db: &impl ConnectionTrait,
    ids: &[String],
) -> Result<Vec<StoredIdentity>, DbErr> {
    Ok(identities::of_customers(db, ids)
        .await?
        .iter()
        .map(identities::IdentityRow::stored)
        .collect())
}

/// The profile rows, identities (hashes as stored) and zero-party data with
/// provenance of `ids`, as JSON for an export.
pub(crate) async fn export(db: &impl ConnectionTrait, ids: &[String]) -> Result<Value, DbErr> {
    let mut profile_rows = Vec::new();
    for row in profiles::rows_of(db, ids).await? {
        profile_rows.push(json!({
            "customer_id": row.customer_id,
            "kind": kind_name(row.kind),
            "create_channel": row.create_channel,
            "create_time": micros_text(row.create_time)?,
            "update_time": micros_text(row.update_time)?,
            "last_event_time": row.last_event_time.map(micros_text).transpose()?,
            "home_store_id": row.home_store_id,
            "attributes": row.attributes()?,
            "merged_into": row.merged_into,
            "merge_time": row.merge_time.map(micros_text).transpose()?,
        }));
    }
    let identity_rows = identities::of_customers(db, ids)
        .await?
        .into_iter()
        .map(|row| {
            Ok(json!({
                "customer_id": row.customer_id,
                "identity_type": pb::IdentityType::try_from(i32::from(row.identity_type))
                    .map(|t| t.as_str_name())
                    .unwrap_or("unknown"),
                "value": row.value,
                "channel": row.channel,
                "link_time": micros_text(row.link_time)?,
            }))
        })
        .collect::<Result<Vec<_>, DbErr>>()?;
    let zero_party = zero_party_store::load_all(db, ids)
        .await?
        .into_iter()
        .map(|(customer_id, data)| json!({"customer_id": customer_id, "data": zero_party_json(&data)}))
        .collect::<Vec<_>>();
    Ok(json!({
        "profiles": profile_rows,
        "identities": identity_rows,
        "zero_party_data": zero_party,
    }))
}

/// Deletes every profile row, identity and zero-party record of `ids`; returns
/// the number of rows deleted.
pub(crate) async fn erase(txn: &DatabaseTransaction, ids: &[String]) -> Result<u64, DbErr> {
    let identities = identities::delete_of(txn, ids).await?;
    let zero_party = zero_party_store::delete(txn, ids).await?;
    let profiles = profiles::delete(txn, ids).await?;
    Ok(identities + zero_party + profiles)
}

fn kind_name(kind: i16) -> &'static str {
    pb::ProfileKind::try_from(i32::from(kind)).map_or("unknown", |kind| kind.as_str_name())
}

fn micros_text(value: i64) -> Result<String, DbErr> {
    Ok(profiles::from_micros(value)?.to_rfc3339())
}

fn timestamp_text(timestamp: Option<&prost_types::Timestamp>) -> Option<String> {
    timestamp
        .and_then(|t| attune_kit::types::time::from_proto(*t).ok())
        .map(|t| t.to_rfc3339())
}

fn names<E: TryFrom<i32>>(values: &[i32], name: impl Fn(E) -> &'static str) -> Vec<&'static str> {
    values
        .iter()
        .filter_map(|raw| E::try_from(*raw).ok().map(&name))
        .collect()
}

/// The zero-party record as JSON: every field (empty when not shared) and each
/// field's provenance.
fn zero_party_json(data: &pb::ZeroPartyData) -> Value {
    let provenance: serde_json::Map<String, Value> = data
        .provenance
        .iter()
        .map(|(field, p)| {
            (
                field.clone(),
                json!({
                    "first_provide_time": timestamp_text(p.first_provide_time.as_ref()),
                    "update_time": timestamp_text(p.update_time.as_ref()),
                    "channel": names(&[p.channel], |c: attune_proto::common::v1::Channel| c.as_str_name()),
                    "data_category": names(&[p.data_category], |c: attune_proto::common::v1::DataCategory| c.as_str_name()),
                    "purposes": p.purposes.iter()
                        .map(|n| json!({"purpose_code": n.purpose_code, "notice_version": n.notice_version}))
                        .collect::<Vec<_>>(),
                }),
            )
        })
        .collect();
    json!({
        "preferred_name": data.preferred_name,
        "sizes": data.sizes.iter()
            .map(|s| json!({"size_type": s.size_type, "value": s.value, "size_system": s.size_system}))
            .collect::<Vec<_>>(),
        "favourite_category_ids": data.favourite_category_ids,
        "favourite_brands": data.favourite_brands,
        "age_band": names(&[data.age_band], |b: pb::AgeBand| b.as_str_name()),
        "birthday": data.birthday.as_ref().map(|b| json!({"month": b.month, "day": b.day})),
        "gender": data.gender,
        "preferred_channels": names(&data.preferred_channels, |c: attune_proto::common::v1::Channel| c.as_str_name()),
        "language_code": data.language_code,
        "attributes": data.attributes.iter().collect::<std::collections::BTreeMap<_, _>>(),
        "household": data.household.as_ref()
            .map(|h| json!({"adults": h.adults, "children": h.children, "has_pets": h.has_pets})),
        "dietary_preferences": names(&data.dietary_preferences, |d: pb::DietaryPreference| d.as_str_name()),
        "style_preferences": data.style_preferences,
        "preferred_store_id": data.preferred_store_id,
        "time_zone": data.time_zone,
        "update_time": timestamp_text(data.update_time.as_ref()),
        "provenance": provenance,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // panics fail tests

    use attune_kit::db::{Backend, connect, fresh_test_database_on, migrate};
    use attune_kit::secrets::PseudonymKey;
    use chrono::Utc;
    use sea_orm::TransactionTrait;

    use super::*;
    use crate::Migrator;
    use crate::people::profiles::NewProfile;

    async fn export_and_erase_a_customer_with_a_merged_id(backend: Backend) {
        let Some(test) = fresh_test_database_on(backend, "profile_subject")
            .await
            .unwrap()
        else {
            return;
        };
        let db = connect(&test.config).await.unwrap();
        migrate::<Migrator>(&db).await.unwrap();
        let key = PseudonymKey::new([9; 32]);
        let now = Utc::now();
        for (id, kind) in [
            ("cust-1", pb::ProfileKind::Known),
            ("anon-1", pb::ProfileKind::Anonymous),
            ("cust-2", pb::ProfileKind::Known),
        ] {
            let new = NewProfile {
                customer_id: id,
                kind,
                create_channel: 1,
                now,
            };
            profiles::insert(&db, &new).await.unwrap();
        }
        profiles::redirect(&db, "anon-1", "cust-1", now, 7)
            .await
            .unwrap();
        let email =
            StoredIdentity::parse(&key, pb::IdentityType::Email as i32, "ada@example.com").unwrap();
        identities::insert(&db, "cust-1", &email, 1, now)
            .await
            .unwrap();
        let card =
            StoredIdentity::parse(&key, pb::IdentityType::LoyaltyCard as i32, "C-2").unwrap();
        identities::insert(&db, "cust-2", &card, 1, now)
            .await
            .unwrap();
        let data = pb::ZeroPartyData {
            preferred_name: "Ada".into(),
            ..Default::default()
        };
        zero_party_store::save(&db, "cust-1", &data, now)
            .await
            .unwrap();

        let mut ids = merged_ids(&db, "cust-1").await.unwrap();
        assert_eq!(ids, ["anon-1"]);
        ids.insert(0, "cust-1".into());
        assert_eq!(identities_of(&db, &ids).await.unwrap(), vec![email.clone()]);

        let exported = export(&db, &ids).await.unwrap();
        assert_eq!(exported["profiles"].as_array().unwrap().len(), 2);
        assert_eq!(exported["identities"][0]["value"], email.value.as_str());
        assert_eq!(
            exported["zero_party_data"][0]["data"]["preferred_name"],
            "Ada"
        );
        let text = exported.to_string();
        assert!(
            !text.contains("ada@example.com") && !text.contains("cust-2"),
            "{text}"
        );

        let txn = db.begin().await.unwrap();
        assert_eq!(
            erase(&txn, &ids).await.unwrap(),
            4,
            "two profiles, one identity, one record"
        );
        txn.commit().await.unwrap();
        assert!(
            export(&db, &ids).await.unwrap()["profiles"]
                .as_array()
                .unwrap()
                .is_empty()
        );
        assert!(
            profiles::find(&db, "cust-2").await.unwrap().is_some(),
            "others are kept"
        );
        assert_eq!(identities::count(&db, "cust-2").await.unwrap(), 1);
    }

    #[tokio::test]
    async fn export_and_erase_cover_the_customer_and_its_merged_ids_on_sqlite() {
        export_and_erase_a_customer_with_a_merged_id(Backend::Sqlite).await;
    }

    /// Skips itself unless `ATTUNE_TEST_DATABASE_URL` is set.
    #[tokio::test]
    async fn export_and_erase_cover_the_customer_and_its_merged_ids_on_postgres() {
        export_and_erase_a_customer_with_a_merged_id(Backend::Postgres).await;
    }
}
