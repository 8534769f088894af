//! Consent's domain: the values a decision is made of and the rules that turn a
//! ledger of decisions into a status. Knows neither tonic nor sea-orm.

mod catalogue;
mod ids;
mod ledger;
mod pseudonym;
mod purpose;

pub use attune_kit::consent::{ConsentStatus, CurrentDecision, Decision};
pub use catalogue::default_catalogue;
pub use ids::{CustomerId, PurposeCode, RequestId};
pub use ledger::{
    Channel, ConsentRecord, DecisionInput, MAX_DECISIONS_PER_REQUEST, Proof, RecordConsent,
};
pub use pseudonym::PseudonymKey;
pub use purpose::{DataCategory, LegalBasis, NewPurpose, Purpose, PurposeNotice};
