//! Consent as every other service sees it: the rule that turns decisions into a
//! status ([`rule`]), shared with the consent service itself, and the cached
//! [`ConsentChecker`] services ask before they use personal data ([`checker`]).
//!
//! The checker's parts: `cache` holds customers (lock-free reads), `journal`
//! reconciles a miss's load with the change stream, `follow` keeps the cache
//! current from `WatchConsentChanges`, `freshness` decides when it may answer at
//! all, `wire` reads consent's messages, [`metrics`] counts.

mod cache;
mod changes;
pub mod checker;
mod follow;
mod freshness;
mod journal;
pub mod metrics;
pub mod rule;
pub mod source;
pub mod wire;

pub use changes::ConsentChangeSource;
pub use checker::{ConsentChecker, PurposeVerdict, Reason};
pub use metrics::CheckerMetrics;
pub use rule::{ConsentStatus, CurrentDecision, Decision};
pub use source::{ChangeStream, ConsentSource, CustomerState, GrpcConsentSource, LoadError};
