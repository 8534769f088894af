//! Identifiers parsed once at the edge: after `parse`, a value is known to be valid.

use std::fmt;

use serde::Serialize;

/// The retailer's id for a customer: 1 to 128 printable ASCII characters, no spaces.
///
/// Ids come from many systems (web shop, POS, CRM), so the format is deliberately
/// loose; the bound keeps keys and indexes small. A customer id is personal data:
/// never log it.
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

/// A client-chosen id that makes a write safe to retry: 1 to 64 characters of
/// `A-Z a-z 0-9 . _ : -` (a UUID fits).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
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

impl fmt::Display for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn customer_id_accepts_loose_ids_up_to_the_bound() {
        assert_eq!(
            CustomerId::parse("cust-42@shop:7").map(|id| id.to_string()),
            Ok("cust-42@shop:7".to_owned())
        );
        assert!(CustomerId::parse(&"x".repeat(CustomerId::MAX_LEN)).is_ok());
    }

    #[test]
    fn customer_id_rejects_empty() {
        assert_eq!(CustomerId::parse(""), Err("must not be empty".into()));
    }

    #[test]
    fn customer_id_rejects_too_long() {
        assert_eq!(
            CustomerId::parse(&"x".repeat(CustomerId::MAX_LEN + 1)),
            Err("must be at most 128 characters".into())
        );
    }

    #[test]
    fn customer_id_rejects_spaces_and_non_ascii() {
        for raw in ["a b", "kund\u{e9}", "tab\there", "line\n"] {
            assert_eq!(
                CustomerId::parse(raw),
                Err("must be printable ASCII without spaces".into()),
                "{raw:?}"
            );
        }
    }

    #[test]
    fn request_id_accepts_uuids() {
        let uuid = "6f1c1d1e-8f5e-4d1a-9c39-0b8f0e8a9b21";
        assert_eq!(
            RequestId::parse(uuid).map(|id| id.as_ref().to_owned()),
            Ok(uuid.to_owned())
        );
        assert!(RequestId::parse("retry.1_a:B").is_ok());
    }

    #[test]
    fn request_id_rejects_empty() {
        assert!(
            RequestId::parse("")
                .expect_err("an empty id is rejected")
                .starts_with("must not be empty")
        );
    }

    #[test]
    fn request_id_rejects_too_long() {
        assert_eq!(
            RequestId::parse(&"r".repeat(RequestId::MAX_LEN + 1)),
            Err("must be at most 64 characters".into())
        );
    }

    #[test]
    fn request_id_rejects_other_characters() {
        for raw in ["has space", "slash/", "ümlaut", "semi;colon"] {
            assert_eq!(
                RequestId::parse(raw),
                Err("may only contain A-Z, a-z, 0-9, '.', '_', ':' and '-'".into()),
                "{raw:?}"
            );
        }
    }
}
