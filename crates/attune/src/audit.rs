//! `attune audit verify`: checks consent's privacy audit log in an existing
//! database, without a running server, and reports it as a person reads it.

use std::io::{self, Write};

use anyhow::{Context, bail};
use attune_consent::AuditVerification;
use attune_kit::config::{Config, DatabaseConfig};
use attune_kit::db;

/// Verifies consent's privacy audit log in the configured database (`attune audit
/// verify`). The database must exist and hold consent's schema: this creates and
/// migrates nothing, so pointing it at the wrong place fails instead of finding an
/// empty, "intact" log.
pub async fn verify_audit_log(config: &Config) -> anyhow::Result<AuditVerification> {
    let existing = DatabaseConfig {
        url: existing_sqlite_only(&config.database.url),
        ..config.database.clone()
    };
    let db = db::connect(&existing)
        .await
        .context("cannot open the database; it must already exist (`attune migrate` creates it)")?;
    let present = attune_consent::store::audit::exists(&db)
        .await
        .context("cannot read the database schema")?;
    if !present {
        bail!(
            "the database has no consent audit log: it is not Attune's, or `attune migrate` \
             has not brought the consent schema up to date"
        );
    }
    let verification = attune_consent::verify_audit_log(&db)
        .await
        .context("cannot read the audit log")?;
    db.close().await.context("cannot close the database")?;
    Ok(verification)
}

/// A SQLite URL that opens the file read-write but never creates it (`mode=rw`,
/// replacing a `mode=rwc`); other URLs unchanged.
fn existing_sqlite_only(url: &str) -> String {
    let url = url.trim();
    if !matches!(db::Backend::of(url), Ok(db::Backend::Sqlite)) {
        return url.to_owned();
    }
    let (path, query) = url.split_once('?').unwrap_or((url, ""));
    let mut params: Vec<&str> = query.split('&').filter(|p| !p.is_empty()).collect();
    match params.iter_mut().find(|p| p.starts_with("mode=")) {
        // A read-only or in-memory database cannot be created by opening it.
        Some(mode) if *mode == "mode=ro" || *mode == "mode=memory" => {}
        Some(mode) => *mode = "mode=rw",
        None => params.push("mode=rw"),
    }
    format!("{path}?{}", params.join("&"))
}

/// Writes a verification as a person reads it: what was checked, and either the
/// head hash to keep elsewhere or the first entry at which the chain breaks.
pub fn write_audit_report(
    out: &mut impl Write,
    verification: &AuditVerification,
) -> io::Result<()> {
    let AuditVerification {
        entry_count,
        head_hash,
        first_problem,
    } = verification;
    let head = head_hash.as_deref().unwrap_or("none (the log is empty)");
    match first_problem {
        None => {
            writeln!(out, "audit log intact: {entry_count} entries verified")?;
            writeln!(out, "head hash: {head}")?;
            writeln!(
                out,
                "Keep the head hash elsewhere: deleting the newest entries can only be \
                 detected by comparing it with a copy."
            )
        }
        Some(problem) => {
            writeln!(
                out,
                "audit log BROKEN at entry {}: {}",
                problem.sequence,
                problem.kind.as_str()
            )?;
            writeln!(out, "{}", problem.description)?;
            writeln!(out, "entries read: {entry_count}; head hash: {head}")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::existing_sqlite_only;

    #[test]
    fn verification_never_creates_a_sqlite_file() {
        for (given, opened) in [
            ("sqlite:///var/attune.db", "sqlite:///var/attune.db?mode=rw"),
            ("sqlite://a.db?mode=rwc", "sqlite://a.db?mode=rw"),
            (
                "sqlite://a.db?cache=shared&mode=rwc",
                "sqlite://a.db?cache=shared&mode=rw",
            ),
            ("sqlite://a.db?mode=ro", "sqlite://a.db?mode=ro"),
            ("postgres://u@h/db?mode=x", "postgres://u@h/db?mode=x"),
        ] {
            assert_eq!(existing_sqlite_only(given), opened, "{given}");
        }
    }
}
