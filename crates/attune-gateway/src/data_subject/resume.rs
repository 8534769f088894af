//! The resume token of an export stream: each data-holding service's position
//! (not started, at a page of one of the request's ids, or done) after the
//! message that carries it, with the records counted so far for the service's
//! receipt. It is bound to its request and customer by a keyed digest, so a
//! token cannot be altered or moved to another request; it holds no customer
//! id (ids are named by their place in the request's list of ids).

use attune_kit::error::FieldViolation;
use attune_kit::secrets::PseudonymKey;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq as _;

/// The request field a token arrives in.
const FIELD: &str = "resume_token";

/// Tokens longer than this are refused before decoding: seven services' page
/// tokens fit many times over.
const MAX_TOKEN_LEN: usize = 8192;

/// The digest's domain: no other digest of the key collides with it.
const DOMAIN: &str = "attune.gateway.v1.ExportCustomer.resume_token";

/// Where one service's export stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(super) enum Position {
    /// Not started: from the first page of the first id.
    Start,
    /// Next: the page `page` (a backend's token; empty for its first page) of
    /// the request's id number `id`; `count` records exported before it.
    At { id: usize, page: String, count: i64 },
    /// Its receipt was sent.
    Done,
}

/// Every service's position, in the order the gateway asks them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Positions(pub Vec<Position>);

impl Positions {
    /// A whole export of `services` services.
    pub(super) fn start(services: usize) -> Self {
        Self(vec![Position::Start; services])
    }

    /// The token for these positions in the request `request_id` about
    /// `customer_id`.
    pub(super) fn token(&self, key: &PseudonymKey, request_id: &str, customer_id: &str) -> String {
        let payload = serde_json::to_string(&self.0).expect("positions serialize");
        let digest = key.digest(DOMAIN, &bound(request_id, customer_id, &payload));
        URL_SAFE_NO_PAD.encode(format!("{digest}.{payload}"))
    }

    /// Reads a token from [`Self::token`] for the same request, customer and
    /// number of services; an empty token is the whole export.
    pub(super) fn parse(
        token: &str,
        key: &PseudonymKey,
        request_id: &str,
        customer_id: &str,
        services: usize,
    ) -> Result<Self, FieldViolation> {
        if token.is_empty() {
            return Ok(Self::start(services));
        }
        let invalid = || {
            FieldViolation::new(
                FIELD,
                "is not a resume token of this export (same customer_id and request_id)",
            )
        };
        if token.len() > MAX_TOKEN_LEN {
            return Err(invalid());
        }
        let text = URL_SAFE_NO_PAD
            .decode(token)
            .ok()
            .and_then(|bytes| String::from_utf8(bytes).ok())
            .ok_or_else(invalid)?;
        let (digest, payload) = text.split_once('.').ok_or_else(invalid)?;
        let expected = key.digest(DOMAIN, &bound(request_id, customer_id, payload));
        if !bool::from(expected.as_bytes().ct_eq(digest.as_bytes())) {
            return Err(invalid());
        }
        let positions: Vec<Position> = serde_json::from_str(payload).map_err(|_| invalid())?;
        if positions.len() != services {
            // Issued before a service was added or removed: start again.
            return Err(FieldViolation::new(
                FIELD,
                "was issued for another set of services; export again without it",
            ));
        }
        Ok(Self(positions))
    }
}

fn bound(request_id: &str, customer_id: &str, payload: &str) -> String {
    format!("{request_id}\0{customer_id}\0{payload}")
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a panic is how a test fails
mod tests {
    use super::*;

    fn key() -> PseudonymKey {
        PseudonymKey::new([7; 32])
    }

    #[test]
    fn a_token_reads_back_for_its_request_only() {
        let positions = Positions(vec![
            Position::Done,
            Position::At {
                id: 1,
                page: "AbC".into(),
                count: 12,
            },
            Position::Start,
        ]);
        let token = positions.token(&key(), "req-1", "cust-1");
        assert_eq!(
            Positions::parse(&token, &key(), "req-1", "cust-1", 3).unwrap(),
            positions
        );
        assert!(!token.contains("cust-1"));
        assert!(Positions::parse(&token, &key(), "req-2", "cust-1", 3).is_err());
        assert!(Positions::parse(&token, &key(), "req-1", "cust-2", 3).is_err());
        assert!(Positions::parse(&token, &key(), "req-1", "cust-1", 4).is_err());
        assert!(
            Positions::parse(&token, &PseudonymKey::new([8; 32]), "req-1", "cust-1", 3).is_err()
        );
        let mut altered = token.into_bytes();
        let last = altered.len() - 2;
        altered[last] = if altered[last] == b'A' { b'B' } else { b'A' };
        let altered = String::from_utf8(altered).unwrap();
        assert!(Positions::parse(&altered, &key(), "req-1", "cust-1", 3).is_err());
        assert_eq!(
            Positions::parse("", &key(), "req-1", "cust-1", 2).unwrap(),
            Positions::start(2)
        );
    }
}
