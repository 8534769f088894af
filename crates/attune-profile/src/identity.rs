//! Identities as stored: the value a channel knows a customer by, normalized, and
//! for e-mail and phone a keyed hash instead of the clear value.

use attune_kit::secrets::PseudonymKey;
use attune_kit::types::printable_ascii;
use attune_proto::profile::v1 as pb;

/// The prefix of a stored e-mail or phone hash, as profiles show it.
pub const HASH_PREFIX: &str = "hmac:";

/// Longest identity value accepted.
const MAX_VALUE: usize = 256;

/// An identity ready to store or look up: its type and stored value.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StoredIdentity {
    /// `IdentityType` as its wire number (never UNSPECIFIED).
    pub identity_type: i32,
    /// The value as stored: the clear value, or for e-mail and phone
    /// [`HASH_PREFIX`] and the keyed hash of the normalized value.
    pub value: String,
}

impl StoredIdentity {
    /// Parses an identity from the wire: checks its type and value, normalizes
    /// e-mail and phone and hashes them with `key` (a value already in the
    /// stored `hmac:` form is taken as is, so a profile's output can be looked
    /// up again). The error says what is wrong with the value.
    pub fn parse(key: &PseudonymKey, identity_type: i32, value: &str) -> Result<Self, String> {
        let kind = pb::IdentityType::try_from(identity_type)
            .ok()
            .filter(|kind| *kind != pb::IdentityType::Unspecified)
            .ok_or_else(|| "identity_type: must be a known identity type".to_owned())?;
        let value = match kind {
            pb::IdentityType::Email | pb::IdentityType::Phone if is_stored_hash(value) => {
                value.to_owned()
            }
            pb::IdentityType::Email => hashed(key, "email", &normalize_email(value)?),
            pb::IdentityType::Phone => hashed(key, "phone", &normalize_phone(value)?),
            _ => {
                printable_ascii(value, MAX_VALUE).map_err(|reason| format!("value: {reason}"))?;
                value.to_owned()
            }
        };
        Ok(Self {
            identity_type,
            value,
        })
    }
}

fn hashed(key: &PseudonymKey, domain: &str, normalized: &str) -> String {
    format!("{HASH_PREFIX}{}", key.digest(domain, normalized))
}

fn is_stored_hash(value: &str) -> bool {
    value.strip_prefix(HASH_PREFIX).is_some_and(|hex| {
        hex.len() == 64
            && hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    })
}

/// Trimmed and lower-cased; one "@" with text on both sides, no spaces.
fn normalize_email(raw: &str) -> Result<String, String> {
    let email = raw.trim().to_lowercase();
    let valid = email.len() <= 254
        && !email.chars().any(char::is_whitespace)
        && matches!(email.split_once('@'), Some((local, domain))
            if !local.is_empty() && !domain.is_empty() && !domain.contains('@'));
    if valid {
        Ok(email)
    } else {
        Err("value: must be an e-mail address (at most 254 characters with one \"@\")".into())
    }
}

/// E.164: "+" then 8 to 15 digits, after removing spaces, dots, dashes and
/// parentheses.
fn normalize_phone(raw: &str) -> Result<String, String> {
    let phone: String = raw
        .trim()
        .chars()
        .filter(|c| !matches!(c, ' ' | '.' | '-' | '(' | ')'))
        .collect();
    let digits = phone.strip_prefix('+').unwrap_or("");
    if (8..=15).contains(&digits.len()) && digits.bytes().all(|b| b.is_ascii_digit()) {
        Ok(phone)
    } else {
        Err("value: must be a phone number in E.164 form, \"+\" and 8 to 15 digits".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> PseudonymKey {
        PseudonymKey::new([7; 32])
    }

    #[test]
    fn an_email_is_normalized_then_hashed_never_kept_in_clear() {
        let a = StoredIdentity::parse(&key(), pb::IdentityType::Email as i32, " Ada@Example.COM ")
            .unwrap();
        let b = StoredIdentity::parse(&key(), pb::IdentityType::Email as i32, "ada@example.com")
            .unwrap();
        assert_eq!(a, b);
        assert!(a.value.starts_with(HASH_PREFIX) && !a.value.contains("ada"));
        // The stored form looks up the same identity.
        let again =
            StoredIdentity::parse(&key(), pb::IdentityType::Email as i32, &a.value).unwrap();
        assert_eq!(again, a);
    }

    #[test]
    fn a_phone_number_loses_its_punctuation_before_hashing() {
        let a = StoredIdentity::parse(&key(), pb::IdentityType::Phone as i32, "+49 151 1234-5678")
            .unwrap();
        let b = StoredIdentity::parse(&key(), pb::IdentityType::Phone as i32, "+4915112345678")
            .unwrap();
        assert_eq!(a, b);
        // The same digits as an e-mail would be another identity.
        assert!(
            StoredIdentity::parse(&key(), pb::IdentityType::Phone as i32, "015112345678").is_err()
        );
    }

    #[test]
    fn bad_values_and_types_are_refused() {
        for (kind, value) in [
            (pb::IdentityType::Email as i32, "no-at-sign"),
            (pb::IdentityType::Email as i32, "a@b@c"),
            (pb::IdentityType::LoyaltyCard as i32, ""),
            (pb::IdentityType::LoyaltyCard as i32, "has space"),
            (pb::IdentityType::Unspecified as i32, "x"),
            (99, "x"),
        ] {
            assert!(
                StoredIdentity::parse(&key(), kind, value).is_err(),
                "{kind} {value:?}"
            );
        }
        let card =
            StoredIdentity::parse(&key(), pb::IdentityType::LoyaltyCard as i32, "C-1").unwrap();
        assert_eq!(card.value, "C-1");
    }
}
