//! `attune.privacy.v1.DataSubjectService` for profile's data: export a
//! customer's profile, identities, zero-party data, events, traits and segment
//! memberships, with those of the anonymous profiles merged into it; erase them
//! all, leaving tombstones (keyed hashes) so a replay cannot bring them back;
//! and list the merged ids, so the gateway covers them at every service.

use attune_kit::ApiError;
use attune_kit::idempotency::{DataSubject, Request as Logged};
use attune_kit::privacy::{
    Erased, ExportCursor, ExportRequest, LinkedIdsRequest, Subject, export_page, parse_erase,
    struct_from_json,
};
use attune_kit::types::time;
use attune_proto::privacy::v1 as pb;
use attune_proto::privacy::v1::data_subject_service_server::DataSubjectService;
use attune_proto::profile::v1 as profile_pb;
use chrono::{DateTime, Utc};
use sea_orm::sea_query::{Alias, Expr, ExprTrait, OnConflict, Query};
use sea_orm::{ConnectionTrait, DatabaseTransaction, DbErr};
use tonic::{Request, Response, Status};

use crate::Profile;
use crate::feed::{self, NewEntry};
use crate::store::REQUESTS;

/// The name an export or receipt gives this service.
const SERVICE: &str = "attune.profile.v1";

/// What erasure keeps, and why.
const RETAINED: &str = "keyed hashes (HMAC-SHA-256) of the customer id, of the ids merged into \
     it and of their identities, with the erasure time, so that events and identities of the \
     customer replayed later are refused instead of bringing the profile back (GDPR Art. 17 \
     and 5(1)(d)); they cannot be turned back into the ids";

/// Profile's data-subject requests.
#[derive(Debug, Clone)]
pub struct ProfilePrivacyApi {
    profile: Profile,
}

impl ProfilePrivacyApi {
    /// The API over `profile`.
    pub fn new(profile: Profile) -> Self {
        Self { profile }
    }
}

/// Where `customer_id` stands: a live profile, an id merged into one, or unknown.
enum Standing {
    Live,
    MergedInto,
    Unknown,
}

async fn standing(db: &impl ConnectionTrait, customer_id: &str) -> Result<Standing, DbErr> {
    #[derive(sea_orm::FromQueryResult)]
    struct Row {
        merged_into: Option<String>,
    }
    let query = Query::select()
        .column(Alias::new("merged_into"))
        .from(Alias::new("profile_profiles"))
        .and_where(Expr::col(Alias::new("customer_id")).eq(customer_id))
        .to_owned();
    let backend = db.get_database_backend();
    let row = <Row as sea_orm::FromQueryResult>::find_by_statement(
        sea_orm::StatementBuilder::build(&query, &backend),
    )
    .one(db)
    .await?;
    Ok(match row {
        None => Standing::Unknown,
        Some(Row {
            merged_into: Some(_),
        }) => Standing::MergedInto,
        Some(Row { merged_into: None }) => Standing::Live,
    })
}

/// The ids whose data an export or erasure of `customer_id` covers: a live
/// profile and every id merged into it; an id merged elsewhere only itself (its
/// data moved to the survivor, which is exported and erased as the survivor's).
async fn covered_ids(db: &impl ConnectionTrait, customer_id: &str) -> Result<Vec<String>, DbErr> {
    let mut ids = vec![customer_id.to_owned()];
    if let Standing::Live = standing(db, customer_id).await? {
        ids.extend(crate::people::subject::merged_ids(db, customer_id).await?);
    }
    Ok(ids)
}

impl ProfilePrivacyApi {
    /// Up to `count` of the events of `ids` after feed sequence `after`, in
    /// sequence order.
    async fn events(
        &self,
        ids: &[String],
        after: i64,
        count: usize,
    ) -> Result<Vec<(i64, pb::DataRecord)>, ApiError> {
        let events =
            crate::events::subject::events_after(&self.profile.db, ids, after, count as u64)
                .await?;
        Ok(events
            .into_iter()
            .map(|(sequence, event)| {
                let id = event["event_id"].as_str().unwrap_or_default().to_owned();
                let record = pb::DataRecord {
                    kind: "event".to_owned(),
                    id,
                    update_time: None,
                    data: Some(struct_from_json(event)),
                };
                (sequence, record)
            })
            .collect())
    }

    /// The records about the customer besides events.
    async fn about(&self, ids: &[String]) -> Result<Vec<pb::DataRecord>, ApiError> {
        let db = &self.profile.db;
        let people = crate::people::subject::export(db, ids).await?;
        let mut records = json_records(
            people,
            &[
                ("profiles", "profile"),
                ("identities", "identity"),
                ("zero_party_data", "zero_party_data"),
            ],
        );
        let traits = crate::events::subject::traits_export(db, ids).await?;
        records.extend(json_records(traits, &[("traits", "traits")]));
        records.extend(crate::segments::subject::export(db, ids).await?);
        Ok(records)
    }

    async fn erase(&self, customer_id: &str, request_id: &str) -> Result<Erased, ApiError> {
        let profile = &self.profile;
        let now = profile.clock.now();
        let txn = profile.begin_write().await?;
        let fingerprint = profile.key.fingerprint(&Subject { customer_id });
        let outcome = REQUESTS
            .idempotent(
                &txn,
                Logged {
                    operation: "EraseCustomer",
                    request_id,
                    fingerprint: &fingerprint,
                },
                now,
                async |txn| erase_in(profile, txn, customer_id, now).await,
            )
            .await?;
        txn.commit().await?;
        profile.committed();
        Ok(outcome.into_inner())
    }
}

/// Erases `customer_id` (and the ids merged into it) inside `txn`.
async fn erase_in(
    profile: &Profile,
    txn: &DatabaseTransaction,
    customer_id: &str,
    now: DateTime<Utc>,
) -> Result<Erased, ApiError> {
    let ids = covered_ids(txn, customer_id).await?;
    let identities = crate::people::subject::identities_of(txn, &ids).await?;
    let mut digests: Vec<String> = ids
        .iter()
        .map(|id| crate::tombstone::customer_digest(&profile.key, id))
        .collect();
    digests.extend(
        identities
            .iter()
            .map(|identity| crate::tombstone::identity_digest(&profile.key, identity)),
    );
    tombstone(txn, &digests, now).await?;
    // An erasure entry on the feed, under the pseudonym: followers learn that
    // this customer's entries are gone, without the feed keeping the id. It is
    // appended before those entries are deleted, so that it takes the sequence
    // after the newest one ever handed out and stays the newest row: were the
    // customer's rows the newest, appending after the delete would hand their
    // sequences out again, below every follower's cursor, and followers would
    // skip the erasure and every event until the feed passed its old head.
    let pseudonym = profile.key.subject(customer_id);
    let newest = feed::newest_sequence(txn).await?;
    feed::append(
        txn,
        newest,
        vec![NewEntry {
            customer_id: pseudonym.clone(),
            other_customer_id: None,
            event: None,
            change: profile_pb::feed_entry::Change::Erasure(profile_pb::ProfileErasure {
                customer_pseudonym: pseudonym,
                erase_time: Some(time::to_proto(now)),
            }),
        }],
        now,
    )
    .await?;
    // The stored answers of the customer's writes name it (ids, identities,
    // zero-party data): they are forgotten, and retries of them refused.
    let mut forgotten = 0;
    for id in &ids {
        forgotten += REQUESTS
            .forget_subject(txn, &DataSubject::of(&profile.key, id))
            .await?;
    }
    // Each part deletes its own rows (segments keep their member counts right);
    // a test scans every profile table afterwards for anything left behind.
    let erased = crate::segments::subject::erase(txn, &ids).await?
        + crate::events::subject::erase(txn, &ids).await?
        + crate::people::subject::erase(txn, &ids).await?
        + forgotten;
    Ok(Erased::new(erased, now))
}

/// Records the tombstones (a second erasure keeps the first time).
async fn tombstone(
    txn: &DatabaseTransaction,
    digests: &[String],
    now: DateTime<Utc>,
) -> Result<(), DbErr> {
    if digests.is_empty() {
        return Ok(());
    }
    let mut insert = Query::insert()
        .into_table(Alias::new("profile_tombstones"))
        .columns([Alias::new("subject_hash"), Alias::new("erase_time")])
        .on_conflict(
            OnConflict::column(Alias::new("subject_hash"))
                .do_nothing()
                .to_owned(),
        )
        .to_owned();
    for digest in digests {
        insert.values_panic([
            digest.clone().into(),
            attune_kit::db::micros::to_micros(now).into(),
        ]);
    }
    txn.execute(&insert).await?;
    Ok(())
}

/// Export records from a JSON object of arrays: each element of `key` becomes a
/// record of `kind`, identified by its customer id (and, for an identity, its
/// type and stored value), so a record's id is stable across exports.
fn json_records(mut json: serde_json::Value, sections: &[(&str, &str)]) -> Vec<pb::DataRecord> {
    let mut records = Vec::new();
    for (key, kind) in sections {
        let elements: Vec<serde_json::Value> = match json[*key].take() {
            serde_json::Value::Array(elements) => elements,
            // A map by customer id (traits): one record per customer.
            serde_json::Value::Object(by_customer) => by_customer
                .into_iter()
                .map(|(customer_id, data)| serde_json::json!({"customer_id": customer_id, "data": data}))
                .collect(),
            _ => continue,
        };
        for element in elements {
            let text = |field: &str| element[field].as_str().unwrap_or_default().to_owned();
            let id = match *kind {
                "identity" => format!(
                    "{}:{}:{}",
                    text("customer_id"),
                    text("identity_type"),
                    text("value")
                ),
                _ => text("customer_id"),
            };
            records.push(pb::DataRecord {
                kind: (*kind).to_owned(),
                id,
                update_time: None,
                data: Some(struct_from_json(element)),
            });
        }
    }
    records
}

#[tonic::async_trait]
impl DataSubjectService for ProfilePrivacyApi {
    async fn export_customer_data(
        &self,
        request: Request<pb::ExportCustomerDataRequest>,
    ) -> Result<Response<pb::ExportCustomerDataResponse>, Status> {
        let export = ExportRequest::parse(request.into_inner(), ExportCursor::parse)?;
        if export.is_first_page() {
            let profile = &self.profile;
            let txn = profile.begin_write().await.map_err(Status::from)?;
            export
                .claim(REQUESTS, &txn, &profile.key, profile.clock.now())
                .await?;
            txn.commit().await.map_err(ApiError::from)?;
        }
        let customer = &export.customer;
        // A merged id's data is exported with its survivor's, not again.
        let db = &self.profile.db;
        let (records, next) = match standing(db, customer.as_ref())
            .await
            .map_err(ApiError::from)?
        {
            Standing::Live => {
                let ids = covered_ids(db, customer.as_ref())
                    .await
                    .map_err(ApiError::from)?;
                // First the few records about the customer (profiles,
                // identities, zero-party data, traits, segment memberships),
                // built afresh for each page of that part, then the events,
                // read page by page from the feed by sequence.
                export_page(
                    export.after.unwrap_or_default(),
                    export.limit,
                    async || self.about(&ids).await,
                    async |after, count| self.events(&ids, after, count).await,
                )
                .await?
            }
            Standing::MergedInto | Standing::Unknown => (Vec::new(), None),
        };
        Ok(Response::new(pb::ExportCustomerDataResponse {
            service: SERVICE.to_owned(),
            records,
            next_page_token: next.map(ExportCursor::token).unwrap_or_default(),
        }))
    }

    async fn erase_customer(
        &self,
        request: Request<pb::EraseCustomerRequest>,
    ) -> Result<Response<pb::EraseCustomerResponse>, Status> {
        let (customer, request_id) = parse_erase(request.into_inner())?;
        let erased = self.erase(customer.as_ref(), request_id.as_ref()).await?;
        Ok(Response::new(
            erased.response(SERVICE, vec![RETAINED.to_owned()]),
        ))
    }

    async fn list_linked_customer_ids(
        &self,
        request: Request<pb::ListLinkedCustomerIdsRequest>,
    ) -> Result<Response<pb::ListLinkedCustomerIdsResponse>, Status> {
        let request = LinkedIdsRequest::parse(request.into_inner())?;
        let customer = &request.customer;
        let db = &self.profile.db;
        let linked = match standing(db, customer.as_ref())
            .await
            .map_err(ApiError::from)?
        {
            Standing::Live => crate::people::subject::merged_ids(db, customer.as_ref())
                .await
                .map_err(ApiError::from)?,
            Standing::MergedInto | Standing::Unknown => Vec::new(),
        };
        Ok(Response::new(request.page(&linked)))
    }
}
