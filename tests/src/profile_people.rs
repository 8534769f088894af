//! ProfileService requests as the end-to-end tests build them (valid as they
//! stand, each under a fresh request id) and the calls a test needs to set up
//! profiles and consent.

use attune_proto::common::v1 as common_pb;
use attune_proto::profile::v1 as pb;
use prost_types::FieldMask;
use sea_orm::sea_query::{Alias, Expr, ExprTrait, Query};
use sea_orm::{ConnectionTrait, Statement};

use crate::TestApp;
use crate::consent_requests::request_id;

/// An identity of `identity_type` with `value`, seen on the web.
pub fn identity(identity_type: pb::IdentityType, value: &str) -> pb::Identity {
    pb::Identity {
        identity_type: identity_type.into(),
        value: value.into(),
        channel: common_pb::Channel::Web.into(),
        link_time: None,
    }
}

/// A known profile `customer` created on the web with `identities`.
pub fn create_known(customer: &str, identities: Vec<pb::Identity>) -> pb::CreateProfileRequest {
    pb::CreateProfileRequest {
        customer_id: customer.into(),
        kind: pb::ProfileKind::Known.into(),
        identities,
        channel: common_pb::Channel::Web.into(),
        request_id: request_id(),
    }
}

/// An anonymous profile `customer` (empty: Attune assigns the id) created on the web.
pub fn create_anonymous(customer: &str, identities: Vec<pb::Identity>) -> pb::CreateProfileRequest {
    pb::CreateProfileRequest {
        kind: pb::ProfileKind::Anonymous.into(),
        ..create_known(customer, identities)
    }
}

/// Links `identity` to `customer`.
pub fn link(customer: &str, identity: pb::Identity) -> pb::LinkIdentityRequest {
    pb::LinkIdentityRequest {
        customer_id: customer.into(),
        identity: Some(identity),
        request_id: request_id(),
    }
}

/// Unlinks `identity` from `customer`.
pub fn unlink(customer: &str, identity: pb::Identity) -> pb::UnlinkIdentityRequest {
    pb::UnlinkIdentityRequest {
        customer_id: customer.into(),
        identity: Some(identity),
        request_id: request_id(),
    }
}

/// Merges `source` into `target`.
pub fn merge(source: &str, target: &str) -> pb::MergeProfilesRequest {
    pb::MergeProfilesRequest {
        source_customer_id: source.into(),
        target_customer_id: target.into(),
        request_id: request_id(),
    }
}

/// The mask naming `paths` (none: an empty mask).
pub fn mask(paths: &[&str]) -> Option<FieldMask> {
    Some(FieldMask {
        paths: paths.iter().map(|path| (*path).to_owned()).collect(),
    })
}

/// Changes `customer`'s profile fields as `profile` says under `paths`.
pub fn update(customer: &str, profile: pb::Profile, paths: &[&str]) -> pb::UpdateProfileRequest {
    pb::UpdateProfileRequest {
        profile: Some(pb::Profile {
            customer_id: customer.into(),
            ..profile
        }),
        update_mask: mask(paths),
        request_id: request_id(),
    }
}

/// Stores `data` for `customer` under `paths`, shared on `channel`.
pub fn set_zero_party(
    customer: &str,
    data: pb::ZeroPartyData,
    paths: &[&str],
    channel: common_pb::Channel,
) -> pb::SetZeroPartyDataRequest {
    pb::SetZeroPartyDataRequest {
        customer_id: customer.into(),
        data: Some(data),
        update_mask: mask(paths),
        channel: channel.into(),
        request_id: request_id(),
    }
}

/// Anna's zero-party data for `customer`, as the web shop sets it: a name to
/// greet by, her shoe size and a favourite brand (the journey and the page
/// experience tests greet and personalize by them).
pub fn annas_preferences(customer: &str) -> pb::SetZeroPartyDataRequest {
    set_zero_party(
        customer,
        pb::ZeroPartyData {
            preferred_name: "Anna".into(),
            sizes: vec![pb::SizePreference {
                size_type: "shoes".into(),
                value: "39".into(),
                size_system: "EU".into(),
            }],
            favourite_brands: vec!["Trailco".into()],
            ..Default::default()
        },
        &["preferred_name", "sizes", "favourite_brands"],
        common_pb::Channel::Web,
    )
}

impl TestApp {
    /// Creates a profile, which must succeed.
    pub async fn create_profile(&self, request: pb::CreateProfileRequest) -> pb::Profile {
        self.profiles()
            .create_profile(request)
            .await
            .expect("the profile is created")
            .into_inner()
            .profile
            .expect("a created profile is returned")
    }

    /// The profile `customer` resolves to, which must exist.
    pub async fn profile(&self, customer: &str) -> pb::Profile {
        self.profiles()
            .get_profile(pb::GetProfileRequest {
                customer_id: customer.into(),
            })
            .await
            .expect("the profile exists")
            .into_inner()
            .profile
            .expect("a profile is returned")
    }

    /// `customer`'s zero-party data.
    pub async fn zero_party(&self, customer: &str) -> pb::ZeroPartyData {
        self.profiles()
            .get_zero_party_data(pb::GetZeroPartyDataRequest {
                customer_id: customer.into(),
            })
            .await
            .expect("the zero-party data is readable")
            .into_inner()
            .data
            .expect("a record is returned")
    }

    /// Runs `sql` (with no parameters) on the app's database, for a test to set
    /// up what no API of this branch writes yet, or to read what no API shows.
    pub async fn execute_sql(&self, sql: &str) -> u64 {
        let db = attune_kit::db::connect(&self.config.database)
            .await
            .expect("the test database accepts a connection");
        let backend = db.get_database_backend();
        let done = db
            .execute_raw(Statement::from_string(backend, sql.to_owned()))
            .await
            .expect("the statement runs");
        let affected = done.rows_affected();
        db.close().await.expect("the connection closes");
        affected
    }

    /// The integer `sql` answers in its column `n`.
    pub async fn count_sql(&self, sql: &str) -> i64 {
        let db = attune_kit::db::connect(&self.config.database)
            .await
            .expect("the test database accepts a connection");
        let backend = db.get_database_backend();
        let n = db
            .query_one_raw(Statement::from_string(backend, sql.to_owned()))
            .await
            .expect("the query runs")
            .expect("the query answers a row")
            .try_get("", "n")
            .expect("the answer is an integer");
        db.close().await.expect("the connection closes");
        n
    }

    /// Appends an event row for `customer` to profile's feed as ingestion would
    /// store it (an empty payload), for merges to re-attribute before the
    /// events API exists on this branch.
    pub async fn insert_event_row(&self, customer: &str, event_id: &str) {
        let db = attune_kit::db::connect(&self.config.database)
            .await
            .expect("the test database accepts a connection");
        let newest: i64 = db
            .query_one(
                &Query::select()
                    .expr_as(Expr::cust("COALESCE(MAX(sequence), 0)"), Alias::new("n"))
                    .from(Alias::new("profile_feed"))
                    .to_owned(),
            )
            .await
            .expect("the feed is readable")
            .expect("MAX answers a row")
            .try_get("", "n")
            .expect("a sequence is an integer");
        let insert = Query::insert()
            .into_table(Alias::new("profile_feed"))
            .columns(
                [
                    "sequence",
                    "entry_type",
                    "customer_id",
                    "event_id",
                    "event_kind",
                    "occur_time",
                    "commit_time",
                    "payload",
                ]
                .map(Alias::new),
            )
            .values_panic([
                (newest + 1).into(),
                1i16.into(),
                customer.into(),
                event_id.into(),
                1i16.into(),
                0i64.into(),
                0i64.into(),
                Vec::<u8>::new().into(),
            ])
            .to_owned();
        db.execute(&insert).await.expect("the event row is stored");
        db.close().await.expect("the connection closes");
    }

    /// The customer column and payload of every feed row of `entry_type`, in
    /// sequence order.
    pub async fn feed_rows(&self, entry_type: i16) -> Vec<(String, Vec<u8>)> {
        let db = attune_kit::db::connect(&self.config.database)
            .await
            .expect("the test database accepts a connection");
        let rows = db
            .query_all(
                &Query::select()
                    .columns(["customer_id", "payload"].map(Alias::new))
                    .from(Alias::new("profile_feed"))
                    .and_where(Expr::col(Alias::new("entry_type")).eq(entry_type))
                    .order_by(Alias::new("sequence"), sea_orm::Order::Asc)
                    .to_owned(),
            )
            .await
            .expect("the feed is readable");
        let rows = rows
            .into_iter()
            .map(|row| {
                (
                    row.try_get("", "customer_id").expect("a customer column"),
                    row.try_get("", "payload").expect("a payload"),
                )
            })
            .collect();
        db.close().await.expect("the connection closes");
        rows
    }
}
