//! Keyed hashes of customer ids: what consent keeps about a customer after
//! erasure, and how it fingerprints requests without keeping a guessable digest.
//!
//! A plain SHA-256 of a customer id can be reversed by hashing candidate ids (a
//! loyalty number has few digits); an HMAC under a key only the controller holds
//! cannot. With the key, the controller can still show that "customer X granted
//! marketing_email on 3 March" by hashing X again and finding the records.

use hmac::{Hmac, Mac};
use serde::Serialize;
use sha2::Sha256;

use super::CustomerId;

/// Prefix of a pseudonymised customer id, so that nobody mistakes it for an id.
const SUBJECT_PREFIX: &str = "hmac-sha256:";

/// The controller's pseudonymisation key: 32 random bytes, generated once.
#[derive(Clone)]
pub struct PseudonymKey([u8; 32]);

impl std::fmt::Debug for PseudonymKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PseudonymKey(..)")
    }
}

impl PseudonymKey {
    /// Wraps key bytes.
    pub fn new(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// Reads a key stored as 64 hex digits.
    pub fn from_hex(stored: &str) -> Option<Self> {
        let bytes = hex::decode(stored).ok()?;
        Some(Self(bytes.try_into().ok()?))
    }

    /// The key as 64 hex digits, for storage.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// The pseudonym that replaces `customer` wherever proof must outlive erasure.
    pub fn subject(&self, customer: &CustomerId) -> String {
        format!("{SUBJECT_PREFIX}{}", self.mac(customer.as_ref().as_bytes()))
    }

    /// A keyed digest of everything a write request says except its request id
    /// (commands mark that field `#[serde(skip)]`): a retry with the same id must
    /// carry the same fingerprint, or it is a different request.
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_depend_on_the_key_and_hide_the_id() {
        let customer = CustomerId::parse("c-1001").unwrap();
        let a = PseudonymKey::new([1; 32]).subject(&customer);
        let b = PseudonymKey::new([2; 32]).subject(&customer);
        assert_ne!(a, b);
        assert!(a.starts_with(SUBJECT_PREFIX) && !a.contains("1001"));
        assert_eq!(a, PseudonymKey::new([1; 32]).subject(&customer));
    }

    #[test]
    fn keys_round_trip_through_hex_and_never_print() {
        let key = PseudonymKey::new([7; 32]);
        let back = PseudonymKey::from_hex(&key.to_hex()).unwrap();
        assert_eq!(back.0, key.0);
        assert_eq!(format!("{key:?}"), "PseudonymKey(..)");
        assert!(PseudonymKey::from_hex("abcd").is_none());
    }
}
