//! Consent's domain: the values a decision is made of and the rules that turn a
//! ledger of decisions into a status. Knows neither tonic nor sea-orm.

mod audit;
mod catalogue;
mod change;
mod expiry;
mod gpc;
mod ids;
mod ledger;
mod purpose;

pub use attune_kit::consent::{ConsentStatus, CurrentDecision, Decision};
pub use audit::{
    AuditEntry, AuditEvent, AuditKind, AuditProblem, AuditProblemKind, AuditVerification,
    ChainVerifier, GENESIS_HASH,
};
pub use catalogue::{added_purposes, default_catalogue};
pub use change::{Change, ChangeKind};
pub use expiry::{
    ExpiringGrant, ExpiringQuery, ExpiryCursor, ExpiryWindow, MAX_EXPIRY_WINDOW_DAYS,
};
pub use gpc::{GPC_PURPOSE, gpc_records_withdrawal, gpc_withdrawal};
pub use ids::{CustomerId, PurposeCode, RequestId};
pub use ledger::{
    Channel, ConsentRecord, DecisionInput, MAX_DECISIONS_PER_REQUEST, Proof, RecordConsent,
};
pub use purpose::{DataCategory, LegalBasis, NewPurpose, Purpose, PurposeNotice};
