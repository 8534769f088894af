//! Identifiers parsed once at the edge: after `parse`, a value is known to be valid.

use std::fmt;

use serde::Serialize;

/// The retailer's id for a customer: 1 to 128 printable ASCII characters, no spaces.
///
/// Ids come from many systems (web shop, POS, CRM), so the format is deliberately
/// loose; the bound keeps keys and indexes small.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct CustomerId(String);

impl CustomerId {
    /// The longest id accepted.
    pub const MAX_LEN: usize = 128;

    /// Parses a customer id, saying what is wrong with it otherwise.
    pub fn parse(raw: &str) -> Result<Self, String> {
        if raw.is_empty() {
            return Err("must not be empty".into());
        }
        if raw.len() > Self::MAX_LEN {
            return Err(format!("must be at most {} characters", Self::MAX_LEN));
        }
        if !raw.bytes().all(|b| b.is_ascii_graphic()) {
            return Err("must be printable ASCII without spaces".into());
        }
        Ok(Self(raw.to_owned()))
    }
}

impl AsRef<str> for CustomerId {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for CustomerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A purpose's stable code: lower snake case, 2 to 64 characters, starting with a
/// letter (`personalization`, `marketing_email`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct PurposeCode(String);

impl PurposeCode {
    /// The longest code accepted.
    pub const MAX_LEN: usize = 64;

    /// Parses a purpose code, saying what is wrong with it otherwise.
    pub fn parse(raw: &str) -> Result<Self, String> {
        if raw.is_empty() {
            return Err("must not be empty".into());
        }
        if raw.len() < 2 || raw.len() > Self::MAX_LEN {
            return Err(format!("must be 2 to {} characters", Self::MAX_LEN));
        }
        let starts_with_letter = raw.bytes().next().is_some_and(|b| b.is_ascii_lowercase());
        let snake = raw
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
        if !starts_with_letter || !snake {
            return Err("must be lower snake case (a-z, 0-9, _) starting with a letter".into());
        }
        Ok(Self(raw.to_owned()))
    }
}

impl AsRef<str> for PurposeCode {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for PurposeCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A client-chosen id that makes a write safe to retry: 1 to 64 characters of
/// `A-Z a-z 0-9 . _ : -` (a UUID fits).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RequestId(String);

impl RequestId {
    /// The longest id accepted.
    pub const MAX_LEN: usize = 64;

    /// Parses a request id, saying what is wrong with it otherwise.
    pub fn parse(raw: &str) -> Result<Self, String> {
        if raw.is_empty() {
            return Err(
                "must not be empty: choose one id per logical write (a UUID) and reuse it on retry"
                    .into(),
            );
        }
        if raw.len() > Self::MAX_LEN {
            return Err(format!("must be at most {} characters", Self::MAX_LEN));
        }
        if !raw
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'))
        {
            return Err("may only contain A-Z, a-z, 0-9, '.', '_', ':' and '-'".into());
        }
        Ok(Self(raw.to_owned()))
    }
}

impl AsRef<str> for RequestId {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn customer_id_rejects_empty_long_and_spaces() {
        assert!(CustomerId::parse("").is_err());
        assert!(CustomerId::parse(&"x".repeat(129)).is_err());
        assert!(CustomerId::parse("a b").is_err());
        assert!(CustomerId::parse("kund\u{e9}").is_err());
        assert!(CustomerId::parse("cust-42@shop:7").is_ok());
        assert!(CustomerId::parse(&"x".repeat(128)).is_ok());
    }

    #[test]
    fn purpose_code_must_be_lower_snake_case() {
        assert!(PurposeCode::parse("marketing_email").is_ok());
        assert!(PurposeCode::parse("a").is_err());
        assert!(PurposeCode::parse("Marketing").is_err());
        assert!(PurposeCode::parse("1st").is_err());
        assert!(PurposeCode::parse("with-dash").is_err());
        assert!(PurposeCode::parse(&"a".repeat(65)).is_err());
    }

    #[test]
    fn request_id_accepts_uuids_only_safe_characters() {
        assert!(RequestId::parse("6f1c1d1e-8f5e-4d1a-9c39-0b8f0e8a9b21").is_ok());
        assert!(RequestId::parse("").is_err());
        assert!(RequestId::parse("has space").is_err());
        assert!(RequestId::parse(&"r".repeat(65)).is_err());
    }
}
