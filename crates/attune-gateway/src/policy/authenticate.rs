//! Who is calling: a bearer token (`authorization: Bearer <JWT>`) or a service's
//! API key (`x-api-key: <key>`). Every failure is UNAUTHENTICATED with the same
//! message; the reason is logged at debug, never the credential.

use attune_kit::clock::Clock;
use attune_kit::config::SecurityConfig;
use tonic::Status;

use super::api_keys::ApiKeys;
use super::jwt::{KeyError, TokenVerifier};
use super::principal::Principal;

/// The header carrying a service's API key.
pub(crate) const API_KEY_HEADER: &str = "x-api-key";

/// The one answer to every authentication failure.
fn unauthenticated() -> Status {
    Status::unauthenticated("missing or invalid credentials")
}

/// The configured ways to authenticate.
#[derive(Debug)]
pub(crate) struct Authenticator {
    tokens: Option<TokenVerifier>,
    api_keys: ApiKeys,
}

impl Authenticator {
    /// What `config` configures; `None` when it configures nothing
    /// (development mode).
    pub(crate) fn from_config(
        config: &SecurityConfig,
        clock: Clock,
    ) -> Result<Option<Self>, KeyError> {
        let tokens = TokenVerifier::from_config(&config.jwt, clock)?;
        let api_keys = ApiKeys::from_config(&config.api_keys)?;
        if tokens.is_none() && api_keys.is_empty() {
            return Ok(None);
        }
        Ok(Some(Self { tokens, api_keys }))
    }

    /// The caller `headers` prove.
    pub(crate) fn authenticate(&self, headers: &http::HeaderMap) -> Result<Principal, Status> {
        if let Some(value) = headers.get(http::header::AUTHORIZATION) {
            let token = value
                .to_str()
                .ok()
                .and_then(|value| value.strip_prefix("Bearer "))
                .map(str::trim)
                .filter(|token| !token.is_empty());
            let (Some(token), Some(tokens)) = (token, &self.tokens) else {
                tracing::debug!("refused: authorization is not a bearer token this port accepts");
                return Err(unauthenticated());
            };
            return tokens.verify(token).map_err(|refusal| {
                tracing::debug!(?refusal, "refused a bearer token");
                unauthenticated()
            });
        }
        if let Some(value) = headers.get(API_KEY_HEADER) {
            return value
                .to_str()
                .ok()
                .and_then(|key| self.api_keys.verify(key.trim()))
                .ok_or_else(|| {
                    tracing::debug!("refused an API key that matches none configured");
                    unauthenticated()
                });
        }
        tracing::debug!("refused a call without credentials");
        Err(unauthenticated())
    }
}
