//! Identifiers parsed once at the edge: after `parse`, a value is known to be valid.
//! The ids every service shares ([`CustomerId`], [`RequestId`]) come from the kit;
//! the purpose code is consent's own.

pub use attune_kit::types::{CustomerId, RequestId};

attune_kit::text_id! {
    /// A purpose's stable code: lower snake case, 2 to 64 characters, starting with a
    /// letter (`personalization`, `marketing_email`).
    pub struct PurposeCode;
    rule = |raw| attune_kit::types::snake_case(raw, PurposeCode::MAX_LEN);
}

impl PurposeCode {
    /// The longest code accepted.
    pub const MAX_LEN: usize = 64;
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOT_SNAKE: &str = "must be lower snake case (a-z, 0-9, _) starting with a letter";

    #[test]
    fn purpose_code_accepts_lower_snake_case() {
        for raw in ["marketing_email", "ab", "sale_or_share", "v2_offers"] {
            assert_eq!(
                PurposeCode::parse(raw).map(|code| code.to_string()),
                Ok(raw.to_owned())
            );
        }
    }

    #[test]
    fn purpose_code_rejects_empty() {
        assert_eq!(PurposeCode::parse(""), Err("must not be empty".into()));
    }

    #[test]
    fn purpose_code_rejects_too_short_and_too_long() {
        for raw in ["a".to_owned(), "a".repeat(PurposeCode::MAX_LEN + 1)] {
            assert_eq!(
                PurposeCode::parse(&raw),
                Err("must be 2 to 64 characters".into())
            );
        }
    }

    #[test]
    fn purpose_code_rejects_upper_case_and_other_characters() {
        for raw in ["Marketing", "with-dash", "with space", "caf\u{e9}"] {
            assert_eq!(PurposeCode::parse(raw), Err(NOT_SNAKE.into()), "{raw:?}");
        }
    }

    #[test]
    fn purpose_code_rejects_a_leading_digit_or_underscore() {
        for raw in ["1st", "_private"] {
            assert_eq!(PurposeCode::parse(raw), Err(NOT_SNAKE.into()), "{raw:?}");
        }
    }
}
