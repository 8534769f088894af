//! Money: an integer of minor units in an ISO 4217 currency, never a float.

use std::fmt;

use attune_proto::common::v1 as pb;
use serde::Serialize;

use crate::error::FieldViolation;

/// An active ISO 4217 currency, with the number of digits of its minor unit
/// (2 for EUR, 0 for JPY, 3 for KWD).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Currency {
    code: &'static str,
    minor_unit_digits: u8,
}

impl Currency {
    /// Parses an alphabetic currency code, upper case as ISO 4217 writes it.
    pub fn parse(raw: &str) -> Result<Self, String> {
        if raw.is_empty() {
            return Err("must not be empty".into());
        }
        if raw.len() != 3 || !raw.bytes().all(|b| b.is_ascii_uppercase()) {
            return Err("must be three upper-case letters (ISO 4217, for example EUR)".into());
        }
        CURRENCIES
            .binary_search_by_key(&raw, |&(code, _)| code)
            .map(|index| {
                let (code, minor_unit_digits) = CURRENCIES[index];
                Self {
                    code,
                    minor_unit_digits,
                }
            })
            .map_err(|_| format!("{raw} is not an active ISO 4217 currency"))
    }

    /// The number of decimal digits of the minor unit: an amount of
    /// `10^digits` minor units is one major unit.
    pub fn minor_unit_digits(self) -> u8 {
        self.minor_unit_digits
    }
}

impl AsRef<str> for Currency {
    fn as_ref(&self) -> &str {
        self.code
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code)
    }
}

impl Serialize for Currency {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.code)
    }
}

/// An amount of money: integer minor units of one currency (1999 EUR cents is
/// 19.99 EUR). Whether a negative amount makes sense is the field's rule, so
/// `Money` allows any `i64`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub struct Money {
    amount_minor: i64,
    currency: Currency,
}

/// Why two amounts cannot be combined.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum MoneyError {
    /// The amounts are in different currencies; Attune never converts.
    #[error("cannot combine {0} with {1}")]
    CurrencyMismatch(Currency, Currency),
    /// The result does not fit in 64 bits of minor units.
    #[error("the amount is out of range")]
    Overflow,
}

impl Money {
    /// An amount in a currency already parsed.
    pub fn new(amount_minor: i64, currency: Currency) -> Self {
        Self {
            amount_minor,
            currency,
        }
    }

    /// Parses an amount from its minor units and currency code.
    pub fn parse(amount_minor: i64, currency_code: &str) -> Result<Self, String> {
        Currency::parse(currency_code).map(|currency| Self::new(amount_minor, currency))
    }

    /// Reads a wire `Money` given as `field`; a bad currency is a violation of
    /// `<field>.currency_code`.
    pub fn from_proto(field: &str, money: pb::Money) -> Result<Self, FieldViolation> {
        let pb::Money {
            amount_minor,
            currency_code,
        } = money;
        Self::parse(amount_minor, &currency_code)
            .map_err(|problem| FieldViolation::new(format!("{field}.currency_code"), problem))
    }

    /// Reads a wire `Money` a request must carry as `field`: absent is a
    /// violation of `field`, a bad currency of `<field>.currency_code`.
    pub fn from_proto_required(
        field: &str,
        money: Option<pb::Money>,
    ) -> Result<Self, FieldViolation> {
        money.map_or_else(
            || Err(FieldViolation::new(field, "must be set")),
            |money| Self::from_proto(field, money),
        )
    }

    /// The wire `Money`.
    pub fn to_proto(self) -> pb::Money {
        pb::Money {
            amount_minor: self.amount_minor,
            currency_code: self.currency.code.to_owned(),
        }
    }

    /// The amount in minor units.
    pub fn amount_minor(self) -> i64 {
        self.amount_minor
    }

    /// The currency.
    pub fn currency(self) -> Currency {
        self.currency
    }

    /// The sum of two amounts in one currency.
    pub fn checked_add(self, other: Self) -> Result<Self, MoneyError> {
        self.combine(other, i64::checked_add)
    }

    /// The difference of two amounts in one currency.
    pub fn checked_sub(self, other: Self) -> Result<Self, MoneyError> {
        self.combine(other, i64::checked_sub)
    }

    fn combine(self, other: Self, op: fn(i64, i64) -> Option<i64>) -> Result<Self, MoneyError> {
        if self.currency != other.currency {
            return Err(MoneyError::CurrencyMismatch(self.currency, other.currency));
        }
        op(self.amount_minor, other.amount_minor)
            .map(|amount| Self::new(amount, self.currency))
            .ok_or(MoneyError::Overflow)
    }
}

/// Decimal notation in major units: `19.99 EUR`, `-0.05 EUR`, `1999 JPY`.
impl fmt::Display for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sign = if self.amount_minor < 0 { "-" } else { "" };
        let magnitude = self.amount_minor.unsigned_abs();
        let digits = u32::from(self.currency.minor_unit_digits);
        if digits == 0 {
            return write!(f, "{sign}{magnitude} {}", self.currency);
        }
        let scale = 10u64.pow(digits);
        let width = usize::from(self.currency.minor_unit_digits);
        write!(
            f,
            "{sign}{}.{:0width$} {}",
            magnitude / scale,
            magnitude % scale,
            self.currency
        )
    }
}

/// The active ISO 4217 currencies (list one, without funds that have no minor
/// unit, precious metals and testing codes), sorted by code for binary search,
/// each with the digits of its minor unit. A currency withdrawn recently stays
/// while old orders may still carry it.
const CURRENCIES: &[(&str, u8)] = &[
    ("AED", 2),
    ("AFN", 2),
    ("ALL", 2),
    ("AMD", 2),
    ("ANG", 2),
    ("AOA", 2),
    ("ARS", 2),
    ("AUD", 2),
    ("AWG", 2),
    ("AZN", 2),
    ("BAM", 2),
    ("BBD", 2),
    ("BDT", 2),
    ("BGN", 2),
    ("BHD", 3),
    ("BIF", 0),
    ("BMD", 2),
    ("BND", 2),
    ("BOB", 2),
    ("BOV", 2),
    ("BRL", 2),
    ("BSD", 2),
    ("BTN", 2),
    ("BWP", 2),
    ("BYN", 2),
    ("BZD", 2),
    ("CAD", 2),
    ("CDF", 2),
    ("CHE", 2),
    ("CHF", 2),
    ("CHW", 2),
    ("CLF", 4),
    ("CLP", 0),
    ("CNY", 2),
    ("COP", 2),
    ("COU", 2),
    ("CRC", 2),
    ("CUP", 2),
    ("CVE", 2),
    ("CZK", 2),
    ("DJF", 0),
    ("DKK", 2),
    ("DOP", 2),
    ("DZD", 2),
    ("EGP", 2),
    ("ERN", 2),
    ("ETB", 2),
    ("EUR", 2),
    ("FJD", 2),
    ("FKP", 2),
    ("GBP", 2),
    ("GEL", 2),
    ("GHS", 2),
    ("GIP", 2),
    ("GMD", 2),
    ("GNF", 0),
    ("GTQ", 2),
    ("GYD", 2),
    ("HKD", 2),
    ("HNL", 2),
    ("HTG", 2),
    ("HUF", 2),
    ("IDR", 2),
    ("ILS", 2),
    ("INR", 2),
    ("IQD", 3),
    ("IRR", 2),
    ("ISK", 0),
    ("JMD", 2),
    ("JOD", 3),
    ("JPY", 0),
    ("KES", 2),
    ("KGS", 2),
    ("KHR", 2),
    ("KMF", 0),
    ("KPW", 2),
    ("KRW", 0),
    ("KWD", 3),
    ("KYD", 2),
    ("KZT", 2),
    ("LAK", 2),
    ("LBP", 2),
    ("LKR", 2),
    ("LRD", 2),
    ("LSL", 2),
    ("LYD", 3),
    ("MAD", 2),
    ("MDL", 2),
    ("MGA", 2),
    ("MKD", 2),
    ("MMK", 2),
    ("MNT", 2),
    ("MOP", 2),
    ("MRU", 2),
    ("MUR", 2),
    ("MVR", 2),
    ("MWK", 2),
    ("MXN", 2),
    ("MXV", 2),
    ("MYR", 2),
    ("MZN", 2),
    ("NAD", 2),
    ("NGN", 2),
    ("NIO", 2),
    ("NOK", 2),
    ("NPR", 2),
    ("NZD", 2),
    ("OMR", 3),
    ("PAB", 2),
    ("PEN", 2),
    ("PGK", 2),
    ("PHP", 2),
    ("PKR", 2),
    ("PLN", 2),
    ("PYG", 0),
    ("QAR", 2),
    ("RON", 2),
    ("RSD", 2),
    ("RUB", 2),
    ("RWF", 0),
    ("SAR", 2),
    ("SBD", 2),
    ("SCR", 2),
    ("SDG", 2),
    ("SEK", 2),
    ("SGD", 2),
    ("SHP", 2),
    ("SLE", 2),
    ("SOS", 2),
    ("SRD", 2),
    ("SSP", 2),
    ("STN", 2),
    ("SVC", 2),
    ("SYP", 2),
    ("SZL", 2),
    ("THB", 2),
    ("TJS", 2),
    ("TMT", 2),
    ("TND", 3),
    ("TOP", 2),
    ("TRY", 2),
    ("TTD", 2),
    ("TWD", 2),
    ("TZS", 2),
    ("UAH", 2),
    ("UGX", 0),
    ("USD", 2),
    ("USN", 2),
    ("UYI", 0),
    ("UYU", 2),
    ("UYW", 4),
    ("UZS", 2),
    ("VED", 2),
    ("VES", 2),
    ("VND", 0),
    ("VUV", 0),
    ("WST", 2),
    ("XAF", 0),
    ("XCD", 2),
    ("XCG", 2),
    ("XOF", 0),
    ("XPF", 0),
    ("YER", 2),
    ("ZAR", 2),
    ("ZMW", 2),
    ("ZWG", 2),
];

#[cfg(test)]
mod tests {
    use super::*;

    fn eur(amount_minor: i64) -> Money {
        Money::parse(amount_minor, "EUR").expect("EUR is a currency")
    }

    #[test]
    fn the_currency_table_is_sorted_and_unique_for_binary_search() {
        assert!(CURRENCIES.windows(2).all(|pair| pair[0].0 < pair[1].0));
        assert!(CURRENCIES.iter().all(|&(code, digits)| {
            code.len() == 3 && code.bytes().all(|b| b.is_ascii_uppercase()) && digits <= 4
        }));
    }

    #[test]
    fn currencies_know_their_minor_unit() {
        let digits = |code| Currency::parse(code).map(Currency::minor_unit_digits);
        assert_eq!(digits("EUR"), Ok(2));
        assert_eq!(digits("JPY"), Ok(0));
        assert_eq!(digits("KWD"), Ok(3));
        assert_eq!(digits("CLF"), Ok(4));
        assert_eq!(digits("AED"), Ok(2));
        assert_eq!(digits("ZWG"), Ok(2));
    }

    #[test]
    fn currency_rejects_empty() {
        assert_eq!(Currency::parse(""), Err("must not be empty".into()));
    }

    #[test]
    fn currency_rejects_lower_case_and_wrong_length() {
        for raw in ["eur", "Eur", "EU", "EURO", "E1R", "€"] {
            assert_eq!(
                Currency::parse(raw),
                Err("must be three upper-case letters (ISO 4217, for example EUR)".into()),
                "{raw:?}"
            );
        }
    }

    #[test]
    fn currency_rejects_codes_iso_4217_does_not_define_as_active() {
        for raw in ["ABC", "XTS", "XXX", "XAU", "DEM", "HRK"] {
            assert_eq!(
                Currency::parse(raw),
                Err(format!("{raw} is not an active ISO 4217 currency")),
            );
        }
    }

    #[test]
    fn money_round_trips_through_the_wire() {
        let wire = pb::Money {
            amount_minor: -1999,
            currency_code: "SEK".into(),
        };
        let money = Money::from_proto("amount", wire.clone()).expect("valid money");
        assert_eq!(money.amount_minor(), -1999);
        assert_eq!(money.currency().as_ref(), "SEK");
        assert_eq!(money.to_proto(), wire);
    }

    #[test]
    fn wire_money_with_a_bad_currency_names_the_nested_field() {
        let wire = pb::Money {
            amount_minor: 100,
            currency_code: String::new(),
        };
        assert_eq!(
            Money::from_proto("lines[2].amount", wire),
            Err(FieldViolation::new(
                "lines[2].amount.currency_code",
                "must not be empty"
            ))
        );
    }

    #[test]
    fn absent_required_money_names_the_field() {
        assert_eq!(
            Money::from_proto_required("amount", None),
            Err(FieldViolation::new("amount", "must be set"))
        );
        let wire = eur(5).to_proto();
        assert_eq!(Money::from_proto_required("amount", Some(wire)), Ok(eur(5)));
    }

    #[test]
    fn amounts_add_and_subtract_in_one_currency() {
        assert_eq!(eur(1999).checked_add(eur(1)), Ok(eur(2000)));
        assert_eq!(eur(1).checked_sub(eur(1999)), Ok(eur(-1998)));
    }

    #[test]
    fn amounts_in_different_currencies_do_not_combine() {
        let usd = Money::parse(5, "USD").expect("USD is a currency");
        assert_eq!(
            eur(5).checked_add(usd),
            Err(MoneyError::CurrencyMismatch(
                eur(5).currency(),
                usd.currency()
            ))
        );
        assert!(eur(5).checked_sub(usd).is_err());
    }

    #[test]
    fn overflow_is_an_error_not_a_wrap() {
        assert_eq!(eur(i64::MAX).checked_add(eur(1)), Err(MoneyError::Overflow));
        assert_eq!(eur(i64::MIN).checked_sub(eur(1)), Err(MoneyError::Overflow));
    }

    #[test]
    fn display_uses_the_minor_unit_of_the_currency() {
        let show = |amount, code| Money::parse(amount, code).expect("valid").to_string();
        assert_eq!(show(1999, "EUR"), "19.99 EUR");
        assert_eq!(show(-5, "EUR"), "-0.05 EUR");
        assert_eq!(show(1999, "JPY"), "1999 JPY");
        assert_eq!(show(1999, "KWD"), "1.999 KWD");
        assert_eq!(show(i64::MIN, "EUR"), "-92233720368547758.08 EUR");
    }
}
