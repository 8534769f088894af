//! The runtime every Attune service shares, so that no service copies plumbing:
//!
//! - [`config`]: one typed [`Config`], layered defaults → TOML file →
//!   `ATTUNE_*` environment → flags.
//! - [`telemetry`]: logging, OpenTelemetry export, W3C trace context across gRPC.
//! - [`db`]: SQLite / PostgreSQL connections and per-service migrations; the one
//!   write path (`begin_write` under a service's [`db::WriteLock`], `begin_snapshot`)
//!   and microsecond time columns.
//! - [`idempotency`]: retries by request id get the first answer, in every service.
//! - [`secrets`]: the pseudonymisation key (configured, or generated) and keyed
//!   pseudonyms and request fingerprints.
//! - [`clock`]: "now", settable in tests.
//! - [`error`]: [`ApiError`], the one mapping to `tonic::Status`.
//! - [`feed`]: an ordered, resumable feed over a table of positioned rows.
//! - [`follower`]: applies a feed to a consumer's database, exactly once, one
//!   replica at a time.
//! - [`in_process`]: gRPC channels between services of one process.
//! - [`metrics`]: the Prometheus endpoint, per-call gRPC metrics, pool usage.
//! - [`pagination`]: page sizes and opaque page tokens.
//! - [`consent`]: the consent rule every service applies the same way.
//! - [`privacy`]: shared pieces of data-subject export and erasure: checked
//!   requests, the two-part export's paging, an erasure's outcome.
//! - [`server`]: the gRPC bootstrap (health, reflection, limits, graceful shutdown),
//!   on a port or started in process for the gateway to call directly.
//! - [`service`]: [`Service`], what a service tells the platform about itself.
//! - [`types`]: ids, enums, money and times every service shares, with their wire
//!   conversions.
//!
//! `sea_orm` and `sea_orm_migration` are re-exported so every service builds against
//! the same versions as the kit.

pub mod clock;
pub mod config;
pub mod consent;
pub mod db;
pub mod error;
pub mod feed;
pub mod follower;
pub mod idempotency;
pub mod in_process;
pub mod metrics;
pub mod pagination;
pub mod peer;
pub mod privacy;
pub mod profile_feed;
pub mod replicas;
pub mod secrets;
pub mod server;
pub mod service;
pub mod telemetry;
pub mod types;

pub use sea_orm;
pub use sea_orm_migration;

pub use config::{
    Config, ConfigArgs, ConfigError, ConsentCheckerConfig, DatabaseConfig, FeedConfig,
    GatewayConfig, Limits, LogFormat, PeersConfig, ProfileConfig, TelemetryConfig,
};
pub use error::{ApiError, FieldViolation, Violations};
pub use server::{GrpcServer, HttpService, LocalServer, ServerError, shutdown_signal};
pub use service::Service;
