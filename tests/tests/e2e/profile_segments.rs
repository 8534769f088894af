//! Profile's segments over real gRPC on SQLite and PostgreSQL: definitions (create,
//! versions, AIP-134 masks, idempotent retries, delete), previews, memberships
//! evaluated on create and update and kept by the feed follower, their listings,
//! the feed entries they leave, and bad input for every RPC.
//!
//! Customers and their zero-party data come from ProfileService; until event
//! ingestion is in this branch, only zero-party conditions can match. The sweep's
//! test changes tables behind the APIs' back, as only a repair would notice.

#![allow(clippy::unwrap_used)] // panics fail tests

use attune_kit::sea_orm::sea_query::{Alias, Expr, ExprTrait, Query};
use attune_kit::sea_orm::{ConnectionTrait, DatabaseConnection};
use attune_proto::common::v1 as common;
use attune_proto::profile::v1 as pb;
use attune_proto::prost::Message;
use attune_tests::bad_input::{Cases, assert_each_rejected};
use attune_tests::consent_requests::{decision, record, request_id};
use attune_tests::profile_events::{cart, eur, item, purchase, view};
use attune_tests::profile_people::{create_anonymous, create_known, merge, set_zero_party};
use attune_tests::{TestApp, backend_tests, consent_pb, eventually, every_page, violated_fields};
use pb::segment_condition::Condition as C;
use prost_types::FieldMask;
use tonic::Code;

// ---- requests ----

fn condition(condition: C) -> pb::SegmentRule {
    pb::SegmentRule {
        rule: Some(pb::segment_rule::Rule::Condition(pb::SegmentCondition {
            condition: Some(condition),
        })),
    }
}

fn favourite(ids: &[&str]) -> pb::SegmentRule {
    condition(C::FavouriteCategory(pb::FavouriteCategoryCondition {
        category_ids: ids.iter().map(|&id| id.to_owned()).collect(),
    }))
}

fn lapsed(days: i32) -> pb::SegmentRule {
    condition(C::Lapsed(pb::LapsedCondition {
        min_days_since_purchase: days,
        max_days_since_purchase: 0,
    }))
}

fn not(rule: pb::SegmentRule) -> pb::SegmentRule {
    pb::SegmentRule {
        rule: Some(pb::segment_rule::Rule::Not(Box::new(rule))),
    }
}

fn segment(segment_id: &str, rule: pb::SegmentRule) -> pb::Segment {
    pb::Segment {
        segment_id: segment_id.into(),
        display_name: format!("Segment {segment_id}"),
        description: "For the tests.".into(),
        rule: Some(rule),
        ..Default::default()
    }
}

fn create(segment_id: &str, rule: pb::SegmentRule) -> pb::CreateSegmentRequest {
    pb::CreateSegmentRequest {
        segment: Some(segment(segment_id, rule)),
        request_id: request_id(),
    }
}

fn update(segment: pb::Segment, paths: &[&str]) -> pb::UpdateSegmentRequest {
    pb::UpdateSegmentRequest {
        segment: Some(segment),
        request_id: request_id(),
        update_mask: (!paths.is_empty()).then(|| FieldMask {
            paths: paths.iter().map(|&p| p.to_owned()).collect(),
        }),
    }
}

async fn create_segment(app: &TestApp, request: pb::CreateSegmentRequest) -> pb::Segment {
    app.segments()
        .create_segment(request)
        .await
        .expect("the segment is created")
        .into_inner()
        .segment
        .unwrap()
}

async fn get_segment(app: &TestApp, segment_id: &str) -> Result<pb::Segment, tonic::Status> {
    app.segments()
        .get_segment(pb::GetSegmentRequest {
            segment_id: segment_id.into(),
        })
        .await
        .map(|response| response.into_inner().segment.unwrap())
}

async fn members(app: &TestApp, segment_id: &str, page_size: i32) -> Vec<String> {
    every_page(async |page_token| {
        let page = app
            .segments()
            .list_segment_members(pb::ListSegmentMembersRequest {
                segment_id: segment_id.into(),
                page_size,
                page_token,
            })
            .await
            .unwrap()
            .into_inner();
        for membership in &page.memberships {
            assert_eq!(membership.segment_id, segment_id);
            assert!(membership.join_time.is_some());
        }
        (
            page.memberships
                .into_iter()
                .map(|m| m.customer_id)
                .collect(),
            page.next_page_token,
        )
    })
    .await
}

async fn customer_segments(app: &TestApp, customer_id: &str) -> Vec<pb::SegmentMembership> {
    every_page(async |page_token| {
        let page = app
            .segments()
            .list_customer_segments(pb::ListCustomerSegmentsRequest {
                customer_id: customer_id.into(),
                page_size: 1,
                page_token,
            })
            .await
            .unwrap()
            .into_inner();
        (page.memberships, page.next_page_token)
    })
    .await
}

// ---- customers through ProfileService ----

async fn database(app: &TestApp) -> DatabaseConnection {
    attune_kit::db::connect(&app.config.database).await.unwrap()
}

/// A known profile `customer_id` with personalization granted (browsing,
/// purchases, preferences).
async fn known_customer(app: &TestApp, customer_id: &str) {
    app.create_profile(create_known(customer_id, vec![])).await;
    app.grant(customer_id, &["personalization"]).await;
}

fn favourites_data(favourites: &[&str]) -> pb::ZeroPartyData {
    pb::ZeroPartyData {
        favourite_category_ids: favourites.iter().map(|&f| f.to_owned()).collect(),
        ..Default::default()
    }
}

/// Stores `customer_id`'s favourite categories through SetZeroPartyData (which
/// puts the change on the feed).
async fn set_favourites(app: &TestApp, customer_id: &str, favourites: &[&str]) {
    app.profiles()
        .set_zero_party_data(set_zero_party(
            customer_id,
            favourites_data(favourites),
            &["favourite_category_ids"],
            common::Channel::Web,
        ))
        .await
        .expect("the favourites are stored");
}

/// Replaces `customer_id`'s zero-party data in its table, leaving no feed entry:
/// a change only a sweep notices.
async fn set_favourites_quietly(db: &DatabaseConnection, customer_id: &str, favourites: &[&str]) {
    let update = Query::update()
        .table(Alias::new("profile_zero_party"))
        .value(
            Alias::new("data"),
            favourites_data(favourites).encode_to_vec(),
        )
        .and_where(Expr::col(Alias::new("customer_id")).eq(customer_id))
        .to_owned();
    assert_eq!(db.execute(&update).await.unwrap().rows_affected(), 1);
}

/// How many customers `rule` matches now.
async fn preview_count(app: &TestApp, rule: &pb::SegmentRule) -> i64 {
    app.segments()
        .preview_segment(pb::PreviewSegmentRequest {
            rule: Some(rule.clone()),
        })
        .await
        .unwrap()
        .into_inner()
        .member_count
}

/// The segment membership changes on the feed, in order, as (segment, customer,
/// entered, version).
async fn membership_entries(db: &DatabaseConnection) -> Vec<(String, String, bool, i32)> {
    let rows = db
        .query_all(
            &Query::select()
                .column(Alias::new("payload"))
                .from(Alias::new("profile_feed"))
                .and_where(Expr::col(Alias::new("entry_type")).eq(5))
                .order_by(Alias::new("sequence"), attune_kit::sea_orm::Order::Asc)
                .to_owned(),
        )
        .await
        .unwrap();
    rows.into_iter()
        .map(|row| {
            let payload: Vec<u8> = row.try_get("", "payload").unwrap();
            match pb::FeedEntry::decode(payload.as_slice()).unwrap().change {
                Some(pb::feed_entry::Change::SegmentMembershipChange(change)) => (
                    change.segment_id,
                    change.customer_id,
                    change.entered,
                    change.segment_version,
                ),
                other => panic!("entry type 5 holds a membership change, not {other:?}"),
            }
        })
        .collect()
}

fn code<T: std::fmt::Debug>(result: Result<T, tonic::Status>) -> Code {
    result.expect_err("the call is refused").code()
}

backend_tests! {
    async fn segments_are_created_read_listed_and_deleted(app) {
        let created = create_segment(&app, create("lapsed_60", lapsed(60))).await;
        assert_eq!(created.segment_id, "lapsed_60");
        assert_eq!(created.display_name, "Segment lapsed_60");
        assert_eq!(created.description, "For the tests.");
        assert_eq!(created.rule, Some(lapsed(60)));
        assert_eq!(created.version, 1);
        assert_eq!(created.member_count, 0);
        assert!(created.create_time.is_some());
        assert_eq!(created.create_time, created.update_time);
        assert!(created.evaluate_time.is_some(), "evaluated on creation");
        assert_eq!(get_segment(&app, "lapsed_60").await.unwrap(), created);

        for id in ["b_segment", "c_segment", "a_segment"] {
            create_segment(&app, create(id, lapsed(30))).await;
        }
        let listed: Vec<String> = every_page(async |page_token| {
            let page = app
                .segments()
                .list_segments(pb::ListSegmentsRequest { page_size: 3, page_token })
                .await
                .unwrap()
                .into_inner();
            assert!(page.segments.len() <= 3);
            (
                page.segments.into_iter().map(|s| s.segment_id).collect(),
                page.next_page_token,
            )
        })
        .await;
        assert_eq!(listed, ["a_segment", "b_segment", "c_segment", "lapsed_60"]);

        app.segments()
            .delete_segment(pb::DeleteSegmentRequest {
                segment_id: "b_segment".into(),
                request_id: request_id(),
            })
            .await
            .unwrap();
        assert_eq!(code(get_segment(&app, "b_segment").await), Code::NotFound);
        let all = app
            .segments()
            .list_segments(pb::ListSegmentsRequest::default())
            .await
            .unwrap()
            .into_inner();
        assert_eq!(all.segments.len(), 3);
        assert!(all.next_page_token.is_empty());
    }

    async fn create_is_idempotent_by_request_id_and_ids_are_unique(app) {
        let request = create("high_value", lapsed(10));
        let first = create_segment(&app, request.clone()).await;
        let again = create_segment(&app, request.clone()).await;
        assert_eq!(again, first, "a retry answers as the first call");

        let mut reused = request.clone();
        reused.segment.as_mut().unwrap().display_name = "Something else".into();
        assert_eq!(code(app.segments().create_segment(reused).await), Code::AlreadyExists);

        let taken = create("high_value", lapsed(10));
        assert_eq!(code(app.segments().create_segment(taken).await), Code::AlreadyExists);
        assert_eq!(get_segment(&app, "high_value").await.unwrap(), first);
    }

    async fn updates_follow_the_mask_and_bump_the_version(app) {
        create_segment(&app, create("lapsed", lapsed(60))).await;

        // No mask: exactly the populated fields.
        let only_name = pb::Segment {
            segment_id: "lapsed".into(),
            display_name: "Lapsed customers".into(),
            ..Default::default()
        };
        let request = update(only_name, &[]);
        let v2 = app.segments().update_segment(request.clone()).await.unwrap().into_inner().segment.unwrap();
        assert_eq!(v2.version, 2);
        assert_eq!(v2.display_name, "Lapsed customers");
        assert_eq!(v2.description, "For the tests.");
        assert_eq!(v2.rule, Some(lapsed(60)));
        assert_ne!(v2.update_time, v2.create_time);
        // A retry answers as the first call and bumps nothing.
        let replay = app.segments().update_segment(request).await.unwrap().into_inner().segment.unwrap();
        assert_eq!(replay, v2);
        assert_eq!(get_segment(&app, "lapsed").await.unwrap().version, 2);

        // A named field left empty is cleared; populated fields not named are ignored.
        let mut clear = segment("lapsed", lapsed(90));
        clear.description.clear();
        clear.display_name = "Ignored".into();
        let v3 = app.segments().update_segment(update(clear, &["description"])).await.unwrap().into_inner().segment.unwrap();
        assert_eq!(v3.version, 3);
        assert_eq!(v3.description, "");
        assert_eq!(v3.display_name, "Lapsed customers");
        assert_eq!(v3.rule, Some(lapsed(60)));

        // A rule sent replaces the whole rule.
        let v4 = app.segments().update_segment(update(segment("lapsed", not(lapsed(90))), &["rule"])).await.unwrap().into_inner().segment.unwrap();
        assert_eq!(v4.version, 4);
        assert_eq!(v4.rule, Some(not(lapsed(90))));
        assert_eq!(get_segment(&app, "lapsed").await.unwrap().rule, Some(not(lapsed(90))));

        // The rule and the display name cannot be cleared.
        let no_rule = pb::Segment { segment_id: "lapsed".into(), ..Default::default() };
        let status = app.segments().update_segment(update(no_rule.clone(), &["rule"])).await.unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument);
        assert_eq!(violated_fields(&status), ["segment.rule"]);
        let status = app.segments().update_segment(update(no_rule, &["display_name"])).await.unwrap_err();
        assert_eq!(violated_fields(&status), ["segment.display_name"]);

        let unknown = update(segment("no_such_segment", lapsed(1)), &[]);
        assert_eq!(code(app.segments().update_segment(unknown).await), Code::NotFound);
        assert_eq!(get_segment(&app, "lapsed").await.unwrap().version, 4);
    }

    async fn delete_is_idempotent_by_request_id(app) {
        create_segment(&app, create("to_delete", lapsed(5))).await;
        let request = pb::DeleteSegmentRequest {
            segment_id: "to_delete".into(),
            request_id: request_id(),
        };
        app.segments().delete_segment(request.clone()).await.unwrap();
        app.segments().delete_segment(request).await.expect("a retry succeeds");
        let again = pb::DeleteSegmentRequest {
            segment_id: "to_delete".into(),
            request_id: request_id(),
        };
        assert_eq!(code(app.segments().delete_segment(again).await), Code::NotFound);
    }

    async fn preview_on_an_empty_database_counts_nobody(app) {
        let preview = app
            .segments()
            .preview_segment(pb::PreviewSegmentRequest { rule: Some(not(lapsed(60))) })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(preview, pb::PreviewSegmentResponse::default());
    }

    async fn unknown_segments_and_customers_are_not_found(app) {
        let members = app
            .segments()
            .list_segment_members(pb::ListSegmentMembersRequest {
                segment_id: "nobody_knows".into(),
                ..Default::default()
            })
            .await;
        assert_eq!(code(members), Code::NotFound);
        let segments = app
            .segments()
            .list_customer_segments(pb::ListCustomerSegmentsRequest {
                customer_id: "cust-unknown".into(),
                ..Default::default()
            })
            .await;
        assert_eq!(code(segments), Code::NotFound);
        assert_eq!(code(get_segment(&app, "nobody_knows").await), Code::NotFound);
    }

    async fn memberships_are_evaluated_on_create_and_update_and_announced_on_the_feed(app) {
        let db = database(&app).await;
        // Five shoe lovers, one who withdrew consent after sharing, one who likes
        // bags, and an anonymous visitor merged into the first.
        let lovers = ["cust-1", "cust-2", "cust-3", "cust-4", "cust-5"];
        for id in lovers {
            known_customer(&app, id).await;
            set_favourites(&app, id, &["shoes", "hats"]).await;
        }
        known_customer(&app, "cust-withdrawn").await;
        set_favourites(&app, "cust-withdrawn", &["shoes"]).await;
        app.record_consent(record(
            "cust-withdrawn",
            vec![decision("personalization", consent_pb::Decision::Withdrawn)],
        ))
        .await;
        known_customer(&app, "cust-bags").await;
        set_favourites(&app, "cust-bags", &["bags"]).await;
        let anonymous = app.create_profile(create_anonymous("anon-1", vec![])).await;
        app.profiles()
            .merge_profiles(merge(&anonymous.customer_id, "cust-1"))
            .await
            .unwrap();
        // The withdrawal reaches profile's consent checker within a second.
        eventually("the withdrawal to count", async || {
            preview_count(&app, &favourite(&["shoes"])).await == 5
        })
        .await;

        let preview = app
            .segments()
            .preview_segment(pb::PreviewSegmentRequest { rule: Some(favourite(&["shoes"])) })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(preview.member_count, 5);
        assert_eq!(preview.evaluated_count, 7, "merged ids are not evaluated");
        assert_eq!(preview.sample_customer_ids, lovers);

        let created = create_segment(&app, create("shoe_lovers", favourite(&["shoes"]))).await;
        assert_eq!(created.member_count, 5);
        assert_eq!(members(&app, "shoe_lovers", 2).await, lovers);
        let negated = create_segment(&app, create("not_shoe_lovers", not(favourite(&["shoes"])))).await;
        // Without consent the condition never matches, so its negation does.
        assert_eq!(negated.member_count, 2);
        assert_eq!(members(&app, "not_shoe_lovers", 0).await, ["cust-bags", "cust-withdrawn"]);

        // A merged id resolves to the surviving profile.
        let memberships = customer_segments(&app, &anonymous.customer_id).await;
        assert_eq!(memberships.len(), 1);
        assert_eq!(memberships[0].segment_id, "shoe_lovers");
        assert_eq!(memberships[0].display_name, "Segment shoe_lovers");
        assert_eq!(memberships[0].customer_id, "cust-1");
        assert!(customer_segments(&app, "cust-3").await.iter().any(|m| m.segment_id == "shoe_lovers"));

        let mut expected: Vec<(String, String, bool, i32)> = lovers
            .iter()
            .map(|&id| ("shoe_lovers".to_owned(), id.to_owned(), true, 1))
            .collect();
        expected.extend(
            ["cust-bags", "cust-withdrawn"]
                .map(|id| ("not_shoe_lovers".to_owned(), id.to_owned(), true, 1)),
        );
        assert_eq!(membership_entries(&db).await, expected);

        // A new rule: everyone leaves but the bag lover, who enters.
        let changed = app
            .segments()
            .update_segment(update(segment("shoe_lovers", favourite(&["bags"])), &["rule"]))
            .await
            .unwrap()
            .into_inner()
            .segment
            .unwrap();
        assert_eq!(changed.version, 2);
        assert_eq!(changed.member_count, 1);
        assert_eq!(members(&app, "shoe_lovers", 0).await, ["cust-bags"]);
        let after_update = membership_entries(&db).await;
        let mut tail: Vec<_> = after_update[expected.len()..].to_vec();
        tail.sort();
        let mut wanted: Vec<_> = lovers
            .iter()
            .map(|&id| ("shoe_lovers".to_owned(), id.to_owned(), false, 2))
            .collect();
        wanted.push(("shoe_lovers".to_owned(), "cust-bags".to_owned(), true, 2));
        wanted.sort();
        assert_eq!(tail, wanted);

        // Deleting a segment makes every member leave, on the feed too.
        app.segments()
            .delete_segment(pb::DeleteSegmentRequest {
                segment_id: "not_shoe_lovers".into(),
                request_id: request_id(),
            })
            .await
            .unwrap();
        let after_delete = membership_entries(&db).await;
        let mut exits: Vec<_> = after_delete[after_update.len()..].to_vec();
        exits.sort();
        assert_eq!(
            exits,
            ["cust-bags", "cust-withdrawn"]
                .map(|id| ("not_shoe_lovers".to_owned(), id.to_owned(), false, 1))
        );
        assert!(customer_segments(&app, "cust-withdrawn").await.is_empty());
    }
    async fn the_follower_reevaluates_customers_a_feed_entry_touched(app) {
        let db = database(&app).await;
        known_customer(&app, "cust-f").await;
        create_segment(&app, create("hat_lovers", favourite(&["hats"]))).await;
        assert!(members(&app, "hat_lovers", 0).await.is_empty());

        set_favourites(&app, "cust-f", &["hats"]).await;
        eventually("cust-f joining hat_lovers", async || {
            members(&app, "hat_lovers", 0).await == ["cust-f"]
        })
        .await;
        assert_eq!(get_segment(&app, "hat_lovers").await.unwrap().member_count, 1);

        set_favourites(&app, "cust-f", &["gloves"]).await;
        eventually("cust-f leaving hat_lovers", async || {
            members(&app, "hat_lovers", 0).await.is_empty()
        })
        .await;
        assert_eq!(get_segment(&app, "hat_lovers").await.unwrap().member_count, 0);
        let entries = membership_entries(&db).await;
        assert_eq!(
            entries,
            [
                ("hat_lovers".to_owned(), "cust-f".to_owned(), true, 1),
                ("hat_lovers".to_owned(), "cust-f".to_owned(), false, 1),
            ]
        );
    }
}

backend_tests! {
    async fn a_merge_on_the_feed_moves_memberships_to_the_survivor(app) {
        let db = database(&app).await;
        known_customer(&app, "cust-known").await;
        let visitor = app.create_profile(create_anonymous("anon-visitor", vec![])).await;
        let visitor = visitor.customer_id;
        app.grant(&visitor, &["personalization"]).await;
        set_favourites(&app, &visitor, &["hats"]).await;
        create_segment(&app, create("hat_lovers", favourite(&["hats"]))).await;
        assert_eq!(members(&app, "hat_lovers", 0).await, vec![visitor.clone()]);

        // The merge moves the favourites the survivor has not set.
        app.profiles()
            .merge_profiles(merge(&visitor, "cust-known"))
            .await
            .unwrap();
        eventually("the survivor replacing the merged id", async || {
            members(&app, "hat_lovers", 0).await == ["cust-known"]
        })
        .await;
        let memberships = customer_segments(&app, &visitor).await;
        assert_eq!(memberships.len(), 1);
        assert_eq!(memberships[0].customer_id, "cust-known");
        assert_eq!(get_segment(&app, "hat_lovers").await.unwrap().member_count, 1);
        let entries = membership_entries(&db).await;
        assert_eq!(entries.len(), 3, "{entries:?}");
        assert_eq!(entries[0], ("hat_lovers".to_owned(), visitor.clone(), true, 1));
        let mut after_merge = entries[1..].to_vec();
        after_merge.sort();
        assert_eq!(
            after_merge,
            [
                ("hat_lovers".to_owned(), visitor.clone(), false, 1),
                ("hat_lovers".to_owned(), "cust-known".to_owned(), true, 1),
            ]
        );
    }
    async fn time_based_rules_are_evaluated_on_profiles_clock(app, clock) {
        app.create_profile(create_known("cust-birthday", vec![])).await;
        // Profiling covers demographics, where the birthday belongs.
        app.grant("cust-birthday", &["profiling"]).await;
        let data = pb::ZeroPartyData {
            birthday: Some(pb::Birthday { month: 3, day: 1 }),
            ..Default::default()
        };
        app.profiles()
            .set_zero_party_data(set_zero_party("cust-birthday", data, &["birthday"], common::Channel::App))
            .await
            .expect("the birthday is stored");
        let noon = |month, day| {
            chrono::NaiveDate::from_ymd_opt(2027, month, day)
                .unwrap()
                .and_hms_opt(12, 0, 0)
                .unwrap()
                .and_utc()
        };
        clock.set(noon(2, 20));
        let week = condition(C::Birthday(pb::BirthdayCondition { within_days: 7 }));
        let created = create_segment(&app, create("birthday_week", week.clone())).await;
        assert_eq!(created.member_count, 0, "1 March is 9 days after 20 February");

        clock.set(noon(2, 22));
        let preview = app
            .segments()
            .preview_segment(pb::PreviewSegmentRequest { rule: Some(week.clone()) })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(preview.sample_customer_ids, ["cust-birthday"]);
        // An update evaluates everyone again, at the clock's time.
        let updated = app
            .segments()
            .update_segment(update(segment("birthday_week", week), &["rule"]))
            .await
            .unwrap()
            .into_inner()
            .segment
            .unwrap();
        assert_eq!(updated.member_count, 1);
        assert_eq!(
            updated.evaluate_time,
            Some(attune_kit::types::time::to_proto(noon(2, 22)))
        );
        assert_eq!(members(&app, "birthday_week", 0).await, ["cust-birthday"]);
    }
}

/// Deletes `customer_id`'s profile and memberships as a generic erasure would,
/// leaving the member counts as they were.
async fn delete_behind_the_counts(db: &DatabaseConnection, customer_id: &str) {
    for table in [
        "profile_segment_members",
        "profile_profiles",
        "profile_zero_party",
    ] {
        let delete = Query::delete()
            .from_table(Alias::new(table))
            .and_where(Expr::col(Alias::new("customer_id")).eq(customer_id))
            .to_owned();
        db.execute(&delete).await.unwrap();
    }
}

backend_tests! {
    async fn the_sweep_reevaluates_everyone_and_repairs_member_counts(app) {
        let db = database(&app).await;
        for id in ["cust-quiet", "cust-gone"] {
            known_customer(&app, id).await;
        }
        set_favourites(&app, "cust-quiet", &["gloves"]).await;
        set_favourites(&app, "cust-gone", &["hats"]).await;
        let created = create_segment(&app, create("hat_lovers", favourite(&["hats"]))).await;
        assert_eq!(created.member_count, 1);

        // Data that changed without a feed entry, and rows deleted behind the
        // counts: only a sweep notices.
        // (No check of the stale counts here: the first replica's start-up
        // sweep may land between these two edits, and has done so in CI.)
        set_favourites_quietly(&db, "cust-quiet", &["hats"]).await;
        delete_behind_the_counts(&db, "cust-gone").await;

        // A second replica sweeps as it starts. The first replica's own start-up
        // sweep may still land after the quiet edit was made but before it was
        // read, so wait for a sweep that saw the edit, not just for any sweep.
        let _pod = app.pod("profile").await;
        eventually("the sweep", async || {
            let segment = get_segment(&app, "hat_lovers").await.unwrap();
            segment.evaluate_time != created.evaluate_time
                && segment.member_count == 1
                && members(&app, "hat_lovers", 0).await == ["cust-quiet"]
        })
        .await;
        assert_eq!(get_segment(&app, "hat_lovers").await.unwrap().member_count, 1);
    }
}

/// The examples segments.proto documents, as requests.
fn documented_examples() -> Vec<(&'static str, pb::SegmentRule)> {
    let duration = |seconds| Some(prost_types::Duration { seconds, nanos: 0 });
    let all = |rules| pb::SegmentRule {
        rule: Some(pb::segment_rule::Rule::All(pb::SegmentRuleGroup { rules })),
    };
    vec![
        (
            "cart_abandoned_24h",
            condition(C::CartAbandoned(pb::CartAbandonedCondition {
                min_idle: duration(86_400),
                max_idle: None,
                min_cart_value: None,
            })),
        ),
        ("lapsed_60_days", lapsed(60)),
        (
            "high_value",
            condition(C::Spend(pb::SpendCondition {
                min_total_spend: Some(common::Money {
                    amount_minor: 50_000,
                    currency_code: "EUR".into(),
                }),
                max_total_spend: None,
                within_days: 365,
            })),
        ),
        (
            "new_customer",
            all(vec![
                condition(C::FirstSeen(pb::FirstSeenCondition { within_days: 30 })),
                condition(C::OrderCount(pb::OrderCountCondition {
                    min_orders: 1,
                    max_orders: 0,
                    within_days: 0,
                })),
            ]),
        ),
        (
            "store_only_shopper",
            all(vec![
                condition(C::PurchaseChannelShare(pb::PurchaseChannelShareCondition {
                    min_store_share: 1.0,
                    max_store_share: None,
                })),
                condition(C::OrderCount(pb::OrderCountCondition {
                    min_orders: 1,
                    max_orders: 0,
                    within_days: 0,
                })),
            ]),
        ),
    ]
}

backend_tests! {
    async fn the_documented_examples_are_valid_segments(app) {
        known_customer(&app, "cust-new").await;
        for (segment_id, rule) in documented_examples() {
            let preview = app
                .segments()
                .preview_segment(pb::PreviewSegmentRequest { rule: Some(rule.clone()) })
                .await
                .unwrap()
                .into_inner();
            assert_eq!(preview.evaluated_count, 1, "{segment_id}");
            // Without any events the customer is in none of them.
            assert_eq!(preview.member_count, 0, "{segment_id}");
            let created = create_segment(&app, create(segment_id, rule.clone())).await;
            assert_eq!(created.rule, Some(rule), "{segment_id}");
            assert_eq!(created.member_count, 0, "{segment_id}");
        }
        assert!(customer_segments(&app, "cust-new").await.is_empty());
    }
}

// ---- with real events ----

/// The members of each documented example segment, by segment id.
async fn example_members(app: &TestApp) -> Vec<(&'static str, Vec<String>)> {
    let mut all = Vec::new();
    for (segment_id, _) in documented_examples() {
        all.push((segment_id, members(app, segment_id, 0).await));
    }
    all
}

backend_tests! {
    async fn the_documented_examples_follow_real_events(app, clock) {
        let now = clock.clock().now();
        let days = |n| now - chrono::TimeDelta::days(n);
        let shoes = |price| item("sku-shoe", 1, Some(eur(price)), &["shoes"], "acme");
        for id in ["big-spender", "lapsed-buyer", "cart-idle", "store-shopper", "browser"] {
            app.grant(id, &["personalization"]).await;
        }
        let mut in_store = purchase("e-store", "store-shopper", days(5), vec![shoes(4_000)], eur(4_000));
        in_store.channel = common::Channel::Store.into();
        let response = app
            .ingest(vec![
                purchase("e-big-1", "big-spender", days(100), vec![shoes(30_000)], eur(30_000)),
                purchase("e-big-2", "big-spender", days(10), vec![shoes(30_000)], eur(30_000)),
                purchase("e-lapsed", "lapsed-buyer", days(70), vec![shoes(3_000)], eur(3_000)),
                cart(
                    pb::EventKind::AddToCart,
                    "e-cart",
                    "cart-idle",
                    now - chrono::TimeDelta::hours(25),
                    vec![shoes(5_000)],
                ),
                in_store,
                view("e-view", "browser", days(1), "sku-shoe"),
            ])
            .await;
        assert_eq!(response.accepted_count, 6, "{response:?}");

        for (segment_id, rule) in documented_examples() {
            create_segment(&app, create(segment_id, rule)).await;
        }
        let expected = |cart: &[&str], lapsed: &[&str], new: &[&str]| {
            let owned = |ids: &[&str]| ids.iter().map(|&id| id.to_owned()).collect::<Vec<_>>();
            vec![
                ("cart_abandoned_24h", owned(cart)),
                ("lapsed_60_days", owned(lapsed)),
                ("high_value", owned(&["big-spender"])),
                ("new_customer", owned(new)),
                ("store_only_shopper", owned(&["store-shopper"])),
            ]
        };
        assert_eq!(example_members(&app).await, expected(&["cart-idle"], &["lapsed-buyer"], &["store-shopper"])
        );

        // New events re-evaluate their customers through the feed: a purchase
        // ends the lapse, and empties the cart of a customer first seen a day
        // ago, who is a new customer now.
        app.ingest(vec![
            purchase("e-back", "lapsed-buyer", now, vec![shoes(1_000)], eur(1_000)),
            purchase("e-checkout", "cart-idle", now, vec![shoes(5_000)], eur(5_000)),
        ])
        .await;
        eventually("the follower applying the purchases", async || {
            example_members(&app).await == expected(&[], &[], &["cart-idle", "store-shopper"])
        })
        .await;

        // Time alone: a cart left for a day is abandoned once a re-evaluation
        // (here an update; in service, the sweep) runs after that day.
        app.ingest(vec![cart(pb::EventKind::AddToCart, "e-cart-2", "browser", now, vec![shoes(2_000)])])
            .await;
        clock.advance(chrono::TimeDelta::hours(24));
        let abandoned = &documented_examples()[0].1;
        app.segments()
            .update_segment(update(segment("cart_abandoned_24h", abandoned.clone()), &["rule"]))
            .await
            .unwrap();
        assert_eq!(members(&app, "cart_abandoned_24h", 0).await, ["browser"]);
    }
}

backend_tests! {
    async fn memberships_are_exported_and_erased_with_the_customer(app) {
        let db = database(&app).await;
        for id in ["cust-erased", "cust-kept"] {
            known_customer(&app, id).await;
            set_favourites(&app, id, &["hats"]).await;
        }
        create_segment(&app, create("hat_lovers", favourite(&["hats"]))).await;
        assert_eq!(members(&app, "hat_lovers", 0).await, ["cust-erased", "cust-kept"]);

        let exported = app.export_customer("cust-erased", &request_id()).await;
        let memberships: Vec<_> = exported
            .iter()
            .filter(|message| message.service == "attune.profile.v1")
            .flat_map(|message| message.records.iter())
            .filter(|record| record.kind == "segment_membership")
            .collect();
        assert_eq!(memberships.len(), 1, "{exported:?}");
        assert_eq!(memberships[0].id, "hat_lovers/cust-erased");

        app.erase_customer("cust-erased", &request_id()).await;
        assert_eq!(members(&app, "hat_lovers", 0).await, ["cust-kept"]);
        assert_eq!(get_segment(&app, "hat_lovers").await.unwrap().member_count, 1);
        // The feed keeps no membership change naming the erased customer.
        let entries = membership_entries(&db).await;
        assert_eq!(
            entries,
            [("hat_lovers".to_owned(), "cust-kept".to_owned(), true, 1)]
        );
        let refused = app
            .segments()
            .list_customer_segments(pb::ListCustomerSegmentsRequest {
                customer_id: "cust-erased".into(),
                ..Default::default()
            })
            .await;
        assert_eq!(code(refused), Code::NotFound);
    }
}

backend_tests! {
    async fn consent_changes_reevaluate_the_customer(app) {
        let db = database(&app).await;
        known_customer(&app, "cust-c").await;
        set_favourites(&app, "cust-c", &["hats"]).await;
        create_segment(&app, create("hat_lovers", favourite(&["hats"]))).await;
        assert_eq!(members(&app, "hat_lovers", 0).await, ["cust-c"]);

        let decide = |decision| {
            record("cust-c", vec![attune_tests::consent_requests::decision("personalization", decision)])
        };
        app.record_consent(decide(consent_pb::Decision::Withdrawn)).await;
        eventually("the withdrawal ending the membership", async || {
            members(&app, "hat_lovers", 0).await.is_empty()
        })
        .await;
        app.record_consent(decide(consent_pb::Decision::Granted)).await;
        eventually("a new grant restoring it", async || {
            members(&app, "hat_lovers", 0).await == ["cust-c"]
        })
        .await;
        assert_eq!(
            membership_entries(&db).await,
            [
                ("hat_lovers".to_owned(), "cust-c".to_owned(), true, 1),
                ("hat_lovers".to_owned(), "cust-c".to_owned(), false, 1),
                ("hat_lovers".to_owned(), "cust-c".to_owned(), true, 1),
            ]
        );
    }
}

// ---- bad input ----

fn rule_cases<R: 'static>(
    cases: Cases<R>,
    prefix: &'static str,
    set: fn(&mut R, pb::SegmentRule),
) -> Cases<R> {
    // The field paths are static strings per prefix.
    let path =
        |suffix: &str| -> &'static str { Box::leak(format!("{prefix}{suffix}").into_boxed_str()) };
    cases
        .invalid("empty rule", path(""), move |r| {
            set(r, pb::SegmentRule { rule: None })
        })
        .invalid("empty group", path(".all.rules"), move |r| {
            set(
                r,
                pb::SegmentRule {
                    rule: Some(pb::segment_rule::Rule::All(pb::SegmentRuleGroup {
                        rules: vec![],
                    })),
                },
            )
        })
        .invalid(
            "nested bad window",
            path(".not.condition.lapsed.min_days_since_purchase"),
            move |r| set(r, not(lapsed(0))),
        )
        .invalid(
            "foreign currency",
            path(".condition.spend.min_total_spend.currency_code"),
            move |r| {
                set(
                    r,
                    condition(C::Spend(pb::SpendCondition {
                        min_total_spend: Some(common::Money {
                            amount_minor: 50_000,
                            currency_code: "USD".into(),
                        }),
                        max_total_spend: None,
                        within_days: 0,
                    })),
                )
            },
        )
        .invalid("nine levels", path(&".not".repeat(8)), move |r| {
            let mut rule = lapsed(1);
            for _ in 0..8 {
                rule = not(rule);
            }
            set(r, rule)
        })
}

backend_tests! {
    async fn every_segment_rpc_refuses_bad_input_and_changes_nothing(app) {
        let database = app.config.database.clone();
        create_segment(&app, create("existing", lapsed(60))).await;

        let cases = Cases::new()
            .invalid("no segment", "segment", |r: &mut pb::CreateSegmentRequest| r.segment = None)
            .invalid("empty id", "segment.segment_id", |r| r.segment.as_mut().unwrap().segment_id.clear())
            .invalid("upper-case id", "segment.segment_id", |r| r.segment.as_mut().unwrap().segment_id = "High".into())
            .invalid("over-long id", "segment.segment_id", |r| r.segment.as_mut().unwrap().segment_id = "s".repeat(65))
            .invalid("blank name", "segment.display_name", |r| r.segment.as_mut().unwrap().display_name = " ".into())
            .invalid("over-long name", "segment.display_name", |r| r.segment.as_mut().unwrap().display_name = "n".repeat(201))
            .invalid("over-long description", "segment.description", |r| r.segment.as_mut().unwrap().description = "d".repeat(2001))
            .invalid("empty request id", "request_id", |r| r.request_id.clear())
            .refused("existing id", Code::AlreadyExists, |r| r.segment.as_mut().unwrap().segment_id = "existing".into());
        let cases = rule_cases(cases, "segment.rule", |r, rule| r.segment.as_mut().unwrap().rule = Some(rule));
        assert_each_rejected(&database, || create("fresh", lapsed(60)), cases, async |r| {
            app.segments().create_segment(r).await
        })
        .await;

        let valid_update = || update(segment("existing", lapsed(30)), &[]);
        let cases = Cases::new()
            .invalid("no segment", "segment", |r: &mut pb::UpdateSegmentRequest| r.segment = None)
            .invalid("bad id", "segment.segment_id", |r| r.segment.as_mut().unwrap().segment_id = "-".into())
            .invalid("unknown path", "update_mask.paths[0]", |r| {
                r.update_mask = Some(FieldMask { paths: vec!["version".into()] })
            })
            .invalid("nested path", "update_mask.paths[1]", |r| {
                r.update_mask = Some(FieldMask { paths: vec!["rule".into(), "rule.all".into()] })
            })
            .invalid("nothing to change", "update_mask", |r| {
                r.segment = Some(pb::Segment { segment_id: "existing".into(), ..Default::default() })
            })
            .invalid("cleared name", "segment.display_name", |r| {
                r.update_mask = Some(FieldMask { paths: vec!["display_name".into()] });
                r.segment.as_mut().unwrap().display_name.clear();
            })
            .invalid("empty request id", "request_id", |r| r.request_id.clear())
            .refused("unknown segment", Code::NotFound, |r| r.segment.as_mut().unwrap().segment_id = "unknown".into());
        let cases = rule_cases(cases, "segment.rule", |r, rule| r.segment.as_mut().unwrap().rule = Some(rule));
        assert_each_rejected(&database, valid_update, cases, async |r| {
            app.segments().update_segment(r).await
        })
        .await;

        let valid_delete = || pb::DeleteSegmentRequest { segment_id: "existing".into(), request_id: request_id() };
        let cases = Cases::new()
            .invalid("empty id", "segment_id", |r: &mut pb::DeleteSegmentRequest| r.segment_id.clear())
            .invalid("bad request id", "request_id", |r| r.request_id = "has space".into())
            .refused("unknown segment", Code::NotFound, |r| r.segment_id = "unknown".into());
        assert_each_rejected(&database, valid_delete, cases, async |r| {
            app.segments().delete_segment(r).await
        })
        .await;

        let cases = Cases::new()
            .invalid("empty id", "segment_id", |r: &mut pb::GetSegmentRequest| r.segment_id.clear())
            .refused("unknown segment", Code::NotFound, |r| r.segment_id = "unknown".into());
        assert_each_rejected(&database, || pb::GetSegmentRequest { segment_id: "existing".into() }, cases, async |r| {
            app.segments().get_segment(r).await
        })
        .await;

        let cases = Cases::new()
            .invalid("negative size", "page_size", |r: &mut pb::ListSegmentsRequest| r.page_size = -1)
            .invalid("huge size", "page_size", |r| r.page_size = 501)
            .invalid("foreign token", "page_token", |r| r.page_token = "not-a-token".into());
        assert_each_rejected(&database, pb::ListSegmentsRequest::default, cases, async |r| {
            app.segments().list_segments(r).await
        })
        .await;

        let cases = rule_cases(Cases::new(), "rule", |r: &mut pb::PreviewSegmentRequest, rule| r.rule = Some(rule));
        assert_each_rejected(&database, || pb::PreviewSegmentRequest { rule: Some(lapsed(1)) }, cases, async |r| {
            app.segments().preview_segment(r).await
        })
        .await;

        let cases = Cases::new()
            .invalid("empty customer", "customer_id", |r: &mut pb::ListCustomerSegmentsRequest| r.customer_id.clear())
            .invalid("spaced customer", "customer_id", |r| r.customer_id = "a b".into())
            .invalid("negative size", "page_size", |r| r.page_size = -1)
            .invalid("huge size", "page_size", |r| r.page_size = 1001)
            .invalid("foreign token", "page_token", |r| r.page_token = "%%%".into())
            .refused("unknown customer", Code::NotFound, |r| r.customer_id = "cust-nobody".into());
        let valid = || pb::ListCustomerSegmentsRequest { customer_id: "cust-nobody".into(), page_size: 10, page_token: String::new() };
        assert_each_rejected(&database, valid, cases, async |r| {
            app.segments().list_customer_segments(r).await
        })
        .await;

        let cases = Cases::new()
            .invalid("empty id", "segment_id", |r: &mut pb::ListSegmentMembersRequest| r.segment_id.clear())
            .invalid("huge size", "page_size", |r| r.page_size = 1001)
            .invalid("foreign token", "page_token", |r| r.page_token = "x".into())
            .refused("unknown segment", Code::NotFound, |r| r.segment_id = "unknown".into());
        let valid = || pb::ListSegmentMembersRequest { segment_id: "existing".into(), page_size: 10, page_token: String::new() };
        assert_each_rejected(&database, valid, cases, async |r| {
            app.segments().list_segment_members(r).await
        })
        .await;
    }
}

// ---- the rule language against a model ----

mod rule_model {
    use std::collections::BTreeSet;

    use attune_kit::types::{Currency, DataCategory};
    use attune_profile::segments::facts::Facts;
    use attune_profile::segments::rule::Rule;
    use chrono::{DateTime, Datelike, NaiveDate, TimeDelta, Utc};
    use proptest::prelude::*;

    use super::*;

    const CATEGORIES: [&str; 3] = ["shoes", "bags", "hats"];
    const BANDS: [pb::AgeBand; 3] = [
        pb::AgeBand::From18To24,
        pb::AgeBand::From25To34,
        pb::AgeBand::From35To44,
    ];

    /// One customer's zero-party facts, the only ones these rules read.
    #[derive(Debug, Clone)]
    struct Case {
        data: pb::ZeroPartyData,
        granted: BTreeSet<DataCategory>,
        now: DateTime<Utc>,
        traits: pb::Traits,
    }

    impl Facts for Case {
        fn traits(&self) -> &pb::Traits {
            &self.traits
        }
        fn orders_within(&self, _days: u32) -> (u32, i64, i64) {
            (0, 0, 0)
        }
        fn events_within(&self, _kind: i32, _days: u32) -> u32 {
            0
        }
        fn zero_party(&self) -> Option<&pb::ZeroPartyData> {
            Some(&self.data)
        }
        fn granted(&self) -> &BTreeSet<DataCategory> {
            &self.granted
        }
        fn now(&self) -> DateTime<Utc> {
            self.now
        }
    }

    fn leaf() -> impl Strategy<Value = pb::SegmentRule> {
        prop_oneof![
            proptest::sample::subsequence(BANDS.to_vec(), 1..=3).prop_map(|bands| {
                condition(C::AgeBand(pb::AgeBandCondition {
                    age_bands: bands.into_iter().map(i32::from).collect(),
                }))
            }),
            proptest::sample::subsequence(CATEGORIES.to_vec(), 1..=3)
                .prop_map(|ids| favourite(&ids)),
            (0..=31).prop_map(|within_days| {
                condition(C::Birthday(pb::BirthdayCondition { within_days }))
            }),
        ]
    }

    fn rule() -> impl Strategy<Value = pb::SegmentRule> {
        leaf().prop_recursive(4, 24, 4, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 1..4).prop_map(|rules| {
                    pb::SegmentRule {
                        rule: Some(pb::segment_rule::Rule::All(pb::SegmentRuleGroup { rules })),
                    }
                }),
                proptest::collection::vec(inner.clone(), 1..4).prop_map(|rules| {
                    pb::SegmentRule {
                        rule: Some(pb::segment_rule::Rule::Any(pb::SegmentRuleGroup { rules })),
                    }
                }),
                inner.prop_map(not),
            ]
        })
    }

    /// A day of the year, often one at an edge: the turn of the year, the end
    /// of February.
    fn month_day() -> impl Strategy<Value = (u32, u32)> {
        prop_oneof![
            Just((2, 29)),
            Just((2, 28)),
            Just((3, 1)),
            Just((12, 31)),
            Just((1, 1)),
            (2u32..=3, 1u32..=31),
            (12u32..=12, 1u32..=31),
            (1u32..=12, 1u32..=31),
        ]
    }

    fn case() -> impl Strategy<Value = Case> {
        (
            proptest::sample::select(BANDS.to_vec()),
            proptest::sample::subsequence(CATEGORIES.to_vec(), 0..=3),
            month_day(),
            any::<bool>(),
            any::<bool>(),
            (2024i32..=2028, month_day()),
        )
            .prop_filter_map(
                "real dates",
                |(band, favourites, (month, day), demographics, preferences, (year, today))| {
                    NaiveDate::from_ymd_opt(2000, month, day)?;
                    let mut granted = BTreeSet::new();
                    if demographics {
                        granted.insert(DataCategory::Demographics);
                    }
                    if preferences {
                        granted.insert(DataCategory::Preferences);
                    }
                    let now =
                        NaiveDate::from_ymd_opt(year, today.0, today.1)?.and_hms_opt(9, 30, 0)?;
                    Some(Case {
                        data: pb::ZeroPartyData {
                            age_band: i32::from(band),
                            favourite_category_ids: favourites
                                .into_iter()
                                .map(str::to_owned)
                                .collect(),
                            birthday: Some(pb::Birthday {
                                month: i32::try_from(month).ok()?,
                                day: i32::try_from(day).ok()?,
                            }),
                            ..Default::default()
                        },
                        granted,
                        now: now.and_utc(),
                        traits: pb::Traits::default(),
                    })
                },
            )
    }

    /// Whether a calendar day is the customer's birthday (28 February for a 29
    /// February birthday in years without that day).
    fn is_birthday(date: NaiveDate, birthday: &pb::Birthday) -> bool {
        let month = u32::try_from(birthday.month).unwrap();
        let day = u32::try_from(birthday.day).unwrap();
        let leap = NaiveDate::from_ymd_opt(date.year(), 2, 29).is_some();
        (date.month(), date.day()) == (month, day)
            || (month, day, leap, date.month(), date.day()) == (2, 29, false, 2, 28)
    }

    /// The model: the rule language as the contract states it, evaluated naively.
    fn model(rule: &pb::SegmentRule, case: &Case) -> bool {
        use pb::segment_rule::Rule as R;
        let demographics = case.granted.contains(&DataCategory::Demographics);
        let preferences = case.granted.contains(&DataCategory::Preferences);
        match rule.rule.as_ref().unwrap() {
            R::All(group) => group.rules.iter().all(|r| model(r, case)),
            R::Any(group) => group.rules.iter().any(|r| model(r, case)),
            R::Not(inner) => !model(inner, case),
            R::Condition(c) => match c.condition.as_ref().unwrap() {
                C::AgeBand(c) => demographics && c.age_bands.contains(&case.data.age_band),
                C::FavouriteCategory(c) => {
                    preferences
                        && c.category_ids
                            .iter()
                            .any(|id| case.data.favourite_category_ids.contains(id))
                }
                C::Birthday(c) => {
                    let today = case.now.date_naive();
                    demographics
                        && (0..=i64::from(c.within_days)).any(|ahead| {
                            is_birthday(
                                today + TimeDelta::days(ahead),
                                case.data.birthday.as_ref().unwrap(),
                            )
                        })
                }
                other => unreachable!("not generated: {other:?}"),
            },
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn evaluation_agrees_with_the_model(rule in rule(), case in case()) {
            let mut violations = Vec::new();
            let eur = Currency::parse("EUR").unwrap();
            let parsed = Rule::parse(Some(&rule), "rule", eur, &mut violations);
            prop_assert!(violations.is_empty(), "{violations:?}");
            let parsed = parsed.unwrap();
            prop_assert_eq!(parsed.matches(&case), model(&rule, &case));
            // not(not(r)) is r; any(r, not r) always holds.
            let doubled = Rule::Not(Box::new(Rule::Not(Box::new(parsed.clone()))));
            prop_assert_eq!(doubled.matches(&case), parsed.matches(&case));
            let excluded_middle = Rule::Any(vec![parsed.clone(), Rule::Not(Box::new(parsed))]);
            prop_assert!(excluded_middle.matches(&case));
        }
    }
}
