//! `attune`: the one binary. `attune serve` runs every service behind the gateway
//! on one port with an embedded SQLite file; `attune serve --service NAME` runs one
//! service, or the gateway alone (one pod each);
//! `attune migrate` brings the schema up to date and exits; `attune audit verify`
//! checks the privacy audit log's hash chain; `attune eval` measures the
//! recommendation models offline on order data.

mod eval;

use std::io::Write;
use std::process::ExitCode;

use anyhow::Context;
use attune::Role;
use attune_kit::config::{Config, ConfigArgs, TelemetryConfig, document_settings};
use attune_kit::error::ErrorChain;
use attune_kit::metrics::endpoint::MetricsEndpoint;
use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};

/// Every request allocates its messages, rows and buffers on several threads;
/// glibc's allocator spent a fifth of the server's time on event ingestion
/// (`scripts/bench-profile-ingest`), mimalloc's thread-local heaps far less.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
        /// Run only this service (one per pod), or only the gateway in front of
        /// services at `gateway.backends.<name>` (each address one replica, a
        /// comma-separated list of them, or a host name resolving to them); all
        /// services behind the gateway when absent.
        #[arg(long, env = "ATTUNE_SERVICE", value_parser = clap::builder::PossibleValuesParser::new(attune::role_names()))]
        service: Option<String>,
        #[command(flatten)]
        config: ConfigArgs,
    },
    /// Run pending database migrations, then exit.
    Migrate {
        /// Migrate only this service's schema (the gateway has none); all when absent.
        #[arg(long, env = "ATTUNE_SERVICE", value_parser = clap::builder::PossibleValuesParser::new(attune::role_names()))]
        service: Option<String>,
        #[command(flatten)]
        config: ConfigArgs,
    },
    /// Evaluate the recommendation models offline on order data (a CSV of order
    /// lines): NDCG, precision, recall, hit rate and coverage per model.
    Eval(eval::EvalArgs),
    /// Inspect the privacy audit log.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
}

#[derive(Debug, Subcommand)]
enum AuditCommand {
    /// Verify the audit log's hash chain in an existing, migrated database and name
    /// the first altered, missing or reordered entry. Exits 0 when the chain is
    /// intact, 1 when it is broken, 2 when it could not be checked.
    Verify {
        #[command(flatten)]
        config: ConfigArgs,
    },
}

#[tokio::main]
async fn main() -> ExitCode {
    // `--help` names each setting's default and environment variable.
    let matches = document_settings(Cli::command()).get_matches();
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|error| error.exit());
    match run(cli.command).await {
        Ok(code) => code,
        Err(error) => {
            report(&error);
            ExitCode::FAILURE
        }
    }
}

/// Prints `error` on one line, each cause once: no "Caused by" list repeating
/// what a wrapper already said, no backtrace (a start-up error is not a bug).
fn report(error: &anyhow::Error) {
    eprintln!("Error: {}", ErrorChain(error.as_ref()));
}

async fn run(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Serve { service, config } => {
            let role = Role::named(service.as_deref())?;
            let config = load_for(role, &config)?;
            let telemetry = attune_kit::telemetry::init(&config.telemetry)?;
            let listener = tokio::net::TcpListener::bind(config.listen)
                .await
                .with_context(|| format!("cannot listen on {}", config.listen))?;
            let metrics = match (config.telemetry.metrics_listen, telemetry.exposition()) {
                (Some(address), Some(exposition)) => Some(
                    MetricsEndpoint::start(address, exposition)
                        .await
                        .with_context(|| format!("cannot serve metrics on {address}"))?,
                ),
                _ => None,
            };
            let served = attune::serve(
                config,
                role,
                listener,
                attune_kit::server::shutdown_signal(),
            )
            .await;
            // Scraped until the server has drained, then stopped with it.
            if let Some(metrics) = metrics {
                metrics.stop().await;
            }
            served?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Migrate { service, config } => {
            let role = Role::named(service.as_deref())?;
            let config = load_for(role, &config)?;
            let _telemetry = attune_kit::telemetry::init(&config.telemetry)?;
            let db = attune::migrate(&config, role).await?;
            db.close().await.context("cannot close the database")?;
            tracing::info!("migrations applied");
            Ok(ExitCode::SUCCESS)
        }
        Command::Audit {
            command: AuditCommand::Verify { config },
        } => audit_verify(&config).await,
        Command::Eval(args) => {
            // Training is CPU-bound and synchronous: keep it off the runtime's workers.
            tokio::task::spawn_blocking(move || {
                let mut out = std::io::stdout().lock();
                eval::run(&args, &mut out)?;
                out.flush()?;
                Ok(ExitCode::SUCCESS)
            })
            .await?
        }
    }
}

/// The configuration `role` runs with: telemetry's `service.name` is the
/// role's own ([`Role::telemetry_name`]) unless set to something other than
/// the default.
fn load_for(role: Role, args: &ConfigArgs) -> anyhow::Result<Config> {
    let mut config = Config::load(args)?;
    if config.telemetry.service_name == TelemetryConfig::default().service_name {
        config.telemetry.service_name = role.telemetry_name();
    }
    Ok(config)
}

/// `attune audit verify`: 0 intact, 1 broken, 2 when it could not be checked (a
/// script must not mistake "could not check" for "broken").
async fn audit_verify(args: &ConfigArgs) -> anyhow::Result<ExitCode> {
    let config = match Config::load(args) {
        Ok(config) => config,
        Err(error) => return Ok(unchecked(&error.into())),
    };
    let _telemetry = match attune_kit::telemetry::init(&config.telemetry) {
        Ok(telemetry) => telemetry,
        Err(error) => return Ok(unchecked(&error.into())),
    };
    let verification = match attune::verify_audit_log(&config).await {
        Ok(verification) => verification,
        Err(error) => return Ok(unchecked(&error)),
    };
    let mut out = std::io::stdout().lock();
    attune::write_audit_report(&mut out, &verification)?;
    out.flush()?;
    Ok(if verification.is_intact() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn unchecked(error: &anyhow::Error) -> ExitCode {
    report(error);
    ExitCode::from(2)
}
