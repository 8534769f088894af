//! Consent at use: whether an answer may use the customer's history, and what
//! of it. Without the `personalization` purpose nothing of the customer is read
//! (no session, no index in the models); the answer says why.

use std::collections::BTreeSet;
use std::sync::Arc;

use attune_kit::ApiError;
use attune_kit::consent::checker::Reason as ConsentReason;
use attune_proto::common::v1 as common_pb;

use crate::app::Recommendation;
use crate::domain::Session;
use crate::model::UserIx;
use crate::served::Snapshot;
use crate::tastes::Tastes;

/// The purpose an answer needs to use a customer's history.
pub const PURPOSE: &str = "personalization";

/// What an answer may use of the customer.
pub struct Personal {
    pub session: Arc<Session>,
    /// The customer's index in the served models, unless unknown or erased.
    pub user: Option<UserIx>,
    /// For a customer the models do not know: their tastes from profile (what
    /// they told us, what their events show), when profile could tell.
    pub tastes: Option<Arc<Tastes>>,
}

/// The personalization decision of one answer.
pub struct Decision {
    pub personal: Option<Personal>,
    pub not_personalized: common_pb::NonPersonalizedReason,
}

impl Decision {
    fn without(reason: common_pb::NonPersonalizedReason) -> Self {
        Self {
            personal: None,
            not_personalized: reason,
        }
    }

    /// The decision when an experiment's holdout serves the answer.
    pub fn holdout() -> Self {
        Self::without(common_pb::NonPersonalizedReason::Holdout)
    }

    /// The answer's `Personalization`, with the data categories its items used.
    pub fn personalization(&self, used: &BTreeSet<i32>) -> common_pb::Personalization {
        match &self.personal {
            Some(_) => common_pb::Personalization {
                personalized: true,
                non_personalized_reason: common_pb::NonPersonalizedReason::Unspecified.into(),
                data_categories: used.iter().copied().collect(),
                purpose_codes: vec![PURPOSE.to_owned()],
            },
            None => common_pb::Personalization {
                personalized: false,
                non_personalized_reason: self.not_personalized.into(),
                data_categories: Vec::new(),
                purpose_codes: Vec::new(),
            },
        }
    }
}

/// Decides for `customer_id` (empty for a visitor without a profile): consent
/// first, and only when granted the session and the models' index.
pub async fn decide(
    app: &Recommendation,
    customer_id: Option<&str>,
    snapshot: Option<&Snapshot>,
) -> Result<Decision, ApiError> {
    use common_pb::NonPersonalizedReason as Why;
    let Some(customer_id) = customer_id else {
        return Ok(Decision::without(Why::NoCustomer));
    };
    let answer = app
        .consent
        .answers(customer_id, &[PURPOSE])
        .await
        .into_iter()
        .next();
    match answer {
        Some(answer) if answer.granted => {}
        Some(answer) => {
            return Ok(Decision::without(match answer.reason {
                ConsentReason::Status(_) => Why::NoConsent,
                ConsentReason::FreshnessUnconfirmed | ConsentReason::Unavailable => {
                    Why::ConsentUnavailable
                }
            }));
        }
        None => return Ok(Decision::without(Why::ConsentUnavailable)),
    }
    let session = app.sessions.get(&app.db, customer_id).await?;
    let user = snapshot.and_then(|snapshot| app.served.user(snapshot, customer_id));
    // The models know nothing of this customer yet: profile may (a profile
    // down or late leaves this `None`, and the answer goes without it).
    let tastes = match user {
        Some(_) => None,
        None => app.tastes.of(customer_id).await.filter(|t| !t.is_empty()),
    };
    if session.is_empty() && user.is_none() && tastes.is_none() {
        return Ok(Decision::without(Why::UnknownCustomer));
    }
    Ok(Decision {
        personal: Some(Personal {
            session,
            user,
            tastes,
        }),
        not_personalized: Why::Unspecified,
    })
}
