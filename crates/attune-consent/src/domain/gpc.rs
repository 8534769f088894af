//! Global Privacy Control: a browser's standing "do not sell or share my data".
//!
//! The signal is a withdrawal of one purpose, `sale_or_share`, recorded like any
//! other decision so that it shows in the history and the proof. It is recorded
//! when the customer's current decision is anything but a withdrawal or denial:
//! a repeated signal then finds the withdrawal and records nothing, while a
//! signal after the customer granted again (on a banner, in a store) withdraws
//! again, as the CCPA asks of a signal that conflicts with an earlier choice.

use super::{
    Channel, CurrentDecision, CustomerId, Decision, DecisionInput, Proof, PurposeCode,
    RecordConsent, RequestId,
};

/// The purpose a GPC signal withdraws.
pub const GPC_PURPOSE: &str = "sale_or_share";

/// Who captured a GPC withdrawal, as its proof says.
pub const GPC_CAPTURED_BY: &str = "global-privacy-control";

/// Whether a signal must record a withdrawal, given the decision that counts now.
pub fn gpc_records_withdrawal(current: Option<&CurrentDecision>) -> bool {
    !current
        .is_some_and(|current| matches!(current.decision, Decision::Withdrawn | Decision::Denied))
}

/// The withdrawal a signal records, against the purpose's current notice.
pub fn gpc_withdrawal(
    customer: CustomerId,
    purpose: PurposeCode,
    notice_version: i32,
    request_id: RequestId,
) -> RecordConsent {
    RecordConsent {
        customer,
        decisions: vec![DecisionInput {
            purpose,
            decision: Decision::Withdrawn,
            notice_version,
        }],
        // Browsers send the signal; the web is where it was captured.
        channel: Channel::Web,
        proof: Proof {
            form_hash: None,
            user_agent: None,
            captured_by: Some(GPC_CAPTURED_BY.to_owned()),
        },
        decide_time: None,
        expire_time: None,
        request_id,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn current(decision: Decision) -> CurrentDecision {
        CurrentDecision {
            record_id: 1,
            decision,
            notice_version: 1,
            expire_time: None,
        }
    }

    #[test]
    fn a_signal_withdraws_unless_already_withdrawn_or_denied() {
        assert!(gpc_records_withdrawal(None));
        assert!(gpc_records_withdrawal(Some(&current(Decision::Granted))));
        assert!(!gpc_records_withdrawal(Some(&current(Decision::Withdrawn))));
        assert!(!gpc_records_withdrawal(Some(&current(Decision::Denied))));
    }

    #[test]
    fn the_gpc_purpose_is_a_valid_code() {
        assert!(PurposeCode::parse(GPC_PURPOSE).is_ok());
    }
}
