//! Purposes and their notices: what a customer is asked to agree to.

use chrono::{DateTime, Utc};
use serde::Serialize;

pub use attune_kit::types::DataCategory;

use super::PurposeCode;

/// The lawful basis for processing under GDPR Art. 6(1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub enum LegalBasis {
    Consent,
    Contract,
    LegalObligation,
    VitalInterests,
    PublicTask,
    LegitimateInterests,
}

impl LegalBasis {
    const ALL: [Self; 6] = [
        Self::Consent,
        Self::Contract,
        Self::LegalObligation,
        Self::VitalInterests,
        Self::PublicTask,
        Self::LegitimateInterests,
    ];

    /// The stable name stored in the database.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Consent => "consent",
            Self::Contract => "contract",
            Self::LegalObligation => "legal_obligation",
            Self::VitalInterests => "vital_interests",
            Self::PublicTask => "public_task",
            Self::LegitimateInterests => "legitimate_interests",
        }
    }

    /// Reads a stored name back.
    pub fn from_stored(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|basis| basis.as_str() == name)
    }
}

/// The customer-facing content of one notice version of a purpose.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PurposeNotice {
    display_name: String,
    description: String,
    legal_basis: LegalBasis,
    data_categories: Vec<DataCategory>,
}

impl PurposeNotice {
    /// The longest title accepted, in characters.
    pub const MAX_DISPLAY_NAME: usize = 200;
    /// The longest notice text accepted, in characters.
    pub const MAX_DESCRIPTION: usize = 4000;

    /// Builds a notice; each error names the field it is about.
    pub fn parse(
        display_name: &str,
        description: &str,
        legal_basis: LegalBasis,
        data_categories: Vec<DataCategory>,
    ) -> Result<Self, Vec<(&'static str, String)>> {
        let mut problems = Vec::new();
        if let Err(problem) = check_text(display_name, Self::MAX_DISPLAY_NAME, false) {
            problems.push(("display_name", problem));
        }
        if let Err(problem) = check_text(description, Self::MAX_DESCRIPTION, true) {
            problems.push(("description", problem));
        }
        if data_categories.is_empty() {
            problems.push(("data_categories", "must name at least one category".into()));
        }
        let mut sorted = data_categories.clone();
        sorted.sort();
        sorted.dedup();
        if sorted.len() != data_categories.len() {
            problems.push(("data_categories", "must not repeat a category".into()));
        }
        if !problems.is_empty() {
            return Err(problems);
        }
        Ok(Self {
            display_name: display_name.to_owned(),
            description: description.to_owned(),
            legal_basis,
            data_categories,
        })
    }

    pub fn display_name(&self) -> &str {
        &self.display_name
    }

    pub fn description(&self) -> &str {
        &self.description
    }

    pub fn legal_basis(&self) -> LegalBasis {
        self.legal_basis
    }

    pub fn data_categories(&self) -> &[DataCategory] {
        &self.data_categories
    }
}

fn check_text(text: &str, max_chars: usize, multiline: bool) -> Result<(), String> {
    if text.trim().is_empty() {
        return Err("must not be empty".into());
    }
    if text.chars().count() > max_chars {
        return Err(format!("must be at most {max_chars} characters"));
    }
    let allowed_control = |c: char| multiline && (c == '\n' || c == '\t');
    if text.chars().any(|c| c.is_control() && !allowed_control(c)) {
        return Err("must not contain control characters".into());
    }
    Ok(())
}

/// A purpose to create or a new notice for an existing one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NewPurpose {
    pub code: PurposeCode,
    pub notice: PurposeNotice,
}

/// A purpose at one notice version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Purpose {
    pub code: PurposeCode,
    pub notice: PurposeNotice,
    pub notice_version: i32,
    pub create_time: DateTime<Utc>,
    pub notice_publish_time: DateTime<Utc>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn notice(
        name: &str,
        text: &str,
        categories: Vec<DataCategory>,
    ) -> Result<PurposeNotice, Vec<(&'static str, String)>> {
        PurposeNotice::parse(name, text, LegalBasis::Consent, categories)
    }

    #[test]
    fn notice_rejects_empty_texts_and_categories() {
        let problems = notice(" ", "", vec![]).unwrap_err();
        let fields: Vec<_> = problems.iter().map(|(field, _)| *field).collect();
        assert_eq!(fields, ["display_name", "description", "data_categories"]);
    }

    #[test]
    fn notice_rejects_duplicate_categories_and_long_text() {
        let dup = notice(
            "T",
            "D",
            vec![DataCategory::Browsing, DataCategory::Browsing],
        );
        assert_eq!(dup.unwrap_err()[0].0, "data_categories");
        let long = notice(&"n".repeat(201), "D", vec![DataCategory::Browsing]);
        assert_eq!(long.unwrap_err()[0].0, "display_name");
    }

    #[test]
    fn description_may_span_lines_but_title_may_not() {
        assert!(notice("T", "line one\nline two", vec![DataCategory::Contact]).is_ok());
        assert!(notice("T\nU", "D", vec![DataCategory::Contact]).is_err());
    }

    #[test]
    fn stored_names_round_trip() {
        for basis in LegalBasis::ALL {
            assert_eq!(LegalBasis::from_stored(basis.as_str()), Some(basis));
        }
    }
}
