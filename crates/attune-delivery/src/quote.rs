//! Quotes: a delivery price promised by GetDeliveryOptions and held by
//! ReserveSlot until it expires. A quote is a signed token (HMAC under the
//! service's key) rather than a row, so ranking stays a read.

use attune_kit::ApiError;
use attune_kit::secrets::PseudonymKey;
use attune_kit::types::Money;
use attune_proto::delivery::v1 as pb;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

const DOMAIN: &str = "attune.delivery.quote.v1";

/// What a quote promises.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Quote {
    /// Who it was made for ("" for a visitor).
    pub customer_id: String,
    /// The delivery method (wire value).
    pub method: i32,
    /// The price's minor units.
    pub amount_minor: i64,
    /// The price's currency.
    pub currency: String,
    /// When it stops holding, microseconds since the epoch.
    pub expire_micros: i64,
}

impl Quote {
    /// The token for this quote.
    pub fn sign(&self, key: &PseudonymKey) -> String {
        let payload = URL_SAFE_NO_PAD
            .encode(serde_json::to_vec(self).expect("a quote holds only strings and numbers"));
        let signature = key.digest(DOMAIN, &payload);
        format!("{payload}.{signature}")
    }

    /// The quote a token holds, if this service signed it.
    pub fn verify(key: &PseudonymKey, token: &str) -> Result<Self, &'static str> {
        const NOT_OURS: &str = "is not a quote this service issued";
        if token.len() > 2048 {
            return Err(NOT_OURS);
        }
        let (payload, signature) = token.split_once('.').ok_or(NOT_OURS)?;
        if key.digest(DOMAIN, payload) != signature {
            return Err(NOT_OURS);
        }
        let json = URL_SAFE_NO_PAD.decode(payload).map_err(|_| NOT_OURS)?;
        serde_json::from_slice(&json).map_err(|_| NOT_OURS)
    }

    /// The price the quote holds for a reservation of `slot` by `customer_id`
    /// at `now`, with the slot's surcharge.
    pub fn price_for(
        &self,
        customer_id: &str,
        slot: &pb::DeliverySlot,
        now: DateTime<Utc>,
    ) -> Result<Money, ApiError> {
        if self.expire_micros <= attune_kit::db::micros::to_micros(now) {
            return Err(ApiError::FailedPrecondition(
                "the quote has expired".to_owned(),
            ));
        }
        if self.customer_id != customer_id || self.method != slot.method {
            return Err(ApiError::FailedPrecondition(
                "the quote is for another customer or delivery method".to_owned(),
            ));
        }
        let price = Money::parse(self.amount_minor, &self.currency).map_err(ApiError::internal)?;
        match slot
            .surcharge
            .clone()
            .map(|s| Money::from_proto("surcharge", s))
        {
            Some(Ok(surcharge)) if surcharge.currency() == price.currency() => {
                price.checked_add(surcharge).map_err(ApiError::internal)
            }
            _ => Ok(price),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_verify_only_unaltered_under_the_same_key() {
        let key = PseudonymKey::new([3; 32]);
        let quote = Quote {
            customer_id: "c-1".to_owned(),
            method: 4,
            amount_minor: 499,
            currency: "EUR".to_owned(),
            expire_micros: 1,
        };
        let token = quote.sign(&key);
        assert_eq!(Quote::verify(&key, &token), Ok(quote.clone()));
        assert!(Quote::verify(&PseudonymKey::new([4; 32]), &token).is_err());
        let forged = Quote {
            amount_minor: 1,
            ..quote
        }
        .sign(&PseudonymKey::new([4; 32]));
        assert!(Quote::verify(&key, &forged).is_err());
    }
}
