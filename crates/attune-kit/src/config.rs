//! One typed configuration for every Attune process, layered by figment (no
//! hand-written merger), each layer overriding the one before:
//!
//! 1. defaults ([`Config::default`]);
//! 2. an optional TOML file (`--config FILE` or `ATTUNE_CONFIG`);
//! 3. `ATTUNE_*` environment variables, `__` nesting sections
//!    (`ATTUNE_LISTEN`, `ATTUNE_DATABASE__URL`, `ATTUNE_LIMITS__MAX_MESSAGE_BYTES`);
//! 4. command-line flags, only those given.
//!
//! Each setting is declared once, in a `settings!` section: its doc comment,
//! type, default and flag. From that come the typed section the code reads, its
//! flags (which serialize into the last layer), and `--help`, which shows each
//! flag's default and variable ([`document_settings`]). A test walks the
//! serialized default `Config` and sets every setting by flag, variable and file.
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

/// Declares one section of settings, each written once: its doc comment (the
/// rustdoc of the field and the text of its flag in `--help`), its type, its
/// default and its flag. It defines the section's struct (`$config`, what the
/// code reads, with its `Default`) and its flags (`$args`, a `clap::Args` whose
/// fields are `Option`s of the same settings, serialized only when given, so
/// that they merge over the lower layers as figment's last layer).
///
/// A setting's type must implement [`Setting`]; `#[serde(...)]` attributes
/// after the doc comment apply to the section's field (a `Duration` needs
/// `#[serde(with = "humantime_serde")]`). `--help` adds each flag's default and
/// environment variable itself ([`document_settings`]).
macro_rules! settings {
    (
        $(#[doc = $section_doc:literal])*
        pub struct $config:ident / $args:ident in $section:literal {
            $(
                $(#[doc = $doc:literal])*
                $(#[serde($($serde:tt)*)])*
                $field:ident: $ty:ty = $default:expr, flag $flag:literal, value $value:literal;
            )*
        }
    ) => {
        $(#[doc = $section_doc])*
        #[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
        #[serde(default)]
        pub struct $config {
            $(
                $(#[doc = $doc])*
                $(#[serde($($serde)*)])*
                pub $field: $ty,
            )*
        }

        impl Default for $config {
            fn default() -> Self {
                Self {
                    $($field: $default,)*
                }
            }
        }

        #[doc = concat!("The flags of [`", stringify!($config), "`]: `None` unless given.")]
        #[derive(clap::Args, Debug, Default, Clone, Serialize)]
        pub struct $args {
            $(
                $(#[doc = $doc])*
                #[arg(
                    id = concat!($section, ".", stringify!($field)),
                    long = $flag,
                    value_name = $value,
                )]
                #[serde(skip_serializing_if = "Option::is_none")]
                pub $field: Option<<$ty as Setting>::Flag>,
            )*
        }
    };
}

/// A type a setting may have, and what its command-line flag parses into:
/// itself, but a humantime string for a `Duration` and the inner value for an
/// optional setting.
pub trait Setting {
    /// What the flag parses (with `FromStr` or `clap::ValueEnum`) and serializes
    /// into the figment layer, in the form the configuration file uses.
    type Flag: Clone + Send + Sync + Serialize + 'static;
}

macro_rules! settings_of_their_own_type {
    ($($ty:ty),*) => {
        $(impl Setting for $ty {
            type Flag = $ty;
        })*
    };
}
settings_of_their_own_type!(
    String, bool, u32, u64, usize, SocketAddr, LogFormat, PathBuf
);

macro_rules! optional_settings {
    ($($ty:ty),*) => {
        $(impl Setting for Option<$ty> {
            type Flag = <$ty as Setting>::Flag;
        })*
    };
}
optional_settings!(String, u32, u64, SocketAddr, PathBuf, Duration);

impl Setting for Duration {
    type Flag = HumanDuration;
}

/// A duration as the configuration writes it, `"1s"`, `"1m 30s"`, `"250ms"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HumanDuration(pub Duration);

impl std::str::FromStr for HumanDuration {
    type Err = humantime::DurationError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        humantime::parse_duration(text).map(Self)
    }
}

impl Serialize for HumanDuration {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(&humantime::format_duration(self.0))
    }
}

/// Everything an Attune process can be configured with.
///
/// To add a section: declare it with `settings!` (each setting with its doc,
/// type, default and flag), then add one field here (and to `Default`) and one
/// `#[command(flatten)]` field to [`ConfigArgs`]. The test
/// `every_setting_is_reachable_from_a_flag_the_environment_and_the_file` finds a
/// setting that has no flag.
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
    /// Where the pseudonymisation key comes from (see [`crate::secrets`]).
    pub secrets: crate::secrets::SecretsConfig,
    /// Where `attune serve --service gateway` finds each service.
    pub gateway: GatewayConfig,
    /// Where a service running as its own pod finds the services it calls.
    pub peers: PeersConfig,
    /// How calls are spread over several replicas of one service.
    pub replicas: ReplicasConfig,
    /// The profile service.
    pub profile: ProfileConfig,
    /// The recommendation service.
    pub recommendation: RecommendationConfig,
    /// The loyalty service.
    pub loyalty: LoyaltyConfig,
    /// The delivery service.
    pub delivery: DeliveryConfig,
    /// Who may call the public port, and how much (see `attune_gateway::policy`).
    pub security: SecurityConfig,
}

/// Where a server listens unless told otherwise.
const DEFAULT_LISTEN: ([u8; 4], u16) = ([127, 0, 0, 1], 50051);

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(DEFAULT_LISTEN),
            database: DatabaseConfig::default(),
            telemetry: TelemetryConfig::default(),
            limits: Limits::default(),
            feeds: FeedConfig::default(),
            consent_checker: ConsentCheckerConfig::default(),
            secrets: crate::secrets::SecretsConfig::default(),
            gateway: GatewayConfig::default(),
            peers: PeersConfig::default(),
            replicas: ReplicasConfig::default(),
            profile: ProfileConfig::default(),
            recommendation: RecommendationConfig::default(),
            loyalty: LoyaltyConfig::default(),
            delivery: DeliveryConfig::default(),
            security: SecurityConfig::default(),
        }
    }
}

/// Command-line flags for every setting; flatten into a subcommand with
/// `#[command(flatten)]`, and pass the command through [`document_settings`] so
/// that `--help` names each flag's default and environment variable. A flag left
/// out leaves the lower layers' value.
#[derive(clap::Args, Debug, Default, Clone, Serialize)]
pub struct ConfigArgs {
    /// TOML configuration file, read after the defaults and before `ATTUNE_*` variables
    /// [default: none] [env: ATTUNE_CONFIG]
    #[arg(long, value_name = "FILE", env = CONFIG_FILE_ENV, hide_env = true)]
    #[serde(skip)]
    pub config: Option<PathBuf>,

    /// Address to serve gRPC on; use 0.0.0.0:50051 in a pod.
    #[arg(id = "listen", long, value_name = "ADDR")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listen: Option<SocketAddr>,

    #[command(flatten)]
    pub database: DatabaseArgs,

    #[command(flatten)]
    pub telemetry: TelemetryArgs,

    #[command(flatten)]
    pub limits: LimitsArgs,

    #[command(flatten)]
    pub feeds: FeedArgs,

    #[command(flatten)]
    pub consent_checker: ConsentCheckerArgs,

    #[command(flatten)]
    pub replicas: ReplicasArgs,

    #[command(flatten)]
    pub profile: ProfileArgs,

    #[command(flatten)]
    pub recommendation: RecommendationArgs,

    #[command(flatten)]
    pub loyalty: LoyaltyArgs,

    #[command(flatten)]
    pub delivery: DeliveryArgs,

    #[command(flatten)]
    pub secrets: SecretsArgs,

    #[command(flatten)]
    pub security: SecurityArgs,
}

/// The flags of [`SecurityConfig`], nested as its sections are (API keys are a
/// map and have none).
#[derive(clap::Args, Debug, Default, Clone, Serialize)]
pub struct SecurityArgs {
    #[command(flatten)]
    pub jwt: JwtArgs,

    #[command(flatten)]
    pub protection: ProtectionArgs,
}

settings! {
    /// Database connection settings (see [`crate::db::connect`]).
    pub struct DatabaseConfig / DatabaseArgs in "database" {
        /// Database URL, `sqlite://PATH?mode=rwc` or `postgres://USER@HOST:PORT/DB`.
        url: String = "sqlite://attune.db?mode=rwc".to_owned(),
            flag "database-url", value "URL";
        /// Upper bound of the connection pool.
        max_connections: u32 = 10, flag "database-max-connections", value "N";
        /// How long a query waits for a pooled connection before failing
        /// (UNAVAILABLE): short, so that calls fail inside a client's deadline
        /// while the health probe has not yet noticed an outage.
        #[serde(with = "humantime_serde")]
        acquire_timeout: Duration = Duration::from_secs(1),
            flag "database-acquire-timeout", value "DURATION";
        /// How often the server probes the database; while a probe fails, calls
        /// answer UNAVAILABLE at once and health reports NOT_SERVING.
        #[serde(with = "humantime_serde")]
        health_interval: Duration = Duration::from_millis(500),
            flag "database-health-interval", value "DURATION";
        /// How long SQLite waits on a locked database before failing (SQLite only).
        #[serde(with = "humantime_serde")]
        busy_timeout: Duration = Duration::from_secs(5),
            flag "database-busy-timeout", value "DURATION";
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

settings! {
    /// Logging and tracing settings (see [`crate::telemetry::init`]).
    pub struct TelemetryConfig / TelemetryArgs in "telemetry" {
        /// Log line format.
        log_format: LogFormat = LogFormat::Human, flag "log-format", value "FORMAT";
        /// `tracing` filter directives, e.g. `info,attune_consent=debug`; `RUST_LOG`
        /// wins if set.
        log_filter: String = "info".to_owned(), flag "log-filter", value "FILTER";
        /// OTLP/gRPC collector endpoint (e.g. `http://otel-collector:4317`); no
        /// export if unset.
        otlp_endpoint: Option<String> = None, flag "otlp-endpoint", value "URL";
        /// `service.name` resource attribute of exported spans and metrics;
        /// left at `attune`, `attune serve --service NAME` uses `attune-NAME`.
        service_name: String = "attune".to_owned(),
            flag "telemetry-service-name", value "NAME";
        /// Address of the Prometheus scrape endpoint (`GET /metrics`, plain
        /// HTTP), e.g. `0.0.0.0:9464`; none if unset.
        metrics_listen: Option<SocketAddr> = None, flag "metrics-listen", value "ADDR";
    }
}

settings! {
    /// Bounds that protect a server from its callers and bound its shutdown.
    pub struct Limits / LimitsArgs in "limits" {
        /// Largest gRPC message decoded or encoded, in bytes.
        max_message_bytes: usize = 4 * 1024 * 1024, flag "max-message-bytes", value "N";
        /// Concurrent requests served per client connection.
        concurrency_per_connection: usize = 256,
            flag "concurrency-per-connection", value "N";
        /// Deadline of a call whose client set none (a shorter `grpc-timeout` wins).
        #[serde(with = "humantime_serde")]
        request_timeout: Duration = Duration::from_secs(30),
            flag "request-timeout", value "DURATION";
        /// Longest time in-flight calls may drain at shutdown before connections
        /// are cut.
        #[serde(with = "humantime_serde")]
        shutdown_grace: Duration = Duration::from_secs(10),
            flag "shutdown-grace", value "DURATION";
    }
}

settings! {
    /// How a process spreads its calls over the replicas of another service
    /// (`peers.NAME`, `gateway.backends.NAME`; see [`crate::peer::Replicas`]).
    pub struct ReplicasConfig / ReplicasArgs in "replicas" {
        /// How often a host name among those addresses is resolved again, so that
        /// new and gone pods behind it (a headless Kubernetes Service) are picked up.
        #[serde(with = "humantime_serde")]
        resolve_interval: Duration = Duration::from_secs(30),
            flag "replicas-resolve-interval", value "DURATION";
    }
}

settings! {
    /// The profile service (see `attune.profile.v1`).
    pub struct ProfileConfig / ProfileArgs in "profile" {
        /// The currency money traits and segment bounds are in (ISO 4217).
        /// Purchases in other currencies are kept apart, never converted.
        reporting_currency: String = "EUR".to_owned(),
            flag "profile-reporting-currency", value "CODE";
        /// How often segment membership is re-evaluated for every customer, so
        /// that conditions that depend on time passing ("cart abandoned 24 h")
        /// take effect without new events.
        #[serde(with = "humantime_serde")]
        segment_sweep_interval: Duration = Duration::from_secs(15 * 60),
            flag "profile-segment-sweep-interval", value "DURATION";
        /// How often consent's purposes catalogue (which purpose covers which
        /// data category) is re-read.
        #[serde(with = "humantime_serde")]
        catalogue_refresh: Duration = Duration::from_secs(30),
            flag "profile-catalogue-refresh", value "DURATION";
    }
}

settings! {
    /// The recommendation service (see `attune.recommendation.v1`).
    pub struct RecommendationConfig / RecommendationArgs in "recommendation" {
        /// How often the models are retrained from the stored interactions
        /// (`TrainModel` trains at once, too).
        #[serde(with = "humantime_serde")]
        train_interval: Duration = Duration::from_secs(60 * 60),
            flag "recommendation-train-interval", value "DURATION";
        /// How many customers' session state (recent views, cart, searches) is
        /// kept in memory; the others are read from the database when needed.
        session_cache_customers: u64 = 100_000,
            flag "recommendation-session-cache-customers", value "N";
        /// How often a replica reads what the others changed (sessions, the
        /// catalogue, experiments, erasures) and drops its copies of it.
        #[serde(with = "humantime_serde")]
        replica_refresh: Duration = Duration::from_millis(250),
            flag "recommendation-replica-refresh", value "DURATION";
    }
}

settings! {
    /// The loyalty service (see `attune.loyalty.v1`).
    pub struct LoyaltyConfig / LoyaltyArgs in "loyalty" {
        /// How long available points live before they expire, oldest first.
        #[serde(with = "humantime_serde")]
        points_lifetime: Duration = Duration::from_secs(365 * 24 * 3600),
            flag "loyalty-points-lifetime", value "DURATION";
        /// How often pending points are released, due points expired and tiers
        /// reviewed (RunScheduledWork does it at once).
        #[serde(with = "humantime_serde")]
        maintenance_interval: Duration = Duration::from_secs(60),
            flag "loyalty-maintenance-interval", value "DURATION";
        /// At most this many personalized offers per customer per 7 days.
        offers_per_week: u32 = 3,
            flag "loyalty-offers-per-week", value "N";
        /// At most this many messages per customer and channel per 7 days.
        messages_per_week: u32 = 2,
            flag "loyalty-messages-per-week", value "N";
        /// A message is not sent again to a customer within this time.
        #[serde(with = "humantime_serde")]
        repeat_after: Duration = Duration::from_secs(30 * 24 * 3600),
            flag "loyalty-repeat-after", value "DURATION";
        /// Quiet hours start at this local hour (0 to 23) of the customer's time
        /// zone, and last until `quiet_hours_end`.
        quiet_hours_start: u32 = 21,
            flag "loyalty-quiet-hours-start", value "HOUR";
        /// Quiet hours end at this local hour (0 to 23).
        quiet_hours_end: u32 = 8,
            flag "loyalty-quiet-hours-end", value "HOUR";
        /// How long a message waits for recommendation's items before it goes
        /// without them, marked as skipped (each customer of a ListDueMessages
        /// page too).
        #[serde(with = "humantime_serde")]
        message_items_budget: Duration = Duration::from_millis(500),
            flag "loyalty-message-items-budget", value "DURATION";
        /// Every customer with an account is considered for offers once per this
        /// period by a background pass (as GenerateOffers would; caps and budgets
        /// hold); 0s turns the pass off.
        #[serde(with = "humantime_serde")]
        offer_generation_interval: Duration = Duration::from_secs(24 * 3600),
            flag "loyalty-offer-generation-interval", value "DURATION";
        /// At most this many customers per background pass step (one step every
        /// `maintenance_interval`).
        offer_generation_batch: u32 = 100,
            flag "loyalty-offer-generation-batch", value "N";
    }
}

settings! {
    /// The delivery service (see `attune.delivery.v1`).
    pub struct DeliveryConfig / DeliveryArgs in "delivery" {
        /// File holding the master key (64 hex digits) that wraps each customer's
        /// address key, e.g. a mounted Kubernetes Secret. Unset: a key derived from
        /// the pseudonymisation key (development default; start-up warns).
        master_key_file: Option<PathBuf> = None,
            flag "delivery-master-key-file", value "FILE";
        /// How long a ranking waits for loyalty's tier benefits before it ignores them.
        #[serde(with = "humantime_serde")]
        loyalty_timeout: Duration = Duration::from_millis(150),
            flag "delivery-loyalty-timeout", value "DURATION";
        /// Age at which a past order counts half as much as today's in learned
        /// preferences.
        #[serde(with = "humantime_serde")]
        learned_half_life: Duration = Duration::from_secs(90 * 24 * 3600),
            flag "delivery-learned-half-life", value "DURATION";
        /// How long a quoted delivery price holds for a reservation.
        #[serde(with = "humantime_serde")]
        quote_validity: Duration = Duration::from_secs(30 * 60),
            flag "delivery-quote-validity", value "DURATION";
        /// How often a replica checks whether another replica changed the
        /// delivery network (pickup points, rates, payment rules) it serves from
        /// memory: the longest a ranking can lag an admin change made elsewhere.
        /// Changes made through this replica are served at once.
        #[serde(with = "humantime_serde")]
        network_refresh: Duration = Duration::from_secs(1),
            flag "delivery-network-refresh", value "DURATION";
    }
}

settings! {
    /// How a service serves an ordered change feed to its watchers.
    pub struct FeedConfig / FeedArgs in "feeds" {
        /// How often the database is polled for changes committed by other
        /// processes (changes made in this process wake watchers at once).
        #[serde(with = "humantime_serde")]
        poll_interval: Duration = Duration::from_millis(100),
            flag "feed-poll-interval", value "DURATION";
        /// Longest silence on a watch stream: with nothing to send, the server
        /// sends a heartbeat this often so watchers can tell quiet from broken.
        #[serde(with = "humantime_serde")]
        heartbeat_interval: Duration = Duration::from_millis(250),
            flag "feed-heartbeat-interval", value "DURATION";
        /// How long a feed follower's lease lasts unless renewed: when the
        /// replica applying a feed dies, another takes over within this time.
        #[serde(with = "humantime_serde")]
        follower_lease: Duration = Duration::from_secs(5),
            flag "feed-follower-lease", value "DURATION";
    }
}

settings! {
    /// Settings of the cached consent checker (see [`crate::consent`]).
    pub struct ConsentCheckerConfig / ConsentCheckerArgs in "consent_checker" {
        /// How long the checker answers from its cache without hearing from the
        /// consent change stream; past it, every check fails closed ("not
        /// granted"). It bounds how late a withdrawal can take effect when the
        /// stream breaks.
        #[serde(with = "humantime_serde")]
        freshness_bound: Duration = Duration::from_secs(1),
            flag "consent-freshness-bound", value "DURATION";
        /// Most customers kept in memory; the least used are evicted beyond it.
        max_customers: u64 = 1_000_000, flag "consent-cache-customers", value "N";
    }
}

/// The flags of [`SecretsConfig`](crate::secrets::SecretsConfig), which is
/// written by hand so that its `Debug` hides the key. The key itself has no flag
/// (a flag's value shows in `ps` and shell history): it comes from the
/// environment or the file, or from the key file this flag names.
#[derive(clap::Args, Debug, Default, Clone, Serialize)]
pub struct SecretsArgs {
    /// File holding the pseudonymisation key as 64 hex digits, e.g. a mounted
    /// Kubernetes Secret (or set the key itself in ATTUNE_SECRETS__PSEUDONYM_KEY;
    /// with neither, a key is generated into the database).
    #[arg(
        id = "secrets.pseudonym_key_file",
        long = "pseudonym-key-file",
        value_name = "FILE"
    )]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pseudonym_key_file: Option<PathBuf>,
}

/// Settings that deliberately have no flag, only an environment variable and the
/// file: secret values, which a command line would show to every user of the
/// machine.
pub const SETTINGS_WITHOUT_FLAG: &[&str] = &["secrets.pseudonym_key"];

/// The gateway's backends when it runs as its own process (one process running
/// every service needs none). A map has no flag: set it in the file or with one
/// variable per service. An address may list several replicas separated by
/// commas, and a host name is resolved to every address it has (see [`ReplicasConfig`]).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct GatewayConfig {
    /// Each service's address by service name, e.g. `consent = "http://consent:50051"`
    /// (`ATTUNE_GATEWAY__BACKENDS__CONSENT`), or its replicas,
    /// `"http://10.0.0.7:50051,http://10.0.0.8:50051"`.
    pub backends: std::collections::BTreeMap<String, String>,
}

/// Where `attune serve --service NAME` reaches the other services it calls (profile
/// calls consent, for example). One process running every service needs none. A
/// map has no flag: set it in the file or with one variable per service. An
/// address may list several replicas separated by commas, and a host name is
/// resolved to every address it has (see [`ReplicasConfig`]).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct PeersConfig {
    /// Each service's address by service name, e.g. `consent = "http://consent:50051"`
    /// (`ATTUNE_PEERS__CONSENT`).
    #[serde(flatten)]
    pub addresses: std::collections::BTreeMap<String, String>,
}

/// Who may call the public port and how much. With neither a JWT key nor an API
/// key configured, the gateway runs in development mode: every call is allowed,
/// and it refuses to listen anywhere but on a loopback address.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct SecurityConfig {
    /// Bearer tokens (JWT) of customers, staff devices and services.
    pub jwt: JwtConfig,
    /// Service-to-service callers by name (`[security.api_keys.checkout]`), each
    /// with the SHA-256 of its key and its scopes. A map has no flag.
    pub api_keys: std::collections::BTreeMap<String, ApiKeyConfig>,
    /// Rate limits and load shedding on the public port.
    pub protection: ProtectionConfig,
}

/// One service caller's API key, as stored: never the key itself.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct ApiKeyConfig {
    /// SHA-256 of the key, 64 hex digits (`printf %s "$KEY" | sha256sum`).
    pub sha256: String,
    /// The scopes the key grants, e.g. `["events.write", "consent.read"]`.
    pub scopes: Vec<String>,
}

settings! {
    /// How bearer tokens are verified. Each configured key verifies exactly one
    /// algorithm; a token's header never chooses the kind of key.
    pub struct JwtConfig / JwtArgs in "security.jwt" {
        /// The `iss` every token must carry (required once a key is configured).
        issuer: Option<String> = None, flag "jwt-issuer", value "ISSUER";
        /// The `aud` every token must include (required once a key is configured).
        audience: Option<String> = None, flag "jwt-audience", value "AUDIENCE";
        /// Clock skew tolerated on `exp` and `nbf`.
        #[serde(with = "humantime_serde")]
        leeway: Duration = Duration::from_secs(30), flag "jwt-leeway", value "DURATION";
        /// File holding the HS256 shared secret (at least 32 bytes), e.g. a
        /// mounted Kubernetes Secret.
        hs256_secret_file: Option<PathBuf> = None, flag "jwt-hs256-secret-file", value "FILE";
        /// PEM file of the RSA public key verifying RS256 tokens.
        rs256_public_key_file: Option<PathBuf> = None,
            flag "jwt-rs256-public-key-file", value "FILE";
        /// PEM file of the P-256 public key verifying ES256 tokens.
        es256_public_key_file: Option<PathBuf> = None,
            flag "jwt-es256-public-key-file", value "FILE";
        /// JWKS file (`{"keys": [...]}`) of RS256 and ES256 public keys, chosen by
        /// the token's `kid`.
        jwks_file: Option<PathBuf> = None, flag "jwt-jwks-file", value "FILE";
    }
}

settings! {
    /// Protection of the public port against overload and abuse.
    pub struct ProtectionConfig / ProtectionArgs in "security.protection" {
        /// Calls per second one authenticated caller (token subject or API key) may make.
        caller_rate: u32 = 1000, flag "caller-rate", value "N";
        /// Calls one caller may make at once above its rate (the bucket's size).
        caller_burst: u32 = 2000, flag "caller-burst", value "N";
        /// Calls per second about one customer, whoever makes them.
        customer_rate: u32 = 50, flag "customer-rate", value "N";
        /// Calls about one customer at once above their rate.
        customer_burst: u32 = 100, flag "customer-burst", value "N";
        /// Calls per second from one network address by callers without
        /// credentials: development mode, health and reflection, and refused
        /// credentials. Higher than a caller's: one address may front many.
        address_rate: u32 = 10000, flag "address-rate", value "N";
        /// Calls from one address at once above its rate.
        address_burst: u32 = 20000, flag "address-burst", value "N";
        /// Calls in progress on the public port at once, each counted until its
        /// answer (a stream's last message included) is sent; beyond it calls are
        /// shed at once (RESOURCE_EXHAUSTED) rather than queued.
        max_concurrent_calls: u32 = 2048, flag "max-concurrent-calls", value "N";
        /// Long-lived streams open at once (watches and feeds that follow changes
        /// for as long as the caller listens), counted apart from other calls so
        /// that open watches never starve unary calls.
        max_long_lived_streams: u32 = 1024, flag "max-long-lived-streams", value "N";
    }
}

/// Appends `[default: …] [env: ATTUNE_…]` to the help of every setting's flag
/// in `command` and its subcommands, from the defaults themselves, so that
/// `--help` can never disagree with them.
pub fn document_settings(command: clap::Command) -> clap::Command {
    let defaults = default_settings();
    command
        .mut_args(|arg| {
            let key = arg.get_id().as_str().to_owned();
            let Some(default) = defaults.get(&key) else {
                return arg;
            };
            let help = arg.get_help().map(ToString::to_string).unwrap_or_default();
            let help = format!("{help}\n[default: {default}] [env: {}]", env_var(&key));
            arg.help(help)
        })
        .mut_subcommands(document_settings)
}

/// Every setting's dotted key (`database.url`) and its default as text
/// (`none` when unset), read from the serialized default [`Config`].
pub fn default_settings() -> std::collections::BTreeMap<String, String> {
    fn walk(
        prefix: &str,
        value: &serde_json::Value,
        out: &mut std::collections::BTreeMap<String, String>,
    ) {
        match value {
            serde_json::Value::Object(fields) => {
                for (name, value) in fields {
                    let key = if prefix.is_empty() {
                        name.clone()
                    } else {
                        format!("{prefix}.{name}")
                    };
                    walk(&key, value, out);
                }
            }
            serde_json::Value::Null => {
                out.insert(prefix.to_owned(), "none".to_owned());
            }
            serde_json::Value::String(text) => {
                out.insert(prefix.to_owned(), text.clone());
            }
            other => {
                out.insert(prefix.to_owned(), other.to_string());
            }
        }
    }
    let defaults = serde_json::to_value(Config::default())
        .expect("the default configuration serializes to JSON");
    let mut out = std::collections::BTreeMap::new();
    walk("", &defaults, &mut out);
    out
}

/// The environment variable of a dotted setting key: `database.url` is
/// `ATTUNE_DATABASE__URL`.
pub fn env_var(key: &str) -> String {
    format!(
        "{ENV_PREFIX}{}",
        key.replace('.', "__").to_ascii_uppercase()
    )
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
        let checks: [(bool, &'static str, &'static str); 21] = [
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
                self.database.acquire_timeout.is_zero(),
                "database.acquire_timeout",
                "must be longer than 0s",
            ),
            (
                self.database.health_interval.is_zero(),
                "database.health_interval",
                "must be longer than 0s",
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
                crate::types::Currency::parse(&self.profile.reporting_currency).is_err(),
                "profile.reporting_currency",
                "must be an ISO 4217 currency code such as EUR",
            ),
            (
                self.profile.segment_sweep_interval.is_zero(),
                "profile.segment_sweep_interval",
                "must be longer than 0s",
            ),
            (
                self.profile.catalogue_refresh.is_zero(),
                "profile.catalogue_refresh",
                "must be longer than 0s",
            ),
            (
                self.recommendation.train_interval.is_zero(),
                "recommendation.train_interval",
                "must be longer than 0s",
            ),
            (
                self.recommendation.session_cache_customers == 0,
                "recommendation.session_cache_customers",
                "must be at least 1",
            ),
            (
                self.loyalty.points_lifetime.is_zero(),
                "loyalty.points_lifetime",
                "must be longer than 0s",
            ),
            (
                self.loyalty.maintenance_interval.is_zero(),
                "loyalty.maintenance_interval",
                "must be longer than 0s",
            ),
            (
                self.loyalty.quiet_hours_start > 23 || self.loyalty.quiet_hours_end > 23,
                "loyalty.quiet_hours_start",
                "quiet hours are hours of the day, 0 to 23",
            ),
            (
                self.delivery.loyalty_timeout.is_zero()
                    || self.delivery.learned_half_life.is_zero()
                    || self.delivery.quote_validity.is_zero()
                    || self.delivery.network_refresh.is_zero(),
                "delivery",
                "loyalty_timeout, learned_half_life, quote_validity and network_refresh must be \
                 longer than 0s",
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
            (
                self.replicas.resolve_interval.is_zero(),
                "replicas.resolve_interval",
                "must be longer than 0s",
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
    /// The flags given, as figment's last layer: a flag left out serializes to
    /// nothing and so overrides nothing.
    fn merge_into(&self, figment: Figment) -> Figment {
        figment.merge(Serialized::defaults(self))
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
                database: DatabaseArgs {
                    max_connections: Some(4),
                    ..DatabaseArgs::default()
                },
                limits: LimitsArgs {
                    request_timeout: Some(HumanDuration(Duration::from_millis(1500))),
                    ..LimitsArgs::default()
                },
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
    fn peers_and_profile_settings_come_from_env_and_the_file() {
        Jail::expect_with(|jail| {
            jail.create_file(
                "attune.toml",
                "[peers]\nconsent = \"http://consent:50051\"\n[profile]\nreporting_currency = \"USD\"",
            )?;
            jail.set_env("ATTUNE_CONFIG", "attune.toml");
            jail.set_env("ATTUNE_PEERS__PROFILE", "http://profile:50051");
            jail.set_env("ATTUNE_PROFILE__SEGMENT_SWEEP_INTERVAL", "5m");
            let config = load(&ConfigArgs::default())?;
            assert_eq!(
                config.peers.addresses.get("consent").map(String::as_str),
                Some("http://consent:50051")
            );
            assert_eq!(
                config.peers.addresses.get("profile").map(String::as_str),
                Some("http://profile:50051")
            );
            assert_eq!(config.profile.reporting_currency, "USD");
            assert_eq!(
                config.profile.segment_sweep_interval,
                Duration::from_secs(300)
            );
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
                telemetry: TelemetryArgs {
                    log_filter: Some("debug".into()),
                    ..TelemetryArgs::default()
                },
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
    fn a_zero_database_health_interval_is_rejected() {
        Jail::expect_with(|jail| {
            jail.set_env("ATTUNE_DATABASE__HEALTH_INTERVAL", "0s");
            match Config::load(&ConfigArgs::default()) {
                Err(ConfigError::OutOfRange { key, .. }) => {
                    assert_eq!(key, "database.health_interval")
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

    #[derive(clap::Parser)]
    struct Cli {
        #[command(flatten)]
        config: ConfigArgs,
    }

    fn command() -> clap::Command {
        use clap::CommandFactory;
        document_settings(Cli::command())
    }

    /// Every setting of the serialized default `Config`, with its default value.
    fn settings() -> Vec<(String, serde_json::Value)> {
        fn walk(
            prefix: &str,
            value: serde_json::Value,
            out: &mut Vec<(String, serde_json::Value)>,
        ) {
            match value {
                serde_json::Value::Object(fields) => {
                    for (name, value) in fields {
                        let key = if prefix.is_empty() {
                            name
                        } else {
                            format!("{prefix}.{name}")
                        };
                        walk(&key, value, out);
                    }
                }
                leaf => out.push((prefix.to_owned(), leaf)),
            }
        }
        let mut out = Vec::new();
        walk(
            "",
            serde_json::to_value(Config::default()).expect("serializes"),
            &mut out,
        );
        out
    }

    /// A valid value of the setting other than its default, as the loaded
    /// `Config` serializes it: a choice of the flag's other possible values, half
    /// a duration, the next port or number, or a changed text. A setting unset
    /// by default gets a value of the kind its flag's value name (`N`,
    /// `DURATION`, `ADDR`, else text) says.
    fn another_value(default: &serde_json::Value, arg: &clap::Arg) -> serde_json::Value {
        use serde_json::Value;
        match default {
            Value::Number(n) => Value::from(n.as_u64().expect("numeric settings are unsigned") + 1),
            Value::String(text) => {
                if let Some(choice) = arg
                    .get_possible_values()
                    .iter()
                    .map(|p| p.get_name().to_owned())
                    .find(|name| name != text)
                {
                    Value::from(choice)
                } else if let Ok(duration) = humantime::parse_duration(text) {
                    Value::from(humantime::format_duration(duration / 2).to_string())
                } else if let Ok(mut address) = text.parse::<SocketAddr>() {
                    address.set_port(address.port() + 1);
                    Value::from(address.to_string())
                } else if arg.get_value_names().and_then(|names| names.first())
                    == Some(&clap::builder::Str::from("CODE"))
                {
                    // A currency code: another valid one.
                    Value::from(if text == "USD" { "EUR" } else { "USD" })
                } else {
                    Value::from(format!("{text}x"))
                }
            }
            Value::Bool(flag) => Value::from(!flag),
            // Unset by default: a value of the kind its flag's value name says.
            Value::Null => match arg
                .get_value_names()
                .and_then(|names| names.first())
                .map(|name| name.as_str())
            {
                Some("N") => Value::from(7),
                Some("DURATION") => Value::from("2s"),
                Some("ADDR") => Value::from("127.0.0.1:7"),
                _ => Value::from("http://sample.invalid:4317"),
            },
            other => panic!("no sample for a setting of value {other}"),
        }
    }

    fn as_text(value: &serde_json::Value) -> String {
        value
            .as_str()
            .map_or_else(|| value.to_string(), str::to_owned)
    }

    fn setting_of(config: &Config, key: &str) -> serde_json::Value {
        let mut value = serde_json::to_value(config).expect("serializes");
        for part in key.split('.') {
            value = value[part].take();
        }
        value
    }

    /// The file setting only `key` (`a.b = v` as `[a]` then `b = v`).
    fn toml_setting(key: &str, value: &serde_json::Value) -> String {
        // A JSON string or number is TOML as well, for these values.
        match key.rsplit_once('.') {
            Some((section, name)) => format!("[{section}]\n{name} = {value}\n"),
            None => format!("{key} = {value}\n"),
        }
    }

    #[test]
    fn every_setting_is_reachable_from_a_flag_the_environment_and_the_file() {
        use clap::FromArgMatches;

        let command = command();
        let all = settings();
        assert!(all.len() >= 18, "the walk finds every setting: {all:?}");
        for (key, default) in all {
            if SETTINGS_WITHOUT_FLAG.contains(&key.as_str()) {
                // Read from the environment and the file: see the secrets tests.
                assert!(
                    command
                        .get_arguments()
                        .all(|arg| arg.get_id().as_str() != key),
                    "`{key}` must have no flag"
                );
                continue;
            }
            let arg = command
                .get_arguments()
                .find(|arg| arg.get_id().as_str() == key)
                .unwrap_or_else(|| {
                    panic!("setting `{key}` has no flag: declare it with settings!")
                });
            let long = arg
                .get_long()
                .unwrap_or_else(|| panic!("`{key}` has a long flag"));
            let wanted = another_value(&default, arg);
            assert_ne!(wanted, default, "{key}");
            let text = as_text(&wanted);

            Jail::expect_with(|jail| {
                let matches = command
                    .clone()
                    .try_get_matches_from(["attune", &format!("--{long}={text}")])
                    .map_err(|e| e.to_string())?;
                let args = Cli::from_arg_matches(&matches)
                    .map_err(|e| e.to_string())?
                    .config;
                assert_eq!(setting_of(&load(&args)?, &key), wanted, "--{long}");

                jail.set_env(env_var(&key), &text);
                assert_eq!(
                    setting_of(&load(&ConfigArgs::default())?, &key),
                    wanted,
                    "{}",
                    env_var(&key)
                );
                jail.clear_env();

                jail.create_file("attune.toml", &toml_setting(&key, &wanted))?;
                let args = ConfigArgs {
                    config: Some("attune.toml".into()),
                    ..ConfigArgs::default()
                };
                assert_eq!(
                    setting_of(&load(&args)?, &key),
                    wanted,
                    "`{key}` in the file"
                );
                Ok(())
            });
        }
    }

    #[test]
    fn help_names_each_setting_s_default_and_variable() {
        let help = command().render_long_help().to_string();
        for (key, default) in default_settings() {
            if SETTINGS_WITHOUT_FLAG.contains(&key.as_str()) {
                continue;
            }
            let line = format!("[default: {default}] [env: {}]", env_var(&key));
            assert!(help.contains(&line), "--help lacks `{line}`:\n{help}");
        }
        assert!(help.contains("ATTUNE_CONFIG"));
        assert!(help.contains("[default: 1s] [env: ATTUNE_DATABASE__ACQUIRE_TIMEOUT]"));
    }
}
