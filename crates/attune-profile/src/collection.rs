//! Consent at collection: may this customer's data of this category be stored?
//!
//! A value is stored only while the customer has granted a purpose of consent's
//! catalogue whose data categories include the value's category. The catalogue
//! (which purposes cover which category) is read from consent and re-read every
//! `profile.catalogue_refresh`; the customer's decisions come from the kit's
//! cached [`ConsentChecker`], kept fresh by consent's change stream, so a
//! withdrawal stops collection within its freshness bound (one second).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use attune_kit::ApiError;
use attune_kit::consent::{ConsentChecker, Reason};
use attune_kit::peer::Peer;
use attune_kit::telemetry::TraceContextInterceptor;
use attune_kit::types::DataCategory;
use attune_proto::consent::v1 as consent_pb;
use attune_proto::consent::v1::consent_service_client::ConsentServiceClient;
use attune_proto::profile::v1 as pb;
use tokio_util::sync::CancellationToken;

/// Which purposes cover each data category, as consent's catalogue says.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Catalogue {
    covering: BTreeMap<DataCategory, Vec<String>>,
}

impl Catalogue {
    /// The catalogue of these purposes.
    pub fn from_purposes(purposes: &[consent_pb::Purpose]) -> Self {
        let mut covering: BTreeMap<DataCategory, Vec<String>> = BTreeMap::new();
        for purpose in purposes {
            for raw in &purpose.data_categories {
                if let Ok(category) = DataCategory::from_proto(*raw) {
                    covering
                        .entry(category)
                        .or_default()
                        .push(purpose.code.clone());
                }
            }
        }
        for codes in covering.values_mut() {
            codes.sort();
            codes.dedup();
        }
        Self { covering }
    }

    /// The purposes that cover `category`, ordered by code.
    pub fn covering(&self, category: DataCategory) -> &[String] {
        self.covering.get(&category).map_or(&[], Vec::as_slice)
    }
}

/// Whether one category may be collected for one customer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Allowance {
    /// Allowed by these granted purposes (ordered by code, at least one).
    Allowed(Vec<pb::PurposeNotice>),
    /// No granted purpose covers the category; `covering` lists the purposes
    /// that would (empty when the catalogue has none).
    Refused {
        /// The category asked about.
        category: DataCategory,
        /// The purposes whose grant would allow it.
        covering: Vec<String>,
    },
}

impl Allowance {
    /// The purposes that allowed it, or `None` when refused.
    pub fn purposes(&self) -> Option<&[pb::PurposeNotice]> {
        match self {
            Self::Allowed(purposes) => Some(purposes),
            Self::Refused { .. } => None,
        }
    }

    /// The FAILED_PRECONDITION a write that needs this allowance answers, naming
    /// the category and the purposes that would cover it; `None` when allowed.
    pub fn refusal(&self, what: &str) -> Option<ApiError> {
        match self {
            Self::Allowed(_) => None,
            Self::Refused { category, covering } if covering.is_empty() => {
                Some(ApiError::FailedPrecondition(format!(
                    "{what} has data category {category}, which no purpose of the consent \
                     catalogue covers; add it to a purpose first"
                )))
            }
            Self::Refused { category, covering } => Some(ApiError::FailedPrecondition(format!(
                "{what} has data category {category}: the customer has granted none of the \
                 purposes that cover it ({})",
                covering.join(", ")
            ))),
        }
    }
}

/// The gate every write of personal data passes.
#[derive(Debug, Clone)]
pub struct Collection {
    checker: ConsentChecker,
    catalogue: Arc<RwLock<Option<Arc<Catalogue>>>>,
    consent: Peer,
}

impl Collection {
    /// A gate asking `checker` for decisions and `consent` for the catalogue.
    pub fn new(checker: ConsentChecker, consent: Peer) -> Self {
        Self {
            checker,
            catalogue: Arc::new(RwLock::new(None)),
            consent,
        }
    }

    /// The checker behind the gate (traits and segments ask it at use).
    pub fn checker(&self) -> &ConsentChecker {
        &self.checker
    }

    /// Consent itself (segments follow its change stream).
    pub fn consent(&self) -> &Peer {
        &self.consent
    }

    /// May `customer_id`'s data of each of `categories` be stored now? One
    /// answer per category, in order. UNAVAILABLE when consent cannot be
    /// checked (the catalogue was never read, or the checker cannot vouch for
    /// the customer): then nothing may be stored.
    pub async fn allowances(
        &self,
        customer_id: &str,
        categories: &[DataCategory],
    ) -> Result<Vec<Allowance>, ApiError> {
        let catalogue = self.catalogue().await?;
        let mut purposes: BTreeSet<&str> = BTreeSet::new();
        for category in categories {
            purposes.extend(catalogue.covering(*category).iter().map(String::as_str));
        }
        let purposes: Vec<&str> = purposes.into_iter().collect();
        let answers = self.checker.answers(customer_id, &purposes).await;
        let mut granted: BTreeMap<&str, i32> = BTreeMap::new();
        for (purpose, answer) in purposes.iter().zip(&answers) {
            match answer.reason {
                Reason::FreshnessUnconfirmed | Reason::Unavailable => {
                    return Err(ApiError::Unavailable(
                        "consent cannot be checked right now; nothing was stored, retry".into(),
                    ));
                }
                Reason::Status(_) if answer.granted => {
                    granted.insert(purpose, answer.notice_version.unwrap_or(0));
                }
                Reason::Status(_) => {}
            }
        }
        Ok(categories
            .iter()
            .map(|category| {
                let covering = catalogue.covering(*category);
                let allowed: Vec<pb::PurposeNotice> = covering
                    .iter()
                    .filter_map(|code| {
                        granted.get(code.as_str()).map(|version| pb::PurposeNotice {
                            purpose_code: code.clone(),
                            notice_version: *version,
                        })
                    })
                    .collect();
                if allowed.is_empty() {
                    Allowance::Refused {
                        category: *category,
                        covering: covering.to_vec(),
                    }
                } else {
                    Allowance::Allowed(allowed)
                }
            })
            .collect())
    }

    /// The data categories whose collection (and use) `customer_id` allows now.
    pub async fn granted_categories(
        &self,
        customer_id: &str,
    ) -> Result<BTreeSet<DataCategory>, ApiError> {
        let all: Vec<DataCategory> = DataCategory::ALL.to_vec();
        let allowances = self.allowances(customer_id, &all).await?;
        Ok(all
            .into_iter()
            .zip(allowances)
            .filter_map(|(category, allowance)| allowance.purposes().map(|_| category))
            .collect())
    }

    async fn catalogue(&self) -> Result<Arc<Catalogue>, ApiError> {
        if let Some(catalogue) = self.cached() {
            return Ok(catalogue);
        }
        self.refresh().await.map_err(|error| {
            tracing::warn!(%error, "cannot read consent's purposes catalogue");
            ApiError::Unavailable(
                "consent's purposes catalogue cannot be read right now; nothing was stored, retry"
                    .into(),
            )
        })
    }

    fn cached(&self) -> Option<Arc<Catalogue>> {
        self.catalogue
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Reads the whole catalogue from consent and keeps it.
    async fn refresh(&self) -> Result<Arc<Catalogue>, tonic::Status> {
        let mut client =
            ConsentServiceClient::with_interceptor(self.consent.clone(), TraceContextInterceptor);
        let mut purposes = Vec::new();
        let mut page_token = String::new();
        loop {
            let page = client
                .list_purposes(consent_pb::ListPurposesRequest {
                    page_size: 500,
                    page_token,
                })
                .await?
                .into_inner();
            purposes.extend(page.purposes);
            if page.next_page_token.is_empty() {
                break;
            }
            page_token = page.next_page_token;
        }
        let catalogue = Arc::new(Catalogue::from_purposes(&purposes));
        *self
            .catalogue
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(Arc::clone(&catalogue));
        Ok(catalogue)
    }

    /// Re-reads the catalogue every `interval` until `cancel` fires; a failed
    /// read keeps the previous catalogue.
    pub async fn keep_catalogue_fresh(self, interval: Duration, cancel: CancellationToken) {
        loop {
            if let Err(error) = self.refresh().await {
                tracing::debug!(%error, "cannot refresh consent's purposes catalogue; retrying");
            }
            tokio::select! {
                () = cancel.cancelled() => return,
                () = tokio::time::sleep(interval) => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn purpose(code: &str, categories: &[DataCategory]) -> consent_pb::Purpose {
        consent_pb::Purpose {
            code: code.into(),
            data_categories: categories.iter().map(|c| i32::from(*c)).collect(),
            ..Default::default()
        }
    }

    #[test]
    fn a_category_is_covered_by_every_purpose_that_lists_it_in_code_order() {
        let catalogue = Catalogue::from_purposes(&[
            purpose("profiling", &[DataCategory::Purchases]),
            purpose(
                "analytics",
                &[DataCategory::Browsing, DataCategory::Purchases],
            ),
        ]);
        assert_eq!(
            catalogue.covering(DataCategory::Purchases),
            ["analytics", "profiling"]
        );
        assert!(catalogue.covering(DataCategory::Location).is_empty());
    }

    #[test]
    fn a_refusal_names_the_category_and_the_purposes_that_would_allow_it() {
        let refused = Allowance::Refused {
            category: DataCategory::Location,
            covering: vec!["store_visits".into()],
        };
        let message = refused.refusal("store_visit").unwrap().to_string();
        assert!(
            message.contains("location") && message.contains("store_visits"),
            "{message}"
        );
        assert!(Allowance::Allowed(vec![]).refusal("x").is_none());
    }
}
