//! Every end-to-end test in one binary: the real attune server over real gRPC,
//! on SQLite and (when `ATTUNE_TEST_DATABASE_URL` is set) PostgreSQL.
//!
//! One binary rather than one per file: each test binary links the whole server
//! (about 145 MB unoptimised), so fifty of them cost 7 GB of disk and fifty links
//! per build. nextest still runs every test in its own process, so a test that
//! installs a global (a log subscriber, say) touches no other; filter by module,
//! e.g. `cargo nextest run -p attune-tests -E 'test(/^recommendation/)'`.

mod consent;
mod consent_audit;
mod consent_bad_input;
mod consent_checker;
mod consent_clock;
mod consent_expiry;
mod consent_ledger_rules;
mod consent_privacy;
mod consent_upgrade;
mod consent_watch;
mod consent_withdrawal;
mod cross_service;
mod delivery;
mod delivery_bad_input;
mod delivery_privacy;
mod delivery_slots;
mod errors_database_outage;
mod errors_violations;
mod feed_follower;
mod gateway;
mod gateway_access_log;
mod gateway_experience;
mod gateway_experience_merged;
mod gateway_policy;
mod gateway_policy_protection;
mod gateway_subject;
mod gateway_subject_status;
mod logs_personal_data;
mod loyalty_bad_input;
mod loyalty_earning;
mod loyalty_erasure;
mod loyalty_ledger;
mod loyalty_merge;
mod loyalty_messages;
mod loyalty_offer_schedule;
mod loyalty_offers;
mod loyalty_programme;
mod loyalty_vouchers;
mod platform;
mod privacy_contract;
mod profile_events;
mod profile_merge;
mod profile_people;
mod profile_privacy;
mod profile_segments;
mod profile_traits;
mod recommendation;
mod recommendation_bad_input;
mod recommendation_experiments;
mod recommendation_feed;
mod recommendation_replicas;
mod wire_types;
