//! Loyalty's schema, one migration per change. Never edit a released migration:
//! add a new one. Written as plain SQL that SQLite and PostgreSQL both accept;
//! times are microseconds since the epoch (UTC), money minor units.

use sea_orm_migration::prelude::*;

use super::{REQUESTS, SECRETS};

/// Loyalty's migrations, tracked in their own table because in one-process mode
/// every service's migrator shares one database.
pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(REQUESTS.create_table("m0001_create_requests")),
            Box::new(SECRETS.create_table("m0001_create_secrets")),
            // The follower's cursor on profile's feed.
            Box::new(attune_kit::follower::CreateFeedCursors),
            Box::new(Ledger),
            Box::new(VoucherUse),
            // Whom each logged request was about, so an erasure forgets its answers.
            Box::new(REQUESTS.add_subject_column("m0003_request_subject")),
            Box::new(OfferPeriod),
        ]
    }

    fn migration_table_name() -> DynIden {
        "loyalty_migrations".into_iden()
    }
}

#[derive(DeriveMigrationName)]
struct Ledger;

const LEDGER: &[&str] = &[
    // One row per account: the sums of its ledger (kept in the same transaction
    // as every entry, under the write lock) and its tier standing.
    "CREATE TABLE loyalty_accounts (
        customer_id TEXT NOT NULL PRIMARY KEY,
        available BIGINT NOT NULL,
        pending BIGINT NOT NULL,
        debt BIGINT NOT NULL,
        tier_id TEXT NOT NULL,
        tier_review_time BIGINT,
        open_time BIGINT NOT NULL,
        update_time BIGINT NOT NULL
    )",
    // The append-only ledger. `remaining` is what is left of a credit of
    // available points (spent and expired oldest first), `pending_remaining` what
    // is left of a PENDING credit until its `release_time`; `qualifying` and
    // `spend_minor` are what the entry adds to tier qualification.
    "CREATE TABLE loyalty_entries (
        entry_id BIGINT NOT NULL PRIMARY KEY,
        customer_id TEXT NOT NULL,
        kind TEXT NOT NULL,
        points BIGINT NOT NULL,
        pending_points BIGINT NOT NULL,
        debt_points BIGINT NOT NULL,
        rule_id TEXT NOT NULL,
        rule_version INTEGER NOT NULL,
        reason_code TEXT NOT NULL,
        description TEXT NOT NULL,
        order_id TEXT NOT NULL,
        expire_time BIGINT,
        idempotency_key TEXT NOT NULL,
        create_time BIGINT NOT NULL,
        remaining BIGINT NOT NULL,
        pending_remaining BIGINT NOT NULL,
        release_time BIGINT,
        qualifying BIGINT NOT NULL,
        spend_minor BIGINT NOT NULL,
        spend_currency TEXT NOT NULL
    )",
    "CREATE UNIQUE INDEX loyalty_entries_key ON loyalty_entries (idempotency_key)",
    "CREATE INDEX loyalty_entries_customer ON loyalty_entries (customer_id, entry_id)",
    "CREATE INDEX loyalty_entries_expiring ON loyalty_entries (expire_time) WHERE remaining > 0",
    "CREATE INDEX loyalty_entries_releasing ON loyalty_entries (release_time) WHERE pending_remaining > 0",
    // What each order earned per line, so a return takes back its lines' points.
    "CREATE TABLE loyalty_orders (
        customer_id TEXT NOT NULL,
        order_id TEXT NOT NULL,
        entry_id BIGINT NOT NULL,
        lines TEXT NOT NULL,
        PRIMARY KEY (customer_id, order_id)
    )",
    // Versioned earn rules: every version is kept, the highest is in force.
    "CREATE TABLE loyalty_earn_rules (
        rule_id TEXT NOT NULL,
        version INTEGER NOT NULL,
        body TEXT NOT NULL,
        create_time BIGINT NOT NULL,
        PRIMARY KEY (rule_id, version)
    )",
    // Programme settings (the tier ladder), one JSON document per key.
    "CREATE TABLE loyalty_settings (
        setting TEXT NOT NULL PRIMARY KEY,
        body TEXT NOT NULL,
        update_time BIGINT NOT NULL
    )",
    "CREATE TABLE loyalty_rewards (
        reward_id TEXT NOT NULL PRIMARY KEY,
        points_cost BIGINT NOT NULL,
        stock BIGINT,
        body TEXT NOT NULL,
        update_time BIGINT NOT NULL
    )",
    "CREATE TABLE loyalty_vouchers (
        voucher_code TEXT NOT NULL PRIMARY KEY,
        customer_id TEXT NOT NULL,
        reward_id TEXT NOT NULL,
        points BIGINT NOT NULL,
        entry_id BIGINT NOT NULL,
        state TEXT NOT NULL,
        issue_time BIGINT NOT NULL,
        expire_time BIGINT NOT NULL
    )",
    "CREATE INDEX loyalty_vouchers_customer ON loyalty_vouchers (customer_id, issue_time)",
    "CREATE TABLE loyalty_offer_rules (
        rule_id TEXT NOT NULL PRIMARY KEY,
        body TEXT NOT NULL,
        issued_count BIGINT NOT NULL,
        update_time BIGINT NOT NULL
    )",
    "CREATE TABLE loyalty_offers (
        offer_id TEXT NOT NULL PRIMARY KEY,
        customer_id TEXT NOT NULL,
        rule_id TEXT NOT NULL,
        state TEXT NOT NULL,
        channel TEXT NOT NULL,
        body TEXT NOT NULL,
        issue_time BIGINT NOT NULL,
        end_time BIGINT NOT NULL
    )",
    "CREATE INDEX loyalty_offers_customer ON loyalty_offers (customer_id, issue_time)",
    "CREATE TABLE loyalty_messages (
        customer_id TEXT NOT NULL,
        channel TEXT NOT NULL,
        offer_id TEXT NOT NULL,
        send_time BIGINT NOT NULL
    )",
    "CREATE INDEX loyalty_messages_customer ON loyalty_messages (customer_id, channel, send_time)",
];

#[async_trait::async_trait]
impl MigrationTrait for Ledger {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        for sql in LEDGER {
            db.execute_unprepared(sql).await?;
        }
        Ok(())
    }
}

/// Vouchers used at checkout: the order and the time of use.
struct VoucherUse;

// Named by hand: a derived name is the module's, which `Ledger` holds.
impl MigrationName for VoucherUse {
    fn name(&self) -> &str {
        "m0002_voucher_use"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for VoucherUse {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        db.execute_unprepared("ALTER TABLE loyalty_vouchers ADD COLUMN order_id TEXT")
            .await?;
        db.execute_unprepared("ALTER TABLE loyalty_vouchers ADD COLUMN use_time BIGINT")
            .await?;
        Ok(())
    }
}

/// The period of the background offer pass each account was last considered
/// in (see `offers_schedule`): the pass takes the accounts behind it.
struct OfferPeriod;

impl MigrationName for OfferPeriod {
    fn name(&self) -> &str {
        "m0004_offer_period"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for OfferPeriod {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        // The pass walks accounts by their primary key; no index of its own.
        db.execute_unprepared("ALTER TABLE loyalty_accounts ADD COLUMN offer_period BIGINT")
            .await?;
        Ok(())
    }
}
