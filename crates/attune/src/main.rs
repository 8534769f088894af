//! `attune`: the one binary. `attune serve` runs every service on one port with an
//! embedded SQLite file; `attune serve --service NAME` runs one service (one pod);
//! `attune migrate` brings the schema up to date and exits.

use anyhow::Context;
use attune::{ServiceName, selected};
use attune_kit::config::{Config, ConfigArgs};
use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "attune",
    version,
    about = "Consent-first personalization for retailers, over gRPC."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve the gRPC APIs until SIGTERM or Ctrl-C.
    Serve {
        /// Run only this service (one per pod); all services when absent.
        #[arg(long, env = "ATTUNE_SERVICE", value_enum)]
        service: Option<ServiceName>,
        #[command(flatten)]
        config: ConfigArgs,
    },
    /// Run pending database migrations, then exit.
    Migrate {
        /// Migrate only this service's schema; all when absent.
        #[arg(long, env = "ATTUNE_SERVICE", value_enum)]
        service: Option<ServiceName>,
        #[command(flatten)]
        config: ConfigArgs,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Serve { service, config } => {
            let config = Config::load(&config)?;
            let _telemetry = attune_kit::telemetry::init(&config.telemetry)?;
            let listener = tokio::net::TcpListener::bind(config.listen)
                .await
                .with_context(|| format!("cannot listen on {}", config.listen))?;
            attune::serve(
                config,
                &selected(service),
                listener,
                attune_kit::server::shutdown_signal(),
            )
            .await
        }
        Command::Migrate { service, config } => {
            let config = Config::load(&config)?;
            let _telemetry = attune_kit::telemetry::init(&config.telemetry)?;
            attune::migrate(&config, &selected(service)).await?;
            tracing::info!("migrations applied");
            Ok(())
        }
    }
}
