//! Secrets a service keeps: the pseudonymisation key behind keyed pseudonyms of
//! customer ids and keyed request fingerprints, from configuration or, as the
//! development default, generated once into the service's own database.
//!
//! A plain SHA-256 of a customer id can be reversed by hashing candidate ids (a
//! loyalty number has few digits); an HMAC under a key only the controller holds
//! cannot. With the key, the controller can still show that "customer X granted
//! marketing_email on 3 March" by hashing X again and finding the records.
//! Keep the key safe and keep it stable: pseudonyms and fingerprints made under
//! one key do not match those made under another.

use std::fmt;
use std::path::{Path, PathBuf};

use hmac::{Hmac, Mac};
use sea_orm::sea_query::{Expr, ExprTrait, OnConflict, Query};
use sea_orm::{ConnectionTrait, DbErr};
use sea_orm_migration::prelude::{ColumnDef, MigrationName, MigrationTrait, SchemaManager, Table};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

/// Prefix of a pseudonymised customer id, so that nobody mistakes it for an id.
const SUBJECT_PREFIX: &str = "hmac-sha256:";

/// The name of the pseudonymisation key in a service's secrets table.
const PSEUDONYM_KEY: &str = "pseudonym_key";

/// Where secrets come from. Set at most one of the two; with neither, a key is
/// generated into the service's database on first start (fine for development,
/// but then the key lives, and is backed up, with the data it protects).
#[derive(Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default)]
pub struct SecretsConfig {
    /// The pseudonymisation key as 64 hex digits (`ATTUNE_SECRETS__PSEUDONYM_KEY`).
    pub pseudonym_key: Option<SecretText>,
    /// A file holding the key as 64 hex digits, as a Kubernetes Secret mounts it
    /// (`ATTUNE_SECRETS__PSEUDONYM_KEY_FILE`, `--pseudonym-key-file`).
    pub pseudonym_key_file: Option<PathBuf>,
}

impl fmt::Debug for SecretsConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SecretsConfig")
            .field("pseudonym_key", &self.pseudonym_key)
            .field("pseudonym_key_file", &self.pseudonym_key_file)
            .finish()
    }
}

/// A secret value from configuration: it never appears in `Debug` output, so
/// logging a configuration cannot leak it.
#[derive(Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct SecretText(String);

impl SecretText {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret itself, for the one place that uses it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SecretText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretText(..)")
    }
}

/// The controller's pseudonymisation key: 32 random bytes.
#[derive(Clone, PartialEq, Eq)]
pub struct PseudonymKey([u8; 32]);

impl fmt::Debug for PseudonymKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PseudonymKey(..)")
    }
}

impl PseudonymKey {
    /// Wraps key bytes.
    pub fn new(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// A key of fresh random bytes.
    pub fn generate() -> Result<Self, SecretsError> {
        let mut bytes = [0_u8; 32];
        getrandom::fill(&mut bytes).map_err(|e| SecretsError::NoRandomness(e.to_string()))?;
        Ok(Self(bytes))
    }

    /// Reads a key written as 64 hex digits (surrounding whitespace, such as a
    /// file's final newline, is ignored).
    pub fn from_hex(text: &str) -> Option<Self> {
        let bytes = hex::decode(text.trim()).ok()?;
        Some(Self(bytes.try_into().ok()?))
    }

    /// The key as 64 hex digits, for storage.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// The pseudonym that replaces `customer` wherever proof must outlive erasure.
    pub fn subject(&self, customer: impl AsRef<str>) -> String {
        format!("{SUBJECT_PREFIX}{}", self.mac(customer.as_ref().as_bytes()))
    }

    /// A keyed digest (64 hex characters) of `value` within `domain`, for values
    /// that must be found again but never stored in clear (a profile's e-mail
    /// identity, an erased customer's tombstone). Distinct domains never collide.
    pub fn digest(&self, domain: &str, value: &str) -> String {
        let mut message = Vec::with_capacity(domain.len() + 1 + value.len());
        message.extend_from_slice(domain.as_bytes());
        message.push(0);
        message.extend_from_slice(value.as_bytes());
        self.mac(&message)
    }

    /// A keyed digest of everything a write request says except its request id
    /// (commands mark that field `#[serde(skip)]`): a retry with the same id must
    /// carry the same fingerprint, or it is a different request
    /// (see [`crate::idempotency`]).
    pub fn fingerprint(&self, command: &impl Serialize) -> String {
        let canonical =
            serde_json::to_vec(command).expect("commands hold only strings, numbers and times");
        self.mac(&canonical)
    }

    fn mac(&self, message: &[u8]) -> String {
        let mut mac =
            Hmac::<Sha256>::new_from_slice(&self.0).expect("HMAC accepts keys of any length");
        mac.update(message);
        hex::encode(mac.finalize().into_bytes())
    }
}

/// Where the pseudonymisation key in use came from; start-up logs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    /// `secrets.pseudonym_key` (`ATTUNE_SECRETS__PSEUDONYM_KEY`).
    Configured,
    /// The file named by `secrets.pseudonym_key_file`.
    File(PathBuf),
    /// Generated into the service's database (the development default).
    Database,
}

impl fmt::Display for KeySource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Configured => f.write_str("configuration (secrets.pseudonym_key)"),
            Self::File(path) => write!(f, "file {}", path.display()),
            Self::Database => f.write_str("the database (generated; development default)"),
        }
    }
}

/// Why no pseudonymisation key could be had. Messages never hold a key.
#[derive(Debug, thiserror::Error)]
pub enum SecretsError {
    /// Both a key and a key file are configured.
    #[error("set secrets.pseudonym_key or secrets.pseudonym_key_file, not both")]
    Ambiguous,
    /// The configured key is not 64 hex digits.
    #[error("the pseudonymisation key from {0} is not 64 hex digits")]
    Malformed(String),
    /// The key file cannot be read.
    #[error("cannot read the pseudonymisation key file {}", path.display())]
    Unreadable {
        /// The configured path.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The operating system gave no randomness for a new key.
    #[error("no randomness for a new key: {0}")]
    NoRandomness(String),
    /// The database failed, or lost the key it had stored.
    #[error("database error")]
    Database(#[from] DbErr),
}

impl SecretsConfig {
    /// The configured key and where it came from, or `None` when none is
    /// configured.
    pub fn configured_key(&self) -> Result<Option<(PseudonymKey, KeySource)>, SecretsError> {
        match (&self.pseudonym_key, &self.pseudonym_key_file) {
            (Some(_), Some(_)) => Err(SecretsError::Ambiguous),
            (Some(text), None) => PseudonymKey::from_hex(text.expose())
                .map(|key| Some((key, KeySource::Configured)))
                .ok_or_else(|| SecretsError::Malformed("secrets.pseudonym_key".to_owned())),
            (None, Some(path)) => {
                read_key_file(path).map(|key| Some((key, KeySource::File(path.clone()))))
            }
            (None, None) => Ok(None),
        }
    }
}

fn read_key_file(path: &Path) -> Result<PseudonymKey, SecretsError> {
    let text = std::fs::read_to_string(path).map_err(|source| SecretsError::Unreadable {
        path: path.to_owned(),
        source,
    })?;
    PseudonymKey::from_hex(&text)
        .ok_or_else(|| SecretsError::Malformed(format!("file {}", path.display())))
}

/// One service's table of the secrets it generated (`<service>_secrets`: name,
/// value).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SecretStore {
    table: &'static str,
}

impl SecretStore {
    /// The store kept in `table`.
    pub const fn new(table: &'static str) -> Self {
        Self { table }
    }

    /// The migration that creates the table, named `migration_name` in the
    /// service's migration history.
    pub fn create_table(self, migration_name: &'static str) -> CreateSecretStore {
        CreateSecretStore {
            store: self,
            name: migration_name,
        }
    }

    /// The pseudonymisation key the service uses: the configured one if
    /// `config` names one, else the one generated into this store on first
    /// use. Logs which, never the key; warns when a configured key differs
    /// from one generated before, since pseudonyms made under it no longer match.
    pub async fn pseudonym_key(
        self,
        db: &impl ConnectionTrait,
        config: &SecretsConfig,
    ) -> Result<(PseudonymKey, KeySource), SecretsError> {
        let (key, source) = match config.configured_key()? {
            Some((key, source)) => {
                if self.stored(db).await?.is_some_and(|stored| stored != key) {
                    tracing::warn!(
                        table = self.table,
                        "the configured pseudonymisation key differs from the one generated \
                         into the database: pseudonyms and request fingerprints made before \
                         will not match"
                    );
                }
                (key, source)
            }
            None => (self.generated(db).await?, KeySource::Database),
        };
        tracing::info!(table = self.table, source = %source, "pseudonymisation key loaded");
        Ok((key, source))
    }

    /// The key generated into the store, generating it on first use. Every
    /// process of a deployment shares the database, so concurrent first starts
    /// race on one insert-if-absent and all read back the winner's key.
    async fn generated(self, db: &impl ConnectionTrait) -> Result<PseudonymKey, SecretsError> {
        let insert = Query::insert()
            .into_table(self.table)
            .columns(["name", "value"])
            .values_panic([
                PSEUDONYM_KEY.into(),
                PseudonymKey::generate()?.to_hex().into(),
            ])
            .on_conflict(OnConflict::column("name").do_nothing().to_owned())
            .to_owned();
        db.execute(&insert).await?;
        self.stored(db).await?.ok_or_else(|| {
            SecretsError::Database(DbErr::RecordNotFound(format!(
                "{} lost the pseudonymisation key",
                self.table
            )))
        })
    }

    async fn stored(self, db: &impl ConnectionTrait) -> Result<Option<PseudonymKey>, SecretsError> {
        let select = Query::select()
            .column("value")
            .from(self.table)
            .and_where(Expr::col("name").eq(PSEUDONYM_KEY))
            .to_owned();
        let Some(row) = db.query_one(&select).await? else {
            return Ok(None);
        };
        let text: String = row.try_get("", "value")?;
        PseudonymKey::from_hex(&text)
            .map(Some)
            .ok_or_else(|| SecretsError::Malformed(format!("table {}", self.table)))
    }
}

/// The migration that creates a [`SecretStore`]'s table.
#[derive(Debug, Clone, Copy)]
pub struct CreateSecretStore {
    store: SecretStore,
    name: &'static str,
}

impl MigrationName for CreateSecretStore {
    fn name(&self) -> &str {
        self.name
    }
}

#[sea_orm_migration::async_trait::async_trait]
impl MigrationTrait for CreateSecretStore {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(self.store.table)
                    .col(
                        ColumnDef::new("name")
                            .string_len(32)
                            .not_null()
                            .primary_key(),
                    )
                    .col(ColumnDef::new("value").string_len(128).not_null())
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(self.store.table).to_owned())
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::{Backend, connect, fresh_test_database_on};

    const STORE: SecretStore = SecretStore::new("kit_secrets");

    #[test]
    fn subjects_depend_on_the_key_and_hide_the_id() {
        let a = PseudonymKey::new([1; 32]).subject("c-1001");
        let b = PseudonymKey::new([2; 32]).subject("c-1001");
        assert_ne!(a, b);
        assert!(a.starts_with(SUBJECT_PREFIX) && !a.contains("1001"));
        assert_eq!(a, PseudonymKey::new([1; 32]).subject("c-1001"));
    }

    #[test]
    fn keys_round_trip_through_hex_and_never_print() {
        let key = PseudonymKey::new([7; 32]);
        assert_eq!(PseudonymKey::from_hex(&key.to_hex()), Some(key.clone()));
        assert_eq!(format!("{key:?}"), "PseudonymKey(..)");
        assert!(PseudonymKey::from_hex("abcd").is_none());
        let config = SecretsConfig {
            pseudonym_key: Some(SecretText::new(key.to_hex())),
            pseudonym_key_file: None,
        };
        assert!(!format!("{config:?}").contains(&key.to_hex()));
    }

    #[test]
    fn a_key_comes_from_configuration_or_a_file_not_both() {
        let key = PseudonymKey::new([9; 32]);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pseudonym-key");
        // As a Kubernetes Secret is often written: with a final newline.
        std::fs::write(&path, format!("{}\n", key.to_hex())).unwrap();
        let from_file = SecretsConfig {
            pseudonym_key: None,
            pseudonym_key_file: Some(path.clone()),
        };
        assert_eq!(
            from_file.configured_key().unwrap(),
            Some((key.clone(), KeySource::File(path)))
        );
        let both = SecretsConfig {
            pseudonym_key: Some(SecretText::new(key.to_hex())),
            ..from_file
        };
        assert!(matches!(
            both.configured_key(),
            Err(SecretsError::Ambiguous)
        ));
        let malformed = SecretsConfig {
            pseudonym_key: Some(SecretText::new("not hex")),
            pseudonym_key_file: None,
        };
        let error = malformed.configured_key().unwrap_err();
        assert!(!error.to_string().contains("not hex"));
        assert_eq!(SecretsConfig::default().configured_key().unwrap(), None);
    }

    #[test]
    #[allow(clippy::result_large_err)] // figment::Jail's closures return figment::Error
    fn the_key_is_read_from_the_environment_and_the_file_from_a_flag() {
        use crate::config::{Config, ConfigArgs};
        figment::Jail::expect_with(|jail| {
            // Digits and an `e` first: it must stay text, not become a number.
            let key = format!("1e5{}", "0".repeat(61));
            jail.set_env("ATTUNE_SECRETS__PSEUDONYM_KEY", &key);
            let config = Config::load(&ConfigArgs::default()).unwrap();
            assert_eq!(
                config.secrets.pseudonym_key,
                Some(SecretText::new(key.clone()))
            );
            assert!(!format!("{config:?}").contains(&key));
            jail.clear_env();
            let args = ConfigArgs {
                secrets: crate::config::SecretsArgs {
                    pseudonym_key_file: Some(PathBuf::from("/run/secrets/pseudonym-key")),
                },
                ..ConfigArgs::default()
            };
            let config = Config::load(&args).unwrap();
            assert_eq!(
                config.secrets.pseudonym_key_file,
                Some(PathBuf::from("/run/secrets/pseudonym-key"))
            );
            Ok(())
        });
    }

    async fn generated_once_configured_wins(backend: Backend) {
        let Some(test) = fresh_test_database_on(backend, "kit_secrets")
            .await
            .unwrap()
        else {
            return;
        };
        let db = connect(&test.config).await.unwrap();
        STORE
            .create_table("m0001_create_kit_secrets")
            .up(&SchemaManager::new(&db))
            .await
            .unwrap();
        let none = SecretsConfig::default();
        let (first, source) = STORE.pseudonym_key(&db, &none).await.unwrap();
        assert_eq!(source, KeySource::Database);
        let (again, _) = STORE.pseudonym_key(&db, &none).await.unwrap();
        assert_eq!(first, again, "the generated key is kept");
        let configured = PseudonymKey::new([5; 32]);
        let config = SecretsConfig {
            pseudonym_key: Some(SecretText::new(configured.to_hex())),
            pseudonym_key_file: None,
        };
        let (used, source) = STORE.pseudonym_key(&db, &config).await.unwrap();
        assert_eq!((used, source), (configured, KeySource::Configured));
    }

    #[tokio::test]
    async fn a_generated_key_is_kept_and_a_configured_key_wins_on_sqlite() {
        generated_once_configured_wins(Backend::Sqlite).await;
    }

    #[tokio::test]
    #[cfg_attr(
        not(attune_test_postgres),
        ignore = "set ATTUNE_TEST_DATABASE_URL to run on PostgreSQL"
    )]
    async fn a_generated_key_is_kept_and_a_configured_key_wins_on_postgres() {
        generated_once_configured_wins(Backend::Postgres).await;
    }
}
