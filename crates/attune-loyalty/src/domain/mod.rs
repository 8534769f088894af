//! Loyalty's rules, without tonic or sea-orm: what a purchase earns, which tier a
//! customer is in, which buy-again items are due, when a message may be sent.
//! Each is a pure function of its inputs, tested here.

pub mod earning;
pub mod entry;
pub mod offers;
pub mod tiers;
