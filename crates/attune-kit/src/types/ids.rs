//! Identifiers parsed once at the edge: after `parse`, a value is known to be valid.
//!
//! [`text_id!`](crate::text_id) declares such an id for any service, so each
//! writes only its rule.

/// Declares an id: a `String` newtype whose only constructor is `parse`, which
/// accepts what the rule (a `fn(&str) -> Result<(), String>` saying what is
/// wrong) accepts. It reads with `AsRef<str>` and `Display`, and serializes as
/// its string.
///
/// ```
/// attune_kit::text_id! {
///     /// A catalogue item's id.
///     pub struct ItemId;
///     rule = |raw| attune_kit::types::printable_ascii(raw, 128);
/// }
/// assert!(ItemId::parse("sku-1").is_ok());
/// assert!(ItemId::parse("").is_err());
/// ```
#[macro_export]
macro_rules! text_id {
    (
        $(#[$meta:meta])*
        pub struct $name:ident;
        rule = $rule:expr;
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(String);

        impl $name {
            /// Parses the id, saying what is wrong with it otherwise.
            pub fn parse(raw: &str) -> Result<Self, String> {
                let rule: fn(&str) -> Result<(), String> = $rule;
                rule(raw).map(|()| Self(raw.to_owned()))
            }

            /// [`parse`](Self::parse) keeping `raw`'s allocation: for ids taken
            /// out of a decoded request on a hot path.
            pub fn parse_owned(raw: String) -> Result<Self, String> {
                let rule: fn(&str) -> Result<(), String> = $rule;
                rule(&raw).map(|()| Self(raw))
            }

            /// The id's text, without a copy.
            pub fn into_string(self) -> String {
                self.0
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl ::std::fmt::Display for $name {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl $crate::types::__serde::Serialize for $name {
            fn serialize<S: $crate::types::__serde::Serializer>(
                &self,
                serializer: S,
            ) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(&self.0)
            }
        }
    };
}

/// The loose rule for ids that come from the retailer's many systems: 1 to
/// `max_len` printable ASCII characters, no spaces.
pub fn printable_ascii(raw: &str, max_len: usize) -> Result<(), String> {
    if raw.is_empty() {
        return Err("must not be empty".into());
    }
    if raw.len() > max_len {
        return Err(format!("must be at most {max_len} characters"));
    }
    if !raw.bytes().all(|b| b.is_ascii_graphic()) {
        return Err("must be printable ASCII without spaces".into());
    }
    Ok(())
}

/// The rule for stable codes people choose (purposes, rules, tiers): lower snake
/// case, 2 to `max_len` characters, starting with a letter.
pub fn snake_case(raw: &str, max_len: usize) -> Result<(), String> {
    if raw.is_empty() {
        return Err("must not be empty".into());
    }
    if raw.len() < 2 || raw.len() > max_len {
        return Err(format!("must be 2 to {max_len} characters"));
    }
    let starts_with_letter = raw.bytes().next().is_some_and(|b| b.is_ascii_lowercase());
    let snake = raw
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if !starts_with_letter || !snake {
        return Err("must be lower snake case (a-z, 0-9, _) starting with a letter".into());
    }
    Ok(())
}

crate::text_id! {
    /// The retailer's id for a customer: 1 to 128 printable ASCII characters, no
    /// spaces.
    ///
    /// Ids come from many systems (web shop, POS, CRM), so the format is
    /// deliberately loose; the bound keeps keys and indexes small. A customer id
    /// is personal data: never log it.
    pub struct CustomerId;
    rule = |raw| printable_ascii(raw, CustomerId::MAX_LEN);
}

impl CustomerId {
    /// The longest id accepted.
    pub const MAX_LEN: usize = 128;
}

crate::text_id! {
    /// A client-chosen id that makes a write safe to retry: 1 to 64 characters of
    /// `A-Z a-z 0-9 . _ : -` (a UUID fits).
    pub struct RequestId;
    rule = request_id_rule;
}

impl RequestId {
    /// The longest id accepted.
    pub const MAX_LEN: usize = 64;
}

fn request_id_rule(raw: &str) -> Result<(), String> {
    if raw.is_empty() {
        return Err(
            "must not be empty: choose one id per logical write (a UUID) and reuse it on retry"
                .into(),
        );
    }
    if raw.len() > RequestId::MAX_LEN {
        return Err(format!("must be at most {} characters", RequestId::MAX_LEN));
    }
    if !raw
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'))
    {
        return Err("may only contain A-Z, a-z, 0-9, '.', '_', ':' and '-'".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // panics fail tests

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

    #[test]
    fn ids_serialize_as_their_string() {
        let id = CustomerId::parse("cust-1").unwrap();
        assert_eq!(serde_json::to_string(&id).unwrap(), "\"cust-1\"");
    }

    #[test]
    fn snake_case_rejects_empty() {
        assert_eq!(snake_case("", 64), Err("must not be empty".into()));
    }

    #[test]
    fn snake_case_rejects_too_short_and_too_long() {
        assert_eq!(
            snake_case("a", 64),
            Err("must be 2 to 64 characters".into())
        );
        assert_eq!(
            snake_case(&"a".repeat(65), 64),
            Err("must be 2 to 64 characters".into())
        );
    }

    #[test]
    fn snake_case_rejects_other_shapes() {
        for raw in ["Upper", "with-dash", "1st", "_lead", "caf\u{e9}"] {
            assert_eq!(
                snake_case(raw, 64),
                Err("must be lower snake case (a-z, 0-9, _) starting with a letter".into()),
                "{raw:?}"
            );
        }
        assert_eq!(snake_case("v2_offers", 64), Ok(()));
    }
}
