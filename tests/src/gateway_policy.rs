//! The gateway's policy under test: a monolith with authentication configured
//! (JWT keys from the test-only fixtures, API keys), tokens minted at test time,
//! and raw calls to any method by name, so that a test can be generated from
//! the policy table itself.

use std::path::PathBuf;

use attune_kit::config::{ApiKeyConfig, Config};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use prost::Message as _;
use prost::bytes::{Buf as _, BufMut as _};
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::metadata::MetadataValue;
use tonic::{Request, Status};

use crate::{Backend, TestApp};

/// The issuer every test token names.
pub const ISSUER: &str = "https://id.attune.test";
/// The audience every test token names.
pub const AUDIENCE: &str = "attune-gateway";
/// An operator's API key (scope `admin`), configured by its SHA-256 only.
pub const OPS_KEY: &str = "test-only-ops-key-7f3a9c2e51d84b06";
/// A checkout service's API key: it may send events and read consent only.
pub const CHECKOUT_KEY: &str = "test-only-checkout-key-0b6e4d1f9a27";

/// Every scope a signed-in customer could be given (all but `admin` and the
/// staff device's).
pub const CUSTOMER_SCOPES: &[&str] = &[
    "profile.read",
    "profile.write",
    "events.write",
    "consent.read",
    "consent.write",
    "recommendation.read",
    "loyalty.read",
    "loyalty.write",
    "loyalty.redeem",
    "delivery.read",
    "delivery.write",
    "experience.read",
    "privacy.export",
    "privacy.erase",
];

/// A test-only key file of `tests/fixtures/test-only-jwt-keys`.
pub fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/test-only-jwt-keys")
        .join(name)
}

fn read_fixture(name: &str) -> Vec<u8> {
    std::fs::read(fixture(name)).expect("the test-only key fixtures are checked in")
}

/// Configures every way to authenticate: HS256, RS256 and ES256 keys, the
/// issuer and audience, and two API keys. Rate limits are high enough for the
/// matrix; a test about them lowers them.
pub fn secure(config: &mut Config) {
    let jwt = &mut config.security.jwt;
    jwt.issuer = Some(ISSUER.into());
    jwt.audience = Some(AUDIENCE.into());
    jwt.hs256_secret_file = Some(fixture("hs256-secret.txt"));
    jwt.rs256_public_key_file = Some(fixture("rs256-public.pem"));
    jwt.es256_public_key_file = Some(fixture("es256-public.pem"));
    // `rotated-rsa-1` (the other RSA key) and `es-1` (the ES256 key), by kid.
    jwt.jwks_file = Some(fixture("jwks.json"));
    let key = |secret: &str, scopes: &[&str]| ApiKeyConfig {
        sha256: hex::encode(Sha256::digest(secret.as_bytes())),
        scopes: scopes.iter().map(|scope| (*scope).to_owned()).collect(),
    };
    config.security.api_keys = [
        ("ops".to_owned(), key(OPS_KEY, &["admin"])),
        (
            "checkout".to_owned(),
            key(CHECKOUT_KEY, &["events.write", "consent.read"]),
        ),
    ]
    .into();
    config.security.protection.caller_rate = 100_000;
    config.security.protection.caller_burst = 100_000;
    config.security.protection.customer_rate = 100_000;
    config.security.protection.customer_burst = 100_000;
}

/// The monolith with [`secure`] and then `configure` applied.
pub async fn secured_app(backend: Backend, configure: impl FnOnce(&mut Config)) -> Option<TestApp> {
    TestApp::spawn_configured(backend, |config| {
        secure(config);
        configure(config);
    })
    .await
}

/// Runs `$name(app)` against a [`secured_app`] (the monolith with the test
/// policy) on SQLite, and on PostgreSQL when it is configured; the gateway
/// policy's counterpart of [`backend_tests!`](crate::backend_tests).
#[macro_export]
macro_rules! secured_tests {
    ($(async fn $name:ident($app:ident) $body:block)*) => {$(
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            async fn run($app: $crate::TestApp) $body

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                let app = $crate::gateway_policy::secured_app($crate::Backend::Sqlite, |_| {}).await;
                run(app.expect("SQLite is always available")).await;
            }

            $crate::postgres_test! {
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn postgres() {
                    let app = $crate::gateway_policy::secured_app($crate::Backend::Postgres, |_| {}).await;
                    run(app.expect("ATTUNE_TEST_DATABASE_URL is set at run time as it was at build time")).await;
                }
            }
        }
    )*};
}

/// `CheckConsent` for `personalization` through the public port as `credential`:
/// whether the gateway's policy let the call through.
pub async fn check_consent(
    app: &TestApp,
    customer: &str,
    credential: &Credential,
) -> Result<(), Status> {
    app.consent()
        .check_consent(with_credential(
            crate::consent_pb::CheckConsentRequest {
                customer_id: customer.into(),
                purpose_codes: vec!["personalization".into()],
            },
            credential,
        ))
        .await
        .map(drop)
}

/// Seconds since the epoch now.
pub fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// The claims of a customer's token valid for an hour.
pub fn customer_claims(customer: &str, scopes: &[&str]) -> Value {
    json!({
        "sub": customer,
        "iss": ISSUER,
        "aud": AUDIENCE,
        "iat": now(),
        "exp": now() + 3600,
        "scope": scopes.join(" "),
    })
}

/// A customer's RS256 token with every customer scope.
pub fn customer_token(customer: &str) -> String {
    rs256(&customer_claims(customer, CUSTOMER_SCOPES))
}

/// `claims` signed RS256 with the configured key.
pub fn rs256(claims: &Value) -> String {
    sign(Algorithm::RS256, &rsa_key("rs256-private.pem"), claims)
}

/// `claims` signed RS256 with a key the gateway does not know.
pub fn rs256_unknown_key(claims: &Value) -> String {
    sign(
        Algorithm::RS256,
        &rsa_key("other-rs256-private.pem"),
        claims,
    )
}

/// `claims` signed ES256 with the configured key.
pub fn es256(claims: &Value) -> String {
    let key = EncodingKey::from_ec_pem(&read_fixture("es256-private.pem")).expect("a P-256 key");
    sign(Algorithm::ES256, &key, claims)
}

/// `claims` signed HS256 with the configured shared secret.
pub fn hs256(claims: &Value) -> String {
    let secret = read_fixture("hs256-secret.txt");
    let secret = String::from_utf8(secret).expect("a text secret");
    sign(
        Algorithm::HS256,
        &EncodingKey::from_secret(secret.trim_end().as_bytes()),
        claims,
    )
}

/// The algorithm-confusion attack: HS256 "signed" with the RS256 public key's
/// PEM as the HMAC secret, as a verifier that let the header pick would accept.
pub fn hs256_with_rs256_public_key(claims: &Value) -> String {
    sign(
        Algorithm::HS256,
        &EncodingKey::from_secret(&read_fixture("rs256-public.pem")),
        claims,
    )
}

/// An unsigned token, `alg: none`.
pub fn unsigned(claims: &Value) -> String {
    use base64::Engine as _;
    let engine = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    format!(
        "{}.{}.",
        engine.encode(br#"{"alg":"none","typ":"JWT"}"#),
        engine.encode(claims.to_string())
    )
}

/// `token` with its claims replaced by `claims`, the signature kept.
pub fn tampered(token: &str, claims: &Value) -> String {
    use base64::Engine as _;
    let engine = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let mut parts = token.split('.');
    let (header, _, signature) = (
        parts.next().expect("a header"),
        parts.next().expect("claims"),
        parts.next().expect("a signature"),
    );
    format!("{header}.{}.{signature}", engine.encode(claims.to_string()))
}

/// `claims` signed with the key in `key_file` (`rs256-private.pem`,
/// `other-rs256-private.pem` or `es256-private.pem`) and naming `kid`.
pub fn signed_with_kid(key_file: &str, kid: &str, claims: &Value) -> String {
    let (algorithm, key) = if key_file.starts_with("es256") {
        (
            Algorithm::ES256,
            EncodingKey::from_ec_pem(&read_fixture(key_file)).expect("a P-256 key"),
        )
    } else {
        (Algorithm::RS256, rsa_key(key_file))
    };
    let mut header = Header::new(algorithm);
    header.kid = Some(kid.to_owned());
    jsonwebtoken::encode(&header, claims, &key).expect("test claims sign")
}

fn rsa_key(name: &str) -> EncodingKey {
    EncodingKey::from_rsa_pem(&read_fixture(name)).expect("an RSA key")
}

fn sign(algorithm: Algorithm, key: &EncodingKey, claims: &Value) -> String {
    jsonwebtoken::encode(&Header::new(algorithm), claims, key).expect("test claims sign")
}

/// How a test call authenticates.
#[derive(Debug, Clone)]
pub enum Credential {
    /// `authorization: Bearer <token>`.
    Bearer(String),
    /// `x-api-key: <key>`.
    ApiKey(&'static str),
    /// Nothing.
    None,
}

/// `message` as a request carrying `credential`.
pub fn with_credential<T>(message: T, credential: &Credential) -> Request<T> {
    let mut request = Request::new(message);
    let metadata = request.metadata_mut();
    match credential {
        Credential::Bearer(token) => {
            metadata.insert(
                "authorization",
                MetadataValue::try_from(format!("Bearer {token}")).expect("a token is ASCII"),
            );
        }
        Credential::ApiKey(key) => {
            metadata.insert("x-api-key", MetadataValue::from_static(key));
        }
        Credential::None => {}
    }
    request
}

/// Whether `method` (`package.Service/Method`) streams its requests and its
/// responses, from the contracts.
pub fn streaming(method: &str) -> (bool, bool) {
    let set = prost_types::FileDescriptorSet::decode(attune_proto::FILE_DESCRIPTOR_SET)
        .expect("the descriptor set decodes");
    let (service, name) = method.split_once('/').expect("Service/Method");
    set.file
        .iter()
        .flat_map(|file| {
            file.service
                .iter()
                .map(move |service| (format!("{}.{}", file.package(), service.name()), service))
        })
        .filter(|(full, _)| full == service)
        .flat_map(|(_, service)| service.method.iter())
        .find(|candidate| candidate.name() == name)
        .map(|method| (method.client_streaming(), method.server_streaming()))
        .unwrap_or_else(|| panic!("{method} is in the contracts"))
}

/// Calls `method` on `app`'s public port with the encoded request `message`:
/// `Ok` when the call (or a stream's first message) succeeded, the status
/// otherwise.
pub async fn call_raw(
    app: &TestApp,
    method: &str,
    message: Vec<u8>,
    credential: &Credential,
) -> Result<(), Status> {
    let mut grpc = tonic::client::Grpc::new(app.channel.clone());
    grpc.ready()
        .await
        .map_err(|error| Status::unavailable(error.to_string()))?;
    let path: http::uri::PathAndQuery = format!("/{method}").parse().expect("a valid path");
    match streaming(method) {
        (false, false) => grpc
            .unary(with_credential(message, credential), path, RawCodec)
            .await
            .map(drop),
        (false, true) => {
            let mut stream = grpc
                .server_streaming(with_credential(message, credential), path, RawCodec)
                .await?
                .into_inner();
            stream.message().await.map(drop)
        }
        (true, false) => grpc
            .client_streaming(
                with_credential(tokio_stream::iter([message]), credential),
                path,
                RawCodec,
            )
            .await
            .map(drop),
        (true, true) => grpc
            .streaming(
                with_credential(tokio_stream::iter([message]), credential),
                path,
                RawCodec,
            )
            .await?
            .into_inner()
            .message()
            .await
            .map(drop),
    }
}

/// Encoded messages as they are, both ways.
#[derive(Debug, Clone, Copy, Default)]
pub struct RawCodec;

impl Codec for RawCodec {
    type Encode = Vec<u8>;
    type Decode = Vec<u8>;
    type Encoder = RawCodec;
    type Decoder = RawCodec;

    fn encoder(&mut self) -> Self::Encoder {
        RawCodec
    }

    fn decoder(&mut self) -> Self::Decoder {
        RawCodec
    }
}

impl Encoder for RawCodec {
    type Item = Vec<u8>;
    type Error = Status;

    fn encode(&mut self, item: Vec<u8>, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put_slice(&item);
        Ok(())
    }
}

impl Decoder for RawCodec {
    type Item = Vec<u8>;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Vec<u8>>, Status> {
        let mut message = vec![0; src.remaining()];
        src.copy_to_slice(&mut message);
        Ok(Some(message))
    }
}
