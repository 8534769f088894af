//! The runtime every Attune service shares, so that no service copies plumbing:
//!
//! - [`config`]: one typed [`Config`], layered defaults → TOML file →
//!   `ATTUNE_*` environment → flags.
//! - [`telemetry`]: logging, OpenTelemetry export, W3C trace context across gRPC.
//! - [`db`]: SQLite / PostgreSQL connections and per-service migrations.
//! - [`error`]: [`ApiError`], the one mapping to `tonic::Status`.
//! - [`in_process`]: gRPC channels between services of one process.
//! - [`pagination`]: page sizes and opaque page tokens.
//! - [`consent`]: the consent rule every service applies the same way.
//! - [`privacy`]: shared pieces of data-subject export and erasure.
//! - [`server`]: the gRPC bootstrap (health, reflection, limits, graceful shutdown),
//!   on a port or started in process for the gateway to call directly.
//! - [`service`]: [`Service`], what a service tells the platform about itself.
//!
//! `sea_orm` and `sea_orm_migration` are re-exported so every service builds against
//! the same versions as the kit.

pub mod config;
pub mod consent;
pub mod db;
pub mod error;
pub mod in_process;
pub mod pagination;
pub mod privacy;
pub mod server;
pub mod service;
pub mod telemetry;

pub use sea_orm;
pub use sea_orm_migration;

pub use config::{
    Config, ConfigArgs, ConfigError, ConsentCheckerConfig, DatabaseConfig, FeedConfig,
    GatewayConfig, Limits, LogFormat, TelemetryConfig,
};
pub use error::{ApiError, FieldViolation, Violations};
pub use server::{GrpcServer, HttpService, LocalServer, ServerError, shutdown_signal};
pub use service::Service;
