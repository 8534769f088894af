//! Consent as every other service sees it: the rule that turns decisions into a
//! status ([`rule`]), shared with the consent service itself.

pub mod rule;

pub use rule::{ConsentStatus, CurrentDecision, Decision};
