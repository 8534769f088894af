//! The purposes a new installation starts with, so a retailer can record consent
//! from the first minute and edit the notices later.

use super::{DataCategory, LegalBasis, NewPurpose, PurposeCode, PurposeNotice};

struct Seed {
    code: &'static str,
    display_name: &'static str,
    description: &'static str,
    data_categories: &'static [DataCategory],
}

const SEEDS: &[Seed] = &[
    Seed {
        code: "personalization",
        display_name: "Personalized shopping",
        description: "We use what you browse, buy and tell us to tailor recommendations, offers and delivery options to you.",
        data_categories: &[
            DataCategory::Browsing,
            DataCategory::Purchases,
            DataCategory::Preferences,
        ],
    },
    Seed {
        code: "analytics",
        display_name: "Shop analytics",
        description: "We measure how our shop is used, in aggregate, to improve it.",
        data_categories: &[DataCategory::Browsing, DataCategory::Device],
    },
    Seed {
        code: "marketing_email",
        display_name: "Offers by e-mail",
        description: "We send you news and offers by e-mail and see which ones you open.",
        data_categories: &[DataCategory::Contact, DataCategory::Engagement],
    },
    Seed {
        code: "marketing_sms",
        display_name: "Offers by text message",
        description: "We send you news and offers by text message.",
        data_categories: &[DataCategory::Contact],
    },
    Seed {
        code: "profiling",
        display_name: "Customer profiling",
        description: "We combine your purchases, loyalty activity and the details you share into a profile that decides which offers you get.",
        data_categories: &[
            DataCategory::Purchases,
            DataCategory::Loyalty,
            DataCategory::Demographics,
            DataCategory::Preferences,
        ],
    },
    Seed {
        code: "sale_or_share",
        display_name: "Sharing with partners",
        description: "We share data about your shopping with selected partners for their advertising. You can say no at any time.",
        data_categories: &[
            DataCategory::Identifiers,
            DataCategory::Browsing,
            DataCategory::Purchases,
        ],
    },
];

/// Purposes added to the default catalogue after its first release: a migration
/// adds each to an existing installation unless the retailer already has a
/// purpose with its code.
const ADDED_SEEDS: &[Seed] = &[Seed {
    code: "store_visits",
    display_name: "Personalized store visits",
    description: "We note your visits to our stores (which store, when, which departments) and the store and time zone you prefer, so that offers and service in the store fit you.",
    data_categories: &[DataCategory::Location],
}];

/// The default purposes catalogue, every purpose on the consent legal basis.
pub fn default_catalogue() -> Vec<NewPurpose> {
    purposes(SEEDS)
}

/// The purposes added to the default catalogue since its first release (see
/// `m0005_store_visits_purpose`).
pub fn added_purposes() -> Vec<NewPurpose> {
    purposes(ADDED_SEEDS)
}

fn purposes(seeds: &[Seed]) -> Vec<NewPurpose> {
    seeds
        .iter()
        .map(|seed| NewPurpose {
            code: PurposeCode::parse(seed.code).expect("seed codes are valid purpose codes"),
            notice: PurposeNotice::parse(
                seed.display_name,
                seed.description,
                LegalBasis::Consent,
                seed.data_categories.to_vec(),
            )
            .expect("seed notices are valid"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::{DataCategory, added_purposes, default_catalogue};

    /// Profile stores an event or a zero-party value only when a granted purpose
    /// covers its category: each category it collects must be covered by some
    /// default purpose, or that data could never be stored.
    #[test]
    fn every_category_profile_collects_is_covered_by_a_default_purpose() {
        let catalogue: Vec<_> = default_catalogue()
            .into_iter()
            .chain(added_purposes())
            .collect();
        for category in [
            DataCategory::Browsing,
            DataCategory::Purchases,
            DataCategory::Preferences,
            DataCategory::Demographics,
            DataCategory::Location,
            DataCategory::Engagement,
        ] {
            assert!(
                catalogue
                    .iter()
                    .any(|purpose| purpose.notice.data_categories().contains(&category)),
                "{category} is covered by no default purpose"
            );
        }
    }

    #[test]
    fn default_catalogue_is_valid_and_covers_the_usual_purposes() {
        let codes: Vec<_> = super::default_catalogue()
            .into_iter()
            .map(|purpose| purpose.code.to_string())
            .collect();
        for expected in [
            "personalization",
            "analytics",
            "marketing_email",
            "sale_or_share",
        ] {
            assert!(
                codes.iter().any(|code| code == expected),
                "{expected} missing"
            );
        }
    }
}
