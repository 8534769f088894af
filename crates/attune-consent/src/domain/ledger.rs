//! The consent ledger: decisions as a customer made them, recorded once, never changed.

use chrono::{DateTime, Utc};
use serde::Serialize;

pub use attune_kit::types::Channel;

use super::{CustomerId, Decision, PurposeCode, RequestId};

/// How many purposes one request may decide; a consent banner has a handful.
pub const MAX_DECISIONS_PER_REQUEST: usize = 50;

/// Why an expiry is refused.
const EXPIRES_TOO_EARLY: &str = "must be after the decision time";

/// How far ahead of the server's clock a client's `decide_time` may be, for clock
/// skew. Such a time is kept as stated but takes effect on receipt
/// ([`RecordConsent::effective_time`]).
const CLOCK_SKEW: chrono::Duration = chrono::Duration::seconds(60);

/// Evidence of how a decision was captured; every part is optional.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Proof {
    pub form_hash: Option<String>,
    pub user_agent: Option<String>,
    pub captured_by: Option<String>,
}

impl Proof {
    pub const MAX_FORM_HASH: usize = 200;
    pub const MAX_USER_AGENT: usize = 512;
    pub const MAX_CAPTURED_BY: usize = 128;
}

/// One purpose's decision inside a request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DecisionInput {
    pub purpose: PurposeCode,
    pub decision: Decision,
    pub notice_version: i32,
}

/// A request to record one customer's decisions, validated.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RecordConsent {
    pub customer: CustomerId,
    pub decisions: Vec<DecisionInput>,
    pub channel: Channel,
    pub proof: Proof,
    /// When the customer decided, if the client says so; otherwise the receipt time.
    pub decide_time: Option<DateTime<Utc>>,
    pub expire_time: Option<DateTime<Utc>>,
    #[serde(skip)]
    pub request_id: RequestId,
}

impl RecordConsent {
    /// Checks the rules that span fields; each problem names the field it is about.
    /// The rules that depend on the clock are [`check_times`](Self::check_times).
    pub fn check(&self) -> Vec<(String, String)> {
        let mut problems = Vec::new();
        if self.decisions.is_empty() {
            problems.push(("decisions".into(), "must hold at least one decision".into()));
        }
        if self.decisions.len() > MAX_DECISIONS_PER_REQUEST {
            problems.push((
                "decisions".into(),
                format!("must hold at most {MAX_DECISIONS_PER_REQUEST} decisions"),
            ));
        }
        for (index, input) in self.decisions.iter().enumerate() {
            let earlier = &self.decisions[..index];
            if earlier.iter().any(|other| other.purpose == input.purpose) {
                problems.push((
                    format!("decisions[{index}].purpose_code"),
                    format!("decides {} twice in one request", input.purpose),
                ));
            }
        }
        if let (Some(decide_time), Some(expire_time)) = (self.decide_time, self.expire_time)
            && expire_time <= decide_time
        {
            problems.push(("expire_time".into(), EXPIRES_TOO_EARLY.into()));
        }
        problems
    }

    /// When the decisions take effect, given when the server `received` them: the
    /// stated decision time (receipt if none), but never later than receipt. A
    /// time ahead of the server's clock (allowed for clock skew) would otherwise
    /// let a grant outrank a withdrawal the customer made after it, so that
    /// CheckConsent kept answering "granted" for up to the skew.
    pub fn effective_time(&self, received: DateTime<Utc>) -> DateTime<Utc> {
        self.decide_time
            .map_or(received, |stated| stated.min(received))
    }

    /// Checks the rules that depend on when the request arrives: a decision may
    /// not lie in the future, and without a decision time (it is then the time of
    /// receipt) an expiry must lie ahead. Only a first request is held to them: a
    /// retry of one already recorded gets the original answer, even once the
    /// grant it recorded has expired.
    pub fn check_times(&self, now: DateTime<Utc>) -> Vec<(String, String)> {
        let mut problems = Vec::new();
        if let Some(decide_time) = self.decide_time
            && decide_time > now + CLOCK_SKEW
        {
            problems.push(("decide_time".into(), "must not lie in the future".into()));
        }
        if let (None, Some(expire_time)) = (self.decide_time, self.expire_time)
            && expire_time <= now
        {
            problems.push(("expire_time".into(), EXPIRES_TOO_EARLY.into()));
        }
        problems
    }
}

/// One decision as the ledger holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsentRecord {
    pub record_id: i64,
    pub customer: CustomerId,
    pub purpose: PurposeCode,
    pub decision: Decision,
    pub notice_version: i32,
    pub channel: Channel,
    pub proof: Proof,
    pub decide_time: DateTime<Utc>,
    pub expire_time: Option<DateTime<Utc>>,
    pub record_time: DateTime<Utc>,
    pub request_id: String,
}

impl ConsentRecord {
    /// When the decision took effect: its decision time, but never after the
    /// server received it (see [`RecordConsent::effective_time`]). Records are
    /// ordered by it, then by precedence, then by record id.
    pub fn effective_time(&self) -> DateTime<Utc> {
        self.decide_time.min(self.record_time)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use attune_kit::secrets::PseudonymKey;

    fn request(decisions: &[(&str, Decision)]) -> RecordConsent {
        RecordConsent {
            customer: CustomerId::parse("c-1").unwrap(),
            decisions: decisions
                .iter()
                .map(|(code, decision)| DecisionInput {
                    purpose: PurposeCode::parse(code).unwrap(),
                    decision: *decision,
                    notice_version: 1,
                })
                .collect(),
            channel: Channel::Web,
            proof: Proof::default(),
            decide_time: None,
            expire_time: None,
            request_id: RequestId::parse("r-1").unwrap(),
        }
    }

    #[test]
    fn the_same_purpose_twice_is_rejected() {
        let cmd = request(&[
            ("analytics", Decision::Granted),
            ("analytics", Decision::Denied),
        ]);
        let problems = cmd.check();
        assert_eq!(problems[0].0, "decisions[1].purpose_code");
    }

    #[test]
    fn expiry_must_follow_the_decision() {
        let now = Utc::now();
        let mut cmd = request(&[("analytics", Decision::Granted)]);
        // Without a decision time, the expiry is measured against the receipt.
        cmd.expire_time = Some(now - chrono::Duration::seconds(1));
        assert!(cmd.check().is_empty());
        assert_eq!(cmd.check_times(now)[0].0, "expire_time");
        // With one, against it, whenever the request arrives.
        cmd.decide_time = Some(now - chrono::Duration::seconds(1));
        assert_eq!(cmd.check()[0].0, "expire_time");
        assert!(cmd.check_times(now).is_empty());
    }

    #[test]
    fn a_decision_may_not_lie_in_the_future() {
        let now = Utc::now();
        let mut cmd = request(&[("analytics", Decision::Granted)]);
        cmd.decide_time = Some(now + chrono::Duration::minutes(5));
        assert!(cmd.check().is_empty());
        assert_eq!(cmd.check_times(now)[0].0, "decide_time");
        // Clock skew of up to a minute is tolerated.
        cmd.decide_time = Some(now + chrono::Duration::seconds(30));
        assert!(cmd.check_times(now).is_empty());
    }

    #[test]
    fn a_decision_takes_effect_no_later_than_its_receipt() {
        let now = Utc::now();
        let mut cmd = request(&[("analytics", Decision::Granted)]);
        assert_eq!(cmd.effective_time(now), now);
        let past = now - chrono::Duration::hours(1);
        cmd.decide_time = Some(past);
        assert_eq!(cmd.effective_time(now), past);
        // Ahead within the skew: accepted, kept as stated, effective on receipt.
        cmd.decide_time = Some(now + chrono::Duration::seconds(30));
        assert!(cmd.check_times(now).is_empty());
        assert_eq!(cmd.effective_time(now), now);
    }

    #[test]
    fn fingerprint_ignores_the_request_id_but_not_the_content() {
        let a = request(&[("analytics", Decision::Granted)]);
        let mut b = a.clone();
        b.request_id = RequestId::parse("r-2").unwrap();
        let key = PseudonymKey::new([3; 32]);
        assert_eq!(key.fingerprint(&a), key.fingerprint(&b));
        b.decisions[0].decision = Decision::Denied;
        assert_ne!(key.fingerprint(&a), key.fingerprint(&b));
    }
}
