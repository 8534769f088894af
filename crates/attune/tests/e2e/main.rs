//! The real `attune` binary, run as processes: its command line, `attune eval`,
//! the metrics endpoint, traces, and microservices mode with replicas.
//!
//! One test binary rather than one per file, so that each build links one
//! (see `tests/tests/e2e/main.rs` for why); nextest still runs every test in a
//! process of its own.

mod cli;
mod eval;
mod journey;
mod metrics;
mod microservices;
mod support;
mod traces;
