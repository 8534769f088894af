//! Consent's domain: the values a decision is made of and the rules that turn a
//! ledger of decisions into a status. Knows neither tonic nor sea-orm.

mod catalogue;
mod fingerprint;
mod ids;
mod ledger;
mod purpose;
mod status;

pub use catalogue::default_catalogue;
pub use fingerprint::fingerprint;
pub use ids::{CustomerId, PurposeCode, RequestId};
pub use ledger::{
    Channel, ConsentRecord, Decision, DecisionInput, MAX_DECISIONS_PER_REQUEST, Proof,
    RecordConsent,
};
pub use purpose::{DataCategory, LegalBasis, NewPurpose, Purpose, PurposeNotice};
pub use status::{ConsentStatus, CurrentDecision};
