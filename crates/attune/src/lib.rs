//! What the `attune` binary runs: the set of services, their migrations, and one
//! server on one port. A library so the end-to-end tests start exactly this.

use std::future::Future;
use std::io::{self, Write};

use anyhow::{Context, bail};
use attune_consent::AuditVerification;
use attune_kit::config::{Config, DatabaseConfig};
use attune_kit::db;
use attune_kit::sea_orm::DatabaseConnection;
use attune_kit::server::GrpcServer;
use tokio::net::TcpListener;

/// The services this binary can run. One process runs all of them (`attune serve`)
/// or one of them (`attune serve --service NAME`, one per Kubernetes pod).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ServiceName {
    /// `attune.consent.v1.ConsentService`: purposes and the consent ledger.
    Consent,
}

impl ServiceName {
    /// Every service, in start-up order.
    pub const ALL: [Self; 1] = [Self::Consent];
}

/// Which services to run: one, or all of them when `None`.
pub fn selected(only: Option<ServiceName>) -> Vec<ServiceName> {
    only.map_or_else(|| ServiceName::ALL.to_vec(), |service| vec![service])
}

/// Connects to the configured database and brings each service's schema up to date.
pub async fn migrate(
    config: &Config,
    services: &[ServiceName],
) -> anyhow::Result<DatabaseConnection> {
    // The error names the database (without its password) and the cause.
    let db = db::connect(&config.database).await?;
    for service in services {
        match service {
            ServiceName::Consent => db::migrate::<attune_consent::Migrator>(&db).await,
        }
        .with_context(|| format!("cannot migrate the {service:?} schema"))?;
    }
    Ok(db)
}

/// Runs `services` on `listener` until `shutdown` resolves, then drains and stops.
pub async fn serve(
    config: Config,
    services: &[ServiceName],
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let db = migrate(&config, services).await?;
    let mut server = GrpcServer::new(config.limits.clone());
    for service in services {
        match service {
            ServiceName::Consent => attune_consent::mount(&mut server, db.clone(), &config)
                .await
                .context("cannot start the consent service")?,
        }
    }
    server.watch_database(db.clone(), (&config.database).into());
    tracing::info!(
        address = %listener.local_addr()?,
        services = ?services,
        "attune is serving"
    );
    server.serve(listener, shutdown).await?;
    db.close().await.context("cannot close the database")?;
    tracing::info!("attune stopped");
    Ok(())
}

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
