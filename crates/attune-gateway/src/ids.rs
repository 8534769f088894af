//! The ids a data-subject request names, checked before any service is asked, by
//! the same rules every Attune service applies (see `gateway.proto`).
//!
//! The rules belong with the shared id types in `attune-kit` (issue 8, item 2):
//! when `CustomerId` and `RequestId` land there, these two functions become their
//! `parse`.

/// Longest customer id accepted.
const CUSTOMER_ID_MAX: usize = 128;
/// Longest request id accepted.
const REQUEST_ID_MAX: usize = 64;

/// A customer id: 1 to 128 printable ASCII characters, no spaces.
pub(crate) fn customer_id(raw: &str) -> Result<&str, String> {
    if raw.is_empty() {
        return Err("must not be empty".into());
    }
    if raw.len() > CUSTOMER_ID_MAX {
        return Err(format!("must be at most {CUSTOMER_ID_MAX} characters"));
    }
    if !raw.bytes().all(|b| b.is_ascii_graphic()) {
        return Err("must be printable ASCII without spaces".into());
    }
    Ok(raw)
}

/// A request id: 1 to 64 characters of A-Z, a-z, 0-9, '.', '_', ':' and '-'.
pub(crate) fn request_id(raw: &str) -> Result<&str, String> {
    if raw.is_empty() {
        return Err(
            "must not be empty: choose one id per request (a UUID) and reuse it on retry".into(),
        );
    }
    if raw.len() > REQUEST_ID_MAX {
        return Err(format!("must be at most {REQUEST_ID_MAX} characters"));
    }
    if !raw
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'))
    {
        return Err("may only contain A-Z, a-z, 0-9, '.', '_', ':' and '-'".into());
    }
    Ok(raw)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn customer_ids_are_bounded_printable_ascii() {
        assert!(customer_id("cust-1@shop").is_ok());
        assert!(customer_id(&"a".repeat(128)).is_ok());
        assert!(customer_id("").is_err());
        assert!(customer_id(&"a".repeat(129)).is_err());
        assert!(customer_id("has space").is_err());
        assert!(customer_id("ünï").is_err());
    }

    #[test]
    fn request_ids_are_bounded_and_url_safe() {
        assert!(request_id("2f1c-AB_9.x:y").is_ok());
        assert!(request_id(&"r".repeat(64)).is_ok());
        assert!(request_id("").is_err());
        assert!(request_id(&"r".repeat(65)).is_err());
        assert!(request_id("a/b").is_err());
    }
}
