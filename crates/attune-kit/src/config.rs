//! One typed configuration for every Attune process, layered by figment (no
//! hand-written merger), each layer overriding the one before:
//!
//! 1. defaults ([`Config::default`]);
//! 2. an optional TOML file (`--config FILE` or `ATTUNE_CONFIG`);
//! 3. `ATTUNE_*` environment variables, `__` nesting sections
//!    (`ATTUNE_LISTEN`, `ATTUNE_DATABASE__URL`, `ATTUNE_LIMITS__MAX_MESSAGE_BYTES`);
//! 4. command-line flags, only those given.
//!
//! Durations are humantime strings (`"30s"`, `"1m 30s"`) in the file and environment.
//! Unknown keys are ignored rather than rejected: the binary, the test suite and
//! future sections share the `ATTUNE_` prefix and the file.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Serialize};

/// Prefix of every environment variable read as configuration.
pub const ENV_PREFIX: &str = "ATTUNE_";

/// Environment variable naming the configuration file (same as `--config`).
pub const CONFIG_FILE_ENV: &str = "ATTUNE_CONFIG";

/// Everything an Attune process can be configured with.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct Config {
    /// Address the gRPC server listens on.
    pub listen: SocketAddr,
    /// Where state is stored.
    pub database: DatabaseConfig,
    /// Logs and traces.
    pub telemetry: TelemetryConfig,
    /// Bounds on requests and shutdown.
    pub limits: Limits,
    /// How ordered change feeds (consent's changes) are served.
    pub feeds: FeedConfig,
    /// The cached consent checker other services ask before using personal data.
    pub consent_checker: ConsentCheckerConfig,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 50051)),
            database: DatabaseConfig::default(),
            telemetry: TelemetryConfig::default(),
            limits: Limits::default(),
            feeds: FeedConfig::default(),
            consent_checker: ConsentCheckerConfig::default(),
        }
    }
}

/// Database connection settings (see [`crate::db::connect`]).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct DatabaseConfig {
    /// `sqlite://PATH?mode=rwc` or `postgres://USER@HOST:PORT/DB`.
    pub url: String,
    /// Upper bound of the connection pool.
    pub max_connections: u32,
    /// How long a query waits for a free pooled connection before failing
    /// (UNAVAILABLE). Short, so that calls fail well inside a client's deadline
    /// while an outage is not yet noticed by the health probe.
    #[serde(with = "humantime_serde")]
    pub acquire_timeout: Duration,
    /// How often the server probes the database; while a probe fails, calls
    /// answer UNAVAILABLE at once and health reports NOT_SERVING.
    #[serde(with = "humantime_serde")]
    pub health_interval: Duration,
    /// How long SQLite waits on a locked database before failing (SQLite only).
    #[serde(with = "humantime_serde")]
    pub busy_timeout: Duration,
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        Self {
            url: "sqlite://attune.db?mode=rwc".to_owned(),
            max_connections: 10,
            acquire_timeout: Duration::from_secs(1),
            health_interval: Duration::from_millis(500),
            busy_timeout: Duration::from_secs(5),
        }
    }
}

/// Log line format.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Readable lines for a terminal.
    #[default]
    Human,
    /// One JSON object per line, for log collectors.
    Json,
}

/// Logging and tracing settings (see [`crate::telemetry::init`]).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct TelemetryConfig {
    /// Log line format.
    pub log_format: LogFormat,
    /// `tracing` filter directives, e.g. `info,attune_consent=debug`; `RUST_LOG` wins if set.
    pub log_filter: String,
    /// OTLP/gRPC collector endpoint (e.g. `http://otel-collector:4317`); no export if unset.
    pub otlp_endpoint: Option<String>,
    /// `service.name` resource attribute of exported spans and metrics.
    pub service_name: String,
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        Self {
            log_format: LogFormat::Human,
            log_filter: "info".to_owned(),
            otlp_endpoint: None,
            service_name: "attune".to_owned(),
        }
    }
}

/// Bounds that protect a server from its callers and bound its shutdown.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct Limits {
    /// Largest gRPC message decoded or encoded, in bytes.
    pub max_message_bytes: usize,
    /// Concurrent requests served per client connection.
    pub concurrency_per_connection: usize,
    /// Deadline of a call whose client set none (a shorter `grpc-timeout` wins).
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
    /// Longest time in-flight calls may drain at shutdown before connections are cut.
    #[serde(with = "humantime_serde")]
    pub shutdown_grace: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_message_bytes: 4 * 1024 * 1024,
            concurrency_per_connection: 256,
            request_timeout: Duration::from_secs(30),
            shutdown_grace: Duration::from_secs(10),
        }
    }
}

/// How a service serves an ordered change feed to its watchers.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct FeedConfig {
    /// How often the database is polled for changes committed by other processes
    /// (changes made in this process wake watchers at once).
    #[serde(with = "humantime_serde")]
    pub poll_interval: Duration,
    /// Longest silence on a watch stream: with nothing to send, the server sends a
    /// heartbeat this often so watchers can tell quiet from broken.
    #[serde(with = "humantime_serde")]
    pub heartbeat_interval: Duration,
}

impl Default for FeedConfig {
    fn default() -> Self {
        Self {
            poll_interval: Duration::from_millis(100),
            heartbeat_interval: Duration::from_millis(250),
        }
    }
}

/// Settings of the cached consent checker (see [`crate::consent`]).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct ConsentCheckerConfig {
    /// How long the checker answers from its cache without hearing from the
    /// consent change stream; past it, every check fails closed ("not granted").
    /// It bounds how late a withdrawal can take effect when the stream breaks.
    #[serde(with = "humantime_serde")]
    pub freshness_bound: Duration,
    /// Most customers kept in memory; the least used are evicted beyond it.
    pub max_customers: u64,
}

impl Default for ConsentCheckerConfig {
    fn default() -> Self {
        Self {
            freshness_bound: Duration::from_secs(1),
            max_customers: 1_000_000,
        }
    }
}

/// Command-line flags for every setting; flatten into a subcommand with
/// `#[command(flatten)]`. A flag left out leaves the lower layers' value.
#[derive(clap::Args, Debug, Default, Clone)]
pub struct ConfigArgs {
    /// TOML configuration file, read after the defaults and before `ATTUNE_*` variables
    /// [default: none] [env: ATTUNE_CONFIG]
    #[arg(long, value_name = "FILE", env = CONFIG_FILE_ENV, hide_env = true)]
    pub config: Option<PathBuf>,

    /// Address to serve gRPC on [default: 127.0.0.1:50051; use 0.0.0.0:50051 in a pod] [env: ATTUNE_LISTEN]
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<SocketAddr>,

    /// Database URL, `sqlite://PATH?mode=rwc` or `postgres://USER@HOST/DB`
    /// [default: sqlite://attune.db?mode=rwc] [env: ATTUNE_DATABASE__URL]
    #[arg(long, value_name = "URL")]
    pub database_url: Option<String>,

    /// Connection pool size [default: 10] [env: ATTUNE_DATABASE__MAX_CONNECTIONS]
    #[arg(long, value_name = "N")]
    pub database_max_connections: Option<u32>,

    /// How long a query waits for a pooled connection
    /// [default: 5s] [env: ATTUNE_DATABASE__ACQUIRE_TIMEOUT]
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub database_acquire_timeout: Option<Duration>,

    /// How long SQLite waits on a locked database
    /// [default: 5s] [env: ATTUNE_DATABASE__BUSY_TIMEOUT]
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub database_busy_timeout: Option<Duration>,

    /// Log line format [default: human] [env: ATTUNE_TELEMETRY__LOG_FORMAT]
    #[arg(long, value_name = "FORMAT")]
    pub log_format: Option<LogFormat>,

    /// Log filter directives, e.g. `info,attune_consent=debug`; RUST_LOG overrides it
    /// [default: info] [env: ATTUNE_TELEMETRY__LOG_FILTER]
    #[arg(long, value_name = "FILTER")]
    pub log_filter: Option<String>,

    /// OTLP/gRPC endpoint to export traces to, e.g. `http://otel-collector:4317`
    /// [default: none, no export] [env: ATTUNE_TELEMETRY__OTLP_ENDPOINT]
    #[arg(long, value_name = "URL")]
    pub otlp_endpoint: Option<String>,

    /// `service.name` of exported traces
    /// [default: attune] [env: ATTUNE_TELEMETRY__SERVICE_NAME]
    #[arg(long, value_name = "NAME")]
    pub telemetry_service_name: Option<String>,

    /// Largest gRPC message accepted or sent, in bytes
    /// [default: 4194304] [env: ATTUNE_LIMITS__MAX_MESSAGE_BYTES]
    #[arg(long, value_name = "N")]
    pub max_message_bytes: Option<usize>,

    /// Concurrent requests served per client connection
    /// [default: 256] [env: ATTUNE_LIMITS__CONCURRENCY_PER_CONNECTION]
    #[arg(long, value_name = "N")]
    pub concurrency_per_connection: Option<usize>,

    /// Deadline of calls whose client set none, e.g. `30s`
    /// [default: 30s] [env: ATTUNE_LIMITS__REQUEST_TIMEOUT]
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub request_timeout: Option<Duration>,

    /// Longest drain of in-flight calls at shutdown, e.g. `10s`
    /// [default: 10s] [env: ATTUNE_LIMITS__SHUTDOWN_GRACE]
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub shutdown_grace: Option<Duration>,

    /// How often change feeds poll the database for other processes' changes
    /// [default: 100ms] [env: ATTUNE_FEEDS__POLL_INTERVAL]
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub feed_poll_interval: Option<Duration>,

    /// Longest silence on a watch stream before a heartbeat
    /// [default: 250ms] [env: ATTUNE_FEEDS__HEARTBEAT_INTERVAL]
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub feed_heartbeat_interval: Option<Duration>,

    /// How long the consent checker trusts its cache without news from the change
    /// stream before it answers "not granted"
    /// [default: 1s] [env: ATTUNE_CONSENT_CHECKER__FRESHNESS_BOUND]
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub consent_freshness_bound: Option<Duration>,

    /// Most customers the consent checker keeps in memory
    /// [default: 1000000] [env: ATTUNE_CONSENT_CHECKER__MAX_CUSTOMERS]
    #[arg(long, value_name = "N")]
    pub consent_cache_customers: Option<u64>,
}

/// Why the configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// `--config` or `ATTUNE_CONFIG` names a file that is not there.
    #[error("configuration file {} does not exist", path.display())]
    MissingFile {
        /// The path as given.
        path: PathBuf,
    },
    /// A layer holds a value of the wrong type or syntax.
    #[error("invalid configuration: `{key}` (from {origin}): {reason}")]
    Invalid {
        /// Dotted key, e.g. `database.max_connections`.
        key: String,
        /// Where the value came from: the environment variable, the file, ...
        origin: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A value parsed but is out of range.
    #[error("invalid configuration: `{key}` {reason}")]
    OutOfRange {
        /// Dotted key, e.g. `limits.max_message_bytes`.
        key: &'static str,
        /// What is wrong with it.
        reason: &'static str,
    },
}

impl From<figment::Error> for ConfigError {
    fn from(err: figment::Error) -> Self {
        let key = err.path.join(".").to_ascii_lowercase();
        let origin = match &err.metadata {
            // Name the very variable to fix, not just "environment variable(s)".
            Some(md) if md.name.contains("environment variable") => {
                format!("{ENV_PREFIX}{}", err.path.join("__").to_ascii_uppercase())
            }
            Some(md) => match &md.source {
                Some(figment::Source::File(path)) => format!("file {}", path.display()),
                _ => md.name.to_string(),
            },
            None => "configuration".to_owned(),
        };
        Self::Invalid {
            key,
            origin,
            reason: err.kind.to_string(),
        }
    }
}

impl Config {
    /// Loads the layered configuration: defaults, file, `ATTUNE_*` environment, flags.
    pub fn load(args: &ConfigArgs) -> Result<Config, ConfigError> {
        Self::figment(args)?.extract::<Config>()?.validated()
    }

    /// The layered figment behind [`Config::load`], for callers that extract more
    /// sections of their own from the same layers.
    pub fn figment(args: &ConfigArgs) -> Result<Figment, ConfigError> {
        let mut figment = Figment::from(Serialized::defaults(Config::default()));

        // A `ConfigArgs` built in code (not parsed by clap) has not read ATTUNE_CONFIG.
        let file = args.config.clone().or_else(|| {
            std::env::var_os(CONFIG_FILE_ENV)
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
        });
        if let Some(path) = file {
            if !path.is_file() {
                return Err(ConfigError::MissingFile { path });
            }
            figment = figment.merge(Toml::file_exact(path));
        }

        figment = figment.merge(environment());
        Ok(args.merge_into(figment))
    }

    fn validated(self) -> Result<Self, ConfigError> {
        let checks: [(bool, &'static str, &'static str); 9] = [
            (
                self.database.url.trim().is_empty(),
                "database.url",
                "must not be empty",
            ),
            (
                self.database.max_connections == 0,
                "database.max_connections",
                "must be at least 1",
            ),
            (
                self.limits.max_message_bytes == 0,
                "limits.max_message_bytes",
                "must be at least 1",
            ),
            (
                self.limits.concurrency_per_connection == 0,
                "limits.concurrency_per_connection",
                "must be at least 1",
            ),
            (
                self.limits.request_timeout.is_zero(),
                "limits.request_timeout",
                "must be longer than 0s",
            ),
            (
                self.feeds.poll_interval.is_zero(),
                "feeds.poll_interval",
                "must be longer than 0s",
            ),
            (
                self.feeds.heartbeat_interval.is_zero(),
                "feeds.heartbeat_interval",
                "must be longer than 0s",
            ),
            (
                self.consent_checker.freshness_bound <= self.feeds.heartbeat_interval,
                "consent_checker.freshness_bound",
                "must be longer than feeds.heartbeat_interval, or a quiet stream looks broken",
            ),
            (
                self.consent_checker.max_customers == 0,
                "consent_checker.max_customers",
                "must be at least 1",
            ),
        ];
        match checks.into_iter().find(|(bad, _, _)| *bad) {
            Some((_, key, reason)) => Err(ConfigError::OutOfRange { key, reason }),
            None => Ok(self),
        }
    }
}

/// The `ATTUNE_*` layer. `ATTUNE_CONFIG` (the file, already read), `ATTUNE_SERVICE` (a
/// flag of the binary) and `ATTUNE_TEST_*` (the test suite's) are not settings.
fn environment() -> Env {
    Env::prefixed(ENV_PREFIX)
        .filter(|key| {
            let key = key.as_str().to_ascii_lowercase();
            key != "config" && key != "service" && !key.starts_with("test_")
        })
        .split("__")
}

impl ConfigArgs {
    fn merge_into(&self, figment: Figment) -> Figment {
        fn set<T: Serialize>(figment: Figment, key: &str, value: Option<T>) -> Figment {
            match value {
                Some(value) => figment.merge(Serialized::default(key, value)),
                None => figment,
            }
        }
        // Durations go in as humantime strings, the form the Config deserializes.
        let human = |d: Option<Duration>| d.map(|d| humantime::format_duration(d).to_string());

        let f = set(figment, "listen", self.listen);
        let f = set(f, "database.url", self.database_url.clone());
        let f = set(f, "database.max_connections", self.database_max_connections);
        let f = set(
            f,
            "database.acquire_timeout",
            human(self.database_acquire_timeout),
        );
        let f = set(
            f,
            "database.busy_timeout",
            human(self.database_busy_timeout),
        );
        let f = set(f, "telemetry.log_format", self.log_format);
        let f = set(f, "telemetry.log_filter", self.log_filter.clone());
        let f = set(f, "telemetry.otlp_endpoint", self.otlp_endpoint.clone());
        let f = set(
            f,
            "telemetry.service_name",
            self.telemetry_service_name.clone(),
        );
        let f = set(f, "limits.max_message_bytes", self.max_message_bytes);
        let f = set(
            f,
            "limits.concurrency_per_connection",
            self.concurrency_per_connection,
        );
        let f = set(f, "limits.request_timeout", human(self.request_timeout));
        let f = set(f, "limits.shutdown_grace", human(self.shutdown_grace));
        let f = set(f, "feeds.poll_interval", human(self.feed_poll_interval));
        let f = set(
            f,
            "feeds.heartbeat_interval",
            human(self.feed_heartbeat_interval),
        );
        let f = set(
            f,
            "consent_checker.freshness_bound",
            human(self.consent_freshness_bound),
        );
        set(
            f,
            "consent_checker.max_customers",
            self.consent_cache_customers,
        )
    }
}

#[cfg(test)]
#[allow(clippy::result_large_err)] // figment::Jail's closures return figment::Error
mod tests {
    use super::*;
    use figment::Jail;

    fn load(args: &ConfigArgs) -> Result<Config, figment::Error> {
        Config::load(args).map_err(|e| figment::Error::from(e.to_string()))
    }

    #[test]
    fn defaults_apply_without_file_env_or_flags() {
        Jail::expect_with(|_jail| {
            assert_eq!(load(&ConfigArgs::default())?, Config::default());
            Ok(())
        });
    }

    #[test]
    fn file_overrides_defaults_env_overrides_file_flags_override_env() {
        Jail::expect_with(|jail| {
            jail.create_file(
                "attune.toml",
                r#"
                    listen = "127.0.0.1:7000"
                    [database]
                    url = "sqlite://file.db"
                    max_connections = 3
                    [limits]
                    request_timeout = "7s"
                    shutdown_grace = "2s"
                "#,
            )?;
            jail.set_env("ATTUNE_CONFIG", "attune.toml");
            jail.set_env("ATTUNE_DATABASE__URL", "sqlite://env.db");
            jail.set_env("ATTUNE_LIMITS__REQUEST_TIMEOUT", "1m 5s");
            jail.set_env("ATTUNE_LIMITS__MAX_MESSAGE_BYTES", "1024");
            jail.set_env("ATTUNE_TELEMETRY__LOG_FILTER", "info,attune_consent=debug");
            let args = ConfigArgs {
                database_max_connections: Some(4),
                request_timeout: Some(Duration::from_millis(1500)),
                ..ConfigArgs::default()
            };

            let config = load(&args)?;
            // file over defaults
            assert_eq!(config.listen, "127.0.0.1:7000".parse().map_err(|_| "addr")?);
            assert_eq!(config.limits.shutdown_grace, Duration::from_secs(2));
            // env over file
            assert_eq!(config.database.url, "sqlite://env.db");
            assert_eq!(config.limits.max_message_bytes, 1024);
            // flags over env and file
            assert_eq!(config.database.max_connections, 4);
            assert_eq!(config.limits.request_timeout, Duration::from_millis(1500));
            assert_eq!(config.telemetry.log_filter, "info,attune_consent=debug");
            // untouched defaults survive
            assert_eq!(config.telemetry.log_format, LogFormat::Human);
            assert_eq!(config.database.busy_timeout, Duration::from_secs(5));
            Ok(())
        });
    }

    #[test]
    fn explicit_config_flag_wins_over_attune_config_env() {
        Jail::expect_with(|jail| {
            jail.create_file("a.toml", "listen = \"127.0.0.1:1111\"")?;
            jail.create_file("b.toml", "listen = \"127.0.0.1:2222\"")?;
            jail.set_env("ATTUNE_CONFIG", "a.toml");
            let args = ConfigArgs {
                config: Some("b.toml".into()),
                ..ConfigArgs::default()
            };
            assert_eq!(load(&args)?.listen.port(), 2222);
            Ok(())
        });
    }

    #[test]
    fn binary_and_test_variables_are_not_settings() {
        Jail::expect_with(|jail| {
            jail.set_env("ATTUNE_SERVICE", "profile");
            jail.set_env("ATTUNE_TEST_DATABASE_URL", "postgres://x@127.0.0.1/db");
            jail.set_env("ATTUNE_SOMETHING_ELSE", "whatever");
            assert_eq!(load(&ConfigArgs::default())?, Config::default());
            Ok(())
        });
    }

    #[test]
    fn telemetry_settings_come_from_env_and_flags() {
        Jail::expect_with(|jail| {
            jail.set_env("ATTUNE_TELEMETRY__LOG_FORMAT", "json");
            jail.set_env("ATTUNE_TELEMETRY__OTLP_ENDPOINT", "http://collector:4317");
            jail.set_env("ATTUNE_TELEMETRY__SERVICE_NAME", "attune-consent");
            let args = ConfigArgs {
                log_filter: Some("debug".into()),
                ..ConfigArgs::default()
            };
            let telemetry = load(&args)?.telemetry;
            assert_eq!(telemetry.log_format, LogFormat::Json);
            assert_eq!(
                telemetry.otlp_endpoint.as_deref(),
                Some("http://collector:4317")
            );
            assert_eq!(telemetry.log_filter, "debug");
            assert_eq!(telemetry.service_name, "attune-consent");
            Ok(())
        });
    }

    #[test]
    fn bad_value_error_names_the_key_and_the_variable() {
        Jail::expect_with(|jail| {
            jail.set_env("ATTUNE_DATABASE__MAX_CONNECTIONS", "many");
            let message = Config::load(&ConfigArgs::default())
                .err()
                .ok_or("expected an error")?
                .to_string();
            assert_eq!(
                message,
                "invalid configuration: `database.max_connections` (from \
                 ATTUNE_DATABASE__MAX_CONNECTIONS): invalid type: found string \"many\", expected u32"
            );
            Ok(())
        });
    }

    #[test]
    fn bad_duration_in_file_is_rejected_naming_the_key() {
        Jail::expect_with(|jail| {
            jail.create_file("attune.toml", "[limits]\nshutdown_grace = \"soon\"")?;
            let args = ConfigArgs {
                config: Some("attune.toml".into()),
                ..ConfigArgs::default()
            };
            let message = Config::load(&args)
                .err()
                .ok_or("expected an error")?
                .to_string();
            assert!(
                message.starts_with("invalid configuration: `limits.shutdown_grace` (from file "),
                "{message}"
            );
            assert!(message.contains("attune.toml"), "{message}");
            Ok(())
        });
    }

    #[test]
    fn missing_config_file_is_an_error() {
        Jail::expect_with(|_jail| {
            let args = ConfigArgs {
                config: Some("nope.toml".into()),
                ..ConfigArgs::default()
            };
            match Config::load(&args) {
                Err(ConfigError::MissingFile { path }) => {
                    assert_eq!(path, PathBuf::from("nope.toml"))
                }
                other => return Err(format!("unexpected {other:?}").into()),
            }
            Ok(())
        });
    }

    #[test]
    fn zero_limits_are_rejected() {
        Jail::expect_with(|jail| {
            jail.set_env("ATTUNE_LIMITS__MAX_MESSAGE_BYTES", "0");
            match Config::load(&ConfigArgs::default()) {
                Err(ConfigError::OutOfRange { key, .. }) => {
                    assert_eq!(key, "limits.max_message_bytes")
                }
                other => return Err(format!("unexpected {other:?}").into()),
            }
            Ok(())
        });
    }

    #[test]
    fn every_flag_parses_and_help_names_its_variable() {
        use clap::{CommandFactory, Parser};

        #[derive(Parser)]
        struct Cli {
            #[command(flatten)]
            config: ConfigArgs,
        }

        let cli = Cli::try_parse_from([
            "attune",
            "--listen=127.0.0.1:9",
            "--database-url=postgres://u@h/db",
            "--database-max-connections=2",
            "--database-acquire-timeout=1s",
            "--database-busy-timeout=2s",
            "--log-format=json",
            "--log-filter=warn",
            "--otlp-endpoint=http://c:4317",
            "--telemetry-service-name=attune-consent",
            "--max-message-bytes=10",
            "--concurrency-per-connection=3",
            "--request-timeout=4s",
            "--shutdown-grace=5s",
        ]);
        let args = match cli {
            Ok(cli) => cli.config,
            Err(err) => panic!("flags must parse: {err}"),
        };
        assert_eq!(args.shutdown_grace, Some(Duration::from_secs(5)));
        assert_eq!(args.log_format, Some(LogFormat::Json));

        let help = Cli::command().render_long_help().to_string();
        for var in [
            "ATTUNE_CONFIG",
            "ATTUNE_LISTEN",
            "ATTUNE_DATABASE__URL",
            "ATTUNE_DATABASE__MAX_CONNECTIONS",
            "ATTUNE_DATABASE__ACQUIRE_TIMEOUT",
            "ATTUNE_DATABASE__BUSY_TIMEOUT",
            "ATTUNE_TELEMETRY__LOG_FORMAT",
            "ATTUNE_TELEMETRY__LOG_FILTER",
            "ATTUNE_TELEMETRY__OTLP_ENDPOINT",
            "ATTUNE_TELEMETRY__SERVICE_NAME",
            "ATTUNE_LIMITS__MAX_MESSAGE_BYTES",
            "ATTUNE_LIMITS__CONCURRENCY_PER_CONNECTION",
            "ATTUNE_LIMITS__REQUEST_TIMEOUT",
            "ATTUNE_LIMITS__SHUTDOWN_GRACE",
        ] {
            assert!(help.contains(var), "--help does not mention {var}");
        }
    }
}
