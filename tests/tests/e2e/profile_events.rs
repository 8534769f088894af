//! Event ingestion, the feed and ListEvents over real gRPC: consent at
//! collection, idempotency by event id, per-event validation, the feed read
//! while writers ingest, paging, and bad input over every RPC.

#![allow(clippy::unwrap_used)] // panics fail tests

use std::collections::BTreeSet;
use std::time::Duration;

use attune_tests::bad_input::{Cases, assert_each_rejected};
use attune_tests::consent_requests::{decision, record, timestamp};
use attune_tests::profile_events::{cart, eur, item, purchase, statuses, view};
use attune_tests::{backend_tests, consent_pb, profile_pb as pb};
use chrono::{TimeDelta, Utc};
use tokio_stream::StreamExt;
use tonic::Code;

use pb::IngestStatus as S;

fn minutes_ago(minutes: i64) -> chrono::DateTime<Utc> {
    Utc::now() - TimeDelta::minutes(minutes)
}

/// A tiny deterministic generator, so a failing interleaving can be replayed
/// from the seed the test prints.
struct Xorshift(u64);

impl Xorshift {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

backend_tests! {
    async fn an_erasure_hands_no_sequence_out_again_so_followers_miss_nothing(app) {
        app.put_earn_rule(attune_tests::loyalty::eur_rule("eur", 1, 0)).await;
        for customer in ["cust-newest", "cust-next"] {
            app.grant(customer, &["personalization"]).await;
        }
        let now = Utc::now();
        let bought = |event: &str, customer: &str, minor| {
            purchase(event, customer, now, vec![item("sku", 1, Some(eur(minor)), &["shoes"], "acme")], eur(minor))
        };
        let first = app.ingest(vec![bought("p-newest", "cust-newest", 1000)]).await;
        app.wait_for_account("cust-newest", |account| account.available_points == 10).await;
        // The erased customer's rows are the newest of the feed.
        assert!(app.erase_customer("cust-newest", "erase-newest").await.complete);
        let next = app.ingest(vec![bought("p-next", "cust-next", 2000)]).await;
        assert!(
            next.results[0].sequence > first.results[0].sequence + 1,
            "the erasure entry took the sequence after the newest; none is handed out twice"
        );
        // Loyalty's follower passed the erased rows: it must still see this one.
        app.wait_for_account("cust-next", |account| account.available_points == 20).await;
    }

    async fn without_consent_nothing_is_stored_and_the_response_says_why(app) {
        let events = vec![
            view("nc-1", "cust-nc", minutes_ago(3), "sku-1"),
            view("nc-2", "cust-nc", minutes_ago(2), "sku-2"),
            purchase("nc-3", "cust-nc", minutes_ago(1), vec![item("sku-1", 1, Some(eur(100)), &[], "")], eur(100)),
        ];
        let response = app.ingest(events).await;
        assert_eq!(statuses(&response.results), vec![S::SkippedNoConsent; 3]);
        assert_eq!(
            response.status_counts,
            vec![pb::StatusCount { status: S::SkippedNoConsent as i32, count: 3 }]
        );
        assert_eq!((response.accepted_count, response.skipped_count), (0, 3));
        let message = &response.results[0].message;
        assert!(message.contains("browsing") && message.contains("personalization"), "{message}");
        assert!(app.feed_to_head(0).await.is_empty(), "nothing reached the feed");
        // No profile was created either.
        let missing = app
            .events()
            .list_events(pb::ListEventsRequest { customer_id: "cust-nc".into(), ..Default::default() })
            .await
            .unwrap_err();
        assert_eq!(missing.code(), Code::NotFound);

        // Once granted, the same events are stored, with the purposes that allowed them.
        // The checker learns of the grant from consent's change stream: poll.
        app.grant("cust-nc", &["personalization"]).await;
        let started = std::time::Instant::now();
        let at = minutes_ago(3);
        let response = loop {
            let response = app.ingest(vec![view("nc-1", "cust-nc", at, "sku-1")]).await;
            if response.accepted_count == 1 || started.elapsed() > Duration::from_secs(3) {
                break response;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        assert_eq!(statuses(&response.results), vec![S::Accepted]);
        let feed = app.feed_to_head(0).await;
        let Some(pb::feed_entry::Change::Event(stored)) = &feed[0].change else { panic!("{feed:?}") };
        assert_eq!(stored.resolved_customer_id, "cust-nc");
        assert_eq!(stored.data_category, attune_tests::common_pb::DataCategory::Browsing as i32);
        assert_eq!(stored.purposes[0].purpose_code, "personalization");
        assert_eq!(stored.purposes[0].notice_version, 1);
        assert!(stored.ingest_time.is_some());
        assert_eq!(stored.sequence, response.results[0].sequence);
    }

    async fn consent_withdrawn_mid_stream_refuses_later_events(app) {
        app.grant("cust-wd", &["personalization"]).await;
        let (sender, receiver) = tokio::sync::mpsc::channel(4);
        let mut responses = app
            .events()
            .ingest_event_stream(tokio_stream::wrappers::ReceiverStream::new(receiver))
            .await
            .unwrap()
            .into_inner();
        let send = |id: String| {
            let sender = sender.clone();
            async move {
                sender
                    .send(pb::IngestEventStreamRequest { events: vec![view(&id, "cust-wd", minutes_ago(1), "sku")] })
                    .await
                    .unwrap();
            }
        };
        send("wd-0".into()).await;
        let first = responses.next().await.unwrap().unwrap();
        assert_eq!((first.batch_index, first.accepted_count), (0, 1));
        assert!(first.results.is_empty(), "accepted events are only counted");
        assert!(first.last_sequence > 0);

        app.record_consent(record("cust-wd", vec![decision("personalization", consent_pb::Decision::Withdrawn)])).await;
        // The withdrawal reaches the checker within a second: poll, do not sleep blindly.
        let started = std::time::Instant::now();
        let mut batch = 1;
        loop {
            send(format!("wd-{batch}")).await;
            let response = responses.next().await.unwrap().unwrap();
            assert_eq!(response.batch_index, batch);
            if response.skipped_count == 1 {
                assert_eq!(statuses(&response.results), vec![S::SkippedNoConsent]);
                assert_eq!(response.last_sequence, 0);
                break;
            }
            assert!(started.elapsed() < Duration::from_secs(3), "still accepted after 3 s");
            batch += 1;
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(started.elapsed() < Duration::from_millis(1500), "took {:?}", started.elapsed());
        // Later events stay refused.
        send("wd-late".into()).await;
        assert_eq!(responses.next().await.unwrap().unwrap().skipped_count, 1);
    }

    async fn a_thousand_event_batch_replayed_stores_a_thousand(app) {
        app.grant("cust-k", &["personalization"]).await;
        let events: Vec<pb::Event> = (0..1000)
            .map(|i| view(&format!("k-{i}"), "cust-k", minutes_ago(100 - i / 10), &format!("sku-{}", i % 7)))
            .collect();
        let mut sequences = Vec::new();
        for half in events.chunks(500) {
            let response = app.ingest(half.to_vec()).await;
            assert_eq!(response.accepted_count, 500);
            sequences.extend(response.results.iter().map(|r| r.sequence));
        }
        for (i, half) in events.chunks(500).enumerate() {
            let response = app.ingest(half.to_vec()).await;
            assert_eq!(statuses(&response.results), vec![S::Duplicate; 500]);
            assert_eq!(
                response.results.iter().map(|r| r.sequence).collect::<Vec<_>>(),
                sequences[i * 500..(i + 1) * 500],
                "a duplicate carries the original sequence"
            );
            assert_eq!(response.status_counts, vec![pb::StatusCount { status: S::Duplicate as i32, count: 500 }]);
        }
        let mut changed = events[7].clone();
        changed.channel = attune_tests::common_pb::Channel::App.into();
        let response = app.ingest(vec![changed, events[8].clone()]).await;
        assert_eq!(statuses(&response.results), vec![S::RejectedConflict, S::Duplicate]);
        assert_eq!(response.rejected_count, 1);
        let feed = app.feed_to_head(0).await;
        assert_eq!(feed.len(), 1000);
        let ids: BTreeSet<String> = feed
            .iter()
            .filter_map(|entry| match &entry.change {
                Some(pb::feed_entry::Change::Event(event)) => Some(event.event_id.clone()),
                _ => None,
            })
            .collect();
        assert_eq!(ids.len(), 1000);
        assert_eq!(app.traits("cust-k").await.sources.iter().find(|s| s.r#trait == "last_seen_time").unwrap().event_count, 1000);
    }

    async fn each_invalid_event_gets_its_own_reason_and_the_rest_is_stored(app) {
        app.grant("cust-v", &["personalization"]).await;
        let good = |id: &str| view(id, "cust-v", minutes_ago(1), "sku");
        let spoil = |id: &str, f: fn(&mut pb::Event)| {
            let mut event = good(id);
            f(&mut event);
            event
        };
        let cases: Vec<(pb::Event, &str)> = vec![
            (spoil("", |_| {}), "event_id:"),
            (spoil("v-future", |e| e.occur_time = Some(timestamp(Utc::now() + TimeDelta::minutes(10)))), "occur_time:"),
            (spoil("v-old", |e| e.occur_time = Some(timestamp(Utc::now() - TimeDelta::days(401)))), "occur_time:"),
            (spoil("v-notime", |e| e.occur_time = None), "occur_time:"),
            (spoil("v-kind", |e| e.kind = 99), "kind:"),
            (spoil("v-nokind", |e| e.kind = 0), "kind:"),
            (spoil("v-channel", |e| e.channel = 0), "channel:"),
            (spoil("v-nobody", |e| e.customer_id.clear()), "customer_id:"),
            (spoil("v-both", |e| e.identity = Some(pb::Identity { identity_type: 3, value: "C-1".into(), ..Default::default() })), "identity:"),
            (spoil("v-qty", |e| e.items[0].quantity = 10_001), "items[0].quantity:"),
            (spoil("v-twoitems", |e| e.items.push(e.items[0].clone())), "items:"),
            (spoil("v-item", |e| e.items[0].item_id.clear()), "items[0].item_id:"),
            (spoil("v-amount", |e| e.amount = Some(eur(100))), "amount:"),
            (spoil("v-negative", |e| {
                e.kind = pb::EventKind::Purchase.into();
                e.order_id = "o-1".into();
                e.items[0].unit_price = Some(eur(100));
                e.amount = Some(eur(-5));
            }), "amount.amount_minor:"),
            (spoil("v-price", |e| {
                e.kind = pb::EventKind::Purchase.into();
                e.order_id = "o-1".into();
                e.amount = Some(eur(5));
            }), "items[0].unit_price:"),
            (spoil("v-query", |e| { e.kind = pb::EventKind::Search.into(); }), "search_query:"),
            (spoil("v-store", |e| { e.kind = pb::EventKind::StoreVisit.into(); }), "store_id:"),
            (spoil("v-campaign", |e| { e.kind = pb::EventKind::EmailOpen.into(); }), "campaign_id:"),
            (spoil("v-payment", |e| e.payment_method = 1), "payment_method:"),
            (spoil("v-attr", |e| { e.attributes.insert("Bad Key".into(), "x".into()); }), "attributes:"),
        ];
        let mut events: Vec<pb::Event> = cases.iter().map(|(event, _)| event.clone()).collect();
        events.insert(3, good("v-good-1"));
        events.push(good("v-good-2"));
        events.push(events[3].clone()); // a retry inside the batch
        let response = app.ingest(events.clone()).await;
        let mut expected = vec![S::RejectedInvalid; cases.len()];
        expected.insert(3, S::Accepted);
        expected.extend([S::Accepted, S::Duplicate]);
        assert_eq!(statuses(&response.results), expected);
        let mut reasons = cases.iter().map(|(_, field)| *field);
        for (index, result) in response.results.iter().enumerate() {
            assert_eq!(result.index, i32::try_from(index).unwrap());
            assert_eq!(result.event_id, events[index].event_id);
            if result.status == S::RejectedInvalid as i32 {
                let field = reasons.next().unwrap();
                assert!(result.message.starts_with(field), "{field}: {}", result.message);
            }
        }
        assert_eq!(response.results[3].sequence, response.results.last().unwrap().sequence);
        assert_eq!(
            (response.accepted_count, response.duplicate_count, response.rejected_count),
            (2, 1, i32::try_from(cases.len()).unwrap())
        );
        assert_eq!(app.feed_to_head(0).await.len(), 2);
    }

    async fn events_by_identity_resolve_to_its_profile_and_merged_ids_to_the_survivor(app) {
        app.grant("cust-survivor", &["personalization"]).await;
        let db = attune_kit::db::connect(&app.config.database).await.unwrap();
        use sea_orm::ConnectionTrait;
        for sql in [
            "INSERT INTO profile_profiles (customer_id, kind, create_channel, create_time, update_time) VALUES ('cust-survivor', 1, 1, 0, 0)",
            "INSERT INTO profile_profiles (customer_id, kind, create_channel, create_time, update_time, merged_into) VALUES ('anon-1', 2, 1, 0, 0, 'cust-survivor')",
            "INSERT INTO profile_identities (identity_type, value, customer_id, channel, link_time) VALUES (3, 'CARD-7', 'cust-survivor', 3, 0)",
        ] {
            db.execute_unprepared(sql).await.unwrap();
        }
        let by_card = |id: &str, card: &str| pb::Event {
            customer_id: String::new(),
            identity: Some(pb::Identity { identity_type: pb::IdentityType::LoyaltyCard.into(), value: card.into(), ..Default::default() }),
            ..view(id, "", minutes_ago(2), "sku")
        };
        let response = app
            .ingest(vec![by_card("i-1", "CARD-7"), by_card("i-2", "CARD-unknown"), view("i-3", "anon-1", minutes_ago(1), "sku")])
            .await;
        assert_eq!(statuses(&response.results), vec![S::Accepted, S::SkippedUnknownIdentity, S::Accepted]);
        assert_eq!(response.results[0].resolved_customer_id, "cust-survivor");
        assert_eq!(response.results[2].resolved_customer_id, "cust-survivor");
        let listed = app
            .events()
            .list_events(pb::ListEventsRequest { customer_id: "anon-1".into(), ..Default::default() })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(listed.events.iter().map(|e| e.event_id.as_str()).collect::<Vec<_>>(), ["i-3", "i-1"]);
    }

    async fn events_that_occurred_before_an_erasure_are_skipped(app) {
        app.grant("cust-gone", &["personalization"]).await;
        // The tombstone an erasure leaves: the customer's keyed hash and the time.
        let db = attune_kit::db::connect(&app.config.database).await.unwrap();
        use sea_orm::ConnectionTrait;
        let row = db
            .query_one_raw(sea_orm::Statement::from_string(
                db.get_database_backend(),
                "SELECT value FROM profile_secrets",
            ))
            .await
            .unwrap()
            .unwrap();
        let key = attune_kit::secrets::PseudonymKey::from_hex(&row.try_get::<String>("", "value").unwrap()).unwrap();
        let erased_at = Utc::now();
        db.execute_unprepared(&format!(
            "INSERT INTO profile_tombstones (subject_hash, erase_time) VALUES ('{}', {})",
            key.digest("customer", "cust-gone"),
            erased_at.timestamp_micros()
        ))
        .await
        .unwrap();
        let response = app
            .ingest(vec![
                view("gone-1", "cust-gone", erased_at - TimeDelta::minutes(1), "sku"),
                view("gone-2", "cust-gone", erased_at + TimeDelta::minutes(1), "sku"),
            ])
            .await;
        assert_eq!(statuses(&response.results), vec![S::SkippedErased, S::Accepted]);
        assert!(response.results[0].message.contains("erased"), "{}", response.results[0].message);
        assert_eq!(app.feed_to_head(0).await.len(), 1);
    }

    async fn an_accepted_event_creates_its_profile_and_moves_its_last_event_time(app) {
        app.grant("anon-new", &["personalization"]).await;
        app.grant("cust-new", &["personalization"]).await;
        let mut anonymous = view("n-1", "anon-new", minutes_ago(5), "sku");
        anonymous.new_profile_kind = pb::ProfileKind::Anonymous.into();
        anonymous.channel = attune_tests::common_pb::Channel::App.into();
        let later = view("n-2", "anon-new", minutes_ago(1), "sku");
        let known = view("n-3", "cust-new", minutes_ago(2), "sku");
        assert_eq!(app.ingest(vec![anonymous, known.clone()]).await.accepted_count, 2);
        assert_eq!(app.ingest(vec![later.clone()]).await.accepted_count, 1);
        let db = attune_kit::db::connect(&app.config.database).await.unwrap();
        use sea_orm::ConnectionTrait;
        let rows = db
            .query_all_raw(sea_orm::Statement::from_string(
                db.get_database_backend(),
                "SELECT customer_id, kind, create_channel, last_event_time FROM profile_profiles ORDER BY customer_id",
            ))
            .await
            .unwrap();
        let profiles: Vec<(String, i16, i16, i64)> = rows
            .iter()
            .map(|row| {
                (
                    row.try_get("", "customer_id").unwrap(),
                    row.try_get("", "kind").unwrap(),
                    row.try_get("", "create_channel").unwrap(),
                    row.try_get("", "last_event_time").unwrap(),
                )
            })
            .collect();
        let micros = |event: &pb::Event| {
            let at = event.occur_time.unwrap();
            at.seconds * 1_000_000 + i64::from(at.nanos / 1000)
        };
        assert_eq!(
            profiles,
            vec![
                ("anon-new".to_owned(), pb::ProfileKind::Anonymous as i16, attune_tests::common_pb::Channel::App as i16, micros(&later)),
                ("cust-new".to_owned(), pb::ProfileKind::Known as i16, attune_tests::common_pb::Channel::Web as i16, micros(&known)),
            ]
        );
    }

    async fn list_events_pages_newest_first_with_filters(app) {
        app.grant("cust-l", &["personalization"]).await;
        let base = Utc::now() - TimeDelta::hours(5);
        let mut events = Vec::new();
        for i in 0..25_i64 {
            // Pairs share a time, so ties are broken by sequence.
            let at = base + TimeDelta::minutes(i / 2);
            events.push(if i % 5 == 0 {
                cart(pb::EventKind::AddToCart, &format!("l-{i:02}"), "cust-l", at, vec![item("sku", 1, None, &[], "")])
            } else {
                view(&format!("l-{i:02}"), "cust-l", at, "sku")
            });
        }
        let response = app.ingest(events).await;
        assert_eq!(response.accepted_count, 25);
        let mut seen = Vec::new();
        let mut token = String::new();
        loop {
            let page = app
                .events()
                .list_events(pb::ListEventsRequest { customer_id: "cust-l".into(), page_size: 10, page_token: token, ..Default::default() })
                .await
                .unwrap()
                .into_inner();
            assert!(page.events.len() <= 10);
            seen.extend(page.events.into_iter().map(|e| (e.occur_time.unwrap().seconds, e.sequence, e.event_id)));
            if page.next_page_token.is_empty() { break; }
            token = page.next_page_token;
        }
        assert_eq!(seen.len(), 25);
        let mut sorted = seen.clone();
        sorted.sort_by_key(|row| std::cmp::Reverse((row.0, row.1)));
        assert_eq!(seen, sorted, "newest first, ties by descending sequence");
        let carts = app
            .events()
            .list_events(pb::ListEventsRequest {
                customer_id: "cust-l".into(),
                kinds: vec![pb::EventKind::AddToCart.into()],
                start_time: Some(timestamp(base + TimeDelta::minutes(1))),
                end_time: Some(timestamp(base + TimeDelta::minutes(10))),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        // Adds at i = 5, 10, 15 (minutes 2, 5, 7); i = 0 is before the start, 20 at the end.
        assert_eq!(carts.events.iter().map(|e| e.event_id.as_str()).collect::<Vec<_>>(), ["l-15", "l-10", "l-05"]);
    }

    async fn the_feed_read_while_four_writers_ingest_misses_and_repeats_nothing(app) {
        for writer in 0..4 {
            app.grant(&format!("cust-w{writer}"), &["personalization"]).await;
        }
        let seed = u64::try_from(Utc::now().timestamp_micros()).unwrap() | 1;
        let mut writers = Vec::new();
        for writer in 0..4_u64 {
            let client = app.events();
            writers.push(tokio::spawn(async move {
                let mut client = client;
                let mut random = Xorshift(seed.wrapping_mul(writer + 7) | 1);
                let mut accepted = Vec::new();
                for batch in 0..25 {
                    let size = 1 + random.below(20);
                    let events = (0..size)
                        .map(|i| view(&format!("w{writer}-{batch}-{i}"), &format!("cust-w{writer}"), minutes_ago(1), "sku"))
                        .collect();
                    let response = client
                        .ingest_events(pb::IngestEventsRequest { events, request_id: String::new() })
                        .await
                        .unwrap()
                        .into_inner();
                    accepted.extend(response.results.into_iter().map(|r| r.event_id));
                    if random.below(3) == 0 {
                        tokio::time::sleep(Duration::from_millis(random.below(15))).await;
                    }
                }
                accepted
            }));
        }
        // The follower: reconnects from its last cursor every few responses.
        let mut random = Xorshift(seed);
        let mut cursor = 0;
        let mut delivered: Vec<(i64, String)> = Vec::new();
        let mut reconnects = 0;
        let mut writing = writers;
        let mut expected = BTreeSet::new();
        loop {
            let mut stream = app
                .events()
                .stream_events(pb::StreamEventsRequest {
                    after_sequence: cursor,
                    max_batch_size: i32::try_from(1 + random.below(30)).unwrap(),
                    ..Default::default()
                })
                .await
                .unwrap()
                .into_inner();
            reconnects += 1;
            let keep = 1 + random.below(6);
            for _ in 0..keep {
                let Some(response) = stream.next().await else { break };
                let response = response.unwrap();
                for entry in response.entries {
                    assert!(entry.sequence > cursor, "sequence {} after cursor {cursor}", entry.sequence);
                    let Some(pb::feed_entry::Change::Event(event)) = entry.change else { panic!("only events") };
                    cursor = entry.sequence;
                    delivered.push((entry.sequence, event.event_id));
                }
                cursor = cursor.max(response.through_sequence);
            }
            drop(stream);
            if !writing.is_empty() && writing.iter().all(tokio::task::JoinHandle::is_finished) {
                for writer in writing.drain(..) {
                    expected.extend(writer.await.unwrap());
                }
            }
            if writing.is_empty() && delivered.len() >= expected.len() {
                break;
            }
            assert!(reconnects < 2000, "the follower does not catch up");
        }
        // Drain the rest to the head.
        for entry in app.feed_to_head(cursor).await {
            let Some(pb::feed_entry::Change::Event(event)) = entry.change else { panic!("only events") };
            delivered.push((entry.sequence, event.event_id));
        }
        assert!(reconnects > 3, "the follower reconnected several times ({reconnects})");
        let ids: Vec<String> = delivered.iter().map(|(_, id)| id.clone()).collect();
        let unique: BTreeSet<String> = ids.iter().cloned().collect();
        assert_eq!(unique.len(), ids.len(), "an event was delivered twice (seed {seed})");
        assert_eq!(unique, expected, "seed {seed}");
        assert!(delivered.windows(2).all(|w| w[0].0 < w[1].0), "sequences increase");
    }

    async fn stream_events_filters_kinds_and_refuses_bad_cursors(app) {
        app.grant("cust-s", &["personalization"]).await;
        let response = app
            .ingest(vec![
                view("s-1", "cust-s", minutes_ago(3), "sku"),
                cart(pb::EventKind::AddToCart, "s-2", "cust-s", minutes_ago(2), vec![item("sku", 2, None, &[], "")]),
                view("s-3", "cust-s", minutes_ago(1), "sku"),
            ])
            .await;
        let head = response.results[2].sequence;
        let mut stream = app
            .events()
            .stream_events(pb::StreamEventsRequest {
                after_sequence: 0,
                event_kinds: vec![pb::EventKind::AddToCart.into()],
                max_batch_size: 1,
                stop_at_head: true,
            })
            .await
            .unwrap()
            .into_inner();
        let mut responses = Vec::new();
        while let Some(response) = stream.next().await {
            responses.push(response.unwrap());
        }
        let entries: Vec<i64> = responses.iter().flat_map(|r| r.entries.iter().map(|e| e.sequence)).collect();
        assert_eq!(entries, vec![response.results[1].sequence]);
        assert_eq!(responses.last().unwrap().through_sequence, head, "filtered entries still advance the cursor");

        let beyond = app
            .events()
            .stream_events(pb::StreamEventsRequest { after_sequence: head + 1, ..Default::default() })
            .await
            .unwrap_err();
        assert_eq!(beyond.code(), Code::OutOfRange);
        let negative = app
            .events()
            .stream_events(pb::StreamEventsRequest { after_sequence: -1, ..Default::default() })
            .await
            .unwrap_err();
        assert_eq!(negative.code(), Code::InvalidArgument);
        assert_eq!(attune_tests::violated_fields(&negative), ["after_sequence"]);
        // At the head: a heartbeat, then the end.
        assert!(app.feed_to_head(head).await.is_empty());
    }

    async fn every_event_rpc_refuses_bad_input_and_writes_nothing(app) {
        app.grant("cust-b", &["personalization"]).await;
        app.ingest(vec![view("b-1", "cust-b", minutes_ago(1), "sku")]).await;
        let database = app.config.database.clone();

        let valid_batch = || pb::IngestEventsRequest { events: vec![view("b-2", "cust-b", minutes_ago(1), "sku")], request_id: String::new() };
        assert_each_rejected(
            &database,
            valid_batch,
            Cases::<pb::IngestEventsRequest>::new()
                .invalid("no events", "events", |r| r.events.clear())
                .invalid("501 events", "events", |r| {
                    let one = r.events[0].clone();
                    r.events = vec![one; 501];
                })
                .invalid("bad request id", "request_id", |r| r.request_id = "has space".into()),
            async |request| app.events().ingest_events(request).await,
        )
        .await;

        let valid_list = || pb::ListEventsRequest { customer_id: "cust-b".into(), ..Default::default() };
        assert_each_rejected(
            &database,
            valid_list,
            Cases::<pb::ListEventsRequest>::new()
                .invalid("empty customer", "customer_id", |r| r.customer_id.clear())
                .invalid("customer with a space", "customer_id", |r| r.customer_id = "a b".into())
                .invalid("unspecified kind", "kinds[0]", |r| r.kinds = vec![0])
                .invalid("unknown kind", "kinds[0]", |r| r.kinds = vec![99])
                .invalid("bad start", "start_time", |r| r.start_time = Some(prost_types::Timestamp { seconds: 0, nanos: -1 }))
                .invalid("end before start", "end_time", |r| {
                    r.start_time = Some(timestamp(Utc::now()));
                    r.end_time = Some(timestamp(Utc::now() - TimeDelta::hours(1)));
                })
                .invalid("negative page size", "page_size", |r| r.page_size = -1)
                .invalid("page size too big", "page_size", |r| r.page_size = 1001)
                .invalid("foreign token", "page_token", |r| r.page_token = "nope!".into())
                .refused("unknown customer", Code::NotFound, |r| r.customer_id = "cust-unknown".into()),
            async |request| app.events().list_events(request).await,
        )
        .await;

        let valid_stream = || pb::StreamEventsRequest { stop_at_head: true, ..Default::default() };
        assert_each_rejected(
            &database,
            valid_stream,
            Cases::<pb::StreamEventsRequest>::new()
                .invalid("negative cursor", "after_sequence", |r| r.after_sequence = -5)
                .invalid("unspecified kind", "event_kinds[0]", |r| r.event_kinds = vec![0])
                .invalid("negative batch", "max_batch_size", |r| r.max_batch_size = -1)
                .invalid("batch too big", "max_batch_size", |r| r.max_batch_size = 1001)
                .refused("beyond the head", Code::OutOfRange, |r| r.after_sequence = 1_000_000),
            async |request| app.events().stream_events(request).await.map(|_| ()),
        )
        .await;

        let valid_traits = || pb::GetTraitsRequest { customer_id: "cust-b".into() };
        assert_each_rejected(
            &database,
            valid_traits,
            Cases::<pb::GetTraitsRequest>::new()
                .invalid("empty customer", "customer_id", |r| r.customer_id.clear())
                .invalid("too long", "customer_id", |r| r.customer_id = "c".repeat(129))
                .refused("unknown customer", Code::NotFound, |r| r.customer_id = "cust-unknown".into()),
            async |request| app.events().get_traits(request).await,
        )
        .await;

        // A stream message with no events ends the stream with INVALID_ARGUMENT.
        let messages = tokio_stream::iter(vec![
            pb::IngestEventStreamRequest { events: vec![view("b-3", "cust-b", minutes_ago(1), "sku")] },
            pb::IngestEventStreamRequest { events: vec![] },
            pb::IngestEventStreamRequest { events: vec![view("b-4", "cust-b", minutes_ago(1), "sku")] },
        ]);
        let mut responses = app.events().ingest_event_stream(messages).await.unwrap().into_inner();
        assert_eq!(responses.next().await.unwrap().unwrap().accepted_count, 1);
        let error = responses.next().await.unwrap().unwrap_err();
        assert_eq!(error.code(), Code::InvalidArgument);
        assert_eq!(attune_tests::violated_fields(&error), ["events"]);
        let ids: Vec<String> = app
            .feed_to_head(0)
            .await
            .into_iter()
            .filter_map(|e| match e.change { Some(pb::feed_entry::Change::Event(ev)) => Some(ev.event_id), _ => None })
            .collect();
        assert_eq!(ids, ["b-1", "b-3"], "acknowledged messages stay, later ones are not handled");
    }
}

/// As pods: the gateway routes events to profile's own server, which checks
/// consent over the network.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_are_ingested_through_the_gateway_when_profile_runs_as_its_own_pod() {
    let (gateway, _consent) = attune_tests::TestApp::spawn_split(attune_tests::Backend::Sqlite)
        .await
        .unwrap();
    gateway.grant("cust-pod", &["personalization"]).await;
    let response = gateway
        .ingest(vec![
            view("pod-1", "cust-pod", minutes_ago(2), "sku"),
            view("pod-2", "cust-other", minutes_ago(1), "sku"),
        ])
        .await;
    assert_eq!(
        statuses(&response.results),
        vec![S::Accepted, S::SkippedNoConsent]
    );
    assert_eq!(gateway.feed_to_head(0).await.len(), 1);
    assert_eq!(gateway.traits("cust-pod").await.customer_id, "cust-pod");
}

/// When consent cannot be reached, ingestion cannot know what is allowed: the
/// whole batch is UNAVAILABLE (retry it as is) and nothing is stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_reachable_consent_service_a_batch_is_unavailable_and_stores_nothing() {
    let app = attune_tests::TestApp::spawn(attune_tests::Backend::Sqlite)
        .await
        .unwrap();
    app.grant("cust-cut-off", &["personalization"]).await;
    // Port 9 (discard) on loopback: nothing listens there.
    let pod = app
        .pod_with_consent_at("profile", "http://127.0.0.1:9")
        .await;
    let error = pod
        .events()
        .ingest_events(pb::IngestEventsRequest {
            events: vec![view("cut-off-1", "cust-cut-off", minutes_ago(1), "sku")],
            request_id: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(error.code(), tonic::Code::Unavailable, "{error:?}");
    assert!(app.feed_to_head(0).await.is_empty(), "nothing was stored");
    // The same batch through the server that reaches consent is stored.
    let stored = app
        .ingest(vec![view(
            "cut-off-1",
            "cust-cut-off",
            minutes_ago(1),
            "sku",
        )])
        .await;
    assert_eq!(statuses(&stored.results), vec![S::Accepted]);
}
