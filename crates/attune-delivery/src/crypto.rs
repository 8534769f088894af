//! Envelope encryption of a customer's personal data (addresses, explicit
//! preferences): each customer has a data key of their own, stored only wrapped
//! (encrypted) under the master key from configuration. Erasure deletes the
//! wrapped key, after which every copy of the customer's ciphertext (replicas,
//! backups) is unreadable: crypto-shredding.
//!
//! XChaCha20-Poly1305 (RustCrypto `chacha20poly1305`): its 24-byte nonces are
//! safe to draw at random for every message. Each ciphertext is bound (as
//! associated data) to what it belongs to, so a ciphertext copied onto another
//! row or customer does not decrypt.

use std::fmt;
use std::path::Path;

use attune_kit::secrets::PseudonymKey;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};

const NONCE_LEN: usize = 24;

/// Why a key or a ciphertext could not be used.
#[derive(Debug, thiserror::Error)]
pub enum CryptoError {
    /// The operating system gave no randomness.
    #[error("no randomness: {0}")]
    NoRandomness(String),
    /// A ciphertext (or wrapped key) does not authenticate under the key.
    #[error("ciphertext does not authenticate")]
    Forged,
    /// The configured master key is unusable.
    #[error("delivery master key: {0}")]
    MasterKey(String),
}

/// 32 secret bytes; never printed.
#[derive(Clone)]
struct KeyBytes([u8; 32]);

impl fmt::Debug for KeyBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("KeyBytes(..)")
    }
}

fn random<const N: usize>() -> Result<[u8; N], CryptoError> {
    let mut bytes = [0_u8; N];
    getrandom::fill(&mut bytes).map_err(|e| CryptoError::NoRandomness(e.to_string()))?;
    Ok(bytes)
}

fn seal(key: &KeyBytes, context: &[u8], plaintext: &[u8]) -> Result<Vec<u8>, CryptoError> {
    let cipher = XChaCha20Poly1305::new((&key.0).into());
    let nonce = random::<NONCE_LEN>()?;
    let sealed = cipher
        .encrypt(
            &XNonce::from(nonce),
            Payload {
                msg: plaintext,
                aad: context,
            },
        )
        .map_err(|_| CryptoError::Forged)?;
    let mut out = Vec::with_capacity(NONCE_LEN + sealed.len());
    out.extend_from_slice(&nonce);
    out.extend_from_slice(&sealed);
    Ok(out)
}

fn open(key: &KeyBytes, context: &[u8], sealed: &[u8]) -> Result<Vec<u8>, CryptoError> {
    if sealed.len() < NONCE_LEN {
        return Err(CryptoError::Forged);
    }
    let (nonce, body) = sealed.split_at(NONCE_LEN);
    let nonce: [u8; NONCE_LEN] = nonce.try_into().map_err(|_| CryptoError::Forged)?;
    XChaCha20Poly1305::new((&key.0).into())
        .decrypt(
            &XNonce::from(nonce),
            Payload {
                msg: body,
                aad: context,
            },
        )
        .map_err(|_| CryptoError::Forged)
}

/// Where the master key came from; start-up logs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MasterKeySource {
    /// `delivery.master_key_file`.
    File,
    /// Derived from the pseudonymisation key: the development default, which
    /// lives (and is backed up) with the data it protects.
    DerivedDevelopmentDefault,
}

/// The key that wraps every customer's data key.
#[derive(Debug, Clone)]
pub struct MasterKey(KeyBytes);

impl MasterKey {
    /// The key in `file` (64 hex digits), or when none is configured one derived
    /// from the service's pseudonymisation key.
    pub fn load(
        file: Option<&Path>,
        pseudonym_key: &PseudonymKey,
    ) -> Result<(Self, MasterKeySource), CryptoError> {
        match file {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| CryptoError::MasterKey(format!("cannot read the file: {e}")))?;
                let bytes = hex::decode(text.trim())
                    .ok()
                    .and_then(|bytes| <[u8; 32]>::try_from(bytes).ok())
                    .ok_or_else(|| CryptoError::MasterKey("not 64 hex digits".to_owned()))?;
                Ok((Self(KeyBytes(bytes)), MasterKeySource::File))
            }
            None => {
                let derived = pseudonym_key.digest("attune.delivery.master_key", "v1");
                let bytes = hex::decode(derived)
                    .ok()
                    .and_then(|bytes| <[u8; 32]>::try_from(bytes).ok())
                    .expect("an HMAC-SHA-256 digest is 32 bytes of hex");
                Ok((
                    Self(KeyBytes(bytes)),
                    MasterKeySource::DerivedDevelopmentDefault,
                ))
            }
        }
    }

    /// A key of fixed bytes, for tests.
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(KeyBytes(bytes))
    }

    /// A fresh data key for `customer_id`, and its wrapped form to store.
    pub fn new_data_key(&self, customer_id: &str) -> Result<(DataKey, Vec<u8>), CryptoError> {
        let key = KeyBytes(random::<32>()?);
        let wrapped = seal(&self.0, &wrap_context(customer_id), &key.0)?;
        Ok((DataKey(key), wrapped))
    }

    /// The data key `wrapped` holds, if it was wrapped for `customer_id` under
    /// this master key.
    pub fn unwrap_data_key(
        &self,
        customer_id: &str,
        wrapped: &[u8],
    ) -> Result<DataKey, CryptoError> {
        let bytes = open(&self.0, &wrap_context(customer_id), wrapped)?;
        let bytes = <[u8; 32]>::try_from(bytes).map_err(|_| CryptoError::Forged)?;
        Ok(DataKey(KeyBytes(bytes)))
    }
}

fn wrap_context(customer_id: &str) -> Vec<u8> {
    format!("attune.delivery.data_key\0{customer_id}").into_bytes()
}

/// One customer's data key, unwrapped for the duration of a request.
#[derive(Debug, Clone)]
pub struct DataKey(KeyBytes);

impl DataKey {
    /// Encrypts `plaintext` bound to `context` (for example the address id).
    pub fn seal(&self, context: &str, plaintext: &[u8]) -> Result<Vec<u8>, CryptoError> {
        seal(&self.0, context.as_bytes(), plaintext)
    }

    /// Decrypts what [`seal`](Self::seal) made for the same `context`.
    pub fn open(&self, context: &str, sealed: &[u8]) -> Result<Vec<u8>, CryptoError> {
        open(&self.0, context.as_bytes(), sealed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_keys_round_trip_only_for_their_customer_and_master_key() {
        let master = MasterKey::from_bytes([1; 32]);
        let (key, wrapped) = master.new_data_key("c-1").unwrap();
        let again = master.unwrap_data_key("c-1", &wrapped).unwrap();
        let sealed = key.seal("address:a-1", b"Hauptstrasse 1").unwrap();
        assert_eq!(
            again.open("address:a-1", &sealed).unwrap(),
            b"Hauptstrasse 1"
        );
        assert!(master.unwrap_data_key("c-2", &wrapped).is_err());
        assert!(
            MasterKey::from_bytes([2; 32])
                .unwrap_data_key("c-1", &wrapped)
                .is_err()
        );
        assert!(again.open("address:a-2", &sealed).is_err());
        assert!(!sealed.windows(5).any(|w| w == b"Haupt"));
    }

    #[test]
    fn keys_never_print() {
        let master = MasterKey::from_bytes([7; 32]);
        assert!(!format!("{master:?}").contains('7'));
    }
}
