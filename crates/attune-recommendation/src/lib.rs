//! Recommendation: catalogue mirror, session state, models served from memory,
//! explained and consent-aware answers.

pub mod model;
