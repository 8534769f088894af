//! Segments: rule-based groups of customers over traits and zero-party data
//! (`attune.profile.v1.SegmentService`).
//!
//! `rule` is the language (parse once, evaluate purely over `facts`), `facts`
//! what a rule is evaluated against and where it is loaded from.

pub mod facts;
pub mod rule;
