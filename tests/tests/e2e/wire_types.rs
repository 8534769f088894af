//! The kit's shared wire types at the gRPC boundary: times are validated to the
//! protobuf range and kept to the microsecond, and every channel and data
//! category survives a write and a read.

#![allow(clippy::unwrap_used)] // panics fail tests

use attune_kit::types::time::{MAX_SECONDS, MIN_SECONDS};
use attune_kit::types::{Channel, DataCategory};
use attune_tests::consent_requests::{decision, new_purpose, record};
use attune_tests::{backend_tests, consent_pb as pb, violated_fields};
use chrono::{Duration, Utc};
use prost_types::Timestamp;
use tonic::Code;

/// A decision time a minute ago, with digits below the microsecond.
fn a_minute_ago_to_the_nanosecond() -> Timestamp {
    let earlier = Utc::now() - Duration::minutes(1);
    Timestamp {
        seconds: earlier.timestamp(),
        nanos: 123_456_789,
    }
}

backend_tests! {
    async fn times_outside_what_a_timestamp_allows_are_rejected_and_change_nothing(app) {
        let mut client = app.consent();
        let cases = [
            ("a second of nanos", "decide_time", Some(Timestamp { seconds: 0, nanos: 1_000_000_000 }), None),
            ("negative nanos", "decide_time", Some(Timestamp { seconds: 0, nanos: -1 }), None),
            ("before year one", "decide_time", Some(Timestamp { seconds: MIN_SECONDS - 1, nanos: 0 }), None),
            ("after year 9999", "expire_time", None, Some(Timestamp { seconds: MAX_SECONDS + 1, nanos: 0 })),
        ];
        for (case, field, decide_time, expire_time) in cases {
            let request = pb::RecordConsentRequest {
                decide_time,
                expire_time,
                ..record("cust-times", vec![decision("analytics", pb::Decision::Granted)])
            };
            let status = client.record_consent(request).await.expect_err(case);
            assert_eq!(status.code(), Code::InvalidArgument, "{case}: {status:?}");
            assert_eq!(violated_fields(&status), [field], "{case}: {status:?}");
        }
        assert!(app.consent_history("cust-times", "").await.is_empty());
    }

    async fn times_are_kept_to_the_microsecond(app) {
        let decide_time = a_minute_ago_to_the_nanosecond();
        let expire_time = Timestamp {
            seconds: decide_time.seconds + 86_400,
            nanos: 999_999_999,
        };
        let request = pb::RecordConsentRequest {
            decide_time: Some(decide_time),
            expire_time: Some(expire_time),
            ..record("cust-micros", vec![decision("analytics", pb::Decision::Granted)])
        };
        let recorded = app.record_consent(request).await;
        let read = app.consent_history("cust-micros", "").await;
        assert_eq!(recorded, read, "what is answered is what is stored");
        let record = &read[0];
        assert_eq!(
            record.decide_time,
            Some(Timestamp { seconds: decide_time.seconds, nanos: 123_456_000 })
        );
        assert_eq!(
            record.expire_time,
            Some(Timestamp { seconds: expire_time.seconds, nanos: 999_999_000 })
        );
    }

    async fn every_channel_and_data_category_survives_a_write_and_a_read(app) {
        let mut client = app.consent();
        let categories: Vec<i32> = DataCategory::ALL.iter().map(|&c| i32::from(c)).collect();
        client
            .create_purpose(pb::CreatePurposeRequest {
                data_categories: categories.clone(),
                ..new_purpose("everything")
            })
            .await
            .unwrap();
        let purposes = client
            .list_purposes(pb::ListPurposesRequest { page_size: 500, page_token: String::new() })
            .await
            .unwrap()
            .into_inner()
            .purposes;
        let everything = purposes.iter().find(|p| p.code == "everything").unwrap();
        assert_eq!(everything.data_categories, categories);

        for &channel in Channel::ALL {
            let request = pb::RecordConsentRequest {
                channel: channel.into(),
                ..record("cust-channels", vec![decision("everything", pb::Decision::Granted)])
            };
            app.record_consent(request).await;
        }
        let channels: Vec<Channel> = app
            .consent_history("cust-channels", "everything")
            .await
            .iter()
            .map(|record| Channel::from_proto(record.channel).unwrap())
            .collect();
        assert_eq!(channels, Channel::ALL);
    }
}
