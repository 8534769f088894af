//! Who used my data (`attune.gateway.v1.DataAccessService`): every read of a
//! customer's personal data through the public port is recorded in a table the
//! gateway owns, and the customer can page through it. The log is personal data
//! itself, so it takes part in data-subject requests like a backend: its own
//! `attune.privacy.v1.DataSubjectService` exports and erases it, and
//! [`AccessLog::backend`] registers that with the gateway's fan-out.
//!
//! Recording never waits for the database: [`AccessLog::record`] hands the entry
//! to a writer task that stores entries in batches (one transaction each), and
//! writes every pending entry before the server stops.

mod api;
mod migration;
mod reads;
mod store;
mod subject;
mod writer;

use attune_kit::clock::Clock;
use attune_kit::config::Limits;
use attune_kit::secrets::{PseudonymKey, SecretsConfig, SecretsError};
use attune_kit::server::{GrpcServer, ServerError};
use attune_kit::types::{CustomerId, DataCategory};
use attune_proto::gateway::v1::CallerKind;
use attune_proto::gateway::v1::data_access_service_server::DataAccessServiceServer;
use attune_proto::privacy::v1::data_subject_service_server::DataSubjectServiceServer;
use sea_orm::DatabaseConnection;
use tokio::sync::mpsc;

use crate::backend::Backend;

pub use migration::Migrator;
pub use reads::{NOT_RECORDED, READS, Read, read_of};
pub(crate) use store::WRITE_LOCK;

/// The package the log's receipts in data-subject requests are named by.
pub const PACKAGE: &str = "attune.gateway.v1";

/// Entries waiting for the writer at most; past it, [`AccessLog::record`] waits
/// (the caller's call is slowed, never its entry dropped).
const PENDING_ENTRIES: usize = 10_000;

/// Who made a call, as the log keeps it: never another customer's id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// The kind of caller.
    pub kind: CallerKind,
    /// The API key's or client's name, "customer", or "development".
    pub name: String,
    /// For store staff, their store; empty otherwise.
    pub store_id: String,
}

impl Caller {
    /// The caller of a gateway that authenticates nobody (development mode).
    pub fn development() -> Self {
        Self {
            kind: CallerKind::Development,
            name: "development".to_owned(),
            store_id: String::new(),
        }
    }
}

/// One read of one customer's data, as the policy let it through.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Access {
    /// The customer id the call named.
    pub customer: CustomerId,
    /// Who called.
    pub caller: Caller,
    /// The RPC, `package.Service/Method`.
    pub rpc: String,
    /// The purposes the data was read for.
    pub purpose_codes: Vec<String>,
    /// The categories of data the RPC returns.
    pub data_categories: Vec<DataCategory>,
}

/// The log's writer, not started yet.
#[derive(Debug)]
pub struct AccessLogWriter {
    db: DatabaseConnection,
    jobs: mpsc::Receiver<writer::Job>,
}

impl AccessLogWriter {
    /// Runs the writer as a background task of `server` (the public port), which
    /// writes every pending entry before it stops.
    pub fn start_on(self, server: &GrpcServer) {
        let Self { db, jobs } = self;
        server.spawn_background("access-log-writer", move |cancel| {
            writer::run(db, jobs, cancel)
        });
    }
}

/// The gateway's data-access log.
#[derive(Clone, Debug)]
pub struct AccessLog {
    db: DatabaseConnection,
    clock: Clock,
    key: PseudonymKey,
    pending: mpsc::Sender<writer::Job>,
}

impl AccessLog {
    /// The log over `db` (migrated with [`Migrator`]), and its writer, which
    /// must be started on the public port's server
    /// ([`AccessLogWriter::start_on`]) before calls are recorded.
    pub async fn open(
        db: DatabaseConnection,
        clock: Clock,
        secrets: &SecretsConfig,
    ) -> Result<(Self, AccessLogWriter), SecretsError> {
        let (key, _) = store::SECRETS.pseudonym_key(&db, secrets).await?;
        let (pending, jobs) = mpsc::channel(PENDING_ENTRIES);
        let writer = AccessLogWriter {
            db: db.clone(),
            jobs,
        };
        Ok((
            Self {
                db,
                clock,
                key,
                pending,
            },
            writer,
        ))
    }

    /// Records `access`, stamped now. Waits only while the writer is
    /// [`PENDING_ENTRIES`] behind.
    pub async fn record(&self, access: Access) {
        let entry = store::Entry::new(access, self.clock.now());
        if self.pending.send(writer::Job::Write(entry)).await.is_err() {
            // Only after shutdown, when no call is served any more.
            tracing::warn!("data-access entry after the log's writer stopped; not recorded");
        }
    }

    /// The log's database, clock and pseudonymisation key, which the
    /// gateway's other records (data-subject requests) share.
    pub(crate) fn parts(&self) -> (DatabaseConnection, Clock, PseudonymKey) {
        (self.db.clone(), self.clock.clone(), self.key.clone())
    }

    /// Serves `ListDataAccess` on `server` (the public port).
    pub(crate) fn mount_api(&self, server: &mut GrpcServer, limits: &Limits) {
        server.add_service(attune_kit::with_limits!(
            DataAccessServiceServer::new(api::DataAccessApi::new(
                self.db.clone(),
                writer::Flush::new(self.pending.clone()),
            )),
            limits
        ));
    }

    /// The log as a data-holding backend of the gateway's data-subject fan-out:
    /// its own `attune.privacy.v1.DataSubjectService` on a server of this
    /// process without background tasks (so it needs no stopping).
    pub(crate) async fn backend(&self, limits: &Limits) -> Result<Backend, ServerError> {
        let mut server = GrpcServer::new(limits.clone());
        server.add_service(DataSubjectServiceServer::new(
            subject::AccessLogSubject::new(
                self.db.clone(),
                self.clock.clone(),
                self.key.clone(),
                writer::Flush::new(self.pending.clone()),
            ),
        ));
        let local = server.start_local().await?;
        Ok(Backend::own(PACKAGE, &local))
    }
}
