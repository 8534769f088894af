//! The customer's consent, checked once per page with the kit's cached checker,
//! and what each part needs of it.

use attune_kit::consent::{ConsentChecker, PurposeVerdict, Reason};
use attune_proto::gateway::v1 as pb;

use super::status;

/// Tailoring recommendations, offers, greetings and the store view to the
/// customer (browsing, purchases and volunteered preferences).
pub(crate) const PERSONALIZATION: &str = "personalization";
/// Service in the store that fits the customer: what gates a store associate's
/// view of the customer at all (consent's default catalogue, "Personalized store
/// visits").
pub(crate) const STORE_VISITS: &str = "store_visits";

/// Every purpose a page may need, ordered by code (the order the page reports
/// them in).
const PAGE_PURPOSES: &[&str] = &[PERSONALIZATION, STORE_VISITS];

/// The customer's answers for every purpose a page may need.
#[derive(Debug, Clone)]
pub(crate) struct Grants {
    verdicts: Vec<PurposeVerdict>,
}

impl Grants {
    /// Asks the checker once for every purpose a page may need; a visitor
    /// without an id has granted nothing.
    pub(crate) async fn check(checker: &ConsentChecker, customer_id: Option<&str>) -> Self {
        let verdicts = match customer_id {
            Some(customer_id) => checker.check(customer_id, PAGE_PURPOSES).await,
            None => Vec::new(),
        };
        Self { verdicts }
    }

    /// No checker to ask (consent is not deployed behind this gateway): every
    /// purpose unknown, so every part that needs consent is omitted.
    pub(crate) fn unavailable(customer_id: Option<&str>) -> Self {
        let verdicts = match customer_id {
            Some(_) => PAGE_PURPOSES
                .iter()
                .map(|purpose| PurposeVerdict {
                    purpose: (*purpose).to_owned(),
                    granted: false,
                    reason: Reason::Unavailable,
                    notice_version: None,
                })
                .collect(),
            None => Vec::new(),
        };
        Self { verdicts }
    }

    /// Whether `purpose` is granted now.
    pub(crate) fn granted(&self, purpose: &str) -> bool {
        self.verdicts
            .iter()
            .any(|verdict| verdict.purpose == purpose && verdict.granted)
    }

    /// `None` when every one of `purposes` is granted; otherwise the status of
    /// the part left out: CONSENT_UNAVAILABLE when the checker could not tell,
    /// NO_CONSENT naming what is missing otherwise.
    pub(crate) fn refusal(&self, service: &str, purposes: &[&str]) -> Option<pb::PartStatus> {
        let missing: Vec<&PurposeVerdict> = self
            .verdicts
            .iter()
            .filter(|verdict| purposes.contains(&verdict.purpose.as_str()) && !verdict.granted)
            .collect();
        if self.verdicts.is_empty() {
            return Some(status::omitted(service, pb::PartReason::NotApplicable));
        }
        if missing.is_empty() {
            return None;
        }
        let unknown = missing.iter().any(|verdict| {
            matches!(
                verdict.reason,
                Reason::Unavailable | Reason::FreshnessUnconfirmed
            )
        });
        if unknown {
            return Some(status::omitted(service, pb::PartReason::ConsentUnavailable));
        }
        Some(status::no_consent(
            service,
            missing
                .iter()
                .map(|verdict| verdict.purpose.clone())
                .collect(),
        ))
    }

    /// What the page reports: each purpose checked and whether it is granted.
    pub(crate) fn report(&self) -> Vec<pb::PurposeGrant> {
        self.verdicts
            .iter()
            .map(|verdict| pb::PurposeGrant {
                purpose_code: verdict.purpose.clone(),
                granted: verdict.granted,
            })
            .collect()
    }
}
