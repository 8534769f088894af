//! Data-subject requests across every service: a generic sweep of every table of
//! the database (every service's, read from `sqlite_master` or
//! `information_schema`) for rows still carrying a customer's traces.

use attune_kit::sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, Statement};

use crate::TestApp;
use crate::gateway_experience::stopped_backend;

/// A gateway in front of every service's own pod (each service's internal
/// data-subject API is on its pod, never on the public port), with `stopped`'s
/// pod down. Returns the gateway, then the pods it needs running.
pub async fn gateway_with_stopped(app: &TestApp, stopped: &str) -> (TestApp, Vec<TestApp>) {
    let mut pods = Vec::new();
    let mut elsewhere = vec![(stopped, stopped_backend().await)];
    for service in [
        "consent",
        "profile",
        "recommendation",
        "loyalty",
        "delivery",
    ] {
        if service == stopped {
            continue;
        }
        let pod = app.pod(service).await;
        elsewhere.push((service, format!("http://{}", pod.address)));
        pods.push(pod);
    }
    (app.gateway_in_front(&elsewhere).await, pods)
}

/// Every (table, column, rows) of any table whose text or bytes contain one of
/// `needles` (ids, identity hashes, e-mail addresses; plain ASCII).
pub async fn rows_containing_anywhere(
    db: &DatabaseConnection,
    needles: &[&str],
) -> Vec<(String, String, i64)> {
    let backend = db.get_database_backend();
    let columns_sql = match backend {
        DbBackend::Sqlite => {
            "SELECT m.name AS table_name, p.name AS column_name FROM sqlite_master m \
             JOIN pragma_table_info(m.name) p WHERE m.type = 'table'"
        }
        _ => {
            "SELECT table_name::text AS table_name, column_name::text AS column_name \
             FROM information_schema.columns WHERE table_schema = current_schema()"
        }
    };
    let columns = db
        .query_all_raw(Statement::from_string(backend, columns_sql))
        .await
        .expect("the catalogue of tables is readable");
    let mut found = Vec::new();
    for column in columns {
        let table: String = column.try_get("", "table_name").expect("a table name");
        let name: String = column.try_get("", "column_name").expect("a column name");
        for needle in needles {
            assert!(
                needle.bytes().all(|b| b.is_ascii_graphic() && b != b'\''),
                "needles are plain ASCII"
            );
            // Text, numbers and bytes alike: bytes (encoded payloads) hold ids
            // as UTF-8.
            let sql = match backend {
                DbBackend::Sqlite => format!(
                    "SELECT COUNT(*) AS n FROM \"{table}\" WHERE instr(CAST(\"{name}\" AS BLOB), CAST('{needle}' AS BLOB)) > 0"
                ),
                _ => format!(
                    "SELECT COUNT(*) AS n FROM \"{table}\" WHERE position(convert_to('{needle}', 'UTF8') in \
                     (CASE WHEN pg_typeof(\"{name}\")::text = 'bytea' THEN \"{name}\"::text::bytea ELSE convert_to(\"{name}\"::text, 'UTF8') END)) > 0"
                ),
            };
            let row = db
                .query_one_raw(Statement::from_string(backend, sql))
                .await
                .expect("a column is searchable")
                .expect("a count answers one row");
            let count: i64 = row.try_get("", "n").expect("a count");
            if count > 0 {
                found.push((table.clone(), name.clone(), count));
            }
        }
    }
    found
}
