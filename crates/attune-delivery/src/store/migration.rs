//! Delivery's schema, one migration per change. Never edit a released migration:
//! add a new one.

use sea_orm_migration::prelude::*;

use super::{REQUESTS, SECRETS};

/// Delivery's migrations, tracked in their own table because in one-process mode
/// every service's migrator shares one database.
pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(REQUESTS.create_table("m0001_create_requests")),
            Box::new(SECRETS.create_table("m0001_create_secrets")),
            // The learner's cursor on profile's feed.
            Box::new(attune_kit::follower::CreateFeedCursors),
            Box::new(DeliveryTables),
            Box::new(SlotCounters),
            Box::new(OrderChoiceSlots),
        ]
    }

    fn migration_table_name() -> DynIden {
        "delivery_migrations".into_iden()
    }
}

/// Every delivery table. Personal data (addresses, explicit preferences) lives
/// only in `sealed` columns, encrypted under the customer's data key; network
/// records keep their searchable columns plain and the rest as the encoded
/// wire message in `body`.
#[derive(DeriveMigrationName)]
struct DeliveryTables;

fn text(name: &'static str) -> ColumnDef {
    ColumnDef::new(name).string().not_null().to_owned()
}

fn micros(name: &'static str) -> ColumnDef {
    ColumnDef::new(name).big_integer().not_null().to_owned()
}

fn blob(name: &'static str) -> ColumnDef {
    ColumnDef::new(name).binary().not_null().to_owned()
}

fn flag(name: &'static str) -> ColumnDef {
    ColumnDef::new(name).boolean().not_null().to_owned()
}

fn key(name: &'static str) -> ColumnDef {
    ColumnDef::new(name)
        .string()
        .not_null()
        .primary_key()
        .to_owned()
}

fn tables() -> Vec<TableCreateStatement> {
    vec![
        Table::create()
            .table("delivery_data_keys")
            .col(key("customer_id"))
            .col(blob("wrapped_key"))
            .col(micros("create_time"))
            .to_owned(),
        Table::create()
            .table("delivery_addresses")
            .col(key("address_id"))
            .col(text("customer_id"))
            .col(blob("sealed"))
            .col(flag("is_default"))
            .col(micros("create_time"))
            .to_owned(),
        Table::create()
            .table("delivery_preferences")
            .col(key("customer_id"))
            .col(blob("sealed"))
            .col(micros("update_time"))
            .to_owned(),
        Table::create()
            .table("delivery_pickup_points")
            .col(key("pickup_point_id"))
            .col(flag("active"))
            .col(blob("body"))
            .to_owned(),
        Table::create()
            .table("delivery_network_versions")
            .col(key("name"))
            .col(micros("version"))
            .to_owned(),
        Table::create()
            .table("delivery_rates")
            .col(key("rate_id"))
            .col(text("country_code"))
            .col(flag("active"))
            .col(blob("body"))
            .to_owned(),
        Table::create()
            .table("delivery_slots")
            .col(key("slot_id"))
            .col(text("method"))
            .col(text("pickup_point_id"))
            .col(micros("start_time"))
            .col(micros("cutoff_time"))
            .col(ColumnDef::new("capacity").integer().not_null())
            .col(flag("active"))
            .col(blob("body"))
            .to_owned(),
        Table::create()
            .table("delivery_reservations")
            .col(key("reservation_id"))
            .col(text("slot_id"))
            .col(text("customer_id"))
            .col(text("state"))
            .col(ColumnDef::new("order_id").string().null())
            .col(micros("reserve_time"))
            .col(micros("expire_time"))
            .col(ColumnDef::new("confirm_time").big_integer().null())
            .col(ColumnDef::new("release_time").big_integer().null())
            .col(ColumnDef::new("price_minor").big_integer().null())
            .col(ColumnDef::new("price_currency").string().null())
            .to_owned(),
        Table::create()
            .table("delivery_payment_rules")
            .col(key("method"))
            .col(blob("body"))
            .to_owned(),
        Table::create()
            .table("delivery_order_choices")
            .col(text("customer_id"))
            .col(text("order_id"))
            .col(ColumnDef::new("delivery_method").string().null())
            .col(ColumnDef::new("payment_method").string().null())
            .col(ColumnDef::new("pickup_point_id").string().null())
            .col(micros("order_time"))
            .primary_key(Index::create().col("customer_id").col("order_id"))
            .to_owned(),
    ]
}

fn indexes() -> Vec<IndexCreateStatement> {
    vec![
        Index::create()
            .name("delivery_addresses_by_customer")
            .table("delivery_addresses")
            .col("customer_id")
            .to_owned(),
        Index::create()
            .name("delivery_slots_by_method_start")
            .table("delivery_slots")
            .col("method")
            .col("start_time")
            .to_owned(),
        Index::create()
            .name("delivery_reservations_by_slot")
            .table("delivery_reservations")
            .col("slot_id")
            .col("state")
            .to_owned(),
        Index::create()
            .name("delivery_reservations_by_customer")
            .table("delivery_reservations")
            .col("customer_id")
            .to_owned(),
    ]
}

#[async_trait::async_trait]
impl MigrationTrait for DeliveryTables {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in tables() {
            manager.create_table(table).await?;
        }
        for index in indexes() {
            manager.create_index(index).await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in tables().iter().rev() {
            let name = table
                .get_table_name()
                .cloned()
                .expect("every table is named");
            manager
                .drop_table(Table::drop().table(name).to_owned())
                .await?;
        }
        Ok(())
    }
}

/// Each slot's counter of units held or confirmed (see `slots`), filled from
/// the reservations already stored, and an index for the expired holds that
/// availability adds back.
struct SlotCounters;

// Named by hand: a derived name is the module's (`migration`), which the
// first migration of this file already holds.
impl MigrationName for SlotCounters {
    fn name(&self) -> &str {
        "m0002_slot_counters"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for SlotCounters {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table("delivery_slots")
                    .add_column(ColumnDef::new("reserved").integer().not_null().default(0))
                    .to_owned(),
            )
            .await?;
        manager
            .get_connection()
            .execute_unprepared(
                "UPDATE delivery_slots SET reserved = (SELECT COUNT(*) \
                 FROM delivery_reservations r WHERE r.slot_id = delivery_slots.slot_id \
                 AND r.state IN ('held', 'confirmed'))",
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("delivery_reservations_holds")
                    .table("delivery_reservations")
                    .col("slot_id")
                    .col("state")
                    .col("expire_time")
                    .to_owned(),
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_index(
                Index::drop()
                    .name("delivery_reservations_holds")
                    .table("delivery_reservations")
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table("delivery_slots")
                    .drop_column("reserved")
                    .to_owned(),
            )
            .await
    }
}

/// The slot of a choice recorded at checkout (RecordOrderChoice), whose local
/// window is learned like a confirmed reservation's.
struct OrderChoiceSlots;

impl MigrationName for OrderChoiceSlots {
    fn name(&self) -> &str {
        "m0003_order_choice_slots"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for OrderChoiceSlots {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table("delivery_order_choices")
                    .add_column(ColumnDef::new("slot_id").string().null())
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table("delivery_order_choices")
                    .drop_column("slot_id")
                    .to_owned(),
            )
            .await
    }
}
