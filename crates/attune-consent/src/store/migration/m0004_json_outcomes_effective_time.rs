//! Request outcomes become JSON (the kit's `idempotency` combinator stores typed
//! values), and the state projection orders decisions by their effective time
//! (issue 8): a decision takes effect when it was made, but never later than
//! when the server received it, so a grant stamped ahead of the server's clock
//! (within the allowed skew) cannot outrank a withdrawal received after it.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum ConsentStates {
    Table,
    EffectiveTime,
}

/// The old string outcomes, rewritten as the JSON of the types that replace
/// them: record ids `"12,13"` → `[12,13]`; an export's `""` → `null`; an
/// erasure's `"count:micros"` → `{"erased_record_count":count,
/// "erase_time_micros":micros}`. Notice versions (`"2"`) are JSON already.
/// Each statement matches only rows still in the old form.
const JSON_OUTCOMES: [&str; 3] = [
    "UPDATE consent_requests SET outcome = '[' || outcome || ']' \
     WHERE operation = 'record_consent' AND outcome NOT LIKE '[%'",
    "UPDATE consent_requests SET outcome = 'null' \
     WHERE operation = 'export_customer_data' AND outcome = ''",
    "UPDATE consent_requests SET outcome = \
     '{\"erased_record_count\":' || replace(outcome, ':', ',\"erase_time_micros\":') || '}' \
     WHERE operation = 'erase_customer' AND outcome NOT LIKE '{%'",
];

/// A record's effective time: its decision time, but never after its receipt.
const EFFECTIVE: &str =
    "CASE WHEN r.decide_time < r.record_time THEN r.decide_time ELSE r.record_time END";

/// `Decision::precedence` of a stored decision.
const PRECEDENCE: &str = "CASE r.decision WHEN 'withdrawn' THEN 3 WHEN 'denied' THEN 2 ELSE 1 END";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        for statement in JSON_OUTCOMES {
            db.execute_unprepared(statement).await?;
        }
        manager
            .alter_table(
                Table::alter()
                    .table(ConsentStates::Table)
                    .add_column(
                        ColumnDef::new(ConsentStates::EffectiveTime)
                            .big_integer()
                            .not_null()
                            .default(0),
                    )
                    .to_owned(),
            )
            .await?;
        // Recompute which record counts for each customer and purpose under the
        // new order: a grant stamped in the future may have outranked a later
        // withdrawal. Erased customers have no state rows, so every row has
        // records of its own.
        db.execute_unprepared(&format!(
            "UPDATE consent_states SET record_id = (\
               SELECT r.id FROM consent_records r \
               WHERE r.customer_id = consent_states.customer_id \
                 AND r.purpose_code = consent_states.purpose_code \
               ORDER BY {EFFECTIVE} DESC, {PRECEDENCE} DESC, r.id DESC LIMIT 1)"
        ))
        .await?;
        let from_record = |expression: &str| {
            format!(
                "(SELECT {expression} FROM consent_records r WHERE r.id = consent_states.record_id)"
            )
        };
        db.execute_unprepared(&format!(
            "UPDATE consent_states SET decision = {}, precedence = {}, notice_version = {}, \
             decide_time = {}, expire_time = {}, effective_time = {}",
            from_record("r.decision"),
            from_record(PRECEDENCE),
            from_record("r.notice_version"),
            from_record("r.decide_time"),
            from_record("r.expire_time"),
            from_record(EFFECTIVE),
        ))
        .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // The outcomes stay JSON, which the code before this migration cannot
        // read: going back to it needs the backup taken before upgrading.
        manager
            .alter_table(
                Table::alter()
                    .table(ConsentStates::Table)
                    .drop_column(ConsentStates::EffectiveTime)
                    .to_owned(),
            )
            .await
    }
}
