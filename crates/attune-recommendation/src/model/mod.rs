//! The models, pure and in memory: trained from interactions, served from an
//! immutable snapshot, and evaluated offline by `attune eval` through the same code.
