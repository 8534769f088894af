//! Who is calling, once authenticated.

use std::collections::BTreeSet;

use attune_proto::gateway::v1::CallerKind;

use super::table::scope::ADMIN;
use crate::access_log::Caller;

/// The caller of one request, as the policy sees it. Put in the request's
/// extensions, so that the gateway's own services can read it (a staff
/// device's store, for the data-access log).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    /// No authentication is configured (development mode): everything is allowed.
    Development,
    /// A customer (or an anonymous visitor's profile) signed in: a token whose
    /// `sub` is the customer id. Reaches only its own data.
    Customer {
        /// The customer id.
        id: String,
        /// What the token grants.
        scopes: Scopes,
    },
    /// A store associate's device: a token with a `store_id` claim.
    Staff {
        /// The device or associate (`sub`).
        subject: String,
        /// The store the device belongs to.
        store_id: String,
        /// What the token grants.
        scopes: Scopes,
    },
    /// A back-office service or operator: an API key, or a token with
    /// `"attune_principal": "service"`.
    Service {
        /// The key's configured name, or the token's `sub`.
        name: String,
        /// What the key or token grants.
        scopes: Scopes,
    },
}

impl Principal {
    /// What the rate limit per caller counts under: one bucket per caller.
    pub(crate) fn rate_key(&self) -> Option<String> {
        match self {
            Self::Development => None,
            Self::Customer { id, .. } => Some(format!("customer:{id}")),
            Self::Staff { subject, .. } => Some(format!("staff:{subject}")),
            Self::Service { name, .. } => Some(format!("service:{name}")),
        }
    }

    /// The caller as the data-access log keeps it: never a customer's id.
    pub(crate) fn as_caller(&self) -> Caller {
        let (kind, name, store_id) = match self {
            Self::Development => return Caller::development(),
            Self::Customer { .. } => (CallerKind::Customer, "customer", ""),
            Self::Staff {
                subject, store_id, ..
            } => (CallerKind::StoreStaff, subject.as_str(), store_id.as_str()),
            Self::Service { name, .. } => (CallerKind::Service, name.as_str(), ""),
        };
        Caller {
            kind,
            name: name.to_owned(),
            store_id: store_id.to_owned(),
        }
    }

    /// Whether the principal holds any of `needed` (`admin` counts as every
    /// scope except for a customer).
    pub(crate) fn holds_any(&self, needed: &[&str]) -> bool {
        match self {
            Self::Development => true,
            Self::Customer { scopes, .. } => needed.iter().any(|scope| scopes.contains(scope)),
            Self::Staff { scopes, .. } | Self::Service { scopes, .. } => {
                scopes.contains(ADMIN) || needed.iter().any(|scope| scopes.contains(scope))
            }
        }
    }
}

/// A set of granted scopes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Scopes(BTreeSet<String>);

impl Scopes {
    /// Whether `scope` is granted.
    pub fn contains(&self, scope: &str) -> bool {
        self.0.contains(scope)
    }
}

impl<S: Into<String>> FromIterator<S> for Scopes {
    fn from_iter<I: IntoIterator<Item = S>>(iter: I) -> Self {
        Self(iter.into_iter().map(Into::into).collect())
    }
}
