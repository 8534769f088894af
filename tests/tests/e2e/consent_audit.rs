//! The privacy audit log over real gRPC: every catalogue change and recorded
//! decision is chained into it once, it names customers only by pseudonym, and
//! tampering in the database is named at the entry where it happened.

#![allow(clippy::unwrap_used)] // a panic is how a test fails

use attune_consent::store::entity::audit;
use attune_tests::consent_requests::{
    TEST_CAPTURED_BY, TEST_USER_AGENT, decision, new_purpose, record, request_id,
};
use attune_tests::{TestApp, backend_tests, common_pb, consent_pb as pb};
use sea_orm::ActiveValue::{Set, Unchanged};
use sea_orm::{DatabaseConnection, EntityTrait, QueryOrder};

/// Distinctive, so that finding it anywhere in the log is no coincidence.
const CUSTOMER: &str = "cust-audit-7f3a9";
const OTHER_CUSTOMER: &str = "cust-audit-b2c41";

/// One created purpose and four decisions: entries 1 to 5.
async fn populate(app: &TestApp) {
    app.consent()
        .create_purpose(new_purpose("birthday"))
        .await
        .unwrap();
    let both = vec![
        decision("birthday", pb::Decision::Granted),
        decision("analytics", pb::Decision::Granted),
    ];
    app.record_consent(record(CUSTOMER, both)).await;
    let withdrawal = vec![decision("birthday", pb::Decision::Withdrawn)];
    app.record_consent(record(CUSTOMER, withdrawal)).await;
    let denial = vec![decision("marketing_email", pb::Decision::Denied)];
    app.record_consent(record(OTHER_CUSTOMER, denial)).await;
}

/// The first problem found, as (kind, sequence).
async fn problem(app: &TestApp) -> (pb::AuditProblemKind, i64) {
    let verification = app.verify_audit_log().await;
    assert!(!verification.intact);
    let problem = verification
        .first_problem
        .expect("a broken log names its first problem");
    assert!(!problem.description.is_empty());
    (problem.kind(), problem.sequence)
}

/// The test's database, reached directly, behind the server's back.
async fn database(app: &TestApp) -> DatabaseConnection {
    attune_kit::db::connect(&app.config.database).await.unwrap()
}

async fn entries(db: &DatabaseConnection) -> Vec<audit::Model> {
    audit::Entity::find()
        .order_by_asc(audit::Column::Sequence)
        .all(db)
        .await
        .unwrap()
}

async fn entry(db: &DatabaseConnection, sequence: i64) -> audit::Model {
    audit::Entity::find_by_id(sequence)
        .one(db)
        .await
        .unwrap()
        .unwrap()
}

backend_tests! {
    async fn an_intact_log_holds_every_change_once_and_names_nobody(app) {
        assert_eq!(app.verify_audit_log().await, pb::VerifyAuditLogResponse {
            intact: true,
            entry_count: 0,
            head_hash: String::new(),
            first_problem: None,
        });
        populate(&app).await;

        let verification = app.verify_audit_log().await;
        assert!(verification.intact, "{verification:?}");
        assert_eq!(verification.entry_count, 5);
        assert_eq!(verification.first_problem, None);
        let head = &verification.head_hash;
        assert!(head.len() == 64 && head.chars().all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()), "{head}");

        let db = database(&app).await;
        let log = entries(&db).await;
        let kinds: Vec<_> = log.iter().map(|e| (e.sequence, e.kind.as_str())).collect();
        assert_eq!(kinds, [
            (1, "purpose_created"),
            (2, "consent_recorded"),
            (3, "consent_recorded"),
            (4, "consent_recorded"),
            (5, "consent_recorded"),
        ]);
        assert_eq!(&log[4].hash, head);
        assert!(log.windows(2).all(|pair| pair[1].prev_hash == pair[0].hash));
        assert_eq!(log[0].subject, None, "a catalogue change concerns no customer");
        assert!(log[0].detail.contains("\"birthday\""));

        // The subject is a keyed pseudonym: the same for one customer, never the id.
        let subjects: Vec<&str> = log[1..].iter().map(|e| e.subject.as_deref().unwrap()).collect();
        assert!(subjects.iter().all(|s| s.starts_with("hmac-sha256:")), "{subjects:?}");
        assert!(subjects[0] == subjects[1] && subjects[1] == subjects[2]);
        assert_ne!(subjects[2], subjects[3]);
        for entry in &log {
            let stored = format!("{} {:?} {}", entry.kind, entry.subject, entry.detail);
            for secret in [CUSTOMER, OTHER_CUSTOMER, "7f3a9", "b2c41", TEST_USER_AGENT, TEST_CAPTURED_BY] {
                assert!(!stored.contains(secret), "entry {} holds {secret}: {stored}", entry.sequence);
            }
        }
        assert!(log[2].detail.contains("\"analytics\"") && log[2].detail.contains("\"granted\""));
    }

    async fn catalogue_changes_are_logged_when_they_change_something(app) {
        let mut client = app.consent();
        let create = new_purpose("birthday");
        client.create_purpose(create.clone()).await.unwrap();
        client.create_purpose(create).await.unwrap();
        assert_eq!(app.verify_audit_log().await.entry_count, 1, "a replayed create appends nothing");

        let update = |description: &str| pb::UpdatePurposeRequest {
            code: "birthday".into(),
            display_name: "Birthday surprises".into(),
            description: description.into(),
            legal_basis: pb::LegalBasis::Consent.into(),
            data_categories: vec![common_pb::DataCategory::Demographics.into()],
            request_id: request_id(),
        };
        client.update_purpose(update("We send you a gift on your birthday.")).await.unwrap();
        client.update_purpose(update("We send you a gift on your birthday.")).await.unwrap();
        let verification = app.verify_audit_log().await;
        assert!(verification.intact);
        assert_eq!(verification.entry_count, 2, "an unchanged notice publishes nothing");

        let published = entry(&database(&app).await, 2).await;
        assert_eq!(published.kind, "notice_published");
        assert!(published.detail.contains("\"notice_version\":2"), "{}", published.detail);
    }

    async fn a_replayed_record_appends_nothing(app) {
        populate(&app).await;
        let before = app.verify_audit_log().await;
        let request = record(CUSTOMER, vec![decision("profiling", pb::Decision::Granted)]);
        app.record_consent(request.clone()).await;
        let after = app.verify_audit_log().await;
        assert_eq!(after.entry_count, before.entry_count + 1);

        app.record_consent(request).await;
        assert_eq!(app.verify_audit_log().await, after);
    }

    async fn an_altered_entry_is_named(app) {
        populate(&app).await;
        let db = database(&app).await;
        let target = entry(&db, 3).await;
        let forged = target.detail.replace("\"granted\"", "\"denied\"");
        assert_ne!(forged, target.detail);
        audit::Entity::update(audit::ActiveModel {
            sequence: Unchanged(3),
            detail: Set(forged),
            ..Default::default()
        })
        .exec(&db)
        .await
        .unwrap();

        assert_eq!(problem(&app).await, (pb::AuditProblemKind::Altered, 3));
        assert_eq!(app.verify_audit_log().await.entry_count, 5, "every entry is still read");
    }

    async fn a_deleted_entry_is_missing(app) {
        populate(&app).await;
        let db = database(&app).await;
        audit::Entity::delete_by_id(3).exec(&db).await.unwrap();

        assert_eq!(problem(&app).await, (pb::AuditProblemKind::Missing, 3));
        assert_eq!(app.verify_audit_log().await.entry_count, 4);
    }

    async fn swapped_entries_are_out_of_order_at_the_first_of_them(app) {
        populate(&app).await;
        let db = database(&app).await;
        let (third, fourth) = (entry(&db, 3).await, entry(&db, 4).await);
        // Contents trade places; the sequence numbers (the primary key) stay put.
        for (sequence, content) in [(3, fourth), (4, third)] {
            audit::Entity::update(audit::ActiveModel {
                sequence: Unchanged(sequence),
                kind: Set(content.kind),
                subject: Set(content.subject),
                detail: Set(content.detail),
                occur_time: Set(content.occur_time),
                prev_hash: Set(content.prev_hash),
                hash: Set(content.hash),
            })
            .exec(&db)
            .await
            .unwrap();
        }

        assert_eq!(problem(&app).await, (pb::AuditProblemKind::OutOfOrder, 3));
    }

    async fn the_log_keeps_growing_after_the_check(app) {
        populate(&app).await;
        let first = app.verify_audit_log().await;
        app.record_consent(record(OTHER_CUSTOMER, vec![decision("analytics", pb::Decision::Granted)])).await;
        let second = app.verify_audit_log().await;
        assert!(second.intact);
        assert_eq!(second.entry_count, first.entry_count + 1);
        let db = database(&app).await;
        assert_eq!(entry(&db, 6).await.prev_hash, first.head_hash);
    }
}
