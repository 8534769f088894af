//! The values every service speaks of, parsed once at the edge, with their wire
//! conversions in one place.
//!
//! - [`CustomerId`], [`RequestId`]: ids, each with `parse` as its only constructor;
//!   [`text_id!`](crate::text_id) declares a service's own ids the same way.
//! - [`Channel`], [`DataCategory`], [`DeliveryMethod`], [`PaymentMethod`],
//!   [`DayOfWeek`]: the enums of `attune.common.v1`, exhaustive in the domain.
//! - [`Money`] and [`Currency`]: integer minor units of an ISO 4217 currency.
//! - [`time`]: UTC times to and from `google.protobuf.Timestamp`.
//!
//! A service's `domain/` uses these types without knowing the wire; its
//! `convert.rs` calls `from_proto` / `to_proto` here, so every service rejects
//! the same bad values with the same words. Enum values are stored by their
//! stable names (`as_str`, `from_stored`), never by wire number.

/// Declares a domain enum that mirrors one `attune.common.v1` enum variant for
/// variant, with its stable stored names and its wire conversions. The match
/// from the wire is exhaustive, so a value added to the contract does not
/// compile until the domain decides what it means.
macro_rules! wire_enum {
    (
        $(#[$meta:meta])*
        pub enum $name:ident mirrors $wire:ident, a $what:literal {
            $( $(#[$variant_meta:meta])* $variant:ident => $stored:literal, )+
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
        pub enum $name {
            $( $(#[$variant_meta])* $variant, )+
        }

        impl $name {
            /// Every value, in wire order.
            pub const ALL: &'static [Self] = &[$(Self::$variant,)+];

            /// The stable name stored in databases and shown in exports.
            pub fn as_str(self) -> &'static str {
                match self {
                    $( Self::$variant => $stored, )+
                }
            }

            /// Reads a stored name back; `None` for a name no version wrote.
            pub fn from_stored(name: &str) -> Option<Self> {
                Self::ALL.iter().copied().find(|value| value.as_str() == name)
            }

            /// Parses a required wire value: the `_UNSPECIFIED` zero and numbers
            /// this build does not know are rejected, saying why.
            pub fn from_proto(raw: i32) -> Result<Self, String> {
                Self::from_proto_optional(raw)?.ok_or_else(|| "must be set".to_owned())
            }

            /// Parses a wire value where the `_UNSPECIFIED` zero means "not
            /// given" (`None`); numbers this build does not know are rejected.
            pub fn from_proto_optional(raw: i32) -> Result<Option<Self>, String> {
                use attune_proto::common::v1::$wire as Wire;
                match Wire::try_from(raw) {
                    Ok(Wire::Unspecified) => Ok(None),
                    $( Ok(Wire::$variant) => Ok(Some(Self::$variant)), )+
                    Err(_) => Err(format!("{raw} is not a known {}", $what)),
                }
            }

            /// The wire value.
            pub fn to_proto(self) -> attune_proto::common::v1::$wire {
                use attune_proto::common::v1::$wire as Wire;
                match self {
                    $( Self::$variant => Wire::$variant, )+
                }
            }
        }

        impl From<$name> for i32 {
            fn from(value: $name) -> i32 {
                value.to_proto().into()
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

mod category;
mod channel;
mod day;
mod delivery;
mod ids;
mod money;
mod payment;
pub mod time;

pub use category::DataCategory;
pub use channel::Channel;
pub use day::DayOfWeek;
pub use delivery::DeliveryMethod;
pub use ids::{CustomerId, RequestId, printable_ascii, snake_case};
pub use money::{Currency, Money, MoneyError};
pub use payment::PaymentMethod;

/// For [`text_id!`](crate::text_id): services need not depend on serde to use it.
#[doc(hidden)]
pub use serde as __serde;

#[cfg(test)]
mod tests {
    //! The macro's behaviour, once, on one of the enums it declares.
    use super::Channel;
    use attune_proto::common::v1 as pb;

    #[test]
    fn every_value_round_trips_through_the_wire_and_the_store() {
        for &channel in Channel::ALL {
            assert_eq!(Channel::from_proto(channel.into()), Ok(channel));
            assert_eq!(Channel::from_stored(channel.as_str()), Some(channel));
        }
    }

    #[test]
    fn a_required_value_rejects_unspecified() {
        assert_eq!(
            Channel::from_proto(pb::Channel::Unspecified.into()),
            Err("must be set".to_owned())
        );
    }

    #[test]
    fn an_unknown_number_is_rejected_naming_it() {
        assert_eq!(
            Channel::from_proto(99),
            Err("99 is not a known channel".to_owned())
        );
        assert_eq!(
            Channel::from_proto_optional(-1),
            Err("-1 is not a known channel".to_owned())
        );
    }

    #[test]
    fn an_optional_value_reads_unspecified_as_not_given() {
        assert_eq!(Channel::from_proto_optional(0), Ok(None));
        assert_eq!(
            Channel::from_proto_optional(pb::Channel::Store.into()),
            Ok(Some(Channel::Store))
        );
    }

    #[test]
    fn an_unknown_stored_name_reads_as_none() {
        assert_eq!(Channel::from_stored("Web"), None);
        assert_eq!(Channel::from_stored(""), None);
    }
}
