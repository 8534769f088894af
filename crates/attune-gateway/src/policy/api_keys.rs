//! API keys of service-to-service callers. The configuration holds only each
//! key's SHA-256 (a key is a long random secret, so a fast hash is enough: it
//! cannot be guessed from its digest), its name and its scopes. A presented key
//! is hashed and compared with every stored digest in constant time, so
//! neither the comparison nor which entry matched shows in the timing.

use std::collections::BTreeMap;

use attune_kit::config::ApiKeyConfig;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::jwt::KeyError;
use super::principal::{Principal, Scopes};

struct StoredKey {
    name: String,
    digest: [u8; 32],
    scopes: Scopes,
}

/// The configured API keys.
pub(crate) struct ApiKeys(Vec<StoredKey>);

impl std::fmt::Debug for ApiKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.0.iter().map(|key| &key.name))
            .finish()
    }
}

impl ApiKeys {
    /// The keys of `config`, each digest checked to be 64 hex digits.
    pub(crate) fn from_config(config: &BTreeMap<String, ApiKeyConfig>) -> Result<Self, KeyError> {
        config
            .iter()
            .map(|(name, key)| {
                let mut digest = [0_u8; 32];
                hex::decode_to_slice(key.sha256.trim(), &mut digest).map_err(|_| {
                    KeyError::Invalid {
                        setting: "security.api_keys",
                        reason: format!("{name}: sha256 must be 64 hex digits"),
                    }
                })?;
                Ok(StoredKey {
                    name: name.clone(),
                    digest,
                    scopes: key.scopes.iter().cloned().collect(),
                })
            })
            .collect::<Result<_, _>>()
            .map(Self)
    }

    /// Whether any key is configured.
    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The service `presented` is the key of, if any.
    pub(crate) fn verify(&self, presented: &str) -> Option<Principal> {
        let digest: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        // Every stored digest is compared, whichever matches.
        let mut matched = None;
        for key in &self.0 {
            if bool::from(key.digest.ct_eq(&digest)) {
                matched = Some(key);
            }
        }
        matched.map(|key| Principal::Service {
            name: key.name.clone(),
            scopes: key.scopes.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys() -> ApiKeys {
        let config = BTreeMap::from([(
            "checkout".to_owned(),
            ApiKeyConfig {
                sha256: hex::encode(Sha256::digest(b"s3cret-key-of-checkout")),
                scopes: vec!["events.write".into()],
            },
        )]);
        ApiKeys::from_config(&config).unwrap()
    }

    #[test]
    fn the_right_key_names_its_service_and_scopes() {
        let Some(Principal::Service { name, scopes }) = keys().verify("s3cret-key-of-checkout")
        else {
            panic!("the key is accepted");
        };
        assert_eq!(name, "checkout");
        assert!(scopes.contains("events.write"));
    }

    #[test]
    fn any_other_key_is_no_one() {
        for wrong in ["", "s3cret-key-of-checkou", "S3CRET-KEY-OF-CHECKOUT"] {
            assert!(keys().verify(wrong).is_none(), "{wrong:?}");
        }
    }

    #[test]
    fn a_digest_that_is_not_hex_is_refused_at_start() {
        let config = BTreeMap::from([(
            "x".to_owned(),
            ApiKeyConfig {
                sha256: "not hex".into(),
                scopes: Vec::new(),
            },
        )]);
        assert!(ApiKeys::from_config(&config).is_err());
    }
}
