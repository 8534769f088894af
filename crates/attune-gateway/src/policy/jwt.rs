//! Bearer tokens: JWTs verified by `jsonwebtoken` against configured keys.
//!
//! Each key verifies exactly one algorithm (HS256 for the shared secret, RS256
//! or ES256 for a public key, the JWK's own `alg` or its key type for a JWKS
//! entry). The token's header only picks among the keys of its algorithm (by
//! `kid` when it names one): it can never make a public key be used as an HMAC
//! secret, and `alg: none` names no key. Expiry and not-before are checked
//! against the gateway's clock with a small leeway; issuer and audience always.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use attune_kit::clock::Clock;
use attune_kit::config::JwtConfig;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, JwkSet, KeyAlgorithm};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use moka::sync::Cache;
use serde::Deserialize;

use super::principal::{Principal, Scopes};

/// Why the configured keys cannot be used: the server refuses to start.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// A key file cannot be read.
    #[error("cannot read {setting} ({path}): {reason}")]
    Unreadable {
        /// The setting naming the file.
        setting: &'static str,
        /// The file.
        path: String,
        /// Why.
        reason: String,
    },
    /// A key or the configuration around it is unusable.
    #[error("{setting}: {reason}")]
    Invalid {
        /// The setting.
        setting: &'static str,
        /// Why.
        reason: String,
    },
}

/// One verifying key: its algorithm is fixed when it is configured.
struct VerifyingKey {
    kid: Option<String>,
    algorithm: Algorithm,
    key: DecodingKey,
}

/// Tokens whose signature and claims were verified, kept so that a client
/// sending the same token with every call costs one signature check: each
/// hit still checks expiry against the clock.
const VERIFIED_TOKENS: u64 = 10_000;
/// How long a verified token is kept (it is checked again after).
const VERIFIED_FOR: Duration = Duration::from_secs(300);

/// A token whose signature, issuer and audience were verified.
#[derive(Debug)]
struct Verified {
    principal: Principal,
    exp: i64,
    nbf: Option<i64>,
}

/// Verifies bearer tokens.
pub(crate) struct TokenVerifier {
    verified: Cache<String, Arc<Verified>>,
    keys: Vec<VerifyingKey>,
    issuer: String,
    audience: String,
    leeway: Duration,
    clock: Clock,
}

impl std::fmt::Debug for TokenVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenVerifier")
            .field("keys", &self.keys.len())
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .finish_non_exhaustive()
    }
}

/// The claims Attune reads. Unknown claims are ignored.
#[derive(Debug, Deserialize)]
struct Claims {
    sub: String,
    exp: i64,
    #[serde(default)]
    nbf: Option<i64>,
    /// OAuth 2.0 scopes, space-separated (RFC 8693 `scope`)...
    #[serde(default)]
    scope: Option<String>,
    /// ...or as an array (`scp`, as some identity providers send them).
    #[serde(default)]
    scp: Option<Vec<String>>,
    /// A staff device's store.
    #[serde(default)]
    store_id: Option<String>,
    /// `service` for a back-office service's token; absent for a customer.
    #[serde(default)]
    attune_principal: Option<String>,
}

/// Why a token was refused: logged at debug, never told to the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    Malformed,
    NoKeyForAlgorithm,
    Signature,
    Expired,
    NotYetValid,
    Claims,
}

impl TokenVerifier {
    /// The verifier `config` describes, or `None` when it configures no key.
    pub(crate) fn from_config(config: &JwtConfig, clock: Clock) -> Result<Option<Self>, KeyError> {
        let mut keys = Vec::new();
        if let Some(path) = &config.hs256_secret_file {
            let secret = read(path, "security.jwt.hs256_secret_file")?;
            let secret = trim_line_end(&secret);
            if secret.len() < 32 {
                return Err(KeyError::Invalid {
                    setting: "security.jwt.hs256_secret_file",
                    reason: "an HS256 secret must be at least 32 bytes".into(),
                });
            }
            keys.push(VerifyingKey {
                kid: None,
                algorithm: Algorithm::HS256,
                key: DecodingKey::from_secret(secret),
            });
        }
        if let Some(path) = &config.rs256_public_key_file {
            let setting = "security.jwt.rs256_public_key_file";
            let key = DecodingKey::from_rsa_pem(&read(path, setting)?).map_err(|error| {
                KeyError::Invalid {
                    setting,
                    reason: error.to_string(),
                }
            })?;
            keys.push(VerifyingKey {
                kid: None,
                algorithm: Algorithm::RS256,
                key,
            });
        }
        if let Some(path) = &config.es256_public_key_file {
            let setting = "security.jwt.es256_public_key_file";
            let key = DecodingKey::from_ec_pem(&read(path, setting)?).map_err(|error| {
                KeyError::Invalid {
                    setting,
                    reason: error.to_string(),
                }
            })?;
            keys.push(VerifyingKey {
                kid: None,
                algorithm: Algorithm::ES256,
                key,
            });
        }
        if let Some(path) = &config.jwks_file {
            keys.extend(jwks_keys(&read(path, "security.jwt.jwks_file")?)?);
        }
        if keys.is_empty() {
            return Ok(None);
        }
        let required = |value: &Option<String>, setting: &'static str| {
            value
                .clone()
                .filter(|value| !value.trim().is_empty())
                .ok_or(KeyError::Invalid {
                    setting,
                    reason: "required once a token key is configured".into(),
                })
        };
        Ok(Some(Self {
            verified: Cache::builder()
                .max_capacity(VERIFIED_TOKENS)
                .time_to_live(VERIFIED_FOR)
                .build(),
            keys,
            issuer: required(&config.issuer, "security.jwt.issuer")?,
            audience: required(&config.audience, "security.jwt.audience")?,
            leeway: config.leeway,
            clock,
        }))
    }

    /// The principal `token` proves, or why it proves nothing.
    pub(crate) fn verify(&self, token: &str) -> Result<Principal, Refusal> {
        let verified = match self.verified.get(token) {
            Some(verified) => verified,
            None => {
                let verified = Arc::new(self.verify_signature(token)?);
                self.verified
                    .insert(token.to_owned(), Arc::clone(&verified));
                verified
            }
        };
        self.check_times(&verified)?;
        Ok(verified.principal.clone())
    }

    /// The signature by the one key of the header's algorithm (and `kid`),
    /// then the claims.
    fn verify_signature(&self, token: &str) -> Result<Verified, Refusal> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| Refusal::Malformed)?;
        let candidates = self.keys.iter().filter(|key| {
            key.algorithm == header.alg
                && match (&header.kid, &key.kid) {
                    (Some(wanted), Some(kid)) => wanted == kid,
                    // A token naming a kid only matches the JWKS key of that kid;
                    // one naming none matches the configured keys without a kid.
                    (Some(_), None) | (None, Some(_)) => false,
                    (None, None) => true,
                }
        });
        let mut refusal = Refusal::NoKeyForAlgorithm;
        for key in candidates {
            match jsonwebtoken::decode::<Claims>(token, &key.key, &self.validation(key.algorithm)) {
                Ok(data) => return principal(data.claims),
                Err(error) => {
                    refusal = match error.kind() {
                        jsonwebtoken::errors::ErrorKind::InvalidSignature => Refusal::Signature,
                        _ => Refusal::Claims,
                    }
                }
            }
        }
        Err(refusal)
    }

    /// Expiry and not-before against the clock, within the leeway.
    fn check_times(&self, verified: &Verified) -> Result<(), Refusal> {
        let now = self.clock.now().timestamp();
        let leeway = i64::try_from(self.leeway.as_secs()).unwrap_or(i64::MAX);
        if verified.exp.saturating_add(leeway) < now {
            return Err(Refusal::Expired);
        }
        if verified
            .nbf
            .is_some_and(|nbf| nbf.saturating_sub(leeway) > now)
        {
            return Err(Refusal::NotYetValid);
        }
        Ok(())
    }

    /// Signature, issuer and audience by `jsonwebtoken`; times by our clock.
    fn validation(&self, algorithm: Algorithm) -> Validation {
        let mut validation = Validation::new(algorithm);
        validation.set_issuer(&[&self.issuer]);
        validation.set_audience(&[&self.audience]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation
    }
}

/// Who the verified `claims` name.
fn principal(claims: Claims) -> Result<Verified, Refusal> {
    let Claims {
        sub,
        exp,
        nbf,
        scope,
        scp,
        store_id,
        attune_principal,
    } = claims;
    if attune_kit::types::CustomerId::parse(&sub).is_err() {
        return Err(Refusal::Claims);
    }
    let scopes: Scopes = scope
        .iter()
        .flat_map(|scope| scope.split_whitespace().map(str::to_owned))
        .chain(scp.into_iter().flatten())
        .collect();
    let principal = match (store_id, attune_principal.as_deref()) {
        (Some(store_id), None | Some("staff")) if !store_id.is_empty() => Principal::Staff {
            subject: sub,
            store_id,
            scopes,
        },
        (None, Some("service")) => Principal::Service { name: sub, scopes },
        (None, None | Some("customer")) => Principal::Customer { id: sub, scopes },
        _ => return Err(Refusal::Claims),
    };
    Ok(Verified {
        principal,
        exp,
        nbf,
    })
}

fn read(path: &Path, setting: &'static str) -> Result<Vec<u8>, KeyError> {
    std::fs::read(path).map_err(|error| KeyError::Unreadable {
        setting,
        path: path.display().to_string(),
        reason: error.to_string(),
    })
}

/// A secret file usually ends with a newline nobody meant as part of the secret.
fn trim_line_end(secret: &[u8]) -> &[u8] {
    let end = secret
        .iter()
        .rposition(|byte| !matches!(byte, b'\n' | b'\r'))
        .map_or(0, |last| last + 1);
    &secret[..end]
}

/// The public keys of a JWKS document, each with its `kid` and one algorithm.
/// Symmetric keys are refused: a shared secret belongs in its own file.
fn jwks_keys(document: &[u8]) -> Result<Vec<VerifyingKey>, KeyError> {
    let setting = "security.jwt.jwks_file";
    let invalid = |reason: String| KeyError::Invalid { setting, reason };
    let set: JwkSet = serde_json::from_slice(document).map_err(|e| invalid(e.to_string()))?;
    set.keys
        .iter()
        .map(|jwk| {
            let kid = jwk
                .common
                .key_id
                .clone()
                .filter(|kid| !kid.is_empty())
                .ok_or_else(|| invalid("every key needs a kid".into()))?;
            let algorithm = match (&jwk.algorithm, jwk.common.key_algorithm) {
                (AlgorithmParameters::RSA(_), None | Some(KeyAlgorithm::RS256)) => Algorithm::RS256,
                (AlgorithmParameters::EllipticCurve(ec), None | Some(KeyAlgorithm::ES256))
                    if ec.curve == EllipticCurve::P256 =>
                {
                    Algorithm::ES256
                }
                _ => {
                    return Err(invalid(format!(
                        "key {kid}: only RS256 and ES256 (P-256) public keys are accepted"
                    )));
                }
            };
            let key = DecodingKey::from_jwk(jwk)
                .map_err(|error| invalid(format!("key {kid}: {error}")))?;
            Ok(VerifyingKey {
                kid: Some(kid),
                algorithm,
                key,
            })
        })
        .collect()
}
