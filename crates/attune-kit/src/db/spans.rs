//! A `db.query` client span per SQL statement a request runs, when traces are
//! exported.
//!
//! sea-orm times every statement it runs on a connection or in a transaction
//! and hands the time to one callback per pool
//! ([`DatabaseConnection::set_metric_callback`]); the span is built from that
//! after the fact, with the statement's start and end. So statements cost
//! nothing more when no collector is configured (no callback is installed:
//! sea-orm then does not even read the clock), and with one the cost is one
//! span per statement, without a `tracing` span (and its log-layer work) around
//! each.
//!
//! Only statements run for a request are traced: those under a `grpc.request`
//! span (a unary call, a stream, or, in one process, a backend called inside
//! the gateway's span). Background work (the feed poller's read every 100 ms,
//! followers) would otherwise hang thousands of spans under a task span that
//! lives as long as the process.
//!
//! The attributes name the engine (`db.system.name`), the statement's kind
//! (`db.operation.name`: SELECT, INSERT, ...) and its first table
//! (`db.collection.name`), never its text: values are bound, but a statement's
//! text could still hold a literal, and what a customer is or did must not
//! leave the process in a trace.

use std::time::SystemTime;

use opentelemetry::global::BoxedTracer;
use opentelemetry::trace::{Span as _, SpanKind, Status, Tracer as _};
use opentelemetry::{KeyValue, global};
use sea_orm::metric::Info;
use sea_orm::{DatabaseConnection, DbBackend};

/// The name of every statement's span.
pub const STATEMENT_SPAN: &str = "db.query";

/// Gives every statement run on `db` (and its transactions) a `db.query` span
/// under the request it serves. Call once, before `db` is cloned.
pub(crate) fn trace_statements(db: &mut DatabaseConnection) {
    let system = match db.get_database_backend() {
        DbBackend::Postgres => "postgresql",
        DbBackend::Sqlite => "sqlite",
        _ => "other_sql",
    };
    let tracer = global::tracer("attune.db");
    db.set_metric_callback(move |info| record(&tracer, system, info));
}

fn record(tracer: &BoxedTracer, system: &'static str, info: &Info<'_>) {
    let Some(parent) = crate::telemetry::request_context() else {
        return;
    };
    let end = SystemTime::now();
    let start = end.checked_sub(info.elapsed).unwrap_or(end);
    let sql = info.statement.sql.as_str();
    let mut attributes = Vec::with_capacity(3);
    attributes.push(KeyValue::new("db.system.name", system));
    attributes.push(KeyValue::new("db.operation.name", operation(sql)));
    if let Some(table) = collection(sql) {
        attributes.push(KeyValue::new("db.collection.name", table.to_owned()));
    }
    let mut span = tracer
        .span_builder(STATEMENT_SPAN)
        .with_kind(SpanKind::Client)
        .with_start_time(start)
        .with_attributes(attributes)
        .start_with_context(tracer, &parent);
    if info.failed {
        // The error itself is the caller's to report: its text may hold values.
        span.set_status(Status::error("the statement failed"));
    }
    span.end_with_timestamp(end);
}

/// The statement's kind: its first keyword, upper case; `OTHER` for anything
/// unexpected, so the attribute never carries more than a keyword.
fn operation(sql: &str) -> &'static str {
    const KINDS: [&str; 9] = [
        "SELECT",
        "INSERT",
        "UPDATE",
        "DELETE",
        "WITH",
        "BEGIN",
        "COMMIT",
        "ROLLBACK",
        "SAVEPOINT",
    ];
    let first = sql.split_whitespace().next().unwrap_or_default();
    KINDS
        .into_iter()
        .find(|kind| first.eq_ignore_ascii_case(kind))
        .unwrap_or("OTHER")
}

/// The first table a statement names (`FROM`, `INTO`, `UPDATE`, `JOIN`), without
/// quotes; `None` when there is none or it is not a plain identifier.
fn collection(sql: &str) -> Option<&str> {
    let mut words = sql.split_whitespace();
    while let Some(word) = words.next() {
        let names_table = ["FROM", "INTO", "UPDATE", "JOIN"]
            .iter()
            .any(|keyword| word.eq_ignore_ascii_case(keyword));
        if !names_table {
            continue;
        }
        let next = words.next()?;
        if next.starts_with('(') {
            continue; // a subquery: its own FROM comes next
        }
        let table = next.trim_matches(|c| matches!(c, '"' | '`' | ')' | ','));
        return (!table.is_empty()
            && table
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.'))
        .then_some(table);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_operation_is_a_keyword_and_nothing_else() {
        assert_eq!(operation("SELECT \"a\" FROM \"t\" WHERE x = $1"), "SELECT");
        assert_eq!(operation("  insert into t values (?)"), "INSERT");
        assert_eq!(operation("SELECT pg_advisory_xact_lock($1)"), "SELECT");
        assert_eq!(operation("VACUUM 'customer-42'"), "OTHER");
        assert_eq!(operation(""), "OTHER");
    }

    #[test]
    fn the_collection_is_the_first_table_named() {
        assert_eq!(
            collection("SELECT \"id\" FROM \"consent_states\" WHERE \"customer\" = $1"),
            Some("consent_states")
        );
        assert_eq!(
            collection("INSERT INTO \"events\" (\"a\") VALUES (?)"),
            Some("events")
        );
        assert_eq!(
            collection("UPDATE `slots` SET taken = taken + 1"),
            Some("slots")
        );
        assert_eq!(collection("SELECT pg_advisory_xact_lock($1)"), None);
        assert_eq!(
            collection("SELECT n FROM (SELECT n FROM \"feed\" LIMIT 1) AS x"),
            Some("feed")
        );
        // A literal where a table would be is not a table.
        assert_eq!(collection("SELECT 1 FROM 'customer@example.com'"), None);
    }
}
