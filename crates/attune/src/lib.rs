//! What the `attune` binary runs: the registry of services, their migrations, and
//! the three ways to serve them. A library so the end-to-end tests start exactly this.
//!
//! - [`Role::All`] (`attune serve`): every service's backend server runs in this
//!   process, and the gateway serves the public port, calling each backend
//!   directly (no socket, no re-encoding).
//! - [`Role::Service`] (`attune serve --service consent`): one service's backend
//!   server on the listen port: its public API, its internal
//!   `attune.privacy.v1.DataSubjectService`, health and reflection (one pod).
//! - [`Role::Gateway`] (`attune serve --service gateway`): the gateway alone, in
//!   front of the backends at `gateway.backends.<name>`.

pub mod audit;

use std::future::Future;
use std::sync::Arc;

use anyhow::{Context, anyhow, bail};
use attune_gateway::Backend;
use attune_kit::Service;
use attune_kit::clock::Clock;
use attune_kit::config::Config;
use attune_kit::db;
use attune_kit::peer::{Peer, Peers};
use attune_kit::sea_orm::DatabaseConnection;
use attune_kit::server::GrpcServer;
use attune_kit::service::ServiceContext;
use tokio::net::TcpListener;

pub use audit::{verify_audit_log, write_audit_report};

/// Every service this binary runs, each listed once. Adding a service is one line
/// here (and its crate): the gateway, migrations, `--service` and data-subject
/// requests all follow from this list. A service is listed after the services it
/// calls (profile calls consent): in one process each reaches those before it.
pub const SERVICES: &[&dyn Service] = &[
    &attune_consent::ConsentService,
    &attune_profile::ProfileService,
    &attune_recommendation::RecommendationService,
    &attune_loyalty::LoyaltyService,
    &attune_delivery::DeliveryService,
];

/// The name `--service` gives the gateway.
pub const GATEWAY: &str = "gateway";

/// What one `attune serve` process runs.
#[derive(Debug, Clone, Copy)]
pub enum Role {
    /// Every service behind the gateway, in one process.
    All,
    /// The gateway alone, in front of backends in other processes.
    Gateway,
    /// One service's backend server alone.
    Service(&'static dyn Service),
}

impl Role {
    /// The role `--service NAME` asks for; every service when `None`.
    pub fn named(name: Option<&str>) -> anyhow::Result<Self> {
        match name {
            None => Ok(Self::All),
            Some(GATEWAY) => Ok(Self::Gateway),
            Some(name) => SERVICES
                .iter()
                .find(|service| service.name() == name)
                .map(|service| Self::Service(*service))
                .ok_or_else(|| anyhow!("unknown service {name:?}; one of {:?}", role_names())),
        }
    }

    /// The `service.name` its spans and metrics are exported under unless
    /// `telemetry.service_name` says otherwise: `attune` for every service in
    /// one process, `attune-<service>` (`attune-gateway`) for one role, so a
    /// trace across pods names each hop's service.
    pub fn telemetry_name(self) -> String {
        match self {
            Self::All => "attune".to_owned(),
            Self::Gateway => format!("attune-{GATEWAY}"),
            Self::Service(service) => format!("attune-{}", service.name()),
        }
    }

    /// What `--service` calls this role (`all` for every service): the `pool`
    /// label of its database's metrics.
    pub fn name(self) -> &'static str {
        match self {
            Self::All => "all",
            Self::Gateway => GATEWAY,
            Self::Service(service) => service.name(),
        }
    }

    /// Whether this role serves the public port (and keeps the gateway's data).
    pub fn runs_gateway(self) -> bool {
        matches!(self, Self::All | Self::Gateway)
    }

    /// The services whose schema and backend this role runs.
    pub fn services(self) -> Vec<&'static dyn Service> {
        match self {
            Self::All => SERVICES.to_vec(),
            Self::Gateway => Vec::new(),
            Self::Service(service) => vec![service],
        }
    }
}

/// Every name `--service` accepts: each service, then `gateway`.
pub fn role_names() -> Vec<&'static str> {
    SERVICES
        .iter()
        .map(|service| service.name())
        .chain([GATEWAY])
        .collect()
}

/// The names on a data-subject request's receipts, in the order the gateway
/// lists them: every service holding personal data, and the gateway's own
/// data-access log.
pub fn data_subject_receipts() -> Vec<&'static str> {
    let mut names: Vec<_> = SERVICES
        .iter()
        .filter(|service| service.holds_personal_data())
        .map(|service| service.api_package())
        .chain([attune_gateway::ACCESS_LOG_PACKAGE])
        .collect();
    names.sort_unstable();
    names
}

/// Connects to the configured database and brings the schemas of what `role`
/// runs up to date: each of its services', and the gateway's (its data-access
/// log) when it runs the gateway.
pub async fn migrate(config: &Config, role: Role) -> anyhow::Result<DatabaseConnection> {
    // The error names the database (without its password) and the cause.
    let db = db::connect_observed(&config.database, role.name()).await?;
    for service in role.services() {
        service
            .migrate(&db)
            .await
            .with_context(|| format!("cannot migrate the {} schema", service.name()))?;
    }
    if role.runs_gateway() {
        db::migrate::<attune_gateway::Migrator>(&db)
            .await
            .context("cannot migrate the gateway schema")?;
    }
    Ok(db)
}

/// Runs `role` on `listener` until `shutdown` resolves, then drains and stops.
/// Services read the system clock.
pub async fn serve(
    config: Config,
    role: Role,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    serve_with_clock(config, role, listener, shutdown, Clock::system()).await
}

/// [`serve`], with every service reading "now" from `clock`: how a test runs
/// the real server on a [`ManualClock`](attune_kit::clock::ManualClock).
pub async fn serve_with_clock(
    config: Config,
    role: Role,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
    clock: Clock,
) -> anyhow::Result<()> {
    let address = listener.local_addr()?;
    match role {
        Role::Service(service) => {
            let db = migrate(&config, role).await?;
            let peers = Peers::remote(&config.peers.addresses, &config.replicas)?;
            let mut server = GrpcServer::new(config.limits.clone());
            mount(service, &mut server, &db, &config, &clock, &peers).await?;
            tracing::info!(%address, service = service.name(), "attune is serving");
            server.serve(listener, shutdown).await?;
            close(db).await?;
        }
        Role::Gateway => {
            // Every setting checked before anything is created: the policy
            // (which refuses a non-loopback address without authentication
            // configured) and every backend address.
            let policy = attune_gateway::PolicySettings::load(&config, address, clock.clone())?;
            let backends = remote_backends(&config)?;
            let db = migrate(&config, role).await?;
            let mut server = GrpcServer::new(config.limits.clone());
            mount_gateway(&mut server, backends, policy, &db, &config, &clock).await?;
            tracing::info!(%address, service = GATEWAY, "attune is serving");
            server.serve(listener, shutdown).await?;
            close(db).await?;
        }
        Role::All => serve_all(config, listener, shutdown, clock).await?,
    }
    tracing::info!("attune stopped");
    Ok(())
}

/// Every service's backend in process, the gateway on `listener`.
async fn serve_all(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
    clock: Clock,
) -> anyhow::Result<()> {
    let address = listener.local_addr()?;
    // Checked before anything starts: the public port's policy, which refuses a
    // non-loopback address without authentication configured.
    let policy = attune_gateway::PolicySettings::load(&config, address, clock.clone())?;
    let db = migrate(&config, Role::All).await?;
    let mut locals = Vec::with_capacity(SERVICES.len());
    let mut backends = Vec::with_capacity(SERVICES.len());
    // Each service calls those listed before it in SERVICES directly.
    let mut peers = Peers::default();
    for service in SERVICES {
        let mut server = GrpcServer::new(config.limits.clone());
        mount(*service, &mut server, &db, &config, &clock, &peers).await?;
        let local = server.start_local().await?;
        peers.insert(service.name(), Peer::local(local.service()));
        backends.push(Backend::in_process(*service, &local));
        locals.push(local);
    }
    let mut gateway = GrpcServer::new(config.limits.clone());
    mount_gateway(&mut gateway, backends, policy, &db, &config, &clock).await?;
    tracing::info!(
        %address,
        services = ?role_names(),
        "attune is serving"
    );

    // Backends begin their shutdown with the gateway (NOT_SERVING, streams end),
    // then serve its drain; their background tasks stop after it.
    let locals = Arc::new(locals);
    let draining = Arc::clone(&locals);
    let served = gateway
        .serve(listener, async move {
            shutdown.await;
            for local in draining.iter() {
                local.begin_shutdown().await;
            }
        })
        .await;
    match Arc::try_unwrap(locals) {
        Ok(locals) => {
            for local in locals {
                local.stop().await;
            }
        }
        Err(_) => tracing::warn!("backends still referenced after the gateway stopped"),
    }
    served?;
    close(db).await
}

async fn mount(
    service: &'static dyn Service,
    server: &mut GrpcServer,
    db: &DatabaseConnection,
    config: &Config,
    clock: &Clock,
    peers: &Peers,
) -> anyhow::Result<()> {
    let context = ServiceContext::new(db.clone(), config.clone(), clock.clone(), peers.clone());
    service
        .mount(server, context)
        .await
        .map_err(|error| anyhow!(error))
        .with_context(|| format!("cannot start the {} service", service.name()))?;
    // Each backend watches its database: while it is unreachable, calls fail
    // UNAVAILABLE at once and health (mirrored by the gateway) says NOT_SERVING.
    server.watch_database(db.clone(), (&config.database).into());
    Ok(())
}

/// The gateway on `server` in front of `backends`, behind `policy`, its
/// data-access log in `db`.
async fn mount_gateway(
    server: &mut GrpcServer,
    backends: Vec<Backend>,
    policy: attune_gateway::PolicySettings,
    db: &DatabaseConnection,
    config: &Config,
    clock: &Clock,
) -> anyhow::Result<()> {
    let (access_log, writer) =
        attune_gateway::AccessLog::open(db.clone(), clock.clone(), &config.secrets)
            .await
            .context("cannot open the gateway's data-access log")?;
    writer.start_on(server);
    let policy = policy.in_front_of(&backends, access_log.clone());
    attune_gateway::mount_experience(
        server,
        &backends,
        &access_log,
        &config.consent_checker,
        &config.limits,
        clock.clone(),
    );
    attune_gateway::mount(server, backends, &access_log, &config.limits)
        .await
        .context("cannot start the gateway")?;
    policy.protect(server);
    // The gateway does not watch its database as the backends do: routing needs
    // none, so an outage of it costs only the access log's writes (retried).
    Ok(())
}

/// The backends of `attune serve --service gateway`: every registered service at
/// its configured address (or addresses: its replicas).
fn remote_backends(config: &Config) -> anyhow::Result<Vec<Backend>> {
    let configured = &config.gateway.backends;
    if let Some(unknown) = configured
        .keys()
        .find(|name| !SERVICES.iter().any(|service| service.name() == *name))
    {
        bail!(
            "gateway.backends names an unknown service {unknown:?}; known: {:?}",
            SERVICES.iter().map(|s| s.name()).collect::<Vec<_>>()
        );
    }
    SERVICES
        .iter()
        .map(|service| {
            let name = service.name();
            let address = configured.get(name).with_context(|| {
                format!(
                    "the gateway needs the {name} service's address: set gateway.backends.{name} \
                     (ATTUNE_GATEWAY__BACKENDS__{}), e.g. http://{name}:50051",
                    name.to_ascii_uppercase()
                )
            })?;
            Ok(Backend::remote(*service, address, &config.replicas)?)
        })
        .collect()
}

async fn close(db: DatabaseConnection) -> anyhow::Result<()> {
    db.close().await.context("cannot close the database")
}

#[cfg(test)]
mod tests {
    use super::{GATEWAY, Role, SERVICES, role_names};

    #[test]
    fn registered_services_have_distinct_names_and_packages() {
        let mut names: Vec<_> = SERVICES.iter().map(|s| s.name()).collect();
        let mut packages: Vec<_> = SERVICES.iter().map(|s| s.api_package()).collect();
        names.sort_unstable();
        names.dedup();
        packages.sort_unstable();
        packages.dedup();
        assert_eq!(names.len(), SERVICES.len(), "{names:?}");
        assert_eq!(packages.len(), SERVICES.len(), "{packages:?}");
        assert!(!names.contains(&GATEWAY), "`gateway` names the gateway");
        for service in SERVICES {
            let prefix = format!("{}.", service.api_package());
            assert!(
                service
                    .api_services()
                    .iter()
                    .all(|s| s.starts_with(&prefix)),
                "{service:?} routes only its own package"
            );
        }
    }

    #[test]
    fn every_role_name_parses_and_nothing_else_does() {
        for name in role_names() {
            assert!(Role::named(Some(name)).is_ok(), "{name}");
        }
        assert!(matches!(Role::named(None), Ok(Role::All)));
        assert!(matches!(Role::named(Some(GATEWAY)), Ok(Role::Gateway)));
        assert!(Role::named(Some("nosuch")).is_err());
    }

    #[test]
    fn each_role_is_traced_under_its_own_name() {
        assert_eq!(Role::All.telemetry_name(), "attune");
        assert_eq!(Role::Gateway.telemetry_name(), "attune-gateway");
        let consent = Role::named(Some("consent")).expect("consent is a role");
        assert_eq!(consent.telemetry_name(), "attune-consent");
    }
}
