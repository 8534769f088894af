//! Decides at build time whether PostgreSQL tests run. Shared: the kit, the
//! `attune` binary's crate and `tests/` (attune-tests) name this file as their
//! `build` script.
//!
//! libtest cannot skip a test at run time: a test that returns early when no
//! PostgreSQL server is configured is counted as a pass. So when
//! `ATTUNE_TEST_DATABASE_URL` is set (to anything but blanks) this sets
//! `cfg(attune_test_postgres)`, and every PostgreSQL test (the `postgres` variant
//! of `backend_tests!`, and each PostgreSQL-only test) is
//! `#[cfg_attr(not(attune_test_postgres), ignore)]`: nextest then reports it as
//! skipped. Cargo rebuilds when the variable changes, so `cargo nextest run
//! --workspace` with it set runs them.

fn main() {
    const URL: &str = "ATTUNE_TEST_DATABASE_URL";
    println!("cargo::rerun-if-env-changed={URL}");
    println!("cargo::rustc-check-cfg=cfg(attune_test_postgres)");
    if std::env::var(URL).is_ok_and(|url| !url.trim().is_empty()) {
        println!("cargo::rustc-cfg=attune_test_postgres");
    }
}
