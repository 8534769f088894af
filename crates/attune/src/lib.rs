//! What the `attune` binary runs: the set of services, their migrations, and one
//! server on one port. A library so the end-to-end tests start exactly this.

use std::future::Future;

use anyhow::Context;
use attune_kit::config::Config;
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
    let db = db::connect(&config.database)
        .await
        .context("cannot connect to the database")?;
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
            ServiceName::Consent => server.add_service(
                attune_consent::grpc_service(db.clone(), &config.limits)
                    .await
                    .context("cannot start the consent service")?,
            ),
        };
    }
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
