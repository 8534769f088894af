//! Page sizes, opaque page tokens and the split of a read into a page and the
//! next token (Google AIP-158).
//!
//! A page token wraps a service's cursor (a sequence number, a last key) in a
//! versioned payload encoded as URL-safe base64, so clients treat it as opaque and
//! the format can change without breaking tokens already handed out. It is an
//! encoding, not encryption: a cursor must hold nothing its page does not show.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use crate::error::{FieldViolation, Violations};

/// First byte of every token this version writes.
const TOKEN_VERSION: u8 = 1;

/// What a token this API did not issue is told.
const NOT_OURS: &str = "is not a page token from this API";

/// Tokens longer than this are refused before decoding (a cursor is short).
const MAX_TOKEN_LEN: usize = 1024;

/// Validates a request's `page_size`: 0 means `default`, negative or above `max` is
/// a violation of `field`.
pub fn page_size(field: &str, raw: i32, default: u32, max: u32) -> Result<u32, FieldViolation> {
    match u32::try_from(raw) {
        Err(_) => Err(FieldViolation::new(field, "must not be negative")),
        Ok(0) => Ok(default),
        Ok(size) if size > max => Err(FieldViolation::new(field, format!("must be at most {max}"))),
        Ok(size) => Ok(size),
    }
}

/// Wraps `cursor` in an opaque page token.
pub fn encode_page_token(cursor: &str) -> String {
    let mut payload = Vec::with_capacity(cursor.len() + 1);
    payload.push(TOKEN_VERSION);
    payload.extend_from_slice(cursor.as_bytes());
    URL_SAFE_NO_PAD.encode(payload)
}

/// Unwraps a token from [`encode_page_token`]: `None` for the empty token (first
/// page), a violation of `field` for anything this API did not issue.
pub fn decode_page_token(field: &str, token: &str) -> Result<Option<String>, FieldViolation> {
    if token.is_empty() {
        return Ok(None);
    }
    let invalid = || FieldViolation::new(field, NOT_OURS);
    if token.len() > MAX_TOKEN_LEN {
        return Err(invalid());
    }
    let payload = URL_SAFE_NO_PAD.decode(token).map_err(|_| invalid())?;
    match payload.split_first() {
        Some((&TOKEN_VERSION, cursor)) => String::from_utf8(cursor.to_vec())
            .map(Some)
            .map_err(|_| invalid()),
        _ => Err(invalid()),
    }
}

/// Unwraps `token` and parses the cursor inside with `parse`: `None` for the
/// first page, or after recording a violation of `field` in `v` when the token
/// is not one this API issued or its cursor does not parse.
pub fn decode_cursor<T>(
    v: &mut Violations,
    field: &str,
    token: &str,
    parse: impl FnOnce(&str) -> Option<T>,
) -> Option<T> {
    let cursor = v.check_field(decode_page_token(field, token)).flatten()?;
    let parsed = parse(&cursor);
    if parsed.is_none() {
        v.add(field, NOT_OURS);
    }
    parsed
}

/// Splits rows read with one extra (`page_size + 1`) into the page and the token
/// of the next page: the extra row's presence is how a service knows there is
/// one, and the next page starts after the page's last row, whose `cursor` the
/// token carries. The token is empty when this was the last page.
pub fn next_page<T>(
    mut rows: Vec<T>,
    page_size: u32,
    cursor: impl FnOnce(&T) -> String,
) -> (Vec<T>, String) {
    let page_size = usize::try_from(page_size).expect("page sizes fit in usize");
    if rows.len() <= page_size {
        return (rows, String::new());
    }
    rows.truncate(page_size);
    let token = rows
        .last()
        .map(|last| encode_page_token(&cursor(last)))
        .unwrap_or_default();
    (rows, token)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_size_zero_means_default() {
        assert_eq!(page_size("page_size", 0, 50, 1000), Ok(50));
    }

    #[test]
    fn page_size_within_bounds_is_kept() {
        assert_eq!(page_size("page_size", 1, 50, 1000), Ok(1));
        assert_eq!(page_size("page_size", 1000, 50, 1000), Ok(1000));
    }

    #[test]
    fn page_size_rejections_name_the_field() {
        assert_eq!(
            page_size("page_size", -1, 50, 1000),
            Err(FieldViolation::new("page_size", "must not be negative"))
        );
        assert_eq!(
            page_size("page_size", 1001, 50, 1000),
            Err(FieldViolation::new("page_size", "must be at most 1000"))
        );
    }

    #[test]
    fn page_token_round_trips() {
        for cursor in [
            "",
            "42",
            "customer/ü/2024-01-01T00:00:00Z",
            &"x".repeat(500),
        ] {
            let token = encode_page_token(cursor);
            assert!(
                token
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            );
            assert_eq!(
                decode_page_token("page_token", &token),
                Ok(Some(cursor.to_owned()))
            );
        }
    }

    #[test]
    fn empty_page_token_is_the_first_page() {
        assert_eq!(decode_page_token("page_token", ""), Ok(None));
    }

    #[test]
    fn foreign_page_tokens_are_rejected() {
        let expected = Err(FieldViolation::new(
            "page_token",
            "is not a page token from this API",
        ));
        let wrong_version = URL_SAFE_NO_PAD.encode([9u8, b'1']);
        let not_utf8 = URL_SAFE_NO_PAD.encode([TOKEN_VERSION, 0xff, 0xfe]);
        let too_long = "A".repeat(MAX_TOKEN_LEN + 1);
        for token in [
            "not base64!",
            "42",
            wrong_version.as_str(),
            not_utf8.as_str(),
            too_long.as_str(),
        ] {
            assert_eq!(decode_page_token("page_token", token), expected, "{token}");
        }
    }

    #[test]
    fn a_short_read_is_the_last_page() {
        let cursor = |row: &u32| row.to_string();
        assert_eq!(
            next_page(vec![1, 2, 3], 3, cursor),
            (vec![1, 2, 3], String::new())
        );
        assert_eq!(
            next_page(Vec::<u32>::new(), 3, cursor),
            (vec![], String::new())
        );
    }

    #[test]
    fn an_extra_row_yields_a_token_after_the_last_row_of_the_page() {
        let (page, token) = next_page(vec![1, 2, 3, 4], 3, |row: &u32| row.to_string());
        assert_eq!(page, vec![1, 2, 3]);
        assert_eq!(
            decode_page_token("page_token", &token),
            Ok(Some("3".to_owned()))
        );
    }

    #[test]
    fn a_page_size_of_zero_keeps_nothing_and_names_no_row() {
        // Callers validate sizes to at least 1; zero must still not panic.
        assert_eq!(
            next_page(vec![1], 0, |row: &u32| row.to_string()),
            (vec![], String::new())
        );
    }
}
